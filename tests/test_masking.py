import pytest
import torch

from m3bert.masking import Masker
from m3bert.masking.masker import KEEP, RANDOM, ZERO


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-d bool tensor."""
    padded = torch.cat([torch.tensor([False]), row, torch.tensor([False])]).int()
    edges = padded.diff()
    return ((edges == -1).nonzero() - (edges == 1).nonzero()).flatten().tolist()


def frame_codes(masker, lengths, frames=400, channels=4, seed=0):
    return masker.codes(lengths, frames, channels, torch.Generator().manual_seed(seed))[:, :, 0]


@pytest.mark.parametrize("ratio", [0.1, 0.15, 0.3])
def test_frame_masking_realises_the_ratio(ratio):
    lengths = torch.randint(200, 400, (256,), generator=torch.Generator().manual_seed(1))
    codes = frame_codes(Masker(ratio, frames={}), lengths)
    realised = (codes > 0).sum(1).float() / lengths
    assert abs(realised.mean().item() - ratio) < 0.01
    assert realised.std().item() < 0.03


def test_frame_spans_stay_in_bounds_and_apart():
    masker = Masker(0.15, frames={"min_span": 2, "max_span": 7})
    lengths = torch.full((128,), 300)
    codes = frame_codes(masker, lengths)
    spans = [n for row in codes > 0 for n in runs(row)]
    assert min(spans) >= 2 and max(spans) <= 7
    assert len(set(spans)) > 3  # lengths do vary


def test_padding_is_never_masked():
    lengths = torch.tensor([400, 37, 5, 120])
    masker = Masker(0.3, frames={}, channels={"channel_range": [0, 4], "min_width": 1, "max_width": 2})
    for seed in range(20):
        codes = masker.codes(lengths, 400, 4, torch.Generator().manual_seed(seed))
        for row, n in enumerate(lengths):
            assert not codes[row, n:].any()


def test_same_seed_same_mask_other_seed_other_mask():
    lengths = torch.tensor([300, 200])
    masker = Masker(0.15, frames={}, channels={"channel_range": [52, 324]})
    a = masker.codes(lengths, 300, 324, torch.Generator().manual_seed(7))
    b = masker.codes(lengths, 300, 324, torch.Generator().manual_seed(7))
    c = masker.codes(lengths, 300, 324, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_channel_band_inside_its_range_over_all_valid_frames():
    masker = Masker(0.0, channels={"channel_range": [52, 324], "min_width": 8, "max_width": 32})
    lengths = torch.randint(10, 50, (500,), generator=torch.Generator().manual_seed(0))
    codes = masker.codes(lengths, 50, 324, torch.Generator().manual_seed(0)) > 0
    bands = codes[:, 0, :]
    for row, n in enumerate(lengths):
        cols = bands[row].nonzero().flatten()
        assert 52 <= cols.min() and cols.max() < 324
        assert 8 <= len(cols) <= 32 and runs(bands[row]) == [len(cols)]  # one contiguous band
        assert torch.equal(codes[row, :n], bands[row].expand(int(n), -1))
    widths = bands.sum(1).float()
    assert abs(widths.mean().item() - 20) < 1.5  # uniform on [8, 32]


def test_patch_masking_realises_the_ratio_on_whole_patches():
    masker = Masker(0.2, patches={"patch_frames": 4, "patch_channels": 8, "channel_range": [0, 64]})
    lengths = torch.full((64,), 80)
    codes = masker.codes(lengths, 80, 64, torch.Generator().manual_seed(0)) > 0
    assert abs(codes.float().mean().item() - 0.2) < 0.01
    blocks = codes.view(64, 20, 4, 8, 8).float().mean((2, 4))
    assert set(blocks.unique().tolist()) <= {0.0, 1.0}  # patches are masked whole


def test_replacement_policies():
    torch.manual_seed(0)
    features = torch.randn(64, 300, 6) + 10.0  # nothing is zero by chance
    lengths = torch.full((64,), 300)
    lengths[0] = 100
    masker = Masker(0.15, frames={})
    codes = masker.codes(lengths, 300, 6, torch.Generator().manual_seed(0))
    out = masker(features, lengths, torch.Generator().manual_seed(0))
    assert torch.equal(out.mask, codes > 0)
    shares = torch.stack([(codes == c).sum() for c in (ZERO, RANDOM, KEEP)]).float() / (codes > 0).sum()
    torch.testing.assert_close(shares, torch.tensor([0.8, 0.1, 0.1]), atol=0.03, rtol=0)
    assert (out.inputs[codes == ZERO] == 0).all()
    assert torch.equal(out.inputs[codes == KEEP], features[codes == KEEP])
    assert torch.equal(out.inputs[codes == 0], features[codes == 0])
    # Random replacements are frames of the same clip, never its padding.
    replaced = (codes[0, :, 0] == RANDOM).nonzero().flatten()
    for t in replaced:
        matches = (features[0, :100] == out.inputs[0, t]).all(1)
        assert matches.any()


def test_no_masking_covers_every_valid_position():
    features = torch.randn(2, 10, 3)
    out = Masker(0.0)(features, torch.tensor([10, 4]), torch.Generator())
    assert torch.equal(out.inputs, features)
    assert out.mask.sum() == (10 + 4) * 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masks_on_the_batch_device_match_cpu_statistics():
    masker = Masker(0.15, frames={}, channels={"channel_range": [0, 8], "min_width": 1, "max_width": 4})
    lengths = torch.full((256,), 200, device="cuda")
    out = masker(torch.randn(256, 200, 8, device="cuda"), lengths, torch.Generator("cuda").manual_seed(0))
    assert out.mask.device.type == "cuda"
    frame_share = out.mask.all(2).float().mean().item()
    assert abs(frame_share - 0.15) < 0.01


@pytest.mark.parametrize(
    "bad",
    [
        dict(ratio=1.5),
        dict(replace={"zero": 0.5, "random": 0.1, "keep": 0.1}),
        dict(replace={"zero": 0.8, "random": 0.1, "keep": 0.1, "flip": 0.0}),
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="masking"):
        Masker(**{"ratio": 0.15, "frames": {}, **bad})


def test_channel_range_outside_features_is_refused():
    masker = Masker(0.0, channels={"channel_range": [52, 324]})
    with pytest.raises(ValueError, match="channel_range"):
        masker(torch.randn(1, 5, 128), torch.tensor([5]), torch.Generator())


@pytest.mark.parametrize("ratio", [0.4, 0.6, 0.75, 0.9])
def test_high_frame_ratios_are_realised_inside_the_clips(ratio):
    # At 0.9 of the frames in spans of about 5, there is no room for a gap between every two spans: they merge.
    lengths = torch.randint(100, 400, (256,), generator=torch.Generator().manual_seed(2))
    codes = frame_codes(Masker(ratio, frames={}), lengths)
    realised = (codes > 0).sum(1).float() / lengths
    assert abs(realised.mean().item() - ratio) < 0.01
    assert realised.max().item() <= min(1.0, ratio + 0.05)
    padding = torch.arange(400)[None, :] >= lengths[:, None]
    assert not codes[padding].any() and codes.max() <= KEEP  # spans never overlap (their codes would add up)


@pytest.mark.parametrize("ratio", [0.5, 0.9])
def test_high_patch_ratios_are_realised(ratio):
    masker = Masker(ratio, patches={"patch_frames": 4, "patch_channels": 8})
    codes = masker.codes(torch.full((64,), 80), 80, 64, torch.Generator().manual_seed(0)) > 0
    assert abs(codes.float().mean().item() - ratio) < 0.01


FRAME_RATE = 44100 / 1024


def test_spans_in_seconds_equal_the_frame_version_at_the_matching_hop():
    in_frames = Masker(0.3, frames={"min_span": 2, "max_span": 7, "geometric_p": 0.2})
    in_seconds = Masker(
        0.3,
        frames={"span_seconds": [2 / FRAME_RATE, 7 / FRAME_RATE], "mean_span_seconds": 5 / FRAME_RATE},
        frame_rate=FRAME_RATE,
    )
    lengths = torch.randint(50, 300, (32,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(frame_codes(in_frames, lengths, 300), frame_codes(in_seconds, lengths, 300))
    # Half the hop: twice the frames per second, so the same seconds are twice the frames.
    finer = Masker(0.3, frames={"span_seconds": [2 / FRAME_RATE, 7 / FRAME_RATE]}, frame_rate=2 * FRAME_RATE)
    assert (finer.frames.min_span, finer.frames.max_span) == (4, 14)
    patches = Masker(0.3, patches={"patch_seconds": 8 / FRAME_RATE}, frame_rate=FRAME_RATE)
    assert patches.patches.patch_frames == 8


def test_seconds_without_a_frame_rate_or_backwards_are_refused():
    with pytest.raises(ValueError, match="masking.frame_rate"):
        Masker(0.3, frames={"span_seconds": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"span_seconds=\[0.3, 0.1\]"):
        Masker(0.3, frames={"span_seconds": [0.3, 0.1]}, frame_rate=FRAME_RATE)


def test_a_ratio_nothing_uses_is_refused():
    # Issue 26: channel masking used to ignore masking.ratio silently.
    with pytest.raises(ValueError, match="masking.ratio=0.2: this masking has no frame spans or patches"):
        Masker(0.2, channels={"channel_range": [0, 8]})
    assert Masker(None, channels={"channel_range": [0, 8]}).enabled
