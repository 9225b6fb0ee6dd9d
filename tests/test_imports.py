"""The package's imports go one way: no cycle among its modules, and the core does not
import the output code.

The graph is read from the source with ``ast``: an edge for each ``import hyperunmix.x`` or
``from .x import y`` that runs when a module is imported. Imports inside functions (run on
call) and under ``if TYPE_CHECKING:`` (never run) are left out.
"""

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Dotted name -> source file of every module of the package.
MODULES = {_module_name(path): path for path in sorted((SRC / "hyperunmix").rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def _imported(node: ast.Import | ast.ImportFrom, importer: str) -> set[str]:
    """The package's modules that ``node``, a statement of module ``importer``, imports."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & MODULES.keys()
    base = node.module or ""
    if node.level:
        is_package = MODULES[importer].name == "__init__.py"
        package = importer if is_package else importer.rpartition(".")[0]
        anchor = package.rsplit(".", node.level - 1)[0]
        base = f"{anchor}.{base}" if base else anchor
    # ``from x import y`` imports the submodule x.y when there is one.
    names = {f"{base}.{alias.name}" for alias in node.names}
    return (names & MODULES.keys()) or ({base} & MODULES.keys())


def _imports_of(source: str, module: str) -> set[str]:
    """The package's modules that ``module`` (with this source) imports when imported."""
    tree = ast.parse(source)
    found = set().union(*(_imported(node, module) for node in _import_time_statements(tree)))
    return found - {module}


#: Module -> the package's modules it imports when imported.
GRAPH = {name: _imports_of(path.read_text("utf-8"), name) for name, path in MODULES.items()}


def _top_level(name: str) -> str:
    """``hyperunmix.io.envi`` -> ``hyperunmix.io``: the top-level module or subpackage."""
    return ".".join(name.split(".")[:2])


def _assert_acyclic(graph: dict[str, set[str]], what: str) -> None:
    try:
        # A module's imports come before it, as predecessors in a topological order.
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        cycle = " imports ".join(reversed(error.args[1]))
        pytest.fail(f"import cycle among the {what}: {cycle}")


def test_the_graph_holds_import_time_imports_only():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "import hyperunmix.metrics\n"
        "from . import io\n"
        "from .scene import Scene\n"
        "if TYPE_CHECKING:\n"
        "    from .base import Result\n"
        "def save():\n"
        "    from .output import save_result\n"
    )
    assert _imports_of(source, "hyperunmix.cli") == {
        "hyperunmix.metrics",
        "hyperunmix.io",
        "hyperunmix.scene",
    }
    assert _imports_of("from ..errors import InputError", "hyperunmix.io.envi") == {
        "hyperunmix.errors"
    }
    assert _imports_of("from .endmembers import read_endmembers", "hyperunmix.io") == {
        "hyperunmix.io.endmembers"
    }


def test_no_import_cycle_among_modules():
    _assert_acyclic(GRAPH, "modules")


def test_no_import_cycle_among_top_level_modules_and_subpackages():
    collapsed: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        top = _top_level(module)
        collapsed.setdefault(top, set()).update({_top_level(m) for m in imported} - {top})
    _assert_acyclic(collapsed, "top-level modules and subpackages")


def test_the_core_does_not_import_the_output_code():
    """``Result.save`` reaches the writer through the registry, not by importing it: at no
    level, in no function."""
    tree = ast.parse(MODULES["hyperunmix.base"].read_text("utf-8"))
    statements = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = set().union(*(_imported(node, "hyperunmix.base") for node in statements))
    assert "hyperunmix.output" not in imported
