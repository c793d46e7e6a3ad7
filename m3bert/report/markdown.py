"""``report.md`` and ``results.csv``: the counts first, the environment the runs ran in, then per stage its table,
its significance against the reference row, its figures and the runs that did not finish."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from m3bert.common.stats import LEVEL
from m3bert.common.tables import markdown_table
from m3bert.report.compare import STATUSES, StageComparison, check_counts, compare, format_reference
from m3bert.report.figures import figures
from m3bert.report.runs import Run
from m3bert.training.records import IGNORED_KEYS

# Provenance fields the environment block shows, and those whose difference within a table makes its rows
# incomparable (the same recipe gives other numbers in bf16 than in fp32, on another device or other code).
ENVIRONMENT_FIELDS = ("precision", "device", "cpu", "threads", "torch", "git_commit", "git_dirty")
MUST_AGREE = ("precision", "device", "git_commit")
UNRECORDED = "unrecorded"


def environment_values(runs: Sequence[Run], name: str) -> Counter:
    """How many of ``runs`` have each value of provenance field ``name`` (:data:`UNRECORDED` where a record
    predates it); commits are shortened to 7 characters, ``git_dirty`` reads ``dirty`` or ``clean``."""

    def value(run: Run) -> str:
        found = run.environment.get(name)
        if found is None:
            return UNRECORDED
        if name == "git_commit":
            return str(found)[:7]
        if name == "git_dirty":
            return "dirty" if found else "clean"
        return str(found)

    return Counter(value(run) for run in runs)


def _counted(values: Counter) -> str:
    if len(values) == 1:
        return f"`{next(iter(values))}`"
    return ", ".join(f"`{v}` ({n})" for v, n in values.most_common())


def environment_block(runs: Sequence[Run]) -> list[str]:
    """The environment section: each provenance field's values over the runs, and the total wall time."""
    lines = ["## Environment", ""]
    if all(environment_values(runs, name) == {UNRECORDED: len(runs)} for name in ENVIRONMENT_FIELDS):
        return [
            *lines,
            "Not recorded: these runs' records predate provenance in `run.json`, or were read from a results.csv; "
            "the title or the README says where they ran.",
            "",
        ]
    lines += ["What produced the numbers (from each run's `run.json`; runs per value):", ""]
    lines += [f"- {name}: {_counted(environment_values(runs, name))}" for name in ENVIRONMENT_FIELDS]
    seconds = [run.environment["wall_time_s"] for run in runs if run.environment.get("wall_time_s") is not None]
    if seconds:
        lines.append(f"- wall time of the runs: {sum(seconds) / 60:.1f} min in all ({len(seconds)} runs)")
    return [*lines, ""]


def mixed_environment(runs: Sequence[Run]) -> list[str]:
    """The :data:`MUST_AGREE` fields in which ``runs`` differ (runs without a recorded value aside)."""
    out = []
    for name in MUST_AGREE:
        values = environment_values(runs, name)
        recorded = [v for v in values if v != UNRECORDED]
        if len(recorded) > 1:
            out.append(f"{name} ({', '.join(f'{v}: {values[v]}' for v in sorted(recorded))})")
    return out


def stage_section(comparison: StageComparison, out: Path) -> list[str]:
    finished = [comparison.runs[i] for i in comparison.finished]
    lines = [f"## {comparison.stage}", ""]
    mixed = mixed_environment(finished)
    if mixed:
        lines += [f"**Warning: the runs of this table differ in {'; '.join(mixed)}**: compare its rows with care.", ""]
    if not finished:
        return [*lines, "No finished run.", "", *unfinished_list(comparison)]
    lines += [markdown_table(comparison.table()), ""]
    if comparison.keys:
        copies = sum(len(c) for c in comparison.copies.values())
        lines += [
            "Differing config keys: "
            + ", ".join(f"`{k}`" for k in comparison.keys)
            + (f" ({copies} interpolated copies of these left out)" if copies else "")
            + ".",
            "",
        ]
    if comparison.reference:
        reference = comparison.reference_row()
        named = f"`{format_reference(comparison.reference)}`"
        if reference is None:
            lines += [f"No row of this stage is the reference ({named}).", ""]
        else:
            against = (
                f"the reference row ({named}: {reference.label()})"
                if not comparison.within
                else f"the reference row ({named}) with the same `{', '.join(comparison.within)}`"
            )
            lines += [
                f"Against {against}: difference of the means and Welch's "
                f"t-test (two-sided, unequal variances); a difference holds at {LEVEL:.0%} when p < {LEVEL}. "
                "Rows with fewer than two runs on either side are untested.",
                "",
                markdown_table(comparison.significance()),
                "",
            ]
    for path in figures(comparison, out / "figures"):
        lines += [f"![{path.stem}](figures/{path.name})", ""]
    return [*lines, *unfinished_list(comparison)]


def unfinished_list(comparison: StageComparison) -> list[str]:
    if not comparison.unfinished:
        return []
    lines = ["Not finished:", ""]
    for run in comparison.unfinished:
        why = {"unfinished": "unfinished (still running, or killed)"}.get(run.status, run.status)
        lines.append(f"- `{run.name}`: {why}" + (f" — {run.error}" if run.error else ""))
    return [*lines, ""]


def write_report(
    runs: Sequence[Run],
    out: str | Path,
    metrics: Sequence[str] | None = None,
    ignore=IGNORED_KEYS,
    title: str = "Run comparison",
    sources: Sequence[str] = (),
    reference: Mapping[str, str] | None = None,
    within: Sequence[str] = (),
) -> list[StageComparison]:
    """report.md, results.csv and figures/ in ``out`` (see :mod:`m3bert.report`); returns the comparisons. The
    counts at the top must account for every run read (:func:`~m3bert.report.compare.check_counts`)."""
    from m3bert.common.files import write_csv, write_text

    out = Path(out)
    comparisons = compare(runs, metrics, ignore, reference, within)
    counts = check_counts(len(runs), comparisons)
    statuses = Counter(r.status for r in runs)
    lines = [
        f"# {title}",
        "",
        f"{len(runs)} runs ({', '.join(f'{statuses[s]} {s}' for s in STATUSES if s in statuses)})"
        + (f" from {', '.join(f'`{s}`' for s in sources)}" if sources else "")
        + f". Runs read: {counts['read']}; rows: {counts['rows']} holding {counts['in_rows']} runs; listed as "
        f"failed or unfinished: {counts['listed']}.",
        "",
        "Cells: mean ± std over seeds (number of runs), 3 significant digits; `runs`: the row's runs; config "
        "values as configured, – where a run lacks the key; pre-training's val/loss is the best value.",
        "",
        *environment_block(runs),
    ]
    long_tables = []
    for comparison in comparisons:
        lines += stage_section(comparison, out)
        long_tables.append(comparison.long_table())
    filled = [t for t in long_tables if not t.empty]
    long = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame(columns=["stage", "run", "seed", "metric"])
    if "value" not in long.columns:
        long["value"] = []
    front = ["stage", "run", "seed"]
    long = long[front + [c for c in long.columns if c not in (*front, "metric", "value")] + ["metric", "value"]]
    write_csv(long, out / "results.csv")
    write_text("\n".join(lines), out / "report.md")
    return comparisons
