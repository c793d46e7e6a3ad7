"""The checkpoint format: whole-training-state files written atomically, found in a run folder, read safely, and
the records in them that a loader of the trained encoder needs.

A checkpoint is a plain dict (``torch.save``) written by :meth:`m3bert.training.trainer.Trainer.state_dict`:
:data:`TRAINING_KEYS` plus ``model_config`` (the encoder's ``M3BERTConfig`` fields), ``normalization`` (the input
normalisation the model learned on) and ``config`` (the resolved run config). The objective's parameters sit under
``model``; a pre-trained encoder's under the ``encoder.`` prefix. Training writes and resumes with these functions;
inference (:mod:`m3bert.inference.pretrained`) and analysis read with them, so neither depends on the trainer.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from m3bert.common.errors import UserError
from m3bert.common.files import atomic_write

STEP_FILE = re.compile(r"step_(\d+)\.pt$")
BEST_FILE = "best.pt"
CHECKPOINT_FOLDER = "checkpoints"  # inside a run folder
CORRUPT_SUFFIX = ".corrupt"
# What every checkpoint of the trainer holds (a resume needs them all).
TRAINING_KEYS = ("model", "optimizer", "scheduler", "step", "sampler", "rng", "mask_generator", "best")
ENCODER_PREFIX = "encoder."  # the objective's attribute holding the encoder
# Records the trainer writes for a loader of the encoder, beside ``normalization``: the features it trained on
# ({feature_set, sample_rate, hop_length}) and the frames per training crop (the natural window for long inputs).
FRONT_END = "front_end"
TRAINING_FRAMES = "training_frames"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a checkpoint at all."""


def save(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def step_checkpoints(folder: Path) -> list[Path]:
    """``step_*.pt`` files in ``folder``, oldest step first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder: Path, keep: int) -> None:
    for old in step_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


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


def set_aside_corrupt(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (kept for inspection, no longer found as a
    checkpoint); returns the new path."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}"), n + 1
    path.rename(target)
    return target


def named(path: Path, key: str | None) -> str:
    """``path`` as the user gave it: ``key=path`` when it came from a config key."""
    return f"{key}={path}" if key else str(path)


def is_run(path: Path) -> bool:
    """Whether ``path`` looks like a checkpoint file or a run folder holding checkpoints."""
    return path.is_file() or (path / CHECKPOINT_FOLDER).is_dir() or any(path.glob("*.pt"))


def find_checkpoint(path: str | Path, key: str | None = None) -> Path:
    """A checkpoint file, or the best (else the latest) checkpoint of a run folder (or of its checkpoint folder).

    Raises:
        FileNotFoundError: a folder without ``best.pt`` or ``step_*.pt``.
    """
    path = Path(path)
    if path.is_file():
        return path
    folder = path / CHECKPOINT_FOLDER if (path / CHECKPOINT_FOLDER).is_dir() else path
    if (folder / BEST_FILE).is_file():
        return folder / BEST_FILE
    found = step_checkpoints(folder) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{named(path, key)}: no checkpoint there (expected an exported model folder, a .pt "
            "file or a pre-training run folder with checkpoints/best.pt or checkpoints/step_*.pt)"
        )
    return found[-1]


# ------------------------------------------------------------------------------- what a model loader reads
def load_encoder_checkpoint(path: str | Path, key: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint that :func:`find_checkpoint` picks for ``path``, read, and checked to hold an encoder.

    Returns:
        (the file read, its state).
    Raises:
        CheckpointError: unreadable (named by ``key=path`` where a config key gave it).
        ValueError: a checkpoint without the model's weights or architecture.
    """
    path = Path(path)
    file = find_checkpoint(path, key)
    try:
        state = load(file)  # tensors and plain values only (weights_only): a checkpoint runs no code
    except CheckpointError as err:
        if key is None:
            raise
        reason = str(err).removeprefix(f"{file}: ") if file == path else str(err)
        raise CheckpointError(f"{key}={path}: {reason}") from err
    if "model_config" not in state or "model" not in state:
        raise ValueError(
            f"{named(path, key) + ': ' if key else ''}{file}: not an m3bert pre-training checkpoint (no model / "
            "model_config entries); give a pre-training run folder, its checkpoint, or an exported model folder"
        )
    return file, state


def encoder_config(state: dict[str, Any]) -> dict[str, Any]:
    """The encoder's architecture (``M3BERTConfig`` keyword arguments)."""
    return dict(state["model_config"])


def encoder_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder's own weights (its ``state_dict``), without the objective's heads."""
    return {k.removeprefix(ENCODER_PREFIX): v for k, v in state["model"].items() if k.startswith(ENCODER_PREFIX)}


def front_end_record(features: Any) -> dict[str, Any] | None:
    """The :data:`FRONT_END` record of a run's ``features`` config (a mapping with ``name`` and, where given,
    ``sample_rate`` and ``hop_length``); None where it names no feature set."""
    if not features or not features.get("name"):
        return None
    record = {"feature_set": str(features["name"])}
    record.update({key: int(features[key]) for key in ("sample_rate", "hop_length") if key in features})
    return record


def recorded_front_end(state: dict[str, Any]) -> dict[str, Any]:
    """The features the run trained on: ``feature_set``, and where given ``sample_rate`` (Hz) and ``hop_length``
    (samples), from the :data:`FRONT_END` record (checkpoints from before it: the run's config); empty for a run
    that names no feature set."""
    record = state.get(FRONT_END) or front_end_record((state.get("config") or {}).get("features"))
    return dict(record or {})


def recorded_normalization(state: dict[str, Any]) -> dict[str, Any] | None:
    """The input normalisation the model learned on (``Normalization.to_dict``); None for checkpoints from before
    it was recorded (per file)."""
    return state.get("normalization")


def training_frames(state: dict[str, Any]) -> int | None:
    """Frames per training crop (the :data:`TRAINING_FRAMES` record; checkpoints from before it: the run's config),
    or None where neither says (whole clips)."""
    if TRAINING_FRAMES in state:
        return state[TRAINING_FRAMES]
    frames = ((state.get("config") or {}).get("dataset") or {}).get("max_frames")
    return int(frames) if frames else None
