import pytest
from fake_trees import touch, write_wav

from m3bert.adapters import folder
from m3bert.adapters.base import DatasetLayoutError


def test_recursive_walk_with_ids_and_parent_labels(tmp_path):
    write_wav(tmp_path / "rock" / "a.wav")
    touch(tmp_path / "rock" / "live" / "b.MP3")
    touch(tmp_path / "jazz" / "c.flac")
    touch(tmp_path / "jazz" / "notes.txt")
    tracks = folder.tracks(tmp_path)
    assert [t.track_id for t in tracks] == ["jazz/c", "rock/a", "rock/live/b"]
    assert all(t.split is None and t.labels == {} for t in tracks)

    labelled = folder.tracks(str(tmp_path), label_from_parent="genre")
    assert [t.labels["genre"] for t in labelled] == ["jazz", "rock", "live"]
    assert labelled[1].audio == tmp_path / "rock" / "a.wav"


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        folder.tracks(tmp_path / "missing")
    with pytest.raises(DatasetLayoutError, match="no audio files"):
        folder.tracks(tmp_path)
    touch(tmp_path / "loose.wav")
    with pytest.raises(DatasetLayoutError, match="directly in"):
        folder.tracks(tmp_path, label_from_parent="genre")
    with pytest.raises(ValueError, match="label_from_parent"):
        folder.tracks(tmp_path, label_from_parent="valence")
    touch(tmp_path / "loose.mp3")
    with pytest.raises(DatasetLayoutError, match="both"):
        folder.tracks(tmp_path)
