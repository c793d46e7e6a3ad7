"""A clip-level linear probe: does a clip embedding predict a label better than the features it starts from?

Every clip with a label is used; a logistic regression (on standardised inputs) is trained and scored in grouped
cross-validation, so clips of one group (the demo corpus's ``work``: all movements of a mass, all chorales of a
cantata) are never on both sides of a fold. The same folds score every embedding, so rows of one task compare.
The baseline embedding is the mean ⊕ std of the *unnormalised* features, read from the clip statistics that
``python -m m3bert.prepare`` stores beside each feature file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from m3bert.data import stats_path

FEATURES_BASELINE = "features mean+std (unnormalised)"


def feature_statistics(manifest: pd.DataFrame, root: str | Path) -> np.ndarray:
    """(clips, 2 dim): each clip's per-channel mean then std of its unnormalised features (prepare's statistics)."""
    root = Path(root)
    return np.stack([np.load(stats_path(root / path)).reshape(-1) for path in manifest["file_path"]])


def grouped_folds(groups: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of ``min(folds, groups)`` folds that keep each group on one side."""
    from sklearn.model_selection import GroupKFold

    count = min(folds, len(np.unique(groups)))
    if count < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {count}")
    return list(GroupKFold(n_splits=count).split(np.zeros(len(groups)), groups=groups))


def probe_accuracy(x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], c: float = 1.0) -> list:
    """Accuracy of a standardised logistic regression in each fold (classes seen in a fold's training part only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for train, test in folds:
        if len(np.unique(y[train])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x[train], y[train])
        scores.append(float((model.predict(x[test]) == y[test]).mean()))
    return scores


def clip_probe(
    manifest: pd.DataFrame,
    embeddings: Mapping[str, np.ndarray],
    labels: list[str],
    group_column: str = "work",
    folds: int = 5,
) -> pd.DataFrame:
    """One row per (label, embedding): accuracy mean and std over grouped folds.

    Args:
        manifest: one row per clip, with the ``labels`` columns (missing values: clip unlabelled) and ``group_column``
            (else ``track_id`` groups).
        embeddings: name -> (clips, dim) array, rows in ``manifest`` order.
    """
    group = group_column if group_column in manifest.columns else "track_id"
    rows = []
    for label in labels:
        keep = manifest[label].notna().to_numpy()
        y = manifest.loc[keep, label].astype(str).to_numpy()
        split = grouped_folds(manifest.loc[keep, group].astype(str).to_numpy(), folds)
        for name, x in embeddings.items():
            scores = probe_accuracy(np.asarray(x, dtype=np.float64)[keep], y, split)
            rows.append(
                {
                    "label": label,
                    "embedding": name,
                    "dim": int(x.shape[1]),
                    "clips": int(keep.sum()),
                    "folds": len(scores),
                    "accuracy_mean": float(np.mean(scores)) if scores else float("nan"),
                    "accuracy_std": float(np.std(scores)) if scores else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def verdict(table: pd.DataFrame, embedding: str, baseline: str = FEATURES_BASELINE) -> pd.DataFrame:
    """Per label: ``embedding``'s accuracy minus the baseline's, and whether it is ahead."""
    wide = table.pivot(index="label", columns="embedding", values="accuracy_mean")
    out = pd.DataFrame(
        {
            "label": wide.index,
            "embedding": embedding,
            "accuracy": wide[embedding].to_numpy(),
            "baseline_accuracy": wide[baseline].to_numpy(),
        }
    )
    out["difference"] = out["accuracy"] - out["baseline_accuracy"]
    out["embedding_ahead"] = out["difference"] > 0
    return out.reset_index(drop=True)
