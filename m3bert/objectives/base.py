"""The contract between the training loop and what it trains.

The trainer (:mod:`m3bert.training.trainer`) builds ``cfg.objective`` with Hydra and relies on exactly the hooks of
:class:`Objective` below, nothing else: a new pre-training or downstream objective subclasses it, implements
``forward``, ``eval_batch`` and ``eval_metrics``, and overrides the optional hooks it needs.

Shapes: a :class:`m3bert.data.Batch` carries ``features`` (batch, frames, dim), ``lengths`` (batch,) valid frames,
and for labelled data ``labels`` / ``present`` dicts keyed by task name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import matplotlib.figure
import torch
from torch import nn

from m3bert.features import Normalization


class StepOutput(NamedTuple):
    """What :meth:`Objective.forward` returns for one micro-batch.

    The loss the optimiser minimises is ``sum(loss_sum) / sum(count)``, both summed over the processes of a
    data-parallel run, so N processes step exactly like one with N times the batch. ``count`` is how many terms
    ``loss_sum`` adds up: masked positions for a per-position loss, 1 for a loss that is already a batch mean.
    """

    loss_sum: torch.Tensor  # scalar
    count: torch.Tensor  # scalar, >= 0
    # Extra scalars to log, each already averaged within the batch. A key ``name`` is logged as ``train/name``;
    # ``task/name`` as ``task/train/name``. A key may be missing from some batches (a task with no clip in it).
    logs: dict[str, torch.Tensor]


class Objective(nn.Module):
    """Base class of everything the trainer trains. Parameters and buffers are the module's own."""

    #: DDP must search for parameters that got no gradient (a multi-task batch may hold no clip of some task).
    has_unused_parameters: bool = False
    #: The crop the training split must use (one of m3bert.data.manifest.CROPS), or None for the dataset's own:
    #: an objective that caches per-crop results asks for ``windows``, a finite set of crops per clip.
    train_crop: str | None = None
    #: The input normalisation every split must use, or None for the dataset's configured one: an objective built
    #: on a pre-trained encoder hands down the one the encoder learned on (with its statistics), so that its
    #: datasets never load the model to learn it. The trainer builds each split with ``normalization=`` its record
    #: (``Normalization.to_dict``), so such an objective's dataset configs take that argument.
    input_normalization: Normalization | None = None

    @property
    def lr_scales(self) -> dict[str, float]:
        """``{parameter-name prefix: factor}`` scaling the base learning rate (a fine-tuned encoder learns slower
        than fresh heads); empty for one rate everywhere."""
        return {}

    def forward(self, batch, generator: torch.Generator | None) -> StepOutput:
        """The training loss of one micro-batch; ``generator`` (on the batch's device) drives any randomness of
        the objective itself (masking), so that it is saved and restored with the run."""
        raise NotImplementedError

    def eval_batch(self, batch, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Per-batch evaluation outputs. Every value's first dimension is concatenated over all batches and
        processes before :meth:`eval_metrics` sees them (so sums are (1,) tensors, per-clip outputs (clips, ...))."""
        raise NotImplementedError

    def eval_metrics(self, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics from the concatenated :meth:`eval_batch` outputs. A key ``metric`` is reported as
        ``<split>/metric``, ``task/metric`` as ``task/<split>/metric``."""
        raise NotImplementedError

    def example_figures(self, batch, generator: torch.Generator | None) -> dict[str, matplotlib.figure.Figure]:
        """Diagnostic figures of one clip during training (``trainer.image_every``), keyed by name."""
        return {}

    def eval_figures(self, state: Mapping[str, torch.Tensor]) -> dict[str, matplotlib.figure.Figure]:
        """Figures of a whole split's :meth:`eval_batch` outputs (confusion matrices, ...), keyed like metrics."""
        return {}
