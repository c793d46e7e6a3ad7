"""Seeded random train/valid/test splits for datasets the publisher ships without one (GTZAN's random protocol,
Extended Ballroom, DEAM, RWC).

The split depends only on the track ids, their stratum label, the fractions and the seed: not on the order the
folder walk found the files, nor on the machine, nor on ``PYTHONHASHSEED``. Each stratum is shuffled by its own
generator, so adding a class to a dataset leaves the split of the other classes unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from m3bert.adapters.base import SPLITS, Track

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``fractions`` as a (train, valid, test) float tuple, or a ValueError saying what's wrong. Accepts any sequence,
    e.g. the ListConfig Hydra passes."""
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS) or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must be three non-negative numbers (train, valid, test) summing to 1, "
            f"got {list(fractions)}"
        )
    return values  # type: ignore[return-value]


def allocate(count: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``count`` items go to each split: floor of the exact share, the leftover items to the largest
    remainders (ties to the earlier split), so the counts always add up to ``count``."""
    exact = [count * f for f in fractions]
    counts = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return counts


def random_split(
    tracks: Iterable[Track], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0, stratify: str | None = None
) -> list[Track]:
    """Copies of ``tracks`` with ``split`` drawn at random, sorted by track id; any split they had is replaced.

    ``stratify``: a label name (e.g. ``"genre"``); each value of it is split in the given fractions on its own, so
    every class keeps its share in every split. Tracks without that label form one stratum of their own. A stratum
    too small to reach a split gives its tracks to the splits with the largest shares (a class of one track goes to
    ``train``).
    """
    fractions = check_fractions(fractions)
    strata: dict[str, list[Track]] = defaultdict(list)
    seen: set[str] = set()
    for track in sorted(tracks, key=lambda t: t.track_id):
        if track.track_id in seen:
            raise ValueError(f"random_split: track id {track.track_id!r} appears twice; ids must be unique")
        seen.add(track.track_id)
        key = "" if stratify is None else str(track.labels.get(stratify, ""))
        strata[key].append(track)

    out: list[Track] = []
    for key in sorted(strata):
        members = strata[key]
        # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and Python versions.
        random.Random(f"{seed}/{key}").shuffle(members)
        start = 0
        for split, count in zip(SPLITS, allocate(len(members), fractions), strict=True):
            out += [dataclasses.replace(track, split=split) for track in members[start : start + count]]
            start += count
    return sorted(out, key=lambda t: t.track_id)


def split_option(
    tracks: list[Track], split: str | None, fractions: Sequence[float], seed: int, stratify: str | None, dataset: str
) -> list[Track]:
    """The ``split`` option of an adapter for a dataset with no official split: ``"random"`` draws a seeded
    (stratified) split here; None leaves ``split`` unset, for pre-training or for the prepare step to draw one."""
    if split is None:
        return tracks
    if split == "random":
        return random_split(tracks, fractions, seed, stratify)
    raise ValueError(f"{dataset}: split must be 'random' or None (the dataset has no official split), got {split!r}")
