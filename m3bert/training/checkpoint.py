"""Moved (issue 24): the checkpoint format lives in :mod:`m3bert.common.checkpoints`, the random streams in
:mod:`m3bert.training.seeding`. These names stay importable from here for code written against the old path while
the branches that use it merge; import from the new homes, and delete this module once nothing imports it."""

from m3bert.common.checkpoints import (  # noqa: F401
    CORRUPT_SUFFIX,
    TRAINING_KEYS,
    CheckpointError,
    find_checkpoint,
    load,
    prune,
    save,
    step_checkpoints,
    torch,
)
from m3bert.common.checkpoints import set_aside_corrupt as set_aside  # noqa: F401
from m3bert.training.seeding import rng_state, seed_everything, set_rng_state  # noqa: F401
