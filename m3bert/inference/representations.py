"""Audio in, every layer's hidden states out: the user-facing side of a trained encoder.

    rep = Representations.from_pretrained("my-model")     # exported folder or pre-training run folder
    out = rep("song.flac")                                # decoded, mixed to mono, resampled to the model's rate
    out.hidden_states                                     # (layers, frames, hidden)
    out.timestamps                                        # (frames,) seconds: the centre of each output frame
    outs = rep([clip_a, clip_b], sample_rate=22050)       # arrays at any rate; windows of all clips share batches

**Windows.** The encoder attends across its whole input, so its context is the window it is given. Inputs longer
than ``window_frames`` (by default the pre-training crop: the context the encoder learned to use) are encoded in
windows overlapping by ``overlap_frames``; each output frame is taken from the window in which it lies nearest
the centre, so it keeps at least ``overlap_frames / 2`` frames of context on both sides (except at the ends of the
input). An input that fits one window is encoded in one pass, exactly as ``encoder(features)`` would.

**Features.** Inputs up to ``segment_seconds`` long go through the front end in one piece, as
``python -m m3bert.prepare`` computes them (normalised per file), and then through the model's own input
normalisation (``front_end.normalization``: none more for ``per_file``, the pre-training statistics for ``dataset``),
the same function the training data went through. Longer inputs are analysed segment by segment
with ``context_seconds`` of audio either side, so the frame-local parts of the features match the whole-file
ones and memory stays bounded; the normalisation then uses the whole input's statistics, while the tuning
estimate and the dB floor are per segment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soxr
import torch
from torch import nn

from m3bert.common.devices import resolve_device, resolve_dtype
from m3bert.common.files import reserve
from m3bert.features import audio_info, load_audio
from m3bert.features.audio import expected_length
from m3bert.features.normalize import cmvn_in_place
from m3bert.inference.pretrained import FrontEnd, load_pretrained
from m3bert.models.encoder import M3BERT
from m3bert.models.pooling import CLIP_POOLING, clip_embedding, masked_pool

DEFAULT_WINDOW_FRAMES = 512  # the manifest datasets' pre-training crop (dataset.max_frames), ~12 s
# Frames the front end needs at least (its delta features fit a 9-frame line); shorter clips are padded with silence.
MIN_FRAMES = 9


class Window(NamedTuple):
    """One encoder pass over input frames ``[start, stop)``; its output tokens ``[keep_start, keep_stop)``
    (counted from the start of the input) are the ones kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


@dataclass
class Representation:
    """Hidden states of one clip."""

    hidden_states: torch.Tensor  # (layers, frames, hidden), frames at frame_rate / downsample per second
    timestamps: torch.Tensor  # (frames,) float64 seconds: the centre of the audio each output frame stands for
    layers: tuple[int, ...]  # which hidden states, in order (0 = the embedding output, num_layers = the last layer)

    def pooled(self, how: str = "mean") -> torch.Tensor:
        """(layers, hidden) mean or max over frames, (layers, 2 hidden) ``mean_std`` (mean, then std) or (layers,
        3 hidden) ``mean_std_max``."""
        return masked_pool(self.hidden_states, None, how)

    def clip_embedding(self) -> torch.Tensor:
        """(3 hidden) the default clip embedding (:func:`m3bert.models.pooling.clip_embedding`), as ``extract``
        writes it to ``clip/``."""
        return clip_embedding(self.pooled(CLIP_POOLING))


