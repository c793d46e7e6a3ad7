"""Runs grouped into a stage's table: one row per configuration, every finished run in exactly one row.

A configuration is the values of the config keys that differ between the stage's runs (``seed`` and the other
:data:`~m3bert.training.records.IGNORED_KEYS` aside), keyed on the union of the runs' keys: a key a run lacks is
shown as absent, never a reason to drop the run. Values are compared and shown exactly as configured
(:func:`m3bert.common.tables.exact`). Against a reference row (``reference=key=value,...``) each row's metrics get
the difference and Welch's t-test (:mod:`m3bert.common.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from m3bert.common.errors import UserError
from m3bert.common.stats import format_mean_std, mean_std, welch
from m3bert.common.tables import ABSENT, exact, significant
from m3bert.report.runs import Run
from m3bert.training.records import IGNORED_KEYS, differing_keys

DEFAULT_METRICS = {"pretrain": ("val/loss",), "finetune": ("test/score",), "probe": ()}
STAGE_ORDER = ("pretrain", "finetune", "evaluate", "probe")  # other stages follow, by name
STATUSES = ("finished", "failed", "unfinished")
_MISSING = object()


class CountMismatch(RuntimeError):
    """The report's rows and lists do not account for every run read: a bug in the report, never bad input."""


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of ``config``, or ``_MISSING`` where the config has no such key."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def shown(value: Any) -> str:
    """A config value as a table cell: exactly as configured, :data:`ABSENT` where the run lacks the key."""
    return ABSENT if value is _MISSING else exact(value)


def drop_copies(columns: dict[str, list]) -> tuple[dict[str, list], dict[str, list[str]]]:
    """Columns without the copies an interpolation makes (``objective.masker.ratio`` of ``masking.ratio``): of
    keys with the same value in every run, the shortest path stays. Returns (columns, kept key -> its copies)."""
    kept: dict[str, list] = {}
    copies: dict[str, list[str]] = {}
    for key in sorted(columns, key=lambda k: (k.count("."), k)):
        twin = next((k for k, v in kept.items() if v == columns[key]), None)
        if twin is None:
            kept[key] = columns[key]
        else:
            copies.setdefault(twin, []).append(key)
    return {k: kept[k] for k in columns if k in kept}, copies


def default_metrics(runs: Sequence[Run], stage: str) -> list[str]:
    """Each task's ``<task>/test/<primary>`` (from the configs' task types, else every ``<task>/test/<m>`` whose
    ``m`` is a primary metric's name) and the stage's headline metrics; a
    stage the report has no defaults for (``evaluate``) shows every test metric its runs have (``test/...``,
    ``<task>/test/...``)."""
    from m3bert.tasks.task import PRIMARY_METRICS

    present = {k for run in runs for k in run.metrics}
    if stage not in DEFAULT_METRICS:
        return sorted(k for k in present if k.startswith("test/") or "/test/" in k)
    names: dict[str, None] = {}
    for run in runs:
        tasks = run.config.get("tasks")
        for task, spec in (tasks if isinstance(tasks, dict) else {}).items():  # a results.csv has the mix's name
            kind = spec.get("type") if isinstance(spec, dict) else None
            if kind in PRIMARY_METRICS:
                names[f"{task}/test/{PRIMARY_METRICS[kind]}"] = None
    if not names:  # configs without task types (runs read from a results.csv): the primaries by their names
        primaries = set(PRIMARY_METRICS.values())
        names.update(dict.fromkeys(sorted(k for k in present if k.count("/") == 2 and k.split("/")[1:] in
                                          [["test", p] for p in primaries])))  # fmt: skip
    names.update(dict.fromkeys(DEFAULT_METRICS[stage]))
    return [name for name in names if name in present]


@dataclass
class Row:
    """One configuration of a stage: its differing keys' values as shown (exact, or absent), the raw values
    (None where absent) and the indices of its finished runs in :attr:`StageComparison.runs`."""

    cells: dict[str, str]
    raw: dict[str, Any]
    runs: list[int]

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.cells.items()) or "all runs"


