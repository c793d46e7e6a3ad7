import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import CONF, ROOT, TINY, make_config
from hydra import compose, initialize_config_dir

from m3bert.data.validation import is_validated, manifest_key
from m3bert.prepare import prepare
from m3bert.train import run

RATE = 22050  # files at another rate than the features' 44.1 kHz, so resampling is exercised
HOP, FEATURE_RATE = 1024, 44100


def tone(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


@pytest.fixture
def audio_tree(tmp_path):
    """Ten good clips in two genre folders, plus a corrupt, a too-short and a silent file."""
    root = tmp_path / "audio"
    for i in range(10):
        genre = ("rock", "jazz")[i % 2]
        (root / genre).mkdir(parents=True, exist_ok=True)
        sf.write(root / genre / f"song{i}.wav", tone(3.0 + 0.1 * i, 220 * (1 + i % 3), seed=i), RATE)
    (root / "rock" / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
    sf.write(root / "jazz" / "short.wav", tone(1.0, 440), RATE)
    sf.write(root / "jazz" / "silent.wav", np.zeros(3 * RATE, np.float32), RATE)
    return root


def prepare_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "prepare", overrides=["workers=0", "progress=false", "clip.seconds=3", "clip.min_seconds=2", *overrides]
        )


def test_folder_to_features_manifests_and_failures(audio_tree, tmp_path):
    out = tmp_path / "out"
    summary = prepare(
        prepare_config(
            "dataset=folder", f"dataset.root={audio_tree}", f"out={out}", "dataset.source.label_from_parent=genre"
        )
    )
    assert summary["clips"] == 10 and summary["failures"] == 3
    failures = pd.read_csv(out / "failures.csv").set_index("track_id")["reason"]
    assert "broken.wav" in failures["rock/broken"] and "unreadable or corrupt" in failures["rock/broken"]
    assert failures["jazz/short"].startswith("too short")
    assert failures["jazz/silent"].startswith("silent")
    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest["genre"].unique()) == ["jazz", "rock"]
    row = manifest.set_index("track_id").loc["rock/song0"]
    features = np.load(out / row["file_path"])
    assert features.shape == (1 + 3 * FEATURE_RATE // HOP, 324) == (row["length"], 324)
    assert np.isfinite(features).all()
    assert abs(features.mean(0)).max() < 1e-3 and abs(features.std(0)[:52].mean() - 1) < 0.05  # CMVN
    splits = {s: len(pd.read_csv(out / f"{s}.csv")) for s in ("train", "valid", "test")}
    # Splits are drawn over all 13 tracks, so a failing file never shifts the others' splits.
    assert sum(splits.values()) == 10 and splits["train"] >= 7 and splits["valid"] >= 1
    saved = json.loads((out / "summary.json").read_text())
    assert sorted(saved["failures_by_reason"].values()) == [1, 1, 1]
    assert {"too short", "silent"} < set(saved["failures_by_reason"])
    assert saved["audio_hours"] == pytest.approx(10 * 3 / 3600, rel=0.01)
    assert not list(out.rglob("*.tmp"))
    # Every manifest is recorded as validated, so training opens no feature file at start-up.
    for name in ("manifest.csv", "train.csv", "valid.csv"):
        assert is_validated(out, name, manifest_key((out / name).read_bytes(), 324))

    # A rerun reuses every feature file and rewrites the same manifest.
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "features").rglob("*.npy")}
    again = prepare(
        prepare_config(
            "dataset=folder", f"dataset.root={audio_tree}", f"out={out}", "dataset.source.label_from_parent=genre"
        )
    )
    assert again["reused"] == 10 and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv"), manifest)

    # ... and pre-training reads the result.
    result = run(
        make_config(
            *TINY,
            "dataset=manifest",
            f"dataset.root={out}",
            "trainer.max_steps=2",
            "trainer.batch_size=2",
            "trainer.val_every=2",
            "trainer.image_every=0",
        ),
        tmp_path / "run",
    )
    assert result["steps"] == 2 and "val/loss" in result["best"]


def test_a_damaged_feature_file_is_extracted_again(audio_tree, tmp_path):
    out = tmp_path / "out"
    args = ("dataset=folder", f"dataset.root={audio_tree}", f"out={out}", "limit=5")  # 3 good files among the first 5
    prepare(prepare_config(*args))
    victim, poisoned = sorted(p for p in (out / "features").rglob("*.npy") if not p.name.endswith(".stats.npy"))[:2]
    victim.write_bytes(b"half a file")
    values = np.load(poisoned)
    values[1, 1] = np.nan
    np.save(poisoned, values)
    summary = prepare(prepare_config(*args))
    assert summary["clips"] == 3 and summary["reused"] == 1 and np.load(victim).shape[1] == 324
    assert np.isfinite(np.load(poisoned)).all()


