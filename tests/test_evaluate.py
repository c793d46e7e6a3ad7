"""``python -m m3bert.evaluate`` and the clip probe under it, on generated prepared folders whose right answers are
known: a label the clip statistics carry (the feature floor must find it), a label that is noise (chance level)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

from m3bert.tasks.clip_probe import grouped_folds, probe, summarise

pytest.importorskip("sklearn")

DIM = 324  # the tiny pre-trained run's input width (features=m3bert324)
# Small enough for seconds: two repeats of 3 outer x 2 inner folds, two regularisation values.
FAST = ["folds=3", "inner_folds=2", "repeats=2", "grid=[0.1,1.0]", "progress=false", "dtype=float32", "device=cpu"]


def write_prepared(folder: Path, works: int = 12, per_work: int = 3, seed: int = 0) -> Path:
    """A prepared folder of ``works`` x ``per_work`` clips: per-file-normalised random features, and clip
    statistics whose level says the ``loudness`` class (3 classes, one per work) and numeric ``level``; ``noise`` is
    a label drawn at random per work. Clips of one work share ``work`` (and each has its own ``track_id``)."""
    rng = np.random.default_rng(seed)
    (folder / "features").mkdir(parents=True, exist_ok=True)
    rows = []
    for w in range(works):
        k, noise = w % 3, rng.integers(3)
        for c in range(per_work):
            path = f"features/w{w}_c{c}.npy"
            length = int(rng.integers(40, 64))
            np.save(folder / path, rng.standard_normal((length, DIM)).astype(np.float32))
            stats = np.stack([rng.standard_normal(DIM) * 0.5 + 2.0 * k, np.abs(rng.standard_normal(DIM)) + 0.5])
            np.save(folder / path.replace(".npy", ".stats.npy"), stats.astype(np.float32))
            rows.append(
                {
                    "file_path": path,
                    "length": length,
                    "track_id": f"w{w}_c{c}",
                    "work": f"w{w}",
                    "loudness": "abc"[k],
                    "level": float(k) + 0.1 * rng.standard_normal(),
                    "noise": "xyz"[noise],
                }
            )
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def evaluate_config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def test_seeded_folds_keep_groups_whole_and_differ_between_seeds():
    groups = np.repeat([f"g{i}" for i in range(10)], np.arange(1, 11))
    assignments = []
    for seed in (0, 1):
        folds = grouped_folds(groups, 4, seed)
        assert len(folds) == 4
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])
            assert len(train) + len(test) == len(groups)
        assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(groups)))
        assignments.append(sorted(tuple(sorted(set(groups[test]))) for _, test in folds))
    assert assignments[0] != assignments[1]  # another repeat, another fold assignment


def test_the_best_layer_is_chosen_on_the_inner_folds_not_the_test_fold():
    rng = np.random.default_rng(0)
    n = 60
    y = np.array(list("abc"))[rng.integers(3, size=n)]  # no embedding carries it: every score is luck
    groups = np.arange(n) // 2
    layers = {f"layer_{k}": rng.standard_normal((n, 6)) for k in range(5)}
    scores = probe(layers, y, groups, folds=5, inner_folds=3, repeats=2, grid=[0.1, 1.0], choices={"best": [*layers]})
    for (_, _), part in scores.groupby(["repeat", "fold"]):
        members = part[part["embedding"] != "best"].set_index("embedding")
        best = part[part["embedding"] == "best"].iloc[0]
        assert best["chosen"] == members["inner_score"].idxmax()
        assert best["score"] == members.loc[best["chosen"], "score"]
    # Picking the layer on the test folds would look better than chance; the honest choice doesn't.
    oracle = scores[scores["embedding"] != "best"].groupby(["repeat", "fold"])["score"].max().mean()
    honest = summarise(scores).set_index("embedding").loc["best", "mean"]
    assert honest < oracle - 0.05 and honest < 0.55


def test_evaluate_finds_what_the_features_carry_and_nothing_in_noise(tmp_path, pretrained):
    from m3bert.evaluate import evaluate
    from m3bert.report import load_run

    data = write_prepared(tmp_path / "data")
    base = [f"model_path={pretrained}", f"data={data}", *FAST]
    summary = evaluate(evaluate_config(*base, "label=loudness", f"out={tmp_path / 'loud'}")).set_index("embedding")
    # The tiny model has 2 layers: 3 hidden states, each with its own row, for the model and the random encoder.
    expected = {"best_layer", "mean_over_layers", "features", "random_best_layer"}
    expected |= {f"{prefix}layer_{k}" for prefix in ("", "random_") for k in range(3)}
    assert set(summary.index) == expected and (summary["repeats"] == 2).all()
    # The level lives only in the clip statistics: the feature floor finds it; the per-file-normalised frames the
    # encoders read don't carry it.
    assert summary.loc["features", "mean"] > 0.95
    assert summary.loc["best_layer", "mean"] < 0.7 and summary.loc["random_best_layer", "mean"] < 0.7

    noise = evaluate(evaluate_config(*base, "label=noise", f"out={tmp_path / 'noise'}")).set_index("embedding")
    assert (noise["mean"] < 0.65).all()  # three classes: chance is about 1/3

    out = tmp_path / "loud"
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores.loc[scores["embedding"] == "best_layer", "chosen"]) <= {"layer_0", "layer_1", "layer_2"}
    runs = sorted((out / "runs").glob("*/repeat_*/run.json"))
    assert len(runs) == len(expected) * 2
    record = json.loads((out / "runs/features/repeat_1/run.json").read_text())
    assert record["status"] == "finished" and record["stage"] == "evaluate" and record["seed"] == 1
    assert record["config"]["embedding"] == "features" and record["config"]["label"] == "loudness"
    assert record["config"]["layer"] == "none"  # a value, so that a report groups the floor's runs
    assert record["config"]["model"] == str(pretrained) and record["config"]["data"] == str(data)
    # Provenance as training records keep it: the encoder's resolved compute precision and device, the CPU, torch.
    assert record["environment"]["precision"] in ("fp32", "bf16") and record["environment"]["device"] == "cpu"
    assert {"cpu", "torch", "threads", "git_dirty"} <= set(record["environment"])
    run = load_run(out / "runs/best_layer/repeat_0")
    assert run.stage == "evaluate" and run.config["layer"] == "best"
    assert 0 <= run.metrics["loudness/test/accuracy"] <= 1 and record["test"] == record["metrics"]["test"]
    written = pd.read_csv(out / "summary.csv").set_index("embedding")
    assert written.loc["features", "mean"] == pytest.approx(summary.loc["features", "mean"])
    assert written.loc["layer_2", "encoder"] == "pretrained" and written.loc["random_layer_2", "encoder"] == "random"
    assert "best_layer" in (out / "summary.md").read_text()


def test_a_numeric_label_is_probed_by_ridge_regression(tmp_path, pretrained):
    from m3bert.evaluate import evaluate

    data = write_prepared(tmp_path / "data", works=9)
    cfg = evaluate_config(f"model_path={pretrained}", f"data={data}", "label=level", f"out={tmp_path}/out", *FAST)
    summary = evaluate(cfg).set_index("embedding")
    assert summary.loc["features", "mean"] > 0.8  # R²
    assert json.loads((tmp_path / "out/runs/features/repeat_0/run.json").read_text())["test"]["level/test/r2"] > 0.8


def test_a_missing_label_column_is_one_line_and_exit_2(tmp_path, pretrained):
    data = write_prepared(tmp_path / "data", works=3, per_work=1)
    command = [sys.executable, "-m", "m3bert.evaluate", f"model_path={pretrained}", f"data={data}", "label=genre"]
    done = subprocess.run([*command, f"out={tmp_path}/out"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no column 'genre' for label=" in done.stderr
    assert "manifest.csv" in done.stderr

    from m3bert.evaluate import labelled_clips

    pd.read_csv(data / "manifest.csv").assign(album="one").to_csv(data / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="all in one 'album' group"):
        labelled_clips(data, "manifest.csv", "loudness", "album")
    clips, group = labelled_clips(data, "manifest.csv", "loudness", None)
    assert group == "work" and len(clips) == 3  # the demo's and real-music's piece column, found by itself
