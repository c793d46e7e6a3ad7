"""What sits on an encoder for one task: a featurizer over its layers, a frame-wise layer, pooling over valid
frames and a prediction head; plus each task type's loss, metrics and figures.

Each task reads the encoder's layers through its own featurizer (the last layer, a fixed layer, or a learned
softmax-weighted sum of all layers, as in s3prl), passes each frame through one frame-wise layer, pools over valid
frames (mean, max, statistics pooling ``mean_std`` or attention) and predicts with its own head (an MLP with one
512-unit hidden layer and dropout 0.2, MARBLE's probing protocol, or a linear layer).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3bert.models.pooling import POOLINGS, check_pooling, masked_pool, pooled_dim
from m3bert.tasks import metrics
from m3bert.tasks.task import Task


class Featurizer(nn.Module):
    """Hidden states of every layer (each (batch, ..., hidden): frames for a task head, pooled vectors for a probe)
    -> one tensor of that shape: the last layer, a fixed one, or a learned softmax-weighted sum (s3prl's)."""

    def __init__(self, layers: int, mode: str | int):
        super().__init__()
        self.mode = mode
        if mode == "weighted_sum":
            self.weights = nn.Parameter(torch.zeros(layers))  # uniform at the start
        elif mode != "last" and not (isinstance(mode, int) and -layers <= mode < layers):
            raise ValueError(f"featurizer must be last, weighted_sum or a layer index in [0, {layers}), got {mode!r}")

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.mode == "weighted_sum":
            stacked = torch.stack(hidden_states)  # (layers, batch, ..., hidden)
            return torch.einsum("l,l...->...", self.weights.softmax(0).to(stacked.dtype), stacked)
        return hidden_states[-1 if self.mode == "last" else self.mode]


class Pooling(nn.Module):
    """(batch, tokens, dim) + valid mask (batch, tokens) -> (batch, out_dim) over the valid tokens: ``mean``,
    ``max``, ``mean_std`` (mean and standard deviation side by side: out_dim = 2 dim; see m3bert.models.pooling) or
    ``attention`` (a learned score per token, softmax-weighted mean)."""

    MODES = (*POOLINGS, "attention")

    def __init__(self, dim: int, mode: str):
        super().__init__()
        check_pooling(mode, self.MODES)
        self.mode = mode
        self.score = nn.Linear(dim, 1) if mode == "attention" else None
        self.out_dim = dim if mode == "attention" else pooled_dim(dim, mode)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.score is None:
            return masked_pool(x, valid, self.mode).to(x.dtype)
        weights = self.score(x).squeeze(-1).masked_fill(~valid, float("-inf")).softmax(1)
        return torch.einsum("bt,btd->bd", weights, x)


def make_head(dim: int, outputs: int, kind: str, hidden: int, dropout: float) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, outputs)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))
    raise ValueError(f"head must be mlp or linear, got {kind!r}")


class TaskHead(nn.Module):
    def __init__(
        self,
        task: Task,
        layers: int,
        dim: int,
        featurizer,
        frame_layer: bool,
        pooling: str,
        head: str,
        hidden: int,
        dropout: float,
    ):
        super().__init__()
        self.featurizer = Featurizer(layers, featurizer)
        # Per-file CMVN sets every input feature's clip mean to zero, and an encoder that has learned to fill in
        # masked frames stays close to linear in them, so the mean of its states hardly differs between clips
        # either. One frame-wise layer before pooling lets every mode's head pool a nonlinear function of the
        # frames, the same head on each representation.
        self.frames = nn.Sequential(nn.Linear(dim, dim), nn.GELU()) if frame_layer else nn.Identity()
        self.pooling = Pooling(dim, pooling)
        self.head = make_head(self.pooling.out_dim, task.outputs, head, hidden, dropout)

    def forward(self, hidden_states, valid: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooling(self.frames(self.featurizer(hidden_states)), valid))


def task_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task.type == "multiclass":
        return F.cross_entropy(output.float(), target)
    if task.type == "multilabel":
        return F.binary_cross_entropy_with_logits(output.float(), target.float())
    return F.mse_loss(output.float(), target.float())


def task_metrics(tasks: list[Task], state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-task metrics (``task/metric``) from gathered ``task/output`` and ``task/target`` arrays, each task's
    loss, and ``score``: the mean of the tasks' primary metrics."""
    results, primary = {}, []
    for task in tasks:
        if f"{task.name}/output" not in state:
            continue
        output, target = state[f"{task.name}/output"], state[f"{task.name}/target"]
        results[f"{task.name}/loss"] = task_loss(
            task, output, target.long() if task.type == "multiclass" else target
        ).item()
        output, target = output.numpy(), target.numpy()
        if task.type == "multiclass":
            predicted, truth = output.argmax(1), target.astype(int)
            results[f"{task.name}/accuracy"] = metrics.accuracy(truth, predicted)
            results[f"{task.name}/macro_f1"] = metrics.macro_f1(truth, predicted, task.outputs)
        elif task.type == "multilabel":
            results[f"{task.name}/roc_auc"] = metrics.macro(metrics.roc_auc, target, output)
            results[f"{task.name}/pr_auc"] = metrics.macro(metrics.average_precision, target, output)
        else:
            r2 = metrics.r2(target, output)
            results.update({f"{task.name}/r2_{column}": float(v) for column, v in zip(task.label, r2)})
            results[f"{task.name}/r2"] = float(np.nanmean(r2))
        primary.append(results[f"{task.name}/{task.primary_metric}"])
    results["score"] = float(np.mean(primary)) if primary else float("nan")
    return results


def task_figures(tasks: list[Task], state: Mapping[str, torch.Tensor]) -> dict:
    """One figure per task: a confusion matrix (multiclass), per-class ROC-AUC (multilabel), or predicted against
    true values (regression)."""
    from m3bert.common import figures

    out = {}
    for task in tasks:
        if f"{task.name}/output" not in state:
            continue
        output, target = state[f"{task.name}/output"].numpy(), state[f"{task.name}/target"].numpy()
        if task.type == "multiclass":
            matrix = metrics.confusion(target.astype(int), output.argmax(1), task.outputs)
            out[f"{task.name}/confusion"] = figures.confusion_matrix(matrix, task.classes, task.name)
        elif task.type == "multilabel":
            aucs = [metrics.roc_auc(target[:, c], output[:, c]) for c in range(task.outputs)]
            out[f"{task.name}/roc_auc_per_class"] = figures.per_class_bars(aucs, task.classes, "ROC-AUC", task.name)
        else:
            out[f"{task.name}/predictions"] = figures.regression_scatter(target, output, task.label, task.name)
    return out
