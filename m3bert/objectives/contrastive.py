"""Clip-level contrastive learning on M3BERT's encoder: two views of a clip are positives, the other clips of the
batch negatives (InfoNCE / NT-Xent as in SimCLR, Chen et al. 2020; two segments of one recording as the views, as in
COLA, Saeed et al. 2021; heavily masked inputs as the augmentation, as in Myna, Yonay et al. 2025).

The loader yields one crop per clip per batch, so the two views are the two halves of each crop: time-disjoint
segments of one recording, which share its timbre, key and style but not its frames, each masked by the ``masking``
group on its own. Two maskings of one crop would share every unmasked frame, which an encoder can match without
learning anything about the music; halves cannot be matched that way.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from m3bert.data import Batch
from m3bert.masking import Masker
from m3bert.models.encoder import M3BERT, M3BERTConfig, padding_mask
from m3bert.models.pooling import check_pooling, masked_pool, pooled_dim
from m3bert.objectives.base import Objective, StepOutput


def halves(features: torch.Tensor, lengths: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The first and the second half of each clip's valid frames, each left-aligned as (features (batch,
    ceil(frames / 2), dim), lengths (batch,)); a clip of one frame gives that frame to both."""
    frames = features.shape[1]
    width = (frames + 1) // 2
    first = (lengths // 2).clamp_min(1)
    second = (lengths - first).clamp_min(1)
    offsets = (lengths - second)[:, None] + torch.arange(width, device=features.device)[None, :]
    index = offsets.clamp_max(frames - 1)[:, :, None].expand(-1, -1, features.shape[2])
    return (features[:, :width], first), (features.gather(1, index), second)


class ClipContrastive(Objective):
    """Encoder + projection head trained so that the two halves of a clip embed closer to each other than to any
    other half in the batch.

    forward(batch, generator) -> StepOutput: NT-Xent summed over the 2 x batch views (each view's positive is its
    clip's other half; the 2 x batch - 2 other views are its negatives), with their count; logs ``accuracy``, the
    share of views whose nearest other view is their positive. Negatives are the clips of each process's
    micro-batch, so a data-parallel run sees fewer negatives per view than one process with the whole batch.
    """

    def __init__(
        self,
        model: M3BERTConfig | Mapping,
        masker: Masker,
        temperature: float = 0.1,
        projection_dim: int = 128,
        pooling: str = "mean",
    ):
        super().__init__()
        model = M3BERTConfig.of(model)
        if temperature <= 0:
            raise ValueError(f"objective.temperature={temperature}: must be > 0")
        if projection_dim < 1:
            raise ValueError(f"objective.projection_dim={projection_dim}: must be >= 1")
        check_pooling(pooling)
        self.encoder = M3BERT(model)
        self.masker, self.temperature, self.pooling = masker, temperature, pooling
        width = pooled_dim(model.hidden_size, pooling)
        # SimCLR's head: the loss acts on its output, so the encoder below keeps what the views do not share.
        self.projection = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, projection_dim))

    def embed(self, features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(batch, projection_dim) l2-normalised projections of the masked views ``features`` (batch, frames, dim)."""
        masked = self.masker(features, lengths, generator)
        out = self.encoder(masked.inputs, lengths)
        hidden = out.last_hidden_state
        pooled = masked_pool(hidden, padding_mask(out.lengths, hidden.shape[1]), self.pooling)
        return F.normalize(self.projection(pooled).float(), dim=-1)

    def losses(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss_sum, count, correct) over the batch's 2 x batch views; scalars."""
        (first, first_lengths), (second, second_lengths) = halves(batch.features, batch.lengths)
        # Both views through the encoder as one batch of 2 x batch: one pass of larger matrix products.
        z = self.embed(torch.cat([first, second]), torch.cat([first_lengths, second_lengths]), generator)
        n = len(batch.features)
        similarity = (z @ z.T) / self.temperature
        similarity.fill_diagonal_(float("-inf"))  # a view is not its own negative
        positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        loss_sum = F.cross_entropy(similarity, positives, reduction="sum")
        correct = (similarity.argmax(1) == positives).sum()
        return loss_sum, torch.tensor(2 * n, device=z.device), correct

    def forward(self, batch: Batch, generator: torch.Generator) -> StepOutput:
        loss_sum, count, correct = self.losses(batch, generator)
        return StepOutput(loss_sum, count, {"accuracy": correct / count})

    @torch.no_grad()
    def eval_batch(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        loss_sum, count, correct = self.losses(batch, generator)
        return {
            "loss_sum": loss_sum.float().reshape(1),
            "count": count.float().reshape(1),
            "correct": correct.float().reshape(1),
        }

    @staticmethod
    def eval_metrics(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        count = state["count"].sum().clamp_min(1)
        return {
            "loss": (state["loss_sum"].sum() / count).item(),
            "accuracy": (state["correct"].sum() / count).item(),
        }
