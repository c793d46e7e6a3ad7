"""Masked reconstruction: the M3BERT pre-training objective."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from m3bert.data import Batch
from m3bert.masking import MaskedInput, Masker
from m3bert.models.encoder import M3BERT, M3BERTConfig, unstack_frames
from m3bert.objectives.base import Objective, StepOutput

LOSSES = ("huber", "l1")


def reconstruction_error(prediction: torch.Tensor, target: torch.Tensor, loss: str, huber_delta: float) -> torch.Tensor:
    """Element-wise error (Huber or L1) of ``prediction`` against ``target``, both (batch, frames, dim), in float32."""
    if loss == "huber":
        return F.huber_loss(prediction.float(), target.float(), delta=huber_delta, reduction="none")
    return (prediction.float() - target.float()).abs()


class ReconstructionHead(nn.Module):
    """Linear, GELU, LayerNorm, Linear back to the input features: (batch, tokens, hidden) -> (batch, frames, dim),
    ``dim`` the encoder's input width, or ``output_dim`` for a head that restores some columns only."""

    def __init__(self, cfg: M3BERTConfig, output_dim: int | None = None):
        super().__init__()
        self.downsample = cfg.downsample
        self.net = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.hidden_size),
            nn.GELU(),
            nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps),
            nn.Linear(cfg.hidden_size, (output_dim or cfg.input_dim) * cfg.downsample),
        )

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        return unstack_frames(self.net(hidden), frames, self.downsample)


class MaskedReconstruction(Objective):
    """Encoder + reconstruction head trained to restore the features at masked positions.

    forward(batch, generator) -> StepOutput: the loss summed over masked positions of ``batch.features``
    (batch, frames, dim) (Huber by default, or L1), with their count.
    """

    def __init__(self, model: M3BERTConfig | Mapping, masker: Masker, loss: str = "huber", huber_delta: float = 1.0):
        super().__init__()
        model = M3BERTConfig.of(model)
        if loss not in LOSSES:
            raise ValueError(f"objective.loss must be huber or l1, got {loss!r}")
        self.encoder = M3BERT(model)
        self.head = ReconstructionHead(model)
        self.masker, self.loss, self.huber_delta = masker, loss, huber_delta

    def reconstruct(self, masked: MaskedInput, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(masked.inputs, lengths).last_hidden_state
        return self.head(hidden, masked.inputs.shape[1])

    def forward(self, batch: Batch, generator: torch.Generator) -> StepOutput:
        features, lengths = batch.features, batch.lengths
        masked = self.masker(features, lengths, generator)
        error = reconstruction_error(self.reconstruct(masked, lengths), features, self.loss, self.huber_delta)
        mask = masked.mask
        count = mask.sum()
        return StepOutput((error * mask).sum(), count, {"masked_fraction": count / mask.numel()})

    @torch.no_grad()
    def eval_batch(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-batch sums that :meth:`eval_metrics` combines over every batch and process."""
        out = self(batch, generator)
        return {"loss_sum": out.loss_sum.float().reshape(1), "count": out.count.float().reshape(1)}

    @staticmethod
    def eval_metrics(state: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"loss": (state["loss_sum"].sum() / state["count"].sum().clamp_min(1)).item()}

    def example_figures(self, batch: Batch, generator: torch.Generator) -> dict:
        from m3bert.common.figures import reconstruction_figure

        return {"train/reconstruction": reconstruction_figure(self.example(batch, generator))}

    @torch.no_grad()
    def example(self, batch: Batch, generator: torch.Generator) -> dict:
        """Original, masked input and reconstruction of the first clip, each (frames, dim), for diagnostic plots."""
        features, lengths = batch.features[:1], batch.lengths[:1]
        masked = self.masker(features, lengths, generator)
        prediction = self.reconstruct(masked, lengths)
        n = int(lengths[0])
        return {
            "original": features[0, :n].float().cpu(),
            "masked": masked.inputs[0, :n].float().cpu(),
            "reconstruction": prediction[0, :n].float().cpu(),
            "mask": masked.mask[0, :n].cpu(),
        }
