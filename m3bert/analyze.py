"""What the encoder's units follow, where it attends, how fine-tuning weighs its layers: ``python -m m3bert.analyze``.

    python -m m3bert.analyze model_path=models/m3bert-base input=path/to/clips out=analysis/base
    python -m m3bert.analyze model_path=... input=... out=... descriptors=path/to/descriptors
    python -m m3bert.analyze analyses=[layer_weights] finetuned=experiments/finetune_mtl/<run> out=...

Analyses (``analyses=[...]``, each writing into ``out/<name>/``):

- ``correlation``: Pearson's r of every (layer, unit) time series with every interpretable input series over all
  frames of the clips: the model's own input features (columns named ``<block>_<i>`` after the feature set's
  blocks, e.g. ``mfcc_3``), or your frame-level descriptors (``descriptors=<folder>`` of ``<clip id>.csv`` / ``.npy``).
  Writes ``strongest_pairs.csv`` (the ``top_k`` largest |r|, with two-sided p-values of the t-test of r = 0),
  ``strongest_pairs_by_layer.csv``, ``max_abs_r.csv`` and ``heatmap.png`` (layer x block: max |r| over the layer's
  units and the block's columns) and ``r.npz`` (the whole matrix). The p-values are **nominal**: consecutive
  frames are strongly autocorrelated, so the effective number of independent samples is far below the frame count
  and the p-values are much too small; use them to rank, not to claim significance.
- ``attention``: attention maps (head-averaged, every layer, plus every head of one layer) for one window of one clip.
- ``layer_weights``: the learned softmax weights over hidden states of each task's weighted-sum featurizer in a
  fine-tuning checkpoint (``finetuned=<run folder or .pt>``).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from m3bert.common import checkpoints
from m3bert.common.configs import Rule, check_config, config_dir
from m3bert.common.errors import reports_errors
from m3bert.common.figures import attention_figure, heatmap_figure, layer_weights_figure, save_figure
from m3bert.common.files import write_csv, write_json, write_npz
from m3bert.features import AudioError, load_audio
from m3bert.features.inputs import assign_ids, find_inputs
from m3bert.inference.representations import Representations

log = logging.getLogger(__name__)
P_VALUE_NOTE = (
    "nominal two-sided p-values of the t-test of r = 0 with n_frames - 2 degrees of freedom; frames are "
    "autocorrelated, so the effective sample size is much smaller and these p-values are far too small"
)


# ----------------------------------------------------------------------------------------------- statistics
class RunningCorrelation:
    """Pearson correlations between every column of x (units) and every column of y (targets), accumulated over
    chunks of rows: float64 means and co-moments merged chunk by chunk (Chan et al.'s pairwise update), so the
    result does not depend on how the rows were chunked and no chunk has to stay in memory."""

    def __init__(self, units: int, targets: int):
        self.n = 0
        self.mean_x, self.mean_y = np.zeros(units), np.zeros(targets)
        self.ss_x, self.ss_y = np.zeros(units), np.zeros(targets)
        self.cross = np.zeros((units, targets))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """x (rows, units), y (rows, targets): the same rows (frames)."""
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        m = len(x)
        if m == 0:
            return
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        mx, my = x.mean(0), y.mean(0)
        cx, cy = x - mx, y - my
        n = self.n + m
        dx, dy = mx - self.mean_x, my - self.mean_y
        self.cross += cx.T @ cy + np.outer(dx, dy) * (self.n * m / n)
        self.ss_x += np.einsum("ij,ij->j", cx, cx) + dx**2 * (self.n * m / n)
        self.ss_y += np.einsum("ij,ij->j", cy, cy) + dy**2 * (self.n * m / n)
        self.mean_x += dx * (m / n)
        self.mean_y += dy * (m / n)
        self.n = n

    def r(self) -> np.ndarray:
        """(units, targets) Pearson's r; NaN where either series is constant."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.cross / np.sqrt(np.outer(self.ss_x, self.ss_y))
        r[~np.isfinite(r)] = np.nan
        return np.clip(r, -1.0, 1.0)


def pearson_p_values(r: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p-values of H0: rho = 0 for correlations ``r`` of ``n`` pairs: the t-test with
    t = r sqrt((n - 2) / (1 - r^2)) on n - 2 degrees of freedom, whose two-sided tail is I_{1 - r^2}((n - 2) / 2, 1/2)
    (the regularised incomplete beta function). NaN stays NaN."""
    if n < 3:
        raise ValueError(f"p-values need at least 3 frames, got {n}")
    from scipy.special import betainc

    df = n - 2
    return betainc(df / 2.0, 0.5, np.clip(1.0 - np.square(r), 0.0, 1.0))


def column_labels(blocks: dict[str, slice]) -> tuple[list[str], list[str]]:
    """Names (``<block>_<i>``) and block of every column of a feature set."""
    names, owners = [], []
    for block, cols in blocks.items():
        for i in range(cols.stop - cols.start):
            names.append(f"{block}_{i}")
            owners.append(block)
    return names, owners


def strongest_pairs(
    r: np.ndarray, p: np.ndarray, layers: list[int], targets: list[str], owners: list[str], top_k: int, n: int
) -> pd.DataFrame:
    """The ``top_k`` (layer, unit, target) triples of largest |r|, strongest first; r is (layers, units, targets)."""
    flat = np.nan_to_num(np.abs(r), nan=-1.0).ravel()
    k = min(top_k, int((flat >= 0).sum()))
    if k == 0:
        return pd.DataFrame(columns=["layer", "unit", "feature", "block", "r", "p_value_nominal", "n_frames"])
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    li, ui, ti = np.unravel_index(top, r.shape)
    return pd.DataFrame(
        {
            "layer": [layers[i] for i in li],
            "unit": ui,
            "feature": [targets[i] for i in ti],
            "block": [owners[i] for i in ti],
            "r": r[li, ui, ti],
            "p_value_nominal": p[li, ui, ti],
            "n_frames": n,
        }
    )


def block_max_abs_r(r: np.ndarray, owners: list[str]) -> tuple[np.ndarray, list[str]]:
    """(layers, blocks) max |r| over each layer's units and each block's columns; r is (layers, units, targets)."""
    blocks = list(dict.fromkeys(owners))
    owners_arr = np.array(owners)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (constant series) give NaN, as they should
        per_target = np.nanmax(np.abs(r), axis=1)  # (layers, targets)
        return np.stack([np.nanmax(per_target[:, owners_arr == b], axis=1) for b in blocks], axis=1), blocks


# ----------------------------------------------------------------------------------------------- data
def clip_features(rep: Representations, path: Path, max_seconds: float | None) -> np.ndarray:
    """(frames, feature_dim) features of (the first ``max_seconds`` of) a clip."""
    if max_seconds:
        return rep.features([load_audio(path, rep.sample_rate, duration_s=max_seconds)])[0].cpu().numpy()
    return rep.file_features(path)


def per_token(values: np.ndarray, r: int) -> np.ndarray:
    """(frames, k) -> (ceil(frames / r), k): the mean of the frames each output frame stacks."""
    if r == 1:
        return values
    starts = np.arange(0, len(values), r)
    counts = np.diff(np.append(starts, len(values)))[:, None]
    return np.add.reduceat(values, starts, axis=0) / counts


def load_descriptors(folder: Path, id_: str, timestamps: np.ndarray, frames: int, r: int) -> tuple[np.ndarray, list]:
    """A clip's descriptors (tokens, k) and their names, from ``<folder>/<id>.csv`` or ``.npy``.

    A csv may have a ``time_s`` column (seconds): each descriptor is then linearly interpolated onto the output
    frames' timestamps. Otherwise the rows must be the clip's input frames (``frames``) or output frames.
    """
    csv, npy = folder / f"{id_}.csv", folder / f"{id_}.npy"
    if csv.is_file():
        table = pd.read_csv(csv)
        if "time_s" in table.columns:
            names = [c for c in table.columns if c != "time_s"]
            t = table["time_s"].to_numpy(float)
            values = np.stack([np.interp(timestamps, t, table[c].to_numpy(float)) for c in names], axis=1)
            return values, names
        values, names, source = table.to_numpy(float), list(table.columns), csv
    elif npy.is_file():
        values = np.load(npy)
        values = values[:, None] if values.ndim == 1 else values
        names, source = [f"descriptor_{i}" for i in range(values.shape[1])], npy
    else:
        raise FileNotFoundError(f"descriptors={folder}: no {id_}.csv or {id_}.npy for clip {id_!r}")
    tokens = len(timestamps)
    if len(values) == frames:
        return per_token(values.astype(np.float64), r), names
    if len(values) == tokens:
        return values.astype(np.float64), names
    raise ValueError(
        f"{source}: {len(values)} rows, but the clip has {frames} input frames and {tokens} output "
        "frames; give one row per frame, or a time_s column to interpolate from"
    )


def _representations(cfg: DictConfig) -> Representations:
    if not cfg.model_path:
        raise ValueError("this analysis needs model_path=<exported model folder or pre-training run folder>")
    layers = OmegaConf.to_object(cfg.layers) if OmegaConf.is_config(cfg.layers) else cfg.layers
    return Representations.from_pretrained(
        cfg.model_path,
        key="model_path",
        layers=layers,
        window_frames=cfg.window.frames,
        overlap_frames=cfg.window.overlap_frames,
        batch_size=cfg.batch_size,
        device=cfg.device,
    )


def _clips(cfg: DictConfig) -> dict[Path, str]:
    if not cfg.input:
        raise ValueError("this analysis needs input=<audio file, folder or manifest csv>")
    files, root = find_inputs(cfg.input, list(cfg.extensions), cfg.manifest_column)
    ids, _ = assign_ids(files, root)
    if cfg.max_clips:
        ids = dict(list(ids.items())[: cfg.max_clips])
    return ids


# --------------------------------------------------------------------------------------------- analyses
def correlate(
    rep: Representations,
    clips: dict[Path, str],
    descriptors: Path | None,
    max_seconds: float | None,
    progress: bool = False,
) -> tuple[np.ndarray, int, list[str], list[str], list[str]]:
    """r (layers, units, targets) between hidden units and targets over all output frames of ``clips``, the number
    of frames, the targets' names and blocks, and the clips skipped as unreadable."""
    from tqdm import tqdm

    if descriptors is None:
        names, owners = column_labels(rep.extractor.blocks)
    acc, skipped = None, []
    for path, id_ in tqdm(clips.items(), unit="clip", disable=not progress, desc="correlation"):
        try:
            feats = clip_features(rep, path, max_seconds)
        except AudioError as err:
            log.warning("skipped %s", err)  # one bad file doesn't void an analysis of many
            skipped.append(str(path))
            continue
        tokens = -(-len(feats) // rep.downsample)
        if descriptors is None:
            targets = per_token(feats.astype(np.float64), rep.downsample)
        else:
            targets, clip_names = load_descriptors(
                descriptors, id_, rep.timestamps(tokens).numpy(), len(feats), rep.downsample
            )
            if acc is None:
                names, owners = clip_names, clip_names
            elif clip_names != names:
                raise ValueError(f"descriptors of {id_!r} are {clip_names}, but earlier clips had {names}")
        if acc is None:
            acc = RunningCorrelation(len(rep.layers) * rep.hidden_size, targets.shape[1])
        for start, states in rep.stream(feats):
            units = states.float().permute(1, 0, 2).reshape(states.shape[1], -1).cpu().numpy()
            acc.update(units, targets[start : start + len(units)])
    if acc is None:
        raise ValueError(f"no readable clips to analyse (skipped: {skipped})")
    r = acc.r().reshape(len(rep.layers), rep.hidden_size, -1)
    return r, acc.n, names, owners, skipped


def correlation(cfg: DictConfig, out: Path) -> dict[str, Any]:
    rep, clips = _representations(cfg), _clips(cfg)
    descriptors = Path(cfg.descriptors) if cfg.descriptors else None
    r, n, names, owners, skipped = correlate(rep, clips, descriptors, cfg.max_seconds, cfg.progress)
    p = pearson_p_values(r, n)
    layers = list(rep.layers)
    folder = out / "correlation"
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(strongest_pairs(r, p, layers, names, owners, cfg.correlation.top_k, n), folder / "strongest_pairs.csv")
    by_layer = [
        strongest_pairs(r[i : i + 1], p[i : i + 1], [layer], names, owners, cfg.correlation.per_layer_k, n)
        for i, layer in enumerate(layers)
    ]
    write_csv(pd.concat(by_layer, ignore_index=True), folder / "strongest_pairs_by_layer.csv")
    matrix, blocks = block_max_abs_r(r, owners)
    write_csv(pd.DataFrame(matrix, columns=blocks).assign(layer=layers)[["layer", *blocks]], folder / "max_abs_r.csv")
    what = "input features" if descriptors is None else "descriptors"
    used = len(clips) - len(skipped)
    save_figure(
        heatmap_figure(matrix, layers, blocks, f"max |r| of units with {what} ({used} clips, {n} frames)"),
        folder / "heatmap.png",
        dpi=120,
    )
    write_npz(
        folder / "r.npz",
        r=r.astype(np.float32),
        layers=np.array(layers),
        targets=np.array(names),
        blocks=np.array(owners),
    )
    summary = {
        "clips": used,
        "skipped": skipped,
        "n_frames": n,
        "targets": what,
        "p_values": P_VALUE_NOTE,
        "strongest": {b: float(np.nanmax(matrix[:, j])) for j, b in enumerate(blocks)},
    }
    write_json(summary, folder / "summary.json")
    return summary


def attention(cfg: DictConfig, out: Path) -> dict[str, Any]:
    rep = _representations(cfg)
    clip = Path(cfg.attention.clip) if cfg.attention.clip else next(iter(_clips(cfg)))
    offset = int(round(cfg.attention.offset_s * rep.front_end.frame_rate)) // rep.downsample * rep.downsample
    seconds = cfg.attention.offset_s + rep.window_frames / rep.front_end.frame_rate
    feats = rep.features([load_audio(clip, rep.sample_rate, duration_s=seconds + 1.0)])[0]
    window = feats[offset : offset + rep.window_frames]
    if len(window) == 0:
        raise ValueError(f"{clip}: attention.offset_s={cfg.attention.offset_s} is past the end of the clip")
    x = window[None].to(rep.device, rep.dtype)
    maps = [m[0].float().cpu().numpy() for m in rep.encoder.attention_maps(x)]  # each (heads, tokens, tokens)
    span = len(window) / rep.front_end.frame_rate
    folder = out / "attention"
    folder.mkdir(parents=True, exist_ok=True)
    where = f"{clip.name}, {cfg.attention.offset_s:g}-{cfg.attention.offset_s + span:.1f} s"
    titles = [f"layer {i + 1} (mean of heads)" for i in range(len(maps))]
    save_figure(attention_figure([m.mean(0) for m in maps], titles, span, where), folder / "layers.png", dpi=120)
    layer = cfg.attention.heads_of_layer % len(maps)
    titles = [f"head {h}" for h in range(len(maps[layer]))]
    save_figure(
        attention_figure(list(maps[layer]), titles, span, f"{where}: the heads of layer {layer + 1}"),
        folder / f"heads_layer{layer + 1}.png",
        dpi=120,
    )
    write_npz(folder / "attention_maps.npz", **{f"layer{i + 1}": m for i, m in enumerate(maps)})
    return {"clip": str(clip), "offset_s": cfg.attention.offset_s, "seconds": span, "layers": len(maps)}


FEATURIZER_WEIGHTS = re.compile(r"^heads\.(?P<task>.+)\.featurizer\.weights$")


def featurizer_weights(path: str | Path) -> dict[str, np.ndarray]:
    """task -> softmax weights over hidden states (embedding output first) of a fine-tuning checkpoint."""
    file = checkpoints.find_checkpoint(path)
    model = checkpoints.load(file).get("model", {})
    found = {m["task"]: v.float().softmax(0).numpy() for k, v in model.items() if (m := FEATURIZER_WEIGHTS.match(k))}
    if not found:
        raise ValueError(
            f"{file}: no weighted-sum featurizer weights (heads.<task>.featurizer.weights); the run used "
            "featurizer=last or a fixed layer, or is not a fine-tuning run"
        )
    return found


def layer_weights(cfg: DictConfig, out: Path) -> dict[str, Any]:
    if not cfg.finetuned:
        raise ValueError("layer_weights needs finetuned=<fine-tuning run folder or checkpoint>")
    weights = featurizer_weights(cfg.finetuned)
    folder = out / "layer_weights"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"task": t, "hidden_state": i, "weight": float(v)} for t, w in weights.items() for i, v in enumerate(w)]
    write_csv(pd.DataFrame(rows), folder / "layer_weights.csv")
    save_figure(layer_weights_figure(weights), folder / "layer_weights.png", dpi=120)
    return {t: int(np.argmax(w)) for t, w in weights.items()}


ANALYSES: dict[str, Callable[[DictConfig, Path], dict[str, Any]]] = {
    "correlation": correlation,
    "attention": attention,
    "layer_weights": layer_weights,
}


ANALYZE_RULES = {
    "max_clips": Rule(low=1, optional=True),
    "max_seconds": Rule(low=0, low_open=True, optional=True),
    "window.frames": Rule(low=1, optional=True),
    "window.overlap_frames": Rule(low=0, optional=True),
    "batch_size": Rule(low=1),
    "correlation.top_k": Rule(low=1),
    "correlation.per_layer_k": Rule(low=1),
    "attention.offset_s": Rule(low=0),
}


def check_analyze_config(cfg: DictConfig) -> None:
    """Check a composed ``analyze`` config before anything runs; a ConfigError names the first bad key."""
    check_config(cfg, ANALYZE_RULES)


def analyze(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.analyses`` in order; returns {analysis: summary}, also written to ``out/analyses.json``."""
    check_analyze_config(cfg)
    unknown = [a for a in cfg.analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; choose from {sorted(ANALYSES)}")
    out = Path(cfg.out)
    results = {}
    for name in cfg.analyses:
        log.info("Running %s -> %s", name, out / name)
        results[name] = ANALYSES[name](cfg, out)
    write_json(results, out / "analyses.json")
    return results


@hydra.main(config_path=config_dir(), config_name="analyze", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    analyze(cfg)


if __name__ == "__main__":
    main()
