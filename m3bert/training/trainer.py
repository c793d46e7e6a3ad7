"""The training loop: one plain PyTorch loop, readable top to bottom.

It owns devices, precision, data loading, optimisation, checkpoints, resume, logging and the run's summary. What is
trained comes from the config: ``cfg.objective`` builds an :class:`m3bert.objectives.Objective`, whose documented
hooks are all the loop relies on, so it never imports a concrete model, dataset or objective class.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from m3bert.common import checkpoints
from m3bert.common.devices import native_bf16, resolve_device
from m3bert.common.figures import loss_curves, save_figure
from m3bert.common.files import append_text, remove_stale_temp_files, write_json, write_text
from m3bert.data import EpochSampler, collate, shard
from m3bert.objectives import Objective
from m3bert.training import distributed, records, seeding
from m3bert.training.loggers import open_logger
from m3bert.training.optim import parameter_groups
from m3bert.training.preemption import Preemption

log = logging.getLogger(__name__)


def _metric_name(key: str, split: str) -> str:
    task, _, metric = key.rpartition("/")
    return f"{task}/{split}/{metric}" if task else f"{split}/{metric}"


# Seed offsets that keep the streams of randomness apart.
MASK_STREAM, VAL_STREAM = 1_000_003, 2_000_003


@dataclass
class Precision:
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    scaler: torch.amp.GradScaler | None  # only for fp16

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name == "auto":  # bf16 only where the hardware computes it: emulated, it is slower than fp32
        name = "bf16" if native_bf16(device) else "fp32"
    if name == "fp32":
        return Precision(None, None)
    if name == "bf16":
        return Precision(torch.bfloat16, None)
    if name == "fp16":
        if device.type != "cuda":
            raise ValueError("trainer.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return Precision(torch.float16, torch.amp.GradScaler("cuda"))
    raise ValueError(f"trainer.precision must be auto, bf16, fp16 or fp32, got {name!r}")


class LogWindow:
    """Training statistics between two log rows: mean loss, the objective's logs, throughput and wall time spent
    outside training (evaluation, checkpoints), which throughput leaves out."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.frames = torch.zeros((), device=self.device), 0, 0
        self.logs: dict[str, list[torch.Tensor]] = {}
        self.grad_norm = torch.zeros((), device=self.device)
        self.started, self.outside = time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, frames: int, grad_norm: torch.Tensor, logs: dict[str, torch.Tensor]) -> None:
        self.loss += loss
        self.steps += 1
        self.frames += frames
        self.grad_norm = grad_norm
        for key, value in logs.items():
            self.logs.setdefault(key, []).append(value)

    @contextlib.contextmanager
    def paused(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.outside += time.perf_counter() - start

    def flush(self, lr: float) -> dict[str, float]:
        """The window's log row (``train/loss``, ``train/<key>`` or ``<task>/train/<key>`` for the objective's
        logs, ...); starts a new window. The .item() calls are CPU-GPU sync points, so they happen only here."""
        elapsed = time.perf_counter() - self.started - self.outside
        row = {
            "train/loss": (self.loss / max(self.steps, 1)).item(),
            "train/lr": lr,
            "train/grad_norm": self.grad_norm.item(),
            "train/frames_per_s": self.frames / max(elapsed, 1e-9),
        }
        row.update({_metric_name(key, "train"): torch.stack(values).mean().item() for key, values in self.logs.items()})
        self.reset()
        return row


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: str | Path):
        self.cfg, self.tc = cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        self.device = resolve_device(self.tc.device, "trainer.device")
        self.dist = distributed.setup(self.device.type)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = resolve_precision(self.tc.precision, self.device)
        seeding.seed_everything(cfg.seed + self.dist.rank)

        # The objective first: it may hand its splits a fact of its own (a pre-trained encoder's input normalisation).
        self.model = instantiate(cfg.objective, _convert_="all").to(self.device)
        if not isinstance(self.model, Objective):
            raise TypeError(
                f"objective._target_={cfg.objective._target_} builds a {type(self.model).__name__}, not "
                "an m3bert.objectives.Objective; subclass it (see m3bert/objectives/base.py)"
            )
        self.train_set = self.build_split("train")
        self.val_set = self.build_split("val")
        if self.model.train_crop is not None:
            self.train_set.use_crop(self.model.train_crop)
        self.sampler = EpochSampler(
            len(self.train_set),
            self.tc.batch_size,
            self.dist.world_size,
            self.dist.rank,
            seed=cfg.seed,
            weights=self.train_set.sampling_weights,
            epochs=None,
        )
        self.optimizer = instantiate(cfg.optimizer)(
            parameter_groups(self.model, cfg.optimizer.weight_decay, cfg.optimizer.lr)
        )
        self.scheduler = instantiate(cfg.scheduler)(self.optimizer)
        # What runs the training forward pass: the model itself, compiled and/or wrapped by DDP (whose wrapper
        # calls it .module); state, evaluation and parameters always go through the raw self.model.
        self.wrapped = self.model
        if self.tc.compile:
            self.wrapped = torch.compile(self.wrapped)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Multi-task batches may leave some heads unused; DDP must then look for unused parameters.
            self.wrapped = DistributedDataParallel(
                self.wrapped, device_ids=ids, find_unused_parameters=self.model.has_unused_parameters
            )
        # Masking draws from its own generator on the batch's device, so its state is saved and restored exactly.
        self.mask_generator = torch.Generator(self.device).manual_seed(cfg.seed * MASK_STREAM + self.dist.rank)

        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best: dict[str, Any] = {}
        self.stale_evaluations = 0  # evaluations since the monitored metric last improved (early stopping)
        self.wall_time = 0.0  # seconds spent in fit() by this run and the runs it resumes
        self.logger = None

    # ----------------------------------------------------------------------------------------------- state
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / checkpoints.CHECKPOINT_FOLDER

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler else None,
            "step": self.step,
            "sampler": {"epoch": self.epoch, "batch": self.batch_in_epoch},
            # Every rank's random streams, so that each process continues its own after a resume.
            "rng": distributed.gather_objects(seeding.rng_state(), self.dist),
            "mask_generator": distributed.gather_objects(self.mask_generator.get_state(), self.dist),
            "best": self.best,
            "stale_evaluations": self.stale_evaluations,
            "wall_time_s": self.wall_time + time.perf_counter() - self._started,
            "model_config": OmegaConf.to_container(self.cfg.model, resolve=True),
            # The input normalisation the model learned on (with its statistics): exported models and every
            # consumer apply the same (m3bert.inference.pretrained).
            "normalization": self.train_set.normalization.to_dict(),
            checkpoints.FRONT_END: checkpoints.front_end_record(self.cfg.features),
            checkpoints.TRAINING_FRAMES: getattr(self.train_set, "max_frames", None),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise RuntimeError(
                f"the checkpoint in {self.checkpoint_dir} does not fit the configured model ({err}); "
                "resume with the same model config, or start a new run folder"
            ) from err
        self.optimizer.load_state_dict(state["optimizer"])
        # The schedule follows the current config (max_steps may have been raised); only its position is restored.
        self.scheduler.load_state_dict(state["scheduler"])
        if self.precision.scaler and state["scaler"]:
            self.precision.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.epoch, self.batch_in_epoch = state["sampler"]["epoch"], state["sampler"]["batch"]
        self.best = state["best"]
        self.stale_evaluations = state.get("stale_evaluations", 0)
        self.wall_time = state.get("wall_time_s", 0.0)
        if len(state["rng"]) == self.dist.world_size:
            seeding.set_rng_state(state["rng"][self.dist.rank])
            self.mask_generator.set_state(state["mask_generator"][self.dist.rank])
        else:
            # Another number of processes: the streams cannot continue, so derive fresh ones per rank and step.
            log.warning(
                "The checkpoint was written by %d process(es), this run has %d: random streams are reseeded, "
                "so the run continues correctly but not bitwise as an uninterrupted one",
                len(state["rng"]),
                self.dist.world_size,
            )
            seeding.seed_everything(self.cfg.seed + self.step * 7919 + self.dist.rank)
            self.mask_generator.manual_seed(self.cfg.seed * MASK_STREAM + self.step * 7919 + self.dist.rank)

    def save(self, name: str | None = None) -> None:
        """A checkpoint of the whole state (every rank takes part; rank zero writes): ``step_<step>.pt`` (older
        ones pruned to ``trainer.keep``) or ``name``."""
        state = self.state_dict()
        if not self.dist.is_main:
            return
        checkpoints.save(state, self.checkpoint_dir / (name or f"step_{self.step:07d}.pt"))
        if name is None:
            checkpoints.prune(self.checkpoint_dir, self.tc.keep)

    def resume(self) -> bool:
        """Continue from the newest readable step checkpoint. Unreadable ones (a damaged disk, a file copied in
        by mistake) are renamed ``*.corrupt`` with a warning and the one before is used."""
        for path in reversed(checkpoints.step_checkpoints(self.checkpoint_dir)):
            try:
                state = checkpoints.load(path, map_location=self.device, required=checkpoints.TRAINING_KEYS)
            except checkpoints.CheckpointError as err:
                if self.dist.is_main:
                    aside = checkpoints.set_aside_corrupt(path)
                    log.warning("%s; set aside as %s, trying the checkpoint before it", err, aside.name)
                distributed.barrier(self.dist)
                continue
            self.load_state_dict(state)
            log.info("Resuming from %s at step %d", path, self.step)
            return True
        return False

    # ------------------------------------------------------------------------------------------------ data
    def build_split(self, split: str):
        """The dataset of ``cfg.dataset.<split>`` (None where the config has none), built to serve what the objective
        reads: with its own input normalisation where it has one (a pre-trained encoder's), in every split."""
        node = self.cfg.dataset.get(split)
        if node is None:
            return None
        normalization = self.model.input_normalization
        return instantiate(node) if normalization is None else instantiate(node, normalization=normalization.to_dict())

    def batches(self) -> Iterator:
        """Training micro-batches forever, from the saved sampler position. One loader serves the whole run (its
        workers are started once); the position advances as batches are consumed, not as workers prefetch them."""
        self.sampler.set_position(self.epoch, self.batch_in_epoch)
        # The loader gets its own generator: drawing its worker seeds from the global RNG would shift dropout
        # after a resume.
        loader = DataLoader(
            self.train_set,
            batch_size=self.tc.batch_size,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=self.tc.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )
        for batch in loader:
            self.batch_in_epoch += 1
            if self.batch_in_epoch == self.sampler.batches_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            yield batch.to(self.device)

    def autocast(self):
        if self.precision.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision.dtype)

    # ---------------------------------------------------------------------------------------------- train
    def fit(self) -> dict[str, Any]:
        """Train until ``trainer.max_steps`` (or early stopping), test the best weights, write ``metrics.json``.

        Each step: one optimiser step, then, when due, the log window, validation, figures and a checkpoint.
        Resuming, when the run folder holds checkpoints, happens first and by itself.
        """
        history = self.start()
        window = LogWindow(self.device)
        batches = self.batches()
        progress = self._progress_bar()
        self.wrapped.train()
        with Preemption() as preemption:
            while self.step < self.tc.max_steps and not self.stopped_early:
                window.add(*self.train_step(batches))
                self.step += 1
                progress.update(1)
                logged = self.due(self.tc.log_every)
                if logged:
                    history.append(self.log_metrics(window.flush(self.scheduler.get_last_lr()[0])))
                    progress.set_postfix(loss=f"{history[-1]['train/loss']:.4f}")
                with window.paused():  # evaluation, figures and checkpoints don't count towards throughput
                    if self.val_set is not None and self.due(self.tc.val_every):
                        history.append(self.validate())
                    if self.tc.image_every and self.step % self.tc.image_every == 0:
                        self.log_example()
                    if self.due(self.tc.save_every) or self.stopped_early:
                        self.save()
                    if logged and self.preempted(preemption):
                        self.save()
                        progress.close()
                        if self.logger is not None:
                            self.logger.finish()
                        raise preemption.stop(self.step)
        progress.close()
        summary = self.summarize(history, self.wall_time + time.perf_counter() - self._started, self.test())
        if self.logger is not None:
            best = {f"best/{k}": v for k, v in self.best.items()}
            self.logger.log_summary({**best, **summary["test"], "steps": self.step})
            self.logger.finish()
        return summary

    def start(self) -> list[dict[str, Any]]:
        """Resume if there is a checkpoint, open the logger and say what is about to happen; returns the log
        history so far."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started = time.perf_counter()
        if self.dist.is_main:  # what a run killed mid-write left behind
            for stale in remove_stale_temp_files(self.run_dir) + remove_stale_temp_files(self.checkpoint_dir):
                log.warning("Removed %s, a partial file of an interrupted run", stale)
        resumed = self.resume()
        history = self.read_history(trim_after=self.step)
        if self.dist.is_main:
            self.logger = open_logger(self.cfg, self.run_dir, self.run_name, self.tc.monitor, self.tc.monitor_mode)
        if self.step >= self.tc.max_steps:
            log.info("Run already finished at step %d; raise trainer.max_steps to continue it", self.step)
        elif self.stopped_early:
            log.info("Run stopped early at step %d; raise trainer.patience to continue it", self.step)
        elif not resumed:
            log.info("Starting a new run in %s", self.run_dir)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "%s parameters, precision %s, device %s, %d process(es)",
            f"{n_params:,}",
            self.precision.name,
            self.device,
            self.dist.world_size,
        )
        return history

    def preempted(self, preemption: Preemption) -> bool:
        """Whether a scheduler asked any process to stop; the processes agree on it at log steps, so that they
        all save the same step."""
        flag = torch.tensor(float(preemption.requested), device=self.device)
        return bool(distributed.all_sum(flag, self.dist).item() > 0)

    def due(self, period: int) -> bool:
        """Whether a periodic action falls on this step (the last step always counts)."""
        return self.step % period == 0 or self.step == self.tc.max_steps

    def validate(self) -> dict[str, Any]:
        """Evaluate on the validation split, keep ``best.pt`` and the early-stopping count up to date."""
        metrics = self.evaluate(self.val_set, "val")
        row = self.log_metrics(metrics)
        if self.improved(metrics):
            self.best = {self.tc.monitor: metrics[self.tc.monitor], "step": self.step}
            self.stale_evaluations = 0
            self.save(checkpoints.BEST_FILE)
        else:
            self.stale_evaluations += 1
        if self.stopped_early:
            log.info(
                "Early stop at step %d: %s has not improved for %d evaluations (best %.4g at step %d)",
                self.step,
                self.tc.monitor,
                self.stale_evaluations,
                self.best[self.tc.monitor],
                self.best["step"],
            )
        return row

    @property
    def stopped_early(self) -> bool:
        return bool(self.tc.patience) and self.stale_evaluations >= self.tc.patience

    def train_step(self, batches: Iterator) -> tuple[torch.Tensor, int, torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, valid frames, grad norm, the
        objective's logs averaged over the micro-batches that had them)."""
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, total_frames = torch.zeros((), device=self.device), 0
        logs: dict[str, list[torch.Tensor]] = {}
        for micro in range(self.tc.grad_accum):
            batch = next(batches)
            last = micro == self.tc.grad_accum - 1
            # DDP all-reduces gradients on every backward unless told not to: only the last micro-step syncs.
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.wrapped.no_sync()
            with sync:
                with self.autocast():
                    out = self.wrapped(batch, self.mask_generator)
                # Normalise by the positions counted on all ranks, so N processes match one with N times the batch.
                count = distributed.all_sum(out.count.float(), self.dist).clamp_min(1)
                loss = out.loss_sum * self.dist.world_size / count / self.tc.grad_accum
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss ({loss.item()}) at step {self.step + 1}; lower optimizer.lr, use "
                        "trainer.precision=bf16 or fp32, or check the input features for extreme values"
                    )
                self._backward(loss)
            total_loss += distributed.all_sum(out.loss_sum.detach(), self.dist) / count / self.tc.grad_accum
            total_frames += int(batch.lengths.sum()) * self.dist.world_size
            for key, value in out.logs.items():
                logs.setdefault(key, []).append(value.detach().float())
        grad_norm = self._optimizer_step()
        return total_loss, total_frames, grad_norm, {k: torch.stack(v).mean() for k, v in logs.items()}

    def _backward(self, loss: torch.Tensor) -> None:
        if self.precision.scaler:
            self.precision.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _optimizer_step(self) -> torch.Tensor:
        scaler = self.precision.scaler
        if scaler:
            scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        max_norm = self.tc.grad_clip if self.tc.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if scaler:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return grad_norm

    @torch.no_grad()
    def gather(self, dataset, split: str) -> dict[str, torch.Tensor]:
        """The objective's per-batch evaluation outputs over ``dataset`` (every clip once across processes),
        concatenated, on every rank. Masks use a fixed seed so evaluations compare."""
        self.wrapped.eval()
        rows = shard(len(dataset), self.dist.world_size, self.dist.rank)
        loader = DataLoader(
            Subset(dataset, rows), batch_size=self.tc.batch_size, collate_fn=collate, num_workers=self.tc.num_workers
        )
        generator = torch.Generator(self.device).manual_seed(self.cfg.seed * VAL_STREAM + self.dist.rank)
        parts: dict[str, list[torch.Tensor]] = {}
        for i, batch in enumerate(loader):
            if split == "val" and self.tc.val_batches and i >= self.tc.val_batches:
                break
            with self.autocast():
                for key, value in self.model.eval_batch(batch.to(self.device), generator).items():
                    parts.setdefault(key, []).append(value.detach().float().cpu())
        self.wrapped.train()
        state = {key: torch.cat(values) for key, values in parts.items()}
        if self.dist.enabled:
            gathered = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, state)
            keys = dict.fromkeys(k for g in gathered for k in g)  # a rank's shard may lack some task's clips
            state = {key: torch.cat([g[key] for g in gathered if key in g]) for key in keys}
        return state

    def evaluate(self, dataset, split: str) -> dict[str, float]:
        """The objective's metrics on ``dataset``, named ``<split>/<metric>`` or, for a task's metric
        ``task/metric``, ``task/<split>/metric``."""
        metrics = self.model.eval_metrics(self.gather(dataset, split))
        return {_metric_name(key, split): value for key, value in metrics.items()}

    def improved(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.tc.monitor)
        if value is None:
            raise KeyError(f"trainer.monitor={self.tc.monitor} is not among the validation metrics {sorted(metrics)}")
        best = self.best.get(self.tc.monitor)
        return best is None or (value < best if self.tc.monitor_mode == "min" else value > best)

    # -------------------------------------------------------------------------------------------- logging
    @property
    def run_name(self) -> str:
        return (
            str(self.run_dir.relative_to(self.run_dir.parent.parent))
            if self.run_dir.parent != self.run_dir
            else self.run_dir.name
        )

    def log_metrics(self, row: dict[str, float]) -> dict[str, Any]:
        row = {"step": self.step, **row}
        if self.dist.is_main:
            append_text(json.dumps(row) + "\n", self.run_dir / "log.jsonl")
            self.logger.log_metrics({k: v for k, v in row.items() if k != "step"}, self.step)
        return row

    def log_example(self) -> None:
        """The objective's diagnostic figures of the first validation (else training) clip."""
        if not self.dist.is_main:
            return
        dataset = self.val_set if self.val_set is not None else self.train_set
        batch = collate([dataset[0]]).to(self.device)
        generator = torch.Generator(self.device).manual_seed(self.cfg.seed)
        self.model.eval()
        with self.autocast():
            figures = self.model.example_figures(batch, generator)
        self.model.train()
        for key, fig in figures.items():
            fig.suptitle(f"{self.cfg.name}, step {self.step}")
            self.logger.log_figure(key, fig, self.step)
            save_figure(fig, self.run_dir / "figures" / f"{key.rpartition('/')[2]}_step{self.step:07d}.png", dpi=90)

    def read_history(self, trim_after: int) -> list[dict[str, Any]]:
        """Rows of log.jsonl up to ``trim_after``; rows a crashed run logged after its last checkpoint are dropped
        so that a resumed run's log reads as if it had never stopped."""
        path = self.run_dir / "log.jsonl"
        if not path.exists():
            return []
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                if number < len(lines):
                    raise ValueError(
                        f"{path}, line {number}: not a JSON row ({err}); the file is damaged, repair the line or "
                        "move the file aside (the checkpoints are enough to resume)"
                    ) from err
                # An append cut short by a kill or a full disk: the row is lost, the run is not.
                log.warning("%s: dropped its last line, cut short by an interrupted write: %.80s", path, line)
        rows = [r for r in rows if r["step"] <= trim_after]
        if self.dist.is_main:
            write_text("".join(json.dumps(r) + "\n" for r in rows), path)
        return rows

    def _progress_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=self.tc.max_steps,
            initial=min(self.step, self.tc.max_steps),
            desc=self.cfg.name,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.tc.progress and self.dist.is_main),
        )

    def test(self) -> dict[str, float]:
        """Metrics on the test split with the best-on-validation weights (the last ones if there is no best)."""
        test_set = self.build_split("test")
        if test_set is None:
            return {}
        best = self.checkpoint_dir / checkpoints.BEST_FILE
        if best.exists():
            self.model.load_state_dict(checkpoints.load(best, map_location=self.device, required=("model",))["model"])
        state = self.gather(test_set, "test")
        metrics = {_metric_name(k, "test"): v for k, v in self.model.eval_metrics(state).items()}
        self.log_metrics(metrics)
        log.info(
            "Test (weights of step %s): %s",
            self.best.get("step", self.step),
            ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
        )
        if self.dist.is_main:
            for key, fig in self.model.eval_figures(state).items():
                self.logger.log_figure(_metric_name(key, "test"), fig, self.step)
                save_figure(
                    fig, self.run_dir / "figures" / f"{_metric_name(key, 'test').replace('/', '_')}.png", dpi=90
                )
        return metrics

    def summarize(self, history: list[dict[str, Any]], wall_time: float, test: dict[str, float]) -> dict[str, Any]:
        """metrics.json: final and best values, throughput, steps, wall time and the code's git commit."""
        final: dict[str, float] = {}
        for row in history:
            final.update({k: v for k, v in row.items() if k != "step"})
        throughput = [r["train/frames_per_s"] for r in history if "train/frames_per_s" in r]
        summary = {
            "name": self.cfg.name,
            "steps": self.step,
            "final": final,
            "best": self.best,
            "test": test,
            "frames_per_s": sum(throughput) / len(throughput) if throughput else None,
            "wall_time_s": wall_time,
            "precision": self.precision.name,
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "git_commit": records.git_commit(),
        }
        if self.dist.is_main:
            write_json(summary, self.run_dir / "metrics.json")
            if history:
                save_figure(loss_curves(history), self.run_dir / "loss_curves.png", dpi=90)
        return summary
