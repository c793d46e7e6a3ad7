"""The command line: ``python -m m3bert.report INPUT... out=DIR [key=value ...]`` (see :mod:`m3bert.report`)."""

from __future__ import annotations

import glob
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from m3bert.common.errors import UserError
from m3bert.report.compare import StageComparison, parse_reference
from m3bert.report.markdown import write_report
from m3bert.report.runs import find_runs
from m3bert.report.wandb import publish_wandb_report, wandb_runs
from m3bert.training.records import IGNORED_KEYS

log = logging.getLogger("m3bert.report")

OPTIONS = ("out", "metrics", "ignore", "reference", "within", "wandb", "group", "filters", "publish", "title")
_OPTION_LIKE = re.compile(r"^[A-Za-z_]+$")  # a bare word before '=': an option, never a path


def parse_args(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Inputs and ``key=value`` options. Only the keys in OPTIONS are options (run folders contain '='); an
    argument that looks like an option (``word=...``) but is none and matches no file is an error."""
    inputs, options = [], {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            options[key] = value
        elif sep and _OPTION_LIKE.match(key) and not glob.glob(arg):  # not a folder (seed=0) nor a glob (seed=*)
            raise UserError(f"unknown argument {arg!r}: options are {', '.join(f'{o}=...' for o in OPTIONS)}")
        else:
            inputs.append(arg)
    return inputs, options


def main(argv: Sequence[str] | None = None) -> list[StageComparison]:
    from m3bert import report

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(report.__doc__)
        return []
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s", datefmt="%H:%M:%S")
    inputs, options = parse_args(argv)
    if "out" not in options:
        raise UserError("out=DIR is required: the folder for report.md, results.csv and figures/")
    reference = parse_reference(options.get("reference"))
    runs = find_runs(inputs) if inputs else []
    if "wandb" in options:
        try:
            filters = json.loads(options["filters"]) if options.get("filters") else None
        except json.JSONDecodeError as err:
            raise UserError(f"filters={options['filters']}: not JSON ({err}); write W&B's run filters as JSON") from err
        runs += wandb_runs(options["wandb"], options.get("group"), filters)
    if not runs:
        raise UserError("no runs: give run folders as INPUT, or wandb=ENTITY/PROJECT")
    publish = options.get("publish", "false").lower() in ("1", "true", "yes")
    if publish and "wandb" not in options:
        raise UserError("publish=true needs wandb=ENTITY/PROJECT (the report shows that project's runs)")
    split = lambda s: [x for x in s.split(",") if x] if s else None  # noqa: E731
    ignore = (*IGNORED_KEYS, *(split(options.get("ignore")) or ()))
    title = options.get("title", "Run comparison")
    within = split(options.get("within")) or []
    if within and not reference:
        raise UserError(f"within={options['within']} needs reference=key=value: the row each group is compared with")
    comparisons = write_report(
        runs, options["out"], split(options.get("metrics")), ignore, title, inputs, reference, within
    )
    log.info("Report of %d runs in %s", len(runs), Path(options["out"]) / "report.md")
    if publish:
        entity, _, project = options["wandb"].partition("/")
        log.info("W&B Report: %s", publish_wandb_report(entity, project, comparisons, options.get("group"), title))
    return comparisons