def test_segments_policy_cuts_consecutive_clips(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    sf.write(root / "long.wav", tone(8.0, 330), RATE)  # 3 + 3 + a 2-s tail that meets min_seconds
    sf.write(root / "mid.wav", tone(7.0, 330), RATE)  # 3 + 3, the 1-s tail is dropped
    summary = prepare(
        prepare_config("dataset=folder", f"dataset.root={root}", f"out={tmp_path / 'out'}", "clip.policy=segments")
    )
    manifest = pd.read_csv(tmp_path / "out/manifest.csv")
    assert summary["clips"] == 5
    assert manifest.groupby("track_id")["offset_s"].apply(list).to_dict() == {
        "long": [0.0, 3.0, 6.0],
        "mid": [0.0, 3.0],
    }
    assert manifest.groupby("track_id")["split"].nunique().max() == 1  # a track's segments share a split


def test_feature_dimension_mismatch_is_refused(audio_tree, tmp_path):
    overrides = ("dataset=folder", f"dataset.root={audio_tree}", f"out={tmp_path}", "features=logmel128")
    assert prepare_config(*overrides).dataset.feature_dim == 128  # the dataset follows the feature set
    with pytest.raises(ValueError, match="dataset.feature_dim"):
        prepare(prepare_config(*overrides, "dataset.feature_dim=324"))


def test_named_datasets_read_their_audio_from_the_environment(monkeypatch):
    monkeypatch.setenv("M3BERT_AUDIO", "/corpora")
    monkeypatch.setenv("M3BERT_DATA", "/features")
    cfg = prepare_config("dataset=gtzan")
    assert cfg.dataset.source.root == "/corpora/gtzan" and cfg.out == "/features/gtzan"


def test_command_line(audio_tree, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "m3bert.prepare",
            "dataset=folder",
            f"dataset.root={audio_tree}",
            f"out={tmp_path / 'out'}",
            "clip.seconds=3",
            "clip.min_seconds=2",
            "progress=false",
            "workers=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "10 clips" in out.stderr + out.stdout and (tmp_path / "out/summary.json").exists()


def test_float16_storage_halves_the_files_within_float16_rounding(audio_tree, tmp_path):
    args = ("dataset=folder", f"dataset.root={audio_tree}", "limit=4")
    prepare(prepare_config(*args, f"out={tmp_path / 'f32'}"))
    summary = prepare(prepare_config(*args, f"out={tmp_path / 'f16'}", "dtype=float16"))
    assert summary["dtype"] == "float16"
    name = pd.read_csv(tmp_path / "f32/manifest.csv")["file_path"][0]
    full, half = np.load(tmp_path / "f32" / name), np.load(tmp_path / "f16" / name)
    assert half.dtype == np.float16 and half.shape == full.shape
    assert (tmp_path / "f16" / name).stat().st_size < 0.51 * (tmp_path / "f32" / name).stat().st_size
    # After CMVN the features are about unit scale: float16's 11-bit significand gives a relative error of at
    # most 2^-11, which is well under 0.01 in absolute terms for these clips.
    error = np.abs(half.astype(np.float32) - full)
    assert (error <= 2.0**-11 * np.abs(full) + 1e-7).all() and error.max() < 0.01
    # Read through the dataset interface, crops come out float32 and equal the float16 values.
    from m3bert.data import ManifestDataset

    clip = ManifestDataset(str(tmp_path / "f16/manifest.csv"), 324, crop="start")[0].features
    assert clip.dtype == torch.float32 and torch.equal(clip, torch.from_numpy(half.astype(np.float32)))
    # A rerun with the other dtype extracts again rather than reusing files of the wrong dtype.
    assert prepare(prepare_config(*args, f"out={tmp_path / 'f16'}"))["reused"] == 0
    with pytest.raises(ValueError, match="dtype=int8: must be one of float32, float16"):
        prepare(prepare_config(*args, f"out={tmp_path / 'f16'}", "dtype=int8"))


def test_a_prepare_in_which_every_file_fails_says_why_in_one_line_and_writes_no_manifest(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    for i in range(3):
        sf.write(root / f"short{i}.wav", tone(1.0, 440, seed=i), RATE)
    (root / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "m3bert.prepare", "dataset=folder", f"dataset.root={root}", f"out={out}"]
        + ["workers=0", "progress=false", "clip.seconds=3", "clip.min_seconds=2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1 and "Traceback" not in done.stderr
    assert "no clip was prepared from 4 tracks" in error[0] and "3 too short" in error[0] and "1 " in error[0]
    assert len(pd.read_csv(out / "failures.csv")) == 4
    assert not any((out / name).exists() for name in ("manifest.csv", "train.csv", "summary.json"))


def test_an_empty_split_keeps_its_header(audio_tree, tmp_path):
    out = tmp_path / "out"
    prepare(prepare_config("dataset=folder", f"dataset.root={audio_tree}", f"out={out}", "split.fractions=[1,0,0]"))
    assert len(pd.read_csv(out / "train.csv")) == 10
    test = pd.read_csv(out / "test.csv")
    assert len(test) == 0 and {"file_path", "length", "split"} <= set(test.columns)
