"""The whole study on the embedded demo corpus: ``make demo`` (``python -m m3bert.demo [--quick]``).

1. build the demo corpus from the compositions inside music21 and extract its features (``m3bert.prepare``);
2. pre-train a CPU-sized M3BERT on it (``+experiment=pretrain_demo``);
3. fine-tune every demo task with the encoder frozen, fine-tuned and from scratch, and the raw-feature baseline
   (``+experiment=finetune_demo encoder.mode=...``);
4. print a task x mode table of each task's primary test metric and write a report folder (markdown table, loss
   curves, a masked / reconstructed / original figure);
5. a clip-level linear probe: the pre-trained model is exported, ``python -m m3bert.extract`` embeds every clip's
   audio, and a logistic regression on its clip embeddings is compared, in cross-validation grouped by work, with
   the same probe on the mean ⊕ std of the unnormalised features (``clip_probe*.csv`` in the report).

Every step keeps its outputs in a fixed place, so a second run reuses the corpus, the features and the checkpoints.
An output made with another recipe (the code or the config changed since) is not reused: it is renamed
``<name>.old-<time>`` and that step, with every step that depends on it, is redone.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

from m3bert.common.configs import config_dir
from m3bert.common.errors import reports_errors
from m3bert.common.files import write_csv, write_json, write_text
from m3bert.common.prepared import MANIFEST
from m3bert.common.tables import markdown_table
from m3bert.data import read_manifest
from m3bert.export import export
from m3bert.extract import OtherSettings, extract
from m3bert.features.inputs import assign_ids, find_inputs
from m3bert.prepare import prepare
from m3bert.tasks.clip_probe import FEATURES_BASELINE, clip_probe, feature_statistics, verdict
from m3bert.train import run
from m3bert.training import records, schemas
from m3bert.training.schemas import check_train_config

log = logging.getLogger("m3bert.demo")
MODES = ("frozen", "finetune", "scratch", "baseline")
# The clip embedding the probe's verdict is about: extract's statistics pooling (mean, then std) of the last layer.
DEFAULT_CLIP_EMBEDDING = "m3bert mean+std, last layer"


def compose_config(name: str, overrides: list[str]):
    schemas.register()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


def set_aside(folder: Path, why: str) -> None:
    """Rename an output the demo must not reuse to ``<name>.old-<time>``, so it is redone and nothing is lost."""
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    log.warning("%s was made %s: moved it to %s; redoing it", folder, why, aside)


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
    pretrain_cfg = compose_config("train", ["+experiment=pretrain_demo", f"dataset={corpus}", *budget, *args.overrides])
    check_train_config(pretrain_cfg)  # the user's overrides are checked before the corpus is built
    log.info("Step 1/4: corpus and features (%s)", prepared.out)
    prepare(prepared)

    root = Path(pretrain_cfg.paths.experiments_dir) / ("demo_quick" if args.quick else "demo")
    changed = records.recipe_changes(records.read(root / "pretrain"), pretrain_cfg)
    if changed:  # everything in root comes from that run
        set_aside(root, f"from another pre-training recipe ({', '.join(changed)} differ)")
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
        folder = root / f"finetune_{mode}"
        changed = records.recipe_changes(records.read(folder), cfg)
        if changed:
            set_aside(folder, f"with another recipe ({', '.join(changed)} differ)")
        summaries[mode] = run(cfg, folder)

    log.info("Step 4/5: report")
    table = primary_results(summaries, cfg.tasks)
    report = Path(args.report) if args.report else root / "report"
    log.info("Step 5/5: clip-level probe (export, extract, grouped cross-validation)")
    probe = clip_level_probe(root, Path(prepared.out), cfg.tasks)
    runs = compare_runs(root, report / "runs")
    write_report(report, table, root, pretrain, summaries, time.perf_counter() - started, probe, runs)
    print("\nPrimary test metric, one seed (seed 0): see the README's multi-seed table before drawing conclusions")
    print(markdown_table(table))
    print(markdown_table(probe[1]))
    log.info("Report in %s (%.1f min in all)", report, (time.perf_counter() - started) / 60)
    return table


def clip_level_probe(root: Path, prepared: Path, tasks: dict, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Export the pre-trained model, embed every clip's audio with ``m3bert.extract`` (its defaults, pooled
    embeddings only) and probe each multiclass task's label; returns (every embedding's row, the verdict of
    :data:`DEFAULT_CLIP_EMBEDDING` against the unnormalised-feature baseline)."""
    import numpy as np

    from m3bert.tasks import resolve_task

    model = export(root / "pretrain", root / "model")
    manifest = read_manifest(prepared / MANIFEST)
    inputs = root / "clip_probe_inputs.csv"
    audio = [str(Path(a).resolve()) for a in manifest["audio"]]
    write_csv(pd.DataFrame({"audio": audio}), inputs)
    out = root / "clip_embeddings"
    settings = [f"model_path={model}", f"input={inputs}", f"output={out}", "frame_level=false", "progress=false"]
    try:
        extract(compose_config("extract", settings))
    except OtherSettings as err:  # another model (the code or the pre-training changed): embed everything again
        set_aside(out, f"with other settings ({', '.join(err.changed)} differ)")
        extract(compose_config("extract", settings))
    ids, _ = assign_ids(*find_inputs(inputs, [], "audio"))
    pooled = {
        how: np.stack([np.load(out / how / f"{ids[Path(a)]}.npy") for a in audio]).astype(np.float64)
        for how in ("mean", "mean_std", "max")
    }
    embeddings = {
        FEATURES_BASELINE: feature_statistics(manifest, prepared),
        DEFAULT_CLIP_EMBEDDING: pooled["mean_std"][:, -1],
        "m3bert mean, last layer": pooled["mean"][:, -1],
        "m3bert max, last layer": pooled["max"][:, -1],
        # extract's two statistics files side by side: what a user can concatenate without re-extracting.
        "m3bert mean+std+max, last layer": np.concatenate([pooled["mean_std"][:, -1], pooled["max"][:, -1]], -1),
        "m3bert mean+std, mean over layers": pooled["mean_std"].mean(1),
    }
    labels = [
        resolve_task(name, spec).label[0]
        for name, spec in tasks.items()
        if resolve_task(name, spec).type == "multiclass"
    ]
    table = clip_probe(manifest, embeddings, labels)
    return table, verdict(table, DEFAULT_CLIP_EMBEDDING)


