import csv

import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import fma
from m3bert.adapters.base import DatasetLayoutError

# (track_id, split, subset, genre_top): as in tracks.csv, with a free-text column holding commas and a newline.
ROWS = [
    (2, "training", "small", "Hip-Hop"),
    (5, "validation", "small", "Hip-Hop"),
    (140, "test", "small", "Folk"),
    (1001, "training", "medium", ""),
    (99999, "training", "large", "Rock"),
    (3, "test", "small", "Pop"),
]


def write_tracks_csv(path, rows=ROWS):
    """tracks.csv in FMA's layout: two header rows (group, column), a 'track_id' row, then the tracks."""
    groups = ["", "album", "album", "set", "set", "track", "track", "track"]
    names = ["", "comments", "title", "split", "subset", "genre_top", "genres_all", "title"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(groups)
        out.writerow(names)
        out.writerow(["track_id"] + [""] * (len(names) - 1))
        for track_id, split, subset, genre in rows:
            out.writerow([track_id, 0, "AWOL, A Way\nOf Life", split, subset, genre, "[21, 811]", "Food"])


def make_fma(root, audio_dir="fma_medium", present=(2, 5, 140, 1001)):
    write_tracks_csv(root / "fma_metadata" / "tracks.csv")
    for track_id in present:
        touch(root / audio_dir / f"{track_id:06d}"[:3] / f"{track_id:06d}.mp3")


def test_medium_subset_with_official_split(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_fma(tmp_path)
    tracks = fma.tracks(tmp_path, subset="medium")
    assert [(t.track_id, t.split) for t in tracks] == [
        ("000002", "train"),
        ("000005", "valid"),
        ("000140", "test"),
        ("001001", "train"),
    ]
    assert [t.labels.get("genre") for t in tracks] == ["Hip-Hop", "Hip-Hop", "Folk", None]
    assert tracks[3].audio == tmp_path / "fma_medium" / "001" / "001001.mp3"
    # track 3 is in small (so in medium) but its file is missing: skipped, counted.
    assert any("skipped 1 of 5" in m and "000003" in m for m in warnings_of())


def test_small_subset_excludes_medium_tracks(tmp_path):
    make_fma(tmp_path, audio_dir="fma_small", present=(2, 5, 140, 3))
    assert [t.track_id for t in fma.tracks(tmp_path, subset="small")] == ["000002", "000003", "000005", "000140"]


def test_errors(tmp_path):
    make_fma(tmp_path)
    with pytest.raises(DatasetLayoutError, match="fma_small: not found"):
        fma.tracks(tmp_path, subset="small")
    with pytest.raises(ValueError, match="subset"):
        fma.tracks(tmp_path, subset="tiny")
    (tmp_path / "fma_metadata" / "tracks.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="tracks.csv: not found"):
        fma.tracks(tmp_path, subset="medium")
    touch(tmp_path / "fma_metadata" / "tracks.csv", "track_id,split,subset\n2,training,small\n")  # one header row
    with pytest.raises(DatasetLayoutError, match="two header rows"):
        fma.tracks(tmp_path, subset="medium")
