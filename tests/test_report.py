"""Run records, the comparison report (local and from a stubbed W&B API) and the W&B labels of a run."""

import datetime
import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import TINY, make_config, task_overrides, write_task_data

from m3bert import report
from m3bert.common.errors import UserError
from m3bert.train import run
from m3bert.training import records

QUICK = [
    "+experiment=smoke",
    *TINY,
    "dataset.max_frames=64",
    "trainer.batch_size=4",
    "trainer.max_steps=2",
    "trainer.val_every=2",
    "trainer.log_every=1",
    "trainer.image_every=0",
]


def sweep_runs(root: Path, ratios=(0.1, 0.3), seeds=(0, 1)) -> dict:
    """The 2 x 2 smoke sweep masking.ratio x seed, run in-process as a multirun's jobs would be."""
    sweep = {"id": "smoke-test", "swept": ["masking.ratio", "seed"]}
    for job, (ratio, seed) in enumerate((r, s) for r in ratios for s in seeds):
        overrides = [*QUICK, f"masking.ratio={ratio}", f"seed={seed}"]
        run(
            make_config(*overrides), root / f"masking.ratio={ratio},seed={seed}", overrides, sweep={**sweep, "job": job}
        )
    return sweep


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    sweep_runs(root)
    return root


def test_run_record_says_what_a_comparison_needs(smoke_sweep):
    record = records.read(smoke_sweep / "masking.ratio=0.3,seed=1")
    assert record["status"] == "finished" and record["stage"] == "pretrain"
    assert record["seed"] == 1 and record["config"]["masking"]["ratio"] == 0.3
    assert "masking.ratio=0.3" in record["overrides"]
    assert record["sweep"] == {"id": "smoke-test", "swept": ["masking.ratio", "seed"], "job": 3}
    assert record["steps"] == 2 and record["wall_time_s"] > 0
    assert set(record["metrics"]) == {"final", "best", "test"} and "val/loss" in record["metrics"]["best"]
    assert len(record["git_commit"] or "0" * 40) == 40


def test_report_of_a_two_by_two_sweep(smoke_sweep, tmp_path):
    report.main([str(smoke_sweep), f"out={tmp_path}"])
    text = (tmp_path / "report.md").read_text()
    assert "| masking.ratio | runs | val/loss |" in text  # seed aggregated away; the interpolated copy isn't a column
    csv = pd.read_csv(tmp_path / "results.csv")
    assert len(csv) == 4 and set(csv["metric"]) == {"val/loss"} and list(csv.columns[:3]) == ["stage", "run", "seed"]
    for ratio in (0.1, 0.3):
        values = csv.loc[csv["masking.ratio"] == ratio, "value"]
        mean, std = values.mean(), values.std()  # pandas: the sample std, as the report
        assert f"| {ratio} | 2 | {mean:#.3g} ± {std:#.3g} (2) |" in text  # as configured; 3 significant digits
    assert (tmp_path / "figures/pretrain_vs_masking.ratio.png").stat().st_size > 5000
    assert (tmp_path / "figures/pretrain_loss.png").is_file()
    assert "![pretrain_vs_masking.ratio](figures/pretrain_vs_masking.ratio.png)" in text


