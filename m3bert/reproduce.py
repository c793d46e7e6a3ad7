"""The paper's study as one resumable pipeline: ``make reproduce-paper`` (``python -m m3bert.reproduce``).

Stages, each a list of jobs:

1. ``prepare``: features of the nine datasets (four pre-training corpora, five tasks);
2. ``pretrain``: the encoder on the four corpora together (``+experiment=pretrain_paper``);
3. ``finetune``: multi-task fine-tuning with the encoder frozen, fine-tuned, from scratch and the raw-feature
   baseline, and each task alone (frozen encoder), over three seeds;
4. ``report``: ``python -m m3bert.report`` over all of it, plus the paper-shaped tables (task x mode, multi-task
   vs single-task, mean ± std over seeds) in ``paper_tables.md``.

Every job has its own run folder under ``<experiments>/paper`` (``paper_demo`` for ``scale=demo``) and a run
record, so a rerun skips finished jobs and resumes an interrupted one. Options (``key=value``):
``scale=paper|demo`` (demo: the embedded demo corpus and its CPU-sized recipes), ``stages=prepare,pretrain,...``,
``seeds=0,1,2``, ``dry_run=true`` (print one line per job, each with its own overrides, and run nothing), and
``extra=...`` (Hydra overrides added to every training job, separated by spaces).
Missing datasets are listed, with where to put them, before anything runs.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from m3bert.common import prepared
from m3bert.common.errors import UserError, reports_errors, user_message

log = logging.getLogger("m3bert.reproduce")

STAGES = ("prepare", "pretrain", "finetune", "report")
MODES = ("frozen", "finetune", "scratch", "baseline")
BASELINE = "encoder.mode=baseline"  # the report's reference row: the heads on the raw features, no encoder


@dataclass(frozen=True)
class Scale:
    folder: str  # under the experiments folder
    corpora: tuple[str, ...]  # conf/dataset options that pre-training reads (prepared by the prepare stage)
    task_data: tuple[str, ...]  # conf/dataset options that fine-tuning reads (prepared by the prepare stage)
    pretrain: tuple[str, ...]  # overrides of the pre-training job
    finetune: tuple[str, ...]  # overrides every fine-tuning job starts from
    tasks: tuple[str, ...]  # the single-task runs
    builds_audio: bool = False  # the dataset builds its own audio (the demo corpus)
    multitask: tuple[str, ...] = ()  # overrides of the multi-task runs only (their task set, if not the recipe's)
    single: tuple[str, ...] = ()  # overrides of the single-task runs only (their budget)

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the prepare stage prepares, each once."""
        return tuple(dict.fromkeys((*self.corpora, *self.task_data)))


SCALES = {
    "paper": Scale(
        "paper",
        ("msd", "music4all", "mtg_jamendo", "fma"),
        ("gtzan", "mtg_jamendo_moodtheme", "ballroom", "deam", "rwc"),
        ("+experiment=pretrain_paper",),
        ("+experiment=finetune_mtl",),
        ("gtzan", "mtg_moodtheme", "ballroom", "deam", "rwc"),
    ),
    "demo": Scale(
        "paper_demo",
        ("demo",),
        ("demo",),
        ("+experiment=pretrain_demo",),
        ("+experiment=finetune_demo",),
        ("demo_style", "demo_tags", "demo_meter", "demo_tempo_register", "demo_instrument"),
        builds_audio=True,
        # 27 fine-tuning runs must fit about 35 minutes of 2 CPU cores, so each gets about half of `make demo`'s
        # steps (its frozen runs stop early near 650 of 800 anyway), and a single-task run, one head, fewer still.
        multitask=(
            "demo_steps.frozen=400",
            "demo_steps.finetune=150",
            "demo_steps.scratch=150",
            "demo_steps.baseline=300",
        ),
        single=("trainer.max_steps=150",),
    ),
}


