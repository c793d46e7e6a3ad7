"""Preparing a dataset, audio to feature files and manifests: ``python -m m3bert.prepare dataset=NAME``.

Reads a dataset through its adapter (``dataset.source``), decodes audio in worker processes, computes features in
batches (on the GPU when there is one) and writes

- ``<out>/features/<track id>[.segNNN].npy``: ``(frames, feature_dim)`` float32 (or float16 with
  ``dtype=float16``: half the disk and reads, at most 2^-11 relative error), normalised per file (the paper's CMVN)
  and written atomically; beside each, ``<name>.stats.npy``: (2, feature_dim) the clip's per-channel mean and
  scale of the unnormalised features (what undoes the CMVN, and a clip-level feature baseline);
- ``<out>/normalization.npz``: per-channel ``mean`` and ``std`` of the unnormalised features over every frame of the
  training split (else of all clips), for models trained with ``features.normalization=dataset``;
- ``<out>/manifest.csv`` (every clip) and ``train.csv`` / ``valid.csv`` / ``test.csv`` (one per split);
- ``<out>/failures.csv``: files that were too short, silent, unreadable or gave non-finite features, with the reason;
- ``<out>/summary.json``: counts, audio hours, failures by reason, wall time;
- ``<out>/validated.json``: that every manifest's files passed the checks of :mod:`m3bert.data.validation`, so
  training trusts them without opening each file at start-up.

A rerun skips clips whose feature file (and statistics) are already there with the right shape, so an interrupted
run resumes.

Why per-file-normalised features plus statistics rather than unnormalised features: one prepared folder then serves
every normalisation (:class:`m3bert.features.Normalization` applies the others at read time, a per-channel affine
map per clip), existing folders and the paper's recipes read exactly what they read before, and a model fine-tuned
on another folder applies its own pre-training statistics to it, not that folder's.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from m3bert.adapters.base import Track
from m3bert.adapters.splits import check_fractions, random_split
from m3bert.common import prepared
from m3bert.common.configs import Rule, check_config, config_dir
from m3bert.common.devices import resolve_device
from m3bert.common.errors import ConfigError, reports_errors
from m3bert.common.files import (
    remove_stale_temp_files,
    write_bytes,
    write_json,
    write_npy,
    write_npz,
    write_rows,
)
from m3bert.data.validation import check_finite, check_shape, manifest_key, record_validated
from m3bert.features import AudioError, audio_info, build_feature_extractor, load_audio
from m3bert.features.normalize import dataset_statistics
from m3bert.training import schemas

log = logging.getLogger(__name__)
schemas.register()  # before Hydra composes
CLIP_POLICIES = ("first", "middle", "segments", "full")
PREPARE_RULES = {
    "dtype": Rule(choices=("float32", "float16")),
    "clip.policy": Rule(choices=CLIP_POLICIES),
    "clip.seconds": Rule(low=0, low_open=True),
    "clip.min_seconds": Rule(low=0),
    "silence_threshold": Rule(low=0),
    "workers": Rule(low=0),
    "batch_size": Rule(low=1),
    "limit": Rule(low=1, optional=True),
    "dataset.feature_dim": Rule(low=1),
}


def check_prepare_config(cfg: DictConfig) -> None:
    """Check a composed ``prepare`` config before any audio is read (also run by Hydra before it writes anything).

    Raises:
        ConfigError: naming the first bad key as on the command line.
    """
    check_config(cfg, PREPARE_RULES)
    try:
        check_fractions(cfg.split.fractions)
    except ValueError as err:
        raise ConfigError(f"split.fractions={list(cfg.split.fractions)}: {err}") from err


@dataclass
class Excerpt:
    """One manifest row to be: a stretch of a track's audio."""

    track: Track
    offset_s: float
    duration_s: float | None  # None: to the end of the file
    name: str  # feature file, relative to <out>
    seconds: float  # length of the excerpt, from the file's header


@dataclass
class Decoded:
    clip: Excerpt
    audio: np.ndarray | None = None
    error: str | None = None


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    reused: int = 0
    seconds: float = 0.0