@dataclass
class StageComparison:
    stage: str
    runs: list[Run]  # every run of the stage, finished or not
    keys: list[str]  # differing config keys (seed aside), interpolated copies left out
    metrics: list[str]
    copies: dict[str, list[str]] = field(default_factory=dict)  # key -> keys always equal to it (not columns)
    reference: dict[str, str] = field(default_factory=dict)  # key -> value naming the reference row
    within: list[str] = field(default_factory=list)  # keys: each row against the reference row sharing their values

    @property
    def finished(self) -> list[int]:
        return [i for i, r in enumerate(self.runs) if r.status == "finished"]

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status != "finished"]

    @property
    def values(self) -> list[dict[str, Any]]:
        """Per run: differing key -> raw value (None where the run lacks the key)."""
        return [{k: _raw(lookup(r.config, k)) for k in self.keys} for r in self.runs]

    def rows(self) -> list[Row]:
        """Every finished run in exactly one row, rows in the order their first run was found."""
        rows: dict[tuple[str, ...], Row] = {}
        for i in self.finished:
            found = [lookup(self.runs[i].config, k) for k in self.keys]
            cells = tuple(shown(v) for v in found)
            if cells not in rows:
                rows[cells] = Row(dict(zip(self.keys, cells)), dict(zip(self.keys, map(_raw, found))), [])
            rows[cells].runs.append(i)
        return list(rows.values())

    def samples(self, row: Row, metric: str) -> list[float]:
        """The row's values of ``metric``, one per run that has it."""
        return [self.runs[i].metrics[metric] for i in row.runs if metric in self.runs[i].metrics]

    def long_table(self) -> pd.DataFrame:
        """One row per finished run and metric: ``stage, run, seed, <differing keys as shown>, metric, value``
        (an absent key is empty, so a csv reader sees a missing value)."""
        out = []
        for row in self.rows():
            cells = {k: (None if v == ABSENT and row.raw[k] is None else v) for k, v in row.cells.items()}
            for i in row.runs:
                run = self.runs[i]
                for metric in self.metrics:
                    if metric in run.metrics:
                        out.append(
                            {"stage": self.stage, "run": run.name, "seed": run.seed, **cells, "metric": metric,
                             "value": run.metrics[metric]}
                        )  # fmt: skip
        return pd.DataFrame(out)

    def table(self) -> pd.DataFrame:
        """The report's table: differing keys, the number of runs in the row, then ``mean ± std (n)`` per
        metric (significant digits as :func:`m3bert.common.tables.significant`)."""
        out = []
        for row in self.rows():
            cells = {**row.cells, "runs": str(len(row.runs))}
            for metric in self.metrics:
                cells[metric] = format_mean_std(*mean_std(self.samples(row, metric)))
            out.append(cells)
        return pd.DataFrame(out, columns=[*self.keys, "runs", *self.metrics])

    def reference_rows(self) -> list[Row]:
        """The rows the ``reference`` names (every run of each matches every key=value)."""
        if not self.reference:
            return []
        return [row for row in self.rows() if all(_matches(self.runs[i].config, self.reference) for i in row.runs)]

    def reference_row(self) -> Row | None:
        """The row the ``reference`` names, or None where no row of this stage does; more than one matching row is
        an error naming them, unless ``within`` groups them (then :meth:`reference_for` picks one per row)."""
        matches = self.reference_rows()
        if len(matches) > 1 and not self.within:
            raise UserError(
                f"reference={format_reference(self.reference)} names {len(matches)} rows of the {self.stage} table "
                f"({'; '.join(r.label() for r in matches)}); add keys until it names one, or compare within groups "
                "with within=KEY,... (e.g. within=model)"
            )
        return matches[0] if matches else None

    def reference_for(self, row: Row) -> Row | None:
        """The reference row ``row`` is compared with: the one reference row, or with ``within``, the reference row
        that has ``row``'s values of those keys (None where there is none; two are an error)."""
        if not self.within:
            return self.reference_row()
        unknown = [k for k in self.within if k not in self.keys]
        if unknown:
            raise UserError(
                f"within={','.join(self.within)}: {', '.join(unknown)} does not differ between the {self.stage} "
                f"runs; group by one of {', '.join(self.keys)}"
            )
        matches = [r for r in self.reference_rows() if all(r.cells[k] == row.cells[k] for k in self.within)]
        if len(matches) > 1:
            raise UserError(
                f"reference={format_reference(self.reference)} within={','.join(self.within)} names "
                f"{len(matches)} rows for {row.label()}; add keys to within until each group has one"
            )
        return matches[0] if matches else None

    def significance(self) -> pd.DataFrame:
        """Every other row against the reference row, per metric: ``mean ± std (n)`` of both, the difference of
        the means, Welch's p-value and whether the difference holds at 5 % (``untested`` where either side has
        fewer than two runs). Empty without a reference row in this stage."""
        columns = [*self.keys, "metric", "mean ± std (n)", "reference", "difference", "p (Welch)", "holds at 5 %"]
        out = []
        references = [r.cells for r in self.reference_rows()]
        for row in self.rows():
            reference = self.reference_for(row)
            if reference is None or row.cells in references:
                continue
            for metric in self.metrics:
                sample, base = self.samples(row, metric), self.samples(reference, metric)
                if not sample or not base:
                    continue
                test = welch(sample, base)
                out.append(
                    {**row.cells, "metric": metric, "mean ± std (n)": format_mean_std(*mean_std(sample)),
                     "reference": format_mean_std(*mean_std(base)), "difference": f"{test.difference:+#.3g}",
                     "p (Welch)": _p_value(test.p), "holds at 5 %": test.verdict()}
                )  # fmt: skip
        return pd.DataFrame(out, columns=columns)


