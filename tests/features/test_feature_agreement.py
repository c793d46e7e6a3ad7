"""The torch extractors against the librosa reference (needs the dev extra: librosa)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")

from benchmarks.reference import reference_features, reference_tuning  # noqa: E402
from benchmarks.synth import synthetic_music  # noqa: E402
from m3bert.features import M3BERT_BLOCKS, SpectralConfig, build_feature_extractor  # noqa: E402
from m3bert.features.cqt import ConstantQ  # noqa: E402
from m3bert.features.spectral import stft_magnitude, window  # noqa: E402
from m3bert.features.tuning import estimate_tuning  # noqa: E402

SR = 44100

# Max |torch - librosa| per block, in units of the per-dimension standard deviation (the features are CMVN'd).
#
# chroma, MFCC, delta-MFCC, log-mel: the torch code does the same arithmetic as librosa (same windows, the
# same filterbank formulas in float64, same dB floor, same tuning estimate bit for bit), so the only
# difference is float32 rounding in the FFT and matrix products, ~1e-6 relative; the log and dB only magnify
# that where a value approaches its floor. Measured <= 1e-4. A bound of 1e-2 keeps 100x headroom and still
# catches any convention slip (window, norm, centring, top_db, tuning), which moves these blocks by O(0.1-1).
#
# log CQT-chroma: our constant-Q filterbank is the same one (librosa's kernels, its 1 % spectral
# sparsification rule, its scaling) but evaluated differently: overlap-save blocks on an 8192-point grid
# and our own decimation filter, where librosa takes one rect-windowed 4096-point FFT per frame and octave
# and resamples with soxr. Both truncate each kernel's spectrum at ~-42 dB, at different grid points, so
# their leakage into bins far from any partial differs by ~0.5 % of the frame's strongest response
# (measured: <= 0.8 % on raw CQT magnitudes). After the inf-normalisation, log(10 x + 1e-6) turns an absolute
# error d at a weak chroma value x into ~d / x: with the -45 dB noise floor of these clips the weakest bins sit
# around x ~ 0.02-0.05, so up to ~0.1-0.2 in log units, and CMVN divides by per-dimension deviations of
# ~0.6: <= ~0.3 std. Measured max 0.08-0.3, 99th percentile ~0.03. We bound the max at 0.5 and the 99th
# percentile at 0.06, so a typical frame must agree ~20x tighter than the worst one.
MAX_ABS_DIFF = {"chroma": 1e-2, "mfcc": 1e-2, "delta_mfcc": 1e-2, "log_mel": 1e-2, "log_cqt_chroma": 0.5}
P99_ABS_DIFF = {"chroma": 1e-3, "mfcc": 1e-3, "delta_mfcc": 1e-3, "log_mel": 1e-3, "log_cqt_chroma": 0.06}


def _reference(y: np.ndarray, name: str = "m3bert324") -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's "n_fft too large" on the short lowest-octave signals
        return reference_features(y, name)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    # Different lengths (so the batch has padding) and seeds (so tunings and content differ).
    return [synthetic_music(4.0, SR, seed=0), synthetic_music(3.3, SR, seed=7)]


@pytest.fixture(scope="module")
def pairs(clips) -> list[tuple[np.ndarray, np.ndarray]]:
    """(librosa, torch) features per clip; torch runs the clips as one padded batch."""
    fx = build_feature_extractor("m3bert324")
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    feats, frame_lengths = fx(batch, lengths)
    return [(_reference(c), feats[i, : int(frame_lengths[i])].numpy()) for i, c in enumerate(clips)]


@pytest.mark.parametrize("block", list(M3BERT_BLOCKS))
def test_blocks_agree_with_librosa(pairs, block):
    sl = M3BERT_BLOCKS[block]
    for ref, ours in pairs:
        assert ref.shape == ours.shape
        a, b = ref[:, sl], ours[:, sl]
        corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        diff = np.abs(a - b)
        assert corr >= 0.99, f"{block}: Pearson r = {corr:.5f}"
        assert diff.max() <= MAX_ABS_DIFF[block], f"{block}: max |diff| = {diff.max():.4f}"
        assert np.quantile(diff, 0.99) <= P99_ABS_DIFF[block], f"{block}: p99 |diff| = {np.quantile(diff, 0.99):.4f}"


def test_logmel128_agrees_with_librosa(clips):
    fx = build_feature_extractor("logmel128")
    y = clips[1]
    ours = fx(torch.from_numpy(y)[None])[0][0].numpy()
    ref = _reference(y, "logmel128")
    assert ours.shape == ref.shape == (1 + len(y) // 1024, 128)
    assert np.abs(ours - ref).max() <= 1e-2


@pytest.mark.parametrize("seed", [0, 3, 105])
def test_tuning_estimates_are_librosas(seed):
    # Bit-identical, not just close: the tuning is a histogram mode and picks a different grid if one
    # peak lands in a different bin. Seed 105 is a near-tie that once exposed float32 rounding differences.
    y = synthetic_music(5.0 if seed == 105 else 4.0, SR, seed=seed)
    ref_stft, ref_cqt = reference_tuning(y)
    yt = torch.from_numpy(y)[None]
    power = stft_magnitude(yt, 2048, 1024, window("hamming", 2048), power=2.0)
    ours_stft = estimate_tuning(power, torch.tensor([power.shape[-1]]), SR, 2048, bins_per_octave=12)
    power = stft_magnitude(yt, 2048, 512, window("hann", 2048), power=2.0)
    ours_cqt = estimate_tuning(power, torch.tensor([power.shape[-1]]), SR, 2048, bins_per_octave=144, sqrt=True)
    assert float(ours_stft[0]) == ref_stft
    assert float(ours_cqt[0]) == ref_cqt


def test_cqt_magnitudes_match_librosa(clips):
    y, tuning = clips[0], 0.23
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.abs(librosa.cqt(y, sr=SR, hop_length=1024, n_bins=1008, bins_per_octave=144, tuning=tuning))
    ours = ConstantQ()(torch.from_numpy(y)[None], torch.tensor([len(y)]), torch.tensor([tuning]))[0].numpy()
    assert ours.shape == ref.shape
    # Same scale per bin (librosa's sqrt(length) normalisation): where a bin carries a partial (within
    # ~10 dB of its frame's maximum, so leakage does not dominate) the two agree to a fraction of a percent ...
    strong = ref > 0.3 * ref.max(axis=0, keepdims=True)
    ratios = [np.median(ours[k, strong[k]] / ref[k, strong[k]]) for k in range(ref.shape[0]) if strong[k].sum() >= 3]
    assert len(ratios) > 50
    assert np.abs(np.array(ratios) - 1).max() < 1e-2
    # ... and errors bounded relative to each frame's strongest bin (see the block bounds above).
    assert (np.abs(ours - ref) / ref.max(axis=0)).max() < 0.02


@pytest.mark.parametrize("n_samples", [9 * 1024 - 1, 9 * 1024, 44100, 43 * 1024 + 1023, 129 * 1024 + 1023])
def test_frame_count_matches_librosa(n_samples):
    # n % 1024 == 1023 is where librosa's chroma_cqt alone returns one extra frame; the STFT count is the contract.
    y = synthetic_music(n_samples / SR + 0.01, SR, seed=1)[:n_samples]
    assert len(y) == n_samples
    expected = librosa.stft(y, n_fft=2048, hop_length=1024).shape[-1]
    for name in ("m3bert324", "logmel128"):
        fx = build_feature_extractor(name)
        feats, frame_lengths = fx(torch.from_numpy(y)[None])
        assert feats.shape[1] == int(frame_lengths[0]) == expected == fx.num_frames(n_samples)
    assert _reference(y).shape[0] == expected


@pytest.mark.parametrize("sample_rate", [22050, 16000])
def test_other_sample_rates_agree_with_librosa(sample_rate):
    # Below ~21 kHz there is no early decimation and, at 16 kHz, the top octave sits above 0.2 cycles/sample.
    cfg = replace(SpectralConfig(), sample_rate=sample_rate)
    y = synthetic_music(3.0, sample_rate, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference_features(y, cfg=cfg)
    ours = build_feature_extractor("m3bert324", sample_rate=sample_rate)(torch.from_numpy(y)[None])[0][0].numpy()
    for block, sl in M3BERT_BLOCKS.items():
        a, b = ref[:, sl], ours[:, sl]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99, block
        assert np.abs(a - b).max() <= MAX_ABS_DIFF[block], block


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_long_clips_agree_with_librosa(seed):
    y = synthetic_music(30.0, SR, seed=seed)
    ref = _reference(y)
    ours = build_feature_extractor("m3bert324")(torch.from_numpy(y)[None])[0][0].numpy()
    for block, sl in M3BERT_BLOCKS.items():
        a, b = ref[:, sl], ours[:, sl]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99, block
        assert np.abs(a - b).max() <= MAX_ABS_DIFF[block], block
