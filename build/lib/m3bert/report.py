"""Small report helpers: tables people read in a terminal, a README or an issue."""

from __future__ import annotations

import pandas as pd


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
