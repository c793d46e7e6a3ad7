"""The downstream model: an encoder (frozen, fine-tuned, from scratch, or none at all) shared by per-task heads.

Each task reads the encoder's layers through its own featurizer (the last layer, a fixed layer, or a learned
softmax-weighted sum of all layers, as in s3prl), passes each frame through one frame-wise layer, pools over valid
frames (mean or attention) and predicts with its own head (an MLP with one 512-unit hidden layer and dropout 0.2,
MARBLE's probing protocol, or a linear layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3bert import checkpoint
from m3bert.data import Batch
from m3bert.models import M3BERT, M3BERTConfig, StepOutput
from m3bert.models.encoder import padding_mask
from m3bert.tasks import metrics
from m3bert.tasks.task import Task, resolve_task

ENCODER_MODES = ("frozen", "finetune", "scratch", "baseline")


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else the latest) checkpoint of a pre-training run folder."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if (folder / "best.pt").is_file():
        return folder / "best.pt"
    found = checkpoint.step_checkpoints(folder) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"encoder.checkpoint={path}: no checkpoint file there (expected a .pt file or a "
                                "pre-training run folder with checkpoints/best.pt or checkpoints/step_*.pt)")
    return found[-1]


def load_encoder(path: str | Path) -> M3BERT:
    """The encoder of a pre-training checkpoint, built with the architecture the checkpoint records."""
    file = find_checkpoint(path)
    state = checkpoint.load(file)
    if "model_config" not in state or "model" not in state:
        raise ValueError(f"{file}: not an m3bert pre-training checkpoint (no model / model_config entries)")
    encoder = M3BERT(M3BERTConfig(**state["model_config"]))
    weights = {k.removeprefix("encoder."): v for k, v in state["model"].items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{file}: encoder weights don't match the architecture recorded with them ({err})") from err
    return encoder


class Featurizer(nn.Module):
    """Hidden states of every layer -> one (batch, tokens, hidden) tensor."""

    def __init__(self, layers: int, mode: str | int):
        super().__init__()
        self.mode = mode
        if mode == "weighted_sum":
            self.weights = nn.Parameter(torch.zeros(layers))  # uniform at the start
        elif mode != "last" and not (isinstance(mode, int) and -layers <= mode < layers):
            raise ValueError(f"featurizer must be last, weighted_sum or a layer index in [0, {layers}), got {mode!r}")

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.mode == "weighted_sum":
            stacked = torch.stack(hidden_states)  # (layers, batch, tokens, hidden)
            return torch.einsum("l,lbth->bth", self.weights.softmax(0).to(stacked.dtype), stacked)
        return hidden_states[-1 if self.mode == "last" else self.mode]


class Pooling(nn.Module):
    """(batch, tokens, dim) + valid mask -> (batch, dim): mean over valid tokens, or learned attention weights."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode not in ("mean", "attention"):
            raise ValueError(f"pooling must be mean or attention, got {mode!r}")
        self.score = nn.Linear(dim, 1) if mode == "attention" else None

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.score is None:
            weights = valid.to(x.dtype) / valid.sum(1, keepdim=True).clamp_min(1)
        else:
            weights = self.score(x).squeeze(-1).masked_fill(~valid, float("-inf")).softmax(1)
        return torch.einsum("bt,btd->bd", weights, x)


def make_head(dim: int, outputs: int, kind: str, hidden: int, dropout: float) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, outputs)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))
    raise ValueError(f"head must be mlp or linear, got {kind!r}")


class TaskHead(nn.Module):
    def __init__(self, task: Task, layers: int, dim: int, featurizer, frame_layer: bool, pooling: str, head: str,
                 hidden: int, dropout: float):
        super().__init__()
        self.featurizer = Featurizer(layers, featurizer)
        # Per-file CMVN sets every input feature's clip mean to zero, and an encoder that has learned to fill in
        # masked frames stays close to linear in them, so the mean of its states hardly differs between clips
        # either. One frame-wise layer before pooling lets every mode's head pool a nonlinear function of the
        # frames, the same head on each representation.
        self.frames = nn.Sequential(nn.Linear(dim, dim), nn.GELU()) if frame_layer else nn.Identity()
        self.pooling = Pooling(dim, pooling)
        self.head = make_head(dim, task.outputs, head, hidden, dropout)

    def forward(self, hidden_states, valid: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooling(self.frames(self.featurizer(hidden_states)), valid))


def task_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task.type == "multiclass":
        return F.cross_entropy(output.float(), target)
    if task.type == "multilabel":
        return F.binary_cross_entropy_with_logits(output.float(), target.float())
    return F.mse_loss(output.float(), target.float())


