"""The whole study on the embedded demo corpus: ``make demo`` (``python -m m3bert.demo [--quick]``).

1. build the demo corpus from the compositions inside music21 and extract its features (``m3bert.prepare``);
2. pre-train a CPU-sized M3BERT on it (``+experiment=pretrain_demo``);
3. fine-tune every demo task with the encoder frozen, fine-tuned and from scratch, and the raw-feature baseline
   (``+experiment=finetune_demo encoder.mode=...``);
4. print a task x mode table of each task's primary test metric and write a report folder (markdown table, loss
   curves, a masked / reconstructed / original figure).

Every step keeps its outputs in a fixed place, so a second run reuses the corpus, the features and the checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

import m3bert.training.schemas  # noqa: F401  (registers the typed schemas)
from m3bert.common.configs import config_dir
from m3bert.common.errors import reports_errors
from m3bert.common.files import write_csv, write_json, write_text
from m3bert.prepare import prepare
from m3bert.report import markdown_table
from m3bert.train import run

log = logging.getLogger("m3bert.demo")
MODES = ("frozen", "finetune", "scratch", "baseline")


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


def primary_results(summaries: dict[str, dict], tasks: dict) -> pd.DataFrame:
    """task x mode table of each task's primary test metric."""
    from m3bert.tasks import resolve_task

    rows = []
    for name, spec in tasks.items():
        metric = resolve_task(name, spec).primary_metric
        row = {"task": name, "metric": metric}
        for mode, summary in summaries.items():
            row[mode] = summary["test"].get(f"{name}/test/{metric}", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small corpus and short runs (about 3 minutes)")
    parser.add_argument("--report", default=None, help="report folder (default: <experiments>/demo[_quick]/report)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s", datefmt="%H:%M:%S")
    started = time.perf_counter()

    corpus = "demo_small" if args.quick else "demo"
    budget = ["+demo=quick"] if args.quick else []
    prepared = compose_config("prepare", [f"dataset={corpus}"])
    log.info("Step 1/4: corpus and features (%s)", prepared.out)
    prepare(prepared)

    pretrain_cfg = compose_config("train", ["+experiment=pretrain_demo", f"dataset={corpus}", *budget, *args.overrides])
    root = Path(pretrain_cfg.paths.experiments_dir) / ("demo_quick" if args.quick else "demo")
    log.info("Step 2/4: pre-training (%s)", root / "pretrain")
    pretrain = run(pretrain_cfg, root / "pretrain")

    summaries = {}
    for i, mode in enumerate(MODES):
        log.info("Step 3/4: fine-tuning, encoder %s (%d/%d)", mode, i + 1, len(MODES))
        cfg = compose_config(
            "train",
            [
                "+experiment=finetune_demo",
                f"demo_corpus={corpus}",
                f"encoder.mode={mode}",
                f"encoder.checkpoint={root / 'pretrain'}",
                *budget,
                *args.overrides,
            ],
        )
        summaries[mode] = run(cfg, root / f"finetune_{mode}")

    log.info("Step 4/4: report")
    table = primary_results(summaries, cfg.tasks)
    report = Path(args.report) if args.report else root / "report"
    write_report(report, table, root, pretrain, summaries, time.perf_counter() - started)
    print("\n" + markdown_table(table))
    log.info("Report in %s (%.1f min in all)", report, (time.perf_counter() - started) / 60)
    return table


def write_report(
    report: Path, table: pd.DataFrame, root: Path, pretrain: dict, summaries: dict, seconds: float
) -> None:
    report.mkdir(parents=True, exist_ok=True)
    figures = {"pretrain_loss.png": root / "pretrain/loss_curves.png"}
    reconstructions = sorted((root / "pretrain/figures").glob("reconstruction_step*.png"))
    if reconstructions:
        figures["reconstruction.png"] = reconstructions[-1]
    for mode in summaries:
        figures[f"finetune_{mode}_loss.png"] = root / f"finetune_{mode}/loss_curves.png"
    for name, source in figures.items():
        if source.exists():
            shutil.copyfile(source, report / name)
    write_csv(table, report / "results.csv")
    write_json({"pretrain": pretrain, "finetune": summaries, "wall_time_s": seconds}, report / "results.json")
    lines = [
        "# M3BERT on the demo corpus",
        "",
        "Primary test metric per task (accuracy for multiclass, macro ROC-AUC for multilabel, mean R² for "
        "regression), with the encoder frozen, fine-tuned, trained from scratch, and the raw-feature baseline "
        "(no encoder).",
        "",
        markdown_table(table),
        f"Pre-training: {pretrain['steps']} steps, best val/loss {pretrain['best'].get('val/loss', float('nan')):.4f}. "
        f"Wall time of the whole run: {seconds / 60:.1f} min.",
        "",
        "![pre-training loss](pretrain_loss.png)",
        "",
        "![masked input, reconstruction, original](reconstruction.png)",
        "",
    ]
    write_text("\n".join(lines), report / "README.md")


if __name__ == "__main__":
    reports_errors(main)()
