"""Discrete targets of masked tokens: BEST-RQ's random-projection quantiser and the head that predicts its codes.

BEST-RQ (Chiu et al. 2022, "Self-supervised learning with random-projection quantizer for speech recognition"):
each token's input frames are projected by a frozen random matrix and assigned the nearest of a frozen random
codebook's vectors by cosine (both sides l2-normalised); the encoder learns to predict the code of masked tokens
with a softmax. Nothing of the quantiser trains, so its targets cost one matrix product; several codebooks (each
with its own projection) give several independent targets per token.

Shapes: frames (batch, frames, dim) at the feature rate; tokens (batch, tokens, dim * downsample) after
:func:`m3bert.models.encoder.stack_frames`; codes (batch, tokens, codebooks) long.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from m3bert.models.encoder import stack_frames


def masked_tokens(mask: torch.Tensor, lengths: torch.Tensor, downsample: int) -> torch.Tensor:
    """(batch, tokens) bool: the tokens holding a masked position of ``mask`` (batch, frames, channels).

    A token counts as masked when any of its frames has a masked channel, so with frame spans a token is a target
    as soon as the span reaches it; channel bands cover every frame, so with them every valid token is a target.
    """
    frames = mask.any(-1, keepdim=True).float()
    return stack_frames(frames, lengths, downsample)[0].any(-1)


def check_columns(columns, width: int, key: str) -> tuple[int, int]:
    """``columns`` ([start, stop) of the input frames, or None for all ``width``) as a checked pair."""
    if columns is None:
        return 0, width
    start, stop = (int(c) for c in columns)
    if not 0 <= start < stop <= width:
        raise ValueError(f"{key}={list(columns)}: must be [start, stop) inside the {width} input columns")
    return start, stop


class RandomProjectionQuantizer(nn.Module):
    """forward(tokens (batch, tokens, input_dim)) -> codes (batch, tokens, num_codebooks), long.

    The projections (Xavier-uniform) and codebooks (standard normal, l2-normalised) are drawn from ``seed`` alone,
    so every process of a run draws the same, and are buffers: saved in checkpoints, never trained.
    """

    def __init__(self, input_dim: int, num_codebooks: int, codebook_size: int, codebook_dim: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        bound = math.sqrt(6.0 / (input_dim + codebook_dim))
        projection = (torch.rand(num_codebooks, input_dim, codebook_dim, generator=generator) * 2 - 1) * bound
        codebooks = torch.randn(num_codebooks, codebook_size, codebook_dim, generator=generator)
        self.register_buffer("projection", projection)
        self.register_buffer("codebooks", F.normalize(codebooks, dim=-1))

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # In float32 whatever the autocast: bf16 rounding would move tokens near a boundary to another code.
        with torch.autocast(tokens.device.type, enabled=False):
            projected = F.normalize(torch.einsum("btd,kdc->btkc", tokens.float(), self.projection), dim=-1)
            return torch.einsum("btkc,knc->btkn", projected, self.codebooks).argmax(-1)


class CodeLoss(NamedTuple):
    loss_sum: torch.Tensor  # scalar: cross-entropy summed over masked tokens and codebooks
    count: torch.Tensor  # scalar: masked tokens x codebooks
    correct: torch.Tensor  # scalar: how many of those the head's top guess got right
    histogram: torch.Tensor  # (codebooks, codebook_size): how often each code is a target


class CodePrediction(nn.Module):
    """The codes of columns [start, stop) of the input frames as targets, and a linear head predicting them.

    loss(hidden (batch, tokens, hidden), features (batch, frames, dim), lengths (batch,), targets (batch, tokens)
    bool) -> :class:`CodeLoss` over the target tokens.
    """

    def __init__(
        self,
        hidden_size: int,
        columns: tuple[int, int],
        downsample: int,
        num_codebooks: int = 1,
        codebook_size: int = 1024,
        codebook_dim: int = 16,
        seed: int = 0,
        key: str = "objective",
    ):
        super().__init__()
        for name, value in (
            ("num_codebooks", num_codebooks),
            ("codebook_size", codebook_size),
            ("codebook_dim", codebook_dim),
        ):
            if value < 1:
                raise ValueError(f"{key}.{name}={value}: must be >= 1")
        self.columns, self.downsample = columns, downsample
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        width = (columns[1] - columns[0]) * downsample
        self.quantizer = RandomProjectionQuantizer(width, num_codebooks, codebook_size, codebook_dim, seed)
        self.head = nn.Linear(hidden_size, num_codebooks * codebook_size)

    def codes(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, codebooks): the codes of the (unmasked) input frames, stacked to the token rate."""
        start, stop = self.columns
        return self.quantizer(stack_frames(features[..., start:stop], lengths, self.downsample)[0])

    def loss(
        self, hidden: torch.Tensor, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> CodeLoss:
        codes = self.codes(features, lengths)[targets]  # (targets, codebooks)
        logits = self.head(hidden[targets]).float().view(-1, self.num_codebooks, self.codebook_size)
        loss_sum = F.cross_entropy(logits.transpose(1, 2), codes, reduction="sum")
        correct = (logits.argmax(-1) == codes).sum()
        offsets = torch.arange(self.num_codebooks, device=codes.device) * self.codebook_size
        histogram = torch.bincount((codes + offsets).flatten(), minlength=self.num_codebooks * self.codebook_size)
        count = torch.tensor(codes.numel(), device=codes.device)
        return CodeLoss(loss_sum, count, correct, histogram.view(self.num_codebooks, self.codebook_size))


def code_statistics(histogram: torch.Tensor) -> dict[str, torch.Tensor]:
    """Of the targets' code counts (codebooks, codebook_size): ``code_usage``, the share of codes that occur, and
    ``code_perplexity``, exp of the entropy of their distribution (the codebook size if all are equally used),
    each averaged over codebooks. A quantiser whose targets collapse onto few codes shows it here."""
    histogram = histogram.float()
    p = histogram / histogram.sum(-1, keepdim=True).clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return {"code_usage": (histogram > 0).float().mean(), "code_perplexity": entropy.exp().mean()}
