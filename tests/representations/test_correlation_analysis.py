"""``python -m m3bert.analyze``: correlations (found when planted, correctly labelled, right p-values), plots."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from tiny_models import export_tiny, write_audio

from m3bert import analyze as analyze_module
from m3bert.analyze import (
    RunningCorrelation,
    analyze,
    block_max_abs_r,
    clip_features,
    column_labels,
    correlate,
    pearson_p_values,
    strongest_pairs,
)
from m3bert.features import M3BERT_BLOCKS
from m3bert.inference.representations import Representations


def test_running_correlation_is_pearsons_r_whatever_the_chunks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) * [1, 10, 0.1, 1, 1, 1] + 100.0  # offsets and scales: a stability check
    y = x[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((500, 4))
    acc = RunningCorrelation(6, 4)
    for a, b in [(0, 1), (1, 40), (40, 41), (41, 300), (300, 500)]:
        acc.update(x[a:b], y[a:b])
    expected = np.corrcoef(x.T, y.T)[:6, 6:]
    np.testing.assert_allclose(acc.r(), expected, atol=1e-10)
    assert acc.n == 500


def test_p_values_are_the_two_sided_t_test_of_r():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n, strength in [(10, 0.3), (50, 0.1), (200, 0.05), (30, 2.0)]:
        x = rng.standard_normal(n)
        y = strength * x + rng.standard_normal(n)
        reference = stats.pearsonr(x, y)
        r = np.corrcoef(x, y)[0, 1]
        np.testing.assert_allclose(pearson_p_values(np.array([r]), n), [reference.pvalue], rtol=1e-8)
    assert pearson_p_values(np.array([0.0, 1.0, np.nan]), 100)[:2].tolist() == [1.0, 0.0]


class PlantedRepresentations:
    """Stands in for a Representations: every hidden unit is noise except unit 5 of layer 1, which follows input
    column 20 (the ninth MFCC: 12 chroma columns come first). Chunks of odd sizes check that units and features
    stay aligned across chunks."""

    layers, hidden_size, downsample = (0, 1, 2), 8, 1
    extractor = SimpleNamespace(blocks=M3BERT_BLOCKS)

    def __init__(self):
        self.rng = np.random.default_rng(2)

    def timestamps(self, frames: int) -> torch.Tensor:
        return torch.arange(frames) * 1024 / 44100

    def stream(self, features: np.ndarray):
        for start in range(0, len(features), 37):
            chunk = features[start : start + 37]
            states = self.rng.standard_normal((3, len(chunk), 8))
            states[1, :, 5] = 0.9 * chunk[:, 20] + 0.3 * self.rng.standard_normal(len(chunk))
            yield start, torch.from_numpy(states)


def test_a_planted_unit_is_found_and_labelled(monkeypatch):
    clips = {Path("one.wav"): "one", Path("two.wav"): "two"}
    generated = {p: np.random.default_rng(i).standard_normal((400 + 50 * i, 324)) for i, p in enumerate(clips)}
    monkeypatch.setattr(analyze_module, "clip_features", lambda rep, path, max_seconds: generated[path])
    r, n, names, owners, skipped = correlate(PlantedRepresentations(), clips, None, None)
    assert skipped == []
    assert r.shape == (3, 8, 324) and n == 850 and names[20] == "mfcc_8" and owners[20] == "mfcc"
    p = pearson_p_values(r, n)
    top = strongest_pairs(r, p, [0, 1, 2], names, owners, top_k=5, n=n)
    assert top.iloc[0][["layer", "unit", "feature", "block"]].tolist() == [1, 5, "mfcc_8", "mfcc"]
    assert top.iloc[0]["r"] == pytest.approx(0.9 / np.sqrt(0.81 + 0.09), abs=0.03)
    assert top.iloc[0]["p_value_nominal"] < 1e-100 and top.iloc[1]["r"] ** 2 < 0.05  # the rest is noise
    matrix, blocks = block_max_abs_r(r, owners)
    assert blocks == list(M3BERT_BLOCKS) and np.unravel_index(np.argmax(matrix), matrix.shape) == (1, 1)
    assert column_labels(M3BERT_BLOCKS)[0][-1] == "log_cqt_chroma_143"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    export_tiny(root / "model", "logmel128", training_frames=64)
    write_audio(root / "clips" / "a.wav", 3.0, 44100, seed=1)
    write_audio(root / "clips" / "b.wav", 2.0, 22050, seed=2)
    (root / "clips" / "c.wav").write_bytes(b"broken")
    weights = {
        "heads.genre.featurizer.weights": torch.tensor([0.0, 2.0, 0.5]),
        "heads.mood.featurizer.weights": torch.tensor([1.0, 0.0, 0.0]),
        "heads.genre.head.weight": torch.ones(2),
    }
    (root / "finetune" / "checkpoints").mkdir(parents=True)
    torch.save({"model": weights, "step": 3}, root / "finetune" / "checkpoints" / "best.pt")
    return root


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("analyze", overrides=["progress=false", *overrides])


def test_the_analyses_write_tables_and_figures(setup, tmp_path):
    out = tmp_path / "out"
    results = analyze(
        config(
            f"model_path={setup / 'model'}",
            f"input={setup / 'clips'}",
            f"out={out}",
            "analyses=[correlation,attention,layer_weights]",
            f"finetuned={setup / 'finetune'}",
            "correlation.top_k=20",
        )
    )
    pairs = pd.read_csv(out / "correlation" / "strongest_pairs.csv")
    assert list(pairs.columns) == ["layer", "unit", "feature", "block", "r", "p_value_nominal", "n_frames"]
    assert len(pairs) == 20 and (pairs["r"].abs().diff().dropna() <= 1e-12).all()  # strongest first
    assert pairs["feature"].str.startswith("log_mel_").all() and (pairs["n_frames"] == 130 + 87).all()
    assert "nominal" in results["correlation"]["p_values"] and results["correlation"]["clips"] == 2
    assert results["correlation"]["skipped"][0].endswith("c.wav")
    heat = pd.read_csv(out / "correlation" / "max_abs_r.csv")
    assert heat["layer"].tolist() == [0, 1, 2] and ((heat["log_mel"] > 0) & (heat["log_mel"] <= 1)).all()
    assert len(pd.read_csv(out / "correlation" / "strongest_pairs_by_layer.csv")) == 3 * 10
    for figure in [
        "correlation/heatmap.png",
        "attention/layers.png",
        "attention/heads_layer2.png",
        "layer_weights/layer_weights.png",
    ]:
        assert (out / figure).stat().st_size > 1000, figure
    maps = np.load(out / "attention" / "attention_maps.npz")
    assert maps["layer1"].shape == (4, 64, 64) and np.allclose(maps["layer1"].sum(-1), 1, atol=1e-5)
    weights = pd.read_csv(out / "layer_weights" / "layer_weights.csv")
    assert weights.groupby("task")["weight"].sum().round(6).tolist() == [1.0, 1.0]
    assert results["layer_weights"] == {"genre": 1, "mood": 0}


def test_descriptors_replace_the_input_features(setup, tmp_path):
    # A descriptor that is exactly input column 10 must correlate with every unit as that column does.
    rep = Representations.from_pretrained(setup / "model")
    (tmp_path / "descriptors").mkdir()
    for name in ["a", "b"]:
        feats = clip_features(rep, setup / "clips" / f"{name}.wav", 60.0)
        np.save(tmp_path / "descriptors" / f"{name}.npy", feats[:, 10])
    common = [f"model_path={setup / 'model'}", "analyses=[correlation]", "max_clips=2"]
    analyze(config(*common, f"input={setup / 'clips'}", f"out={tmp_path / 'features'}"))
    analyze(
        config(
            *common, f"input={setup / 'clips'}", f"out={tmp_path / 'descr'}", f"descriptors={tmp_path / 'descriptors'}"
        )
    )
    by_features = np.load(tmp_path / "features" / "correlation" / "r.npz")
    by_descriptor = np.load(tmp_path / "descr" / "correlation" / "r.npz")
    assert list(by_descriptor["targets"]) == ["descriptor_0"]
    np.testing.assert_allclose(by_descriptor["r"][..., 0], by_features["r"][..., 10], atol=1e-5)


def test_analysis_inputs_fail_clearly(setup, tmp_path):
    with pytest.raises(ValueError, match="unknown analyses"):
        analyze(config(f"out={tmp_path}", "analyses=[telepathy]"))
    with pytest.raises(ValueError, match="needs model_path="):
        analyze(config(f"out={tmp_path}", "analyses=[correlation]", f"input={setup / 'clips'}"))
    with pytest.raises(ValueError, match="needs finetuned="):
        analyze(config(f"out={tmp_path}", "analyses=[layer_weights]"))
    torch.save({"model": {"encoder.x": torch.zeros(1)}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="no weighted-sum featurizer"):
        analyze(config(f"out={tmp_path}", "analyses=[layer_weights]", f"finetuned={tmp_path / 'plain.pt'}"))
    with pytest.raises(FileNotFoundError, match="no a.csv or a.npy"):
        analyze(
            config(
                f"out={tmp_path}",
                "analyses=[correlation]",
                f"model_path={setup / 'model'}",
                f"input={setup / 'clips'}",
                f"descriptors={tmp_path}",
            )
        )
