"""Feature extractor behaviour that needs no reference: layout, padding, CMVN, devices, building blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.synth import synthetic_music
from m3bert.features import (
    LOGMEL_BLOCKS,
    M3BERT324,
    M3BERT_BLOCKS,
    LogMel128,
    build_feature_extractor,
    cmvn,
)
from m3bert.features.cqt import ConstantQ, halfband_taps

SR = 44100


@pytest.fixture(scope="module")
def m3bert() -> M3BERT324:
    return build_feature_extractor("m3bert324")


def _pad(clips: list[np.ndarray], fill: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack clips into (batch, longest); the padding is ``fill`` or, with fill=nan, random noise."""
    lengths = torch.tensor([len(c) for c in clips])
    rng = np.random.default_rng(seed)
    batch = np.zeros((len(clips), int(lengths.max())), dtype=np.float32)
    for i, c in enumerate(clips):
        batch[i, len(c) :] = rng.standard_normal(batch.shape[1] - len(c)) if math.isnan(fill) else fill
        batch[i, : len(c)] = c
    return torch.from_numpy(batch), lengths


def test_block_layout():
    for blocks, dim in ((M3BERT_BLOCKS, 324), (LOGMEL_BLOCKS, 128)):
        slices = list(blocks.values())
        assert slices[0].start == 0 and slices[-1].stop == dim
        assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:], strict=True))
    assert list(M3BERT_BLOCKS) == ["chroma", "mfcc", "delta_mfcc", "log_mel", "log_cqt_chroma"]
    sizes = [s.stop - s.start for s in M3BERT_BLOCKS.values()]
    assert sizes == [12, 20, 20, 128, 144]


def test_attributes(m3bert):
    lm = build_feature_extractor("logmel128")
    assert isinstance(lm, LogMel128)
    for fx, name, dim in ((m3bert, "m3bert324", 324), (lm, "logmel128", 128)):
        assert fx.name == name and fx.feature_dim == dim
        assert fx.sample_rate == SR and fx.hop_length == 1024
        assert fx.frame_rate == pytest.approx(43.066, abs=1e-3)
        assert fx.num_frames(SR) == 44


