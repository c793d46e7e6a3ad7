"""STFT chroma filterbank (librosa's ``filters.chroma`` design), built per clip because it follows the tuning."""

from __future__ import annotations

import math

import torch

_A0_HZ = 27.5


def chroma_filterbank(
    tuning: torch.Tensor,
    sample_rate: int,
    n_fft: int,
    n_chroma: int = 12,
    center_octave: float = 5.0,
    octave_width: float = 2.0,
) -> torch.Tensor:
    """Weights mapping STFT bins to pitch classes, one bank per clip.

    Each FFT bin spreads over the pitch classes with a Gaussian (in chroma bins) as wide as the bin's own
    spacing on the log-frequency axis (at least one chroma bin), so low bins, which span several semitones,
    smear and high bins are sharp. Columns are L2-normalised, then weighted by a Gaussian over octaves centred
    on ``center_octave`` (octave 5 above A0 ~ 880 Hz) with ``octave_width`` octaves of spread, which fades out
    the bass and the top of the spectrum. Row 0 is C.

    Args:
        tuning: ``(batch,)`` deviation from A440 in fractions of a chroma bin.
    Returns:
        ``(batch, n_chroma, n_fft // 2 + 1)`` float32 on ``tuning``'s device.
    """
    dev = tuning.device
    tuning = tuning.to(torch.float64)
    freqs = torch.arange(1, n_fft, dtype=torch.float64, device=dev) * (sample_rate / n_fft)
    # Position of every bin on the chroma axis (bins above A0), shifted by the clip's tuning.
    pos = n_chroma * torch.log2(freqs / _A0_HZ)[None, :] - tuning[:, None]
    # DC has no pitch: librosa places it 1.5 octaves below the first bin.
    pos = torch.cat([pos[:, :1] - 1.5 * n_chroma, pos], dim=1)  # (batch, n_fft)
    width = torch.cat([(pos[:, 1:] - pos[:, :-1]).clamp_min(1.0), torch.ones_like(pos[:, :1])], dim=1)

    half = round(n_chroma / 2)
    dist = pos[:, None, :] - torch.arange(n_chroma, dtype=torch.float64, device=dev)[None, :, None]
    # Wrap the distance to the nearest octave copy of each pitch class: [-half, n_chroma - half).
    dist = torch.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    w = torch.exp(-0.5 * (2 * dist / width[:, None, :]) ** 2)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    w = w * torch.exp(-0.5 * ((pos / n_chroma - center_octave) / octave_width) ** 2)[:, None, :]
    # The construction counts from A; roll so the first row is C (three semitones up).
    w = torch.roll(w, shifts=-3 * (n_chroma // 12), dims=1)
    return w[:, :, : n_fft // 2 + 1].float()


def normalize_frames(x: torch.Tensor) -> torch.Tensor:
    """Divide every frame ``(batch, bins, frames)`` by its largest bin; all-zero frames stay zero."""
    peak = x.amax(dim=1, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    return x / torch.where(peak < tiny, torch.ones_like(peak), peak)


def pitch_class_roll(fmin_hz: float, n_chroma: int) -> int:
    """Row shift that makes chroma row 0 the pitch class C when the CQT starts at ``fmin_hz``."""
    midi = 12 * math.log2(fmin_hz / 440.0) + 69
    return int(round((midi % 12) * n_chroma / 12.0))