def plan_windows(frames: int, window: int, overlap: int, multiple: int = 1) -> list[Window]:
    """Cover ``frames`` input frames with windows of ``window`` frames that overlap by (at least) ``overlap``.

    ``multiple`` is the encoder's frame stacking (``downsample``); ``window`` and ``overlap`` must be multiples
    of it, and kept ranges count tokens (``ceil(frames / multiple)`` in all). Consecutive windows hand over in the
    middle of their overlap. The last window is moved back to end at the last frame, so that it too has full
    context; it may then overlap its predecessor by more than ``overlap``.
    """
    if frames < 1:
        raise ValueError(f"need at least one frame, got {frames}")
    if window < multiple or window % multiple or overlap % multiple or not 0 <= overlap < window:
        raise ValueError(
            f"window={window} and overlap={overlap} frames must be multiples of the encoder's "
            f"downsample={multiple}, with 0 <= overlap < window"
        )
    tokens = -(-frames // multiple)
    if frames <= window:
        return [Window(0, frames, 0, tokens)]
    starts = list(range(0, frames - window, window - overlap))
    starts.append(-(-(frames - window) // multiple) * multiple)
    stops = [min(start + window, frames) for start in starts]
    # In tokens: starts and every stop but the last are multiples of `multiple`.
    bounds = [0] + [(starts[i + 1] + stops[i]) // (2 * multiple) for i in range(len(starts) - 1)] + [tokens]
    return [Window(s, e, bounds[i], bounds[i + 1]) for i, (s, e) in enumerate(zip(starts, stops))]


def resolve_layers(spec, count: int) -> tuple[int, ...]:
    """``"all"``, ``"last"``, one index or a list of indices into ``count`` hidden states -> indices in [0, count)."""
    if isinstance(spec, str) and spec in ("all", "last"):
        return tuple(range(count)) if spec == "all" else (count - 1,)
    indices = (
        [spec]
        if isinstance(spec, int)
        else list(spec)
        if isinstance(spec, Sequence) and not isinstance(spec, str)
        else None
    )
    if not indices or not all(isinstance(i, int) and -count <= i < count for i in indices):
        raise ValueError(
            f"layers must be 'all', 'last' or hidden-state indices in [{-count}, {count}) (0 = the "
            f"embedding output, {count - 1} = the last layer), got {spec!r}"
        )
    return tuple(i % count for i in indices)


class Representations(nn.Module):
    """A trained encoder with its front end: waveforms or audio files in, hidden states with timestamps out.

    Args:
        encoder: the M3BERT encoder; it is put in eval mode (no dropout), cast to ``dtype`` and moved to ``device``
            in place.
        front_end: the features it was trained on.
        layers: which hidden states to return: ``"all"`` (num_layers + 1, the embedding output first), ``"last"``,
            an index or a list of indices.
        window_frames: frames per encoder pass (a multiple of the encoder's downsample); None takes
            ``training_frames``, else 512. overlap_frames: frames shared by consecutive windows; None: a quarter.
        batch_size: windows per encoder pass (windows of different clips share batches).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...; ``.to(device)`` works too.
        dtype: the encoder's compute dtype (``float32``, ``bfloat16``, ``float16``, or ``auto``: bfloat16 where
            ``device`` computes it natively, else float32); features stay float32.
        segment_seconds, context_seconds: longer inputs are analysed in segments of this length with this much
            audio either side (see the module docstring).
    """

    def __init__(
        self,
        encoder: M3BERT,
        front_end: FrontEnd,
        *,
        layers="all",
        window_frames: int | None = None,
        overlap_frames: int | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = "cpu",
        dtype: str | torch.dtype = torch.float32,
        segment_seconds: float = 600.0,
        context_seconds: float = 4.0,
        training_frames: int | None = None,
    ):
        super().__init__()
        cfg = encoder.config
        if front_end.feature_dim != cfg.input_dim:
            raise ValueError(
                f"feature-set mismatch: {front_end.feature_set} gives {front_end.feature_dim} channels "
                f"but the encoder takes {cfg.input_dim}"
            )
        self.front_end = front_end
        self.dtype = resolve_dtype(dtype, resolve_device(device))
        self.encoder = encoder.to(self.dtype)
        self.extractor = front_end.build()
        self._raw_extractor = None  # un-normalised front end for long inputs, built when first needed
        self.layers = resolve_layers(layers, cfg.num_layers + 1)
        r = cfg.downsample
        window = window_frames or training_frames or DEFAULT_WINDOW_FRAMES
        if window_frames is None:
            window = min(window, cfg.max_positions * r)
        window = window // r * r
        if window < r or window > cfg.max_positions * r:
            raise ValueError(
                f"window_frames={window_frames} must be in [{r}, {cfg.max_positions * r}] "
                f"(model.max_positions x downsample)"
            )
        overlap = window // 4 if overlap_frames is None else int(overlap_frames)
        overlap = overlap // r * r
        if not 0 <= overlap < window:
            raise ValueError(f"overlap_frames={overlap_frames} must be in [0, {window}) for a {window}-frame window")
        if batch_size < 1 or segment_seconds <= 0 or context_seconds < 0:
            raise ValueError("batch_size must be >= 1, segment_seconds > 0 and context_seconds >= 0")
        self.window_frames, self.overlap_frames, self.batch_size = window, overlap, int(batch_size)
        self.segment_seconds, self.context_seconds = float(segment_seconds), float(context_seconds)
        self.to(resolve_device(device))
        self.eval()

    @classmethod
    def from_pretrained(
        cls, path: str | Path, features: str | FrontEnd | None = None, key: str | None = None, **kwargs
    ) -> Representations:
        """Load :func:`m3bert.inference.pretrained.load_pretrained`'s model (``key``: the config key ``path`` came
        from, named in errors); ``kwargs`` go to the constructor."""
        loaded = load_pretrained(path, features, key=key)
        return cls(loaded.encoder, loaded.front_end, training_frames=loaded.training_frames, **kwargs)

    def train(self, mode: bool = True) -> Representations:
        # Inference only: dropout would make the representations random.
        return super().train(False)

    # ------------------------------------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def sample_rate(self) -> int:
        """Hz the front end works at; inputs at other rates are resampled."""
        return self.front_end.sample_rate

    @property
    def downsample(self) -> int:
        return self.encoder.config.downsample

    @property
    def frame_rate(self) -> float:
        """Output frames per second (after the encoder's frame stacking)."""
        return self.front_end.frame_rate / self.downsample

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    def timestamps(self, frames: int) -> torch.Tensor:
        """(frames,) float64 seconds: output frame k stands for input frames [k r, k r + r), centred on
        sample t * hop_length for input frame t (the front end's frames are centred)."""
        r = self.downsample
        return (torch.arange(frames, dtype=torch.float64) * r + (r - 1) / 2) / self.front_end.frame_rate

    # --------------------------------------------------------------------------------------------- features
    def _as_wave(self, audio, sample_rate: int | None) -> torch.Tensor | np.ndarray:
        """One mono clip at the model's rate: an array/tensor (samples,) at ``sample_rate`` Hz."""
        if sample_rate is None:
            raise ValueError(
                f"pass sample_rate= (the rate of your audio in Hz); the model works at "
                f"{self.sample_rate} Hz and resamples anything else"
            )
        shape = tuple(audio.shape)
        if len(shape) != 1:
            raise ValueError(
                f"a clip must be 1-D (samples,), got shape {shape}; pass a 2-D array as a batch of mono "
                "clips (clips, samples) and mix channels down first"
            )
        if shape[0] == 0:
            raise ValueError("empty clip: no samples")
        if int(sample_rate) == self.sample_rate:
            return audio
        wave = (
            audio.detach().float().cpu().numpy()
            if isinstance(audio, torch.Tensor)
            else np.asarray(audio, dtype=np.float32)
        )
        return soxr.resample(wave, int(sample_rate), self.sample_rate, quality="HQ")

    @torch.no_grad()
    def features(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
        """Front-end features of mono clips at ``self.sample_rate``: a list of (frames, feature_dim) float32
        tensors on ``self.device``, ``frames = 1 + samples // hop_length``."""
        out: list[torch.Tensor | None] = [None] * len(waves)
        segment = int(self.segment_seconds * self.sample_rate)
        short = [i for i, w in enumerate(waves) if len(w) <= segment]
        for i in (i for i, w in enumerate(waves) if len(w) > segment):
            feats = self._segmented_features(lambda first, stop, wave=waves[i]: wave[first:stop], len(waves[i]))
            out[i] = torch.from_numpy(feats).to(self.device)
        # A few clips per front-end call: the padded batch is what costs memory.
        for group in (short[g : g + self.batch_size] for g in range(0, len(short), self.batch_size)):
            for i, feats in zip(group, self._short_features([waves[i] for i in group])):
                out[i] = feats
        return out

    def _short_features(self, waves: list) -> list[torch.Tensor]:
        hop = self.front_end.hop_length
        lengths = torch.tensor([len(w) for w in waves])
        # Too short for the front end: padded with silence, and the frames past the clip dropped again.
        padded = lengths.clamp_min((MIN_FRAMES - 1) * hop)
        batch = torch.zeros(len(waves), int(padded.max()), device=self.device)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = torch.as_tensor(wave, dtype=torch.float32, device=self.device)
        norm = self.front_end.normalization
        if not norm.needs_clip_stats:
            feats, _ = self.extractor(batch, padded.to(self.device))
            return [feats[row, : 1 + int(n) // hop] for row, n in enumerate(lengths)]
        # The clip statistics cover the padded clip, as prepare's do for a clip of that length.
        feats, _, stats = self.extractor.with_stats(batch, padded.to(self.device))
        return [norm.apply(feats[row, : 1 + int(n) // hop], stats[row]) for row, n in enumerate(lengths)]

    def file_features(self, path: str | os.PathLike, memmap: str | os.PathLike | None = None) -> np.ndarray:
        """Features (frames, feature_dim) float32 of an audio file, decoded, mixed to mono and resampled.

        Files longer than ``segment_seconds`` are decoded a segment at a time; with ``memmap`` their features go to
        that ``.npy`` file (memory-mapped), so memory stays bounded however long the file is.

        Raises:
            AudioError: missing, unreadable, corrupt or empty file (the message names it).
        """
        info = audio_info(path)
        samples = expected_length(info.frames, info.sample_rate, self.sample_rate)
        if samples <= int(self.segment_seconds * self.sample_rate):
            wave = load_audio(path, self.sample_rate)
            return self.features([wave])[0].cpu().numpy()
        sr = self.sample_rate
        # Start decoding where an output sample falls exactly on an input sample, so that every stretch is resampled
        # in the same phase as the whole file would be (a sub-sample shift changes the features measurably).
        period = sr // math.gcd(sr, info.sample_rate)

        def read(first: int, stop: int) -> np.ndarray:
            aligned = first // period * period
            return load_audio(path, sr, offset_s=aligned / sr, duration_s=(stop - aligned) / sr)[first - aligned :]

        out = None
        if memmap is not None:
            frames = 1 + samples // self.front_end.hop_length
            out = np.lib.format.open_memmap(
                memmap, mode="w+", dtype=np.float32, shape=(frames, self.front_end.feature_dim)
            )
            reserve(memmap)  # a full disk is then an error here, not a SIGBUS when the map is written
        return self._segmented_features(read, samples, out)

    @torch.no_grad()
    def _segmented_features(
        self, read: Callable[[int, int], np.ndarray | torch.Tensor], samples: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Features of ``samples`` samples that ``read(first, stop)`` hands out a stretch at a time."""
        hop, sr = self.front_end.hop_length, self.sample_rate
        frames = 1 + samples // hop
        if out is None:
            out = np.empty((frames, self.front_end.feature_dim), dtype=np.float32)
        if self._raw_extractor is None:
            self._raw_extractor = self.front_end.build(normalize=False).to(self.device)
        segment = max(4 * MIN_FRAMES, int(self.segment_seconds * sr) // hop)
        context = math.ceil(self.context_seconds * sr / hop)
        bounds = list(range(0, frames, segment)) + [frames]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < segment // 2:
            del bounds[-2]  # a short tail joins the segment before it
        for a, b in zip(bounds[:-1], bounds[1:]):
            # Stretches start on a frame centre, so their frames fall on the whole input's frame grid.
            first, stop = max(0, a - context) * hop, min(samples, (b + context) * hop)
            chunk = torch.as_tensor(read(first, stop), dtype=torch.float32).flatten().to(self.device)
            # A decoder may return a sample more or less than asked for after resampling.
            chunk = torch.nn.functional.pad(chunk[: stop - first], (0, max(0, stop - first - len(chunk))))
            raw, _ = self._raw_extractor(chunk[None])
            out[a:b] = raw[0, a - first // hop : b - first // hop].cpu().numpy()
        out, stats = cmvn_in_place(out)
        norm = self.front_end.normalization
        if norm.needs_clip_stats:
            stats = torch.from_numpy(stats)
            for start in range(0, frames, 8192):
                block = torch.from_numpy(np.asarray(out[start : start + 8192]))
                out[start : start + 8192] = norm.apply(block, stats).numpy()
        return out

    # ------------------------------------------------------------------------------------------------ encoder
    def _encode_pieces(self, pieces: Iterable) -> Iterator[torch.Tensor]:
        """Hidden states (layers, tokens, hidden) of each piece (frames, feature_dim), ``batch_size`` at a time."""
        batch = []
        for piece in pieces:
            batch.append(piece)
            if len(batch) == self.batch_size:
                yield from self._encode_batch(batch)
                batch = []
        if batch:
            yield from self._encode_batch(batch)

    @torch.no_grad()
    def _encode_batch(self, pieces: list) -> Iterator[torch.Tensor]:
        lengths = torch.tensor([len(p) for p in pieces])
        x = torch.zeros(
            len(pieces), int(lengths.max()), self.front_end.feature_dim, dtype=self.dtype, device=self.device
        )
        for row, piece in enumerate(pieces):
            x[row, : len(piece)] = torch.as_tensor(
                np.asarray(piece) if not isinstance(piece, torch.Tensor) else piece
            ).to(self.device, self.dtype)
        out = self.encoder(x, lengths.to(self.device))
        states = torch.stack([out.hidden_states[i] for i in self.layers], dim=1)  # (batch, layers, tokens, hidden)
        for row, n in enumerate(out.lengths.tolist()):
            yield states[row, :, :n]

    def stream(self, features: np.ndarray | torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Encode one clip's features (frames, feature_dim) window by window, keeping ``batch_size`` windows in
        memory: yields ``(first output frame, hidden states (layers, n, hidden))`` in order, covering every output
        frame exactly once. ``features`` may be a memory map."""
        r = self.downsample
        windows = plan_windows(len(features), self.window_frames, self.overlap_frames, r)
        pieces = (features[w.start : w.stop] for w in windows)
        for w, states in zip(windows, self._encode_pieces(pieces)):
            offset = w.start // r
            yield w.keep_start, states[:, w.keep_start - offset : w.keep_stop - offset]

    def encode(self, features: Sequence[np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        """Hidden states (layers, ceil(frames / downsample), hidden) of each clip's features (frames, feature_dim);
        the windows of all clips share batches."""
        r = self.downsample
        plan = [
            (i, w)
            for i, f in enumerate(features)
            for w in plan_windows(len(f), self.window_frames, self.overlap_frames, r)
        ]
        parts: list[list[torch.Tensor]] = [[] for _ in features]
        pieces = (features[i][w.start : w.stop] for i, w in plan)
        for (i, w), states in zip(plan, self._encode_pieces(pieces)):
            offset = w.start // r
            parts[i].append(states[:, w.keep_start - offset : w.keep_stop - offset])
        return [torch.cat(p, dim=1) for p in parts]

    # ---------------------------------------------------------------------------------------------- one call
    @torch.no_grad()
    def forward(self, audio, sample_rate: int | None = None) -> Representation | list[Representation]:
        """Hidden states of audio.

        Args:
            audio: a path, a mono clip (samples,) (numpy or torch), a batch of mono clips (clips, samples), or a
                list of any of these. Files are decoded, mixed to mono and resampled.
            sample_rate: Hz of the arrays (required for arrays; they are resampled when it differs from
                ``self.sample_rate``).
        Returns:
            one :class:`Representation` for a path or a 1-D clip, else a list of them in input order.
        """
        single = isinstance(audio, (str, os.PathLike)) or (hasattr(audio, "shape") and len(audio.shape) == 1)
        if single:
            items = [audio]
        elif (hasattr(audio, "shape") and len(audio.shape) == 2) or isinstance(audio, (list, tuple)):
            items = list(audio)
        else:
            raise TypeError(f"audio must be a path, an array/tensor or a list of them, got {type(audio).__name__}")
        features: list = [None] * len(items)
        waves, slots = [], []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                features[i] = torch.from_numpy(self.file_features(item))
            else:
                waves.append(self._as_wave(item, sample_rate))
                slots.append(i)
        for i, feats in zip(slots, self.features(waves)):
            features[i] = feats
        states = self.encode(features)
        outs = [Representation(s, self.timestamps(s.shape[1]), self.layers) for s in states]
        return outs[0] if single else outs
