"""Whole-training-state checkpoints (written atomically), the run's RNG streams, and seeding."""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m3bert.common.errors import UserError
from m3bert.common.files import atomic_write

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def save(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def step_checkpoints(folder: Path) -> list[Path]:
    """``step_*.pt`` files in ``folder``, oldest step first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder: Path, keep: int) -> None:
    for old in step_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a checkpoint at all."""


# What every checkpoint of :meth:`m3bert.training.trainer.Trainer.save` holds.
TRAINING_KEYS = ("model", "optimizer", "scheduler", "step", "sampler", "rng", "mask_generator", "best")
CORRUPT_SUFFIX = ".corrupt"


def load(path: Path, map_location: str | torch.device = "cpu", required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint written by :func:`save`. Only tensors and plain Python values are unpickled (``weights_only``),
    so loading a file of unknown origin runs no code.

    Raises:
        CheckpointError: ``path`` is empty, truncated or corrupt, not a dict, or lacks one of the ``required`` keys.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({_reason(err)}); it is empty, truncated or not a checkpoint: "
            "use another one"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not an m3bert checkpoint (a {type(state).__name__}, not a dict)")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not an m3bert training checkpoint (no {', '.join(missing)} entries); use one written by "
            "python -m m3bert.train"
        )
    return state


def _reason(err: BaseException) -> str:
    """The gist of a torch.load error: its first sentence (the weights-only unpickler's own complaint, not the
    page of advice around it, which suggests ``weights_only=False``)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    first = re.split(r"(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0]
    return f"{type(err).__name__}: {first}" if first else f"{type(err).__name__}, no data"


def set_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (kept for inspection, no longer found as a
    checkpoint); returns the new path."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}"), n + 1
    path.rename(target)
    return target


def rng_state() -> dict[str, Any]:
    """This process's random streams (Python, NumPy, torch CPU and CUDA) as tensors and plain values."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["name"], numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
