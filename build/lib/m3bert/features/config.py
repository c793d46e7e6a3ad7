"""Analysis parameters shared by the torch extractors and the librosa reference."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class SpectralConfig:
    """Frame analysis of the M3BERT features (defaults are the published ones).

    sample_rate: Hz. n_fft/hop_length: samples. One frame every ``hop_length`` samples (~43 frames/s at
    44.1 kHz), frame ``t`` centred on sample ``t * hop_length`` of the zero-padded clip.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 1024
    window: str = "hamming"
    n_mels: int = 128
    n_mfcc: int = 20
    n_chroma: int = 12
    delta_width: int = 9
    # 144-bin chroma from a 144 bins/octave CQT over 7 octaves starting at C1 (librosa's chroma_cqt defaults).
    cqt_bins_per_octave: int = 144
    cqt_octaves: int = 7
    cqt_fmin: float = 32.70319566257483  # C1 in Hz
    # Added inside log(10 * x + eps) for the log-mel and log-CQT-chroma blocks, as in the original features.
    log_offset: float = 1e-6
    log_gain: float = 10.0

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1


def _blocks(sizes: list[tuple[str, int]]) -> OrderedDict[str, slice]:
    out, start = OrderedDict(), 0
    for name, size in sizes:
        out[name] = slice(start, start + size)
        start += size
    return out


# Column layout of the 324-dim feature set; analysis code labels columns with it.
M3BERT_BLOCKS = _blocks([("chroma", 12), ("mfcc", 20), ("delta_mfcc", 20), ("log_mel", 128), ("log_cqt_chroma", 144)])
LOGMEL_BLOCKS = _blocks([("log_mel", 128)])


def block_columns(blocks: dict, names: list[str] | tuple[str, ...], where: str = "features") -> tuple[int, int]:
    """The contiguous column range ``[start, stop)`` covering the named blocks that ``blocks`` (name -> slice or
    [start, stop)) has; blocks it lacks are skipped (channel masking of a log-mel-only feature set masks log-mel)."""
    spans = [
        (int(b.start), int(b.stop)) if isinstance(b, slice) else (int(b[0]), int(b[1]))
        for name, b in blocks.items()
        if name in names
    ]
    if not spans:
        raise ValueError(f"{where} has none of the blocks {list(names)} (it has {list(blocks)}); name blocks it has")
    spans.sort()
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        if start != stop:
            raise ValueError(f"blocks {list(names)} of {where} are not contiguous; a channel band must be one range")
    return spans[0][0], spans[-1][1]
