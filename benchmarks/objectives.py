"""Cost of a training step of each pre-training objective relative to masked reconstruction.

Every objective is built from its demo recipe (``pretrain_demo`` for the paper's reconstruction,
``pretrain_demo_<objective>`` for the others: the same m3bert_mini encoder, two frames a token, each recipe's own
masking) and trained on one batch of generated features of the recipe's shape (16 crops of 256 frames), steps
interleaved so that background load affects every objective alike. The step is the trainer's: forward under the
recipe's autocast, backward, AdamW.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

import torch
from hydra.utils import instantiate

from benchmarks.pretrain import _step
from m3bert.common.devices import cpu_has_native_bf16
from m3bert.data import Batch
from m3bert.reproduce import compose
from m3bert.training.trainer import resolve_precision

# objective -> its demo recipe; the first is the reference the others are measured against.
RECIPES = {
    "masked_reconstruction": "pretrain_demo",
    "bestrq": "pretrain_demo_bestrq",
    "multi_target": "pretrain_demo_multi_target",
    "contrastive": "pretrain_demo_contrastive",
}


def run(device: str = "cpu", steps: int = 30, precision: str = "auto", overrides: Sequence[str] = ()) -> dict:
    """Median seconds per step of each objective and its ratio to masked reconstruction's; ``overrides`` apply to
    every recipe (a smaller model or batch for a quick check)."""
    device = torch.device(device)
    chosen = resolve_precision(precision, device)
    models, optimizers, batch = {}, {}, None
    for name, recipe in RECIPES.items():
        cfg = compose("train", [f"+experiment={recipe}", *overrides])
        torch.manual_seed(0)
        models[name] = instantiate(cfg.objective, _convert_="all").to(device).train()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
        if batch is None:
            size, frames = cfg.trainer.batch_size, cfg.dataset.max_frames
            features = torch.randn(size, frames, cfg.model.input_dim, generator=torch.Generator().manual_seed(0))
            lengths = torch.full((size,), frames)
            batch = Batch(features, lengths, torch.arange(size)).to(device)
    generator = torch.Generator(device).manual_seed(0)
    times = {name: [] for name in models}
    for name in models:  # warm-up
        _step(models[name], optimizers[name], batch, generator, chosen.dtype)
    for _ in range(steps):
        for name in models:
            times[name].append(_step(models[name], optimizers[name], batch, generator, chosen.dtype))
    seconds = {name: median(t) for name, t in times.items()}
    reference = seconds["masked_reconstruction"]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "precision": chosen.name,
        "batch": list(batch.features.shape),
        "steps": steps,
        "seconds_per_step": seconds,
        "relative_to_reconstruction": {name: s / reference for name, s in seconds.items()},
        "recipes": RECIPES,
    }
