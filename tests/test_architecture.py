"""The package's shape: every module imports, no import circles among saeembed's modules, no
module over the size limit, the shipped templates check out, and the CLI registers every
command family."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "saeembed"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """The saeembed modules ``path`` imports, at any depth (imports inside functions count too,
    so a circle cannot hide behind a lazy import; those under ``if TYPE_CHECKING:`` do not). ``from saeembed.x import y`` names module
    ``saeembed.x.y`` when that is a module, else ``saeembed.x``. A package's parents are not
    counted (Python imports them first, whatever they hold)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {  # imports under `if TYPE_CHECKING:` never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_circle(monkeypatch):
    monkeypatch.setitem(GRAPH, "saeembed.errors", GRAPH["saeembed.errors"] | {"saeembed.render"})
    monkeypatch.setitem(GRAPH, "saeembed.render", GRAPH["saeembed.render"] | {"saeembed.errors"})
    assert _cycle() is not None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_module_is_too_long():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


def test_the_templates_check_out():
    from saeembed.templates import check

    assert check() == []


def test_every_command_family_is_registered():
    import click

    from saeembed.cli import FAMILIES, main

    ctx = click.Context(main)
    for name in FAMILIES:
        assert main.get_command(ctx, name).name == name


def test_no_module_shadows_a_function_of_the_package():
    """`saeembed.encode(...)` must stay the function: a top-level module of the same name would
    replace it on the package as soon as anything imports that module (it used to, after the
    first call)."""
    import saeembed

    package = Path(saeembed.__file__).parent
    for name in saeembed._EXPORTS:
        assert not (package / f"{name}.py").exists() and not (package / name).is_dir(), name
