"""The study pipeline's own pages (``python -m m3bert.reproduce``), beside the report of its runs: the paper's
tables (``paper_tables.md``) and the tour's ``README.md`` (``make demo``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from m3bert.common.files import write_csv, write_json, write_text
from m3bert.common.stats import format_mean_std, mean_std
from m3bert.common.tables import markdown_table
from m3bert.objectives.multitask import ENCODER_MODES
from m3bert.report.markdown import environment_block
from m3bert.report.runs import find_runs
from m3bert.tasks.clip_probe import DEFAULT_CLIP_EMBEDDING, FEATURES_BASELINE
from m3bert.tasks.task import PRIMARY_METRICS

PROBE_TABLES = ("clip_probe.csv", "clip_probe_verdict.csv")  # every embedding's row, the default one's verdict


def write_paper_tables(out: Path) -> pd.DataFrame:
    """``paper_tables.md``: each task's primary test metric by encoder mode (multi-task runs) and multi-task vs
    single-task (frozen encoder), as mean ± std (n) over seeds, from the report's ``results.csv`` in ``out``."""
    results = pd.read_csv(out / "results.csv")
    tuned = results[(results["stage"] == "finetune") & results["metric"].str.contains("/test/")]
    tuned = tuned[~tuned["metric"].str.startswith("test/")]
    tuned = tuned.assign(
        task=tuned["metric"].str.split("/").str[0],
        metric_name=tuned["metric"].str.split("/").str[-1],
        kind=["single" if "/single/" in f"/{r}" else "multi" for r in tuned["run"].astype(str)],
        mode=tuned.get("encoder.mode", pd.Series("frozen", index=tuned.index)).fillna("frozen"),
    )

    def cell(values) -> str:
        return format_mean_std(*mean_std(list(values)))

    multi = tuned[tuned["kind"] == "multi"]
    by_mode = multi.pivot_table(index=["task", "metric_name"], columns="mode", values="value", aggfunc=cell)
    by_mode = by_mode.reindex(columns=[m for m in ENCODER_MODES if m in by_mode.columns]).reset_index()
    frozen = tuned[tuned["mode"] == "frozen"]
    versus = frozen.pivot_table(index=["task", "metric_name"], columns="kind", values="value", aggfunc=cell)
    versus = versus.rename(columns={"multi": "multi-task", "single": "single-task"}).reset_index()
    for table in (by_mode, versus):
        table.columns.name = None
    lines = [
        "# The paper's tables",
        "",
        "Each task's primary test metric (accuracy, macro ROC-AUC or R²), mean ± std over seeds (runs).",
        "",
        "## Multi-task fine-tuning by encoder mode",
        "",
        markdown_table(by_mode.rename(columns={"metric_name": "metric"})),
        "## Multi-task vs single-task (frozen encoder)",
        "",
        markdown_table(versus.rename(columns={"metric_name": "metric"})),
    ]
    write_text("\n".join(lines), out / "paper_tables.md")
    return by_mode


def primary_results(summaries: dict[str, dict], tasks: dict) -> pd.DataFrame:
    """task x mode table of each task's primary test metric, from each mode's ``metrics.json`` (the task configs
    ``tasks`` give the metric by their type; no data is read)."""
    rows = []
    for name, spec in tasks.items():
        metric = PRIMARY_METRICS[spec["type"]]
        row = {"task": name, "metric": metric}
        for mode, summary in summaries.items():
            row[mode] = summary["test"].get(f"{name}/test/{metric}", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def write_tour_readme(report: Path, root: Path, finetune_folder: str, tasks: dict) -> pd.DataFrame:
    """``README.md`` of the tour's report folder (``make demo``), from the study folder ``root``: the task x mode
    table of one seed (also ``results.csv``), the environment the runs ran in (precision, CPU, commit, from the
    report of the runs in ``report/runs``), the figures, and the clip-level probe (``root/probe``); returns the
    table."""

    def metrics(folder: Path) -> dict:
        return json.loads((folder / "metrics.json").read_text())

    folders = {mode: root / finetune_folder.format(mode=mode, seed=0) for mode in ENCODER_MODES}
    summaries = {mode: metrics(folder) for mode, folder in folders.items() if (folder / "metrics.json").is_file()}
    pretrain = metrics(root / "pretrain")
    table = primary_results(summaries, tasks)
    timings = root / "timings.json"
    seconds = sum(job["seconds"] for job in json.loads(timings.read_text()).values()) if timings.is_file() else 0.0
    report.mkdir(parents=True, exist_ok=True)
    figures = {"pretrain_loss.png": root / "pretrain/loss_curves.png"}
    reconstructions = sorted((root / "pretrain/figures").glob("reconstruction_step*.png"))
    if reconstructions:
        figures["reconstruction.png"] = reconstructions[-1]
    for mode, folder in folders.items():
        figures[f"finetune_{mode}_loss.png"] = folder / "loss_curves.png"
    for name, source in figures.items():
        if source.exists():
            shutil.copyfile(source, report / name)
    write_csv(table, report / "results.csv")
    write_json({"pretrain": pretrain, "finetune": summaries, "wall_time_s": seconds}, report / "results.json")
    runs = find_runs([str(root)])  # what produced them: every record's environment
    lines = [
        "# M3BERT on the demo corpus",
        "",
        "Primary test metric per task (accuracy for multiclass, macro ROC-AUC for multilabel, mean R² for "
        "regression), with the encoder frozen, fine-tuned, trained from scratch, and the raw-feature baseline "
        "(no encoder). **One seed** (seed 0) per mode: differences of a few hundredths are within seed noise, so "
        "no difference here is tested; the README's multi-seed table (mean ± std, Welch's t-test against the "
        "baseline) is the one to cite. Every run, with its config: [runs/report.md](runs/report.md).",
        "",
        markdown_table(table),
        *(environment_block(runs) if runs else []),
        f"Pre-training: {pretrain['steps']} steps, best val/loss {pretrain['best'].get('val/loss', float('nan')):.4f}. "
        f"Time of every job, over all invocations: {seconds / 60:.1f} min (`timings.json`).",
        "",
        "![pre-training loss](pretrain_loss.png)",
        "",
        "![masked input, reconstruction, original](reconstruction.png)",
        "",
    ]
    probe = [root / "probe" / name for name in PROBE_TABLES]
    if all(path.is_file() for path in probe):
        every, verdict = (pd.read_csv(path) for path in probe)
        for path in probe:
            shutil.copyfile(path, report / path.name)
        ahead = int(verdict["embedding_ahead"].sum())
        lines += [
            "## Clip-level linear probe",
            "",
            "Logistic regression on standardised clip vectors of every labelled clip, 5-fold cross-validation grouped "
            f"by work; accuracy mean and std over folds. `{DEFAULT_CLIP_EMBEDDING}` (from `python -m m3bert.extract`) "
            f"against `{FEATURES_BASELINE}`: ahead on {ahead} of {len(verdict)} labels.",
            "",
            markdown_table(verdict),
            markdown_table(every),
        ]
    write_text("\n".join(lines), report / "README.md")
    return table
