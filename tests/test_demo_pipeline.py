import json

import pandas as pd
import pytest
from conftest import TINY, make_config

from m3bert import reproduce
from m3bert.common.files import set_aside
from m3bert.report import find_runs
from m3bert.report import main as report
from m3bert.report.study import write_tour_readme
from m3bert.training import records

PRETRAINED = ["+experiment=smoke", *TINY, "trainer.max_steps=2", "trainer.val_every=2", "trainer.image_every=0"]


def test_a_run_is_reused_only_with_the_same_recipe(pretrained):
    record = records.read(pretrained)
    assert records.recipe_changes(record, make_config(*PRETRAINED)) == []
    # Where it ran and how it logged don't count; the seed and the recipe do.
    assert records.recipe_changes(record, make_config(*PRETRAINED, "trainer.num_workers=2", "logger=wandb")) == []
    assert records.recipe_changes(record, make_config(*PRETRAINED, "seed=3")) == ["seed"]
    assert records.recipe_changes(record, make_config(*PRETRAINED, "optimizer.lr=0.123")) == ["optimizer.lr"]
    assert records.recipe_changes(records.read(pretrained.parent / "no_run_here"), make_config(*PRETRAINED)) == []


def test_an_output_that_cannot_be_reused_is_renamed_not_deleted(tmp_path):
    folder = tmp_path / "pretrain"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints/step_0000001.pt").write_bytes(b"weights")
    set_aside(folder, "with another recipe")
    assert not folder.exists()
    (aside,) = tmp_path.glob("pretrain.old-*")
    assert (aside / "checkpoints/step_0000001.pt").read_bytes() == b"weights"


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_reuses_its_work(tmp_path, monkeypatch):
    pytest.importorskip("fluidsynth", reason="the demo corpus needs pyfluidsynth and libfluidsynth")
    for name, folder in (("M3BERT_AUDIO", "audio"), ("M3BERT_DATA", "data"), ("M3BERT_EXPERIMENTS", "runs")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    tour = ["scale=tour_quick", "extra=['logger=none','trainer.progress=false']"]
    reproduce.main(tour)
    report = tmp_path / "runs/demo_quick/report"
    table = pd.read_csv(report / "results.csv")
    assert list(table.columns) == ["task", "metric", "frozen", "finetune", "scratch", "baseline"]
    assert len(table) == 5 and table[["frozen", "finetune", "scratch", "baseline"]].notna().all().all()
    for name in ("README.md", "results.csv", "pretrain_loss.png", "reconstruction.png", "clip_probe.csv"):
        assert (report / name).exists(), name
    verdict = pd.read_csv(report / "clip_probe_verdict.csv")
    assert set(verdict["label"]) == {"style", "meter", "instrument"} and verdict["baseline_accuracy"].notna().all()
    steps = json.loads((report / "results.json").read_text())["pretrain"]["steps"]
    # A second run finds every stage finished and only rewrites the report.
    checkpoints = sorted((tmp_path / "runs/demo_quick/pretrain/checkpoints").iterdir())
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    reproduce.main(tour)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert json.loads((report / "results.json").read_text())["pretrain"]["steps"] == steps

    # After the code or a recipe changed, the stale outputs are set aside and redone, the rest is reused.
    runs = tmp_path / "runs/demo_quick"
    record = json.loads((runs / "finetune_baseline/run.json").read_text())
    record["config"]["optimizer"]["lr"] *= 2
    (runs / "finetune_baseline/run.json").write_text(json.dumps(record))
    settings = json.loads((runs / "clip_embeddings/extract.json").read_text())
    settings["settings"]["model_fingerprint"] = "another model"
    (runs / "clip_embeddings/extract.json").write_text(json.dumps(settings))
    reproduce.main(tour)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    (old_baseline,) = runs.glob("finetune_baseline.old-*")
    (old_embeddings,) = runs.glob("clip_embeddings.old-*")
    assert not list(runs.glob("finetune_frozen.old-*")) and not list(runs.glob("pretrain.old-*"))
    assert json.loads((runs / "finetune_baseline/run.json").read_text())["status"] == "finished"
    embedded = len(list((runs / "clip_embeddings/mean_std").rglob("*.npy")))
    assert embedded == len(list((old_embeddings / "mean_std").rglob("*.npy"))) > 0


def test_demo_recipes_pin_fp32_so_the_table_means_the_same_on_every_cpu():
    assert make_config("+experiment=pretrain_demo").trainer.precision == "fp32"
    assert make_config("+experiment=finetune_demo", "encoder.checkpoint=x").trainer.precision == "fp32"


def test_demo_report_is_labelled_one_seed_and_says_what_produced_it(tmp_path):
    root = tmp_path / "demo"
    environment = {"precision": "fp32", "device": "cpu", "cpu": "avx512+avx512_bf16", "threads": 2}
    for mode, score in (("frozen", 0.61), ("finetune", 0.58), ("scratch", 0.55), ("baseline", 0.62)):
        folder = root / f"finetune_{mode}"
        folder.mkdir(parents=True)
        record = {"status": "finished", "stage": "finetune", "seed": 0, "git_commit": "b" * 40,
                  "environment": environment, "config": {"seed": 0, "encoder": {"mode": mode}, "tasks": {}},
                  "metrics": {"final": {}, "best": {}, "test": {"test/score": score}}}  # fmt: skip
        (folder / records.RECORD).write_text(json.dumps(record))
        style = {"frozen": 0.439, "baseline": 0.404}.get(mode, 0.3)
        metrics = {"steps": 10, "test": {"test/score": score, "demo_style/test/accuracy": style}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (root / "pretrain").mkdir()
    metrics = {"final": {}, "best": {"val/loss": 0.15}, "test": {}}
    pretrain = {"status": "finished", "stage": "pretrain", "seed": 0, "config": {"seed": 0}, "git_commit": "b" * 40,
                "environment": environment, "metrics": metrics}  # fmt: skip
    (root / "pretrain" / records.RECORD).write_text(json.dumps(pretrain))
    (root / "pretrain/metrics.json").write_text(json.dumps({"steps": 700, "best": {"val/loss": 0.15}}))
    (root / "finetune_frozen.old-20260101-000000").mkdir()  # set aside: not one of this demo's runs
    (root / "finetune_frozen.old-20260101-000000" / records.RECORD).write_text(json.dumps(pretrain))

    job = reproduce.plan(reproduce.Scale.from_config(reproduce.compose("reproduce", ["scale=tour"]).scale), root, [0])
    report(job["report"][0].overrides)
    runs = find_runs([str(root)])
    assert len(runs) == 5
    compared = (root / "report/runs/report.md").read_text()
    assert "# The demo's runs (one seed)" in compared
    assert "Against the reference row (`encoder.mode=baseline`" in compared
    assert "| frozen | test/score | 0.610 (1) | 0.620 (1) | -0.0100 | – | untested (n < 2: 1 vs 1) |" in compared
    tasks = make_config("+experiment=finetune_demo", "encoder.checkpoint=x").tasks
    write_tour_readme(root / "report", root, "finetune_{mode}", tasks)
    text = (root / "report/README.md").read_text()
    assert "**One seed** (seed 0) per mode" in text
    assert "| demo_style | accuracy | 0.439 | 0.300 | 0.300 | 0.404 |" in text
    assert "- precision: `fp32`" in text and "- cpu: `avx512+avx512_bf16`" in text and "- git_commit: `bbbbbbb`" in text
