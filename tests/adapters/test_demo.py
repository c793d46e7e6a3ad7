"""The demo corpus: built from scratch (skipped where the FluidSynth library is missing), its labels checked against
the music21 sources and the rendered files, split by work, cached, and run through the prepare step."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import CONF
from hydra import compose, initialize_config_dir

from m3bert.adapters.base import DatasetLayoutError
from m3bert.adapters.demo import build, tracks  # build: the module, whose Renderer a test replaces
from m3bert.adapters.demo.instruments import BY_PROGRAM, SOLO, tempo_tag
from m3bert.adapters.demo.scores import TAIL_S
from m3bert.adapters.demo.synth import SynthUnavailable, load_fluidsynth
from m3bert.prepare import prepare

LABELS = ["style", "meter", "tempo", "register", "tags", "instrument"]


def fluidsynth_missing() -> str | None:
    try:
        load_fluidsynth()
    except SynthUnavailable as err:
        return str(err)
    return None


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """demo_small built once from scratch: (root, tracks, demo_clips.csv)."""
    if (why := fluidsynth_missing()) is not None:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("demo_small")
    built = tracks(root, size="demo_small", progress=False)
    return root, built, pd.read_csv(root / build.CLIPS)


def test_builds_every_label_and_split(small):
    root, built, table = small
    summary = json.loads((root / build.SUMMARY).read_text())
    assert summary["clips"] == len(built) == len(table) >= 14 and not list(root.rglob("*.tmp"))
    assert summary["audio_hours"] == pytest.approx(table["seconds"].sum() / 3600, abs=1e-4)
    for track in built:
        assert track.audio.is_file() and set(track.labels) == set(LABELS)
        solo = track.track_id.startswith("solo/")
        assert (track.labels["instrument"] is not None) == solo, track.track_id
        assert track.split == table.set_index("track_id").loc[track.track_id, "split"]
    assert {t.track_id.split("/")[0] for t in built} == {"solo", "ensemble"}
    for split in ("train", "valid", "test"):  # every style in every split
        assert set(table.loc[table["split"] == split, "style"]) == set(summary["options"]["styles"])


def test_labels_are_facts_of_the_rendering(small):
    import pretty_midi

    root, _, table = small
    for row in table.itertuples():
        audio, rate = sf.read(root / row.audio)
        assert rate == build.SAMPLE_RATE and np.abs(audio).max() > 0.5
        # The clip lasts its beats at its tempo, plus the tail.
        assert len(audio) == round((row.beats * 60 / row.tempo + TAIL_S) * rate)
        assert len(audio) / rate == pytest.approx(row.seconds, abs=1e-3)
        midi = pretty_midi.PrettyMIDI(str(root / row.midi))
        assert midi.get_tempo_changes()[1] == pytest.approx([row.tempo], abs=0.01)
        notes = [n for i in midi.instruments for n in i.notes]
        assert np.mean([n.pitch for n in notes]) == pytest.approx(row.register, abs=1e-3)
        assert max(n.end for n in notes) <= row.beats * 60 / row.tempo + 0.01
        programs = {i.program for i in midi.instruments if i.notes}
        families = {BY_PROGRAM[p].family for p in programs}
        assert set(row.tags.split("/")) == families | {tempo_tag(row.tempo)}
        if row.kind == "solo":
            assert programs == {next(i.program for i in SOLO if i.name == row.instrument)}


def test_meter_and_pitches_match_the_source(small):
    """Each clip against its music21 source: the meter is the notated time signature of the excerpt's bars, and the
    rendered pitches are the excerpt's sounding pitches moved by the recorded transposition."""
    from music21 import converter, meter

    from m3bert.adapters.demo.sources import corpus_dir

    _, _, table = small
    for row in table.itertuples():
        number = None if pd.isna(row.number) else int(row.number)
        score = converter.parse(corpus_dir() / row.source, number=number, forceSource=True)
        parts = score.parts[:1] if row.kind == "solo" else score.parts
        bars = list(parts[0].getElementsByClass("Measure"))[row.first_bar : row.first_bar + row.bars]
        in_force = {(b.timeSignature or b.getContextByClass(meter.TimeSignature)).ratioString for b in bars}
        assert in_force == {row.meter}, row.track_id
        shift = row.transpose + row.octave_shift
        source = {
            int(p.ps) + shift
            for part in parts
            for m in list(part.getElementsByClass("Measure"))[row.first_bar : row.first_bar + row.bars]
            for n in m.recurse().notes
            if n.duration.quarterLength > 0
            for p in n.pitches
        }  # 0: not sounded
        import pretty_midi

        rendered = {n.pitch for i in pretty_midi.PrettyMIDI(str(small[0] / row.midi)).instruments for n in i.notes}
        assert rendered == source, row.track_id


def test_splits_are_by_work(small):
    _, _, table = small
    assert table.groupby("work")["split"].nunique().max() == 1
    assert table.groupby("style")["work"].nunique().min() >= 3


def test_a_second_call_reuses_the_files(small, monkeypatch):
    root, built, _ = small
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    monkeypatch.setattr(build, "Renderer", lambda *a: pytest.fail("rendered again instead of reusing the build"))
    assert tracks(root, size="demo_small", progress=False) == built
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes


def test_a_folder_built_with_other_options_is_refused(small):
    with pytest.raises(DatasetLayoutError, match="delete the folder"):
        tracks(small[0], size="demo_small", seed=1, progress=False)


def test_same_seed_same_corpus(tmp_path):
    if (why := fluidsynth_missing()) is not None:
        pytest.skip(why)
    folk = ["essen_folksong", "fiddle_tune"]
    tables = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        tracks(tmp_path / name, size="demo_small", seed=seed, styles=folk, progress=False)
        tables.append(pd.read_csv(tmp_path / name / build.CLIPS))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert not tables[0].equals(tables[2])


def test_prepare_writes_manifests_with_the_labels(small, tmp_path):
    root, built, _ = small
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "prepare",
            overrides=[
                "dataset=demo_small",
                f"dataset.source.root={root}",
                f"out={tmp_path}",
                "workers=0",
                "progress=false",
            ],
        )
    summary = prepare(cfg)
    assert summary["clips"] == len(built) and summary["failures"] == 0
    splits = {t.track_id: t.split for t in built}
    for split in ("train", "valid", "test"):
        manifest = pd.read_csv(tmp_path / f"{split}.csv")
        assert set(LABELS) <= set(manifest.columns) and len(manifest) > 0
        assert (manifest["track_id"].map(splits) == split).all()
        assert manifest["instrument"].notna().tolist() == manifest["track_id"].str.startswith("solo/").tolist()


def test_missing_fluidsynth_says_how_to_install_it(tmp_path, monkeypatch):
    font = tmp_path / "font.sf2"
    font.write_bytes(b"not needed: FluidSynth is checked first")
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    with pytest.raises(SynthUnavailable, match="apt-get install libfluidsynth3.*brew install fluid-synth"):
        tracks(tmp_path / "demo", soundfont=font, progress=False)


def test_missing_soundfont_is_named(tmp_path):
    with pytest.raises(SynthUnavailable, match="nowhere.sf2: soundfont not found"):
        tracks(tmp_path / "demo", soundfont=tmp_path / "nowhere.sf2", progress=False)
