"""make real-music's pure parts, on fake package listings: which files are music, which versions make one piece,
which sources become probe classes, the licences and the split drawn per piece."""

import pytest

from m3bert.adapters import real_music


def test_the_package_list_is_the_ten_named_ones():
    assert len(real_music.PACKAGES) == 10 and len(set(real_music.PACKAGES)) == 10
    assert all(name.endswith("-data") for name in real_music.PACKAGES)


def test_music_files_are_audio_in_music_folders_or_named_music():
    members = [
        "usr/share/games/etr/music/race1-jt.ogg",
        "usr/share/games/openclonk/Music.ocg/Cavern.ogg",
        "usr/share/games/xmoto/Textures/Musics/menu.ogg",
        "usr/share/games/lugaru/Sounds/Music1Desert.ogg",
        "usr/share/games/warmux/sound/default/misc/frog_music.ogg",  # a sound effect
        "usr/share/games/etr/music/README.txt",
        "usr/share/games/megaglest/techs/megapack/factions/egypt/music/theme.ogg",
        "usr/share/games/megaglest/techs/megapack/factions/roman/music/theme.ogg",
    ]
    names = real_music.music_names(members)
    assert sorted(names.values()) == [
        "Cavern.ogg",
        "Music1Desert.ogg",
        "egypt_theme.ogg",  # two files called theme.ogg: each keeps its folder's name
        "menu.ogg",
        "race1-jt.ogg",
        "roman_theme.ogg",
    ]


@pytest.mark.parametrize(
    ("stem", "work"),
    [
        ("celtic", "celtic"),
        ("celtic_fast", "celtic"),
        ("farm_f", "farm"),
        ("jumping_to_the_stars_remake_fast", "jumping_to_the_stars"),
        ("Olivier_Militon.-.Apnee2", "olivier_militon_apnee"),
        ("Olivier_Militon.-.Apnee", "olivier_militon_apnee"),
        ("Music1Desert", "music"),
        ("Music1Snow", "music"),
        ("ambient2_5", "ambient"),
        ("ingame_07", "ingame_07"),  # here the number is the piece
        ("ingame_08", "ingame_08"),
        ("race1-jt", "race"),
        ("fast", "fast"),
    ],
)
def test_versions_of_one_piece_share_a_work(stem, work):
    assert real_music.work_of(stem) == work


def test_sources_with_enough_tracks_are_probe_classes_the_rest_pretrain():
    counts = {"naev-data": 54, "openclonk-data": 8, "xmoto-data": 7, "freeorion-data": 0, "megaglest-data": 9}
    roles = real_music.choose_roles(counts, min_tracks=8, pretrain=["megaglest-data"])
    assert roles == {
        "naev-data": "probe",
        "openclonk-data": "probe",
        "xmoto-data": "pretrain",
        "freeorion-data": "none",
        "megaglest-data": "pretrain",
    }


def test_versions_of_a_piece_never_straddle_a_split():
    files = {
        "supertuxkart-data": [f"{n}.ogg" for n in ("celtic", "celtic_fast", "farm", "farm_f", "bay", "lava", "west")],
        "lugaru-data": ["Music1Desert.ogg", "Music1Grass.ogg", "Music2.ogg"],
        "freeorion-data": [],
    }
    roles = {"supertuxkart-data": "probe", "lugaru-data": "pretrain", "freeorion-data": "none"}
    table = real_music.track_table(files, roles, seed=0)
    assert len(table) == 10 and set(table["role"]) == {"probe", "pretrain"}
    assert table.groupby("work")["split"].nunique().max() == 1
    row = table.set_index("track_id").loc["supertuxkart-data/celtic_fast"]
    assert (row["soundtrack"], row["work"], row["role"]) == ("supertuxkart", "supertuxkart-data/celtic", "probe")
    assert set(table["split"]) <= {"train", "valid", "test"}
    assert table.equals(real_music.track_table(files, roles, seed=0))  # seeded


def test_licences_prefer_the_paragraphs_about_sound_files():
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: data/music/*\n data/sounds/*\nCopyright: a composer\nLicense: CC-BY-SA-3.0\n\n"
        "License: GPL-2+\n text of the licence\n"
    )
    assert real_music.licences(text) == "CC-BY-SA-3.0"
    assert real_music.licences("Files: *\nLicense: GPL-2+\n\nFiles: src/*\nLicense: Expat\n") == "GPL-2+, Expat"


def test_without_apt_it_says_what_it_needs(monkeypatch):
    from m3bert.common.errors import UserError

    monkeypatch.setattr(real_music.shutil, "which", lambda tool: None if tool == "dpkg-deb" else "/bin/true")
    with pytest.raises(UserError, match="needs dpkg-deb .*Debian or Ubuntu"):
        real_music.check_tools()


def test_a_free_form_copyright_file_gives_the_licences_its_prose_names():
    text = (
        "This package was debianized by someone.\n\nLicense:\n\n   This program is free software; you can "
        "redistribute it under the terms of the GNU General Public License as published by the Free Software "
        "Foundation; either version 2 of the License.\n   Music is under the Creative Commons Attribution 3.0\n"
        "   license.\n"
    )
    assert real_music.licences(text) == "GPL-2, CC-BY (free-form)"
    assert real_music.licences("no licence named here") == ""