def _p_value(p: float | None) -> str:
    if p is None:
        return ABSENT
    return "– (no spread)" if math.isnan(p) else significant(p, 2)


def _raw(value: Any) -> Any:
    return None if value is _MISSING else value


def _matches(config: Mapping[str, Any], reference: Mapping[str, str]) -> bool:
    for key, wanted in reference.items():
        value = lookup(config, key)
        if value is _MISSING:
            return False
        if exact(value) != wanted and str(value) != wanted and not _same_number(value, wanted):
            return False
    return True


def _same_number(value: Any, text: str) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return float(text) == value
    except ValueError:
        return False


def parse_reference(text: str | None) -> dict[str, str]:
    """``key=value,key=value`` (the ``reference=`` option) as a mapping; an item without '=' is an error."""
    out = {}
    for item in (text or "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"reference={text}: {item!r} is not key=value; write e.g. reference=encoder.mode=baseline")
        out[key] = value
    return out


def format_reference(reference: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in reference.items())


def stage_order(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def compare(
    runs: Sequence[Run],
    metrics: Sequence[str] | None = None,
    ignore: Iterable[str] = IGNORED_KEYS,
    reference: Mapping[str, str] | None = None,
    within: Sequence[str] = (),
) -> list[StageComparison]:
    """One :class:`StageComparison` per stage present (every stage a record names), pretrain, finetune,
    evaluate and probe first. ``metrics`` names the metrics for every stage (each stage shows those its runs
    have); a name no run has is an error, as is a ``reference`` that names no row of any stage. With ``within``
    (config keys), each row is compared with the reference row that shares its values of those keys (e.g. the
    feature floor of each encoder's evaluation: ``reference=embedding=features within=model``)."""
    if metrics:
        present = {k for run in runs for k in run.metrics}
        unknown = [m for m in metrics if m not in present]
        if unknown:
            raise UserError(
                f"metrics={','.join(metrics)}: no run has {', '.join(unknown)}; these runs have "
                f"{', '.join(sorted(present)) or 'no metrics'}"
            )
    out = []
    for stage in sorted({r.stage for r in runs}, key=stage_order):
        part = [r for r in runs if r.stage == stage]
        diff, copies = drop_copies(differing_keys([r.config for r in part], ignore))
        chosen = [m for m in metrics if any(m in r.metrics for r in part)] if metrics else default_metrics(part, stage)
        out.append(StageComparison(stage, part, list(diff), chosen, copies, dict(reference or {}), list(within)))
    for comparison in out:
        comparison.reference_row()  # more than one without within: an error naming them
    if reference and not any(c.reference_rows() for c in out):
        raise UserError(
            f"reference={format_reference(reference)}: no configuration has these values; name a row of the "
            "report's tables (its key=value pairs, e.g. reference=encoder.mode=baseline)"
        )
    return out


def check_counts(runs_read: int, comparisons: Sequence[StageComparison]) -> dict[str, int]:
    """The report's accounting: runs read, rows written, runs in rows (summed) and runs listed as failed or
    unfinished. Raises :class:`CountMismatch` unless every run read is in exactly one row or in a list."""
    in_rows = [i for c in comparisons for row in c.rows() for i in row.runs]
    per_stage = [(c.stage, i) for c in comparisons for row in c.rows() for i in row.runs]
    counts = {
        "read": runs_read,
        "rows": sum(len(c.rows()) for c in comparisons),
        "in_rows": len(in_rows),
        "listed": sum(len(c.unfinished) for c in comparisons),
    }
    finished = sum(len(c.finished) for c in comparisons)
    if len(set(per_stage)) != len(per_stage) or counts["in_rows"] != finished:
        raise CountMismatch(f"{counts['in_rows']} runs in rows for {finished} finished runs (a run lost or repeated)")
    if counts["in_rows"] + counts["listed"] != runs_read:
        raise CountMismatch(
            f"{runs_read} runs read but {counts['in_rows']} in rows and {counts['listed']} listed as not finished"
        )
    return counts
