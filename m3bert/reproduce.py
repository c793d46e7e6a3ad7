"""The study pipeline: ``make reproduce-paper`` and ``make demo`` (``python -m m3bert.reproduce scale=...``).

Stages, each a list of jobs (``conf/reproduce.yaml``; a scale, ``conf/scale/``, says which datasets, recipes,
seeds and stages):

1. ``prepare``: the features of every dataset the scale reads;
2. ``pretrain``: the encoder on the scale's corpora;
3. ``finetune``: multi-task fine-tuning with the encoder in every mode of :data:`MODES` (frozen, fine-tuned,
   from scratch, and the raw-feature baseline), and each task alone (frozen encoder), for every seed;
4. ``probe``: the clip-level linear probe of the pre-trained encoder: it is exported, ``python -m m3bert.extract``
   embeds every clip's audio, and a logistic regression on the clip embeddings is compared, in cross-validation
   grouped by work, with the same probe on the mean ⊕ std of the unnormalised features;
5. ``report``: ``python -m m3bert.report`` over every run against the baseline, and the scale's own page
   (``paper_tables.md``: mode x task and multi- vs single-task, mean ± std over seeds; or, for the tour, ``README.md``:
   the task x mode table of one seed, figures and the probe).

Scales: ``paper`` (the nine datasets, three seeds), ``demo`` (the same study on the embedded demo corpus),
``tour`` (``make demo``: the demo corpus, one seed, with the probe) and ``tour_quick`` (``make demo QUICK=1``).
Every job has its own folder under ``<experiments>/<scale.folder>`` and a run record, so a rerun skips finished
jobs and resumes an interrupted one. A job whose folder holds a run made with another recipe (the config or the
code changed since) is not reused: the folder is renamed ``<name>.old-<time>`` and the job redone; for the
pre-training job that is the whole study folder, since everything in it comes from that run. Missing datasets are
listed, with where to put them, and every training job's config is checked, before anything runs.
``dry_run=true`` prints one line per job, each with its own overrides, and runs nothing.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from m3bert.common import prepared
from m3bert.common.errors import UserError, reports_errors, user_message
from m3bert.common.files import set_aside, write_csv
from m3bert.common.tables import markdown_table
from m3bert.objectives.multitask import ENCODER_MODES as MODES

log = logging.getLogger("m3bert.reproduce")

STAGES = ("prepare", "pretrain", "finetune", "probe", "report")
BASELINE = "encoder.mode=baseline"  # the report's reference row: the heads on the raw features, no encoder
SUMMARIES = ("paper_tables", "tour")


@dataclass(frozen=True)
class Scale:
    """What one study runs (``conf/scale/<name>.yaml``; its comments say what each field is)."""

    folder: str
    corpora: tuple[str, ...]
    task_data: tuple[str, ...]
    pretrain: tuple[str, ...]
    finetune: tuple[str, ...]
    single_tasks: tuple[str, ...] = ()
    builds_audio: bool = False
    multitask: tuple[str, ...] = ()
    single: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    stages: tuple[str, ...] = ("prepare", "pretrain", "finetune", "report")
    finetune_folder: str = "multitask/{mode}_seed{seed}"
    summary: str = "paper_tables"

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Scale:
        values = OmegaConf.to_container(cfg, resolve=True)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"scale.{unknown[0]}: no such key of a scale; the keys are in conf/scale/paper.yaml")
        scale = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        if scale.summary not in SUMMARIES:
            raise UserError(f"scale.summary={scale.summary}: choose one of {', '.join(SUMMARIES)}")
        return scale

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the prepare stage prepares, each once."""
        return tuple(dict.fromkeys((*self.corpora, *self.task_data)))


@dataclass
class Job:
    stage: str
    overrides: list[str]
    folder: Path | None = None  # run folder (training jobs), output folder (probe, report)

    @property
    def done(self) -> bool:
        """Whether a run would skip this job: its training run finished, or its dataset is prepared. (The probe
        and the report are always remade from what their inputs hold; the probe reuses its embeddings.)"""
        if self.stage == "prepare":
            return is_prepared(compose("prepare", self.overrides))
        if self.stage not in ("pretrain", "finetune"):
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
        if self.stage == "probe":
            return f"# clip-level probe of {self.overrides[0]} into {self.folder} (export, extract, cross-validation)"
        args = [*self.overrides, f"hydra.run.dir={self.folder}"]
        return "python -m m3bert.train " + " ".join(map(shlex.quote, args))


