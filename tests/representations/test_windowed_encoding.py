"""Windowed encoding of long inputs, and the waveform / path API around it.

The encoder attends over its whole input, so a frame's hidden state depends on the window it was computed in; a
windowed result can't equal a single pass over a longer input. What must hold: an input that fits one window is
one pass, and every frame of a stitched result is bit-for-bit the frame computed by running its own window alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch
from tiny_models import export_tiny, tiny_encoder, write_audio

from m3bert.features import AudioError, load_audio
from m3bert.inference.pretrained import FrontEnd
from m3bert.inference.representations import Representations, plan_windows, resolve_layers


@pytest.mark.parametrize(
    "frames,window,overlap,r",
    [
        (10, 4, 2, 1),
        (300, 64, 16, 1),
        (301, 64, 16, 2),
        (65, 64, 0, 1),
        (129, 64, 32, 4),
        (64, 64, 16, 1),
        (5, 64, 16, 2),
    ],
)
def test_windows_cover_every_output_frame_once_with_context_on_both_sides(frames, window, overlap, r):
    windows = plan_windows(frames, window, overlap, r)
    tokens = -(-frames // r)
    assert windows[0].keep_start == 0 and windows[-1].keep_stop == tokens
    for w, nxt in zip(windows, windows[1:]):
        assert w.keep_stop == nxt.keep_start  # contiguous: nothing dropped, nothing twice
    for i, w in enumerate(windows):
        assert 0 <= w.start < w.stop <= frames and w.stop - w.start <= window and w.start % r == 0
        assert w.start // r <= w.keep_start < w.keep_stop <= -(-w.stop // r)  # kept part lies inside the window
        if i > 0:
            assert w.keep_start * r - w.start >= overlap // 2 - r  # left context of the kept part
        if i < len(windows) - 1:
            assert w.stop - w.keep_stop * r >= overlap // 2  # right context
            assert w.stop - w.start == window


def test_bad_window_settings_are_refused():
    with pytest.raises(ValueError, match="multiples"):
        plan_windows(100, 64, 64)
    with pytest.raises(ValueError, match="multiples"):
        plan_windows(100, 63, 16, 2)
    with pytest.raises(ValueError, match="overlap_frames"):
        Representations(tiny_encoder(), FrontEnd("m3bert324"), window_frames=64, overlap_frames=80)
    with pytest.raises(ValueError, match="layers must be"):
        resolve_layers([0, 5], 3)
    assert resolve_layers("all", 3) == (0, 1, 2) and resolve_layers([-1, 1], 3) == (2, 1)


def test_a_clip_that_fits_one_window_is_one_pass():
    encoder = tiny_encoder(input_dim=128)
    rep = Representations(encoder, FrontEnd("logmel128"), window_frames=64)
    features = torch.randn(50, 128)
    (states,) = rep.encode([features])
    with torch.no_grad():
        direct = encoder(features[None]).hidden_states
    assert states.shape == (3, 50, 32)
    for layer in range(3):
        assert torch.equal(states[layer], direct[layer][0])


@pytest.mark.parametrize("downsample", [1, 2])
def test_stitched_frames_equal_their_own_window_run_alone(downsample):
    encoder = tiny_encoder(input_dim=128, downsample=downsample)
    window, overlap = 64, 16
    features = torch.randn(301, 128)
    one_at_a_time = Representations(
        encoder, FrontEnd("logmel128"), window_frames=window, overlap_frames=overlap, batch_size=1
    )
    (stitched,) = one_at_a_time.encode([features])
    assert stitched.shape == (3, -(-301 // downsample), 32)
    for w in plan_windows(301, window, overlap, downsample):
        with torch.no_grad():
            alone = torch.stack(encoder(features[None, w.start : w.stop]).hidden_states)[:, 0]
        offset = w.start // downsample
        kept = alone[:, w.keep_start - offset : w.keep_stop - offset]
        assert torch.equal(stitched[:, w.keep_start : w.keep_stop], kept)
    # Batching windows (with padding for the shorter last one) changes nothing beyond float rounding.
    batched = Representations(
        encoder, FrontEnd("logmel128"), window_frames=window, overlap_frames=overlap, batch_size=4
    )
    torch.testing.assert_close(batched.encode([features])[0], stitched, atol=1e-5, rtol=1e-5)
    streamed = torch.cat([chunk for _, chunk in one_at_a_time.stream(features.numpy())], dim=1)
    assert torch.equal(streamed, stitched)


def test_timestamps_are_frame_centres_in_seconds():
    assert torch.allclose(
        Representations(tiny_encoder(), FrontEnd("m3bert324")).timestamps(3),
        torch.tensor([0, 1024 / 44100, 2048 / 44100], dtype=torch.float64),
    )
    stacked = Representations(tiny_encoder(downsample=2), FrontEnd("m3bert324"))
    assert torch.allclose(stacked.timestamps(2), torch.tensor([0.5, 2.5], dtype=torch.float64) * 1024 / 44100)


def test_waveforms_at_any_rate_paths_and_batches(tmp_path):
    rep = Representations.from_pretrained(
        export_tiny(tmp_path / "model", "logmel128"), layers=[0, -1], window_frames=64
    )
    path = write_audio(tmp_path / "clip.wav", 3.0, 22050, channels=2)
    from_path = rep(path)
    assert from_path.hidden_states.shape == (2, 1 + 132300 // 1024, 32) and from_path.layers == (0, 2)
    assert torch.all(torch.diff(from_path.timestamps) > 0)
    stereo = load_audio(path, 22050, mono=False)
    mixed = stereo.mean(0)
    from_wave = rep(torch.from_numpy(mixed), sample_rate=22050)
    torch.testing.assert_close(from_wave.hidden_states, from_path.hidden_states, atol=1e-4, rtol=1e-4)
    resampled = soxr.resample(mixed, 22050, 44100, quality="HQ")
    both = rep(np.stack([resampled, resampled]), sample_rate=44100)  # a 2-D array is a batch of mono clips
    assert len(both) == 2 and torch.allclose(both[0].hidden_states, both[1].hidden_states)
    mixed_list = rep([path, resampled[:5000]], sample_rate=44100)
    assert [o.hidden_states.shape[1] for o in mixed_list] == [130, 1 + 5000 // 1024]
    assert rep(resampled[:100], sample_rate=44100).hidden_states.shape[1] == 1  # shorter than a hop: padded
    with pytest.raises(ValueError, match="pass sample_rate="):
        rep(resampled)
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        rep(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVE not really")
    with pytest.raises(AudioError, match="bad.wav: unreadable or corrupt"):
        rep(tmp_path / "bad.wav")


def test_long_inputs_are_analysed_in_segments_that_match_the_whole(tmp_path):
    # log-mel frames are local, so segments with a little context reproduce the whole-clip features (the m3bert324
    # set's tuning estimate is per segment, which is why segments are 10 minutes by default).
    encoder = tiny_encoder(input_dim=128)
    wave = np.random.default_rng(0).standard_normal(44100 * 12).astype(np.float32) * 0.1
    whole = Representations(encoder, FrontEnd("logmel128")).features([wave])[0]
    segmented = Representations(encoder, FrontEnd("logmel128"), segment_seconds=3.0, context_seconds=0.1)
    torch.testing.assert_close(segmented.features([wave])[0], whole, atol=1e-4, rtol=1e-4)
    write_audio(tmp_path / "long.flac", 12.0, 32000)
    from_file = torch.from_numpy(segmented.file_features(tmp_path / "long.flac", memmap=tmp_path / "scratch.npy"))
    reference = Representations(encoder, FrontEnd("logmel128")).file_features(tmp_path / "long.flac")
    assert from_file.shape == reference.shape == (1 + 12 * 44100 // 1024, 128)
    torch.testing.assert_close(from_file, torch.from_numpy(reference), atol=2e-3, rtol=1e-3)
