"""Probing harness (MARBLE's protocol): how much of a task each layer of a frozen encoder linearly (or with a small
MLP) exposes. ``python -m m3bert.train +experiment=probe encoder.checkpoint=<pre-training run> tasks=[gtzan]``.

Clip representations are computed once per clip and layer (mean over valid frames) and cached in the run folder, so
a sweep over every layer, the learned weighted sum of layers, and a grid of learning rates trains only small heads.
Each probe's learning rate is chosen on the validation split; the table reports its test metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from m3bert.common.figures import probe_layers_figure, save_figure
from m3bert.common.files import atomic_write, write_csv, write_json, write_text
from m3bert.common.tables import markdown_table
from m3bert.data import collate
from m3bert.inference.pretrained import load_pretrained
from m3bert.models.encoder import padding_mask
from m3bert.models.pooling import masked_pool
from m3bert.tasks.heads import Featurizer, make_head, task_loss, task_metrics
from m3bert.tasks.task import Task, TaskDataset, resolve_task
from m3bert.training.loggers import open_logger

log = logging.getLogger(__name__)


@torch.no_grad()
def layer_representations(encoder, dataset: TaskDataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips, layers + 1, hidden) mean-pooled hidden states of every layer, and (clips, ...) targets."""
    pooled, targets = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        out = encoder(batch.features, batch.lengths)
        valid = padding_mask(out.lengths, out.hidden_states[0].shape[1])
        pooled.append(torch.stack([masked_pool(h, valid, "mean") for h in out.hidden_states], 1))
        targets.append(batch.labels[dataset.tasks[0].name])
    return torch.cat(pooled), torch.cat(targets)


def cached_representations(encoder, dataset: TaskDataset, path: Path, batch_size: int):
    if path.exists():
        return torch.load(path)
    result = layer_representations(encoder, dataset, batch_size)
    atomic_write(path, lambda handle: torch.save(result, handle))
    return result


class Probe(nn.Module):
    """A head on one layer's pooled vector, or on a learned softmax-weighted sum of all layers (the task heads'
    :class:`~m3bert.tasks.heads.Featurizer`, over pooled vectors instead of frames)."""

    def __init__(self, layers: int, dim: int, outputs: int, layer: int | None, head: str, hidden: int, dropout: float):
        super().__init__()
        self.featurizer = Featurizer(layers, "weighted_sum" if layer is None else layer)
        self.head = make_head(dim, outputs, head, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (clips, layers, dim) pooled hidden states -> (clips, outputs)."""
        return self.head(self.featurizer(x.unbind(1)))


def train_probe(task: Task, data: dict, layer: int | None, lr: float, cfg: DictConfig, seed: int):
    """Train one probe; returns (best validation primary metric, test metrics at that epoch)."""
    torch.manual_seed(seed)
    train_x, train_y = data["train"]
    probe = Probe(train_x.shape[1], train_x.shape[2], task.outputs, layer, cfg.head, cfg.head_hidden, cfg.head_dropout)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_test, stale = -float("inf"), {}, 0
    for _ in range(cfg.epochs):
        probe.train()
        for rows in torch.randperm(len(train_x), generator=generator).split(cfg.batch_size):
            loss = task_loss(task, probe(train_x[rows]), train_y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        probe.eval()
        with torch.no_grad():
            scores = {
                split: task_metrics([task], {f"{task.name}/output": probe(x), f"{task.name}/target": y.float()})
                for split, (x, y) in data.items()
                if split != "train"
            }
        value = scores["valid"][f"{task.name}/{task.primary_metric}"]
        if value > best:
            best, best_test, stale = value, scores["test"], 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    return best, best_test


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Probe every layer and the weighted sum for each configured task; writes probe_results.csv, probe_results.md,
    metrics.json and a layer x metric plot in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pc = cfg.probe
    loaded = load_pretrained(cfg.encoder.checkpoint, key="encoder.checkpoint")
    encoder = loaded.encoder
    rows = []
    for name, spec in cfg.tasks.items():
        task = resolve_task(name, spec)
        data = {}
        for split in ("train", "valid", "test"):
            dataset = TaskDataset(
                task,
                split,
                cfg.dataset.feature_dim,
                cfg.dataset.eval_max_frames,
                "center",
                loaded.front_end.normalization,  # the encoder's own
            )
            cache = run_dir / "cache" / f"{name}_{split}.pt"
            data[split] = cached_representations(encoder, dataset, cache, pc.batch_size)
        layers = data["train"][0].shape[1]
        probes = [*range(layers), None]
        bar = tqdm(total=len(probes) * len(pc.learning_rates), desc=f"probe {name}", disable=not pc.progress)
        for layer in probes:
            results = []
            for lr in pc.learning_rates:
                results.append((*train_probe(task, data, layer, lr, pc, cfg.seed), lr))
                bar.update(1)
            best_val, test, lr = max(results, key=lambda r: r[0])
            rows.append(
                {
                    "task": name,
                    "layer": "weighted_sum" if layer is None else layer,
                    "lr": lr,
                    f"valid_{task.primary_metric}": best_val,
                    **{k.removeprefix(f"{name}/"): v for k, v in test.items() if k != "score"},
                }
            )
        bar.close()
    table = pd.DataFrame(rows)
    write_csv(table, run_dir / "probe_results.csv")
    write_text(markdown_table(table), run_dir / "probe_results.md")
    # Each task's headline: the probe (layer or weighted sum) best on validation, as fine-tuning runs report it.
    best, test = {}, {}
    for name, part in table.groupby("task", sort=False):
        valid = next(c for c in part.columns if c.startswith("valid_") and part[c].notna().any())
        row = part.loc[part[valid].idxmax()]
        best[f"{name}/valid/{valid.removeprefix('valid_')}"] = float(row[valid])
        best[f"{name}/layer"] = row["layer"] if isinstance(row["layer"], str) else int(row["layer"])
        metrics = [c for c in part.columns if c not in ("task", "layer", "lr") and not c.startswith("valid_")]
        test.update({f"{name}/test/{c}": float(row[c]) for c in metrics if pd.notna(row[c])})
    # Probes run on the CPU without autocast: the record's environment says so, as the trainer's summary does.
    summary = {"name": cfg.name, "probes": rows, "best": best, "test": test, "precision": "fp32", "device": "cpu"}
    write_json(summary, run_dir / "metrics.json")
    figure = probe_layers_figure(table)
    try:
        _log(cfg, run_dir, table, summary, figure)
    finally:
        save_figure(figure, run_dir / "probe_layers.png", dpi=90)
    log.info(
        "Probe results (test metrics with the learning rate chosen on validation):\n%s", table.to_string(index=False)
    )
    return summary


def _log(cfg: DictConfig, run_dir: Path, table: pd.DataFrame, summary: dict, figure) -> None:
    """The probe's run in the configured logger (job type ``probe``): each task's metrics per layer (the step is
    the layer; the weighted sum comes after the last layer), the layer plot, and best / test in the summary."""
    logger = open_logger(cfg, run_dir, cfg.name, None, "max")
    try:
        for name, part in table.groupby("task", sort=False):
            for step, row in enumerate(part.to_dict("records")):
                values = {k: v for k, v in row.items() if k not in ("task", "layer") and pd.notna(v)}
                logger.log_metrics({f"{name}/layer/{k}": float(v) for k, v in values.items()}, step)
        logger.log_figure("probe_layers", figure, 0)
        best = {f"best/{k}": v for k, v in summary["best"].items()}
        logger.log_summary({**best, **summary["test"]})
    finally:
        logger.finish()