@dataclass
class Job:
    stage: str
    overrides: list[str]
    folder: Path | None = None  # run folder (training jobs)
    extra: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether a run would skip this job: its training run finished, or its dataset is prepared. (The report
        is always remade.)"""
        if self.stage == "prepare":
            return is_prepared(compose("prepare", self.overrides))
        if self.folder is None:
            return False
        from m3bert.training import records

        return (records.read(self.folder) or {}).get("status") == "finished"

    @property
    def command(self) -> str:
        """The command line this job amounts to (what a dry run prints)."""
        if self.stage == "prepare":
            return "python -m m3bert.prepare " + " ".join(map(shlex.quote, self.overrides))
        if self.stage == "report":
            return "python -m m3bert.report " + " ".join(map(shlex.quote, self.overrides))
        args = [*self.overrides, f"hydra.run.dir={self.folder}"]
        return "python -m m3bert.train " + " ".join(map(shlex.quote, args))


def compose(name: str, overrides: Sequence[str], hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from m3bert.common.configs import config_dir
    from m3bert.training import schemas

    schemas.register()

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides), return_hydra_config=hydra)


def plan(scale: Scale, root: Path, seeds: Sequence[int], extra: Sequence[str] = ()) -> dict[str, list[Job]]:
    """Every job of every stage, in order."""
    pretrain_dir = root / "pretrain"
    jobs: dict[str, list[Job]] = {stage: [] for stage in STAGES}
    jobs["prepare"] = [Job("prepare", [f"dataset={name}"]) for name in scale.datasets]
    jobs["pretrain"] = [Job("pretrain", [*scale.pretrain, *extra], pretrain_dir)]
    checkpoint = f"encoder.checkpoint={pretrain_dir}"
    for mode in MODES:
        for seed in seeds:
            overrides = [*scale.finetune, *scale.multitask, f"encoder.mode={mode}", f"seed={seed}", checkpoint, *extra]
            jobs["finetune"].append(Job("finetune", overrides, root / "multitask" / f"{mode}_seed{seed}"))
    for task in scale.tasks:
        for seed in seeds:
            overrides = [
                *scale.finetune, *scale.single, f"tasks=[{task}]", "encoder.mode=frozen", f"seed={seed}", checkpoint,
                *extra,
            ]  # fmt: skip
            jobs["finetune"].append(Job("finetune", overrides, root / "single" / f"{task}_seed{seed}"))
    # Every mode's difference to the raw-feature baseline, tested over the seeds (the paper's claim is about it).
    jobs["report"] = [Job("report", [str(root), f"out={root / 'report'}", f"reference={BASELINE}"])]
    return jobs


def is_prepared(prepare_cfg) -> bool:
    """Whether ``python -m m3bert.prepare`` has written the folder this prepare config names (its training split)."""
    return prepared.is_prepared(prepare_cfg.out)


def missing_datasets(scale: Scale, stages: Sequence[str], pretrained: bool = False) -> list[str]:
    """What is missing before the selected stages can run, one entry per dataset with where to put it: the audio
    of every dataset with the prepare stage, else the prepared folders the other stages read (the pre-training
    corpora only while pre-training is still to run: ``pretrained`` says it finished)."""
    if "prepare" in stages:
        wanted = scale.datasets
    else:
        wanted = (*(scale.corpora if "pretrain" in stages and not pretrained else ()),)
        wanted += scale.task_data if "finetune" in stages else ()
    lines = []
    for name in dict.fromkeys(wanted):
        cfg = compose("prepare", [f"dataset={name}"])
        if is_prepared(cfg):
            continue
        if "prepare" in stages:
            source = cfg.dataset.get("source") or {}
            audio = source.get("root")
            if scale.builds_audio or audio is None or Path(audio).exists():
                continue
            lines.append(
                f"{name}: put its audio, as distributed, in {audio} (M3BERT_AUDIO sets the parent folder; "
                f"see conf/dataset/{name}.yaml)"
            )
        else:
            lines.append(
                f"{name}: no prepared features in {cfg.out}; add the prepare stage or run python -m "
                f"m3bert.prepare dataset={name}"
            )
    return lines


def run_job(job: Job) -> None:
    if job.stage == "prepare":
        from m3bert.prepare import prepare

        prepare(compose("prepare", job.overrides))
    elif job.stage == "report":
        from m3bert import report

        report.main(job.overrides)
        write_paper_tables(Path(job.overrides[0]), Path(job.overrides[1].removeprefix("out=")))
    else:
        from m3bert.train import run
        from m3bert.training import records

        cfg = compose("train", job.overrides, hydra=True)
        exclude = list(cfg.hydra.job.config.override_dirname.exclude_keys)
        with _open(cfg):
            del cfg["hydra"]
        run(cfg, job.folder, job.overrides, records.folder_key(job.overrides, exclude))


def _open(cfg):
    from omegaconf import open_dict

    return open_dict(cfg)


def write_paper_tables(root: Path, out: Path) -> pd.DataFrame:
    """``paper_tables.md``: each task's primary test metric by encoder mode (multi-task runs) and multi-task vs
    single-task (frozen encoder), as mean ± std (n) over seeds, from the report's ``results.csv``."""
    from m3bert.common.files import write_text
    from m3bert.common.stats import format_mean_std, mean_std
    from m3bert.common.tables import markdown_table

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
    by_mode = by_mode.reindex(columns=[m for m in MODES if m in by_mode.columns]).reset_index()
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


