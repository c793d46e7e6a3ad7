"""Audio loading: decoding, mixing down, resampling and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from m3bert.features import AudioError, audio_info, load_audio
from m3bert.features.audio import expected_length

SR_IN, SR_OUT = 48000, 44100


@pytest.fixture
def stereo_wav(tmp_path):
    """1.5 s stereo 48 kHz 16-bit wav: 440 Hz left, 660 Hz right."""
    t = np.arange(int(1.5 * SR_IN)) / SR_IN
    data = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, data, SR_IN, subtype="PCM_16")
    return path, data


def test_stereo_48k_to_mono_44k(stereo_wav):
    path, _ = stereo_wav
    y = load_audio(path, SR_OUT)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == int(1.5 * SR_OUT) == expected_length(int(1.5 * SR_IN), SR_IN, SR_OUT)
    # The mono mix of the two tones, at the new rate (away from the resampler's edge transients).
    t = np.arange(len(y)) / SR_OUT
    want = 0.5 * (0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 660 * t))
    inner = slice(2000, -2000)
    assert np.abs(y[inner] - want[inner]).max() < 2e-3  # 16-bit quantisation and resampler ripple


def test_keep_channels_offset_and_duration(stereo_wav):
    path, data = stereo_wav
    y = load_audio(path, SR_IN, mono=False, offset_s=0.5, duration_s=0.25)
    assert y.shape == (2, int(0.25 * SR_IN))
    # No resampling at the file's own rate: exactly the 16-bit samples of that excerpt.
    want = np.round(data[int(0.5 * SR_IN) : int(0.75 * SR_IN)].T * 32767) / 32768
    np.testing.assert_allclose(y, want, atol=1.5 / 32768)


def test_flac_roundtrip(tmp_path):
    x = (np.random.default_rng(0).standard_normal(22050) * 0.1).astype(np.float32)
    path = tmp_path / "noise.flac"
    sf.write(path, x, 22050, subtype="PCM_24")
    y = load_audio(path, 22050)
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert len(load_audio(path, SR_OUT)) == expected_length(22050, 22050, SR_OUT)


def test_audio_info(stereo_wav):
    path, _ = stereo_wav
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (SR_IN, 2, int(1.5 * SR_IN))
    assert info.duration_s == pytest.approx(1.5)
    assert info.format == "WAV"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    for fn in (lambda: load_audio(path, SR_OUT), lambda: audio_info(path)):
        with pytest.raises(AudioError, match="not found") as err:
            fn()
        assert err.value.path == str(path) and str(path) in str(err.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    for fn in (lambda: load_audio(path, SR_OUT), lambda: audio_info(path)):
        with pytest.raises(AudioError, match="unreadable or corrupt") as err:
            fn()
        assert str(path) in str(err.value)


def test_empty_file_and_offset_past_end(tmp_path, stereo_wav):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1)), SR_IN)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path, SR_OUT)
    with pytest.raises(AudioError, match="no audio samples at offset"):
        load_audio(stereo_wav[0], SR_OUT, offset_s=5.0)


def test_bad_arguments(stereo_wav):
    with pytest.raises(ValueError):
        load_audio(stereo_wav[0], SR_OUT, offset_s=-1)
    with pytest.raises(ValueError):
        load_audio(stereo_wav[0], SR_OUT, duration_s=0)
