"""Multi-task fine-tuning: an encoder (frozen, fine-tuned, from scratch, or none at all) shared by per-task heads."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from m3bert.data import Batch
from m3bert.inference.pretrained import load_pretrained
from m3bert.models import M3BERT, M3BERTConfig
from m3bert.models.encoder import padding_mask
from m3bert.objectives.base import Objective, StepOutput
from m3bert.objectives.state_cache import StateCache
from m3bert.tasks.heads import TaskHead, task_figures, task_loss, task_metrics
from m3bert.tasks.task import resolve_task

ENCODER_MODES = ("frozen", "finetune", "scratch", "baseline")


class MultiTaskModel(Objective):
    """forward(batch, generator) -> StepOutput: the weighted sum of each task's mean loss over the clips that carry
    its label (a clip without a task's label contributes nothing to that task)."""

    has_unused_parameters = True  # a batch may hold no clip of some task

    def __init__(
        self,
        tasks: Mapping[str, Mapping],
        model: Mapping,
        encoder: Mapping,
        feature_dim: int,
        featurizer: str | int = "weighted_sum",
        frame_layer: bool = True,
        pooling: str = "mean",
        head: str = "mlp",
        head_hidden: int = 512,
        head_dropout: float = 0.2,
        loss_weighting: str = "uniform",
    ):
        super().__init__()
        self.tasks = [resolve_task(name, spec) for name, spec in tasks.items()]
        self.mode = encoder["mode"]
        if self.mode not in ENCODER_MODES:
            raise ValueError(f"encoder.mode must be one of {ENCODER_MODES}, got {self.mode!r}")
        if loss_weighting not in ("uniform", "fixed", "uncertainty"):
            raise ValueError(f"loss_weighting must be uniform, fixed or uncertainty, got {loss_weighting!r}")
        self.loss_weighting = loss_weighting
        # The checkpoint is read once, here: its encoder for the modes that use it, and for every mode the input
        # normalisation it was trained on, which the trainer hands to each split, so that all modes read the same
        # inputs.
        checkpoint = encoder.get("checkpoint")
        pretrained = load_pretrained(checkpoint, key="encoder.checkpoint") if checkpoint else None
        self.input_normalization = pretrained.front_end.normalization if pretrained is not None else None
        if self.mode in ("frozen", "finetune"):
            if pretrained is None:
                raise ValueError(f"encoder.mode={self.mode} needs encoder.checkpoint=<pre-training run folder or .pt>")
            self.encoder = pretrained.encoder
        elif self.mode == "scratch":
            self.encoder = M3BERT(M3BERTConfig(**model))
        else:
            self.encoder = None
        if self.encoder is not None and self.encoder.config.input_dim != feature_dim:
            raise ValueError(
                f"the encoder takes {self.encoder.config.input_dim}-dim features but the task data has "
                f"{feature_dim} (dataset.feature_dim)"
            )
        if self.mode == "frozen":
            self.encoder.requires_grad_(False)
        # A frozen encoder's states of each training crop are computed once (see StateCache); other modes train
        # the encoder, or have none, and ignore the option.
        self.cache = (
            StateCache(encoder.get("cache_gb", 4.0)) if self.mode == "frozen" and encoder.get("cache_states") else None
        )
        self.train_crop = "windows" if self.cache is not None else None
        self._lr_scales = {"encoder.": float(encoder.get("lr_scale", 1.0))} if self.mode == "finetune" else {}
        layers = self.encoder.config.num_layers + 1 if self.encoder is not None else 1
        dim = self.encoder.config.hidden_size if self.encoder is not None else feature_dim
        if self.encoder is None:
            featurizer = "last"
        self.heads = nn.ModuleDict(
            {
                t.name: TaskHead(t, layers, dim, featurizer, frame_layer, pooling, head, head_hidden, head_dropout)
                for t in self.tasks
            }
        )
        # Learned log-variances of Kendall et al.'s uncertainty weighting.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks))) if loss_weighting == "uncertainty" else None

    @property
    def lr_scales(self) -> dict[str, float]:
        return self._lr_scales

    def train(self, mode: bool = True):
        super().train(mode)
        if self.mode == "frozen":
            self.encoder.eval()  # a frozen encoder never uses dropout
        return self

    def represent(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Hidden states of every layer (the raw features alone for the baseline) and the valid-token mask."""
        if self.encoder is None:
            return (batch.features,), padding_mask(batch.lengths, batch.features.shape[1])
        if self.cache is not None and self.training:
            hidden, lengths = self.cache.states(self.encoder, batch)
            return hidden, padding_mask(lengths, hidden[0].shape[1])
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
            logs[f"{task.name}/loss"] = loss.detach()
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

    def eval_figures(self, state: Mapping[str, torch.Tensor]) -> dict:
        return task_figures(self.tasks, state)
