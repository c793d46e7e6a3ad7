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
    sqrt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Interpolated spectral peaks of every frame, as flat lists.

    Args:
        spec: ``(batch, n_fft // 2 + 1, frames)`` non-negative spectrogram. The peaks are those of ``spec``
            itself, or of ``sqrt(spec)`` with ``sqrt=True`` (pass a power spectrogram to get the peaks of the
            magnitude without taking the root of every bin: only the analysed band and the frame maxima need it).
    Returns:
        ``(clip, frame, freq_hz, strength)``, 1-D tensors with one entry per peak: the clip and frame it
        belongs to, its parabola-refined frequency in Hz and its refined height.
    """
    n_freqs = spec.shape[1]
    bin_hz = sample_rate / n_fft
    lo = max(1, math.ceil(fmin / bin_hz))
    hi = min(n_freqs - 1, math.ceil(min(fmax, sample_rate / 2) / bin_hz))  # bins lo .. hi-1 have lo <= f < fmax
    # Neighbours lo-1 and hi are needed for the three-point stencils; the edge bins of the full spectrum never
    # fall inside [150 Hz, 4 kHz) at practical rates, so every bin here has both neighbours.
    band = spec[:, lo - 1 : hi + 1]
    peak = spec.amax(dim=1, keepdim=True)
    if sqrt:
        band, peak = band.sqrt(), peak.sqrt()  # sqrt is monotonic, so the max of the roots is the root of the max
    floor = threshold * peak
    # Local maxima of the thresholded spectrum: strictly above the left neighbour, not below the right one.
    gated = band * (band > floor)
    mid = gated[:, 1:-1]
    is_peak = (mid > gated[:, :-2]) & (mid >= gated[:, 2:])
    clip, k, frame = is_peak.nonzero(as_tuple=True)  # k indexes the band, bin lo + k

    # Only ~3 % of the band are peaks: refine just those. The vertex of the parabola through the three
    # bins is computed in float64 and the rest in the input precision, as librosa does; the tuning is a
    # histogram mode, and matching the rounding keeps peaks on the same side of the histogram edges.
    left, centre, right = band[clip, k, frame], band[clip, k + 1, frame], band[clip, k + 2, frame]
    curv = (right + left).double() - 2 * centre.double()
    slope = (right - left).double() / 2
    ok = slope.abs() < curv.abs()  # a shift of a bin or more is rejected as unreliable
    shift = torch.where(ok, -slope / torch.where(ok, curv, torch.ones_like(curv)), torch.zeros_like(curv))
    shift = shift.to(spec.dtype)
    # librosa forms (bin + shift) * sr / n_fft in float64 and stores it in float32; so do we, bit for bit.
    freq_hz = (((k + lo).double() + shift.double()) * float(sample_rate) / n_fft).to(spec.dtype)
    strength = centre + 0.5 * ((right - left) / 2) * shift
    return clip, frame, freq_hz, strength


def tuning_from_peaks(
    clip: torch.Tensor,
    frame: torch.Tensor,
    freq_hz: torch.Tensor,
    strength: torch.Tensor,
    frame_lengths: torch.Tensor,
    bins_per_octave: int = 12,
    resolution: float = 0.01,
) -> torch.Tensor:
    """Mode of the peaks' deviation from the pitch grid, per clip -> ``(batch,)`` float64, in bins.

    Only peaks in the first ``frame_lengths[b]`` frames of clip ``b`` count. A clip without peaks gets 0.
    """
    n_hist = int(math.ceil(1.0 / resolution))
    edges = np.linspace(-0.5, 0.5, n_hist + 1)
    out = torch.zeros(len(frame_lengths), dtype=torch.float64)
    keep = (frame < frame_lengths.to(frame.device)[clip]) & (freq_hz > 0)
    clip, freq_hz, strength = clip[keep].cpu().numpy(), freq_hz[keep].cpu().numpy(), strength[keep].cpu().numpy()
    # A few thousand peaks per clip: this part runs in numpy, in the input precision, with the very operations
    # of librosa's pitch_tuning. The mode of a histogram is sensitive to single counts, and numpy's and
    # torch's float32 log2 may differ in the last bit.
    for b in range(len(frame_lengths)):
        m = clip == b
        if not m.any():
            continue
        s, f = strength[m], freq_hz[m]
        f = f[s >= np.median(s)]
        residual = np.mod(bins_per_octave * np.log2(f / _A440_OCT0), 1.0)
        # A residual of 0.95 is a deviation of -0.05 from the next bin up.
        residual[residual >= 0.5] -= 1.0
        counts, _ = np.histogram(residual, edges)
        out[b] = float(edges[np.argmax(counts)])  # left edge of the fullest bin, the first on ties
    return out


def estimate_tuning(
    spec: torch.Tensor,
    frame_lengths: torch.Tensor,
    sample_rate: int,
    n_fft: int,
    bins_per_octave: int = 12,
    sqrt: bool = False,
) -> torch.Tensor:
    """Tuning offset of each clip from A440, in fractions of a ``1/bins_per_octave``-octave bin.

    Args:
        spec: ``(batch, n_fft // 2 + 1, frames)`` spectrogram; ``frame_lengths``: ``(batch,)`` valid frames.
        sqrt: analyse ``sqrt(spec)`` (a power spectrogram's magnitude) instead of ``spec``.
    Returns:
        ``(batch,)`` float64 on the CPU, multiples of 0.01 in [-0.5, 0.5).
    """
    peaks = spectral_peaks(spec, sample_rate, n_fft, sqrt=sqrt)
    return tuning_from_peaks(*peaks, frame_lengths, bins_per_octave=bins_per_octave)
