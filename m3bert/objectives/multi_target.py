"""Several targets of the masked tokens at once, MERT-style (Li et al. 2023, "MERT: Acoustic Music Understanding
Model with Large-Scale Self-supervised Training"), on M3BERT's encoder.

MERT predicts an acoustic teacher's discrete codes and reconstructs the CQT of masked frames from one encoder. Here
each target is a block of the input features (named by the feature set's blocks in the config, never by number)
with either kind of head: ``codes`` (BEST-RQ's random-projection codes, :mod:`m3bert.objectives.codes`) or
``reconstruction`` (M3BERT's Huber / L1 restoration, :mod:`m3bert.objectives.reconstruction`), and a loss weight.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from m3bert.data import Batch
from m3bert.masking import Masker
from m3bert.models.encoder import M3BERT, M3BERTConfig
from m3bert.objectives.base import Objective, StepOutput
from m3bert.objectives.codes import CodePrediction, check_columns, masked_tokens
from m3bert.objectives.reconstruction import LOSSES, ReconstructionHead, reconstruction_error

KINDS = ("codes", "reconstruction")
CODE_KEYS = ("num_codebooks", "codebook_size", "codebook_dim")


class MultiTarget(Objective):
    """Encoder + one head per target, all on the masked tokens of one masking.

    forward(batch, generator) -> StepOutput: the weighted sum of each target's mean loss (count 1); logs
    ``<target>_loss`` for every target and ``<target>_accuracy`` for code targets.

    ``targets``: name -> ``{kind: codes | reconstruction, columns: [start, stop), weight: float}``, plus
    ``num_codebooks`` / ``codebook_size`` / ``codebook_dim`` for codes and ``loss`` (huber | l1) for reconstruction.
    """

    def __init__(
        self,
        model: M3BERTConfig | Mapping,
        masker: Masker,
        targets: Mapping[str, Mapping],
        huber_delta: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        model = M3BERTConfig.of(model)
        if not targets:
            raise ValueError("objective.targets is empty; name at least one target (see conf/objective/multi_target)")
        self.encoder = M3BERT(model)
        self.masker, self.huber_delta = masker, huber_delta
        self.heads = nn.ModuleDict()
        self.specs: dict[str, dict] = {}
        for i, (name, spec) in enumerate(targets.items()):
            key = f"objective.targets.{name}"
            spec = dict(spec)
            kind = spec.pop("kind", None)
            if kind not in KINDS:
                raise ValueError(f"{key}.kind={kind}: must be one of {', '.join(KINDS)}")
            columns = check_columns(spec.pop("columns", None), model.input_dim, f"{key}.columns")
            weight = float(spec.pop("weight", 1.0))
            if weight < 0:
                raise ValueError(f"{key}.weight={weight}: must be >= 0")
            if kind == "codes":
                sizes = {k: int(spec.pop(k)) for k in CODE_KEYS if k in spec}
                # Each target its own quantiser: seeds apart, so two targets of one block still differ.
                self.heads[name] = CodePrediction(
                    model.hidden_size, columns, model.downsample, **sizes, seed=seed * len(targets) + i, key=key
                )
                loss = None
            else:
                loss = spec.pop("loss", "huber")
                if loss not in LOSSES:
                    raise ValueError(f"{key}.loss={loss}: must be one of {', '.join(LOSSES)}")
                self.heads[name] = ReconstructionHead(model, output_dim=columns[1] - columns[0])
            if spec:
                raise ValueError(f"{key}: unknown keys {sorted(spec)} for a {kind} target")
            self.specs[name] = {"kind": kind, "columns": columns, "weight": weight, "loss": loss}

    def losses(self, batch: Batch, generator: torch.Generator) -> dict[str, tuple[torch.Tensor, ...]]:
        """target -> (loss_sum, count) for reconstruction, (loss_sum, count, correct) for codes; scalars."""
        features, lengths = batch.features, batch.lengths
        masked = self.masker(features, lengths, generator)
        hidden = self.encoder(masked.inputs, lengths).last_hidden_state
        tokens = masked_tokens(masked.mask, lengths, self.encoder.config.downsample)
        out = {}
        for name, spec in self.specs.items():
            head = self.heads[name]
            if spec["kind"] == "codes":
                codes = head.loss(hidden, features, lengths, tokens)
                out[name] = (codes.loss_sum, codes.count, codes.correct)
            else:
                start, stop = spec["columns"]
                error = reconstruction_error(
                    head(hidden, features.shape[1]), features[..., start:stop], spec["loss"], self.huber_delta
                )
                mask = masked.mask[..., start:stop]
                out[name] = ((error * mask).sum(), mask.sum())
        return out

    def forward(self, batch: Batch, generator: torch.Generator) -> StepOutput:
        total = torch.zeros((), device=batch.features.device)
        logs = {}
        for name, (loss_sum, count, *correct) in self.losses(batch, generator).items():
            loss = loss_sum / count.clamp_min(1)
            total = total + self.specs[name]["weight"] * loss
            logs[f"{name}_loss"] = loss.detach()
            if correct:
                logs[f"{name}_accuracy"] = correct[0] / count.clamp_min(1)
        return StepOutput(total, torch.ones((), device=total.device), logs)

    @torch.no_grad()
    def eval_batch(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        result = {}
        for name, values in self.losses(batch, generator).items():
            for part, value in zip(("loss_sum", "count", "correct"), values):
                result[f"{name}_{part}"] = value.float().reshape(1)
        return result

    def eval_metrics(self, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """``<target>_loss`` (and ``<target>_accuracy``) over the split, and ``loss``, their weighted sum."""
        metrics, total = {}, 0.0
        for name, spec in self.specs.items():
            count = state[f"{name}_count"].sum().clamp_min(1)
            metrics[f"{name}_loss"] = (state[f"{name}_loss_sum"].sum() / count).item()
            total += spec["weight"] * metrics[f"{name}_loss"]
            if f"{name}_correct" in state:
                metrics[f"{name}_accuracy"] = (state[f"{name}_correct"].sum() / count).item()
        return {"loss": total, **metrics}