def plan_clips(
    tracks: list[Track], policy: str, seconds: float, min_seconds: float
) -> tuple[list[Excerpt], list[dict]]:
    """Clips to extract under ``policy``, plus failures for tracks that can't give one (unreadable, too short).

    ``first``/``middle``: the first or middle ``seconds`` of each track; ``segments``: consecutive ``seconds``-long
    segments (a tail shorter than ``min_seconds`` is dropped); ``full``: the whole track.
    """
    if policy not in CLIP_POLICIES:
        raise ValueError(f"clip.policy must be one of {CLIP_POLICIES}, got {policy!r}")
    clips, failures = [], []
    for track in tracks:
        stem = prepared.feature_stem(track.track_id)
        try:
            duration = audio_info(track.audio).duration_s
        except AudioError as err:
            failures.append(failure(track, str(err)))
            continue
        if duration < min_seconds:
            failures.append(failure(track, f"too short: {duration:.1f} s < clip.min_seconds={min_seconds:g}"))
        elif policy == "full":
            clips.append(Excerpt(track, 0.0, None, f"{stem}.npy", duration))
        elif policy == "first":
            clips.append(Excerpt(track, 0.0, seconds, f"{stem}.npy", min(seconds, duration)))
        elif policy == "middle":
            clips.append(
                Excerpt(track, max(0.0, (duration - seconds) / 2), seconds, f"{stem}.npy", min(seconds, duration))
            )
        else:
            count = max(1, math.floor(duration / seconds) + (duration % seconds >= min_seconds))
            clips += [
                Excerpt(track, i * seconds, seconds, f"{stem}.seg{i:03d}.npy", min(seconds, duration - i * seconds))
                for i in range(count)
            ]
    return clips, failures


def failure(track: Track, reason: str) -> dict:
    return {"track_id": track.track_id, "audio": str(track.audio), "reason": reason}


def assign_splits(tracks: list[Track], fractions, seed: int) -> dict[str, str]:
    """track id -> split: the official split where the dataset has one, else a seeded random one by track, so all
    segments of a track land in the same split."""
    drawn = {t.track_id: t.split for t in random_split([t for t in tracks if t.split is None], fractions, seed)}
    return {t.track_id: t.split or drawn[t.track_id] for t in tracks}


class ClipAudio(Dataset):
    """Decodes clips in DataLoader workers; errors come back as values so one bad file never stops the run."""

    def __init__(self, clips: list[Excerpt], sample_rate: int, silence_threshold: float):
        self.clips, self.sample_rate, self.silence_threshold = clips, sample_rate, silence_threshold

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Decoded:
        clip = self.clips[i]
        try:
            audio = load_audio(clip.track.audio, self.sample_rate, offset_s=clip.offset_s, duration_s=clip.duration_s)
        except AudioError as err:
            return Decoded(clip, error=str(err))
        if not np.isfinite(audio).all():
            return Decoded(clip, error="audio contains NaN or inf samples")
        if np.abs(audio).max(initial=0.0) < self.silence_threshold:
            return Decoded(clip, error=f"silent: peak below {self.silence_threshold:g}")
        return Decoded(clip, audio=audio)


def existing_frames(path: Path, feature_dim: int, dtype: np.dtype) -> int | None:
    """Frames of a feature file from an earlier run, if it is stored in ``dtype``, passes every check of
    :mod:`m3bert.data.validation` (so the manifests written from it can be recorded as validated) and has its clip
    statistics (folders from before clip statistics existed are re-extracted); None to extract it again."""
    try:
        array = np.load(path, mmap_mode="r")
        check_shape(array, str(path), feature_dim, array.shape[0] if array.ndim else 0, None)
        check_finite(array, str(path))
        stats = np.load(prepared.stats_path(path), mmap_mode="r")
    except (OSError, ValueError, EOFError):  # ManifestError is a ValueError
        return None
    if stats.shape != (2, feature_dim):
        return None
    return array.shape[0] if array.dtype == dtype else None


def save_features(path: Path, features: np.ndarray, stats: np.ndarray) -> None:
    # Statistics first: a feature file that exists always has its statistics (existing_frames checks both).
    write_npy(stats, prepared.stats_path(path))
    write_npy(features, path)


