"""The adapters are built from configs (``_target_: m3bert.adapters.<name>.tracks``): Hydra hands lists over as
ListConfig and may give ``split: null``."""

from fake_trees import touch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from m3bert.adapters.base import Track


def test_instantiate_with_list_options(tmp_path):
    for style in ("Jive", "Waltz"):
        for i in range(10):
            touch(tmp_path / "ballroom" / style / f"{i}.mp3")
    config = OmegaConf.create(
        {
            "_target_": "m3bert.adapters.ballroom.tracks",
            "root": str(tmp_path / "ballroom"),
            "styles": ["Jive", "Waltz"],
            "fractions": [0.6, 0.2, 0.2],
            "seed": 3,
        }
    )
    tracks = instantiate(config)
    assert len(tracks) == 20 and all(isinstance(t, Track) for t in tracks)
    assert sum(t.split == "valid" for t in tracks) == 4

    touch(tmp_path / "deam" / "MEMD_audio" / "2.mp3")
    touch(
        tmp_path
        / "deam"
        / "annotations"
        / "annotations averaged per song"
        / "song_level"
        / "static_annotations_averaged_songs_1_2000.csv",
        "song_id, valence_mean, arousal_mean\n2, 4, 5\n",
    )
    touch(
        tmp_path
        / "deam"
        / "annotations"
        / "annotations averaged per song"
        / "song_level"
        / "static_annotations_averaged_songs_2000_2058.csv",
        "song_id, valence_mean, arousal_mean\n",
    )
    config = OmegaConf.create(
        {"_target_": "m3bert.adapters.deam.tracks", "root": str(tmp_path / "deam"), "split": None}
    )
    assert [(t.track_id, t.split) for t in instantiate(config)] == [("2", None)]
