"""No import cycle in `src/dpo`, read from the modules' own import statements: every one that
runs, at the top or inside a function (a lazy import is still a dependency). Imports under
`if TYPE_CHECKING:` are left out: they never run (annotations are strings), and naming a type
is not depending on its module's behaviour."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """The dpo modules `tree` imports (`from dpo.x import y` counts dpo.x.y when that is a
    module, else dpo.x)."""
    found: set[str] = set()
    package = here if is_package else here.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != here}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in (
                    "TYPE_CHECKING", "typing.TYPE_CHECKING"):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the dpo modules it imports}."""
    files = {module_name(p): p for p in SRC.joinpath("dpo").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        # "dpo" itself: the package's lazy public API names, not an import of them
        graph[name] = imported(tree, name, path.name == "__init__.py", set(files)) - {"dpo"}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (empty when there is none)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as found:
        return list(found.args[1])
    return []


def test_the_graph_is_read_from_the_sources() -> None:
    graph = import_graph()
    assert "dpo.store.api" in graph["dpo.store.session"]
    assert "dpo.collect.cluster" in graph["dpo.collect.executors"]
    assert "dpo.cli.runtime" in graph["dpo.cli.store"]  # imported inside a function
    assert "dpo.tables.cache" in graph["dpo.pipeline.nochange"]  # an import in a function too
    assert len(graph) > 80


def test_no_import_cycle_in_dpo() -> None:
    assert cycle_in(import_graph()) == []


def test_type_checking_imports_are_left_out() -> None:
    graph = import_graph()
    # endpoints names the Service it serves only in annotations; service starts the server
    assert "dpo.serve.service" not in graph["dpo.serve.endpoints"]
    assert "dpo.serve.endpoints" in graph["dpo.serve.service"]


def test_a_cycle_is_found() -> None:
    """The check itself: one back edge added to the real graph makes a cycle it reports."""
    graph = import_graph()
    graph["dpo.store.api"].add("dpo.store.session")
    assert set(cycle_in(graph)) >= {"dpo.store.api", "dpo.store.session"}
