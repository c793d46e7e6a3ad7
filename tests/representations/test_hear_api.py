"""The HEAR 2021 common API: the published contract, checked directly and by the reference validator."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from tiny_models import export_tiny

from m3bert import hear

HOP_MS = 1000 * 1024 / 44100


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("hear") / "model", "logmel128")


@pytest.mark.parametrize("seconds", [0.05, 1.07, 2.5])
def test_timestamp_and_scene_embeddings_follow_the_contract(model_dir, seconds):
    model = hear.load_model(str(model_dir))
    assert isinstance(model, torch.nn.Module)
    assert (model.sample_rate, model.timestamp_embedding_size, model.scene_embedding_size) == (44100, 32, 96)
    audio = torch.rand(3, int(seconds * model.sample_rate)) * 2 - 1
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    frames = 1 + audio.shape[1] // 1024
    assert embeddings.shape == (3, frames, 32) and embeddings.dtype == torch.float32
    assert timestamps.shape == (3, frames) and timestamps.dtype == torch.float32
    assert (timestamps[:, 0] == 0).all() and (timestamps[:, -1] <= 1000 * seconds).all()
    if frames > 1:
        steps = torch.diff(timestamps)
        assert (steps > 0).all() and torch.allclose(steps, torch.tensor(HOP_MS), atol=1e-3)  # milliseconds
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, 96) and scene.dtype == torch.float32
    torch.testing.assert_close(scene[:, :32], embeddings.mean(1))  # the mean part: layers and frames commute
    # Each clip is embedded on its own: its batch-mates don't change it.
    alone, _ = hear.get_timestamp_embeddings(audio[1:2], model)
    torch.testing.assert_close(alone[0], embeddings[1], atol=1e-5, rtol=1e-5)


def test_stacked_frames_keep_regular_timestamps_inside_the_clip(tmp_path):
    model = hear.load_model(str(export_tiny(tmp_path / "model", "logmel128", downsample=4)))
    audio = torch.zeros(2, 44100)  # 44 frames: the last stacked output frame would be centred past the end
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape[:2] == timestamps.shape and timestamps[0, -1] <= 1000.0
    torch.testing.assert_close(
        torch.diff(timestamps), torch.full_like(timestamps[:, 1:], 4 * HOP_MS), atol=1e-3, rtol=0
    )


def test_layer_choices_and_loading_errors(model_dir, monkeypatch):
    audio = torch.rand(1, 20000)
    concat = hear.load_model(str(model_dir), layer="concat")
    assert concat.timestamp_embedding_size == 3 * 32
    assert hear.get_timestamp_embeddings(audio, concat)[0].shape[-1] == 96
    first = hear.load_model(str(model_dir), layer=0)
    torch.testing.assert_close(
        hear.get_timestamp_embeddings(audio, concat)[0][..., :32], hear.get_timestamp_embeddings(audio, first)[0]
    )
    with pytest.raises(ValueError, match="layer must be"):
        hear.load_model(str(model_dir), layer=7)
    monkeypatch.delenv(hear.MODEL_ENV, raising=False)
    with pytest.raises(ValueError, match="needs a model"):
        hear.load_model()
    monkeypatch.setenv(hear.MODEL_ENV, str(model_dir))
    assert hear.load_model().sample_rate == 44100
    with pytest.raises(ValueError, match=r"\(n_sounds, n_samples\)"):
        hear.get_scene_embeddings(torch.rand(20000), first)


@pytest.mark.filterwarnings(r"ignore:\s*IMPORTANT:UserWarning")  # the validator's standing advice on drift
def test_the_reference_validator_accepts_the_module(model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("hearvalidator", reason="pip install --no-deps hearvalidator (see the README)")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        # The validator imports tensorflow at module level but only uses it for TensorFlow models; einops, which
        # the encoder uses, looks up tf.Tensor / tf.Variable once it sees a module called tensorflow.
        stub = tmp_path / "stub" / "tensorflow"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(
            textwrap.dedent("""\
            '''Stand-in for tensorflow: hearvalidator only touches it for TensorFlow models.'''
            class Module: pass
            class Tensor: pass
            class Variable: pass
        """)
        )
        monkeypatch.syspath_prepend(str(tmp_path / "stub"))
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delitem(sys.modules, "hearvalidator.validate", raising=False)
    from hearvalidator.validate import ValidateModel

    try:
        ValidateModel("m3bert.hear", str(model_dir), device="cpu")()
    finally:
        if getattr(sys.modules.get("tensorflow"), "__file__", "").startswith(str(tmp_path)):
            del sys.modules["tensorflow"]  # nothing after this test should see the stand-in
        sys.modules.pop("hearvalidator.validate", None)
    assert "Checking get_scene_embeddings" in capsys.readouterr().out


def test_the_default_scene_embedding_is_the_clip_embedding_extract_writes(model_dir, tmp_path):
    from m3bert.extract import extract

    model = hear.load_model(str(model_dir))
    audio = torch.rand(1, 44100) * 2 - 1
    soundfile.write(tmp_path / "clip.wav", audio[0].numpy(), 44100, subtype="FLOAT")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "extract",
            ["progress=false", f"model_path={model_dir}", f"input={tmp_path / 'clip.wav'}", f"output={tmp_path / 'o'}"],
        )
    extract(cfg)
    clip = torch.from_numpy(np.load(tmp_path / "o" / "clip" / "clip.npy"))
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model)[0], clip, atol=1e-4, rtol=1e-4)


def test_statistics_pooled_scene_embeddings(model_dir):
    model = hear.load_model(str(model_dir), scene_pooling="mean_std", layer=0)
    assert (model.timestamp_embedding_size, model.scene_embedding_size) == (32, 64)
    audio = torch.rand(2, 44100) * 2 - 1
    embeddings, _ = hear.get_timestamp_embeddings(audio, model)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, 64)
    torch.testing.assert_close(scene, torch.cat([embeddings.mean(1), embeddings.std(1, unbiased=False)], -1))
    with pytest.raises(ValueError, match="pooling must be one of"):
        hear.load_model(str(model_dir), scene_pooling="median")
