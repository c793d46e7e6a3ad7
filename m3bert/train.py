"""Entry point: ``python -m m3bert.train +experiment=NAME [overrides]`` (add ``-m`` for sweeps).

Under ``torchrun --nproc_per_node N -m m3bert.train ...`` every process joins one data-parallel run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from m3bert.common.configs import config_dir
from m3bert.common.errors import reports_errors
from m3bert.training import distributed, records, schemas
from m3bert.training.preemption import Preempted
from m3bert.training.schemas import check_train_config
from m3bert.training.trainer import Trainer

log = logging.getLogger("m3bert")
# Before Hydra composes, here and in the processes of a multirun launcher, which import this module.
schemas.register()


def fit(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as ``cfg`` says (pre-training or fine-tuning), writing into ``run_dir``; returns metrics.json."""
    try:
        return Trainer(cfg, run_dir).fit()
    finally:
        distributed.teardown()


def run(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: Sequence[str] | None = None,
    folder_key: str | None = None,
    sweep: dict | None = None,
) -> dict:
    """Run the stage the config selects (``stage``: training by default, probing for the ``probe`` recipe) in
    ``run_dir``, keeping its record (``run.json``, see :mod:`m3bert.training.records`) up to date.

    Given the ``overrides`` that made ``cfg``, a run that already finished with exactly those is skipped (its
    metrics.json is returned), and a folder holding a run of other overrides (``folder_key``: what the folder
    name stands for, by default all of them), or a finished run of the same overrides whose resolved config has
    changed since (another recipe file, a new setting in the code), is refused.
    """
    check_train_config(cfg)
    run_dir = Path(run_dir)
    main_rank = int(os.environ.get("RANK", 0)) == 0
    if overrides is not None:
        key = folder_key if folder_key is not None else records.folder_key(overrides, ())
        action = records.check_folder(run_dir, key, overrides, sweep, cfg)
        if action == "skip":
            log.info("Skipping %s: it finished with these overrides already (delete its run.json to redo it)", run_dir)
            metrics = run_dir / "metrics.json"
            return json.loads(metrics.read_text()) if metrics.is_file() else records.read(run_dir)["metrics"]
        if action == "resume":
            log.info("Continuing the run in %s", run_dir)
    else:
        key = None
    fresh = not records.holds_work(run_dir)
    record = records.start(run_dir, cfg, overrides, key, sweep) if main_rank else {}
    started = time.perf_counter()
    try:
        summary = instantiate(cfg.stage)(cfg, run_dir)
    except Preempted as err:  # the state is saved: the scheduler requeues the job, which resumes here
        if main_rank:
            records.preempt(run_dir, record, err.step, time.perf_counter() - started)
        err.hand_over()
        raise
    except BaseException as err:
        # A new run that failed before it made anything (bad data, a wrong checkpoint) leaves no stub folder for
        # the report or the next rerun to mistake for a run: the error line says it all.
        if main_rank and not (fresh and records.discard_if_idle(run_dir)):
            records.fail(run_dir, record, err, time.perf_counter() - started)
        raise
    if main_rank:
        records.finish(run_dir, record, summary, time.perf_counter() - started)
    return summary


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> float | None:
    distributed.adopt_scheduler_env()  # a SLURM / submitit task learns its rank here
    if int(os.environ.get("RANK", 0)) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank zero speaks for the run
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    overrides = list(hydra_cfg.overrides.task)
    sweep = records.current_sweep() if hydra_cfg.mode == RunMode.MULTIRUN else None
    if sweep is not None:
        sweep = {**sweep, "job": hydra_cfg.job.num}
    key = records.folder_key(
        overrides, list(hydra_cfg.job.config.override_dirname.exclude_keys), sweep["swept"] if sweep else ()
    )
    summary = run(cfg, run_dir, overrides, key, sweep)
    if "steps" in summary:
        best = {k: v for k, v in summary["best"].items() if k != "step"}
        log.info(
            "Done at step %d: train/loss %.4f%s. Run folder: %s",
            summary["steps"],
            summary["final"].get("train/loss", float("nan")),
            "".join(f", best {k} {v:.4f} at step {summary['best']['step']}" for k, v in best.items()),
            run_dir,
        )
    # Returned so that Hydra's optimisation sweepers can use it.
    return next(iter(v for k, v in summary.get("best", {}).items() if k != "step"), None)


if __name__ == "__main__":
    main()
