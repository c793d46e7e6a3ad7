"""make reproduce-paper: the job list, the missing-data check, and the whole pipeline on a tiny scale."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, TINY, write_task_data

from m3bert import reproduce
from m3bert.common.errors import UserError
from m3bert.training import records


def test_dry_run_lists_every_job_with_its_own_overrides():
    out = subprocess.run(
        ["make", "-s", "reproduce-paper", "SCALE=demo", "DRY_RUN=1"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    multitask = [line for line in lines if "/multitask/" in line]
    assert len(multitask) == 12
    for mode in reproduce.MODES:
        for seed in (0, 1, 2):
            assert sum(f"encoder.mode={mode} seed={seed} " in line for line in multitask) == 1
    single = [line for line in lines if "/single/" in line]
    assert len(single) == 15 and all("encoder.mode=frozen" in line for line in single)
    # the demo scale's own budgets: single-task runs take `single`, multi-task runs `multitask`
    assert all("trainer.max_steps=150" in line for line in single)
    assert all("demo_steps.frozen=400" in line for line in multitask)
    assert not any("trainer.max_steps=150" in line for line in multitask)
    assert "'tasks=[demo_meter]'" in single[6]
    assert lines[0] == "python -m m3bert.prepare dataset=demo"
    assert lines[-1].startswith("python -m m3bert.report experiments/paper_demo out=experiments/paper_demo/report")


def test_missing_datasets_are_listed_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("M3BERT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("M3BERT_AUDIO", str(tmp_path / "audio"))
    monkeypatch.setenv("M3BERT_EXPERIMENTS", str(tmp_path / "experiments"))
    with pytest.raises(UserError) as err:
        reproduce.main([])
    message = str(err.value)
    assert message.count("put its audio") == 9 and str(tmp_path / "audio" / "rwc") in message
    assert not (tmp_path / "experiments").exists()
    with pytest.raises(UserError, match="gtzan: no prepared features"):
        reproduce.main(["stages=[finetune]"])


def test_later_stages_ask_only_for_what_they_read(tmp_path, monkeypatch):
    monkeypatch.setenv("M3BERT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("M3BERT_EXPERIMENTS", str(tmp_path / "experiments"))
    for name, kind, label in (("gtzan", "multiclass", "genre"), ("deam", "regression", ["valence", "arousal"])):
        write_task_data(tmp_path / "data" / name, kind, label, clips=4)
    paper = reproduce.Scale.from_config(reproduce.compose("reproduce").scale)
    needed = reproduce.missing_datasets(paper, ["finetune"], pretrained=True)
    assert [line.split(":")[0] for line in needed] == ["mtg_jamendo_moodtheme", "ballroom", "rwc"]
    assert len(reproduce.missing_datasets(paper, ["pretrain", "finetune"], pretrained=False)) == 7
    assert reproduce.missing_datasets(paper, ["report"]) == []
    # Fine-tuning without a finished pre-training run is refused up front, naming the stage to add.
    with pytest.raises(UserError, match="pretrain: no finished pre-training run"):
        reproduce.main(["stages=[finetune,report]"])


def test_reproduce_errors_are_one_line_with_exit_status_2():
    done = subprocess.run(
        [sys.executable, "-m", "m3bert.reproduce", "scale=nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "m3bert.reproduce: error: scale=nope: no such scale config; choose one of demo, paper, tour, tour_quick"
    )


def test_a_pretraining_run_of_another_recipe_sets_the_whole_study_aside(tmp_path, monkeypatch):
    import json

    import m3bert.train

    scale = reproduce.Scale.from_config(reproduce.compose("reproduce", ["scale=tour_quick"]).scale)
    root = tmp_path / "demo_quick"
    jobs = reproduce.plan(scale, root, [0])
    (root / "pretrain").mkdir(parents=True)
    (root / "finetune_frozen").mkdir()  # made from that pre-training run: it goes with it
    record = {"status": "finished", "config": {"seed": 0, "optimizer": {"lr": 123.0}}}
    (root / "pretrain" / records.RECORD).write_text(json.dumps(record))
    ran = []
    monkeypatch.setattr(m3bert.train, "run", lambda cfg, folder, *args: ran.append(folder))
    reproduce.run_job(jobs["pretrain"][0], scale, root)
    (aside,) = tmp_path.glob("demo_quick.old-*")
    assert (aside / "finetune_frozen").is_dir() and records.read(aside / "pretrain") == record
    assert ran == [root / "pretrain"] and not (root / "finetune_frozen").exists()


def test_timings_add_up_over_invocations_and_keep_a_skipped_jobs_first_time(tmp_path):
    path = tmp_path / "timings.json"
    timings = reproduce.Timings(path)
    timings.add("pretrain", "python -m m3bert.train a", 120.0)
    timings.add("finetune", "python -m m3bert.train b", 30.0)
    again = reproduce.Timings(path)  # the next invocation reads what the last one wrote
    again.add("pretrain", "python -m m3bert.train a", 2.0, done_before=True)  # skipped: the first time stands
    again.add("finetune", "python -m m3bert.train c", 60.0)
    assert again.jobs["python -m m3bert.train a"]["seconds"] == 120.0
    summary = again.summary()
    assert "pretrain 2.0" in summary and "finetune 1.5" in summary and "total 3.5 min" in summary


@pytest.mark.slow  # about 70 s on 2 cores: six tiny runs, twice
def test_pipeline_on_a_tiny_scale_runs_resumes_and_reports(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    for name, kind, label in (("gtzan", "multiclass", "genre"), ("deam", "regression", ["valence", "arousal"])):
        write_task_data(data / name, kind, label, clips=12)
    monkeypatch.setenv("M3BERT_DATA", str(data))
    monkeypatch.setenv("M3BERT_EXPERIMENTS", str(tmp_path / "experiments"))
    extra = ",".join(f"'{o}'" for o in [*TINY, "trainer.max_steps=2", "trainer.val_every=2", "trainer.batch_size=4"])
    tiny = [
        "scale.folder=tiny", "scale.corpora=[]", "scale.task_data=[]", "scale.pretrain=['+experiment=smoke']",
        "scale.finetune=['+experiment=finetune_mtl']", "scale.single_tasks=[gtzan]", "scale.single=[]",
        "scale.multitask=['tasks=[gtzan,deam]']",
    ]  # fmt: skip
    args = [*tiny, "stages=[pretrain,finetune,report]", "seeds=[0]", f"extra=[{extra}]"]
    jobs = reproduce.main(args)
    root = tmp_path / "experiments" / "tiny"
    folders = [job.folder for stage in ("pretrain", "finetune") for job in jobs[stage]]
    assert len(folders) == 6 and all(records.read(f)["status"] == "finished" for f in folders)
    tables = (root / "report" / "paper_tables.md").read_text()
    assert "| task | metric | frozen | finetune | scratch | baseline |" in tables
    assert "| task | metric | multi-task | single-task |" in tables
    results = pd.read_csv(root / "report" / "results.csv")
    assert set(results["stage"]) == {"pretrain", "finetune"}
    with caplog.at_level("INFO", logger="m3bert"):
        reproduce.main(args)  # a rerun skips every finished job
    assert caplog.text.count("Skipping") == 6


@pytest.mark.slow  # about 50 minutes on 2 cores: the whole demo-scale study, as `make reproduce-paper SCALE=demo`
def test_demo_scale_runs_end_to_end_and_says_how_long_it_took(tmp_path):
    folders = {"M3BERT_AUDIO": "audio", "M3BERT_DATA": "data", "M3BERT_EXPERIMENTS": "runs"}
    env = {**os.environ, **{name: str(tmp_path / folder) for name, folder in folders.items()}}
    out = subprocess.run(
        ["make", "-s", "reproduce-paper", "SCALE=demo"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "time per stage over all invocations (min): prepare" in out.stderr
    root = tmp_path / "runs" / "paper_demo"
    tables = (root / "report" / "paper_tables.md").read_text()
    for task in ("demo_style", "demo_tags", "demo_meter", "demo_tempo_register", "demo_instrument"):
        row = next(line for line in tables.splitlines() if line.startswith(f"| {task} |"))
        assert row.count("(3)") == 4  # frozen, finetune, scratch and baseline, each over three seeds
    timings = reproduce.Timings(root / "timings.json")
    stages = {"prepare", "pretrain", "finetune", "report"}  # the demo scale has no probe stage
    assert len(timings.jobs) == 30 and {job["stage"] for job in timings.jobs.values()} == stages
