import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import deam
from m3bert.adapters.base import DatasetLayoutError

SONG_LEVEL = ("annotations", "annotations averaged per song", "song_level")


def make_deam(root, songs=(2, 3, 5, 2001), missing_audio=(5,)):
    folder = root.joinpath(*SONG_LEVEL)
    # As distributed: spaces after the commas, in the header too.
    touch(
        folder / "static_annotations_averaged_songs_1_2000.csv",
        "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"
        "2, 3.1, 0.94, 3, 0.63\n3, 3.5, 1.75, 3.3, 1.62\n5, 5.7, 1.42, 5.5, 1.63\n",
    )
    touch(
        folder / "static_annotations_averaged_songs_2000_2058.csv",
        "song_id, valence_mean, valence_std, valence_max_mean, arousal_mean, arousal_std\n"
        "2001, 6.2, 1.1, 7.0, 4.4, 0.9\n",
    )
    for song in songs:
        if song not in missing_audio:
            touch(root / "MEMD_audio" / f"{song}.mp3")


def test_arousal_valence_and_random_split(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_deam(tmp_path)
    tracks = deam.tracks(tmp_path, fractions=(0.34, 0.33, 0.33))
    assert [t.track_id for t in tracks] == ["2", "2001", "3"]
    assert tracks[0].labels == {"arousal": 3.0, "valence": 3.1}
    assert tracks[1].labels == {"arousal": 4.4, "valence": 6.2}
    assert sorted(t.split for t in tracks) == ["test", "train", "valid"]
    assert tracks[0].audio == tmp_path / "MEMD_audio" / "2.mp3"
    assert any("skipped 1 of 4" in m for m in warnings_of())
    assert {t.split for t in deam.tracks(tmp_path, split=None)} == {None}


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        deam.tracks(tmp_path / "DEAM")
    make_deam(tmp_path)
    csv_2000 = tmp_path.joinpath(*SONG_LEVEL, "static_annotations_averaged_songs_2000_2058.csv")
    csv_2000.unlink()
    with pytest.raises(DatasetLayoutError, match="2000_2058.csv: not found"):
        deam.tracks(tmp_path)
    touch(csv_2000, "song_id, valence, arousal\n2001, 1, 2\n")
    with pytest.raises(DatasetLayoutError, match="no column"):
        deam.tracks(tmp_path)
    touch(csv_2000, "song_id, valence_mean, arousal_mean\n2001, , 2\n")
    with pytest.raises(DatasetLayoutError, match=r"line\(s\) \[2\]"):
        deam.tracks(tmp_path)
    touch(csv_2000, "song_id, valence_mean, arousal_mean\n3, 1, 2\n")
    with pytest.raises(DatasetLayoutError, match="song 3 is annotated twice"):
        deam.tracks(tmp_path)
