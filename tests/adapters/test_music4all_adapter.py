import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import music4all
from m3bert.adapters.base import DatasetLayoutError


def make_music4all(root):
    for track_id in ["0009fFIM1eYThaPg", "0010xmHR6UICBOYT", "002Jyd0vN4HyCpqL"]:
        touch(root / "audios" / f"{track_id}.mp3")
    touch(
        root / "id_genres.csv",
        "id\tgenres\n0009fFIM1eYThaPg\tpop,rock\n0010xmHR6UICBOYT\tindie rock\n"
        "002Jyd0vN4HyCpqL\t\nMISSINGaudio0001\tjazz\n",
    )
    touch(
        root / "id_tags.csv",
        "id\ttags\n0009fFIM1eYThaPg\tpop,british, female vocalists,singer/songwriter\n"
        '0010xmHR6UICBOYT\tindie\n002Jyd0vN4HyCpqL\t"quoted" tag\nMISSINGaudio0001\tjazz\n',
    )
    touch(root / "id_metadata.csv", "id\tspotify_id\tvalence\n0009fFIM1eYThaPg\tx\t0.5\n")


def test_genres_and_tags(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_music4all(tmp_path)
    tracks = music4all.tracks(tmp_path)
    assert [t.track_id for t in tracks] == ["0009fFIM1eYThaPg", "0010xmHR6UICBOYT", "002Jyd0vN4HyCpqL"]
    first, second, third = tracks
    assert first.labels == {"genre": "pop", "tags": "british/female vocalists/pop/singer_songwriter"}
    assert second.labels == {"genre": "indie rock", "tags": "indie"}
    assert third.labels == {"tags": '"quoted" tag'}  # no genre listed: no genre label
    assert all(t.split is None for t in tracks)
    assert first.audio == tmp_path / "audios" / "0009fFIM1eYThaPg.mp3"
    assert any("skipped 1 of 4" in m and "MISSINGaudio0001" in m for m in warnings_of())


def test_missing_metadata_and_bad_columns(tmp_path):
    make_music4all(tmp_path)
    (tmp_path / "id_tags.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="id_tags.csv: not found"):
        music4all.tracks(tmp_path)
    touch(tmp_path / "id_tags.csv", "id,tags\n0009fFIM1eYThaPg,pop\n")  # commas, not tabs
    with pytest.raises(DatasetLayoutError, match="columns 'id' and 'tags'"):
        music4all.tracks(tmp_path)


def test_no_audio_at_all_is_an_error(tmp_path):
    make_music4all(tmp_path)
    for path in (tmp_path / "audios").iterdir():
        path.unlink()
    with pytest.raises(DatasetLayoutError, match="none of the 4 audio files"):
        music4all.tracks(tmp_path)