class MultiTaskModel(nn.Module):
    """forward(batch, generator) -> StepOutput: the weighted sum of each task's mean loss over the clips that carry
    its label (a clip without a task's label contributes nothing to that task)."""

    has_unused_parameters = True  # a batch may hold no clip of some task

    def __init__(self, tasks: Mapping[str, Mapping], model: Mapping, encoder: Mapping, feature_dim: int,
                 featurizer: str | int = "weighted_sum", frame_layer: bool = True, pooling: str = "mean",
                 head: str = "mlp", head_hidden: int = 512, head_dropout: float = 0.2,
                 loss_weighting: str = "uniform"):
        super().__init__()
        self.tasks = [resolve_task(name, spec) for name, spec in tasks.items()]
        self.mode = encoder["mode"]
        if self.mode not in ENCODER_MODES:
            raise ValueError(f"encoder.mode must be one of {ENCODER_MODES}, got {self.mode!r}")
        if loss_weighting not in ("uniform", "fixed", "uncertainty"):
            raise ValueError(f"loss_weighting must be uniform, fixed or uncertainty, got {loss_weighting!r}")
        self.loss_weighting = loss_weighting
        if self.mode in ("frozen", "finetune"):
            if not encoder.get("checkpoint"):
                raise ValueError(f"encoder.mode={self.mode} needs encoder.checkpoint=<pre-training run folder or .pt>")
            self.encoder = load_encoder(encoder["checkpoint"])
        elif self.mode == "scratch":
            self.encoder = M3BERT(M3BERTConfig(**model))
        else:
            self.encoder = None
        if self.encoder is not None and self.encoder.config.input_dim != feature_dim:
            raise ValueError(f"the encoder takes {self.encoder.config.input_dim}-dim features but the task data has "
                             f"{feature_dim} (dataset.feature_dim)")
        if self.mode == "frozen":
            self.encoder.requires_grad_(False)
        self.lr_scales = {"encoder.": float(encoder.get("lr_scale", 1.0))} if self.mode == "finetune" else {}
        layers = self.encoder.config.num_layers + 1 if self.encoder is not None else 1
        dim = self.encoder.config.hidden_size if self.encoder is not None else feature_dim
        if self.encoder is None:
            featurizer = "last"
        self.heads = nn.ModuleDict({t.name: TaskHead(t, layers, dim, featurizer, frame_layer, pooling, head,
                                                     head_hidden, head_dropout) for t in self.tasks})
        # Learned log-variances of Kendall et al.'s uncertainty weighting.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks))) if loss_weighting == "uncertainty" else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.mode == "frozen":
            self.encoder.eval()  # a frozen encoder never uses dropout
        return self

    def represent(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Hidden states of every layer (the raw features alone for the baseline) and the valid-token mask."""
        if self.encoder is None:
            return (batch.features,), padding_mask(batch.lengths, batch.features.shape[1])
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.mode != "frozen"):
            out = self.encoder(batch.features, batch.lengths)
        return out.hidden_states, padding_mask(out.lengths, out.hidden_states[0].shape[1])

    def outputs(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """task -> (outputs, targets) over the clips of ``batch`` that carry the task's label."""
        hidden, valid = self.represent(batch)
        result = {}
        for task in self.tasks:
            present = batch.present.get(task.name)
            if present is None or not present.any():
                continue
            rows = present.nonzero().squeeze(1)
            states = tuple(h[rows] for h in hidden)
            result[task.name] = (self.heads[task.name](states, valid[rows]), batch.labels[task.name][rows])
        return result

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> StepOutput:
        total = torch.zeros((), device=batch.features.device)
        logs = {}
        outputs = self.outputs(batch)
        for i, task in enumerate(self.tasks):
            if task.name not in outputs:
                continue
            loss = task_loss(task, *outputs[task.name])
            logs[f"{task.name}_loss"] = loss.detach()
            if self.loss_weighting == "uncertainty":
                total = total + torch.exp(-self.log_vars[i]) * loss + self.log_vars[i]
            else:
                total = total + (task.weight if self.loss_weighting == "fixed" else 1.0) * loss
        return StepOutput(total, torch.ones((), device=total.device), logs)

    @torch.no_grad()
    def eval_batch(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        result = {}
        for name, (output, target) in self.outputs(batch).items():
            result[f"{name}/output"] = output.float()
            result[f"{name}/target"] = target.float()
        return result

    def eval_metrics(self, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return task_metrics(self.tasks, state)

    def figures(self, state: Mapping[str, torch.Tensor]) -> dict:
        return task_figures(self.tasks, state)


def task_metrics(tasks: list[Task], state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-task metrics (``task/metric``) from gathered ``task/output`` and ``task/target`` arrays, each task's
    loss, and ``score``: the mean of the tasks' primary metrics."""
    results, primary = {}, []
    for task in tasks:
        if f"{task.name}/output" not in state:
            continue
        output, target = state[f"{task.name}/output"], state[f"{task.name}/target"]
        results[f"{task.name}/loss"] = task_loss(
            task, output, target.long() if task.type == "multiclass" else target).item()
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
    from m3bert import figures

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
