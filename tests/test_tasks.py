import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY, make_config, write_task_data

from m3bert.common import checkpoints
from m3bert.data import collate
from m3bert.objectives import MultiTaskModel
from m3bert.tasks import MultiTaskDataset, resolve_task
from m3bert.train import run

TINY_MODEL = dict(input_dim=324, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64, dropout=0.0, max_positions=256)


@pytest.fixture
def two_tasks(tmp_path):
    return {
        "genre": {
            "type": "multiclass",
            "root": str(write_task_data(tmp_path / "g", "multiclass", "genre")),
            "label": "genre",
        },
        "emotion": {
            "type": "regression",
            "label": ["arousal", "valence"],
            "root": str(write_task_data(tmp_path / "e", "regression", ["arousal", "valence"], seed=1)),
        },
    }


def test_tasks_encode_labels_from_the_training_vocabulary(tmp_path):
    root = write_task_data(tmp_path, "multilabel", "tags")
    task = resolve_task("tags", {"type": "multilabel", "root": str(root), "label": "tags"})
    assert task.classes == ("a", "b", "c", "x") and task.primary_metric == "roc_auc"
    assert task.encode({"tags": "b/x"}).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert task.encode({"tags": float("nan")}) is None
    with pytest.raises(ValueError, match="needs label column"):
        resolve_task("bad", {"type": "multiclass", "root": str(root), "label": "genre"})


def test_a_rewritten_manifest_is_resolved_afresh(tmp_path):
    import pandas as pd

    root = write_task_data(tmp_path, "multiclass", "genre")
    spec = {"type": "multiclass", "root": str(root), "label": "genre"}
    assert resolve_task("genre", spec) is resolve_task("genre", spec)  # one read per manifest version
    table = pd.read_csv(root / "train.csv")
    table.loc[0, "genre"] = "zydeco"  # prepare rerun with a new class
    table.to_csv(root / "train.csv", index=False)
    classes = resolve_task("genre", spec).classes
    assert "zydeco" in classes and classes == tuple(sorted(table["genre"].unique()))


def test_multitask_batches_mark_which_clips_carry_which_labels(two_tasks):
    data = MultiTaskDataset(two_tasks, "train", feature_dim=324, max_frames=32)
    assert len(data) == 48 and data.locate(30) == (1, 6)
    batch = collate([data[0], data[30]])
    assert batch.present["genre"].tolist() == [True, False]
    assert batch.present["emotion"].tolist() == [False, True]
    assert batch.labels["emotion"].shape == (2, 2) and batch.labels["emotion"][0].abs().sum() == 0
    even = MultiTaskDataset(two_tasks, "train", feature_dim=324, temperature=1e6).sampling_weights
    torch.testing.assert_close(even[:24].sum(), even[24:].sum())


def test_tasks_reading_one_folder_share_its_clips(tmp_path):
    import pandas as pd

    root = write_task_data(tmp_path, "multiclass", "genre")
    for split in ("train", "valid", "test"):  # a second label column, missing on every third clip
        table = pd.read_csv(root / f"{split}.csv")
        table["mood"] = [None if i % 3 == 0 else ("calm", "wild")[i % 2] for i in range(len(table))]
        table.to_csv(root / f"{split}.csv", index=False)
    tasks = {
        "genre": {"type": "multiclass", "root": str(root), "label": "genre"},
        "mood": {"type": "multiclass", "root": str(root), "label": "mood"},
    }
    data = MultiTaskDataset(tasks, "train", feature_dim=324, max_frames=32)
    assert len(data) == 24 and len(data.parts) == 1  # each clip once, not once per task
    batch = collate([data[i] for i in range(3)])
    assert batch.present["genre"].tolist() == [True, True, True]
    assert batch.present["mood"].tolist() == [False, True, True]
    assert batch.labels["mood"][1:].tolist() == [1, 0]  # wild, calm in the sorted vocabulary (calm, wild)


def test_a_clip_without_a_label_gives_its_head_exactly_zero_gradient(two_tasks):
    model = MultiTaskModel(two_tasks, TINY_MODEL, {"mode": "scratch"}, feature_dim=324)
    data = MultiTaskDataset(two_tasks, "train", feature_dim=324, max_frames=32)
    out = model(collate([data[i] for i in range(4)]))  # genre clips only
    out.loss_sum.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.heads["emotion"].parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.heads["genre"].parameters())
    torch.testing.assert_close(out.loss_sum, out.logs["genre/loss"])


