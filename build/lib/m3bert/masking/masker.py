"""The masker: chooses positions to reconstruct and corrupts the input there.

Replacement policy per masked span (or band, or patch), as in BERT: with probability ``zero`` the frames are set to 0
(the mean, since features are normalised per file), with ``random`` they are replaced by random frames of the same
clip, with ``keep`` they are left as they are. The loss covers every masked position whatever its policy.
"""

from __future__ import annotations

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
    min_span: int = 2
    max_span: int = 7
    geometric_p: float = 0.2


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


class Masker:
    """Callable ``(features, lengths, generator) -> MaskedInput``; with no strategy it masks nothing and the loss
    covers every valid position (plain auto-encoding, a baseline and a debugging aid)."""

    def __init__(
        self,
        ratio: float = 0.15,
        frames: Mapping | None = None,
        channels: Mapping | None = None,
        patches: Mapping | None = None,
        replace: Mapping | None = None,
    ):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"masking.ratio must be in [0, 1), got {ratio}")
        self.frames = FrameMasking(ratio=ratio, **frames) if frames is not None else None
        self.channels = ChannelMasking(**_tuples(channels)) if channels is not None else None
        self.patches = PatchMasking(ratio=ratio, **_tuples(patches)) if patches is not None else None
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
    return {k: tuple(v) if k == "channel_range" and v is not None else v for k, v in dict(cfg).items()}
