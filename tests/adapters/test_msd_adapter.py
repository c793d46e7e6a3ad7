import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import msd
from m3bert.adapters.base import DatasetLayoutError

IDS = ["TRAAAAK128F9318786", "TRAAAAV128F421A322", "TRABCDE128F4242424"]


def make_previews(root):
    for track_id in IDS:
        touch(root / track_id[2] / track_id[3] / track_id[4] / f"{track_id}.mp3")
    touch(root / "A" / "readme.mp3")  # not an MSD id: skipped with a warning


def test_previews_with_ids_from_file_names(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_previews(tmp_path)
    tracks = msd.tracks(tmp_path)
    assert [t.track_id for t in tracks] == IDS
    assert tracks[2].audio == tmp_path / "A" / "B" / "C" / "TRABCDE128F4242424.mp3"
    assert all(t.split is None and t.labels == {} for t in tracks)
    assert any("not named by an MSD track id" in m for m in warnings_of())


def test_genres_from_a_tagtraum_file(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_previews(tmp_path / "audio")
    genres = touch(
        tmp_path / "msd_tagtraum_cd2.cls",
        "# tagtraum genre annotations\n#\nTRAAAAK128F9318786\tRock\n"
        "TRAAAAV128F421A322\tPop\tElectronic\nTRZZZZZ128F0000000\tJazz\n",
    )
    tracks = msd.tracks(tmp_path / "audio", genre_file=genres)
    assert [t.labels.get("genre") for t in tracks] == ["Rock", "Pop", None]
    assert any("1 of 3 tracks in the genre file have no preview" in m for m in warnings_of())
    labelled = msd.tracks(tmp_path / "audio", genre_file=genres, labelled_only=True)
    assert [t.track_id for t in labelled] == IDS[:2]


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        msd.tracks(tmp_path / "nowhere")
    make_previews(tmp_path)
    with pytest.raises(DatasetLayoutError, match="tagtraum"):
        msd.tracks(tmp_path, genre_file=tmp_path / "missing.cls")
    bad = touch(tmp_path / "bad.cls", "TRAAAAK128F9318786 Rock\n")
    with pytest.raises(DatasetLayoutError, match="bad.cls:1"):
        msd.tracks(tmp_path, genre_file=bad)
    touch(tmp_path / "dup" / "TRAAAAK128F9318786.wav")
    with pytest.raises(DatasetLayoutError, match="two audio files"):
        msd.tracks(tmp_path)
