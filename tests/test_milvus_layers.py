"""The modules of `utilities.milvus` stand in layers that import one way, and say each fact once.

Every import counts, wherever it stands: at the top, inside a function (a lazy import still ties the
two modules together) or under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import utilities.milvus
from utilities.milvus import storage_probe, vector_index

PACKAGE = "utilities.milvus"
FOLDER = Path(utilities.milvus.__file__).parent


def package_modules() -> set[str]:
    """The short names of the package's modules (`collection`, `rows`, ...)."""
    return {path.stem for path in FOLDER.glob("*.py") if path.stem != "__init__"}


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """The package's modules that `source` (a module of `package`) imports, by short name.

    `import a.b`, `from a.b import c`, `from a import b` (a module `b`) and relative imports all count,
    anywhere in the file.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    modules = package_modules()
    prefix = package + "."
    return {name.removeprefix(prefix) for name in names if name.startswith(prefix)} & modules


def import_graph() -> dict[str, set[str]]:
    """Which of the package's modules each of them imports."""
    return {
        name: imported_modules((FOLDER / f"{name}.py").read_text(encoding="utf-8")) - {name}
        for name in package_modules()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path that closes it (`["a", "b", "a"]`), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return path[path.index(after) :] + [after]
            if after not in state and (found := visit(after)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_kind_of_import_is_counted() -> None:
    source = """
from typing import TYPE_CHECKING
from utilities.milvus.rows import CollectionRows
import utilities.milvus.chunks
from utilities.milvus import retry
from . import lite
from .base import CollectionBase

if TYPE_CHECKING:
    from utilities.milvus.connection import MilvusConnection

def later():
    from utilities.milvus.collection import ImageCollection
"""
    assert imported_modules(source) == {"rows", "chunks", "retry", "lite", "base", "connection", "collection"}


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_milvus_modules_import_one_another_one_way() -> None:
    graph = import_graph()
    assert {"collection", "vector_index", "storage_probe", "projection_store"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in utilities/milvus: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("storage_probe", "vector_index"), ("vector_index", "collection"), ("projection_store", "collection")],
)
def test_lower_layers_do_not_reach_up(lower: str, upper: str) -> None:
    graph = import_graph()

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return start == goal or any(reaches(n, goal, seen | {start}) for n in graph[start] - seen)

    assert not reaches(lower, upper), f"milvus.{lower} imports milvus.{upper}, directly or through others"


def test_default_refine_is_made_from_the_one_list_of_indexes_without_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vector_index.DEFAULT_REFINE == {"IVF_SQ8": 4, "IVF_PQ": 4}  # what searches did before
    # Run vector_index's code again (into a module of its own: the imported one is left alone) after
    # the list of code-keeping indexes changes: the indexes re-ranked by default follow it.
    monkeypatch.setattr(storage_probe, "INDEXES_WITHOUT_VECTORS", ("IVF_SQ8", "SOME_CODES"))
    spec = importlib.util.spec_from_file_location("vector_index_again", vector_index.__file__)
    assert spec is not None and spec.loader is not None
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    assert set(again.DEFAULT_REFINE) == {"IVF_SQ8", "SOME_CODES"}
    assert set(again.DEFAULT_REFINE.values()) == {4}