OPTIONS = ("scale", "stages", "seeds", "dry_run", "extra")


def main(argv: Sequence[str] | None = None) -> dict[str, list[Job]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return {}
    options = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise UserError(f"unknown argument {arg!r}: options are {', '.join(f'{o}=...' for o in OPTIONS)}")
        options[key] = value
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s", datefmt="%H:%M:%S")
    name = options.get("scale") or "paper"
    if name not in SCALES:
        raise UserError(f"scale={name}: choose one of {', '.join(SCALES)}")
    scale = SCALES[name]
    stages = [s for s in (options.get("stages") or ",".join(STAGES)).split(",") if s]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"stages={options['stages']}: unknown {unknown}; stages are {', '.join(STAGES)}")
    try:
        seeds = [int(s) for s in (options.get("seeds") or "0,1,2").split(",") if s]
    except ValueError:
        raise UserError(f"seeds={options['seeds']}: give whole numbers separated by commas, e.g. seeds=0,1,2") from None
    extra = shlex.split(options.get("extra") or "")
    dry_run = (options.get("dry_run") or "").lower() in ("1", "true", "yes")

    root = Path(compose("train", []).paths.experiments_dir) / scale.folder
    jobs = plan(scale, root, seeds, extra)
    pretrained = jobs["pretrain"][0].done
    missing = missing_datasets(scale, stages, pretrained)
    if "finetune" in stages and "pretrain" not in stages and not pretrained:
        missing.append(
            f"pretrain: no finished pre-training run in {jobs['pretrain'][0].folder}; add the pretrain stage"
        )
    if dry_run:
        for stage in stages:
            for job in jobs[stage]:
                print(job.command)
        for line in missing:
            print(f"# missing: {line}")
        return jobs
    if missing:
        raise UserError(f"nothing has run, {len(missing)} missing: " + "; ".join(missing))
    started = time.perf_counter()
    timings = Timings(root / "timings.json")
    total = sum(len(jobs[s]) for s in stages)
    done = 0
    for stage in stages:
        for job in jobs[stage]:
            done += 1
            log.info("[%d/%d] %s", done, total, job.command)
            done_before, job_started = job.done, time.perf_counter()
            try:
                run_job(job)
            except Exception as err:  # bad input inside a job: one line that names the job; bugs keep a traceback
                message = user_message(err)
                if message is None:
                    raise
                raise UserError(
                    f"{message} (job {done}/{total}: {job.command}; fix it and rerun: finished jobs are skipped)"
                ) from err
            timings.add(stage, job.command, time.perf_counter() - job_started, done_before)
    log.info(
        "reproduce-paper (scale=%s, stages %s) took %.1f min in this invocation",
        name,
        ",".join(stages),
        (time.perf_counter() - started) / 60,
    )
    log.info("%s", timings.summary())
    return jobs


class Timings:
    """Minutes each stage has cost over every invocation (``timings.json`` beside the runs), so the pipeline's
    total is known even when it ran in pieces: a job that a rerun skips keeps the time it took when it ran."""

    def __init__(self, path: Path):
        self.path = path
        self.jobs: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, stage: str, command: str, seconds: float, done_before: bool = False) -> None:
        """Record a job's time, unless it was done before it started (the rerun skipped it) and has a time."""
        from m3bert.common.files import write_json

        if done_before and command in self.jobs:
            return
        self.jobs[command] = {"stage": stage, "seconds": round(seconds, 1)}
        write_json(self.jobs, self.path)

    def summary(self) -> str:
        minutes = {stage: 0.0 for stage in STAGES}
        for job in self.jobs.values():
            minutes[job["stage"]] += job["seconds"] / 60
        parts = ", ".join(f"{stage} {m:.1f}" for stage, m in minutes.items())
        return f"time per stage over all invocations (min): {parts}; total {sum(minutes.values()):.1f} min"


if __name__ == "__main__":
    reports_errors(main)()
