"""The package's layering, read from its source: models import nothing else of m3bert, and no module imports
itself back through others (imports inside functions count too: a lazy import still ties two modules together)."""

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
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == {
        "train",
        "prepare",
        "extract",
        "export",
        "analyze",
        "evaluate",
        "demo",
        "report",
        "reproduce",
        "hear",
    }


def test_feature_sizes_are_not_literals_in_configs():
    # Widths and column bands come from conf/features (features.dim, ${feature_columns:...}), nowhere else.
    for path in CONF.rglob("*.yaml"):
        if path.parent.name == "features":
            continue
        for number in re.findall(r"(?<![\w.])(?:324|52|180)(?![\w.])", path.read_text()):
            pytest.fail(f"{path.relative_to(CONF)} spells out {number}: derive it from features.dim / feature_columns")
