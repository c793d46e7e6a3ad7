"""The package's layering, read from its source: every folder has a rank and imports only from its own rank or
below, models import nothing else of m3bert, and no module imports itself back through others (imports inside
functions count too: a lazy import still ties two modules together)."""

import ast
import re
from pathlib import Path

import pytest
from conftest import CONF, ROOT

PACKAGE = ROOT / "m3bert"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The m3bert modules that ``path`` imports (``from m3bert.x import y`` counts m3bert.x.y if that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_models_import_nothing_else_of_m3bert(graph):
    for name, imported in graph.items():
        if name.startswith("m3bert.models"):
            assert all(i.startswith("m3bert.models") for i in imported), (name, imported)


# Lowest first; a module may import from its own rank and below. The README's "Where a change goes" lists the same.
RANKS = (
    ("common",),
    ("models", "masking", "features"),
    ("adapters",),
    ("data",),
    ("inference",),
    ("tasks",),
    ("objectives",),
    ("training",),
)
# Above them all: the entry points, i.e. the top-level modules, the package itself and these folders.
ENTRY_FOLDERS = ("report",)
TOP = len(RANKS)


def rank(module: str) -> int:
    folder = module.split(".")[1] if module.count(".") else None
    return next((i for i, names in enumerate(RANKS) if folder in names), TOP)


def test_every_folder_has_a_rank():
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    ranked = {name for names in RANKS for name in names} | set(ENTRY_FOLDERS)
    assert folders <= ranked, f"give {sorted(folders - ranked)} a rank in RANKS (and in the README)"


def test_no_import_runs_from_a_lower_rank_to_a_higher_one(graph):
    upward = sorted(
        f"{name} (rank {rank(name)}) imports {other} (rank {rank(other)})"
        for name, imported in graph.items()
        for other in imported
        if rank(other) > rank(name)
    )
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_ranks_put_folders_in_order_and_entry_points_on_top():
    assert rank("m3bert.data.manifest") < rank("m3bert.inference.pretrained") < rank("m3bert.train") == TOP
    assert rank("m3bert") == rank("m3bert.report.cli") == TOP and rank("m3bert.common.files") == 0


def test_there_are_no_import_cycles(graph):
    # Package __init__ files re-export their modules, so an edge into a package stands for its modules: skip the
    # edge from a package to its own submodules, and look for a cycle with a depth-first search.
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for child in sorted(graph.get(name, ())):
            if child.startswith(name + "."):
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child) :] + [child] if child in path else [name, child]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child, path + [child])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_top_level_holds_only_entry_points():
    # Benchmarks and the synthetic music tests use live beside the package (benchmarks/), not in it.
    assert not (PACKAGE / "bench").exists() and not (PACKAGE / "features" / "synth.py").exists()
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == {"train", "prepare", "extract", "export", "analyze", "reproduce", "hear", "evaluate"}
    assert (PACKAGE / "report" / "__main__.py").is_file()  # python -m m3bert.report: an entry point as a package


def test_only_entry_points_import_the_report(graph):
    # The report reads what training writes; training (probing's tables, say) never reads the report back.
    entry_points = {"m3bert.reproduce"}
    for name, imported in graph.items():
        if not name.startswith("m3bert.report") and name not in entry_points:
            assert not any(i.startswith("m3bert.report") for i in imported), (name, imported)


def test_feature_sizes_are_not_literals_in_configs():
    # Widths and column bands come from conf/features (features.dim, ${feature_columns:...}), nowhere else.
    for path in CONF.rglob("*.yaml"):
        if path.parent.name == "features":
            continue
        for number in re.findall(r"(?<![\w.])(?:324|52|180)(?![\w.])", path.read_text()):
            pytest.fail(f"{path.relative_to(CONF)} spells out {number}: derive it from features.dim / feature_columns")
