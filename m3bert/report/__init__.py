"""Compare runs: ``python -m m3bert.report INPUT... out=DIR [metrics=a,b] [ignore=k1,k2] [reference=k=v,...]
[within=k1,...]``.

INPUT is a run folder, a folder with runs anywhere below it (a multirun, ``experiments/``), or a glob of those
(quoted); a run folder is one holding ``run.json`` (see :mod:`m3bert.training.records`). Or read the runs from W&B:
``wandb=ENTITY/PROJECT [group=SWEEP] [filters=JSON]``, and add ``publish=true`` to also publish a W&B Report with
the comparison panels (needs ``pip install m3bert[wandb-report]`` and an account).

``DIR`` gets

- ``report.md``: at the top the counts (runs read, rows, runs in rows, runs listed as failed or unfinished: every
  run is accounted for, or the report fails) and the environment the runs ran in (precision, device, CPU, threads,
  torch, commit; a table whose runs differ in precision, device or commit is flagged). Then one table per stage
  (pretrain, finetune, evaluate, probe and any other a record names); its columns are the config keys that differ
  between the stage's runs (read from their resolved configs; ``seed`` aside; a key some runs lack is shown as
  ``–`` for them), the number of runs in the row, and the metrics (default: each task's
  ``<task>/test/<primary metric>`` and ``test/score`` for fine-tuning and probing, ``val/loss`` for pre-training,
  the best value where the metric is monitored, every ``test/...`` metric for other stages); runs that differ only
  in ``seed`` are one row, ``mean ± std (n)``. Config values print exactly as configured (``5e-4``), metrics with
  3 significant digits. With ``reference=key=value,...`` (e.g. ``reference=encoder.mode=baseline``) each stage
  that has that row gets a table of every other row's difference to it, Welch's t-test p-value and whether the
  difference holds at 5 %; with ``within=key,...`` as well, each row is compared with the reference row that has
  its values of those keys (one reference per group: ``reference=embedding=features within=model`` tests every
  encoder's embeddings against the feature floor of its own evaluation). Failed and unfinished runs are listed
  under the table;
- ``results.csv``: one row per finished run and metric (``stage, run, seed, <differing keys>, metric, value``);
- ``figures/``: each metric against every numeric swept key (mean ± std over seeds, and each run's value), every
  configuration's metrics the same way, and every run's loss curves.

Bad input (an unknown option or ``metrics=`` name, an input without runs, a missing W&B package or login) ends
with one line and exit status 2.
"""

from m3bert.common.stats import format_mean_std, mean_std, welch
from m3bert.common.tables import markdown_table
from m3bert.report.cli import OPTIONS, main, parse_args
from m3bert.report.compare import (
    CountMismatch,
    Row,
    StageComparison,
    check_counts,
    compare,
    default_metrics,
    drop_copies,
    parse_reference,
)
from m3bert.report.figures import figures
from m3bert.report.markdown import environment_block, write_report
from m3bert.report.runs import Run, find_runs, flat_metrics, load_run, measured_config
from m3bert.report.wandb import publish_wandb_report, wandb_runs
from m3bert.training.records import differing_keys

__all__ = [
    "OPTIONS",
    "CountMismatch",
    "Row",
    "Run",
    "StageComparison",
    "check_counts",
    "compare",
    "default_metrics",
    "differing_keys",
    "drop_copies",
    "environment_block",
    "figures",
    "find_runs",
    "flat_metrics",
    "format_mean_std",
    "load_run",
    "main",
    "markdown_table",
    "mean_std",
    "measured_config",
    "parse_args",
    "parse_reference",
    "publish_wandb_report",
    "wandb_runs",
    "welch",
    "write_report",
]