def compose(name: str, overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """The config ``conf/<name>.yaml`` with ``overrides``, as its entry point would compose it: the one helper for
    every config composed in code (this pipeline, the benchmarks)."""
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
            folder = root / scale.finetune_folder.format(mode=mode, seed=seed)
            jobs["finetune"].append(Job("finetune", overrides, folder))
    for task in scale.single_tasks:
        for seed in seeds:
            overrides = [
                *scale.finetune, *scale.single, f"tasks=[{task}]", "encoder.mode=frozen", f"seed={seed}", checkpoint,
                *extra,
            ]  # fmt: skip
            jobs["finetune"].append(Job("finetune", overrides, root / "single" / f"{task}_seed{seed}"))
    # The probe reads the first labelled dataset (the demo corpus; the paper's tasks have no such stage).
    jobs["probe"] = [
        Job("probe", [str(pretrain_dir), f"dataset={data}"], root / "probe") for data in scale.task_data[:1]
    ]
    # Every mode's difference to the raw-feature baseline, tested over the seeds (the paper's claim is about it).
    report = [str(root), f"out={root / 'report'}", f"reference={BASELINE}"]
    if scale.summary == "tour":  # the runs' report goes below the tour's own README
        report = [str(root), f"out={root / 'report/runs'}", f"reference={BASELINE}", "title=The demo's runs (one seed)"]
    jobs["report"] = [Job("report", report, root / "report")]
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
        wanted += scale.task_data if {"finetune", "probe"} & set(stages) else ()
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


def training_config(job: Job) -> tuple[DictConfig, str]:
    """A training job's config, checked (a bad override is reported before anything runs), and its folder key."""
    from m3bert.training import records
    from m3bert.training.schemas import check_train_config

    cfg = compose("train", job.overrides, hydra=True)
    exclude = list(cfg.hydra.job.config.override_dirname.exclude_keys)
    with _open(cfg):
        del cfg["hydra"]
    check_train_config(cfg)
    return cfg, records.folder_key(job.overrides, exclude)


def study_tasks(scale: Scale, root: Path) -> DictConfig:
    """The task configs of the scale's multi-task fine-tuning runs (what the probe and the tour's table read)."""
    return compose("train", [*scale.finetune, *scale.multitask, f"encoder.checkpoint={root / 'pretrain'}"]).tasks


def run_job(job: Job, scale: Scale, root: Path) -> None:
    if job.stage == "prepare":
        from m3bert.prepare import prepare

        prepare(compose("prepare", job.overrides))
    elif job.stage == "probe":
        from m3bert.report.study import PROBE_TABLES

        dataset = compose("prepare", [job.overrides[1]])
        tables = clip_level_probe(root, Path(dataset.out), study_tasks(scale, root))
        for table, name in zip(tables, PROBE_TABLES, strict=True):
            write_csv(table, job.folder / name)
    elif job.stage == "report":
        from m3bert import report

        report.main(job.overrides)
        if scale.summary == "tour":
            from m3bert.report.study import write_tour_readme

            table = write_tour_readme(job.folder, root, scale.finetune_folder, study_tasks(scale, root))
            print("\nPrimary test metric, one seed: see the README's multi-seed table before drawing conclusions")
            print(markdown_table(table))
        else:
            from m3bert.report.study import write_paper_tables

            write_paper_tables(job.folder)
    else:
        from m3bert.train import run
        from m3bert.training import records

        cfg, key = training_config(job)
        changed = records.recipe_changes(records.read(job.folder), cfg)
        if changed:  # the pre-training run's whole study comes from it
            set_aside(root if job.stage == "pretrain" else job.folder, f"with another recipe ({', '.join(changed)})")
        run(cfg, job.folder, job.overrides, key)


def _open(cfg):
    from omegaconf import open_dict

    return open_dict(cfg)


def clip_level_probe(root: Path, data: Path, tasks: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Export the pre-trained model (``root/pretrain``), embed every clip's audio of the prepared folder ``data``
    with ``m3bert.extract`` (its defaults, pooled embeddings only) and probe each multiclass task's label; returns
    (every embedding's row, the verdict of the default clip embedding against the unnormalised-feature baseline)."""
    import numpy as np

    from m3bert.common.prepared import MANIFEST
    from m3bert.data import read_manifest
    from m3bert.export import export
    from m3bert.extract import OtherSettings, extract
    from m3bert.features.inputs import assign_ids, find_inputs
    from m3bert.tasks import resolve_task
    from m3bert.tasks.clip_probe import (
        DEFAULT_CLIP_EMBEDDING,
        FEATURES_BASELINE,
        clip_probe,
        feature_statistics,
        verdict,
    )

    model = export(root / "pretrain", root / "model")
    manifest = read_manifest(data / MANIFEST)
    inputs = root / "clip_probe_inputs.csv"
    audio = [str(Path(a).resolve()) for a in manifest["audio"]]
    write_csv(pd.DataFrame({"audio": audio}), inputs)
    out = root / "clip_embeddings"
    settings = [f"model_path={model}", f"input={inputs}", f"output={out}", "frame_level=false", "progress=false"]
    try:
        extract(compose("extract", settings))
    except OtherSettings as err:  # another model (the code or the pre-training changed): embed everything again
        set_aside(out, f"with other settings ({', '.join(err.changed)})")
        extract(compose("extract", settings))
    ids, _ = assign_ids(*find_inputs(inputs, [], "audio"))
    pooled = {
        how: np.stack([np.load(out / how / f"{ids[Path(a)]}.npy") for a in audio]).astype(np.float64)
        for how in ("mean", "mean_std", "max", "clip")
    }
    embeddings = {
        FEATURES_BASELINE: feature_statistics(manifest, data),
        DEFAULT_CLIP_EMBEDDING: pooled["clip"],
        "m3bert mean+std, last layer": pooled["mean_std"][:, -1],
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


def main(argv: Sequence[str] | None = None) -> dict[str, list[Job]]:
    """``python -m m3bert.reproduce [overrides of conf/reproduce.yaml]``; returns every job of the plan."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return {}
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s", datefmt="%H:%M:%S")
    cfg = compose("reproduce", argv)
    scale = Scale.from_config(cfg.scale)
    stages = list(cfg.stages) if cfg.stages is not None else list(scale.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"stages={stages}: unknown {unknown}; stages are {', '.join(STAGES)}")
    seeds = list(cfg.seeds) if cfg.seeds is not None else list(scale.seeds)
    if not all(isinstance(s, int) for s in seeds):
        raise UserError(f"seeds={seeds}: give whole numbers, e.g. seeds=[0,1,2]")
    extra = [str(e) for e in cfg.extra]

    root = Path(cfg.paths.experiments_dir) / scale.folder
    jobs = plan(scale, root, seeds, extra)
    pretrained = jobs["pretrain"][0].done
    missing = missing_datasets(scale, stages, pretrained)
    if {"finetune", "probe"} & set(stages) and "pretrain" not in stages and not pretrained:
        missing.append(
            f"pretrain: no finished pre-training run in {jobs['pretrain'][0].folder}; add the pretrain stage"
        )
    queue = [job for stage in stages for job in jobs[stage]]
    for number, job in enumerate(queue, 1):  # every training job's overrides checked before the first job runs
        if job.stage in ("pretrain", "finetune"):
            _as_job(job, number, len(queue), training_config)
    if cfg.dry_run:
        for job in queue:
            print(job.command)
        for line in missing:
            print(f"# missing: {line}")
        return jobs
    if missing:
        raise UserError(f"nothing has run, {len(missing)} missing: " + "; ".join(missing))
    started = time.perf_counter()
    timings = Timings(root / "timings.json")
    for number, job in enumerate(queue, 1):
        log.info("[%d/%d] %s", number, len(queue), job.command)
        done_before, job_started = job.done, time.perf_counter()
        _as_job(job, number, len(queue), run_job, scale, root)
        timings.add(job.stage, job.command, time.perf_counter() - job_started, done_before)
    minutes = (time.perf_counter() - started) / 60
    log.info("reproduce (%s, stages %s) took %.1f min in this invocation", root, ",".join(stages), minutes)
    log.info("%s", timings.summary())
    return jobs


def _as_job(job: Job, number: int, total: int, action, *args):
    """``action(job, *args)``, with bad input inside it reported as one line that names the job (bugs keep a
    traceback)."""
    try:
        return action(job, *args)
    except Exception as err:
        message = user_message(err)
        if message is None:
            raise
        raise UserError(
            f"{message} (job {number}/{total}: {job.command}; fix it and rerun: finished jobs are skipped)"
        ) from err


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