def write_dataset_statistics(rows: list[dict], out: Path, feature_dim: int) -> dict[str, Any]:
    """``<out>/normalization.npz`` from the clip statistics of the training split (all clips if it has none)."""
    split = "train" if any(r["split"] == "train" for r in rows) else "all"
    chosen = [r for r in rows if split == "all" or r["split"] == "train"]
    if not chosen:
        return {}
    stats = np.stack([np.load(prepared.stats_path(out / r["file_path"])) for r in chosen])
    frames = np.array([r["length"] for r in chosen])
    mean, std = dataset_statistics(stats, frames)
    write_npz(out / prepared.NORMALIZATION, mean=mean.astype(np.float32), std=std.astype(np.float32))
    return {"file": prepared.NORMALIZATION, "split": split, "clips": len(chosen), "frames": int(frames.sum())}


def manifest_row(clip: Excerpt, frames: int, split: str) -> dict[str, Any]:
    return {
        "file_path": clip.name,
        "length": frames,
        "track_id": clip.track.track_id,
        "split": split,
        "audio": str(clip.track.audio),
        "offset_s": clip.offset_s,
        "duration_s": round(clip.seconds, 3),
        **clip.track.labels,
    }


def write_features(
    clips: list[Excerpt],
    splits: dict[str, str],
    extractor: torch.nn.Module,
    out: Path,
    *,
    workers: int,
    batch_size: int,
    silence_threshold: float,
    device: torch.device,
    progress: bool,
    dtype: np.dtype = np.dtype(np.float32),
) -> Outcome:
    from tqdm import tqdm

    outcome = Outcome()
    todo = []
    for clip in clips:
        frames = existing_frames(out / clip.name, extractor.feature_dim, dtype)
        if frames is None:
            todo.append(clip)
        else:
            outcome.rows.append(manifest_row(clip, frames, splits[clip.track.track_id]))
            outcome.reused += 1
    if outcome.reused:
        log.info("Reusing %d feature files from an earlier run; %d clips to extract", outcome.reused, len(todo))
    loader = DataLoader(
        ClipAudio(todo, extractor.sample_rate, silence_threshold),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
    )
    bar = tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True, desc="features")
    started = time.perf_counter()
    for batch in loader:
        good = [d for d in batch if d.audio is not None]
        outcome.failures += [failure(d.clip.track, d.error) for d in batch if d.error is not None]
        if good:
            lengths = torch.tensor([len(d.audio) for d in good])
            waves = torch.zeros(len(good), int(lengths.max()))
            for row, d in enumerate(good):
                waves[row, : len(d.audio)] = torch.from_numpy(d.audio)
            features, frame_lengths, stats = extractor.with_stats(waves.to(device), lengths.to(device))
            features, frame_lengths = features.float().cpu().numpy(), frame_lengths.cpu().tolist()
            stats = stats.float().cpu().numpy()
            for row, d in enumerate(good):
                values = features[row, : frame_lengths[row]]
                # Never saved: it would poison every batch it lands in.
                if not (np.isfinite(values).all() and np.isfinite(stats[row]).all()):
                    outcome.failures.append(failure(d.clip.track, "features contain NaN or inf"))
                    continue
                if len(values) == 0:
                    outcome.failures.append(failure(d.clip.track, "no frames"))
                    continue
                values = values.astype(dtype, copy=False)
                if not np.isfinite(values).all():
                    outcome.failures.append(failure(d.clip.track, f"features overflow {dtype}; use dtype=float32"))
                    continue
                save_features(out / d.clip.name, values, stats[row])
                seconds = len(d.audio) / extractor.sample_rate
                outcome.seconds += seconds
                outcome.rows.append(manifest_row(d.clip, len(values), splits[d.clip.track.track_id]))
        bar.update(len(batch))
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(
            files_s=f"{bar.n / elapsed:.1f}",
            audio_h_s=f"{outcome.seconds / 3600 / elapsed:.3f}",
            failed=len(outcome.failures),
        )
    bar.close()
    return outcome


def write_manifest(rows: list[dict], path: Path, columns: list[str], feature_dim: int) -> None:
    """A manifest of clips whose files this run checked (shape, frames, finite values), recorded as validated so
    that training opens none of them at start-up."""
    content = pd.DataFrame(rows, columns=columns).to_csv(index=False).encode()
    write_bytes(content, path)
    if rows:
        record_validated(path.parent, path.name, manifest_key(content, feature_dim), len(rows), by="prepare")


