"""How good are a model's clip embeddings, against what a user gets without it?
``python -m m3bert.evaluate model_path=<model> data=<labelled prepared folder> label=<column> out=<folder>``.

``model_path`` is an exported model folder or a pre-training run folder (``load_pretrained``); ``data`` a folder
written by ``python -m m3bert.prepare`` whose manifest has the ``label`` column. Every labelled clip is encoded whole
(in the model's windows, with its own input normalisation, see :class:`m3bert.inference.Representations`), and each
hidden state is pooled over the clip's frames to mean ⊕ std ⊕ max (:mod:`m3bert.models.pooling`). The clip probe
(:mod:`m3bert.tasks.clip_probe`: logistic or ridge regression, regularisation chosen by inner grouped
cross-validation, outer folds grouped by ``group``, ``repeats`` fold assignments) then scores:

- ``layer_<k>``: every hidden state (0 = the embedding output); ``best_layer``: in each outer fold, the layer best in
  the inner cross-validation (the test fold never chooses); ``mean_over_layers``: the pooled vectors averaged over
  the hidden states, the default clip embedding that ``extract`` (``clip/``) and HEAR (scene embeddings) give;
- two floors on the same clips and folds: ``features``, the mean ⊕ std of the unnormalised input features (prepare's
  clip statistics), and ``random_layer_<k>`` / ``random_best_layer``, a randomly initialised encoder of the same
  config and input normalisation.

Writes into ``out``: ``runs/<embedding>/repeat_<r>/run.json`` (a run record of stage ``evaluate``, so that
``python -m m3bert.report out/runs reference=embedding=features`` compares them), ``scores.csv`` (every repeat, fold
and embedding, with the chosen regularisation and layer) and ``summary.csv`` / ``summary.md`` (mean ± std over
repeats per embedding).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from m3bert.common.configs import Rule, check_config, config_dir
from m3bert.common.errors import UserError, reports_errors
from m3bert.common.files import write_csv, write_json, write_text
from m3bert.common.tables import markdown_table
from m3bert.data import ManifestDataset, read_manifest
from m3bert.inference.pretrained import load_pretrained
from m3bert.inference.representations import Representations
from m3bert.models.encoder import M3BERT
from m3bert.models.pooling import CLIP_POOLING, clip_embedding, masked_pool
from m3bert.tasks.clip_probe import METRIC, feature_statistics, label_kind, probe, summarise
from m3bert.training import records

log = logging.getLogger(__name__)

STAGE = "evaluate"
FEATURES = "features"  # the name of the feature floor, e.g. for `report reference=embedding=features`
EVALUATE_RULES = {
    "folds": Rule(low=2),
    "inner_folds": Rule(low=2),
    "repeats": Rule(low=1),
    "batch_size": Rule(low=1),
    "kind": Rule(choices=("auto", "classification", "regression")),
    "dtype": Rule(choices=("auto", "float32", "bfloat16", "float16")),
}


def check_evaluate_config(cfg: DictConfig) -> None:
    """Check a composed ``evaluate`` config before anything is loaded (also run by Hydra before it writes)."""
    check_config(cfg, EVALUATE_RULES)


def group_column(manifest: pd.DataFrame, group: str | None) -> str:
    """The column that keeps clips together: ``group``, else ``work`` (what the demo corpus and the real-music set
    record per piece), else ``track_id`` (every adapter's: the segments of one recording)."""
    if group is not None:
        return group
    return "work" if "work" in manifest.columns else "track_id"


def labelled_clips(data: Path, manifest_name: str, label: str, group: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of ``data/manifest_name`` that carry ``label``, and the group column; ValueErrors name the file and
    the column."""
    path = data / manifest_name
    if not path.is_file():
        raise FileNotFoundError(
            f"data={data}: no {manifest_name}; point data= at a folder written by `python -m m3bert.prepare`"
        )
    manifest = read_manifest(path)
    group = group_column(manifest, group)
    for key, column in (("label", label), ("group", group)):
        if column not in manifest.columns:
            raise ValueError(
                f"{path}: no column {column!r} for {key}=; columns: {', '.join(map(str, manifest.columns))}"
            )
    kept = manifest[manifest[label].notna()].reset_index(drop=True)
    if kept.empty:
        raise ValueError(f"{path}: no clip has a {label!r} value; choose another label=")
    if kept[group].nunique() < 2:
        raise ValueError(
            f"{path}: the labelled clips are all in one {group!r} group, so no fold can hold any out; "
            "choose another group= column"
        )
    return kept, group


@torch.no_grad()
def pooled_states(
    rep: Representations, clips: ManifestDataset, rows: Sequence[int], progress: bool, what: str
) -> np.ndarray:
    """(len(rows), hidden states, 3 hidden) float32: each clip (manifest row) encoded whole and every hidden state
    pooled to mean ⊕ std ⊕ max over its frames."""
    out = []
    for start in tqdm(range(0, len(rows), rep.batch_size), desc=what, disable=not progress):
        features = [clips[row].features for row in rows[start : start + rep.batch_size]]
        for states in rep.encode(features):  # (hidden states, tokens, hidden)
            out.append(masked_pool(states, None, CLIP_POOLING).cpu().numpy())
    return np.stack(out)


def layer_embeddings(pooled: np.ndarray, prefix: str = "") -> tuple[dict[str, np.ndarray], list[str]]:
    """``{<prefix>layer_<k>: (clips, dim)}`` of ``pooled`` (clips, layers, dim) and those names in order."""
    names = [f"{prefix}layer_{k}" for k in range(pooled.shape[1])]
    return {name: pooled[:, k] for k, name in enumerate(names)}, names


def describe(embedding: str) -> dict[str, Any]:
    """The config keys that tell an embedding's runs apart in the report: encoder, layer and pooling."""
    if embedding == FEATURES:
        # Strings, not None: a report groups runs by these values, and a missing value would drop the floor's rows.
        return {"encoder": "none", "layer": "none", "pooling": "mean+std"}
    encoder = "random" if embedding.startswith("random_") else "pretrained"
    what = embedding.removeprefix("random_")
    layer = {"best_layer": "best", "mean_over_layers": "mean"}.get(what) or int(what.removeprefix("layer_"))
    return {"encoder": encoder, "layer": layer, "pooling": "mean+std+max"}


def write_runs(
    out: Path, scores: pd.DataFrame, settings: dict[str, Any], metric: str, seconds: float, resolved: dict[str, str]
) -> None:
    """One finished run record per (embedding, repeat) under ``out/runs``, with the environment and the
    ``resolved`` precision and device as training records keep them. Its test metric,
    ``<label>/test/<metric>`` as fine-tuning names a task's, is the mean over that repeat's outer folds; the mean
    inner-fold score of the chosen settings is ``<label>/inner/<metric>``."""
    commit, ended = records.git_commit(), datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    environment = {**records.environment(), **resolved}
    label = settings["label"]
    for (embedding, repeat), part in scores.groupby(["embedding", "repeat"], sort=False):
        test = {f"{label}/test/{metric}": float(part["score"].mean())}
        record = {
            "status": "finished",
            "stage": STAGE,
            "name": STAGE,
            "seed": int(repeat),
            "overrides": None,
            "sweep": None,
            "config": {"embedding": embedding, **describe(embedding), **settings, "seed": int(repeat)},
            # As records.finish keeps them; "test" also at the top level, where evaluation records keep it.
            "metrics": {
                "final": {},
                "best": {f"{label}/inner/{metric}": float(part["inner_score"].mean())},
                "test": test,
            },
            "test": test,
            "folds": len(part),
            "wall_time_s": seconds,
            "git_commit": commit,
            "environment": environment,
            "ended": ended,
            "error": None,
        }
        write_json(record, out / "runs" / embedding / f"repeat_{repeat}" / records.RECORD)


def summary_markdown(summary: pd.DataFrame, settings: dict[str, Any], metric: str, facts: dict[str, Any]) -> str:
    table = summary.assign(score=[f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["mean"], summary["std"])])
    best, floor = (summary.set_index("embedding").loc[name, "mean"] for name in ("best_layer", FEATURES))
    verdict = "ahead of" if best > floor else "not ahead of"
    lines = [
        f"# Clip-level linear probe: {settings['label']}",
        "",
        f"Model `{settings['model']}` on `{settings['data']}`: {facts['clips']} clips in {facts['groups']} groups "
        f"(`{settings['group']}`), {facts['kind']} ({metric}), {settings['folds']} outer and {settings['inner_folds']} "
        f"inner grouped folds, {settings['repeats']} fold assignments; mean ± std over those repeats. The best "
        f"layer is chosen in each outer fold by the inner cross-validation. Best layer {best:.3f} is {verdict} the "
        f"feature floor {floor:.3f} ({best - floor:+.3f}).",
        "",
        markdown_table(table[["embedding", "score", "repeats", "folds", "chosen"]]),
    ]
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Probe every layer of ``cfg.model_path`` and the two floors on ``cfg.data``; writes ``cfg.out`` and returns
    the summary (one row per embedding: mean and std over repeats)."""
    check_evaluate_config(cfg)
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise UserError(
            "python -m m3bert.evaluate needs scikit-learn: pip install scikit-learn (or m3bert's demo extra)"
        ) from err
    started = time.perf_counter()
    data, out = Path(cfg.data), Path(cfg.out)
    clips, group = labelled_clips(data, cfg.manifest, cfg.label, cfg.group)
    kind = label_kind(clips[cfg.label]) if cfg.kind == "auto" else cfg.kind
    y = clips[cfg.label].to_numpy() if kind == "regression" else clips[cfg.label].astype(str).to_numpy()
    groups = clips[group].astype(str).to_numpy()

    loaded = load_pretrained(cfg.model_path, key="model_path")
    front_end = loaded.front_end
    dataset = ManifestDataset(
        str(data / cfg.manifest), front_end.feature_dim, None, "start", normalization=front_end.normalization
    )
    rows = dataset.table.index[dataset.table[cfg.label].notna()]  # the rows of `clips`, in order
    torch.manual_seed(cfg.random_encoder_seed)
    random_encoder = M3BERT(loaded.encoder.config).eval()
    options = {"batch_size": cfg.batch_size, "device": cfg.device, "dtype": cfg.dtype}
    embeddings: dict[str, np.ndarray] = {FEATURES: feature_statistics(clips, data)}
    choices = {}
    for prefix, encoder in (("", loaded.encoder), ("random_", random_encoder)):
        rep = Representations(encoder, front_end, training_frames=loaded.training_frames, **options)
        # The encoder's compute dtype and device as resolved here (dtype=auto is bf16 on a CPU with native bf16).
        resolved = {"precision": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(rep.dtype, "fp32")}
        resolved["device"] = str(rep.device)
        what = "random encoder" if prefix else "model"
        pooled = pooled_states(rep, dataset, rows, cfg.progress, f"encoding clips ({what})")
        layers, names = layer_embeddings(pooled, prefix)
        embeddings.update(layers)
        choices[f"{prefix}best_layer"] = names
        if not prefix:
            # The default clip embedding of extract (clip/) and HEAR (scene embeddings): measured here as well.
            embeddings["mean_over_layers"] = clip_embedding(torch.from_numpy(pooled)).numpy()
    log.info(
        "Encoded %d clips in %.1f s; probing %d embeddings", len(clips), time.perf_counter() - started, len(embeddings)
    )

    grid = list(cfg.grid) if cfg.grid is not None else None
    scores = probe(embeddings, y, groups, kind, cfg.folds, cfg.inner_folds, cfg.repeats, grid, choices, cfg.seed)
    # The report's order: the model's headline rows, then its layers, then the floors.
    order = ["best_layer", "mean_over_layers", *choices["best_layer"], FEATURES, "random_best_layer"]
    order += choices["random_best_layer"]
    summary = summarise(scores).set_index("embedding").loc[order].reset_index()
    metric = METRIC[kind]
    settings = {
        "model": str(cfg.model_path),
        "data": str(cfg.data),
        "label": cfg.label,
        "group": group,
        "kind": kind,
        "folds": cfg.folds,
        "inner_folds": cfg.inner_folds,
        "repeats": cfg.repeats,
        "grid": grid,
    }
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_runs(out, scores, settings, metric, seconds, resolved)
    write_csv(scores, out / "scores.csv")
    write_csv(summary.assign(metric=metric, **describe_columns(summary["embedding"])), out / "summary.csv")
    facts = {"clips": len(clips), "groups": len(np.unique(groups)), "kind": kind}
    write_text(summary_markdown(summary, settings, metric, facts), out / "summary.md")
    write_json({"settings": settings, **facts, "wall_time_s": seconds}, out / "evaluate.json")
    log.info("%s\nWritten to %s (%.1f min)", markdown_table(summary), out, seconds / 60)
    return summary


def describe_columns(embeddings: pd.Series) -> dict[str, list]:
    """``encoder``, ``layer`` and ``pooling`` columns for a column of embedding names."""
    described = [describe(name) for name in embeddings]
    return {key: [d[key] for d in described] for key in ("encoder", "layer", "pooling")}


@hydra.main(config_path=config_dir(), config_name="evaluate", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    log.debug("evaluate config:\n%s", OmegaConf.to_yaml(cfg))
    evaluate(cfg)


if __name__ == "__main__":
    main()