def test_failed_and_unfinished_runs_are_listed(smoke_sweep, tmp_path):
    runs = report.find_runs([str(smoke_sweep)])
    broken = [
        report.Run("crashed_run", "failed", "pretrain", runs[0].config, error="FloatingPointError: non-finite loss"),
        report.Run("killed_run", "unfinished", "pretrain", runs[1].config),
    ]
    report.write_report([*runs, *broken], tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "- `crashed_run`: failed — FloatingPointError: non-finite loss" in text
    assert "- `killed_run`: unfinished (still running, or killed)" in text
    assert "6 runs (4 finished, 1 failed, 1 unfinished)" in text


def test_input_without_runs_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: holds no run"):
        report.find_runs([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match="nowhere: does not exist"):
        report.find_runs([str(tmp_path / "nowhere")])


def test_differing_keys_collapse_task_mixes_and_skip_ignored_keys():
    a = {"seed": 0, "trainer": {"device": "cpu", "max_steps": 5}, "tasks": {"gtzan": {"type": "multiclass"}}}
    b = {"seed": 1, "trainer": {"device": "cuda", "max_steps": 5}, "tasks": {"gtzan": {}, "deam": {}}}
    assert report.differing_keys([a, b]) == {"tasks": ["gtzan", "deam+gtzan"]}


def test_a_setting_older_runs_lack_is_a_column_of_its_own():
    old = {"model": {"hidden_size": 32, "num_layers": 2}, "tasks": {"gtzan": {"type": "multiclass"}}}
    new = {
        "model": {"hidden_size": 32, "num_layers": 4, "positions": "rotary"},
        "tasks": {"gtzan": {"type": "multiclass"}},
    }
    assert report.differing_keys([old, new]) == {"model.num_layers": [2, 4], "model.positions": [None, "rotary"]}


def test_each_invocation_of_a_sweep_is_its_own_group():
    overrides = ["+experiment=smoke", "masking.ratio=0.1,0.3", "seed=0,1"]
    first = records.sweep_identity("smoke", overrides, datetime.datetime(2026, 1, 2, 3, 4, 5))
    again = records.sweep_identity("smoke", list(reversed(overrides)), datetime.datetime(2026, 1, 2, 3, 9, 0))
    assert first["id"] == f"smoke-{first['command']}-20260102-030405" and first["swept"] == ["masking.ratio", "seed"]
    assert again["command"] == first["command"] and again["id"] != first["id"]
    other = records.sweep_identity("smoke", ["+experiment=smoke", "masking.ratio=0.1,0.5"])
    assert other["command"] != first["command"]


def test_mean_std_of_seeds():
    mean, std, n = report.mean_std([1.0, 2.0, 3.0])
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert report.format_mean_std(*report.mean_std([0.5])) == "0.500 (1)"
    assert math.isnan(report.mean_std([])[0])


def test_folder_of_other_overrides_is_refused_and_finished_runs_are_skipped(smoke_sweep, tmp_path, caplog):
    folder = smoke_sweep / "masking.ratio=0.1,seed=0"
    record = records.read(folder)
    cfg = make_config(*record["overrides"])
    with pytest.raises(records.FolderCollision, match="not \\[masking.ratio=0.2"):
        records.check_folder(folder, "masking.ratio=0.2", record["overrides"], None, cfg)
    with pytest.raises(records.FolderCollision, match="jobs 0 and 5 of sweep smoke-test"):
        records.check_folder(folder, record["folder_key"], record["overrides"], {**record["sweep"], "job": 5}, cfg)
    assert records.check_folder(folder, record["folder_key"], record["overrides"], record["sweep"], cfg) == "skip"
    # Typed differently (False for false), still the same command: skipped, not run again.
    overrides = [o.replace("=false", "=False") for o in record["overrides"]]
    with caplog.at_level("INFO", logger="m3bert"):
        summary = run(make_config(*overrides), folder, overrides, record["folder_key"], record["sweep"])
    assert "Skipping" in caplog.text and summary["steps"] == 2
    # The same command after the recipe changed under it: refused, not passed off as the new recipe's result.
    stale = {**record, "config": {**record["config"], "masking": {**record["config"]["masking"], "ratio": 0.5}}}
    (folder / records.RECORD).write_text(json.dumps(stale))
    try:
        with pytest.raises(records.FolderCollision, match=r"another recipe \(masking.ratio differ\)"):
            run(make_config(*record["overrides"]), folder, record["overrides"], record["folder_key"], record["sweep"])
    finally:
        (folder / records.RECORD).write_text(json.dumps(record))


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, part, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        part, pos = part + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
    return out


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory, pretrained) -> Path:
    folder = tmp_path_factory.mktemp("finetune") / "run"
    base = ["+experiment=finetune_mtl", "tasks=[gtzan]", *TINY, "logger=wandb", f"encoder.checkpoint={pretrained}"]
    cfg = make_config(*base)
    overrides = [
        *base,
        *task_overrides(cfg, folder.parent / "data"),
        "trainer.max_steps=4",
        "trainer.val_every=2",
        "trainer.batch_size=4",
        "dataset.max_frames=64",
        "dataset.eval_max_frames=64",
        "encoder.mode=frozen",
    ]
    sweep = {"id": "finetune_mtl-1234abcd", "swept": ["encoder.mode"], "job": 0}
    run(make_config(*overrides), folder, overrides, sweep=sweep)
    return folder


def test_finetune_run_has_its_wandb_labels_and_test_metrics(finetune_run):
    record = records.read(finetune_run)
    assert record["stage"] == "finetune"
    files = list((finetune_run / "wandb").glob("offline-run-*/*.wandb"))
    assert files
    entries = wandb_records(files[0])
    (meta,) = [e.run for e in entries if e.WhichOneof("record_type") == "run"][:1]
    assert meta.job_type == "finetune" and meta.run_group == "finetune_mtl-1234abcd"
    assert set(meta.tags) == {"encoder.mode=frozen"}
    summary = {u.key: json.loads(u.value_json) for e in entries if e.HasField("summary") for u in e.summary.update}
    test = record["metrics"]["test"]
    assert summary["gtzan/test/accuracy"] == pytest.approx(test["gtzan/test/accuracy"])
    assert summary["best/val/score"] == pytest.approx(record["metrics"]["best"]["val/score"])


def test_probe_run_has_its_own_wandb_record(tmp_path, pretrained):
    root = write_task_data(tmp_path / "data", "multiclass", "genre", clips=24)
    overrides = ["+experiment=probe", "tasks=[gtzan]", f"tasks.gtzan.root={root}", f"encoder.checkpoint={pretrained}"]
    overrides += ["probe.epochs=2", "probe.learning_rates=[1e-3]", "probe.progress=false"]
    folder = tmp_path / "probe"
    summary = run(make_config(*TINY, *overrides, "logger=wandb"), folder, overrides)
    (file,) = folder.glob("wandb/offline-run-*/*.wandb")
    entries = wandb_records(file)
    (meta,) = [e.run for e in entries if e.WhichOneof("record_type") == "run"][:1]
    assert meta.job_type == "probe" and meta.run_group == "probe"
    assert {"precision": "fp32", "device": "cpu"}.items() <= records.read(folder)["environment"].items()
    logged = {u.key: json.loads(u.value_json) for e in entries if e.HasField("summary") for u in e.summary.update}
    assert logged["gtzan/test/accuracy"] == pytest.approx(summary["test"]["gtzan/test/accuracy"])
    assert logged["best/gtzan/layer"] == summary["best"]["gtzan/layer"]
    steps = [e.history for e in entries if e.HasField("history")]
    assert len(steps) >= 4  # layers 0, 1, 2 and the weighted sum (tiny model)


class StubRun(SimpleNamespace):
    def history(self, keys, pandas):
        return [{"_step": row["step"], **{k: row[k] for k in keys if k in row}} for row in self.rows]


class StubApi:
    """wandb.Api() as the report uses it, serving runs recorded from real run folders."""

    def __init__(self, runs):
        self.runs_, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [r for r in self.runs_ if not filters or r.group == filters.get("group")]


def recorded(folder: Path, group: str) -> StubRun:
    record = records.read(folder)
    metrics = record["metrics"]
    monitor = record["config"]["trainer"]["monitor"]
    summary = {**metrics["final"], **metrics["test"], monitor: {"max": metrics["best"][monitor]}, "_step": 4}
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return StubRun(
        name=folder.name, state="finished", job_type=record["stage"], group=group, config=record["config"],
        summary=summary, rows=rows,
    )  # fmt: skip


def test_report_from_wandb_runs_and_the_published_report(finetune_run, smoke_sweep, tmp_path):
    api = StubApi([recorded(finetune_run, "sweep-a"), recorded(smoke_sweep / "masking.ratio=0.1,seed=0", "other")])
    runs = report.wandb_runs("me/m3bert", group="sweep-a", api=api)
    assert api.calls == [("me/m3bert", {"group": "sweep-a"})]
    (remote,) = runs
    local = report.load_run(finetune_run)
    assert remote.stage == "finetune" and remote.metrics["gtzan/test/accuracy"] == local.metrics["gtzan/test/accuracy"]
    comparisons = report.write_report(runs, tmp_path)
    assert comparisons[0].metrics == ["gtzan/test/accuracy", "test/score"]
    assert "| runs | gtzan/test/accuracy | test/score |" in (tmp_path / "report.md").read_text()
    with pytest.raises(UserError, match="no runs in group nope"):
        report.wandb_runs("me/m3bert", group="nope", api=api)

    saved = []

    def block(kind):
        return lambda **kw: SimpleNamespace(kind=kind, **kw)

    def make_report(**kw):
        return SimpleNamespace(save=lambda: saved.append(kw), url="https://wandb.ai/me/m3bert/reports/x", **kw)

    kinds = ("H1", "H2", "ScatterPlot", "BarPlot", "LinePlot", "Runset", "PanelGrid")
    reports = SimpleNamespace(
        **{kind: block(kind) for kind in kinds},
        Config=lambda key: f"config:{key}",
        SummaryMetric=lambda key: f"summary:{key}",
        Report=make_report,
    )
    url = report.publish_wandb_report("me", "m3bert", comparisons, group="sweep-a", reports=reports)
    assert url.startswith("https://wandb.ai/") and len(saved) == 1
    grid = saved[0]["blocks"][2]
    assert grid.runsets[0].filters == "Metric('JobType') == 'finetune' and Metric('Group') == 'sweep-a'"
    assert [p.kind for p in grid.panels] == ["BarPlot", "LinePlot"]
    assert grid.panels[0].metrics == ["summary:gtzan/test/accuracy", "summary:test/score"]


def test_published_report_builds_with_wandb_workspaces(smoke_sweep, monkeypatch):
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    monkeypatch.setattr(wr.Report, "save", lambda self, *a, **k: self)  # never reaches the network
    monkeypatch.setattr(wr.Report, "url", property(lambda self: "offline"), raising=False)
    comparisons = report.compare(report.find_runs([str(smoke_sweep)]))
    assert report.publish_wandb_report("me", "m3bert", comparisons, group="smoke-test", reports=wr) == "offline"


def readme_commands() -> list[list[str]]:
    import shlex

    from conftest import ROOT

    text = (ROOT / "README.md").read_text().split("## Sweeps and comparisons", 1)[1].split("\n## ", 1)[0]
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_sweep_commands_compose_every_job():
    import itertools

    commands = [c[3:] for c in readme_commands() if c[:3] == ["python", "-m", "m3bert.train"]]
    assert len(commands) == 5
    for args in commands:
        overrides = [a for a in args if a != "-m"]
        choices = []
        for override in records.parse_overrides(overrides):
            key = override.get_key_element()
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            choices.append([f"{key}={v}" for v in values] if override.is_sweep_override() else [override.input_line])
        jobs = list(itertools.product(*choices))
        assert ("-m" in args) == (len(jobs) > 1)
        configs = [make_config(*job) for job in jobs]
        assert all(cfg.trainer.max_steps > 0 for cfg in configs)
        if any(a.startswith("tasks=[gtzan],") for a in args):  # the task-mix sweep: one run per mix
            assert [sorted(cfg.tasks) for cfg in configs] == [
                ["gtzan"],
                ["deam", "gtzan"],
                ["ballroom", "deam", "gtzan", "mtg_moodtheme", "rwc"],
            ]


def test_readme_report_and_make_commands_parse():
    commands = readme_commands()
    reports = [c[3:] for c in commands if c[:3] == ["python", "-m", "m3bert.report"]]
    for args in reports:
        inputs, options = report.parse_args(args)
        assert "out" in options and all(i.startswith("multirun/") for i in inputs)
        assert inputs or options.get("wandb") == "ENTITY/m3bert"
    makes = [c for c in commands if c[0] == "make"]
    assert [m[1] for m in makes] == ["reproduce-paper"] * 3


def test_a_fine_tuning_run_that_loads_its_encoder_is_not_described_by_the_recipes_model():
    config = {"model": {"num_layers": 4}, "encoder": {"mode": "frozen"}, "objective": {"model": {}, "pooling": "max"}}
    loaded = report.Run("a", "finished", "finetune", config)
    assert "model" not in loaded.config and loaded.config["objective"] == {"pooling": "max"}
    scratch = {**config, "encoder": {"mode": "scratch"}}
    assert report.Run("b", "finished", "finetune", scratch).config == scratch
    assert report.Run("c", "finished", "pretrain", {"model": {"num_layers": 4}}).config["model"] == {"num_layers": 4}


# ------------------------------------------------------------------------------------- every run, exactly shown
def write_record(folder: Path, stage: str, seed: int, config: dict, metrics: dict, status="finished", **extra) -> Path:
    """A run folder as records.finish leaves it (``metrics``: the test metrics), without training anything."""
    folder.mkdir(parents=True)
    record = {"status": status, "stage": stage, "seed": seed, "config": {"seed": seed, **config}}
    record["metrics"] = {"final": {}, "best": {}, "test": metrics} if status == "finished" else None
    (folder / records.RECORD).write_text(json.dumps({**record, **extra}))
    return folder


def lr_by_masking_runs(root: Path, broken: bool = False) -> dict[tuple, list[float]]:
    """2 learning rates x 2 masking ratios x 3 seeds of generated fine-tuning records; ``model.positions`` only
    in the runs at lr 1e-3 (a setting added to the code between the two halves). Returns each row's scores."""
    rng = __import__("random").Random(0)
    scores = {}
    for lr in (5e-4, 1e-3):
        for ratio in (0.15, 0.4):
            for seed in range(3):
                model = {"num_layers": 4} | ({"positions": "rotary"} if lr == 1e-3 else {})
                config = {"optimizer": {"lr": lr}, "masking": {"ratio": ratio}, "model": model, "tasks": {}}
                config["encoder"] = {"mode": "scratch"}
                score = round(0.5 + 0.1 * (lr == 1e-3) + 0.02 * seed + rng.random() / 100, 6)
                scores.setdefault((lr, ratio), []).append(score)
                folder = root / f"lr={lr},ratio={ratio},seed={seed}"
                write_record(folder, "finetune", seed, config, {"test/score": score})
    return scores


def test_report_lists_every_run_of_a_sweep_with_a_key_only_some_runs_have(tmp_path):
    scores = lr_by_masking_runs(tmp_path / "runs")
    comparisons = report.write_report(report.find_runs([str(tmp_path / "runs")]), tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    (finetune,) = comparisons
    assert [len(row.runs) for row in finetune.rows()] == [3, 3, 3, 3]
    assert finetune.keys == ["masking.ratio", "model.positions", "optimizer.lr"]
    assert "Runs read: 12; rows: 4 holding 12 runs; listed as failed or unfinished: 0." in text
    for (lr, ratio), values in scores.items():
        mean, std, n = report.mean_std(values)
        positions = "rotary" if lr == 1e-3 else "–"  # absent, not a reason to drop the run
        shown_lr = {5e-4: "5e-4", 1e-3: "1e-3"}[lr]  # as configured, never rounded to 0.001
        assert f"| {ratio} | {positions} | {shown_lr} | 3 | {mean:#.3g} ± {std:#.3g} (3) |" in text
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(csv) == 12 and csv["optimizer.lr"].tolist().count(5e-4) == 6


def test_interpolated_copies_are_counted_not_listed(tmp_path):
    for seed, ratio in enumerate((0.1, 0.3)):
        config = {"masking": {"ratio": ratio}, "objective": {"masker": {"ratio": ratio}}}
        write_record(tmp_path / f"r{seed}", "pretrain", seed, config, {"val/loss": 1.0 + seed})
    report.main([str(tmp_path), f"out={tmp_path / 'out'}", "metrics=val/loss"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Differing config keys: `masking.ratio` (1 interpolated copies of these left out)." in text
    assert "objective.masker.ratio" not in text


def test_count_check_fails_when_a_run_is_lost(tmp_path, monkeypatch):
    lr_by_masking_runs(tmp_path / "runs")
    runs = report.find_runs([str(tmp_path / "runs")])
    assert report.check_counts(len(runs), report.compare(runs)) == {"read": 12, "rows": 4, "in_rows": 12, "listed": 0}
    with pytest.raises(report.CountMismatch, match="13 runs read but 12 in rows and 0 listed"):
        report.check_counts(13, report.compare(runs))
    rows = report.StageComparison.rows
    monkeypatch.setattr(report.StageComparison, "rows", lambda self: [*rows(self)[:-1], replace_runs(rows(self)[-1])])
    with pytest.raises(report.CountMismatch, match="11 runs in rows for 12 finished runs"):
        report.write_report(runs, tmp_path / "out")


def replace_runs(row):
    return report.Row(row.cells, row.raw, row.runs[:2])


def test_significance_against_the_reference_row_matches_scipy(tmp_path):
    from scipy import stats

    scores = lr_by_masking_runs(tmp_path / "runs")
    one_seed = {"optimizer": {"lr": 2e-3}, "masking": {"ratio": 0.15}, "model": {"num_layers": 4}, "tasks": {}}
    write_record(
        tmp_path / "runs/one_seed", "finetune", 0, {**one_seed, "encoder": {"mode": "scratch"}}, {"test/score": 0.7}
    )
    out = tmp_path / "out"
    report.main([str(tmp_path / "runs"), f"out={out}", "reference=optimizer.lr=5e-4,masking.ratio=0.15"])
    (finetune,) = report.compare(report.find_runs([str(tmp_path / "runs")]), reference=report.parse_reference(
        "optimizer.lr=0.0005,masking.ratio=0.15"))  # fmt: skip
    table = finetune.significance().set_index(["optimizer.lr", "masking.ratio"])
    reference = scores[(5e-4, 0.15)]
    for lr, ratio in [(5e-4, 0.4), (1e-3, 0.15), (1e-3, 0.4)]:
        row = table.loc[({5e-4: "5e-4", 1e-3: "1e-3"}[lr], str(ratio))]
        expected = stats.ttest_ind(scores[(lr, ratio)], reference, equal_var=False)
        assert float(row["p (Welch)"]) == pytest.approx(expected.pvalue, rel=0.03)  # printed with 2 digits
        assert row["holds at 5 %"] == ("yes" if expected.pvalue < 0.05 else "no")
        difference = sum(scores[(lr, ratio)]) / 3 - sum(reference) / 3
        assert float(row["difference"]) == pytest.approx(difference, rel=1e-2)
    assert table.loc[("1e-3", "0.15"), "holds at 5 %"] == "yes"  # 0.1 apart with a spread of about 0.02
    assert table.loc[("2e-3", "0.15"), "holds at 5 %"] == "untested (n < 2: 1 vs 3)"
    text = (out / "report.md").read_text()
    assert "Against the reference row (`optimizer.lr=5e-4,masking.ratio=0.15`" in text
    assert "Not recorded: these runs' records predate provenance" in text  # generated records: no environment
    with pytest.raises(UserError, match="names 2 rows of the finetune table"):
        report.compare(report.find_runs([str(tmp_path / "runs")]), reference={"optimizer.lr": "1e-3"})
    with pytest.raises(UserError, match="no configuration has these values"):
        report.compare(report.find_runs([str(tmp_path / "runs")]), reference={"optimizer.lr": "7e-4"})


def test_within_compares_each_row_with_the_reference_row_of_its_own_group(tmp_path):
    # Two encoders' evaluations, each with its own feature floor: one report, each against its own floor.
    scores = {("a", "features"): [0.60, 0.62], ("a", "layer"): [0.70, 0.72], ("b", "features"): [0.50, 0.52],
              ("b", "layer"): [0.51, 0.55]}  # fmt: skip
    for (model, embedding), values in scores.items():
        for repeat, value in enumerate(values):
            config, metrics = {"model": model, "embedding": embedding}, {"label/test/accuracy": value}
            write_record(tmp_path / f"{model}_{embedding}_{repeat}", "evaluate", repeat, config, metrics)
    runs = report.find_runs([str(tmp_path)])
    with pytest.raises(UserError, match="names 2 rows of the evaluate table.*within=KEY"):
        report.compare(runs, reference={"embedding": "features"})
    (evaluate,) = report.compare(runs, reference={"embedding": "features"}, within=["model"])
    table = evaluate.significance().set_index("model")
    assert list(table.index) == ["a", "b"] and set(table["embedding"]) == {"layer"}
    assert float(table.loc["a", "difference"]) == pytest.approx(0.10)  # 0.71 against a's own floor 0.61
    assert float(table.loc["b", "difference"]) == pytest.approx(0.02)  # 0.53 against b's own floor 0.51
    with pytest.raises(UserError, match="within=seedz: seedz does not differ"):
        report.compare(runs, reference={"embedding": "features"}, within=["seedz"])[0].significance()
    out = tmp_path.parent / "within_report"
    report.main([str(tmp_path), f"out={out}", "reference=embedding=features", "within=model"])
    assert "with the same `model`" in (out / "report.md").read_text()


def test_every_stage_a_record_names_is_reported(tmp_path):
    """An evaluation record (``m3bert.evaluate``'s): stage ``evaluate``, test metrics at the top level."""
    for seed in range(2):
        folder = tmp_path / f"eval{seed}"
        folder.mkdir()
        record = {"status": "finished", "stage": "evaluate", "seed": seed, "config": {"checkpoint": "a"},
                  "test": {"test/score": 0.5 + seed / 10, "gtzan/test/accuracy": 0.6, "val/loss": 1.0}}  # fmt: skip
        (folder / records.RECORD).write_text(json.dumps(record))
    write_record(tmp_path / "pre", "pretrain", 0, {}, {"val/loss": 0.2})
    comparisons = report.write_report(report.find_runs([str(tmp_path)]), tmp_path / "out")
    assert [c.stage for c in comparisons] == ["pretrain", "evaluate"]
    assert comparisons[1].metrics == ["gtzan/test/accuracy", "test/score"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## evaluate" in text and "| 2 | 0.600 ± 0.00 (2) | 0.550 ± 0.0707 (2) |" in text


def test_masking_sweep_gives_one_row_per_masking(tmp_path):
    """The README's ``masking=cfm,ccm,cfm_ccm,patch`` sweep: the configs differ in which sub-keys are null."""
    for masking in ("cfm", "ccm", "cfm_ccm", "patch"):
        overrides = [*QUICK, f"masking={masking}"]
        run(make_config(*overrides), tmp_path / "sweep" / f"masking={masking}", overrides)
    (pretrain,) = report.main([str(tmp_path / "sweep"), f"out={tmp_path / 'out'}"])
    assert len(pretrain.rows()) == 4 and all(len(row.runs) == 1 for row in pretrain.rows())
    text = (tmp_path / "out" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + 4 and all(" (1) |" in line for line in table[2:])
    assert (tmp_path / "out/figures/pretrain_bars.png").is_file()


# ------------------------------------------------------------------------------------------------ provenance
def test_run_records_what_produced_the_numbers(smoke_sweep, tmp_path):
    import torch

    from m3bert.common.devices import cpu_capability
    from m3bert.training.trainer import resolve_precision

    record = records.read(smoke_sweep / "masking.ratio=0.1,seed=0")
    env = record["environment"]
    # The precision the trainer used, not the one asked for: auto is bf16 on a CPU with native bf16, else fp32.
    asked = record["config"]["trainer"]["precision"]
    assert env["precision"] == resolve_precision(asked, torch.device("cpu")).name and env["device"] == "cpu"
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["cpu"] == cpu_capability()
    assert env["git_dirty"] in (True, False, None)
    report.main([str(smoke_sweep), f"out={tmp_path}"])
    text = (tmp_path / "report.md").read_text()
    assert f"- precision: `{env['precision']}`" in text and "- device: `cpu`" in text
    assert f"- cpu: `{env['cpu']}`" in text
    assert f"- torch: `{torch.__version__}`" in text and "Warning" not in text


def test_a_table_whose_runs_differ_in_precision_is_flagged(tmp_path):
    for seed, precision in enumerate(("fp32", "bf16", "bf16")):
        environment = {"precision": precision, "device": "cpu", "cpu": "avx512+avx512_bf16"}
        write_record(tmp_path / f"r{seed}", "pretrain", seed, {}, {"val/loss": 0.2}, environment=environment,
                     git_commit="a" * 40)  # fmt: skip
    report.main([str(tmp_path), f"out={tmp_path / 'out'}"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "**Warning: the runs of this table differ in precision (bf16: 2, fp32: 1)**" in text
    assert "- precision: `bf16` (2), `fp32` (1)" in text and "- git_commit: `aaaaaaa`" in text


# ------------------------------------------------------------------------------------------- one-line errors
def run_cli(argv, capsys) -> str:
    from m3bert.common.errors import reports_errors

    with pytest.raises(SystemExit) as exit_:
        reports_errors(report.main)(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    write_record(tmp_path / "runs/a", "pretrain", 0, {}, {"val/loss": 0.2})
    runs, out = str(tmp_path / "runs"), f"out={tmp_path / 'out'}"
    assert "metrics=val/los: no run has val/los; these runs have val/loss" in run_cli(
        [runs, out, "metrics=val/los"], capsys
    )
    assert "nowhere: does not exist" in run_cli([str(tmp_path / "nowhere"), out], capsys)
    (tmp_path / "empty").mkdir()
    assert "empty: holds no run" in run_cli([str(tmp_path / "empty"), out], capsys)
    assert "unknown argument 'metric=val/loss': options are out=..." in run_cli([runs, out, "metric=val/loss"], capsys)
    assert "out=DIR is required" in run_cli([runs], capsys)
    (tmp_path / "seed=0").mkdir()  # a run folder named like an option is an input, as is a glob of such folders
    monkeypatch.chdir(tmp_path)
    assert report.parse_args(["seed=0", "seed=*", "out=x"]) == (["seed=0", "seed=*"], {"out": "x"})
    assert "reference=encoder.mode=baseline: no configuration" in run_cli(
        [runs, out, "reference=encoder.mode=baseline"], capsys
    )
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # the package is not installed
    assert "needs the wandb package; pip install wandb" in run_cli([out, "wandb=me/m3bert"], capsys)


def test_a_missing_wandb_login_is_one_line(tmp_path, capsys, monkeypatch):
    wandb = pytest.importorskip("wandb")

    def no_login():
        raise wandb.errors.UsageError("api_key not configured (no-tty). call wandb.login(key=[your_api_key])")

    monkeypatch.setattr(wandb, "Api", no_login)
    err = run_cli([f"out={tmp_path}", "wandb=me/m3bert"], capsys)
    assert "wandb=me/m3bert: W&B refused the connection (api_key not configured" in err
    assert "run wandb login or set WANDB_API_KEY" in err


def test_a_report_regenerates_from_its_results_csv(tmp_path):
    lr_by_masking_runs(tmp_path / "runs")
    report.main([str(tmp_path / "runs"), f"out={tmp_path / 'first'}"])
    report.main([str(tmp_path / "first/results.csv"), f"out={tmp_path / 'again'}"])
    table = lambda out: [x for x in (tmp_path / out / "report.md").read_text().splitlines() if x.startswith("| ")]  # noqa: E731
    assert table("again") == table("first") and len(table("again")) == 2 + 4
    # An older report's csv, where pandas wrote an int column with gaps as floats: read back as the ints they were.
    old = "stage,run,seed,model.num_layers,optimizer.lr,metric,value\n"
    old += "pretrain,a,0,4.0,0.0005,val/loss,0.2\npretrain,b,0,,0.001,val/loss,0.3\n"
    old += "pretrain,c,1,2.0,0.0005,val/loss,0.25\n"
    (tmp_path / "old.csv").write_text(old)
    (pretrain,) = report.main([str(tmp_path / "old.csv"), f"out={tmp_path / 'old'}"])
    assert [row.cells for row in pretrain.rows()] == [
        {"model.num_layers": "4", "optimizer.lr": "5e-4"},
        {"model.num_layers": "–", "optimizer.lr": "1e-3"},
        {"model.num_layers": "2", "optimizer.lr": "5e-4"},
    ]


def test_the_command_line_reports_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "m3bert.report", str(tmp_path / "nowhere"), f"out={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("m3bert.report: error: ") and "nowhere: does not exist" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
