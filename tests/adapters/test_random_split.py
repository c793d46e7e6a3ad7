from collections import Counter
from pathlib import Path

import pytest

from m3bert.adapters.base import Track
from m3bert.adapters.splits import allocate, random_split, split_option


def make(n_per_class: dict[str, int]) -> list[Track]:
    return [
        Track(f"{label}/{i:03d}", Path(f"{label}/{i:03d}.wav"), None, {"genre": label})
        for label, n in n_per_class.items()
        for i in range(n)
    ]


def test_allocate_adds_up_and_follows_fractions():
    assert allocate(100, (0.8, 0.1, 0.1)) == [80, 10, 10]
    assert allocate(7, (0.8, 0.1, 0.1)) == [5, 1, 1]  # largest remainders: 0.7, 0.7 beat 0.6
    assert allocate(1, (0.8, 0.1, 0.1)) == [1, 0, 0]
    for n in range(30):
        assert sum(allocate(n, (0.7, 0.15, 0.15))) == n


def test_stratified_split_keeps_each_class_share():
    tracks = random_split(make({"rock": 50, "jazz": 30, "pop": 20}), (0.8, 0.1, 0.1), seed=3, stratify="genre")
    counts = Counter((t.labels["genre"], t.split) for t in tracks)
    assert counts[("rock", "train")] == 40 and counts[("rock", "valid")] == 5 and counts[("rock", "test")] == 5
    assert counts[("jazz", "train")] == 24 and counts[("jazz", "valid")] == 3 and counts[("jazz", "test")] == 3
    assert counts[("pop", "train")] == 16 and counts[("pop", "valid")] == 2 and counts[("pop", "test")] == 2
    assert [t.track_id for t in tracks] == sorted(t.track_id for t in tracks)


def test_split_is_deterministic_and_independent_of_input_order():
    tracks = make({"rock": 40, "jazz": 40})
    first = random_split(tracks, seed=7, stratify="genre")
    again = random_split(list(reversed(tracks)), seed=7, stratify="genre")
    assert [(t.track_id, t.split) for t in first] == [(t.track_id, t.split) for t in again]
    other_seed = random_split(tracks, seed=8, stratify="genre")
    assert [t.split for t in first] != [t.split for t in other_seed]


def test_adding_a_class_leaves_the_others_unchanged():
    before = {t.track_id: t.split for t in random_split(make({"rock": 30}), seed=1, stratify="genre")}
    after = {t.track_id: t.split for t in random_split(make({"rock": 30, "jazz": 10}), seed=1, stratify="genre")}
    assert all(after[i] == split for i, split in before.items())


def test_unstratified_split_and_bad_arguments():
    tracks = random_split(make({"a": 10}), (0.6, 0.2, 0.2), seed=0)
    assert Counter(t.split for t in tracks) == {"train": 6, "valid": 2, "test": 2}
    with pytest.raises(ValueError, match="sum"):
        random_split(make({"a": 3}), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="twice"):
        random_split(make({"a": 2}) * 2)
    with pytest.raises(ValueError, match="'random' or None"):
        split_option(make({"a": 2}), "official", (0.8, 0.1, 0.1), 0, None, "demo")
    assert split_option(make({"a": 2}), None, (0.8, 0.1, 0.1), 0, None, "demo")[0].split is None