def test_output_shapes_and_padding_frames(m3bert):
    clips = [synthetic_music(1.5, SR, seed=1), synthetic_music(0.7, SR, seed=2)]
    batch, lengths = _pad(clips)
    feats, frame_lengths = m3bert(batch, lengths)
    assert feats.dtype == torch.float32
    assert feats.shape == (2, 1 + batch.shape[1] // 1024, 324)
    assert frame_lengths.tolist() == [1 + len(c) // 1024 for c in clips]
    assert torch.isfinite(feats).all()
    assert (feats[1, int(frame_lengths[1]) :] == 0).all()


@pytest.mark.parametrize("name", ["m3bert324", "logmel128"])
def test_batched_equals_one_by_one(name):
    fx = build_feature_extractor(name)
    clips = [synthetic_music(d, SR, seed=s) for s, d in ((3, 2.2), (4, 0.9), (5, 1.6))]
    # Noise in the padding: a clip must not hear what lies past its end.
    batch, lengths = _pad(clips, fill=float("nan"))
    feats, frame_lengths = fx(batch, lengths)
    for i, c in enumerate(clips):
        alone, n = fx(torch.from_numpy(c)[None])
        assert int(n[0]) == int(frame_lengths[i])
        torch.testing.assert_close(feats[i, : int(n[0])], alone[0], atol=1e-4, rtol=0)


def test_chunking_is_transparent():
    fx = build_feature_extractor("m3bert324")
    clips = [synthetic_music(d, SR, seed=s) for s, d in ((6, 1.3), (7, 0.8), (8, 1.1))]
    batch, lengths = _pad(clips)
    whole, fl_whole = fx(batch, lengths)
    fx.chunk_samples = {"cpu": batch.shape[1], "cuda": batch.shape[1]}  # one clip per chunk
    chunked, fl_chunked = fx(batch, lengths)
    assert torch.equal(fl_whole, fl_chunked)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)


def test_cmvn_uses_valid_frames_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 6, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0, 1.0, 3.0]) + 7.0
    x[:, :, 4] = 2.5  # a constant (e.g. silent) dimension
    lengths = torch.tensor([40, 25, 9])
    out = cmvn(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        valid = out[b, :n, [0, 1, 2, 3, 5]]
        torch.testing.assert_close(valid.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
        torch.testing.assert_close(valid.var(0, unbiased=False), torch.ones(5), atol=1e-4, rtol=0)
        assert (out[b, n:] == 0).all()
    assert (out[..., 4] == 0).all()  # zero variance -> zeros, not inf/nan
    # Whatever sits in the padding, the valid frames come out the same.
    y = x.clone()
    y[1, 25:] = 1e6
    torch.testing.assert_close(cmvn(y, lengths), out)


def test_cmvn_without_lengths_normalises_everything():
    x = torch.randn(2, 30, 4) * 3 + 1
    out = cmvn(x)
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least one valid frame"):
        cmvn(x, torch.tensor([30, 0]))


def test_normalize_false_returns_raw_features():
    fx = build_feature_extractor("logmel128", normalize=False)
    y = torch.zeros(1, SR)
    feats, _ = fx(y)
    # Digital silence: every mel band is log(10 * 0 + 1e-6).
    torch.testing.assert_close(feats, torch.full_like(feats, math.log(1e-6)))


def test_digital_silence(m3bert):
    # A clip of pure zeros is finite everywhere (every dim is constant, so CMVN maps it to 0) ...
    feats, _ = m3bert(torch.zeros(1, 2 * SR))
    assert torch.isfinite(feats).all() and (feats == 0).all()
    # ... and a long silent stretch far from any sound gives log(1e-6) in the CQT-chroma block, as in librosa,
    # rather than a normalised pattern of numerical noise.
    raw = build_feature_extractor("m3bert324", normalize=False)
    y = np.concatenate([np.zeros(10 * SR, np.float32), synthetic_music(2.0, SR, seed=9)])
    feats, _ = raw(torch.from_numpy(y)[None])
    cqt_chroma = feats[0, :40, M3BERT_BLOCKS["log_cqt_chroma"]]
    torch.testing.assert_close(cqt_chroma, torch.full_like(cqt_chroma, math.log(1e-6)))


def test_input_validation(m3bert):
    with pytest.raises(ValueError, match="expects audio at 44100 Hz"):
        m3bert(torch.zeros(1, SR), sample_rate=22050)
    with pytest.raises(ValueError, match="at least 9 frames"):
        m3bert(torch.zeros(1, 4000))
    with pytest.raises(ValueError, match="lengths"):
        m3bert(torch.zeros(2, SR), torch.tensor([SR, SR + 1]))
    with pytest.raises(ValueError, match="float tensor"):
        m3bert(torch.zeros(1, 1, SR))
    with pytest.raises(KeyError, match="unknown feature set"):
        build_feature_extractor("mfcc13")


def test_single_waveform_accepted(m3bert):
    y = torch.from_numpy(synthetic_music(0.5, SR, seed=3))
    feats, frame_lengths = m3bert(y)
    assert feats.shape == (1, 1 + len(y) // 1024, 324) and frame_lengths.tolist() == [feats.shape[1]]


def test_cqt_kernel_closed_form_matches_fft():
    cq = ConstantQ()
    tuning = -0.31
    spectra, _ = cq._kernel_spectra(tuning)
    bpo, b = cq.bins_per_octave, cq.block_size
    nu = cq.fmin * 2.0 ** ((np.arange(cq.n_bins - bpo, cq.n_bins) + tuning) / bpo) / cq.rate0
    for i in (0, 77, bpo - 1):
        length = cq.q / nu[i]
        m = np.arange(math.floor(-length / 2), math.floor(length / 2))
        win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(len(m)) / len(m))
        buf = np.zeros(b, dtype=complex)
        buf[m % b] = win * np.exp(2j * np.pi * nu[i] * m) / win.sum()
        np.testing.assert_allclose(spectra[i], np.fft.fft(buf), atol=1e-12)


def test_halfband_filter_response():
    taps = halfband_taps(transition_start=0.1)
    resp = np.abs(np.fft.rfft(taps, 1 << 16))
    f = np.linspace(0, 0.5, len(resp))
    # Flat where the lower octaves (and their kernels' skirts) live; nothing aliases back onto them.
    assert np.abs(resp[f <= 0.105] - 1).max() < 1e-5
    assert 20 * np.log10(resp[f >= 0.395].max()) < -110


def test_cqt_rejects_unsupported_settings():
    with pytest.raises(ValueError, match="too low"):
        ConstantQ(sample_rate=8000)
    with pytest.raises(ValueError, match="divisible"):
        ConstantQ(hop_length=1000)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    fx = build_feature_extractor("m3bert324")
    clips = [synthetic_music(d, SR, seed=s) for s, d in ((1, 2.0), (2, 1.4))]
    batch, lengths = _pad(clips)
    cpu, fl_cpu = fx(batch, lengths)
    gpu, fl_gpu = fx.to("cuda")(batch.cuda(), lengths.cuda())
    assert torch.equal(fl_cpu, fl_gpu.cpu())
    # Different FFT/matmul kernels: compare per block by correlation and a loose max.
    for name, sl in M3BERT_BLOCKS.items():
        a, b = cpu[..., sl].flatten(), gpu.cpu()[..., sl].flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.999, name
        assert (a - b).abs().max() < 0.5, name
