"""Compare runs: ``python -m m3bert.report INPUT... out=DIR [metrics=a,b] [ignore=k1,k2]``.

INPUT is a run folder, a folder with runs anywhere below it (a multirun, ``experiments/``), or a glob of those
(quoted); a run folder is one holding ``run.json`` (see :mod:`m3bert.training.records`). Or read the runs from W&B:
``wandb=ENTITY/PROJECT [group=SWEEP] [filters=JSON]``, and add ``publish=true`` to also publish a W&B Report with
the comparison panels (needs ``pip install m3bert[wandb-report]`` and an account).

``DIR`` gets

- ``report.md``: one table per stage (pretrain, finetune, probe); its columns are the config keys that differ
  between the stage's runs (read from their resolved configs; ``seed`` aside) and the metrics (default: each task's
  ``<task>/test/<primary metric>`` and ``test/score`` for fine-tuning and probing, ``val/loss`` for pre-training,
  the best value where the metric is monitored); runs that differ only in ``seed`` are one row,
  ``mean ± std (n)``. Failed and unfinished runs are listed under the table;
- ``results.csv``: one row per finished run and metric (``stage, run, seed, <differing keys>, metric, value``);
- ``figures/``: each metric against every numeric swept key (mean ± std over seeds), grouped bars of the metrics
  per configuration, and every run's loss curves.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from m3bert.training.records import IGNORED_KEYS, differing_keys

log = logging.getLogger("m3bert.report")

DEFAULT_METRICS = {"pretrain": ("val/loss",), "finetune": ("test/score",), "probe": ()}
STAGE_ORDER = ("pretrain", "finetune", "probe")
STATUSES = ("finished", "failed", "unfinished")


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table; floats rounded to ``digits``, missing values shown as '–'."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "–" if pd.isna(value) else f"{value:.{digits}f}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


# ---------------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run as the report sees it, from a run folder or a W&B run."""

    name: str  # the run folder (or W&B run name)
    status: str  # finished | failed | unfinished
    stage: str
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # test, then best, then final values
    history: list[dict[str, Any]] = field(default_factory=list)  # log rows with "step"
    error: str | None = None

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
    from m3bert.training import records

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
        metrics=flat_metrics(metrics.get("final"), metrics.get("best"), metrics.get("test")),
        history=history,
        error=record.get("error"),
    )


def find_runs(inputs: Sequence[str]) -> list[Run]:
    """Every run in or below the inputs (folders, ``run.json`` files, globs); a clear error for an input without
    any run."""
    from m3bert.training.records import RECORD

    if not inputs:
        raise ValueError("no INPUT given: name run folders, multirun folders or globs (see --help)")
    folders: dict[Path, None] = {}
    for item in inputs:
        paths = [Path(p) for p in sorted(glob.glob(item, recursive=True))] or [Path(item)]
        found = []
        for path in paths:
            if path.is_file() and path.name == RECORD:
                found.append(path.parent)
            elif path.is_dir():
                found.extend(sorted(p.parent for p in path.rglob(RECORD) if "wandb" not in p.parts))
        if not found:
            problem = "does not exist" if not any(p.exists() for p in paths) else f"holds no run ({RECORD})"
            raise FileNotFoundError(
                f"{item}: {problem}; INPUT must be a run folder (one with {RECORD}, written by python -m "
                "m3bert.train), a folder with runs below it, or a glob of those"
            )
        folders.update(dict.fromkeys(p.resolve() for p in found))
    return [load_run(folder) for folder in folders]


# ------------------------------------------------------------------------------------------------- compare
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
    """Each task's ``<task>/test/<primary>`` (from the configs' task types) and the stage's headline metrics."""
    from m3bert.tasks.task import PRIMARY_METRICS

    names: dict[str, None] = {}
    for run in runs:
        for task, spec in (run.config.get("tasks") or {}).items():
            kind = spec.get("type") if isinstance(spec, dict) else None
            if kind in PRIMARY_METRICS:
                names[f"{task}/test/{PRIMARY_METRICS[kind]}"] = None
    names.update(dict.fromkeys(DEFAULT_METRICS.get(stage, ())))
    present = {k for run in runs for k in run.metrics}
    return [name for name in names if name in present]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (nan for one value) and count of the finite values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan, 0
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
    return mean, std, len(values)


