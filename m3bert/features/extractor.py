"""Feature extractors: waveform batches in, normalised frame features out, on whatever device they live on.

Two feature sets are registered: ``m3bert324`` (the M3BERT front end: STFT chroma, MFCC, delta-MFCC, log-mel,
log CQT-chroma) and ``logmel128`` (just the log-mel block). Each is an ``nn.Module`` whose filterbanks are
buffers, so ``.to("cuda")`` moves the whole front end and extraction runs on the GPU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import torch
from torch import nn

from m3bert.features.chroma import chroma_filterbank, normalize_frames, pitch_class_roll
from m3bert.features.config import LOGMEL_BLOCKS, M3BERT_BLOCKS, SpectralConfig
from m3bert.features.cqt import ConstantQ
from m3bert.features.normalize import cmvn, cmvn_with_stats
from m3bert.features.spectral import dct_matrix, delta, frame_mask, mel_filterbank, power_to_db, stft_magnitude, window
from m3bert.features.tuning import estimate_tuning


class FeatureExtractor(nn.Module):
    """Base class: input checks, padding bookkeeping and CMVN; subclasses compute the raw features.

    Attributes:
        name: registry name. sample_rate: Hz the input must be at. hop_length: samples per frame step.
        frame_rate: frames per second. feature_dim: columns of the output.
        blocks: ordered ``{block name: slice of columns}``, for labelling columns in analyses.
    """

    name: str = ""
    blocks: OrderedDict[str, slice] = OrderedDict()

    # Samples (summed over the clips of a batch) extracted at once, per device type. On the CPU the
    # intermediates of a large batch (hundreds of MB) go through fresh page-faulted allocations and out of
    # cache, which makes one big batch ~1.5-2x slower per clip than ~47 s at a time. On a GPU it bounds the
    # peak memory (~60 bytes per sample: ~2 GB for 2**25 samples, 12.7 min at 44.1 kHz).
    chunk_samples: dict[str, int] = {"cpu": 2**21, "cuda": 2**25}

    def __init__(self, cfg: SpectralConfig, normalize: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalize = normalize
        self.register_buffer("window", window(cfg.window, cfg.n_fft), persistent=False)
        self.register_buffer(
            "mel_fb", torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)).float(), persistent=False
        )

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def feature_dim(self) -> int:
        return next(reversed(self.blocks.values())).stop

    def num_frames(self, samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames produced for ``samples`` samples: ``1 + samples // hop_length`` (librosa's centred count)."""
        return 1 + samples // self.cfg.hop_length

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
        sample_rate: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extract features.

        Args:
            waveform: ``(batch, samples)`` (or ``(samples,)``) float audio at ``self.sample_rate``; clips
                shorter than the batch are padded at the end (the padding's content is ignored).
            lengths: ``(batch,)`` samples per clip; ``None`` means every clip fills the batch.
            sample_rate: if given, checked against ``self.sample_rate`` (no silent resampling here).
        Returns:
            ``(features, frame_lengths)``: ``(batch, frames, feature_dim)`` float32 with
            ``frames = 1 + samples // hop_length``, and ``(batch,)`` valid frames per clip. Padding frames
            are zero.
        """
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(
                f"{self.name} expects audio at {self.sample_rate} Hz, got {sample_rate} Hz; resample first "
                "(m3bert.features.load_audio does)"
            )
        if waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2 or not waveform.is_floating_point():
            raise ValueError(
                f"waveform must be a float tensor (batch, samples), got {tuple(waveform.shape)} {waveform.dtype}"
            )
        batch, n_samples = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), n_samples, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=waveform.device)
        if lengths.shape != (batch,) or int(lengths.max()) > n_samples or int(lengths.min()) < 1:
            raise ValueError(f"lengths must be (batch,) in [1, {n_samples}], got {lengths.tolist()}")
        y = waveform.float()
        frame_lengths = self.num_frames(lengths)
        n_frames = self.num_frames(n_samples)
        budget = self.chunk_samples.get(y.device.type, self.chunk_samples["cuda"])
        per_chunk = max(1, budget // n_samples)
        if per_chunk >= batch:
            return self._extract(y, lengths, n_frames), frame_lengths
        # A few clips at a time. Every clip's features are independent of its batch-mates, so the result is
        # the same; each group is cut to its own longest clip.
        out = y.new_zeros(batch, n_frames, self.feature_dim)
        for start in range(0, batch, per_chunk):
            sl = slice(start, start + per_chunk)
            longest = int(lengths[sl].max())
            feats = self._extract(y[sl, :longest], lengths[sl], self.num_frames(longest))
            out[sl, : feats.shape[1]] = feats
        return out, frame_lengths

    @torch.no_grad()
    def with_stats(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None, sample_rate: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-file-normalised features as :meth:`forward` computes them, plus each clip's statistics of the
        unnormalised ones: ``(features (batch, frames, dim), frame_lengths (batch,), stats (batch, 2, dim))``
        (mean and scale, see :func:`m3bert.features.normalize.cmvn_with_stats`)."""
        normalize, self.normalize = self.normalize, False
        try:
            raw, frame_lengths = self(waveform, lengths, sample_rate)
        finally:
            self.normalize = normalize
        features, stats = cmvn_with_stats(raw, frame_lengths)
        return features, frame_lengths, stats

    def _extract(self, y: torch.Tensor, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Features ``(batch, n_frames, feature_dim)`` of ``y`` ``(batch, samples)``, padding frames zero."""
        # Padding is zeroed so every clip sees the same zeros past its end as it would alone.
        y = y * (torch.arange(y.shape[-1], device=y.device)[None, :] < lengths[:, None])
        frame_lengths = self.num_frames(lengths)
        feats = self.compute(y, lengths, frame_lengths).transpose(1, 2)  # (batch, frames, feature_dim)
        assert feats.shape[1] == n_frames
        if self.normalize:
            return cmvn(feats, frame_lengths).contiguous()
        return (feats * frame_mask(frame_lengths, n_frames)[..., None]).contiguous()

    def compute(self, y: torch.Tensor, lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Raw features ``(batch, feature_dim, frames)`` from zero-padded ``y`` ``(batch, samples)``."""
        raise NotImplementedError

    def _power_and_mel(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        power = stft_magnitude(y, cfg.n_fft, cfg.hop_length, self.window, power=2.0)  # (batch, freqs, frames)
        return power, torch.matmul(self.mel_fb, power)

    def _log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.cfg.log_gain * x + self.cfg.log_offset)


class LogMel128(FeatureExtractor):
    """``log(10 * mel + 1e-6)``, 128 Slaney mel bands of the Hamming-2048/hop-1024 power spectrogram."""

    name = "logmel128"
    blocks = LOGMEL_BLOCKS

    def compute(self, y: torch.Tensor, lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        _, mel = self._power_and_mel(y)
        return self._log(mel)


class M3BERT324(FeatureExtractor):
    """The 324-dim M3BERT frame features; columns as in ``blocks``:

    chroma (12, STFT chroma, tuned, max-normalised per frame) | MFCC (20, DCT of the dB mel spectrum) |
    delta-MFCC (20) | log-mel (128) | log CQT-chroma (144, a 144-bin/octave CQT over 7 octaves from C1 folded
    onto one octave, tuned, max-normalised per frame).
    """

    name = "m3bert324"
    blocks = M3BERT_BLOCKS

    def __init__(self, cfg: SpectralConfig, normalize: bool = True) -> None:
        super().__init__(cfg, normalize)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(cfg.n_mels, cfg.n_mfcc)).float(), persistent=False)
        self.register_buffer("tuning_window", window("hann", cfg.n_fft), persistent=False)
        self.cqt = ConstantQ(
            sample_rate=cfg.sample_rate,
            hop_length=cfg.hop_length,
            fmin=cfg.cqt_fmin,
            bins_per_octave=cfg.cqt_bins_per_octave,
            n_octaves=cfg.cqt_octaves,
        )
        self._chroma_roll = pitch_class_roll(cfg.cqt_fmin, cfg.cqt_bins_per_octave)

    def compute(self, y: torch.Tensor, lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        power, mel = self._power_and_mel(y)
        mask = frame_mask(frame_lengths, power.shape[-1])

        tuning = estimate_tuning(power, frame_lengths, cfg.sample_rate, cfg.n_fft, bins_per_octave=cfg.n_chroma)
        fb = chroma_filterbank(tuning.to(y.device), cfg.sample_rate, cfg.n_fft, n_chroma=cfg.n_chroma)
        chroma = normalize_frames(torch.bmm(fb, power))

        mfcc = torch.matmul(self.dct, power_to_db(mel, mask))
        d_mfcc = delta(mfcc, frame_lengths, width=cfg.delta_width)

        cqt_chroma = self._cqt_chroma(y, lengths)
        return torch.cat([chroma, mfcc, d_mfcc, self._log(mel), self._log(cqt_chroma)], dim=1)

    def _cqt_chroma(self, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        # The CQT's tuning comes from its own analysis: a Hann STFT with a quarter-window hop, as librosa's
        # chroma_cqt does when it estimates tuning from the waveform.
        hop = cfg.n_fft // 4
        # (librosa analyses the magnitude; sqrt=True takes roots only where the estimator looks.)
        power = stft_magnitude(y, cfg.n_fft, hop, self.tuning_window, power=2.0)
        tuning = estimate_tuning(
            power, 1 + lengths // hop, cfg.sample_rate, cfg.n_fft, cfg.cqt_bins_per_octave, sqrt=True
        )
        chroma = self.cqt.chroma(y, lengths, tuning)
        if self._chroma_roll:
            chroma = torch.roll(chroma, self._chroma_roll, dims=1)
        return normalize_frames(chroma)


FEATURE_SETS: dict[str, type[FeatureExtractor]] = {"m3bert324": M3BERT324, "logmel128": LogMel128}


def build_feature_extractor(
    name: str, sample_rate: int = 44100, normalize: bool = True, **overrides
) -> FeatureExtractor:
    """Build a registered feature extractor.

    Args:
        name: ``"m3bert324"`` or ``"logmel128"``.
        sample_rate: Hz; the input must already be at this rate.
        normalize: apply per-clip CMVN (the default, as the models are trained on it).
        **overrides: other ``SpectralConfig`` fields (e.g. ``hop_length``).
    """
    if name not in FEATURE_SETS:
        raise KeyError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}")
    cfg = replace(SpectralConfig(), sample_rate=sample_rate, **overrides)
    return FEATURE_SETS[name](cfg, normalize=normalize)
