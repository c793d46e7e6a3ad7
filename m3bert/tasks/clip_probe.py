"""The clip-level linear probe: does a clip embedding predict a label better than the features it starts from?

The one probe of the project, used by ``python -m m3bert.evaluate`` (every layer of a model against two floors) and
by the demo's last step. Every clip with a label is used. A linear model on standardised inputs (logistic regression
for a class label, scored by accuracy; ridge regression for a numeric one, scored by R²) is trained and scored in
grouped cross-validation, so clips of one group (a track's segments, the demo corpus's ``work``: all movements of a
mass) are never on both sides of a fold. The regularisation strength is chosen by an inner grouped cross-validation
on each outer fold's training part, and so is the member of a *choice* (e.g. the best layer): the test fold never
decides anything it is scored on. Every embedding is scored on the same folds, so rows of one label compare;
``repeats`` draws the folds again with other seeds.

The feature floor is the mean ⊕ std of the *unnormalised* features, read from the clip statistics that
``python -m m3bert.prepare`` stores beside each feature file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from m3bert.data import stats_path

log = logging.getLogger(__name__)

FEATURES_BASELINE = "features mean+std (unnormalised)"
# The clip embedding the demo probe's verdict is about: extract's default (clip/, m3bert.models.pooling.clip_embedding).
DEFAULT_CLIP_EMBEDDING = "m3bert clip embedding (mean+std+max, mean over layers)"
KINDS = ("classification", "regression")
METRIC = {"classification": "accuracy", "regression": "r2"}
# Regularisation candidates: inverse strength C of the logistic regression, strength alpha of the ridge.
DEFAULT_GRID = {"classification": (1e-3, 1e-2, 1e-1, 1.0), "regression": (1e-1, 1.0, 10.0, 100.0, 1000.0)}


def feature_statistics(manifest: pd.DataFrame, root: str | Path) -> np.ndarray:
    """(clips, 2 dim): each clip's per-channel mean then std of its unnormalised features (prepare's statistics)."""
    root = Path(root)
    return np.stack([np.load(stats_path(root / path)).reshape(-1) for path in manifest["file_path"]])


def label_kind(values: pd.Series) -> str:
    """``regression`` for a numeric label column, else ``classification``."""
    return "regression" if pd.api.types.is_numeric_dtype(values) else "classification"


def grouped_folds(groups: np.ndarray, folds: int, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of ``min(folds, groups)`` folds that keep each group on one side.

    ``seed`` None: scikit-learn's deterministic ``GroupKFold``. A seed: the groups in a seeded random order, each
    put in the fold with the fewest clips so far, so other seeds give other fold assignments of similar sizes.
    """
    groups = np.asarray(groups)
    names = np.unique(groups)
    count = min(folds, len(names))
    if count < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {len(names)}")
    if seed is None:
        from sklearn.model_selection import GroupKFold

        return list(GroupKFold(n_splits=count).split(np.zeros(len(groups)), groups=groups))
    fold_of, sizes = {}, np.zeros(count, dtype=np.int64)
    for name in np.random.default_rng(seed).permutation(names):
        fold = int(np.argmin(sizes))
        fold_of[name] = fold
        sizes[fold] += int((groups == name).sum())
    assigned = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(assigned != k), np.flatnonzero(assigned == k)) for k in range(count)]


