"""Constant-Q magnitudes in torch: a multirate filterbank evaluated block-wise in the FFT domain.

What is computed is librosa's full CQT (``librosa.cqt`` with its defaults: Hann-windowed complex
exponentials, filter length ``Q * sr / f`` with ``Q = 1 / alpha`` for equal log spacing, each filter scaled
to unit L1 norm, output times sqrt(filter length in samples at the input rate)), as magnitudes on the frame
grid ``t * hop_length``. librosa computes it octave by octave, halving the sample rate each time so the
filters of every octave are the same set of 144 kernels (in samples); we keep that structure and change how
each octave is evaluated:

* Decimation by 2 is a short linear-phase half-band FIR (Kaiser window, ~120 dB stopband). It only has to be
  flat where the lower octaves live (below ~0.1 of the rate) and reject what would alias there (above ~0.4),
  a wide transition band, so 20-30 taps suffice.
* Instead of one 4096-point FFT per output frame and octave (what librosa's STFT does), the octave signal is
  cut into overlapping blocks of ``block_size`` samples, each holding ``F`` frames plus a kernel's reach
  on either side (overlap-save). One FFT per block, then each kernel's narrow spectral support (where its
  spectrum is above -80 dB of its peak) is multiplied in. Reading the filtered block every ``hop`` samples is,
  in the frequency domain, summing the spectrum modulo ``P = block_size / hop`` bins followed by a length-``P``
  inverse FFT; a per-kernel phase ramp that this leaves on the output does not change magnitudes.

Differences from librosa that remain (all far below the feature tolerances): librosa drops the smallest
FFT-basis coefficients holding 1 % of each filter's L1 mass (``sparsity=0.01``) and uses soxr for the
resampling; we keep each kernel's spectrum down to -80 dB and use our own FIR.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# Hann window's equivalent noise bandwidth in bins, librosa's ``window_bandwidth("hann")``; sets where the
# highest filter's passband ends for the early-decimation decision.
_HANN_BANDWIDTH = 1.50018310546875


def halfband_taps(transition_start: float, atten_db: float = 120.0) -> np.ndarray:
    """Odd-length, zero-phase half-band low-pass for decimation by 2 (Kaiser-windowed sinc), unit DC gain.

    Args:
        transition_start: end of the passband in cycles/sample (< 0.25); the stopband starts at its mirror
            image ``0.5 - transition_start``, which is all that aliases back below ``transition_start``.
    """
    width = 0.5 - 2 * transition_start
    beta = 0.1102 * (atten_db - 8.7)
    n = int(math.ceil((atten_db - 7.95) / (14.36 * width))) + 1
    n += 1 - n % 2
    m = np.arange(n) - (n - 1) / 2
    taps = 0.5 * np.sinc(0.5 * m) * np.kaiser(n, beta)
    return taps / taps.sum()


class ConstantQ(nn.Module):
    """CQT magnitudes and their pitch-class fold, for batches of clips with per-clip tuning.

    Args:
        sample_rate: input rate in Hz. hop_length: samples between frames (must be divisible by
            ``2 ** (n_octaves - 1 + early decimations)``). fmin: lowest bin in Hz before tuning.
        bins_per_octave, n_octaves: the grid; ``n_bins = bins_per_octave * n_octaves``.
        block_size: FFT size of the overlap-save blocks (samples at the octave's rate).
        support_db: each kernel's spectrum is kept where it is within this many dB of its peak.
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        hop_length: int = 1024,
        fmin: float = 32.70319566257483,
        bins_per_octave: int = 144,
        n_octaves: int = 7,
        block_size: int = 8192,
        support_db: float = 80.0,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.fmin = sample_rate, hop_length, fmin
        self.bins_per_octave, self.n_octaves = bins_per_octave, n_octaves
        self.n_bins = bins_per_octave * n_octaves
        self.block_size, self.support_db = block_size, support_db
        r = 2.0 ** (2.0 / bins_per_octave)
        self.q = 1.0 / ((r - 1) / (r + 1))  # quality factor of equally log-spaced bins (librosa's 1 / alpha)

        # Early decimation: run the top octave at sr / 2**d, the lowest rate where its kernels (tuned up by
        # half a bin at most) stay below 0.2 cycles/sample. That keeps each octave's band inside [0.09, 0.2]
        # cycles/sample, which the half-band filter is designed for.
        f_top = fmin * 2.0 ** ((self.n_bins - 1 + 0.5) / bins_per_octave)
        top_edge = f_top * (1 + 0.5 * _HANN_BANDWIDTH / self.q)
        if top_edge / sample_rate > 0.2:
            raise ValueError(
                f"sample_rate={sample_rate} Hz is too low for a {n_octaves}-octave CQT from {fmin:.1f} Hz "
                f"(top bin {f_top:.0f} Hz); use >= {math.ceil(top_edge / 0.2)} Hz or fewer octaves"
            )
        d = 0
        while top_edge * 2 ** (d + 1) / sample_rate <= 0.2:
            d += 1
        self.early = d
        total = d + n_octaves - 1
        if hop_length % (2**total):
            raise ValueError(
                f"hop_length={hop_length} must be divisible by 2**{total} for a {n_octaves}-octave CQT at "
                f"{sample_rate} Hz (each octave halves the rate and the hop)"
            )
        self.rate0 = sample_rate / 2**d  # Hz, rate of the top octave
        self.hop0 = hop_length // 2**d

        taps = halfband_taps(transition_start=0.1)
        self.register_buffer("taps", torch.from_numpy(taps).float().view(1, 1, -1), persistent=False)

        # Longest kernel (lowest bin of an octave, tuned down half a bin) sets the block overlap.
        nu_low = fmin * 2.0 ** ((self.n_bins - bins_per_octave - 0.5) / bins_per_octave) / self.rate0
        self.reach = int(math.ceil(self.q / nu_low / 2)) + 2  # samples either side of a frame centre
        if 2 * self.reach >= block_size:
            raise ValueError(f"block_size={block_size} must exceed twice the longest kernel ({2 * self.reach})")
        # Support width is fixed from the shortest kernels (widest spectra), tuned up half a bin.
        self.support = self._support_width(tuning=0.5)
        self._banks: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()

    # --- kernels -------------------------------------------------------------------------------------

    def _kernel_spectra(self, tuning: float) -> tuple[np.ndarray, np.ndarray]:
        """Spectra ``(bins_per_octave, block_size)`` of one octave's kernels, and their sqrt-length scale."""
        bpo, b = self.bins_per_octave, self.block_size
        k = np.arange(self.n_bins - bpo, self.n_bins)
        nu = self.fmin * 2.0 ** ((k + tuning) / bpo) / self.rate0  # cycles/sample at the octave's rate
        lengths = self.q / nu
        spectra = np.zeros((bpo, b), dtype=np.complex128)
        for i, (f, length) in enumerate(zip(nu, lengths)):
            # librosa's sample positions floor(-L/2) .. floor(L/2) - 1 and a periodic Hann of that many points.
            m = np.arange(math.floor(-length / 2), math.floor(length / 2))
            win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(len(m)) / len(m))
            kern = win * np.exp(2j * np.pi * f * m) / win.sum()
            buf = np.zeros(b, dtype=np.complex128)
            buf[m % b] = kern
            spectra[i] = np.fft.fft(buf)
        # sqrt(filter length at the top octave's rate); the per-octave factor is applied in forward.
        return spectra, np.sqrt(lengths)

    def _support_width(self, tuning: float) -> int:
        spectra, _ = self._kernel_spectra(tuning)
        mag = np.abs(spectra[:, : self.block_size // 2 + 1])
        keep = mag >= mag.max(axis=1, keepdims=True) * 10 ** (-self.support_db / 20)
        first = keep.argmax(axis=1)
        last = keep.shape[1] - 1 - keep[:, ::-1].argmax(axis=1)
        width = int((last - first + 1).max())
        return width + (-width) % 8

    def _bank(self, tuning: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Support bins ``(bpo, W)`` and weights ``(bpo, W)`` complex64 for one tuning, cached (LRU)."""
        key = (round(tuning * 1e6), str(device))
        if key in self._banks:
            self._banks.move_to_end(key)
            return self._banks[key]
        spectra, scale = self._kernel_spectra(tuning)
        b, w = self.block_size, self.support
        peak = np.abs(spectra[:, : b // 2 + 1]).argmax(axis=1)
        start = np.clip(peak - w // 2, 0, b // 2 + 1 - w)
        idx = start[:, None] + np.arange(w)[None, :]
        # c[p] = sum_m x[p + m] conj(kernel[m]) has spectrum X * conj(K); evaluating it at the frame centre
        # p = reach + f * hop inside a block is the phase e^{2 pi i j reach / B}; 1/B is the inverse DFT's.
        weights = np.conj(np.take_along_axis(spectra, idx, axis=1))
        weights *= np.exp(2j * np.pi * idx * self.reach / b) / b * scale[:, None]
        bank = (
            torch.from_numpy(idx).to(device),
            torch.from_numpy(weights.astype(np.complex64)).to(device),
        )
        self._banks[key] = bank
        if len(self._banks) > 128:  # tunings come in 0.01 steps, so this holds every value in practice
            self._banks.popitem(last=False)
        return bank

    # --- transform -----------------------------------------------------------------------------------

    def _decimate(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Halve the rate of ``(batch, samples)``; output sample n sits at input sample 2n (zero phase)."""
        half = self.taps.shape[-1] // 2
        y = torch.nn.functional.conv1d(x[:, None, :], self.taps, stride=2, padding=half)[:, 0]
        lengths = (lengths + 1) // 2
        # The filter rings past each clip's end; clear it so a clip reads the same zeros there whether it is
        # alone or padded in a batch (an isolated clip simply ends).
        y = y * (torch.arange(y.shape[-1], device=y.device)[None, :] < lengths[:, None])
        return y, lengths

    def _octave(
        self, x: torch.Tensor, hop: int, n_frames: int, idx: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Kernel responses of one octave: ``x`` ``(batch, samples)`` -> ``(batch, bpo, n_frames)`` magnitudes.

        ``idx``/``weights`` are ``(batch, bpo, W)``: each clip has its own tuned bank.
        """
        b, reach = self.block_size, self.reach
        period = b // hop  # output samples per block period, P
        per_block = (b - 2 * reach) // hop + 1  # frames whose kernels fit inside one block, F
        n_blocks = -(-n_frames // per_block)
        need = (n_blocks - 1) * per_block * hop + b
        x = torch.nn.functional.pad(x, (reach, max(0, need - reach - x.shape[-1])))
        blocks = torch.fft.rfft(x.unfold(-1, b, per_block * hop), dim=-1)  # (batch, blocks, B/2+1)

        batch, bpo, w = idx.shape
        picked = torch.gather(
            blocks[:, :, None, :].expand(batch, n_blocks, bpo, blocks.shape[-1]),
            3,
            idx[:, None].expand(batch, n_blocks, bpo, w),
        )
        z = picked * weights[:, None]
        # Sample every hop-th output: sum the spectrum modulo P bins, then a length-P inverse DFT (times P to
        # undo ifft's 1/P; the 1/B is in the weights).
        wp = -(-w // period) * period
        z = torch.nn.functional.pad(z, (0, wp - w)).view(batch, n_blocks, bpo, wp // period, period).sum(3)
        out = torch.fft.ifft(z, dim=-1)[..., :per_block].abs() * period  # (batch, blocks, bpo, F)
        out = out.permute(0, 2, 1, 3).reshape(batch, bpo, n_blocks * per_block)
        return out[..., :n_frames]

    def forward(self, y: torch.Tensor, lengths: torch.Tensor, tuning: torch.Tensor) -> torch.Tensor:
        """CQT magnitudes.

        Args:
            y: ``(batch, samples)`` float32 at ``sample_rate``, zero after each clip's length.
            lengths: ``(batch,)`` samples per clip. tuning: ``(batch,)`` offsets in fractions of a bin.
        Returns:
            ``(batch, n_bins, 1 + samples // hop_length)`` float32, lowest bin first.
        """
        n_frames = 1 + y.shape[-1] // self.hop_length
        banks = [self._bank(float(t), y.device) for t in tuning.tolist()]
        idx = torch.stack([bk[0] for bk in banks])
        weights = torch.stack([bk[1] for bk in banks])

        x = y
        for _ in range(self.early):
            x, lengths = self._decimate(x, lengths)
        octaves = []
        hop = self.hop0
        for i in range(self.n_octaves):
            mag = self._octave(x, hop, n_frames, idx, weights)
            # librosa scales by sqrt(filter length at the input rate): same kernels, 2**(early + i) times longer.
            octaves.append(mag * 2.0 ** ((self.early + i) / 2))
            if i + 1 < self.n_octaves:
                x, lengths = self._decimate(x, lengths)
                hop //= 2
        return torch.cat(octaves[::-1], dim=1)

    def chroma(self, y: torch.Tensor, lengths: torch.Tensor, tuning: torch.Tensor) -> torch.Tensor:
        """CQT folded onto one octave, ``(batch, bins_per_octave, frames)``; bin 0 is the pitch class of fmin."""
        mag = self.forward(y, lengths, tuning)
        b, _, t = mag.shape
        return mag.view(b, self.n_octaves, self.bins_per_octave, t).sum(1)
