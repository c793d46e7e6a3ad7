"""Entry point: ``python -m m3bert.train +experiment=NAME [overrides]`` (add ``-m`` for sweeps).

Under ``torchrun --nproc_per_node N -m m3bert.train ...`` every process joins one data-parallel run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from m3bert.common.configs import config_dir
from m3bert.common.errors import reports_errors
from m3bert.training import distributed
from m3bert.training.schemas import check_train_config  # (importing it registers the typed schemas)
from m3bert.training.trainer import Trainer


def fit(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as ``cfg`` says (pre-training or fine-tuning), writing into ``run_dir``; returns metrics.json."""
    try:
        return Trainer(cfg, run_dir).fit()
    finally:
        distributed.teardown()


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Run the stage the config selects (``stage``: training by default, probing for the ``probe`` recipe)."""
    check_train_config(cfg)
    return instantiate(cfg.stage)(cfg, run_dir)


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> float | None:
    import os

    distributed.adopt_scheduler_env()  # a SLURM / submitit task learns its rank here
    if int(os.environ.get("RANK", 0)) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank zero speaks for the run
    run_dir = HydraConfig.get().runtime.output_dir
    summary = run(cfg, run_dir)
    if "steps" in summary:
        best = {k: v for k, v in summary["best"].items() if k != "step"}
        logging.getLogger("m3bert").info(
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