def make_probe(kind: str, strength: float):
    """A fresh standardise-then-linear-model pipeline: logistic regression with C=strength, or ridge with
    alpha=strength."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(C=strength, max_iter=2000) if kind == "classification" else Ridge(alpha=strength)
    return make_pipeline(StandardScaler(), model)


def fit_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str, strength: float) -> float:
    """Train on rows ``train`` of ``x`` (clips, dim) and score rows ``test``: accuracy or R²; NaN when the training
    part has a single class."""
    if kind == "classification" and len(np.unique(y[train])) < 2:
        return float("nan")
    model = make_probe(kind, strength).fit(x[train], y[train])
    predicted = model.predict(x[test])
    if kind == "classification":
        return float((predicted == y[test]).mean())
    from sklearn.metrics import r2_score

    return float(r2_score(y[test], predicted))


def inner_choice(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    kind: str,
    grid: Sequence[float],
    folds: int,
    seed: int,
) -> tuple[float, float]:
    """(strength, its mean inner score): the grid value best in grouped cross-validation within ``rows`` alone."""
    inner = [(rows[a], rows[b]) for a, b in grouped_folds(groups[rows], folds, seed)]
    scores = [np.nanmean([fit_score(x, y, a, b, kind, s) for a, b in inner]) for s in grid]
    best = int(np.nanargmax(scores)) if not np.isnan(scores).all() else 0
    return float(grid[best]), float(scores[best])


def probe(
    embeddings: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    kind: str = "classification",
    folds: int = 5,
    inner_folds: int = 3,
    repeats: int = 3,
    grid: Sequence[float] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Score every embedding on the same grouped folds, ``repeats`` times with different fold assignments.

    Args:
        embeddings: name -> (clips, dim) array, rows aligned with ``y`` and ``groups`` (clips).
        kind: ``classification`` (accuracy) or ``regression`` (R²).
        inner_folds: grouped folds inside each outer training part that choose the regularisation from ``grid``
            (default :data:`DEFAULT_GRID`) and the members of ``choices``; 0 fits the single value ``grid[0]``
            without an inner cross-validation (then ``choices`` is not allowed).
        choices: name -> members (names in ``embeddings``): a row for "the member whose inner score is highest in
            that fold", e.g. the best layer.
        seed: repeat r draws its folds with seed ``seed + r``; None: one deterministic ``GroupKFold`` (needs
            ``repeats=1``).
    Returns:
        one row per (repeat, fold, embedding): ``score`` on the test fold, ``inner_score``, the chosen
        ``strength`` and, for a choice, the ``chosen`` member; ``clips`` and ``test_clips`` counted.
    """
    if kind not in KINDS:
        raise ValueError(f"probe kind must be one of {KINDS}, got {kind!r}")
    grid = tuple(grid or DEFAULT_GRID[kind])
    choices = dict(choices or {})
    if inner_folds == 0 and (choices or len(grid) > 1):
        raise ValueError("inner_folds=0 fits one fixed strength: give a single grid value and no choices")
    if seed is None and repeats != 1:
        raise ValueError("repeats > 1 needs a seed (each repeat draws its own folds)")
    unknown = sorted({m for members in choices.values() for m in members} - set(embeddings))
    if unknown:
        raise ValueError(f"choices name embeddings that are not given: {unknown}")
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    x_of = {name: np.asarray(x, dtype=np.float64) for name, x in embeddings.items()}
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    rows = []
    # One BLAS thread: these are small matrices, and a thread pool per fit costs more than it gives (measured 30x
    # slower fits with the default pool on a busy 2-core machine).
    started = time.perf_counter()
    with threadpool_limits(1):
        for repeat in range(repeats):
            rows += probe_repeat(x_of, y, groups, kind, folds, inner_folds, grid, choices, seed, repeat)
            log.info("Probe repeat %d/%d done (%.0f s)", repeat + 1, repeats, time.perf_counter() - started)
    return pd.DataFrame(rows)


def probe_repeat(
    x_of: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    kind: str,
    folds: int,
    inner_folds: int,
    grid: Sequence[float],
    choices: Mapping[str, Sequence[str]],
    seed: int | None,
    repeat: int,
) -> list[dict]:
    """:func:`probe`'s rows of one repeat (its folds drawn with seed ``seed + repeat``)."""
    rows = []
    outer = grouped_folds(groups, folds, None if seed is None else seed + repeat)
    for fold, (train, test) in enumerate(outer):
        found = {}
        for name, x in x_of.items():
            if inner_folds:
                strength, inner = inner_choice(x, y, groups, train, kind, grid, inner_folds, 1000 * (repeat + 1))
            else:
                strength, inner = grid[0], float("nan")
            score = fit_score(x, y, train, test, kind, strength)
            found[name] = {"chosen": None, "score": score, "inner_score": inner, "strength": strength}
        for name, members in choices.items():
            best = max(members, key=lambda m: found[m]["inner_score"])
            found[name] = {**found[best], "chosen": best}
        for name, result in found.items():
            head = {"repeat": repeat, "fold": fold, "embedding": name, "clips": len(y), "test_clips": len(test)}
            rows.append(head | result)
    return rows


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per embedding (in first-seen order): the score of each repeat (mean over its folds), then their mean, sample
    standard deviation and count; ``chosen``: how often each member of a choice was picked, over all folds."""
    per_repeat = scores.groupby(["embedding", "repeat"], sort=False)["score"].mean().reset_index()
    rows = []
    for name, part in per_repeat.groupby("embedding", sort=False):
        values = part["score"].to_numpy()
        picked = scores.loc[scores["embedding"] == name, "chosen"].dropna().value_counts()
        rows.append(
            {
                "embedding": name,
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1))
                if len(values) > 1
                else float("nan"),  # sample std, as the report's
                "repeats": len(values),
                "folds": int((scores["embedding"] == name).sum()),
                "chosen": ", ".join(f"{k} x{v}" for k, v in picked.items()) if len(picked) else "",
            }
        )
    return pd.DataFrame(rows)


def clip_probe(
    manifest: pd.DataFrame,
    embeddings: Mapping[str, np.ndarray],
    labels: list[str],
    group_column: str = "work",
    folds: int = 5,
    strength: float = 1.0,
) -> pd.DataFrame:
    """The demo's probe: one row per (label, embedding), accuracy mean and std over one set of grouped folds
    (deterministic ``GroupKFold``) with a fixed logistic-regression ``strength`` (C).

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
        groups = manifest.loc[keep, group].astype(str).to_numpy()
        kept = {name: np.asarray(x)[keep] for name, x in embeddings.items()}
        scores = probe(kept, y, groups, folds=folds, inner_folds=0, repeats=1, grid=[strength], seed=None)
        for name, x in embeddings.items():
            values = scores.loc[scores["embedding"] == name, "score"].dropna()
            rows.append(
                {
                    "label": label,
                    "embedding": name,
                    "dim": int(x.shape[1]),
                    "clips": int(keep.sum()),
                    "folds": len(values),
                    "accuracy_mean": float(values.mean()) if len(values) else float("nan"),
                    "accuracy_std": float(np.std(values)) if len(values) else float("nan"),
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
