"""The layering the code keeps, checked from its source: no import cycle (function-level imports
included), dependencies pointing one way (ui → instance → pool; workers apart), Qt and
llama-cpp-python only where they belong, and modules of a readable size."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "app" / "hivetray"
#: modules may be somewhat over the ~400-line guideline, not far over it
MAX_LINES = 425


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_block(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def imports_of(path: Path) -> Iterator[str]:
    """Every module ``path`` imports at run time, wherever the import statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_block(node):
            skip.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {target for target in imports_of(path) if target in known and target != name}
        edges[name] = targets
    return edges


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append([*visiting[visiting.index(node):], node])
            return
        visiting.append(node)
        for target in sorted(edges[node]):
            # a package imports its own submodules to re-export them: not a cycle of meaning
            if not target.startswith(node + "."):
                visit(target)
        visiting.pop()
        done.add(node)

    for name in sorted(edges):
        visit(name)
    assert cycles == []


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("hivetray.pool", ("PySide6", "hivetray.ui", "hivetray.instance", "hivetray.desktop",
                       "hivetray.app", "hivetray.cli", "hivetray.commands", "llama_cpp")),
    ("hivetray.workers", ("PySide6", "hivetray.ui", "hivetray.pool", "hivetray.instance")),
    ("hivetray.instance", ("PySide6", "hivetray.ui", "hivetray.desktop")),
    ("hivetray.commands", ("PySide6", "hivetray.ui", "hivetray.instance")),
    ("hivetray.ui", ("hivetray.instance", "hivetray.commands", "hivetray.ipc", "llama_cpp")),
    # the HTTP API is an adapter over the instance's methods (through a Protocol), like the
    # socket's: it never reaches into the app that holds it
    ("hivetray.api", ("PySide6", "hivetray.ui", "hivetray.instance", "hivetray.desktop",
                      "hivetray.app", "hivetray.cli", "hivetray.daemon", "llama_cpp")),
])
def test_dependencies_point_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    wrong = [f"{name} imports {target}"
             for name, path in modules().items() if name == layer or name.startswith(layer + ".")
             for target in imports_of(path)
             if any(target == f or target.startswith(f + ".") for f in forbidden)]
    assert wrong == []


def test_aiohttp_is_imported_only_inside_the_api_package() -> None:
    """An idle tray with the API off must not load it: only ``hivetray.api`` may import it,
    and only ``hivetray.api_control`` (on demand) and the CLI's ``api key`` import that.
    Remote roles (``hivetray.pool.remote``) use its client, imported inside the functions that
    connect, so it is loaded only once a remote role starts or a connection is tested."""
    wrong = [f"{name} imports {target}" for name, path in modules().items()
             if not (name == "hivetray.api" or name.startswith("hivetray.api."))
             for target in (top_level_imports(path) if name.startswith("hivetray.pool.remote")
                            else imports_of(path)) if target.split(".")[0] == "aiohttp"]
    assert wrong == []


def top_level_imports(path: Path) -> Iterator[str]:
    """The modules ``path`` imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_modules_stay_readable() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
