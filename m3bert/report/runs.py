"""The runs a report compares, as :class:`Run`: from run folders (``run.json``, see
:mod:`m3bert.training.records`) or, in :mod:`.wandb`, from W&B."""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3bert.common.errors import UserError
from m3bert.common.files import SET_ASIDE
from m3bert.training import records


@dataclass
class Run:
    """One run as the report sees it, from a run folder or a W&B run."""

    name: str  # the run folder (or W&B run name)
    status: str  # finished | failed | unfinished
    stage: str  # whatever stage its record names: pretrain, finetune, probe, evaluate, ...
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # test, then best, then final values
    history: list[dict[str, Any]] = field(default_factory=list)  # log rows with "step"
    error: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # what produced it (records.environment's fields)

    def __post_init__(self):
        self.config = measured_config(self.stage, self.config)

    @property
    def seed(self):
        return self.config.get("seed")


def measured_config(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without what the run did not use: a fine-tuning run whose encoder comes from its checkpoint
    (frozen, finetune) or that has none (baseline) never built the recipe's ``model``, so that key would describe
    another encoder than the one measured (``encoder.checkpoint`` says which it was)."""
    if stage != "finetune" or (config.get("encoder") or {}).get("mode", "scratch") == "scratch":
        return config
    out = {k: v for k, v in config.items() if k != "model"}
    if isinstance(out.get("objective"), dict):
        out["objective"] = {k: v for k, v in out["objective"].items() if k != "model"}
    return out


def flat_metrics(final: dict | None, best: dict | None, test: dict | None) -> dict[str, float]:
    """One value per metric: test metrics, else the best (monitored) value, else the last logged one."""
    out: dict[str, float] = {}
    for part in (final or {}, {k: v for k, v in (best or {}).items() if k != "step"}, test or {}):
        out.update({k: float(v) for k, v in part.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return out


def load_run(folder: Path) -> Run:
    """The run of a folder holding ``run.json``. Any stage a record names is read; a record that keeps its test
    metrics at the top level (``"test": {...}``, as evaluation records do) counts them as the run's test metrics."""
    record = records.read(folder)
    if record is None:
        raise FileNotFoundError(f"{folder}: no {records.RECORD} (not a run folder)")
    metrics = record.get("metrics") or {}
    history = []
    log_file = folder / "log.jsonl"
    if log_file.is_file():
        history = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    status = record.get("status") or "unfinished"
    status = "unfinished" if status in ("running", "preempted") else status
    try:
        name = str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        name = str(folder)
    return Run(
        name=name,
        status=status,
        stage=record.get("stage") or "pretrain",
        config=record.get("config") or {},
        metrics=flat_metrics(metrics.get("final"), metrics.get("best"), metrics.get("test") or record.get("test")),
        history=history,
        error=record.get("error"),
        environment=records.environment_of(record),
    )


def find_runs(inputs: Sequence[str]) -> list[Run]:
    """Every run in or below the inputs (folders, ``run.json`` files, globs), each once; a clear error for an
    input without any run."""
    if not inputs:
        raise UserError("no INPUT given: name run folders, multirun folders or globs (see --help)")
    folders: dict[Path, None] = {}
    tables: list[Path] = []
    for item in inputs:
        paths = [Path(p) for p in sorted(glob.glob(item, recursive=True))] or [Path(item)]
        found = []
        for path in paths:
            if path.is_file() and path.suffix == ".csv":
                tables.append(path)
                found.append(path)
            elif path.is_file() and path.name == records.RECORD:
                found.append(path.parent)
            elif path.is_dir():
                found.extend(sorted(p.parent for p in path.rglob(records.RECORD) if not _aside(p.relative_to(path))))
        if not found:
            problem = "does not exist" if not any(p.exists() for p in paths) else f"holds no run ({records.RECORD})"
            raise FileNotFoundError(
                f"{item}: {problem}; INPUT must be a run folder (one with {records.RECORD}, written by python -m "
                "m3bert.train), a folder with runs below it, a report's results.csv, or a glob of those"
            )
        folders.update(dict.fromkeys(p.resolve() for p in found if p not in tables))
    return [load_run(folder) for folder in folders] + [run for table in tables for run in runs_from_results(table)]


def _aside(path: Path) -> bool:
    """Whether a run found below an input is not one of its runs: W&B's own files, or an output set aside
    (``<name>.old-<time>``, :func:`m3bert.common.files.set_aside`)."""
    return "wandb" in path.parts or any(SET_ASIDE in part for part in path.parts)


def runs_from_results(path: Path) -> list[Run]:
    """The finished runs of a report's ``results.csv`` (one row per run and metric), so a report can be
    regenerated where the run folders are gone (``docs/results``). Each run's config holds the keys the table
    kept (the differing ones), a run's empty cell meaning the run lacked the key; no loss curves, no provenance
    (the csv has neither). Cells read back as written: ``5e-4`` a float, ``4`` an int, ``rotary`` a string. A
    column of whole numbers written as ``32.0`` (older reports, where pandas turned an int column with gaps into
    floats) reads as ints."""
    import pandas as pd

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"stage", "run", "metric", "value"}
    if not needed <= set(table.columns):
        raise UserError(
            f"{path}: not a report's results.csv (it lacks {', '.join(sorted(needed - set(table.columns)))})"
        )
    keys = [c for c in table.columns if c not in ("stage", "run", "seed", "metric", "value")]
    whole = {k for k in keys if any(table[k]) and all(_whole(v) for v in table[k] if v)}
    out = []
    for (stage, name), part in table.groupby(["stage", "run"], sort=False):
        first = part.iloc[0]
        config: dict[str, Any] = {"seed": _cell(first.get("seed", ""))}
        for key in keys:
            *parents, leaf = key.split(".")
            node = config
            for section in parents:  # a run that lacks a key still has its sections (model, without model.positions)
                node = node.setdefault(section, {})
            if first[key]:
                node[leaf] = int(float(first[key])) if key in whole else _cell(first[key])
        metrics = {row.metric: float(row.value) for row in part.itertuples() if row.value}
        out.append(Run(name=name, status="finished", stage=stage, config=config, metrics=metrics))
    return out


def _whole(text: str) -> bool:
    try:
        return float(text).is_integer() and "e" not in text.lower()
    except ValueError:
        return False


def _cell(text: str) -> Any:
    """A csv cell as the value it stands for: int, float, bool, None, or the string itself."""
    special = {"true": True, "false": False, "null": None, "": None}
    if text in special:
        return special[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