def format_mean_std(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.{digits}f} (1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({n})"


@dataclass
class StageComparison:
    stage: str
    runs: list[Run]  # every run of the stage, finished or not
    keys: list[str]  # differing config keys (seed aside)
    values: list[dict[str, Any]]  # per run: key -> value
    metrics: list[str]
    copies: dict[str, list[str]] = field(default_factory=dict)  # key -> keys always equal to it (not columns)

    @property
    def finished(self) -> list[int]:
        return [i for i, r in enumerate(self.runs) if r.status == "finished"]

    def long_table(self) -> pd.DataFrame:
        rows = []
        for i in self.finished:
            run = self.runs[i]
            for metric in self.metrics:
                if metric in run.metrics:
                    rows.append(
                        {
                            "stage": self.stage,
                            "run": run.name,
                            "seed": run.seed,
                            **self.values[i],
                            "metric": metric,
                            "value": run.metrics[metric],
                        }
                    )
        return pd.DataFrame(rows)

    def aggregate(self) -> pd.DataFrame:
        """One row per configuration (differing keys' values) and metric: mean, std, n over its seeds."""
        long = self.long_table()
        if long.empty:
            return pd.DataFrame(columns=[*self.keys, "metric", "mean", "std", "n"])
        rows = []
        groups = long.groupby(self.keys, sort=False, dropna=False) if self.keys else [((), long)]
        for group, part in groups:
            group = group if isinstance(group, tuple) else (group,)
            for metric, values in part.groupby("metric", sort=False):
                mean, std, n = mean_std(values["value"].tolist())
                rows.append({**dict(zip(self.keys, group)), "metric": metric, "mean": mean, "std": std, "n": n})
        return pd.DataFrame(rows)

    def table(self, digits: int = 3) -> pd.DataFrame:
        """The report's table: differing keys, then ``mean ± std (n)`` per metric."""
        agg = self.aggregate()
        if agg.empty:
            return pd.DataFrame(columns=[*self.keys, *self.metrics])
        agg["cell"] = [format_mean_std(m, s, n, digits) for m, s, n in zip(agg["mean"], agg["std"], agg["n"])]
        if not self.keys:
            return pd.DataFrame([{m: c for m, c in zip(agg["metric"], agg["cell"])}]).reindex(columns=self.metrics)
        wide = agg.pivot_table(index=self.keys, columns="metric", values="cell", aggfunc="first", sort=False)
        wide = wide.reindex(columns=[m for m in self.metrics if m in wide.columns]).reset_index()
        wide.columns.name = None
        return wide.fillna("–")


def compare(runs: Sequence[Run], metrics: Sequence[str] | None = None, ignore: Iterable[str] = IGNORED_KEYS):
    """One :class:`StageComparison` per stage present, in the order pretrain, finetune, probe."""
    stages = sorted({r.stage for r in runs}, key=lambda s: (STAGE_ORDER + (s,)).index(s))
    out = []
    for stage in stages:
        part = [r for r in runs if r.stage == stage]
        diff, copies = drop_copies(differing_keys([r.config for r in part], ignore))
        chosen = [m for m in metrics if any(m in r.metrics for r in part)] if metrics else default_metrics(part, stage)
        values = [{k: diff[k][i] for k in diff} for i in range(len(part))]
        out.append(StageComparison(stage, part, list(diff), values, chosen, copies))
    return out


# ------------------------------------------------------------------------------------------------- figures
def _numeric(values: Sequence) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def _label(row: dict, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys) or "all runs"


def figures(comparison: StageComparison, folder: Path) -> list[Path]:
    """The stage's figures in ``folder``: each metric against every numeric swept key, every configuration's
    mean ± std per metric (``<stage>_bars.png``), loss curves. Returns the paths written."""
    import matplotlib.pyplot as plt

    from m3bert.common.figures import save_figure

    written, stage = [], comparison.stage
    agg = comparison.aggregate()
    swept = {k: [v[k] for v in comparison.values] for k in comparison.keys}
    numeric = [k for k, vals in swept.items() if _numeric(vals) and len(set(vals)) > 1]
    metrics = [m for m in comparison.metrics if m in set(agg.get("metric", []))]
    for key in numeric:
        others = [k for k in comparison.keys if k != key]
        cols = min(3, len(metrics))
        rows = math.ceil(len(metrics) / max(cols, 1))
        if not metrics:
            continue
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.5 * rows), squeeze=False, constrained_layout=True)
        for ax, metric in zip(axes.flat, metrics):
            part = agg[agg["metric"] == metric]
            lines = part.groupby(others, sort=False, dropna=False) if others else [((), part)]
            for group, line in lines:
                group = group if isinstance(group, tuple) else (group,)
                line = line.sort_values(key)
                ax.errorbar(
                    line[key],
                    line["mean"],
                    yerr=line["std"].fillna(0),
                    marker="o",
                    capsize=3,
                    label=_label(dict(zip(others, group)), others),
                )
            ax.set_xlabel(key)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            if others:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(metrics) :]:
            ax.axis("off")
        fig.suptitle(f"{stage}: mean ± std over seeds")
        path = folder / f"{stage}_vs_{key}.png"
        save_figure(fig, path, dpi=90)
        written.append(path)
    categorical = [k for k in comparison.keys if k not in numeric]
    if metrics and (categorical or not numeric) and not agg.empty:
        configs = (
            agg.drop_duplicates(subset=comparison.keys)[comparison.keys].to_dict("records") if comparison.keys else [{}]
        )
        # One row per configuration and a panel per metric, mean ± std as a dot and error bar: long labels stay
        # readable for any number of configurations, and the axes zoom to the spread instead of starting at 0.
        labels = [textwrap.fill(_label(config, comparison.keys), 80) for config in configs]
        height = 0.6 + 0.22 * sum(label.count("\n") + 1 for label in labels)
        fig, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(5 + 2.6 * len(metrics), max(2.5, height)),
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        for ax, metric in zip(axes[0], metrics):
            of_metric = agg[agg["metric"] == metric]
            for j, config in enumerate(configs):
                part = of_metric
                for key, value in config.items():
                    part = part[part[key].astype(str) == str(value)]
                if part.empty:
                    continue
                std = part["std"].iloc[0]
                std = 0 if std is None or not math.isfinite(std) else std
                ax.errorbar(part["mean"].iloc[0], j, xerr=std, fmt="o", capsize=2, color=f"C{j % 10}")
            ax.set_title(metric, fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(alpha=0.3, axis="x")
        axes[0][0].set_yticks(range(len(configs)), labels, fontsize=7)
        axes[0][0].invert_yaxis()
        fig.suptitle(f"{stage}: mean ± std over seeds")
        path = folder / f"{stage}_bars.png"
        save_figure(fig, path, dpi=90)
        written.append(path)
    curves = [(comparison.values[i], comparison.runs[i]) for i in range(len(comparison.runs))]
    curves = [(v, r) for v, r in curves if any("train/loss" in row for row in r.history)]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
        labels = list(dict.fromkeys(_label(v, comparison.keys) for v, _ in curves))
        colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
        shown = set()
        for values, run in curves:
            label = _label(values, comparison.keys)
            for key, style in (("train/loss", "-"), ("val/loss", "--")):
                points = [(row["step"], row[key]) for row in run.history if key in row]
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
        ax.set_title(f"{stage}: loss of every run (solid: train, dashed: validation)")
        path = folder / f"{stage}_loss.png"
        save_figure(fig, path, dpi=90)
        written.append(path)
    return written


# -------------------------------------------------------------------------------------------------- report
def write_report(
    runs: Sequence[Run],
    out: str | Path,
    metrics: Sequence[str] | None = None,
    ignore=IGNORED_KEYS,
    title: str = "Run comparison",
    sources: Sequence[str] = (),
) -> list[StageComparison]:
    """report.md, results.csv and figures/ in ``out`` (see the module docstring); returns the comparisons."""
    from m3bert.common.files import write_csv, write_text

    out = Path(out)
    comparisons = compare(runs, metrics, ignore)
    counts = pd.Series([r.status for r in runs]).value_counts().to_dict()
    lines = [
        f"# {title}",
        "",
        f"{len(runs)} runs ({', '.join(f'{counts[s]} {s}' for s in STATUSES if s in counts)})"
        + (f" from {', '.join(f'`{s}`' for s in sources)}" if sources else "")
        + ". Cells: mean ± std over seeds (number of runs); pre-training's val/loss is the best value.",
        "",
    ]
    long_tables = []
    for comparison in comparisons:
        lines += [f"## {comparison.stage}", ""]
        if comparison.finished:
            lines += [markdown_table(comparison.table()), ""]
        else:
            lines += ["No finished run.", ""]
        if comparison.keys:
            keys = [f"`{k}`" + "".join(f" (= `{c}`)" for c in comparison.copies.get(k, [])) for k in comparison.keys]
            lines += ["Differing config keys: " + ", ".join(keys) + ".", ""]
        for path in figures(comparison, out / "figures") if comparison.finished else []:
            lines += [f"![{path.stem}](figures/{path.name})", ""]
        others = [r for r in comparison.runs if r.status != "finished"]
        if others:
            lines += ["Not finished:", ""]
            for run in others:
                why = {"unfinished": "unfinished (still running, or killed)"}.get(run.status, run.status)
                lines.append(f"- `{run.name}`: {why}" + (f" — {run.error}" if run.error else ""))
            lines.append("")
        long_tables.append(comparison.long_table())
    long = (
        pd.concat([t for t in long_tables if not t.empty], ignore_index=True)
        if any(not t.empty for t in long_tables)
        else pd.DataFrame(columns=["stage", "run", "seed", "metric", "value"])
    )
    front = ["stage", "run", "seed"]
    long = long[front + [c for c in long.columns if c not in (*front, "metric", "value")] + ["metric", "value"]]
    write_csv(long, out / "results.csv")
    write_text("\n".join(lines), out / "report.md")
    return comparisons


# ---------------------------------------------------------------------------------------------------- W&B
WANDB_STATES = {"finished": "finished", "failed": "failed", "crashed": "failed", "killed": "failed"}


def wandb_runs(path: str, group: str | None = None, filters: dict | None = None, api=None) -> list[Run]:
    """The runs of W&B project ``path`` (``entity/project``), optionally of one ``group`` (a sweep) or matching
    ``filters`` (W&B's MongoDB-style run filters), as the report's runs. ``api``: a ``wandb.Api()`` (or a stand-in
    with ``runs(path, filters=...)``)."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = dict(filters or {})
    if group:
        filters["group"] = group
    out = []
    for remote in api.runs(path, filters=filters or None):
        summary = {k: remote.summary[k] for k in remote.summary.keys()}
        metrics = {
            k: v
            for k, v in summary.items()
            if not k.startswith("_") and isinstance(v, int | float) and not isinstance(v, bool)
        }
        metrics.update(
            {
                k: v["min" if "min" in v else "max"]
                for k, v in summary.items()
                if isinstance(v, dict) and {"min", "max"} & set(v)
            }
        )
        history = [
            {"step": row.get("_step"), **{k: v for k, v in row.items() if not k.startswith("_") and v is not None}}
            for row in remote.history(keys=["train/loss"], pandas=False)
        ]
        out.append(
            Run(
                name=remote.name,
                status=WANDB_STATES.get(remote.state, "unfinished"),
                stage=remote.job_type or "pretrain",
                config=dict(remote.config),
                metrics={k: float(v) for k, v in metrics.items()},
                history=history,
            )
        )
    if not out:
        raise LookupError(f"wandb={path}: no runs" + (f" in group {group}" if group else "") + " (check the names)")
    return out


def publish_wandb_report(
    entity: str,
    project: str,
    comparisons: Sequence[StageComparison],
    group: str | None = None,
    title: str = "",
    reports=None,
) -> str:
    """Publish a W&B Report of the comparison: per stage, a line plot of each metric against every numeric swept
    key, a bar plot of the metrics grouped by the categorical ones (e.g. the encoder mode), and the loss curves
    grouped by configuration (mean ± std over seeds). Returns the report's URL. ``reports``: the
    ``wandb_workspaces.reports.v2`` module (or a stand-in)."""
    if reports is None:
        try:
            import wandb_workspaces.reports.v2 as reports
        except ImportError as err:
            raise ImportError(
                "publishing a W&B Report needs wandb-workspaces: pip install m3bert[wandb-report]"
            ) from err
    wr = reports
    blocks = [wr.H1(text=title or f"m3bert: {group or project}")]
    for comparison in comparisons:
        swept = {k: [v[k] for v in comparison.values] for k in comparison.keys}
        numeric = [k for k, vals in swept.items() if _numeric(vals) and len(set(vals)) > 1]
        categorical = [k for k in comparison.keys if k not in numeric]
        panels = [
            wr.ScatterPlot(title=f"{metric} vs {key}", x=wr.Config(key), y=wr.SummaryMetric(metric))
            for key in numeric
            for metric in comparison.metrics
        ]
        by = wr.Config(categorical[0]) if categorical else (wr.Config(numeric[0]) if numeric else None)
        if comparison.metrics:
            panels.append(
                wr.BarPlot(
                    title=f"{comparison.stage} metrics",
                    metrics=[wr.SummaryMetric(m) for m in comparison.metrics],
                    groupby=by,
                    groupby_aggfunc="mean",
                    groupby_rangefunc="stddev",
                )
            )
        panels.append(
            wr.LinePlot(
                title=f"{comparison.stage} loss",
                x="Step",
                y=["train/loss"],
                groupby=by,
                groupby_aggfunc="mean",
                groupby_rangefunc="stddev",
            )
        )
        filters = f"Metric('JobType') == '{comparison.stage}'" + (f" and Metric('Group') == '{group}'" if group else "")
        runset = wr.Runset(entity=entity, project=project, name=comparison.stage, filters=filters)
        blocks += [wr.H2(text=comparison.stage), wr.PanelGrid(runsets=[runset], panels=panels)]
    report = wr.Report(entity=entity, project=project, title=title or f"m3bert: {group or project}", blocks=blocks)
    report.save()
    return report.url


# ------------------------------------------------------------------------------------------------------ CLI
OPTIONS = ("out", "metrics", "ignore", "wandb", "group", "filters", "publish", "title")


def parse_args(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Inputs and ``key=value`` options (only the keys in OPTIONS count as options: run folders contain '=')."""
    inputs, options = [], {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            options[key] = value
        else:
            inputs.append(arg)
    return inputs, options


def main(argv: Sequence[str] | None = None) -> list[StageComparison]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return []
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s", datefmt="%H:%M:%S")
    inputs, options = parse_args(argv)
    if "out" not in options:
        raise SystemExit("out=DIR is required: the folder for report.md, results.csv and figures/")
    runs = find_runs(inputs) if inputs else []
    if "wandb" in options:
        filters = json.loads(options["filters"]) if options.get("filters") else None
        runs += wandb_runs(options["wandb"], options.get("group"), filters)
    if not runs:
        raise SystemExit("no runs: give run folders as INPUT, or wandb=ENTITY/PROJECT")
    split = lambda s: [x for x in s.split(",") if x] if s else None  # noqa: E731
    ignore = (*IGNORED_KEYS, *(split(options.get("ignore")) or ()))
    title = options.get("title", "Run comparison")
    comparisons = write_report(runs, options["out"], split(options.get("metrics")), ignore, title, inputs)
    log.info("Report of %d runs in %s", len(runs), Path(options["out"]) / "report.md")
    if options.get("publish", "false").lower() in ("1", "true", "yes"):
        if "wandb" not in options:
            raise SystemExit("publish=true needs wandb=ENTITY/PROJECT (the report shows that project's runs)")
        entity, _, project = options["wandb"].partition("/")
        log.info("W&B Report: %s", publish_wandb_report(entity, project, comparisons, options.get("group"), title))
    return comparisons


if __name__ == "__main__":
    main()
