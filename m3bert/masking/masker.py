"""The masker: chooses positions to reconstruct and corrupts the input there.

Replacement policy per masked span (or band, or patch), as in BERT: with probability ``zero`` the frames are set to 0
(the mean, since features are normalised per file), with ``random`` they are replaced by random frames of the same
clip, with ``keep`` they are left as they are. The loss covers every masked position whatever its policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch

from m3bert.masking import spans

ZERO, RANDOM, KEEP = 1, 2, 3  # policy codes used by m3bert.masking.spans


class MaskedInput(NamedTuple):
    inputs: torch.Tensor  # (batch, frames, channels) corrupted features fed to the encoder
    mask: torch.Tensor  # (batch, frames, channels) bool, positions the loss covers


@dataclass
class FrameMasking:
    ratio: float = 0.15
    min_span: int = 2  # frames
    max_span: int = 7
    geometric_p: float = 0.2  # span lengths are geometric with this success probability: mean 1 / p frames
    # The same in seconds, converted with the feature set's frame rate so that a recipe keeps its meaning at another
    # hop: [shortest, longest] span (replaces min_span / max_span) and the mean span (replaces geometric_p).
    span_seconds: tuple[float, float] | None = None
    mean_span_seconds: float | None = None

    def in_frames(self, frame_rate: float | None) -> FrameMasking:
        """This masking with the ``*_seconds`` keys converted to frames at ``frame_rate`` (frames per second)."""
        if self.span_seconds is None and self.mean_span_seconds is None:
            return self
        rate = _frame_rate(frame_rate, "masking.frames.span_seconds / mean_span_seconds")
        out = dataclasses.replace(self, span_seconds=None, mean_span_seconds=None)
        if self.span_seconds is not None:
            shortest, longest = self.span_seconds
            if not 0 < shortest <= longest:
                raise ValueError(
                    f"masking.frames.span_seconds={list(self.span_seconds)}: needs 0 < shortest <= longest seconds"
                )
            out.min_span, out.max_span = _frames(shortest, rate), _frames(longest, rate)
        if self.mean_span_seconds is not None:
            if self.mean_span_seconds <= 0:
                raise ValueError(f"masking.frames.mean_span_seconds={self.mean_span_seconds}: must be > 0 seconds")
            out.geometric_p = min(1.0, 1.0 / (self.mean_span_seconds * rate))
        return out


@dataclass
class ChannelMasking:
    channel_range: tuple[int, int]  # [start, stop) columns a band may cover (conf: ${feature_columns:...})
    min_width: int = 8
    max_width: int = 32


@dataclass
class PatchMasking:
    ratio: float = 0.15
    patch_frames: int = 8
    patch_channels: int = 16
    channel_range: tuple[int, int] | None = None  # [start, stop) columns; None: all of them
    patch_seconds: float | None = None  # a patch's duration in seconds (replaces patch_frames)

    def in_frames(self, frame_rate: float | None) -> PatchMasking:
        """This masking with ``patch_seconds`` converted to frames at ``frame_rate`` (frames per second)."""
        if self.patch_seconds is None:
            return self
        rate = _frame_rate(frame_rate, "masking.patches.patch_seconds")
        if self.patch_seconds <= 0:
            raise ValueError(f"masking.patches.patch_seconds={self.patch_seconds}: must be > 0 seconds")
        return dataclasses.replace(self, patch_seconds=None, patch_frames=_frames(self.patch_seconds, rate))


def _frame_rate(frame_rate: float | None, keys: str) -> float:
    if frame_rate is None or frame_rate <= 0:
        raise ValueError(f"{keys} need masking.frame_rate (frames per second; the configs set it from `features`)")
    return frame_rate


def _frames(seconds: float, frame_rate: float) -> int:
    """The nearest whole number of frames to ``seconds``, at least one."""
    return max(1, round(seconds * frame_rate))


class Masker:
    """Callable ``(features, lengths, generator) -> MaskedInput``; with no strategy it masks nothing and the loss
    covers every valid position (plain auto-encoding, a baseline and a debugging aid)."""

    def __init__(
        self,
        ratio: float | None = 0.15,
        frames: Mapping | None = None,
        channels: Mapping | None = None,
        patches: Mapping | None = None,
        replace: Mapping | None = None,
        frame_rate: float | None = None,
    ):
        """``ratio``: the share of each clip's frames (or patches) to mask, for frame and patch masking; channel
        bands are sized by their widths, so a ratio without either is refused rather than silently ignored.
        ``frame_rate``: frames per second of the features, for settings given in seconds."""
        if frames is None and patches is None:
            if ratio:
                raise ValueError(
                    f"masking.ratio={ratio}: this masking has no frame spans or patches that a ratio would size "
                    "(channel bands are sized by masking.channels.min_width/max_width); drop masking.ratio, or "
                    "choose masking=cfm, cfm_ccm or patch"
                )
            ratio = 0.0
        if ratio is None or not 0.0 <= ratio < 1.0:
            raise ValueError(f"masking.ratio must be in [0, 1), got {ratio}")
        self.frames = FrameMasking(ratio=ratio, **_tuples(frames)).in_frames(frame_rate) if frames is not None else None
        self.channels = ChannelMasking(**_tuples(channels)) if channels is not None else None
        self.patches = (
            PatchMasking(ratio=ratio, **_tuples(patches)).in_frames(frame_rate) if patches is not None else None
        )
        replace = dict(replace or {"zero": 0.8, "random": 0.1, "keep": 0.1})
        probs = torch.tensor([replace.pop("zero"), replace.pop("random"), replace.pop("keep")], dtype=torch.float64)
        if replace or (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
            raise ValueError("masking.replace needs exactly zero, random and keep probabilities, summing to 1")
        self.probs = probs

    @property
    def enabled(self) -> bool:
        return any(s is not None for s in (self.frames, self.channels, self.patches))

    def codes(self, lengths: torch.Tensor, frames: int, channels: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, frames, channels) policy codes, 0 where unmasked."""
        out = torch.zeros(len(lengths), frames, channels, dtype=torch.long, device=generator.device)
        if self.frames is not None:
            f = self.frames
            out = spans.frame_spans(
                lengths, frames, f.ratio, f.min_span, f.max_span, f.geometric_p, self.probs, generator
            )[:, :, None].expand(-1, -1, channels)
        if self.channels is not None:
            c = self.channels
            band = spans.channel_band(
                lengths, frames, channels, c.channel_range, c.min_width, c.max_width, self.probs, generator
            )
            out = torch.where(out > 0, out, band)
        if self.patches is not None:
            p = self.patches
            grid = spans.patches(
                lengths,
                frames,
                channels,
                p.ratio,
                p.patch_frames,
                p.patch_channels,
                p.channel_range or (0, channels),
                self.probs,
                generator,
            )
            out = torch.where(out > 0, out, grid)
        return out

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> MaskedInput:
        batch, frames, channels = features.shape
        valid = torch.arange(frames, device=features.device)[None, :] < lengths.to(features.device)[:, None]
        if not self.enabled:
            return MaskedInput(features, valid[:, :, None].expand(-1, -1, channels))
        codes = self.codes(lengths, frames, channels, generator).to(features.device)
        inputs = torch.where(codes == ZERO, torch.zeros((), dtype=features.dtype, device=features.device), features)
        if self.probs[RANDOM - 1] > 0:
            # Random frames of the same clip (never its padding), one per masked frame.
            u = torch.rand(batch, frames, generator=generator, device=generator.device).to(features.device)
            source = (u * lengths.to(features.device)[:, None]).long()
            shuffled = features.gather(1, source[:, :, None].expand(-1, -1, channels))
            inputs = torch.where(codes == RANDOM, shuffled, inputs)
        return MaskedInput(inputs, codes > 0)


def _tuples(cfg: Mapping) -> dict:
    # YAML gives lists; the dataclasses document ranges as tuples.
    pairs = ("channel_range", "span_seconds")
    return {k: tuple(v) if k in pairs and v is not None else v for k, v in dict(cfg).items()}
