"""Per-clip mean/variance normalisation (CMVN) of padded feature batches."""

from __future__ import annotations

import torch


def cmvn(features: torch.Tensor, frame_lengths: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Give every dimension of every clip zero mean and unit variance over that clip's valid frames.

    Args:
        features: ``(batch, frames, dims)``.
        frame_lengths: ``(batch,)`` valid frames per clip; ``None`` means all frames are valid.
        eps: added to the variance, so a constant dimension (e.g. a silent mel band) maps to zeros instead
            of dividing by zero.
    Returns:
        ``(batch, frames, dims)``, same dtype; padding frames are set to 0 and never enter the statistics.
    """
    batch, n_frames, _ = features.shape
    if frame_lengths is None:
        frame_lengths = torch.full((batch,), n_frames, dtype=torch.long, device=features.device)
    if int(frame_lengths.min()) < 1:
        raise ValueError(f"cmvn needs at least one valid frame per clip, got frame_lengths={frame_lengths.tolist()}")
    mask = (torch.arange(n_frames, device=features.device)[None, :] < frame_lengths[:, None])[..., None]
    count = frame_lengths.to(features.dtype).view(batch, 1, 1)
    # Statistics of x - x[first frame]: the same mean-free result, but a constant dimension becomes exact
    # zeros, where a float32 mean of e.g. -1131 (the MFCC-0 of silence) would leave ~1e-4 residues that the
    # epsilon then scales up to O(1). It also helps whenever a dimension's spread is small next to its offset.
    x = (features - features[:, :1]).masked_fill(~mask, 0.0)
    mean = x.sum(dim=1, keepdim=True) / count
    # Two passes (mean, then centred squares) rather than E[x^2] - E[x]^2, which cancels badly in float32.
    centred = (x - mean).masked_fill(~mask, 0.0)
    var = centred.square().sum(dim=1, keepdim=True) / count
    return centred * torch.rsqrt(var + eps)