def compare_runs(root: Path, out: Path) -> list:
    """``python -m m3bert.report`` over the demo's own runs (pre-training and each mode's fine-tuning, not the
    outputs set aside), each mode against the raw-feature baseline, into ``out``; returns the runs read."""
    from m3bert.report import find_runs, write_report

    runs = find_runs([str(root / "pretrain"), *(str(root / f"finetune_{mode}") for mode in MODES)])
    write_report(runs, out, title="The demo's runs (one seed)", reference={"encoder.mode": "baseline"})
    return runs


def write_report(
    report: Path,
    table: pd.DataFrame,
    root: Path,
    pretrain: dict,
    summaries: dict,
    seconds: float,
    probe: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    runs: list | None = None,
) -> None:
    """``README.md`` of the demo's report folder: the task x mode table of one seed, the environment the runs
    ran in (precision, CPU, commit: from their records, ``runs``), the figures and the clip-level probe."""
    from m3bert.report import environment_block

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
        "(no encoder). **One seed** (seed 0) per mode: differences of a few hundredths are within seed noise, so "
        "no difference here is tested; the README's multi-seed table (mean ± std, Welch's t-test against the "
        "baseline) is the one to cite. Every run, with its config: [runs/report.md](runs/report.md).",
        "",
        markdown_table(table),
        *(environment_block(runs) if runs else []),
        f"Pre-training: {pretrain['steps']} steps, best val/loss {pretrain['best'].get('val/loss', float('nan')):.4f}. "
        f"Wall time of this invocation: {seconds / 60:.1f} min (steps an earlier invocation finished are reused).",
        "",
        "![pre-training loss](pretrain_loss.png)",
        "",
        "![masked input, reconstruction, original](reconstruction.png)",
        "",
    ]
    if probe is not None:
        write_csv(probe[0], report / "clip_probe.csv")
        write_csv(probe[1], report / "clip_probe_verdict.csv")
        ahead = int(probe[1]["embedding_ahead"].sum())
        lines += [
            "## Clip-level linear probe",
            "",
            "Logistic regression on standardised clip vectors of every labelled clip, 5-fold cross-validation grouped "
            f"by work; accuracy mean and std over folds. `{DEFAULT_CLIP_EMBEDDING}` (from `python -m m3bert.extract`) "
            f"against `{FEATURES_BASELINE}`: ahead on {ahead} of {len(probe[1])} labels.",
            "",
            markdown_table(probe[1]),
            markdown_table(probe[0]),
        ]
    write_text("\n".join(lines), report / "README.md")


if __name__ == "__main__":
    reports_errors(main)()
