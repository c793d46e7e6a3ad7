from collections import Counter

import pytest
from fake_trees import capture_warnings, touch, write_wav

from m3bert.adapters import ballroom
from m3bert.adapters.base import DatasetLayoutError


def make_ballroom(root, per_style=10, styles=ballroom.STYLES):
    for s, style in enumerate(styles):
        for i in range(per_style):
            touch(root / style / f"{100000 + 100 * s + i}.mp3")


def test_styles_and_stratified_split(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_ballroom(tmp_path)
    write_wav(tmp_path / "Tango" / "999999.wav")
    touch(tmp_path / "extras" / "x.mp3")
    tracks = ballroom.tracks(tmp_path, seed=2)
    assert len(tracks) == 13 * 10 + 1
    assert tracks[0].track_id == "Chacha/100000" and tracks[0].labels == {"style": "Chacha"}
    counts = Counter((t.labels["style"], t.split) for t in tracks)
    assert all(
        counts[(s, "train")] == 8 and counts[(s, "valid")] == 1 and counts[(s, "test")] == 1
        for s in ballroom.STYLES
        if s != "Tango"
    )
    assert sum(counts[("Tango", split)] for split in ("train", "valid", "test")) == 11
    assert any("extras" in m for m in warnings_of())
    assert [t.split for t in ballroom.tracks(tmp_path, seed=2)] == [t.split for t in tracks]


def test_style_choice_no_split_and_partial_download(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_ballroom(tmp_path, per_style=3, styles=("Jive", "Waltz"))
    tracks = ballroom.tracks(tmp_path, styles=["Waltz"], split=None)
    assert [t.track_id for t in tracks] == ["Waltz/100100", "Waltz/100101", "Waltz/100102"]
    assert {t.split for t in tracks} == {None}
    assert len(ballroom.tracks(tmp_path)) == 6
    assert any("style folders missing" in m and "Chacha" in m for m in warnings_of())


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        ballroom.tracks(tmp_path / "extendedballroom")
    with pytest.raises(DatasetLayoutError, match="none of the style folders"):
        ballroom.tracks(tmp_path)
    (tmp_path / "Salsa").mkdir()
    with pytest.raises(DatasetLayoutError, match="no audio files"):
        ballroom.tracks(tmp_path)
    with pytest.raises(ValueError, match="unknown styles"):
        ballroom.tracks(tmp_path, styles=["Polka"])
