"""Embeddings for audio files: ``python -m m3bert.extract model_path=<model> input=<file|folder|csv> output=<folder>``.

``model_path`` is an exported model folder (``python -m m3bert.export``) or a pre-training run folder. ``input`` is an
audio file, a folder (searched recursively for ``extensions``) or a manifest csv whose ``manifest_column`` holds
audio paths (relative to the csv's folder, or absolute). Every file is decoded, mixed to mono and resampled to the
model's rate, turned into the model's features and encoded in overlapping windows (see
``m3bert.inference.representations``).
Writes into ``output``:

- ``frames/<id>.npy``: (layers, frames, hidden) hidden states of the selected ``layers`` (with ``frame_level=true``);
  output frame k stands for the audio around ``first_timestamp_s + k * frame_period_s`` seconds (see index.csv);
- ``mean/<id>.npy`` and ``max/<id>.npy``: (layers, hidden) clip-level embeddings, pooled over the frames, and
  ``mean_std/<id>.npy``: (layers, 2 hidden) statistics pooling, each layer's mean then its standard deviation over the
  frames (see ``m3bert.models.pooling``);
- ``clip/<id>.npy``: (3 hidden) the default clip embedding: each selected layer pooled to mean ⊕ std ⊕ max, averaged
  over the layers (``m3bert.models.pooling.clip_embedding``; ``evaluate``'s ``mean_over_layers``: level with the best
  single layer on held-out real music, ahead of the last layer); the one to start from;
- ``index.csv``: one row per file: id, audio path, duration, output frames, timestamps, layers, output files;
- ``failures.csv``: files that could not be used and why (missing, unreadable, corrupt...); the batch goes on;
- ``embeddings.npz`` (``format=npz``): all of the above in one file (``ids``, ``mean``/``max`` (files, layers,
  hidden), ``mean_std`` (files, layers, 2 hidden), ``clip`` (files, 3 hidden), ``frames/<id>``...);
- ``extract.json``: the settings and a summary. A rerun with the same settings skips files already done, so an
  interrupted run resumes; different settings are refused unless ``overwrite=true``.

``<id>`` is the file's path relative to the input folder (or to the manifest's files' common folder), without its
extension. Memory stays bounded for hour-long files: features of long files are computed a segment at a time into a
memory-mapped scratch file, and hidden states are written to a memory-mapped output ``batch_size`` windows at a time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from m3bert.common.configs import Rule, check_config, config_dir
from m3bert.common.errors import DiskFullError, reports_errors
from m3bert.common.files import (
    remove_stale_temp_files,
    reserve,
    write_json,
    write_npy,
    write_npz,
    write_rows,
)
from m3bert.features import AudioError, audio_info
from m3bert.features.inputs import assign_ids, find_inputs
from m3bert.inference.pretrained import fingerprint
from m3bert.inference.representations import Representations
from m3bert.models.pooling import CLIP_POOLING, RunningPool, clip_embedding

log = logging.getLogger(__name__)
# Clip-level embeddings written per file; the last one is written last, so its file marks a finished id.
POOLED = ("mean", "mean_std", "max")  # per hidden state, each in its folder
CLIP = "clip"  # the default clip embedding (m3bert.models.pooling.clip_embedding), in clip/
WRITTEN = (*POOLED, CLIP)  # in this order, each file atomically: the last one there means the rest is too
SETTINGS_FILE = "extract.json"
# What decides the numbers in the outputs: a rerun with other values must not mix its files with the old ones.
SETTINGS_KEYS = (
    "model_fingerprint",
    "front_end",
    "layers",
    "window_frames",
    "overlap_frames",
    "dtype",
    "output_dtype",
    "frame_level",
    "segment_seconds",
    "context_seconds",
)
SCRATCH_PREFIX = ".scratch-"
EXTRACT_RULES = {
    "window.frames": Rule(low=1, optional=True),
    "window.overlap_frames": Rule(low=0, optional=True),
    "segment.seconds": Rule(low=0, low_open=True),
    "segment.context_seconds": Rule(low=0),
    "batch_size": Rule(low=1),
    "dtype": Rule(choices=("auto", "float32", "bfloat16", "float16")),
    "output_dtype": Rule(choices=("float32", "float16")),
    "format": Rule(choices=("npy", "npz")),
}


def check_extract_config(cfg: DictConfig) -> None:
    """Check a composed ``extract`` config before the model is loaded (also run by Hydra before it writes
    anything); a ConfigError names the first bad key as on the command line."""
    check_config(cfg, EXTRACT_RULES)


def remove_leftovers(out: Path) -> None:
    """Delete what a killed run left in ``out``: its scratch folder and half-written ``.tmp`` files."""
    stale = [p for p in out.glob(f"{SCRATCH_PREFIX}*") if p.is_dir()] if out.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    for sub in ("frames", *WRITTEN):
        stale += remove_stale_temp_files(out / sub, recursive=True)
    stale += remove_stale_temp_files(out)
    for path in stale:
        log.warning("Removed %s, left by an interrupted run", path)


class Outputs:
    """Where the files of one id go, and whether an earlier run finished them."""

    def __init__(self, root: Path, frame_level: bool):
        self.root, self.frame_level = root, frame_level

    def frames(self, id_: str) -> Path:
        return self.root / "frames" / f"{id_}.npy"

    def pooled(self, id_: str, how: str) -> Path:
        return self.root / how / f"{id_}.npy"

    def done(self, id_: str) -> bool:
        # Written frames -> mean -> mean_std -> max -> clip, each atomically: clip being there means the rest is
        # too (mean_std and max are checked as well: folders from before clip/ existed are completed by a rerun).
        pooled = all(self.pooled(id_, how).is_file() for how in ("mean_std", "max", CLIP))
        return pooled and (not self.frame_level or self.frames(id_).is_file())

    def remove(self, id_: str) -> None:
        """Delete what an earlier run left for ``id_``, so that a file failing now can't keep stale outputs."""
        for path in (*(self.pooled(id_, how) for how in reversed(WRITTEN)), self.frames(id_)):
            path.unlink(missing_ok=True)


