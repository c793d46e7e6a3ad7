"""The report's runs read from W&B (``wandb=ENTITY/PROJECT``) and the comparison published as a W&B Report
(``publish=true``)."""

from __future__ import annotations

from collections.abc import Sequence

from m3bert.common.errors import UserError
from m3bert.report.compare import StageComparison
from m3bert.report.figures import numeric_keys
from m3bert.report.runs import Run


def wandb_api(path: str):
    """``wandb.Api()``, or one clear line when the package or a login is missing."""
    try:
        import wandb
    except ImportError as err:
        raise UserError(f"wandb={path}: reading runs from W&B needs the wandb package; pip install wandb") from err
    try:
        return wandb.Api()
    except wandb.errors.Error as err:  # no API key (UsageError), a rejected one (AuthenticationError), ...
        raise UserError(
            f"wandb={path}: W&B refused the connection ({' '.join(str(err).split())}); run wandb login or set "
            "WANDB_API_KEY"
        ) from err


WANDB_STATES = {"finished": "finished", "failed": "failed", "crashed": "failed", "killed": "failed"}


def wandb_runs(path: str, group: str | None = None, filters: dict | None = None, api=None) -> list[Run]:
    """The runs of W&B project ``path`` (``entity/project``), optionally of one ``group`` (a sweep) or matching
    ``filters`` (W&B's MongoDB-style run filters), as the report's runs. ``api``: a ``wandb.Api()`` (or a stand-in
    with ``runs(path, filters=...)``)."""
    if api is None:
        api = wandb_api(path)
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
        raise UserError(f"wandb={path}: no runs" + (f" in group {group}" if group else "") + " (check the names)")
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
            raise UserError(
                "publish=true: publishing a W&B Report needs wandb-workspaces; pip install 'm3bert[wandb-report]'"
            ) from err
    wr = reports
    blocks = [wr.H1(text=title or f"m3bert: {group or project}")]
    for comparison in comparisons:
        numeric = numeric_keys(comparison)
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
