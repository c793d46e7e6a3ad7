"""A stage's figures: each metric against every numeric swept key, every configuration's metrics as mean ± std
with each run's value beside it (the spread, not just its summary), and every run's loss curves."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from m3bert.common.stats import mean_std
from m3bert.report.compare import Row, StageComparison

MAX_SWEPT = 2  # numeric keys that get a metric-against-value figure each


def _numeric(values: Sequence) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def numeric_keys(comparison: StageComparison) -> list[str]:
    """Swept keys with numbers for values (several of them): those get a metric-against-value plot."""
    values = comparison.values
    return [k for k in comparison.keys if _numeric([v[k] for v in values]) and len({v[k] for v in values}) > 1]


def _label(cells: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cells.items()) or "all runs"


def _versus(comparison: StageComparison, key: str, metrics: list[str], rows: list[Row], plt):
    """Each metric against ``key``'s values, a line per value of the other keys: mean ± std and every run."""
    cols = min(3, len(metrics))
    fig, axes = plt.subplots(
        math.ceil(len(metrics) / cols), cols, figsize=(4.5 * cols, 3.5 * math.ceil(len(metrics) / cols)),
        squeeze=False, constrained_layout=True,
    )  # fmt: skip
    others = [k for k in comparison.keys if k != key]
    lines: dict[str, list[Row]] = {}
    for row in rows:
        if row.raw[key] is not None:
            lines.setdefault(_label({k: row.cells[k] for k in others}), []).append(row)
    for ax, metric in zip(axes.flat, metrics):
        for i, (label, members) in enumerate(lines.items()):
            points = sorted((row.raw[key], comparison.samples(row, metric)) for row in members)
            points = [(x, values) for x, values in points if values]
            if not points:
                continue
            xs = [x for x, _ in points]
            stats = [mean_std(values) for _, values in points]
            ax.errorbar(
                xs, [m for m, _, _ in stats], yerr=[0 if math.isnan(s) else s for _, s, _ in stats],
                marker="o", capsize=3, color=f"C{i % 10}", label=label if others else None,
            )  # fmt: skip
            for x, values in points:
                ax.plot([x] * len(values), values, "x", color=f"C{i % 10}", alpha=0.5, markersize=4)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"{comparison.stage}: mean ± std over seeds (x: each run)")
    return fig


def _dots(comparison: StageComparison, metrics: list[str], rows: list[Row], plt):
    """One line per configuration and a panel per metric: mean ± std as a dot with an error bar and each run's
    value as a cross, so long labels stay readable and the axes zoom to the spread instead of starting at 0."""
    labels = [textwrap.fill(row.label(), 80) for row in rows]
    height = 0.6 + 0.22 * sum(label.count("\n") + 1 for label in labels)
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5 + 2.6 * len(metrics), max(2.5, height)), sharey=True, squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    for ax, metric in zip(axes[0], metrics):
        for j, row in enumerate(rows):
            values = comparison.samples(row, metric)
            if not values:
                continue
            mean, std, _ = mean_std(values)
            ax.errorbar(mean, j, xerr=0 if math.isnan(std) else std, fmt="o", capsize=2, color=f"C{j % 10}")
            ax.plot(values, [j] * len(values), "x", color=f"C{j % 10}", alpha=0.5, markersize=4)
        ax.set_title(metric, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(rows)), labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{comparison.stage}: mean ± std over seeds (x: each run)")
    return fig


def _losses(comparison: StageComparison, plt):
    rows = [(row, comparison.runs[i]) for row in comparison.rows() for i in row.runs]
    rows = [(row, run) for row, run in rows if any("train/loss" in r for r in run.history)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(row.label() for row, _ in rows))}
    shown = set()
    for row, run in rows:
        label = row.label()
        for key, style in (("train/loss", "-"), ("val/loss", "--")):
            points = [(r["step"], r[key]) for r in run.history if key in r]
            if points:
                steps, ys = zip(*points)
                name = f"{label} ({key})" if (label, key) not in shown else None
                shown.add((label, key))
                ax.plot(steps, ys, style, color=colours[label], linewidth=1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(f"{comparison.stage}: loss of every run (solid: train, dashed: validation)")
    return fig


def figures(comparison: StageComparison, folder: Path) -> list[Path]:
    """The stage's figures in ``folder`` (``<stage>_vs_<key>.png``, ``<stage>_bars.png``, ``<stage>_loss.png``);
    returns the paths written."""
    import matplotlib.pyplot as plt

    from m3bert.common.figures import save_figure

    written = []
    rows = comparison.rows()
    metrics = [m for m in comparison.metrics if any(comparison.samples(row, m) for row in rows)]
    numeric = numeric_keys(comparison)
    # A metric against a key's values reads as a curve for a sweep of one or two keys; with more numeric keys the
    # runs are an ablation (each row changes something else) and the per-configuration plot says it better.
    swept = numeric if len(numeric) <= MAX_SWEPT else []
    made = {f"{comparison.stage}_vs_{key}": _versus(comparison, key, metrics, rows, plt) for key in swept if metrics}
    if metrics and (len(swept) < len(comparison.keys) or not swept):
        made[f"{comparison.stage}_bars"] = _dots(comparison, metrics, rows, plt)
    made[f"{comparison.stage}_loss"] = _losses(comparison, plt)
    for name, fig in made.items():
        if fig is not None:
            save_figure(fig, folder / f"{name}.png", dpi=90)
            written.append(folder / f"{name}.png")
    return written
