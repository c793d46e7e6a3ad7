"""Per-clip tuning estimation in torch (the chroma blocks are computed on a grid shifted by it).

The method is librosa's ``estimate_tuning``: pick spectral peaks between 150 Hz and 4 kHz that reach 10 % of
their frame's maximum, refine each peak frequency by a parabola through the three bins around it, keep the
peaks at least as strong as the median peak, and take the mode of their deviation from the nearest pitch
class bin (a histogram with 0.01-bin resolution). The result is in fractions of a bin, in [-0.5, 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_A440_OCT0 = 440.0 / 16  # octave 0 of librosa's octave numbering starts at A0 = 27.5 Hz


def spectral_peaks(
    spec: torch.Tensor,
    sample_rate: int,
    n_fft: int,
    fmin: float = 150.0,
    fmax: float = 4000.0,
    threshold: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Interpolated spectral peaks of each frame.

    Args:
        spec: ``(batch, n_fft // 2 + 1, frames)`` non-negative spectrogram (magnitude or power: the method
            only compares values within a frame).
    Returns:
        ``(is_peak, freq_hz, strength)``, each ``(batch, n_bins, frames)`` over the bins that can hold a
        peak (from the first bin at or above ``fmin`` to the last below ``fmax``). ``freq_hz`` and
        ``strength`` are only meaningful where ``is_peak``.
    """
    n_freqs = spec.shape[1]
    bin_hz = sample_rate / n_fft
    lo = max(1, math.ceil(fmin / bin_hz))
    hi = min(n_freqs - 1, math.ceil(min(fmax, sample_rate / 2) / bin_hz))  # bins lo .. hi-1 have lo <= f < fmax
    # Neighbours lo-1 and hi are needed for the three-point stencils; the edge bins of the full spectrum never
    # fall inside [150 Hz, 4 kHz) at practical rates, so every bin here has both neighbours.
    left, mid, right = spec[:, lo - 1 : hi - 1], spec[:, lo:hi], spec[:, lo + 1 : hi + 1]

    floor = threshold * spec.amax(dim=1, keepdim=True)
    # Local maxima of the thresholded spectrum: strictly above the left neighbour, not below the right one.
    gated = lambda s: s * (s > floor)  # noqa: E731
    g_left, g_mid, g_right = gated(left), gated(mid), gated(right)
    is_peak = (g_mid > g_left) & (g_mid >= g_right)

    # Vertex of the parabola through the three bins; shifts of a bin or more are rejected as unreliable.
    # The vertex is computed in float64 and the rest in the input precision, as librosa does: the tuning is
    # a histogram mode, and matching the rounding keeps peaks on the same side of the histogram edges.
    curv = (right + left).double() - 2 * mid.double()
    slope = (right - left).double() / 2
    ok = slope.abs() < curv.abs()
    shift = torch.where(ok, -slope / torch.where(ok, curv, torch.ones_like(curv)), torch.zeros_like(curv))
    shift = shift.to(spec.dtype)
    bins = torch.arange(lo, hi, device=spec.device, dtype=spec.dtype)[None, :, None]
    freq_hz = (bins + shift) * bin_hz
    strength = mid + 0.5 * ((right - left) / 2) * shift
    return is_peak, freq_hz, strength


def tuning_from_peaks(
    is_peak: torch.Tensor,
    freq_hz: torch.Tensor,
    strength: torch.Tensor,
    frame_lengths: torch.Tensor,
    bins_per_octave: int = 12,
    resolution: float = 0.01,
) -> torch.Tensor:
    """Mode of the peaks' deviation from the pitch grid, per clip -> ``(batch,)`` float64, in bins.

    Only the first ``frame_lengths[b]`` frames of clip ``b`` count. A clip without peaks gets 0.
    """
    n_frames = is_peak.shape[-1]
    valid = torch.arange(n_frames, device=is_peak.device)[None, None, :] < frame_lengths[:, None, None]
    is_peak = is_peak & valid & (freq_hz > 0)
    n_hist = int(math.ceil(1.0 / resolution))
    # numpy's linspace, so the edges (and the returned left edge) are bit-identical to the reference's.
    edges = torch.from_numpy(np.linspace(-0.5, 0.5, n_hist + 1))
    out = torch.zeros(is_peak.shape[0], dtype=torch.float64)
    # Clips have different peak counts, so this small part loops over the batch.
    for b in range(is_peak.shape[0]):
        m = is_peak[b]
        if not bool(m.any()):
            continue
        s = strength[b][m]
        f = freq_hz[b][m]
        # The median of the peak strengths, averaging the middle pair for even counts (as numpy does).
        srt = torch.sort(s).values
        n = srt.numel()
        median = 0.5 * (srt[(n - 1) // 2] + srt[n // 2])
        f = f[s >= median].cpu()
        residual = torch.remainder(bins_per_octave * torch.log2(f / _A440_OCT0), 1.0)
        # A residual of 0.95 is a deviation of -0.05 from the next bin up.
        residual = torch.where(residual >= 0.5, residual - 1.0, residual).double()
        # Histogram with right-open bins except the last, then the left edge of the fullest bin (first on ties).
        idx = torch.bucketize(residual, edges, right=True) - 1
        idx = idx.clamp(0, n_hist - 1)
        counts = torch.bincount(idx, minlength=n_hist)
        out[b] = edges[int(torch.argmax(counts))]
    return out


def estimate_tuning(
    spec: torch.Tensor,
    frame_lengths: torch.Tensor,
    sample_rate: int,
    n_fft: int,
    bins_per_octave: int = 12,
) -> torch.Tensor:
    """Tuning offset of each clip from A440, in fractions of a ``1/bins_per_octave``-octave bin.

    Args:
        spec: ``(batch, n_fft // 2 + 1, frames)`` spectrogram; ``frame_lengths``: ``(batch,)`` valid frames.
    Returns:
        ``(batch,)`` float64 on the CPU, multiples of 0.01 in [-0.5, 0.5).
    """
    peaks = spectral_peaks(spec, sample_rate, n_fft)
    return tuning_from_peaks(*peaks, frame_lengths, bins_per_octave=bins_per_octave)
