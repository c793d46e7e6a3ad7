"""The packed layout: many clips back to back in a few large ``.npy`` shards, for network filesystems.

A prepared folder holds one small file per clip; on network storage opening a million files costs more than
reading them. :func:`pack` copies a folder's clips into shards of about ``shard_mb`` MB each,
``shards/shard_NNNNN.npy`` of shape ``(frames, feature_dim)``, and writes the same manifests with ``file_path``
pointing at a clip's shard and an ``offset`` column giving its first frame. :class:`m3bert.data.ManifestDataset`
reads either layout, so training, resume and evaluation are unchanged: a row's clip is the same array.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from m3bert.common.files import atomic_write, write_bytes
from m3bert.common.prepared import CLIP_STATS, MANIFEST, NORMALIZATION, SHARDS, STATS_ROW, manifest_names, stats_path
from m3bert.data.manifest import read_manifest
from m3bert.data.validation import check_finite, check_shape, manifest_key, open_features, record_validated

log = logging.getLogger(__name__)


def pack(source: str | Path, out: str | Path, feature_dim: int, shard_mb: float = 1024.0) -> dict:
    """Pack the clips of ``source/manifest.csv`` into shards in ``out`` and write ``out``'s manifests
    (``manifest.csv`` and each ``<split>.csv`` that ``source`` has), recorded as validated.

    Every clip is checked as it is copied (shape, frames against its row, finite values), so a bad file stops the
    packing with the file and row named. Returns ``{"clips", "shards", "frames"}``.
    """
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError(f"pack: out={out} must differ from the source folder (the manifests would be replaced)")
    table = read_manifest(source / MANIFEST)
    dtypes = set()
    rows_per_shard: list[list[int]] = [[]]
    budget = int(shard_mb * 2**20)
    used = 0
    for row, (path, length) in enumerate(zip(table["file_path"], table["length"])):
        where = f"{source / path} (row {row + 2} of {source / MANIFEST})"
        array = open_features(str(source / path), where)
        check_shape(array, where, feature_dim, int(length), None)
        dtypes.add(array.dtype)
        size = array.nbytes
        if used and used + size > budget:
            rows_per_shard.append([])
            used = 0
        rows_per_shard[-1].append(row)
        used += size
    if len(dtypes) > 1:
        raise ValueError(f"pack: {source} mixes feature dtypes {sorted(map(str, dtypes))}; re-run prepare")
    dtype = dtypes.pop()

    shard_of, offset_of = {}, {}
    for number, rows in enumerate(rows_per_shard):
        name = f"{SHARDS}/shard_{number:05d}.npy"
        frames = int(table["length"].iloc[rows].sum())

        def write(handle, rows=rows, frames=frames, name=name):
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (frames, feature_dim),
            }
            np.lib.format.write_array_header_1_0(handle, header)
            offset = 0
            for row in rows:
                path = table["file_path"].iloc[row]
                values = np.load(source / path, mmap_mode="r")
                check_finite(values, f"{source / path} (row {row + 2} of {source / MANIFEST})")
                handle.write(np.ascontiguousarray(values).tobytes())
                shard_of[path], offset_of[path] = name, offset
                offset += values.shape[0]

        atomic_write(out / name, write)
    log.info("Packed %d clips of %s into %d shard(s) in %s", len(table), source, len(rows_per_shard), out)
    stats_row_of = pack_statistics(source, out, table, feature_dim)

    for manifest in manifest_names():
        if not (source / manifest).is_file():
            continue
        rows = pd.read_csv(source / manifest)
        if rows.empty:
            continue
        missing = sorted(set(rows["file_path"]) - set(shard_of))
        if missing:
            raise ValueError(f"pack: {source / manifest} lists {missing[0]!r}, which {MANIFEST} does not")
        packed = rows.assign(offset=rows["file_path"].map(offset_of), file_path=rows["file_path"].map(shard_of))
        if stats_row_of:
            packed[STATS_ROW] = rows["file_path"].map(stats_row_of)
        content = packed.to_csv(index=False).encode()
        write_bytes(content, out / manifest)
        record_validated(out, manifest, manifest_key(content, feature_dim), len(packed), by="pack")
    return {"clips": len(table), "shards": len(rows_per_shard), "frames": int(table["length"].sum())}


def pack_statistics(source: Path, out: Path, table: pd.DataFrame, feature_dim: int) -> dict[str, int]:
    """Carry the statistics that ``features.normalization=dataset`` needs into the packed folder: the training
    split's ``normalization.npz`` as it is, and every clip's (2, feature_dim) statistics as one array
    ``clip_stats.npy`` of shape (clips, 2, feature_dim) in ``manifest.csv``'s order. Returns ``{file_path: row of
    clip_stats.npy}``, empty where the source folder has no clip statistics (made before prepare wrote them)."""
    if (source / NORMALIZATION).is_file():
        content = (source / NORMALIZATION).read_bytes()
        write_bytes(content, out / NORMALIZATION)
    files = [source / stats_path(path) for path in table["file_path"]]
    if not all(file.is_file() for file in files):
        log.warning("%s has no clip statistics for every clip: the packed folder serves per_file inputs only", source)
        return {}
    stats = np.stack([np.load(file) for file in files]).astype(np.float32)
    if stats.shape[1:] != (2, feature_dim) or not np.isfinite(stats).all():
        raise ValueError(f"pack: {source}'s clip statistics are not finite (2, {feature_dim}) arrays; re-run prepare")
    atomic_write(out / CLIP_STATS, lambda handle: np.save(handle, stats))
    return {path: row for row, path in enumerate(table["file_path"])}
