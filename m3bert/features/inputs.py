"""Audio inputs named on a command line (a file, a folder or a manifest csv) and the output id of each: what
``extract``, ``analyze`` and the demo read."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def find_inputs(spec: str | os.PathLike, extensions: list[str], column: str = "audio") -> tuple[list[Path], Path]:
    """Audio files named by ``spec`` (a file, a folder or a manifest csv) and the folder their ids are relative to.

    Raises:
        FileNotFoundError: ``spec`` does not exist. ValueError: a folder without audio, or a csv without ``column``.
    """
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"input={spec}: no such file or folder")
    if path.is_dir():
        wanted = {"." + e.lower().lstrip(".") for e in extensions}
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in wanted
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ValueError(
                f"input={spec}: no audio files ({', '.join(sorted(wanted))}) in the folder; "
                "set extensions=[...] if yours end differently"
            )
        return files, path
    if path.suffix.lower() != ".csv":
        return [path], path.parent
    table = pd.read_csv(path)
    if column not in table.columns:
        raise ValueError(
            f"{path}: no {column!r} column (columns: {list(table.columns)}); "
            f"set manifest_column= to the column that holds the audio paths"
        )
    files = list(dict.fromkeys(p if p.is_absolute() else path.parent / p for p in map(Path, table[column].astype(str))))
    if not files:
        raise ValueError(f"{path}: the manifest lists no files")
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
    return files, root


def assign_ids(files: list[Path], root: Path) -> tuple[dict[Path, str], list[dict]]:
    """file -> output id (its path under ``root`` without the extension), and failures for colliding ids."""
    ids, taken, failures = {}, {}, []
    for file in files:
        try:
            rel = file.resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(file.name)
        name = rel.with_suffix("").as_posix()
        if name in taken:
            failures.append({"audio": str(file), "id": name, "reason": f"same output id as {taken[name]}; rename one"})
            continue
        taken[name] = file
        ids[file] = name
    return ids, failures
