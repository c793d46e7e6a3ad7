"""Experiment loggers behind one small interface: W&B (offline by default), TensorBoard, or nothing.

The trainer always keeps its own ``log.jsonl`` in the run folder; these loggers are for dashboards. Only rank zero
creates one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import matplotlib.figure

from m3bert.common.errors import ConfigError


class Logger:
    """Does nothing; the interface every logger implements."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_figure(self, key: str, figure: matplotlib.figure.Figure, step: int) -> None:
        pass

    def log_summary(self, values: dict[str, Any]) -> None:
        """The run's headline values (best and test metrics), shown in dashboards' run tables."""

    def finish(self) -> None:
        pass


class WandbLogger(Logger):
    """Weights & Biases; ``mode=offline`` (the default) writes to the run folder and syncs later with
    ``wandb sync``. A resumed run continues the same W&B run (its id is kept in the run folder).

    The trainer labels the run (:func:`m3bert.training.records.wandb_labels`): ``job_type`` is the stage, ``group``
    the sweep (``logger.group`` wins), ``tags`` the swept overrides and the encoder mode. The summary keeps the
    best value of ``monitor`` (its min or max, as ``monitor_mode`` says) and the test metrics.
    """

    def __init__(
        self,
        run_dir: str,
        hparams: dict,
        name: str,
        group: str | None = None,
        project: str = "m3bert",
        entity: str | None = None,
        mode: str = "offline",
        tags: list[str] | None = None,
        job_type: str = "pretrain",
        monitor: str | None = None,
        monitor_mode: str = "min",
    ):
        import wandb  # imported here: it is slow to import and unused by the other loggers

        id_file = Path(run_dir) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        id_file.write_text(run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            dir=run_dir,
            name=name,
            group=group,
            config=hparams,
            tags=list(tags or []),
            job_type=job_type,
            id=run_id,
            resume="allow",
        )
        if monitor:
            self.run.define_metric(monitor, summary=monitor_mode)
        self._wandb = wandb

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_figure(self, key: str, figure: matplotlib.figure.Figure, step: int) -> None:
        self.run.log({key: self._wandb.Image(figure)}, step=step)

    def log_summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def finish(self) -> None:
        self.run.finish()


class TensorBoardLogger(Logger):
    def __init__(self, run_dir: str, **_: Any):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # an optional extra: W&B users need not install TensorBoard
            raise ConfigError(
                f"logger=tensorboard needs the tensorboard package ({err}); pip install 'm3bert[tensorboard]' "
                "(or tensorboard), or choose logger=wandb / logger=none"
            ) from err

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_figure(self, key: str, figure: matplotlib.figure.Figure, step: int) -> None:
        self.writer.add_figure(key, figure, step, close=False)

    def finish(self) -> None:
        self.writer.close()


def no_logger(**_: Any) -> Logger:
    return Logger()


def open_logger(cfg, run_dir: str | Path, name: str, monitor: str | None, monitor_mode: str) -> Logger:
    """The logger ``cfg.logger`` configures, labelled as the run's record says (stage, sweep, tags; see
    :func:`m3bert.training.records.wandb_labels`), for training and probing runs alike."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from m3bert.training import records

    # Built as a partial and called here, so Hydra doesn't try to instantiate the config it is given.
    make_logger = instantiate(cfg.logger, _partial_=True)
    return make_logger(
        run_dir=str(run_dir),
        name=name,
        hparams=OmegaConf.to_container(cfg, resolve=True),
        monitor=monitor,
        monitor_mode=monitor_mode,
        **records.wandb_labels(run_dir, cfg),
    )
