"""Constant-Q magnitudes in torch: a multirate filterbank evaluated block-wise in the FFT domain.

What is computed is librosa's full CQT (``librosa.cqt`` with its defaults: Hann-windowed complex
exponentials, filter length ``Q * sr / f`` with ``Q = 1 / alpha`` for equal log spacing, each filter scaled
to unit L1 norm, output times sqrt(filter length in samples at the input rate)), as magnitudes on the frame
grid ``t * hop_length``. librosa computes it octave by octave, halving the sample rate each time so the
filters of every octave are the same set of 144 kernels (in samples); we keep that structure and change how
each octave is evaluated:

* Decimation by 2 is a short linear-phase half-band FIR (Kaiser window, ~120 dB stopband). It only has to be
  flat where the lower octaves live (below ~0.1 of the rate at 44.1 kHz) and reject what would alias there
  (above ~0.4), a wide transition band, so ~30 taps suffice; half of them are zero, which the polyphase
  evaluation skips.
* Instead of one 4096-point FFT per output frame and octave (what librosa's STFT does), the octave signal is
  cut into overlapping blocks of ``block_size`` samples, each holding ``F`` frames plus a kernel's reach
  on either side (overlap-save). One FFT per block, then each kernel's narrow spectral support is
  multiplied in. Reading the filtered block every ``hop`` samples is, in the frequency domain, summing the
  spectrum modulo ``P = block_size / hop`` bins followed by a length-``P`` inverse FFT; a per-kernel phase
  ramp that this leaves on the output does not change magnitudes.

The support is chosen by librosa's own rule (``sparsity=0.01``): drop the smallest spectral coefficients of
each kernel that together hold 1 % of its L1 mass (about -42 dB of the peak), which keeps ~25-45 of 4097
bins. This truncation sets the CQT's leakage floor for tones far from a bin, and that floor is visible in
the log-CQT-chroma features; copying librosa's rule (rather than keeping more of the spectrum) is what
matches it. The kernels are sampled on a finer grid (``block_size`` vs librosa's 4096 points per octave) and
resampling uses our FIR instead of soxr, so agreement is close but not bit-exact.
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
        sparsity: fraction of each kernel's spectral L1 mass (its smallest coefficients) to drop, as librosa's
            ``cqt(sparsity=...)``; 0 keeps a window of +-``max_support // 2`` bins.
        max_support: cap on the kept bins per kernel (and the window used when ``sparsity=0``).
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        hop_length: int = 1024,
        fmin: float = 32.70319566257483,
        bins_per_octave: int = 144,
        n_octaves: int = 7,
        block_size: int = 8192,
        sparsity: float = 0.01,
        max_support: int = 256,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.fmin = sample_rate, hop_length, fmin
        self.bins_per_octave, self.n_octaves = bins_per_octave, n_octaves
        self.n_bins = bins_per_octave * n_octaves
        self.block_size, self.sparsity, self.max_support = block_size, sparsity, max_support
        r = 2.0 ** (2.0 / bins_per_octave)
        self.q = 1.0 / ((r - 1) / (r + 1))  # quality factor of equally log-spaced bins (librosa's 1 / alpha)

        # Early decimation: run the top octave at sr / 2**d for the largest d that keeps its kernels (tuned up
        # by half a bin at most) below 0.2 cycles/sample, as librosa does. At low input rates (d = 0) the
        # top octave may reach up to 0.4 cycles/sample; the decimation filter is designed for where it ends.
        f_top = fmin * 2.0 ** ((self.n_bins - 1 + 0.5) / bins_per_octave)
        top_edge = f_top * (1 + 0.5 * _HANN_BANDWIDTH / self.q)
        if top_edge / sample_rate > 0.4:
            raise ValueError(
                f"sample_rate={sample_rate} Hz is too low for a {n_octaves}-octave CQT from {fmin:.1f} Hz "
                f"(top bin {f_top:.0f} Hz); use >= {math.ceil(top_edge / 0.4)} Hz or fewer octaves"
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

        # Longest kernel (lowest bin of an octave, tuned down half a bin) sets the block overlap.
        nu_low = fmin * 2.0 ** ((self.n_bins - bins_per_octave - 0.5) / bins_per_octave) / self.rate0
        self.reach = int(math.ceil(self.q / nu_low / 2)) + 2  # samples either side of a frame centre
        # librosa frames each octave with an FFT of the next power of two above the longest kernel.
        self.span = 2 ** int(math.ceil(math.log2(self.q / nu_low))) // 2
        if 2 * self.reach >= block_size:
            raise ValueError(f"block_size={block_size} must exceed twice the longest kernel ({2 * self.reach})")
        self._set_support()
        self._banks: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

        # Decimating from rate r to r/2 must keep everything the lower octaves use intact: the next octave's
        # top kernel (half this octave's top frequency) plus half its spectral support, which at the lower
        # rate is W/2 bins of a block, i.e. W / (4 B) in cycles/sample at rate r.
        passband = f_top / self.rate0 / 2 + (self.support / 4 + 1) / block_size
        taps = halfband_taps(transition_start=passband)
        centre = len(taps) // 2
        self.centre_tap = float(taps[centre])
        self.odd_taps = [float(h) for h in taps[centre + 1 :: 2]]  # offsets 1, 3, 5, ...

    # --- kernels -------------------------------------------------------------------------------------

    def _kernel_spectra(self, tuning: float, bins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """DFT over a block of one octave's kernels, ``(bins_per_octave, len(bins))``, and sqrt-length scales.

        Each kernel is librosa's: ``n`` samples at positions ``floor(-L/2) .. floor(L/2) - 1`` of
        ``exp(2 pi i nu m)`` under a periodic Hann window, divided by the window's sum (n / 2). Its DFT has a
        closed form, so only the requested ``bins`` (default: all ``block_size``) are evaluated: the Hann
        window is 1/2 - (e^{2 pi i j/n} + e^{-2 pi i j/n}) / 4, and each term sums a geometric series, the
        Dirichlet kernel sum_j e^{i phi j} = e^{i phi (n-1)/2} sin(n phi / 2) / sin(phi / 2).
        """
        bpo, b = self.bins_per_octave, self.block_size
        k = np.arange(self.n_bins - bpo, self.n_bins)
        nu = self.fmin * 2.0 ** ((k + tuning) / bpo) / self.rate0  # cycles/sample at the octave's rate
        lengths = self.q / nu
        first = np.floor(-lengths / 2)
        n = np.floor(lengths / 2) - first
        bins = np.arange(b)[None, :] if bins is None else bins
        phi = 2 * np.pi * (nu[:, None] - bins / b)
        n_ = n[:, None]

        def dirichlet(p: np.ndarray) -> np.ndarray:
            half = np.sin(p / 2)
            small = np.abs(half) < 1e-12
            ratio = np.sin(n_ * p / 2) / np.where(small, 1.0, half)
            # At p = 0 (mod 2 pi) the sum is n terms of 1 (times the sign of the wrap).
            ratio = np.where(small, n_ * np.cos(n_ * p / 2) / np.where(small, np.cos(p / 2), 1.0), ratio)
            return np.exp(0.5j * p * (n_ - 1)) * ratio

        step = 2 * np.pi / n_
        win_sum = 0.5 * dirichlet(phi) - 0.25 * dirichlet(phi + step) - 0.25 * dirichlet(phi - step)
        spectra = np.exp(1j * phi * first[:, None]) * win_sum / (n_ / 2)
        # sqrt(filter length at the top octave's rate); the per-octave factor is applied in forward.
        return spectra, np.sqrt(lengths)

    def _set_support(self) -> None:
        """Fix the support width W and, per kernel, the kept level relative to its peak.

        The kept set follows from the full spectrum (the 1 % is of the whole L1 mass), which is costly to
        evaluate, so it is done once, untuned. A tuning moves kernels by under half a bin, which leaves their
        spectral shape, and so the relative level, unchanged to within a fraction of a percent.
        """
        bins = np.arange(self.block_size // 2 + 1)[None, :]
        mags = np.abs(self._kernel_spectra(0.0, bins)[0])
        peak = mags.max(axis=1)
        if self.sparsity > 0:
            srt = np.sort(mags, axis=1)
            cum = np.cumsum(srt / mags.sum(axis=1, keepdims=True), axis=1)
            cut = srt[np.arange(len(srt)), np.argmin(cum < self.sparsity, axis=1)]
            keep = mags >= cut[:, None]
            first, last = keep.argmax(axis=1), keep.shape[1] - 1 - keep[:, ::-1].argmax(axis=1)
            # A couple of bins of slack either side for the shift a tuning brings, then a multiple of 8.
            width = int((last - first + 1).max()) + 4
            self.rel_floor = cut / peak
        else:
            width = self.max_support
            self.rel_floor = np.zeros(len(peak))
        self.support = min(self.max_support, width + (-width) % 8)

    def _bank(self, tuning: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Support bins ``(bpo, W)`` and weights ``(bpo, W)`` complex64 for one tuning, cached (LRU)."""
        key = (round(tuning * 1e6), str(device))
        if key in self._banks:
            self._banks.move_to_end(key)
            return self._banks[key]
        b, w = self.block_size, self.support
        # Each kernel's spectrum peaks at its centre frequency; take W bins around it and zero, as librosa
        # does, the coefficients below the kernel's kept level.
        k = np.arange(self.n_bins - self.bins_per_octave, self.n_bins)
        nu = self.fmin * 2.0 ** ((k + tuning) / self.bins_per_octave) / self.rate0
        centre = np.round(nu * b).astype(np.int64)
        start = np.clip(centre - w // 2, 0, b // 2 + 1 - w)
        idx = start[:, None] + np.arange(w)[None, :]
        spectra, scale = self._kernel_spectra(tuning, idx)
        mags = np.abs(spectra)
        spectra = np.where(mags >= self.rel_floor[:, None] * mags.max(axis=1, keepdims=True), spectra, 0.0)
        # c[p] = sum_m x[p + m] conj(kernel[m]) has spectrum X * conj(K); evaluating it at the frame centre
        # p = reach + f * hop inside a block is the phase e^{2 pi i j reach / B}; 1/B is the inverse DFT's.
        weights = np.conj(spectra)
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
        """Halve the rate of ``(batch, samples)``; output sample n sits at input sample 2n (zero phase).

        A half-band filter's taps vanish at every even offset but the centre (the centre is 1/2), so
        y[n] = x[2n] / 2 + sum_p h[2p+1] (x[2n+2p+1] + x[2n-2p-1]): a few vector multiply-adds on the odd
        samples, far cheaper than a strided convolution.
        """
        n_out = (x.shape[-1] + 1) // 2
        even = x[:, 0::2]
        odd = x[:, 1::2]
        n_pairs = len(self.odd_taps)
        odd = torch.nn.functional.pad(odd, (n_pairs, n_pairs + n_out - odd.shape[-1]))
        y = even * self.centre_tap
        pair = torch.empty_like(y)
        for p, h in enumerate(self.odd_taps):
            # x[2n + 2p + 1] = odd[n + p] and x[2n - 2p - 1] = odd[n - p - 1], shifted by the padding.
            ahead, behind = n_pairs + p, n_pairs - p - 1
            torch.add(odd[:, ahead : ahead + n_out], odd[:, behind : behind + n_out], out=pair)
            y.add_(pair, alpha=h)
        lengths = (lengths + 1) // 2
        # The filter rings past each clip's end; clear it so a clip reads the same zeros there whether it is
        # alone or padded in a batch (an isolated clip simply ends).
        return y.masked_fill_(torch.arange(n_out, device=y.device)[None, :] >= lengths[:, None], 0.0), lengths

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
        if wp != w:
            z = torch.nn.functional.pad(z, (0, wp - w))
        z = z.view(batch, n_blocks, bpo, wp // period, period).sum(3)
        out = torch.view_as_real(torch.fft.ifft(z, dim=-1)[..., :per_block])
        out = (out[..., 0].square() + out[..., 1].square()).sqrt() * period  # (batch, blocks, bpo, F)
        out = out.permute(0, 2, 1, 3).reshape(batch, bpo, n_blocks * per_block)[..., :n_frames]
        return out

    def _heard(self, nonzeros: torch.Tensor, span: int) -> torch.Tensor:
        """``(batch, frames)`` bool: any non-zero input sample within ``span`` samples of each frame centre?

        ``nonzeros``: ``(batch, samples + 1)`` running count of non-zero input samples (0 first).
        """
        n = nonzeros.shape[-1] - 1
        centre = torch.arange(1 + n // self.hop_length, device=nonzeros.device) * self.hop_length
        hi = (centre + span + 1).clamp(max=n)
        lo = (centre - span).clamp(0, n)
        return (nonzeros[:, hi] - nonzeros[:, lo]) > 0

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

        # Truncating the kernel spectra spreads a faint tail over the whole block, so stretches of digital
        # silence would respond to sound anywhere in the block (and the per-frame chroma normalisation blows
        # that up to full scale). librosa's frames see +-half its FFT size around the centre: where the input
        # is silent that far, it gives exact zeros, and so do we. Nearer to sound both give a low leakage floor.
        nonzeros = torch.nn.functional.pad((y != 0).to(torch.int32).cumsum(-1), (1, 0))

        x = y
        for _ in range(self.early):
            x, lengths = self._decimate(x, lengths)
        octaves = []
        hop = self.hop0
        for i in range(self.n_octaves):
            mag = self._octave(x, hop, n_frames, idx, weights)
            # librosa scales by sqrt(filter length at the input rate): same kernels, 2**(early + i) times longer.
            scale = 2.0 ** ((self.early + i) / 2)
            octaves.append(mag * (self._heard(nonzeros, self.span * 2 ** (self.early + i)) * scale)[:, None, :])
            if i + 1 < self.n_octaves:
                x, lengths = self._decimate(x, lengths)
                hop //= 2
        return torch.cat(octaves[::-1], dim=1)

    def chroma(self, y: torch.Tensor, lengths: torch.Tensor, tuning: torch.Tensor) -> torch.Tensor:
        """CQT folded onto one octave, ``(batch, bins_per_octave, frames)``; bin 0 is the pitch class of fmin."""
        mag = self.forward(y, lengths, tuning)
        b, _, t = mag.shape
        return mag.view(b, self.n_octaves, self.bins_per_octave, t).sum(1)
