"""BEST-RQ: predict the random-projection codes of masked tokens (Chiu et al. 2022), on M3BERT's encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from m3bert.data import Batch
from m3bert.masking import Masker
from m3bert.models.encoder import M3BERT, M3BERTConfig
from m3bert.objectives.base import Objective, StepOutput
from m3bert.objectives.codes import CodeLoss, CodePrediction, check_columns, code_statistics, masked_tokens


class BestRQ(Objective):
    """Encoder + linear head trained to predict, for every masked token, the codes a frozen random-projection
    quantiser gives its unmasked input frames (columns ``columns`` of them, stacked to the token rate).

    forward(batch, generator) -> StepOutput: cross-entropy summed over masked tokens and codebooks, with their
    count; logs the head's accuracy and the targets' codebook usage and perplexity (see :func:`code_statistics`).
    """

    def __init__(
        self,
        model: M3BERTConfig | Mapping,
        masker: Masker,
        num_codebooks: int = 1,
        codebook_size: int = 1024,
        codebook_dim: int = 16,
        columns: Sequence[int] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        model = M3BERTConfig.of(model)
        self.encoder = M3BERT(model)
        self.masker = masker
        self.codes = CodePrediction(
            model.hidden_size,
            check_columns(columns, model.input_dim, "objective.columns"),
            model.downsample,
            num_codebooks,
            codebook_size,
            codebook_dim,
            seed,
        )

    def losses(self, batch: Batch, generator: torch.Generator) -> tuple[CodeLoss, torch.Tensor]:
        """The code loss of one batch, and the share of its valid tokens that were targets (scalar)."""
        features, lengths = batch.features, batch.lengths
        masked = self.masker(features, lengths, generator)
        out = self.encoder(masked.inputs, lengths)
        targets = masked_tokens(masked.mask, lengths, self.encoder.config.downsample)
        share = targets.sum() / out.lengths.sum().clamp_min(1)
        return self.codes.loss(out.last_hidden_state, features, lengths, targets), share

    def forward(self, batch: Batch, generator: torch.Generator) -> StepOutput:
        out, share = self.losses(batch, generator)
        logs = {"accuracy": out.correct / out.count.clamp_min(1), "masked_tokens": share}
        return StepOutput(out.loss_sum, out.count, {**logs, **code_statistics(out.histogram)})

    @torch.no_grad()
    def eval_batch(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out, _ = self.losses(batch, generator)
        return {
            "loss_sum": out.loss_sum.float().reshape(1),
            "count": out.count.float().reshape(1),
            "correct": out.correct.float().reshape(1),
            "histogram": out.histogram[None],
        }

    @staticmethod
    def eval_metrics(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        count = state["count"].sum().clamp_min(1)
        stats = code_statistics(state["histogram"].sum(0))
        return {
            "loss": (state["loss_sum"].sum() / count).item(),
            "accuracy": (state["correct"].sum() / count).item(),
            **{name: value.item() for name, value in stats.items()},
        }
