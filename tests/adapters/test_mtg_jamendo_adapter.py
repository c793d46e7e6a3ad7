import pytest
from fake_trees import capture_warnings, touch

from m3bert.adapters import mtg_jamendo
from m3bert.adapters.base import DatasetLayoutError

HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"


def row(number: int, *tags: str) -> str:
    return (
        "\t".join(
            [f"track_{number:07d}", "artist_000014", "album_000031", f"{number % 100:02d}/{number}.mp3", "124.6", *tags]
        )
        + "\n"
    )


def make_jamendo(root):
    """Four tracks; 917542 has only the low-quality download and 1026811's audio is missing."""
    audio = root / "raw_30s" / "audio"
    touch(audio / "14" / "214.mp3")
    touch(audio / "42" / "917542.low.mp3")
    touch(audio / "43" / "917543.mp3")
    data = root / "data"
    touch(
        data / "autotagging.tsv",
        HEADER
        + row(214, "genre---punkrock", "mood/theme---happy", "instrument---guitar")
        + row(917542, "genre---pop")
        + row(917543, "mood/theme---relaxing")
        + row(1026811, "genre---rock"),
    )
    moodtheme = {
        214: ["mood/theme---happy", "mood/theme---energetic"],
        917542: ["mood/theme---sad"],
        917543: ["mood/theme---relaxing"],
        1026811: ["mood/theme---slow", "mood/theme---sad"],
    }
    touch(data / "autotagging_moodtheme.tsv", HEADER + "".join(row(n, *tags) for n, tags in moodtheme.items()))
    split_dir = data / "splits" / "split-0"
    touch(
        split_dir / "autotagging_moodtheme-train.tsv",
        HEADER + row(214, *moodtheme[214]) + row(1026811, *moodtheme[1026811]),
    )
    touch(split_dir / "autotagging_moodtheme-validation.tsv", HEADER + row(917542, *moodtheme[917542]))
    touch(split_dir / "autotagging_moodtheme-test.tsv", HEADER + row(917543, *moodtheme[917543]))


def test_moodtheme_with_official_split(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_jamendo(tmp_path)
    tracks = mtg_jamendo.tracks(tmp_path)  # subset=moodtheme, split-0
    assert [(t.track_id, t.split) for t in tracks] == [
        ("track_0000214", "train"),
        ("track_0917542", "valid"),
        ("track_0917543", "test"),
    ]
    assert [t.labels["tags"] for t in tracks] == ["energetic/happy", "sad", "relaxing"]
    assert tracks[1].audio == tmp_path / "raw_30s" / "audio" / "42" / "917542.low.mp3"
    assert any("skipped 1 of 4" in m and "track_1026811" in m for m in warnings_of())


def test_pretraining_on_all_tags_keeps_prefixes(tmp_path):
    make_jamendo(tmp_path)
    tracks = mtg_jamendo.tracks(tmp_path, subset="all", with_splits=False)
    assert [t.split for t in tracks] == [None, None, None]
    assert tracks[0].labels["tags"] == "genre---punkrock/instrument---guitar/mood_theme---happy"
    assert tracks[0].labels["tags"].split("/") == ["genre---punkrock", "instrument---guitar", "mood_theme---happy"]


def test_pretraining_leaves_out_the_fine_tuning_test_tracks(tmp_path):
    make_jamendo(tmp_path)
    tracks = mtg_jamendo.tracks(tmp_path, subset="all", with_splits=False, exclude_test_of=["moodtheme"])
    assert [t.track_id for t in tracks] == ["track_0000214", "track_0917542"]  # 917543 is a moodtheme test track
    with pytest.raises(ValueError, match="exclude_test_of"):
        mtg_jamendo.tracks(tmp_path, subset="all", with_splits=False, exclude_test_of=["mood"])


def test_the_paper_corpus_excludes_the_test_tracks_of_the_tasks_it_is_tested_on():
    from conftest import CONF
    from omegaconf import OmegaConf

    source = OmegaConf.load(CONF / "dataset" / "mtg_jamendo.yaml").source
    for subset in ("moodtheme", "top50tags"):  # the tasks mtg_moodtheme and mtg_top50
        task_source = OmegaConf.load(CONF / "dataset" / f"mtg_jamendo_{subset.removesuffix('tags')}.yaml").source
        assert subset in source.exclude_test_of and source.split == task_source.split


def test_metadata_in_root_instead_of_data_folder(tmp_path):
    make_jamendo(tmp_path)
    (tmp_path / "data").rename(tmp_path / "meta")
    for path in (tmp_path / "meta").rglob("*.tsv"):
        touch(tmp_path / path.relative_to(tmp_path / "meta"), path.read_text())
    assert len(mtg_jamendo.tracks(tmp_path, with_splits=False)) == 3


def test_errors(tmp_path):
    make_jamendo(tmp_path)
    with pytest.raises(DatasetLayoutError, match="autotagging_genre.tsv: not found"):
        mtg_jamendo.tracks(tmp_path, subset="genre", with_splits=False)
    with pytest.raises(DatasetLayoutError, match="split-3"):
        mtg_jamendo.tracks(tmp_path, split=3)
    with pytest.raises(ValueError, match="subset"):
        mtg_jamendo.tracks(tmp_path, subset="mood")
    # A genre tag in the mood/theme file means the files are mixed up.
    touch(tmp_path / "data" / "autotagging_moodtheme.tsv", HEADER + row(214, "genre---rock"))
    with pytest.raises(DatasetLayoutError, match="mood/theme---<tag>"):
        mtg_jamendo.tracks(tmp_path, with_splits=False)
    touch(tmp_path / "data" / "autotagging_moodtheme.tsv", HEADER + "track_0000214\t14/214.mp3\n")
    with pytest.raises(DatasetLayoutError, match=r"autotagging_moodtheme.tsv:2"):
        mtg_jamendo.tracks(tmp_path, with_splits=False)
