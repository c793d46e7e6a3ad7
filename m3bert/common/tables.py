"""Tables people read: one way to write a markdown table, and one way to print a number in one.

Config values print exactly as configured (:func:`exact`: ``5e-4`` stays ``5e-4``, never ``0.001``); measured
values print with a fixed number of significant digits (:func:`significant`), so a table's precision does not
depend on the size of what it shows.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

ABSENT = "–"  # a value a run does not have (a key older runs lack, a metric a run did not log)
METRIC_DIGITS = 3  # significant digits of a measured value


def exact(value: Any) -> str:
    """``value`` as configured: ints and strings as they are, booleans and None as YAML writes them, floats in
    the shortest form that reads back as the same float (``0.15``; ``5e-4`` and ``1e-3`` in scientific notation
    below 0.01, as configs write learning rates), lists and mappings as YAML flow sequences."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and not 1e-2 <= abs(value) < 1e6:
            for digits in range(17):  # the shortest mantissa that reads back as the same float
                mantissa, _, power = f"{value:.{digits}e}".partition("e")
                if float(f"{mantissa}e{power}") == value:
                    return f"{mantissa}e{int(power)}"
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(exact(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {exact(v)}" for k, v in value.items()) + "}"
    return str(value)


def significant(value: float | None, digits: int = METRIC_DIGITS) -> str:
    """A measured value with ``digits`` significant digits, trailing zeros kept (``1.00``, ``0.0123``);
    :data:`ABSENT` for None or nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ABSENT
    return f"{value:#.{digits}g}".rstrip(".") if value != 0 else f"{0:.{digits - 1}f}"


def rounded(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits: a measurement keeps its precision at any scale, where
    rounding to fixed decimals turns a fast machine's 0.4 ms into 0."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table; floats rounded to ``digits`` decimals, missing values shown as
    :data:`ABSENT`. Strings are written as given, so a caller that formats its own cells controls them."""

    def cell(value) -> str:
        if isinstance(value, float):
            return ABSENT if pd.isna(value) else f"{value:.{digits}f}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
