"""The study's table from the per-encoder reports (`python -m m3bert.report ... reference=embedding=features`):
per objective and pre-training seed, then per objective over its seeds, the headline clip embeddings and both
floors, mean ± std (n) over fold assignments (and seeds), with Welch's p against the feature floor of the same
clips and folds.
    python docs/results/objectives_real_music/summarise.py REPORTS_FOLDER OUT.md
"""

import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from m3bert.common.files import write_text
from m3bert.common.stats import format_mean_std, mean_std, welch
from m3bert.common.tables import markdown_table

ROWS = ("best_layer", "mean_over_layers", "features", "random_best_layer")
FLOORS = ("features", "random_best_layer")


def row(name: str, values: dict[str, list[float]]) -> dict[str, str]:
    out = {"encoder": name, **{e: format_mean_std(*mean_std(values[e])) for e in ROWS}}
    for embedding in ("best_layer", "mean_over_layers"):
        test = welch(values[embedding], values["features"])
        out[f"{embedding} − features (p)"] = f"{test.difference:+.3f} ({test.p:.2g})"
    return out


reports, out = Path(sys.argv[1]), Path(sys.argv[2])
per_objective: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
rows = []
seeds: dict[str, int] = defaultdict(int)
for folder in sorted(p for p in reports.iterdir() if (p / "results.csv").is_file()):
    results = pd.read_csv(folder / "results.csv")
    values = {e: results.loc[results["embedding"] == e, "value"].tolist() for e in ROWS}
    rows.append(row(folder.name, values))
    name = folder.name.rsplit("_seed", 1)[0]
    seeds[name] += 1
    pooled = per_objective[name]
    for embedding, scores in values.items():
        if embedding in FLOORS:  # the same clips, folds and random encoder for every seed: counted once
            pooled[embedding] = scores
        else:
            pooled[embedding] += scores
pooled_rows = [
    row(f"{name}, {seeds[name]} seed{'s' * (seeds[name] > 1)}", values)
    for name, values in sorted(per_objective.items())
]
tables = [
    "Per objective (and budget or corpus where not the real corpus at 700 steps), over its pre-training seeds:",
    "",
    markdown_table(pd.DataFrame(pooled_rows)),
    "Per pre-trained encoder:",
    "",
    markdown_table(pd.DataFrame(rows)),
]
write_text("\n".join(tables), out)
print("\n".join(tables))
