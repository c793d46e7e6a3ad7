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


def test_a_labels_table_gives_labels_and_splits_by_track_id(tmp_path):
    touch(tmp_path / "audio" / "naev" / "combat1.ogg")
    touch(tmp_path / "audio" / "naev" / "combat2.ogg")
    touch(tmp_path / "audio" / "xmoto" / "menu.ogg")
    table = tmp_path / "labels.csv"
    table.write_text(
        "track_id,soundtrack,work,split\nnaev/combat1,naev,naev/combat,train\nnaev/combat2,naev,naev/combat,train\n"
        "xmoto/menu,,,test\n"
    )
    tracks = {t.track_id: t for t in folder.tracks(tmp_path / "audio", labels=table)}
    assert tracks["naev/combat2"].labels == {"soundtrack": "naev", "work": "naev/combat"}
    assert tracks["naev/combat2"].split == "train"
    assert tracks["xmoto/menu"].labels == {} and tracks["xmoto/menu"].split == "test"  # empty cells: no label

    table.write_text("track_id,soundtrack\nnaev/combat9,naev\n")
    with pytest.raises(DatasetLayoutError, match="no audio file below"):
        folder.tracks(tmp_path / "audio", labels=table)
    table.write_text("id,soundtrack\nnaev/combat1,naev\n")
    with pytest.raises(DatasetLayoutError, match="no track_id column"):
        folder.tracks(tmp_path / "audio", labels=table)
