from collections import Counter

import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import gtzan
from m3bert.adapters.base import DatasetLayoutError


def make_gtzan(root, folder="genres", suffix=".wav", skip=()):
    """All 1000 GTZAN files (empty), except those in ``skip``."""
    for genre in gtzan.GENRES:
        for number in range(100):
            name = f"{genre}.{number:05d}"
            if f"{genre}/{name}" not in skip:
                touch(root / folder / genre / f"{name}{suffix}")


def test_shipped_fault_filtered_lists():
    lists = gtzan.read_split_lists(gtzan.FAULT_FILTERED)
    assert Counter(lists.values()) == {"train": 443, "valid": 197, "test": 290}
    assert lists["blues/blues.00029"] == "train" and lists["blues/blues.00000"] == "valid"
    assert lists["blues/blues.00012"] == "test" and "rock/rock.00100" not in lists
    assert len({i.split("/")[0] for i in lists}) == 10


def test_fault_filtered_split(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_gtzan(tmp_path, skip={"jazz/jazz.00000"})  # jazz.00000 is in the train list
    tracks = gtzan.tracks(tmp_path)
    assert Counter(t.split for t in tracks) == {"train": 442, "valid": 197, "test": 290}
    first = tracks[0]
    assert (first.track_id, first.split, first.labels) == ("blues/blues.00000", "valid", {"genre": "blues"})
    assert first.audio == tmp_path / "genres" / "blues" / "blues.00000.wav"
    assert any("skipped 1 of 930" in m and "jazz/jazz.00000" in m for m in warnings_of())


def test_random_split_and_no_split_on_the_kaggle_layout(tmp_path):
    make_gtzan(tmp_path / "Data", folder="genres_original")
    tracks = gtzan.tracks(tmp_path, split="random", seed=1)
    assert len(tracks) == 1000
    counts = Counter((t.labels["genre"], t.split) for t in tracks)
    assert all(
        counts[(g, "train")] == 80 and counts[(g, "valid")] == 10 and counts[(g, "test")] == 10 for g in gtzan.GENRES
    )
    assert [t.split for t in gtzan.tracks(tmp_path, split="random", seed=1)] == [t.split for t in tracks]
    unsplit = gtzan.tracks(tmp_path / "Data" / "genres_original", split=None)  # genre folders directly in root
    assert len(unsplit) == 1000 and {t.split for t in unsplit} == {None}


def test_original_au_files_and_custom_lists(tmp_path):
    make_gtzan(tmp_path, suffix=".au")
    lists = tmp_path / "lists"
    touch(lists / "train_filtered.txt", "blues/blues.00001.wav\nrock.00002.au\n")
    touch(lists / "valid_filtered.txt", "# comment\njazz/jazz.00003.wav\n\n")
    touch(lists / "test_filtered.txt", "pop/pop.00004.wav\n")
    tracks = gtzan.tracks(tmp_path, split_dir=lists)
    assert [(t.track_id, t.split) for t in tracks] == [
        ("blues/blues.00001", "train"),
        ("jazz/jazz.00003", "valid"),
        ("pop/pop.00004", "test"),
        ("rock/rock.00002", "train"),
    ]
    assert tracks[0].audio.suffix == ".au"


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        gtzan.tracks(tmp_path / "gtzan")
    with pytest.raises(DatasetLayoutError, match="no GTZAN genre folders"):
        gtzan.tracks(tmp_path)
    make_gtzan(tmp_path)
    with pytest.raises(DatasetLayoutError, match="lists: not found"):
        gtzan.tracks(tmp_path, split_dir=tmp_path / "lists")
    touch(tmp_path / "lists" / "train.txt", "blues/blues.00001.wav\n")
    touch(tmp_path / "lists" / "valid.txt", "blues/blues.00001.wav\n")
    with pytest.raises(DatasetLayoutError, match="test.txt"):
        gtzan.tracks(tmp_path, split_dir=tmp_path / "lists")
    touch(tmp_path / "lists" / "test.txt", "salsa/salsa.00001.wav\n")
    with pytest.raises(DatasetLayoutError, match="already in the train list"):
        gtzan.tracks(tmp_path, split_dir=tmp_path / "lists")
    touch(tmp_path / "lists" / "valid.txt", "")
    with pytest.raises(DatasetLayoutError, match=r"test.txt:1: 'salsa/salsa.00001.wav' is not a GTZAN file name"):
        gtzan.tracks(tmp_path, split_dir=tmp_path / "lists")
    with pytest.raises(ValueError, match="split must be"):
        gtzan.tracks(tmp_path, split="sturm")
