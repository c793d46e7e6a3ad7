"""Whole-training-state checkpoints, written atomically, and the run folder's bookkeeping files."""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``: a crash
    mid-write never leaves a truncated file or loses the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file private (0600); give it the permissions an ordinary new file gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def write_json(data: dict, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=2, sort_keys=True).encode()))


def step_checkpoints(folder: Path) -> list[Path]:
    """``step_*.pt`` files in ``folder``, oldest step first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder: Path, keep: int) -> None:
    for old in step_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        # Our own checkpoints hold RNG states and config dicts, so the full unpickler is needed.
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError) as err:
        raise RuntimeError(f"{path}: cannot read checkpoint ({err}); delete it to fall back to an older one") from err


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
