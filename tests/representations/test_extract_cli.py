"""``python -m m3bert.extract``: outputs, failures, resuming, layer selection, inputs of every kind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir
from tiny_models import export_tiny, write_audio

from m3bert import extract as extract_module
from m3bert.extract import extract
from m3bert.inference.representations import Representations


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # log-mel features: ten times faster than m3bert324's, which the command-line test below runs end to end.
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny", "logmel128")


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    write_audio(root / "a.wav", 4.0, 22050)
    write_audio(root / "sub" / "b.flac", 2.0, 48000, channels=2, seed=5)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    (root / "notes.txt").write_text("not audio, not picked up")
    return root


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("extract", overrides=["progress=false", *overrides])


def test_a_folder_gives_frames_pooled_embeddings_an_index_and_failures(model, audio, tmp_path):
    out = tmp_path / "emb"
    summary = extract(config(f"model_path={model}", f"input={audio}", f"output={out}"))
    assert summary["done"] == 2 and summary["failures"] == 1
    index = pd.read_csv(out / "index.csv")
    assert list(index["id"]) == ["a", "sub/b"]
    assert index["duration_s"].tolist() == [4.0, 2.0] and set(index["layers"]) == {"0;1;2"}
    assert np.allclose(index["frame_period_s"], 1024 / 44100) and (index["first_timestamp_s"] == 0).all()
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 1 and failures["audio"][0].endswith("broken.wav")
    assert "unreadable or corrupt" in failures["reason"][0]

    frames = np.load(out / "frames" / "a.npy")
    assert frames.shape == (3, 1 + 4 * 44100 // 1024, 32) and frames.dtype == np.float32
    np.testing.assert_allclose(np.load(out / "mean" / "a.npy"), frames.mean(1), atol=1e-6)
    np.testing.assert_array_equal(np.load(out / "max" / "a.npy"), frames.max(1))
    statistics = np.load(out / "mean_std" / "a.npy")  # (layers, 2 hidden): mean, then std over the frames
    np.testing.assert_allclose(statistics, np.concatenate([frames.mean(1), frames.std(1)], -1), atol=1e-5)
    assert index["mean_std_file"][0] == "mean_std/a.npy"
    # The default clip embedding: each layer's mean, std and max over the frames, averaged over the layers.
    clip = np.concatenate([frames.mean(1), frames.std(1), frames.max(1)], -1).mean(0)
    np.testing.assert_allclose(np.load(out / "clip" / "a.npy"), clip, atol=1e-5)
    assert index["clip_file"][0] == "clip/a.npy" and clip.shape == (3 * 32,)
    assert np.load(out / "frames" / "sub" / "b.npy").shape == (3, 1 + 2 * 44100 // 1024, 32)
    # The same numbers as the Python API gives with the same settings (dtype=auto is bf16 on CPUs with native bf16).
    api = Representations.from_pretrained(model, dtype="auto")(audio / "a.wav")
    np.testing.assert_allclose(frames, api.hidden_states.float().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(out / "clip" / "a.npy"), api.clip_embedding().numpy(), atol=1e-5)


def test_a_rerun_skips_finished_files_and_other_settings_are_refused(model, audio, tmp_path, monkeypatch):
    out = tmp_path / "emb"
    extract(config(f"model_path={model}", f"input={audio}", f"output={out}"))
    before = (out / "frames" / "a.npy").stat().st_mtime_ns
    calls = []
    original = Representations.file_features
    monkeypatch.setattr(
        Representations, "file_features", lambda self, path, **kw: calls.append(path) or original(self, path, **kw)
    )
    summary = extract(config(f"model_path={model}", f"input={audio}", f"output={out}"))
    assert summary["reused"] == 2 and summary["done"] == 2
    assert [p.name for p in calls] == ["broken.wav"]  # failures are retried, finished files are not
    assert (out / "frames" / "a.npy").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other settings.*layers"):
        extract(config(f"model_path={model}", f"input={audio}", f"output={out}", "layers=last"))
    summary = extract(config(f"model_path={model}", f"input={audio}", f"output={out}", "layers=last", "overwrite=true"))
    assert summary["reused"] == 0 and np.load(out / "frames" / "a.npy").shape[0] == 1


def test_layer_selection_npz_and_a_manifest_input(model, audio, tmp_path):
    manifest = tmp_path / "list.csv"
    pd.DataFrame({"audio": [str(audio / "a.wav"), str(audio / "missing.wav"), str(audio / "sub" / "b.flac")]}).to_csv(
        manifest, index=False
    )
    out = tmp_path / "emb"
    summary = extract(
        config(
            f"model_path={model}",
            f"input={manifest}",
            f"output={out}",
            "layers=[0,-1]",
            "frame_level=false",
            "format=npz",
            "output_dtype=float16",
            "window.frames=32",
            "window.overlap_frames=8",
        )
    )
    assert summary["done"] == 2 and summary["failures"] == 1
    assert "file not found" in pd.read_csv(out / "failures.csv")["reason"][0]
    packed = np.load(out / "embeddings.npz")
    assert list(packed["ids"]) == ["a", "sub/b"] and packed["mean"].shape == (2, 2, 32)
    assert packed["mean"].dtype == np.float16 and list(packed["layers"]) == [0, 2]
    assert not (out / "frames").exists() and not any(k.startswith("frames/") for k in packed.files)


def test_the_command_lines_export_then_extract(pretrained, audio, tmp_path):
    def run(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    run("m3bert.export", f"run={pretrained}", f"out={tmp_path / 'model'}")
    run(
        "m3bert.extract",
        f"model_path={tmp_path / 'model'}",
        f"input={audio / 'a.wav'}",
        f"output={tmp_path / 'emb'}",
        "progress=false",
        "format=npz",
    )
    packed = np.load(tmp_path / "emb" / "embeddings.npz")
    assert packed["frames/a"].shape == (3, 173, 32) and (tmp_path / "emb" / "extract.json").is_file()


def test_bad_inputs_fail_clearly(model, audio, tmp_path):
    with pytest.raises(FileNotFoundError, match="input=.*nowhere: no such file or folder"):
        extract(config(f"model_path={model}", f"input={tmp_path / 'nowhere'}", f"output={tmp_path / 'o'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        extract(config(f"model_path={model}", f"input={tmp_path / 'empty'}", f"output={tmp_path / 'o'}"))
    with pytest.raises(ValueError, match="not an m3bert model"):
        extract(config(f"model_path={tmp_path / 'empty'}", f"input={audio}", f"output={tmp_path / 'o'}"))
    pd.DataFrame({"path": ["a.wav"]}).to_csv(tmp_path / "list.csv", index=False)
    with pytest.raises(ValueError, match="no 'audio' column"):
        extract(config(f"model_path={model}", f"input={tmp_path / 'list.csv'}", f"output={tmp_path / 'o'}"))
    with pytest.raises(ValueError, match="layers must be"):
        extract(config(f"model_path={model}", f"input={audio}", f"output={tmp_path / 'o'}", "layers=[7]"))


def test_out_of_memory_is_not_a_file_failure(model, audio, tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(extract_module, "encode_to_disk", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        extract(config(f"model_path={model}", f"input={audio}", f"output={tmp_path / 'o'}"))
