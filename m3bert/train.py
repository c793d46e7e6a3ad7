"""Entry point: ``python -m m3bert.train +experiment=NAME [overrides]`` (add ``-m`` for sweeps).

Under ``torchrun --nproc_per_node N -m m3bert.train ...`` every process joins one data-parallel run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import m3bert.config  # noqa: F401  (registers the typed schemas before Hydra composes)
from m3bert import distributed
from m3bert.trainer import Trainer


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the run's summary (metrics.json)."""
    try:
        return Trainer(cfg, run_dir).fit()
    finally:
        distributed.teardown()


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    import os

    if int(os.environ.get("RANK", 0)) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank zero speaks for the run
    run_dir = HydraConfig.get().runtime.output_dir
    summary = run(cfg, run_dir)
    final, best = summary["final"], summary["best"]
    logging.getLogger("m3bert").info(
        "Done at step %d: train/loss %.4f%s. Run folder: %s", summary["steps"], final.get("train/loss", float("nan")),
        f", best val/loss {best['val/loss']:.4f} at step {best['step']}" if best else "", run_dir)
    # Returned so that Hydra's optimisation sweepers can use it.
    return summary["best"].get("val/loss", summary["final"].get("train/loss"))


if __name__ == "__main__":
    main()