def test_frozen_encoder_stays_bit_identical(tmp_path, two_tasks, pretrained):
    overrides = [
        *TINY,
        "+experiment=finetune_mtl",
        "dataset.max_frames=32",
        "trainer.max_steps=6",
        "trainer.batch_size=8",
        "trainer.val_every=3",
        f"encoder.checkpoint={pretrained}",
    ]
    overrides += ["tasks=[gtzan]", f"tasks.gtzan.root={two_tasks['genre']['root']}"]
    run(make_config(*overrides), tmp_path / "frozen")
    before = checkpoints.load(pretrained / "checkpoints/best.pt")["model"]
    after = checkpoints.load(tmp_path / "frozen/checkpoints/step_0000006.pt")["model"]
    encoder_keys = [k for k in after if k.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(after[k], before[k]) for k in encoder_keys)
    # ... while fine-tuning moves it.
    run(make_config(*overrides, "encoder.mode=finetune"), tmp_path / "tuned")
    tuned = checkpoints.load(tmp_path / "tuned/checkpoints/step_0000006.pt")["model"]
    assert any(not torch.equal(tuned[k], before[k]) for k in encoder_keys)


def test_a_fine_tuning_run_reads_its_encoder_checkpoint_once(tmp_path, two_tasks, pretrained, monkeypatch):
    reads = []
    load = checkpoints.load

    def counted(path, *args, **kwargs):
        reads.append(Path(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "load", counted)
    overrides = [*TINY, "+experiment=finetune_mtl", "dataset.max_frames=32", "trainer.max_steps=2"]
    overrides += ["trainer.batch_size=8", "trainer.val_every=2", f"encoder.checkpoint={pretrained}"]
    overrides += ["tasks=[gtzan]", f"tasks.gtzan.root={two_tasks['genre']['root']}"]
    # The encoder's modes and the baseline, which reads the checkpoint only for its input normalisation.
    for mode in ("frozen", "baseline"):
        reads.clear()
        run(make_config(*overrides, f"encoder.mode={mode}"), tmp_path / mode)
        assert [p for p in reads if pretrained in p.parents] == [pretrained / "checkpoints" / "best.pt"]
        assert tmp_path / mode / "checkpoints" / "best.pt" in reads  # the test split's weights: the count sees reads


def test_windows_crops_are_a_fixed_set_of_half_overlapping_windows():
    from m3bert.data.manifest import crop_start

    starts = {crop_start(100, 32, "windows", (0, epoch, 7)) for epoch in range(200)}
    assert starts == {0, 16, 32, 48, 64}  # every window that fits, and nothing else
    assert crop_start(20, 32, "windows", (0, 0, 7)) == 0  # a short clip is one crop


def test_frozen_state_cache_serves_the_encoders_states_and_skips_it_on_a_hit(two_tasks, pretrained):
    tasks = {"gtzan": {**two_tasks["genre"]}}
    encoder = {"mode": "frozen", "checkpoint": str(pretrained), "cache_states": True, "cache_gb": 1.0}
    model = MultiTaskModel(tasks, TINY_MODEL, encoder, feature_dim=324).train()
    assert model.train_crop == "windows"
    data = MultiTaskDataset(tasks, "train", 324, 32, "windows")
    batch = collate([data[(i, 0, 0)] for i in range(6)])
    with torch.no_grad():
        direct = model.encoder(batch.features, batch.lengths).hidden_states
    cached, valid = model.represent(batch)
    for ours, theirs in zip(cached, direct):  # the encoder's states through float16
        torch.testing.assert_close(ours, theirs.half().float(), rtol=0, atol=0)
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    again, _ = model.represent(batch)
    assert not calls and all(torch.equal(a, b) for a, b in zip(again, cached))
    assert (model.cache.hits, model.cache.misses) == (6, 6)
    model.eval()  # evaluation encodes its (centre) crops afresh
    model.represent(batch)
    assert calls == [1]


def test_frozen_run_with_the_state_cache_resumes_exactly(tmp_path, two_tasks, pretrained, monkeypatch):
    from conftest import crash_after_checkpoint

    overrides = [*TINY, "+experiment=finetune_mtl", "dataset.max_frames=32", "trainer.max_steps=8"]
    overrides += ["trainer.batch_size=8", "trainer.val_every=4", "trainer.save_every=4", "trainer.log_every=1"]
    overrides += [f"encoder.checkpoint={pretrained}", "encoder.cache_states=true", "tasks=[gtzan]"]
    overrides += [f"tasks.gtzan.root={two_tasks['genre']['root']}"]
    run(make_config(*overrides), tmp_path / "whole")
    crash_after_checkpoint(make_config(*overrides), tmp_path / "resumed", 4, monkeypatch)
    run(make_config(*overrides), tmp_path / "resumed")  # the cache starts empty again
    losses = [
        [json.loads(line)["train/loss"] for line in (tmp_path / run_dir / "log.jsonl").read_text().splitlines()
         if "train/loss" in json.loads(line)]
        for run_dir in ("whole", "resumed")
    ]  # fmt: skip
    assert len(losses[0]) == 8 and losses[0] == losses[1]


@pytest.mark.parametrize("mode", ["scratch", "baseline"])
def test_learnable_signal_is_learned_and_shuffled_labels_are_not(tmp_path, mode):
    def test_metrics(shuffle):
        # 108 clips: 18 per class, a multiple of 6, so shuffling gives each class every label equally often
        # (with 16 per class, four labels would come 3 times and two labels twice: a learnable bias).
        root = write_task_data(
            tmp_path / f"data{shuffle}", "multiclass", "genre", clips=108, shuffle=shuffle, num_classes=6
        )
        summary = run(
            make_config(
                *TINY,
                "+experiment=finetune_mtl",
                "tasks=[gtzan]",
                f"encoder.mode={mode}",
                f"tasks.gtzan.root={root}",
                "dataset.max_frames=32",
                "trainer.max_steps=60",
                "trainer.batch_size=12",
                "trainer.val_every=20",
                "optimizer.lr=3e-3",
                "scheduler.warmup_steps=5",
            ),
            tmp_path / f"run{shuffle}",
        )
        return summary["test"]

    learned, shuffled = test_metrics(shuffle=False), test_metrics(shuffle=True)
    assert learned["gtzan/test/accuracy"] >= 0.9
    # Six classes: chance is 1/6, and the loss stays near that of a uniform guess, ln 6 = 1.79.
    assert shuffled["gtzan/test/accuracy"] <= 0.4
    assert shuffled["gtzan/test/loss"] > 0.8 * math.log(6) > learned["gtzan/test/loss"]


def write_cmvn_task_data(root, clips: int = 64, dim: int = 324, seed: int = 0):
    """Two classes told apart only by whether channels 20-39 move with channels 0-19 or against them, in features
    normalised per file (each clip's per-channel mean 0 and variance 1, as prepare writes them): the clip mean of
    every channel is the same for both classes."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    (root / "features").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", clips), ("valid", clips // 2), ("test", clips // 2)):
        rows = []
        for i in range(n):
            x = rng.standard_normal((48, dim))
            x[:, 20:40] = (1 if i % 2 else -1) * x[:, :20] + 0.3 * x[:, 20:40]
            x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
            np.save(root / f"features/{split}_{i}.npy", x)
            rows.append({"file_path": f"features/{split}_{i}.npy", "length": len(x), "genre": "ab"[i % 2]})
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    return root


def test_baseline_learns_what_per_file_normalisation_leaves_in_the_frames(tmp_path):
    # Mean-pooling such features gives the same vector for every clip; the head's frame-wise layer must still
    # find the class in how the channels co-vary within a clip.
    root = write_cmvn_task_data(tmp_path / "data")

    def accuracy(frame_layer: bool) -> float:
        summary = run(
            make_config(
                *TINY,
                "+experiment=finetune_mtl",
                "tasks=[gtzan]",
                "encoder.mode=baseline",
                f"tasks.gtzan.root={root}",
                f"objective.frame_layer={frame_layer}",
                "objective.pooling=mean",  # the case where per-file CMVN leaves a pooled head nothing
                "trainer.max_steps=80",
                "trainer.batch_size=16",
                "trainer.val_every=40",
                "optimizer.lr=3e-3",
                "scheduler.warmup_steps=5",
            ),
            tmp_path / f"run{frame_layer}",
        )
        return summary["test"]["gtzan/test/accuracy"]

    assert accuracy(frame_layer=True) >= 0.9
    assert accuracy(frame_layer=False) == 0.5  # every clip pools to zero: one prediction for all, half of them right


def test_metrics_and_best_checkpoint_selection(tmp_path, two_tasks, pretrained):
    overrides = [
        *TINY,
        "+experiment=finetune_mtl",
        "dataset.max_frames=32",
        "trainer.max_steps=4",
        "trainer.batch_size=8",
        "trainer.val_every=2",
        f"encoder.checkpoint={pretrained}",
        "tasks=[gtzan,deam]",
        f"tasks.gtzan.root={two_tasks['genre']['root']}",
        f"tasks.deam.root={two_tasks['emotion']['root']}",
        "objective.loss_weighting=uncertainty",
    ]
    summary = run(make_config(*overrides), tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "gtzan/test/accuracy",
        "gtzan/test/macro_f1",
        "deam/test/r2_arousal",
        "deam/test/r2_valence",
        "test/score",
    ):
        assert key in on_disk["test"]
    assert on_disk["best"]["step"] in (2, 4) and "val/score" in on_disk["best"]
    for figure in ("gtzan_test_confusion.png", "deam_test_predictions.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 5_000
    assert summary["test"]["test/score"] == pytest.approx(
        (summary["test"]["gtzan/test/accuracy"] + summary["test"]["deam/test/r2"]) / 2
    )


def test_encoder_checkpoint_errors_are_clear(tmp_path, two_tasks):
    with pytest.raises(ValueError, match="needs encoder.checkpoint"):
        MultiTaskModel(two_tasks, TINY_MODEL, {"mode": "frozen"}, feature_dim=324)
    with pytest.raises(FileNotFoundError, match="encoder.checkpoint=.*nowhere: no such model folder"):
        MultiTaskModel(
            two_tasks, TINY_MODEL, {"mode": "frozen", "checkpoint": str(tmp_path / "nowhere")}, feature_dim=324
        )


def test_encoder_input_must_match_the_task_features(two_tasks, pretrained):
    with pytest.raises(ValueError, match="324-dim features but the task data has 128"):
        MultiTaskModel(two_tasks, TINY_MODEL, {"mode": "frozen", "checkpoint": str(pretrained)}, feature_dim=128)


def test_probing_finds_the_signal_in_every_layer_and_caches(tmp_path, pretrained):
    root = write_task_data(tmp_path / "data", "multiclass", "genre", clips=48)
    overrides = [
        "+experiment=probe",
        "tasks=[gtzan]",
        f"tasks.gtzan.root={root}",
        f"encoder.checkpoint={pretrained}",
        "probe.epochs=30",
        "probe.learning_rates=[1e-3,1e-2]",
        "probe.progress=false",
    ]
    summary = run(make_config(*TINY, *overrides), tmp_path / "run")
    table = {row["layer"]: row for row in summary["probes"]}
    assert set(table) == {0, 1, 2, "weighted_sum"}
    assert all(row["accuracy"] >= 0.9 for row in table.values())
    assert all(row["lr"] in (1e-3, 1e-2) for row in table.values())
    caches = sorted((tmp_path / "run/cache").glob("gtzan_*.pt"))
    assert [p.name for p in caches] == ["gtzan_test.pt", "gtzan_train.pt", "gtzan_valid.pt"]
    stamps = [p.stat().st_mtime_ns for p in caches]
    run(make_config(*TINY, *overrides), tmp_path / "run")
    assert [p.stat().st_mtime_ns for p in caches] == stamps  # representations computed once
    assert (tmp_path / "run/probe_layers.png").exists()


@pytest.mark.slow
def test_the_papers_comparison_is_one_multirun(tmp_path, pretrained):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    root = write_task_data(tmp_path / "data", "multiclass", "genre")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "m3bert.train",
            "-m",
            "+experiment=finetune_mtl",
            "tasks=[gtzan]",
            *TINY,
            "encoder.mode=frozen,finetune,scratch,baseline",
            f"encoder.checkpoint={pretrained}",
            f"tasks.gtzan.root={root}",
            "trainer.max_steps=3",
            "trainer.val_every=3",
            "dataset.max_frames=32",
            "trainer.batch_size=8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "M3BERT_MULTIRUN": str(tmp_path / "multirun")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    modes = {
        p.parent.name.split("encoder.mode=")[1].split(",")[0]: json.loads(p.read_text())
        for p in (tmp_path / "multirun/finetune_mtl").glob("*/metrics.json")
    }
    assert set(modes) == {"frozen", "finetune", "scratch", "baseline"}
    assert all("gtzan/test/accuracy" in m["test"] for m in modes.values())
