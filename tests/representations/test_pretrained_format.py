"""The model folder format: round trips, run folders, export, and clear errors for wrong folders or features."""

from __future__ import annotations

import json
import stat

import pytest
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from tiny_models import export_tiny, tiny_encoder

from m3bert.export import export, front_end_of
from m3bert.inference.pretrained import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    FrontEnd,
    from_pretrained,
    load_pretrained,
    save_pretrained,
)
from m3bert.models import M3BERT


def _all_states(encoder: M3BERT, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(encoder(x).hidden_states)


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, positions):
    encoder = tiny_encoder(downsample=2, positions=positions)
    save_pretrained(encoder, tmp_path / "model", "m3bert324", training_frames=96)
    loaded = load_pretrained(tmp_path / "model")
    x = torch.randn(2, 37, 324)
    for a, b in zip(_all_states(encoder, x), _all_states(loaded.encoder, x)):
        assert torch.equal(a, b)
    assert not loaded.encoder.training
    assert loaded.encoder.config == encoder.config
    assert loaded.front_end == FrontEnd("m3bert324", 44100, 1024) and loaded.training_frames == 96
    config = json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    assert config["format"] == "m3bert-encoder" and config["m3bert_version"]
    assert config["features"]["feature_set"] == "m3bert324" and config["features"]["hop_length"] == 1024
    # Shared models must be readable by others, whatever the temporary files' mode was.
    assert (tmp_path / "model" / WEIGHTS_FILE).stat().st_mode & stat.S_IRGRP


def test_model_methods_delegate_to_the_folder_format(tmp_path):
    encoder = tiny_encoder(input_dim=128)
    save_pretrained(encoder, tmp_path / "m")  # the feature set is inferred from the input size
    assert load_pretrained(tmp_path / "m").front_end.feature_set == "logmel128"
    again = from_pretrained(tmp_path / "m", feature_set="logmel128")
    x = torch.randn(1, 20, 128)
    assert torch.equal(encoder(x).last_hidden_state, again(x).last_hidden_state)


def test_a_run_folder_loads_its_best_checkpoint(pretrained):
    loaded = load_pretrained(pretrained)
    assert loaded.source.name == "best.pt"
    assert loaded.front_end.feature_set == "m3bert324"  # the only 324-dim feature set
    assert loaded.training_frames == 128  # dataset.max_frames of the smoke run
    reference = from_pretrained(pretrained)
    for (name, a), (_, b) in zip(loaded.encoder.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_checkpoint_records_its_front_end_and_crop_so_the_loader_reads_no_recipe(pretrained, tmp_path):
    from m3bert.common import checkpoints

    state = checkpoints.load(pretrained / "checkpoints/best.pt")
    assert state[checkpoints.FRONT_END] == {"feature_set": "m3bert324", "sample_rate": 44100, "hop_length": 1024}
    assert state[checkpoints.TRAINING_FRAMES] == 128
    # The records alone: a config that says otherwise (or nothing) changes nothing.
    state["config"] = {"features": {"name": "logmel128"}, "dataset": {"max_frames": 7}}
    checkpoints.save(state, tmp_path / "records.pt")
    loaded = load_pretrained(tmp_path / "records.pt")
    assert loaded.front_end == FrontEnd("m3bert324", 44100, 1024, loaded.front_end.normalization)
    assert loaded.training_frames == 128
    # A checkpoint from before the records: read from its config, as before.
    del state[checkpoints.FRONT_END], state[checkpoints.TRAINING_FRAMES]
    state["config"] = {"features": {"name": "m3bert324", "hop_length": 512}, "dataset": {"max_frames": 64}}
    checkpoints.save(state, tmp_path / "old.pt")
    old = load_pretrained(tmp_path / "old.pt")
    assert (old.front_end.hop_length, old.training_frames) == (512, 64)


def test_export_composes_with_hydra_and_writes_a_loadable_folder(pretrained, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("export", overrides=[f"run={pretrained}", f"out={tmp_path / 'out'}", "features=m3bert324"])
    export(cfg.run, cfg.out, front_end_of(cfg.features))
    x = torch.randn(1, 30, 324)
    exported, original = from_pretrained(tmp_path / "out"), from_pretrained(pretrained).eval()
    for a, b in zip(_all_states(exported, x), _all_states(original, x)):
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["source"].endswith("best.pt")


def test_feature_set_mismatch_is_refused(pretrained, tmp_path):
    folder = export_tiny(tmp_path / "model", "m3bert324")
    with pytest.raises(ValueError, match="feature-set mismatch"):
        load_pretrained(folder, "logmel128")
    # The run records m3bert324, so asking for logmel128 is refused before the sizes are compared.
    with pytest.raises(ValueError, match="feature-set mismatch: the model was trained on m3bert324.*logmel128"):
        export(pretrained, tmp_path / "out", "logmel128")
    with pytest.raises(ValueError, match="feature-set mismatch"):
        save_pretrained(tiny_encoder(input_dim=324), tmp_path / "bad", "logmel128")
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad").exists()


def test_wrong_or_missing_model_folders_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: not an m3bert model"):
        load_pretrained(tmp_path / "empty")

    folder = export_tiny(tmp_path / "model")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors: missing"):
        load_pretrained(folder)

    folder = export_tiny(tmp_path / "garbled")
    (folder / WEIGHTS_FILE).write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="unreadable weights"):
        load_pretrained(folder)

    folder = export_tiny(tmp_path / "other")
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["architecture"]["hidden_size"] = 64
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="don't match the architecture"):
        load_pretrained(folder)

    (folder / CONFIG_FILE).write_text("{ not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_pretrained(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not an m3bert model config"):
        load_pretrained(folder)
