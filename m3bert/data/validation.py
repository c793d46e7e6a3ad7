"""Checks of prepared feature files, done once per manifest and remembered in ``<folder>/validated.json``.

A manifest row is usable when its file is a readable ``.npy`` of shape ``(frames, feature_dim)``, float32 or
float16, with at least one frame, whose frames agree with the row's ``length`` (for a packed shard: the row's
``offset + length`` frames fit in it) and whose values are all finite. Checking shapes needs only each file's
header; the NaN/inf scan reads every value, so both are done in one pass when a manifest is first used (or by
``python -m m3bert.prepare``, which checks what it writes) and the result is stored keyed by the manifest's
content. A dataset built on a validated manifest opens no file at start-up; the same checks still run, on the
one file, whenever a clip is read, so a file changed after validation fails clearly when it is reached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from m3bert.common.files import write_json
from m3bert.common.prepared import VALIDATED

log = logging.getLogger(__name__)

FORMAT = 1
FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
SCAN_FRAMES = 65_536  # frames per NaN-scan chunk, so a long shard is never read into memory at once


class ManifestError(ValueError):
    """A manifest or one of its feature files is unusable; the message names the file, row and problem."""


def manifest_key(content: bytes, feature_dim: int) -> str:
    """What a stored validation is keyed by: the manifest's bytes and the feature width it was checked for."""
    return hashlib.sha256(content + f"\nfeature_dim={feature_dim}".encode()).hexdigest()


class Header(NamedTuple):
    """What a ``.npy`` header says: enough to check a file against its row and read any frames of it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # bytes before the first value

    @property
    def ndim(self) -> int:
        return len(self.shape)


def read_header(path: str, where: str) -> Header:
    """A feature file's header (one small read; no memory map, whose page faults cost more than the read)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read(handle)
            return Header(shape, dtype, fortran_order, handle.tell())
    except FileNotFoundError as err:
        raise ManifestError(f"{where}: feature file is missing") from err
    except (ValueError, OSError, EOFError) as err:
        raise ManifestError(f"{where}: not a readable .npy file ({err})") from err


def read_frames(path: str, header: Header, first: int, count: int, where: str) -> np.ndarray:
    """Frames ``first:first + count`` of a checked 2-d feature file, ``(count, feature_dim)`` in its dtype: one
    positioned read of just those bytes."""
    if header.fortran_order:  # column-major (np.save of a transposed array): the frames are not contiguous
        return np.array(open_features(path, where)[first : first + count])
    out = np.empty((count, header.shape[1]), header.dtype)
    row_bytes = header.shape[1] * header.dtype.itemsize
    with open(path, "rb", buffering=0) as handle:
        got = os.preadv(handle.fileno(), [memoryview(out).cast("B")], header.data_offset + first * row_bytes)
    if got != out.nbytes:
        raise ManifestError(f"{where}: the file is truncated (its header promises {header.shape[0]} frames)")
    return out


def open_features(path: str, where: str) -> np.ndarray:
    """Memory-map a feature file (reads its header only)."""
    if not os.path.isfile(path):
        raise ManifestError(f"{where}: feature file is missing")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise ManifestError(f"{where}: not a readable .npy file ({err})") from err


def check_shape(array: np.ndarray | Header, where: str, feature_dim: int, length: int, offset: int | None) -> None:
    """Raise :class:`ManifestError` unless ``array`` holds the row's ``length`` frames of ``feature_dim`` floats.

    ``offset`` None: the file is the clip and must have exactly ``length`` frames; else the clip is frames
    ``offset:offset + length`` of a packed shard.
    """
    if array.ndim != 2 or array.shape[1] != feature_dim:
        raise ManifestError(
            f"{where}: shape {tuple(array.shape)}, expected (frames, {feature_dim}); "
            "was it extracted with another feature set? (dataset.feature_dim)"
        )
    if array.dtype not in FEATURE_DTYPES:
        raise ManifestError(f"{where}: dtype {array.dtype}, expected float32 or float16; re-run prepare")
    if array.shape[0] == 0:
        raise ManifestError(f"{where}: the file has no frames; re-extract it or drop its manifest row")
    if offset is None and array.shape[0] != length:
        raise ManifestError(
            f"{where}: the file has {array.shape[0]} frames but the manifest's length says {length}; "
            "re-run prepare (it rewrites the manifest from the files) or fix the row"
        )
    if offset is not None and offset + length > array.shape[0]:
        raise ManifestError(
            f"{where}: frames {offset}:{offset + length} (offset + length) run past the shard's "
            f"{array.shape[0]} frames; re-pack the folder"
        )


def check_finite(values: np.ndarray, where: str) -> None:
    for start in range(0, values.shape[0], SCAN_FRAMES):
        if not np.isfinite(values[start : start + SCAN_FRAMES]).all():
            raise ManifestError(f"{where}: features contain NaN or inf; re-extract this file")


def validate_rows(
    paths: Sequence[str],
    lengths: Sequence[int],
    offsets: Sequence[int] | None,
    feature_dim: int,
    where: Callable[[int], str],
    scan_values: bool = True,
    threads: int = 8,
) -> None:
    """Check every row (see the module docstring); the error of the first bad row, in manifest order, is raised.

    Threads overlap the reads, which is what the pass waits on (above all on network storage); numpy releases the
    GIL while it reads and scans.
    """

    def check(row: int) -> None:
        array = open_features(paths[row], where(row))
        offset = None if offsets is None else int(offsets[row])
        check_shape(array, where(row), feature_dim, int(lengths[row]), offset)
        if scan_values:
            start = offset or 0
            check_finite(array[start : start + int(lengths[row])], where(row))

    block = 4096  # rows in flight at once: a million pending futures would cost more memory than the pass
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for first in range(0, len(paths), block):
            # map yields in row order and re-raises a row's error when its turn comes: the first bad row is named.
            for _ in pool.map(check, range(first, min(first + block, len(paths)))):
                pass


def is_validated(folder: Path, name: str, key: str) -> bool:
    entry = read_record(folder).get(name)
    return isinstance(entry, dict) and entry.get("key") == key and entry.get("nan_scan") is True


def read_record(folder: Path) -> dict:
    path = folder / VALIDATED
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # a damaged record only costs a new validation pass
        log.warning("%s is unreadable (%s); the manifests it covered will be validated again", path, err)
        return {}
    return record.get("manifests", {}) if isinstance(record, dict) and record.get("format") == FORMAT else {}


def record_validated(folder: Path, name: str, key: str, clips: int, by: str) -> None:
    """Remember that manifest ``name`` (a file in ``folder``) with content ``key`` passed every check.

    A folder that cannot be written (a shared, read-only dataset) is not an error: the pass is repeated on next
    use, with a warning saying how to avoid that.
    """
    manifests = read_record(folder)
    manifests[name] = {
        "key": key,
        "clips": clips,
        "nan_scan": True,
        "by": by,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        write_json({"format": FORMAT, "manifests": manifests}, folder / VALIDATED)
    except OSError as err:
        log.warning(
            "could not store the validation of %s in %s (%s); it will be repeated next time. Validate once where "
            "the folder is writable (build any dataset on it) and copy %s along with it",
            folder / name,
            folder / VALIDATED,
            err,
            VALIDATED,
        )
