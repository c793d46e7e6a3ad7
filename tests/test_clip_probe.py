"""The clip-level probe: grouped folds, and an embedding that carries the label beats one that doesn't."""

import numpy as np
import pandas as pd
import pytest

from m3bert.tasks.clip_probe import FEATURES_BASELINE, clip_probe, feature_statistics, grouped_folds, verdict

pytest.importorskip("sklearn")


def test_grouped_folds_never_split_a_group():
    groups = np.repeat(np.arange(6), 3).astype(str)
    folds = grouped_folds(groups, 5)
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(18))
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_folds(np.array(["a", "a"]), 5)


def test_an_informative_embedding_beats_noise_and_the_verdict_says_so(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    label = np.array(["x", "y", "z"])[np.arange(n) % 3]
    manifest = pd.DataFrame({"style": label, "work": (np.arange(n) // 3).astype(str), "file_path": ""})
    manifest.loc[0, "style"] = None  # an unlabelled clip is left out
    informative = rng.standard_normal((n, 4)) + 3.0 * (np.arange(n) % 3)[:, None]
    noise = rng.standard_normal((n, 4))
    table = clip_probe(manifest, {FEATURES_BASELINE: noise, "good": informative}, ["style"])
    scores = table.set_index("embedding")["accuracy_mean"]
    assert scores["good"] > 0.9 and scores[FEATURES_BASELINE] < 0.6
    assert (table["clips"] == n - 1).all() and (table["folds"] == 5).all()
    result = verdict(table, "good")
    assert result["embedding_ahead"].tolist() == [True]
    assert result["difference"].iloc[0] == pytest.approx(scores["good"] - scores[FEATURES_BASELINE])


def test_feature_statistics_read_prepares_clip_statistics(tmp_path):
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "a.stats.npy", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    stats = feature_statistics(pd.DataFrame({"file_path": ["features/a.npy"]}), tmp_path)
    np.testing.assert_array_equal(stats, [[1.0, 2.0, 3.0, 4.0]])
