"""Benchmark: the training data path at scale.

    python -m benchmarks --only loader          # bench-results/loader.json

- **Start-up**: building :class:`m3bert.data.ManifestDataset` on a validated synthetic manifest of ``rows`` rows
  with the columns ``prepare`` writes (time and resident memory; ``startup_s_1m_extrapolated`` scales it linearly
  to a million rows). A validated folder opens no feature file at start-up, so the files need not exist here.
- **Validation pass**: the one-time check (headers and NaN scan) of a folder without ``validated.json``, files/s.
- **Crops per second per worker**: what one DataLoader worker produces (``dataset[key]`` for 512-frame random crops
  and ``collate`` into batches) from files in the page cache, for float32 files, float16 files and the packed
  layout (float32 shards).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from m3bert.common import prepared
from m3bert.common.files import write_bytes
from m3bert.common.tables import rounded
from m3bert.data import ManifestDataset, collate
from m3bert.data.packing import pack
from m3bert.data.validation import manifest_key, record_validated

FEATURE_DIM = 324
CLIP_FRAMES = 1292  # 30 s at about 43 frames/s
CROP = 512


def rss_mb() -> float:
    """Resident memory of this process, from /proc (Linux); nan elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_manifest(folder: Path, rows: int, seed: int = 0) -> Path:
    """A validated ``train.csv`` of ``rows`` rows shaped like prepare's (paths, lengths, ids, audio, labels)."""
    rng = np.random.default_rng(seed)
    ids = [f"TR{i:07d}" for i in range(rows)]
    table = pd.DataFrame(
        {
            "file_path": [f"{prepared.feature_stem(i)}.npy" for i in ids],
            "length": rng.integers(CLIP_FRAMES - 200, CLIP_FRAMES + 1, rows),
            "track_id": ids,
            "split": "train",
            "audio": [f"audio/{i[2:4]}/{i}.mp3" for i in ids],
            "offset_s": 0.0,
            "duration_s": 30.0,
            "genre": rng.choice(["rock", "jazz", "pop", "electronic", "classical"], rows),
        }
    )
    content = table.to_csv(index=False).encode()
    manifest = prepared.split_manifest(folder, "train")
    write_bytes(content, manifest)
    record_validated(folder, manifest.name, manifest_key(content, FEATURE_DIM), rows, by="bench")
    return manifest


def startup(folder: Path, rows: int) -> dict:
    manifest = synthetic_manifest(folder, rows)
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    data = ManifestDataset(str(manifest), FEATURE_DIM, max_frames=CROP)
    seconds = time.perf_counter() - started
    memory = rss_mb() - before
    assert len(data) == rows
    return {
        "rows": rows,
        "startup_s": rounded(seconds),
        "startup_s_1m_extrapolated": rounded(seconds * 1e6 / rows),
        "startup_rss_mb": round(memory, 1),
        "startup_rss_mb_1m_extrapolated": round(memory * 1e6 / rows, 1),
        "manifest_mb": round(manifest.stat().st_size / 2**20, 1),
        "feature_files_opened": 0,
    }


def feature_folder(folder: Path, clips: int, dtype: str, seed: int = 0) -> Path:
    """``clips`` real 30-s feature files and a manifest (not yet validated)."""
    rng = np.random.default_rng(seed)
    (folder / prepared.FEATURES).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(clips):
        values = rng.standard_normal((CLIP_FRAMES, FEATURE_DIM), dtype=np.float32).astype(dtype)
        file = f"{prepared.feature_stem(f'{i:05d}')}.npy"
        np.save(folder / file, values)
        rows.append({"file_path": file, "length": CLIP_FRAMES, "split": "train"})
    pd.DataFrame(rows).to_csv(folder / prepared.MANIFEST, index=False)
    pd.DataFrame(rows).to_csv(prepared.split_manifest(folder, "train"), index=False)
    return folder


def crops_per_s(manifest: Path, crops: int, batch: int = 16) -> float:
    """Random 512-frame crops per second, collated into batches, in one thread as in a DataLoader worker."""
    data = ManifestDataset(str(manifest), FEATURE_DIM, max_frames=CROP)
    for row in range(len(data)):  # page cache warm: this is the from-cache rate
        data[row]
    keys = [(int(r), 0, e) for e, r in enumerate(np.random.default_rng(1).integers(0, len(data), crops))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what DataLoader sets in its workers
    try:
        started = time.perf_counter()
        for first in range(0, crops, batch):
            collate([data[k] for k in keys[first : first + batch]])
        return crops / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)


def run(rows: int = 200_000, clips: int = 64, crops: int = 2000) -> dict:
    with tempfile.TemporaryDirectory(prefix="m3bert-loader-") as tmp:
        tmp = Path(tmp)
        (tmp / "startup").mkdir()
        result = startup(tmp / "startup", rows)
        per_worker, validation = {}, {}
        for dtype in ("float32", "float16"):
            folder = feature_folder(tmp / dtype, clips, dtype)
            started = time.perf_counter()
            ManifestDataset(str(prepared.split_manifest(folder, "train")), FEATURE_DIM)  # the one-time validation pass
            validation[dtype] = rounded(clips / (time.perf_counter() - started))
            per_worker[dtype] = rounded(crops_per_s(prepared.split_manifest(folder, "train"), crops))
        pack(tmp / "float32", tmp / "packed", FEATURE_DIM, shard_mb=64)
        per_worker["packed"] = rounded(crops_per_s(prepared.split_manifest(tmp / "packed", "train"), crops))
    return {
        **result,
        "crop_frames": CROP,
        "clip_frames": CLIP_FRAMES,
        "feature_dim": FEATURE_DIM,
        "clips_in_cache": clips,
        "crops_per_s_per_worker": per_worker["float32"],
        "crops_per_s_per_worker_by_layout": per_worker,
        "validation_files_per_s": validation,
        "bytes_per_30s_clip": {"float32": CLIP_FRAMES * FEATURE_DIM * 4, "float16": CLIP_FRAMES * FEATURE_DIM * 2},
        "targets": {"startup_s_1m_extrapolated": "< 20", "crops_per_s_per_worker": ">= 1000"},
    }