def feature_dtype(name: str) -> np.dtype:
    if name not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {name!r}")
    return np.dtype(name)


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Run the extraction that ``cfg`` describes; returns the summary also written to ``<out>/summary.json``."""
    check_prepare_config(cfg)
    started = time.perf_counter()
    out = Path(cfg.out)
    for stale in remove_stale_temp_files(out / prepared.FEATURES, recursive=True) + remove_stale_temp_files(out):
        log.warning("Removed %s, a partial file of an interrupted run", stale)
    tracks: list[Track] = list(instantiate(cfg.dataset.source))
    if cfg.limit:
        tracks = tracks[: cfg.limit]
    if not tracks:
        raise ValueError(f"dataset {cfg.dataset.source.root}: the adapter found no audio files")
    ids = Counter(t.track_id for t in tracks)
    if len(ids) < len(tracks):
        raise ValueError(f"duplicate track ids, e.g. {ids.most_common(1)[0][0]!r}: feature files would collide")
    device = resolve_device(cfg.device)
    extractor = (
        build_feature_extractor(cfg.features.name, cfg.features.sample_rate, hop_length=cfg.features.hop_length)
        .to(device)
        .eval()
    )
    if extractor.feature_dim != cfg.dataset.feature_dim:
        raise ValueError(
            f"features give {extractor.feature_dim} channels but dataset.feature_dim="
            f"{cfg.dataset.feature_dim}; set them to agree"
        )
    log.info(
        "%d tracks from %s -> %s (%s features on %s)", len(tracks), cfg.dataset.source.root, out, extractor.name, device
    )

    clips, failures = plan_clips(tracks, cfg.clip.policy, cfg.clip.seconds, cfg.clip.min_seconds)
    splits = assign_splits(tracks, list(cfg.split.fractions), cfg.split.seed)
    outcome = write_features(
        clips,
        splits,
        extractor,
        out,
        workers=cfg.workers,
        batch_size=cfg.batch_size,
        silence_threshold=cfg.silence_threshold,
        dtype=feature_dtype(cfg.dtype),
        device=device,
        progress=cfg.progress,
    )
    failures += outcome.failures
    reasons = Counter(f["reason"].split(":")[0] for f in failures)
    if not outcome.rows:
        # Nothing to train on: say why instead of writing empty manifests over an earlier run's.
        write_rows(failures, out / prepared.FAILURES, columns=["track_id", "audio", "reason"])
        counted = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        raise ValueError(
            f"{out}: no clip was prepared from {len(tracks)} tracks ({counted}; each file and reason in "
            f"{out / prepared.FAILURES}); fix or remove those files, or lower clip.min_seconds for short ones"
        )

    rows = sorted(outcome.rows, key=lambda r: r["file_path"])
    columns = list(dict.fromkeys(key for row in rows for key in row))  # a label only some clips carry included
    write_manifest(rows, out / prepared.MANIFEST, columns, extractor.feature_dim)
    for split in prepared.SPLITS:
        chosen = [r for r in rows if r["split"] == split]
        write_manifest(chosen, prepared.split_manifest(out, split), columns, extractor.feature_dim)
    write_rows(failures, out / prepared.FAILURES, columns=["track_id", "audio", "reason"])
    normalization = write_dataset_statistics(rows, out, extractor.feature_dim)
    summary = {
        "dataset": cfg.dataset.source._target_,
        "features": extractor.name,
        "feature_dim": extractor.feature_dim,
        "tracks": len(tracks),
        "clips": len(rows),
        "reused": outcome.reused,
        "failures": len(failures),
        "failures_by_reason": dict(reasons),
        "splits": dict(Counter(r["split"] for r in rows)),
        "audio_hours": sum(r["duration_s"] for r in rows) / 3600,
        "extracted_audio_hours": outcome.seconds / 3600,
        "wall_time_s": time.perf_counter() - started,
        "clip_policy": cfg.clip.policy,
        "dtype": cfg.dtype,
        # Features are stored normalised per file; these statistics serve features.normalization=dataset.
        "stored_normalization": "per_file",
        "normalization": normalization,
        "device": str(device),
    }
    write_json(summary, out / prepared.SUMMARY)
    log.info(
        "%d clips (%.2f h of audio, %d reused), %d failures%s; manifests in %s",
        len(rows),
        summary["audio_hours"],
        outcome.reused,
        len(failures),
        f" ({dict(reasons)}, see failures.csv)" if failures else "",
        out,
    )
    return summary


@hydra.main(config_path=config_dir(), config_name="prepare", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
