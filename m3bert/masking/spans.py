"""Pure, vectorised mask layouts for masked-reconstruction pre-training.

Every function is a function of shapes, lengths and a ``torch.Generator`` alone, runs on the generator's device and
never loops over the batch. Masks are returned as integer *codes*: 0 is unmasked, and k > 0 marks a masked position
whose replacement policy is ``k`` (see :mod:`m3bert.masking.masker`). Padding (positions at or beyond a clip's length)
always has code 0.
"""

from __future__ import annotations

import math

import torch


def draw_codes(shape: tuple[int, ...], probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Policy codes 1..len(probs), drawn i.i.d. with the given probabilities; (shape) long."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return torch.searchsorted(probs.cumsum(0).to(u.device), u.contiguous(), right=True).clamp_max(len(probs) - 1) + 1


def _rasterize(starts: torch.Tensor, widths: torch.Tensor, codes: torch.Tensor, size: int) -> torch.Tensor:
    """Paint non-overlapping [start, start + width) intervals of each row with their code; (rows, size) long."""
    delta = torch.zeros(starts.shape[0], size + 1, dtype=torch.long, device=starts.device)
    codes = codes * (widths > 0)
    delta.scatter_add_(1, starts, codes)
    delta.scatter_add_(1, (starts + widths).clamp_max(size), -codes)
    return delta.cumsum(1)[:, :size]


def frame_spans(
    lengths: torch.Tensor,
    num_frames: int,
    ratio: float,
    min_span: int,
    max_span: int,
    geometric_p: float,
    probs: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Contiguous frame masking (CFM): (batch, num_frames) codes.

    Span lengths are geometric with success probability ``geometric_p``, clamped to [min_span, max_span]; spans are
    drawn until about ``ratio`` of each clip's valid frames are covered (a span is kept while at least half of it
    fits in the budget, so the realised ratio is unbiased), then placed at random without overlapping or touching.
    """
    device = generator.device
    lengths = lengths.to(device)
    batch = lengths.shape[0]
    budget = torch.round(ratio * lengths.float()).long()
    # Upper bound on spans needed by any clip: every span covers at least min_span frames.
    k = max(1, math.ceil(ratio * num_frames / min_span) + 1)
    u = torch.rand(batch, k, generator=generator, device=device)
    widths = (torch.floor(torch.log1p(-u) / math.log1p(-geometric_p)) + 1).long().clamp(min_span, max_span)
    before = widths.cumsum(1) - widths
    active = before + widths // 2 < budget[:, None]
    active[:, 0] |= budget > 0
    # Never cover more than the clip: the last span is cut at the clip's length.
    widths = ((before + widths).clamp_max(lengths[:, None]) - before).clamp_min(0) * active
    active &= widths > 0
    count = active.sum(1)
    covered = widths.sum(1)
    # One unmasked frame between consecutive spans keeps them distinct where the clip has room for it; at high
    # ratios (say 0.9 of the frames in 5-frame spans) it has not, and the spans that then touch merge into longer
    # ones: the masked share stays the budget and nothing spills into the padding.
    separated = torch.minimum((count - 1).clamp_min(0), (lengths - covered).clamp_min(0))
    free = (lengths - covered - separated).clamp_min(0)  # frames to scatter as gaps
    gaps = torch.floor(torch.rand(batch, k, generator=generator, device=device) * (free[:, None] + 1)).long()
    gaps = torch.where(active, gaps, free[:, None]).sort(1).values
    separators = torch.arange(k, device=device)[None, :].clamp_max(separated[:, None])
    starts = (gaps + widths.cumsum(1) - widths + separators).clamp_max(num_frames)
    codes = draw_codes((batch, k), probs, generator)
    return _rasterize(starts, widths, codes, num_frames)


def channel_band(
    lengths: torch.Tensor,
    num_frames: int,
    num_channels: int,
    channel_range: tuple[int, int],
    min_width: int,
    max_width: int,
    probs: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Contiguous channel masking (CCM): one band per clip over all its valid frames; (batch, frames, channels) codes.

    The band's width is uniform in [min_width, max_width] and its start uniform such that the band lies inside
    ``channel_range`` = [low, high).
    """
    device = generator.device
    lengths = lengths.to(device)
    low, high = channel_range
    if not 0 <= low < high <= num_channels:
        raise ValueError(f"masking channel_range {list(channel_range)} must lie inside [0, {num_channels}]")
    max_width = min(max_width, high - low)
    if not 1 <= min_width <= max_width:
        raise ValueError(f"masking widths must satisfy 1 <= min_width <= max_width, got {min_width}, {max_width}")
    batch = lengths.shape[0]
    u = torch.rand(batch, 2, generator=generator, device=device)
    widths = min_width + torch.floor(u[:, 0] * (max_width - min_width + 1)).long()
    starts = low + torch.floor(u[:, 1] * (high - low - widths + 1).float()).long()
    codes = draw_codes((batch,), probs, generator)
    band = _rasterize(starts[:, None], widths[:, None], codes[:, None], num_channels)  # (batch, channels)
    valid = torch.arange(num_frames, device=device)[None, :] < lengths[:, None]
    return band[:, None, :] * valid[:, :, None]


def patches(
    lengths: torch.Tensor,
    num_frames: int,
    num_channels: int,
    ratio: float,
    patch_frames: int,
    patch_channels: int,
    channel_range: tuple[int, int],
    probs: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Patch masking: a ``ratio`` share of the time x channel patches of each clip; (batch, frames, channels) codes.

    Patches tile the valid frames and ``channel_range`` on a grid of ``patch_frames`` x ``patch_channels``.
    """
    device = generator.device
    lengths = lengths.to(device)
    low, high = channel_range
    if not 0 <= low < high <= num_channels:
        raise ValueError(f"masking channel_range {list(channel_range)} must lie inside [0, {num_channels}]")
    batch = lengths.shape[0]
    n_time = math.ceil(num_frames / patch_frames)
    n_chan = (high - low) // patch_channels
    if n_chan < 1:
        raise ValueError(f"patch_channels={patch_channels} is wider than the channel range {list(channel_range)}")
    valid_time = torch.div(lengths + patch_frames - 1, patch_frames, rounding_mode="floor")  # (batch,)
    k = torch.round(ratio * valid_time.float() * n_chan).long()
    scores = torch.rand(batch, n_time * n_chan, generator=generator, device=device)
    # Patches that start in the padding sort last, so they are never chosen.
    in_clip = (torch.arange(n_time, device=device)[None, :] < valid_time[:, None]).repeat_interleave(n_chan, 1)
    scores = torch.where(in_clip, scores, 2.0)
    rank = scores.argsort(1).argsort(1)
    codes = draw_codes((batch, n_time * n_chan), probs, generator) * (rank < k[:, None])
    grid = codes.view(batch, n_time, n_chan)
    grid = grid.repeat_interleave(patch_frames, 1)[:, :num_frames].repeat_interleave(patch_channels, 2)
    out = torch.zeros(batch, num_frames, num_channels, dtype=torch.long, device=device)
    out[:, :, low : low + grid.shape[2]] = grid
    valid = torch.arange(num_frames, device=device)[None, :] < lengths[:, None]
    return out * valid[:, :, None]
