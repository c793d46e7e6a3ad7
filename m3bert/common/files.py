"""Writing files so that a crash, a kill or a full disk never leaves a truncated file or loses the previous one.

Everything m3bert writes goes through :func:`atomic_write`: the bytes go to a temporary file beside the target,
which is renamed over it only once complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from m3bert.common.errors import DiskFullError, is_disk_full

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
SET_ASIDE = ".old-"  # <name>.old-<time>: an output that could not be reused, kept instead of deleted


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``.

    Raises:
        DiskFullError: no space left; ``path`` keeps its earlier content and no temporary file remains.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise
    # mkstemp makes the file private (0600); give it the permissions an ordinary new file gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        # torch.save's zip writer reports a full disk as "unexpected pos N vs M" (a RuntimeError, no errno): the
        # file system's free space, looked at before the partial file is deleted, tells.
        full = is_disk_full(err) or (isinstance(err, (OSError, RuntimeError)) and nearly_full(path.parent))
        Path(tmp).unlink(missing_ok=True)
        if full and not isinstance(err, DiskFullError):
            raise DiskFullError(path) from err
        raise


def nearly_full(folder: str | os.PathLike, margin: int = 1 << 20) -> bool:
    """Whether the file system of ``folder`` has less than ``margin`` bytes left for this user."""
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False
    return stat.f_bavail * stat.f_frsize < margin


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def write_text(text: str, path: str | os.PathLike) -> None:
    write_bytes(text.encode(), path)


def write_json(data: Any, path: str | os.PathLike) -> None:
    write_text(json.dumps(data, indent=2, sort_keys=True), path)


def write_csv(table, path: str | os.PathLike) -> None:
    """A pandas DataFrame as csv, without its index."""
    write_text(table.to_csv(index=False), path)


def write_rows(rows: list[dict], path: str | os.PathLike, columns: list[str] | None = None) -> None:
    """Rows (dicts) as csv with ``columns`` (default: the rows' keys); the header is written even without rows."""
    import pandas as pd  # here: most users of this module never write a table

    write_csv(pd.DataFrame(rows, columns=columns), path)


def write_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: np.save(handle, array))


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def append_text(text: str, path: str | os.PathLike) -> None:
    """Append to a log file (``log.jsonl``); a line cut short by a kill or a full disk is dropped by its reader.

    Raises:
        DiskFullError: no space left.
    """
    try:
        with open(path, "a") as handle:
            handle.write(text)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise


def reserve(path: str | os.PathLike) -> None:
    """Allocate the blocks of a (sparse) file up front, so that a full disk is an error now rather than a SIGBUS
    when a memory map of the file is written later (Linux; a no-op where ``posix_fallocate`` is missing).

    Raises:
        DiskFullError: no space left for the whole file.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` calls killed mid-write left in ``folder`` (and its
    subfolders with ``recursive``). Only for a folder that one run writes at a time: another run's temporary files
    would go too."""
    folder = Path(folder)
    pattern = f"**/.*{TEMP_SUFFIX}" if recursive else f".*{TEMP_SUFFIX}"
    stale = sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def set_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename an output that must not be reused (it was made ``why``, e.g. "with another recipe (optimizer.lr)") to
    ``<name>.old-<time>``, so it is redone and nothing is lost; returns the new path."""
    path = Path(path)
    aside = path.with_name(f"{path.name}{SET_ASIDE}{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    log.warning("%s was made %s: moved it to %s; redoing it", path, why, aside)
    return aside