def encode_to_disk(
    rep: Representations, features: np.ndarray, frames_path: Path | None, dtype: np.dtype
) -> tuple[dict[str, np.ndarray], int]:
    """Stream ``features`` (frames, dim) through the encoder, writing hidden states (layers, tokens, hidden) to
    ``frames_path`` (memory-mapped, renamed into place when complete) if given. Returns the pooled embeddings
    (``mean`` and ``max`` (layers, hidden), ``mean_std`` (layers, 2 hidden), ``clip`` (3 hidden); float32) and the
    number of tokens."""
    layers, hidden = len(rep.layers), rep.hidden_size
    tokens = math.ceil(len(features) / rep.downsample)
    pool = RunningPool()
    out = tmp = None
    if frames_path is not None:
        frames_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = frames_path.parent / f".{frames_path.name}.{os.getpid()}.tmp"
    try:
        if tmp is not None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(layers, tokens, hidden))
            reserve(tmp)  # a full disk is then an error here, not a SIGBUS when the map is written
        for start, states in rep.stream(features):
            chunk = states.float().cpu()
            pool.add(chunk)
            if out is not None:
                out[:, start : start + chunk.shape[1]] = chunk.numpy()
        if out is not None:
            out.flush()
            del out
            os.replace(tmp, frames_path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    pooled = {how: pool.result(how).numpy() for how in POOLED}
    return {**pooled, CLIP: clip_embedding(pool.result(CLIP_POOLING)).numpy()}, tokens


def save_array(path: Path, array: np.ndarray) -> None:
    write_npy(array, path)


def settings_of(rep: Representations, cfg: DictConfig) -> dict[str, Any]:
    return {
        "model": str(Path(cfg.model_path).resolve()),
        "model_fingerprint": fingerprint(rep.encoder),
        "front_end": rep.front_end.to_dict(),
        "layers": list(rep.layers),
        "window_frames": rep.window_frames,
        "overlap_frames": rep.overlap_frames,
        "dtype": str(rep.dtype).removeprefix("torch."),
        "output_dtype": cfg.output_dtype,
        "frame_level": bool(cfg.frame_level),
        "segment_seconds": rep.segment_seconds,
        "context_seconds": rep.context_seconds,
    }


class OtherSettings(ValueError):
    """The output folder holds embeddings made with other settings (another model, layers, windows...)."""

    def __init__(self, message: str, changed: list[str]):
        super().__init__(message)
        self.changed = changed


def check_resumable(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix outputs of different settings in one folder."""
    file = out / SETTINGS_FILE
    if overwrite or not file.is_file():
        return
    earlier = json.loads(file.read_text()).get("settings", {})
    changed = [k for k in SETTINGS_KEYS if earlier.get(k) != settings[k]]
    if changed:
        raise OtherSettings(
            f"output={out} holds embeddings made with other settings ({', '.join(changed)} differ, see "
            f"{file}); use a new output folder, or overwrite=true to recompute every file",
            changed,
        )


def index_row(rep: Representations, outputs: Outputs, id_: str, audio: Path) -> dict[str, Any]:
    frames = np.load(outputs.frames(id_), mmap_mode="r").shape[1] if outputs.frame_level else None
    try:
        duration = audio_info(audio).duration_s
    except AudioError:
        duration = float("nan")

    def rel(path: Path) -> str:
        return path.relative_to(outputs.root).as_posix()

    return {
        "id": id_,
        "audio": str(audio),
        "duration_s": round(duration, 3),
        "frames": frames,
        "frame_period_s": 1.0 / rep.frame_rate,
        "first_timestamp_s": float(rep.timestamps(1)[0]),
        "layers": ";".join(map(str, rep.layers)),
        "frames_file": rel(outputs.frames(id_)) if outputs.frame_level else "",
        **{f"{how}_file": rel(outputs.pooled(id_, how)) for how in WRITTEN},
    }


def pack_npz(rows: list[dict], outputs: Outputs, path: Path) -> None:
    """Everything in one ``.npz``; frame-level arrays are read through memory maps one at a time."""
    arrays: dict[str, Any] = {
        "ids": np.array([r["id"] for r in rows]),
        "audio": np.array([r["audio"] for r in rows]),
        **{
            how: np.stack([np.load(outputs.pooled(r["id"], how)) for r in rows]) if rows else np.zeros((0,))
            for how in WRITTEN
        },
        "layers": np.array([int(i) for i in rows[0]["layers"].split(";")]) if rows else np.zeros((0,), int),
        "frame_period_s": np.array(rows[0]["frame_period_s"] if rows else np.nan),
        "first_timestamp_s": np.array(rows[0]["first_timestamp_s"] if rows else np.nan),
    }
    if outputs.frame_level:
        for r in rows:
            arrays[f"frames/{r['id']}"] = np.load(outputs.frames(r["id"]), mmap_mode="r")
    write_npz(path, **arrays)


def _as_layers(spec):
    return OmegaConf.to_object(spec) if OmegaConf.is_config(spec) else spec


def extract(cfg: DictConfig) -> dict[str, Any]:
    """Run the extraction ``cfg`` describes (see conf/extract.yaml); returns the summary also in extract.json."""
    check_extract_config(cfg)
    started = time.perf_counter()
    out = Path(cfg.output)
    output_dtype = np.dtype(cfg.output_dtype)
    files, root = find_inputs(cfg.input, list(cfg.extensions), cfg.manifest_column)
    rep = Representations.from_pretrained(
        cfg.model_path,
        key="model_path",
        layers=_as_layers(cfg.layers),
        window_frames=cfg.window.frames,
        overlap_frames=cfg.window.overlap_frames,
        batch_size=cfg.batch_size,
        device=cfg.device,
        dtype=cfg.dtype,
        segment_seconds=cfg.segment.seconds,
        context_seconds=cfg.segment.context_seconds,
    )
    settings = settings_of(rep, cfg)
    check_resumable(out, settings, cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    outputs = Outputs(out, cfg.frame_level)
    ids, failures = assign_ids(files, root)
    todo = [f for f in ids if cfg.overwrite or not outputs.done(ids[f])]
    reused = len(ids) - len(todo)
    log.info(
        "%d files (%d done earlier) -> %s; %s features, layers %s, windows of %d frames (overlap %d), on %s",
        len(ids),
        reused,
        out,
        rep.front_end.feature_set,
        list(rep.layers),
        rep.window_frames,
        rep.overlap_frames,
        rep.device,
    )
    # Written before any embedding, so that a crashed run's files are never taken for another setting's.
    write_json({"settings": settings, "summary": None}, out / SETTINGS_FILE)

    from tqdm import tqdm

    audio_seconds = 0.0
    bar = tqdm(total=len(todo), unit="file", disable=not cfg.progress, dynamic_ncols=True, desc="embeddings")
    try:
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=out) as scratch:
            for file in todo:
                id_ = ids[file]
                outputs.remove(id_)
                try:
                    features = rep.file_features(file, memmap=Path(scratch) / "features.npy")
                    frames_path = outputs.frames(id_) if cfg.frame_level else None
                    pooled, _ = encode_to_disk(rep, features, frames_path, output_dtype)
                    seconds = len(features) / rep.front_end.frame_rate
                    del features  # releases the scratch memory map before the next file reuses it
                    for how in WRITTEN:
                        save_array(outputs.pooled(id_, how), pooled[how].astype(output_dtype))
                    audio_seconds += seconds
                except (torch.OutOfMemoryError, DiskFullError):
                    raise  # not a property of the file: lower batch_size or window.frames, or free disk space
                except (AudioError, OSError, ValueError) as err:  # a bad file; any other error is a bug, and stops
                    reason = f"{type(err).__name__}: {err}"
                    failures.append({"audio": str(file), "id": id_, "reason": reason})
                    log.warning("skipped %s", reason if isinstance(err, AudioError) else f"{file}: {reason}")
                bar.update(1)
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(rtf=f"{audio_seconds / elapsed:.1f}", failed=len(failures))
    finally:
        bar.close()
        # Also on an interrupt: the index then lists what is done, and the rerun does the rest.
        rows = [index_row(rep, outputs, ids[f], f) for f in ids if outputs.done(ids[f])]
        write_rows(rows, out / "index.csv", columns=list(rows[0]) if rows else ["id"])
        write_rows(failures, out / "failures.csv", columns=["audio", "id", "reason"])
    if cfg.format == "npz":
        pack_npz(rows, outputs, out / "embeddings.npz")
    wall = time.perf_counter() - started
    summary = {
        "files": len(files),
        "done": len(rows),
        "reused": reused,
        "failures": len(failures),
        "audio_seconds_extracted": round(audio_seconds, 3),
        "wall_time_s": round(wall, 3),
        "real_time_factor": round(audio_seconds / wall, 2),
        "device": str(rep.device),
    }
    write_json({"settings": settings, "summary": summary}, out / SETTINGS_FILE)
    log.info(
        "%d files embedded (%d reused), %d failures%s; index in %s",
        len(rows),
        reused,
        len(failures),
        " (see failures.csv)" if failures else "",
        out / "index.csv",
    )
    return summary


@hydra.main(config_path=config_dir(), config_name="extract", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    extract(cfg)


if __name__ == "__main__":
    main()
