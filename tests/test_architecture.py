"""The package's shape: every module imports, the layers of docs/architecture.md hold (a module
imports only its own layer and those below; the command line only the API and the foundation),
no import circles among saeembed's modules, no module over the size limit, the shipped templates
check out, and the CLI registers every command family."""

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


def _named_modules(path: Path, name: str) -> set[str]:
    """Modules named by a string that is exactly a module's name (``importlib.import_module``
    tables of lazy exports): an import too, for the layers."""
    tree = ast.parse(path.read_text(), str(path))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    return {m for m in strings if isinstance(m, str) and m in MODULES and m not in (name, ROOT)}


ROOT = "saeembed"  # the package: its version, and lazy exports of the API (its public facade)
GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}
USES = {
    name: GRAPH[name] | (_named_modules(path, name) if name != ROOT else set())
    for name, path in MODULES.items()
}

# docs/architecture.md's layers, bottom first: a module's layer is that of its longest prefix.
LAYERS = [
    ("foundation", ["saeembed", "saeembed.errors", "saeembed.version", "saeembed.files", "saeembed.home",
                    "saeembed.links", "saeembed.compression", "saeembed.remote",
                    "saeembed.wheels", "saeembed.sql_values", "saeembed.templates"]),
    ("inputs", ["saeembed.inputs", "saeembed.data", "saeembed.dataset_parsers"]),
    ("models", ["saeembed.sites", "saeembed.reader", "saeembed.sae", "saeembed.pretrained", "saeembed.embedder"]),
    ("store", ["saeembed.store", "saeembed.queries", "saeembed.embedding_cache"]),
    ("encoding", ["saeembed.encoding",
                  "saeembed.labels",
                  "saeembed.train"]),
    ("subjects", ["saeembed.analysis", "saeembed.prefs", "saeembed.shards", "saeembed.maps"]),
    ("reports", ["saeembed.reports"]),
    ("api", ["saeembed.api"]),
    ("cli", ["saeembed.cli", "saeembed.__main__"]),
]  # fmt: skip
# The command line reaches everything through the API; it may import only these layers.
CLI_MAY_USE = {"foundation", "api", "cli"}


def layer_of(module: str) -> tuple[int, str]:
    best = max(
        ((i, prefix) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
         if module == prefix or module.startswith(prefix + ".")),
        key=lambda found: len(found[1]),
        default=None,
    )  # fmt: skip
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[0], LAYERS[best[0]][0]


def layer_breaks(uses: dict[str, set[str]]) -> list[str]:
    breaks = []
    for module, used in sorted(uses.items()):
        level, layer = layer_of(module)
        for other in sorted(used):
            other_level, other_layer = layer_of(other)
            allowed = other_layer in CLI_MAY_USE if layer == "cli" else other_level <= level
            if not allowed:
                breaks.append(f"{module} ({layer}) imports {other} ({other_layer})")
    return breaks


def test_every_module_keeps_to_its_layer():
    assert layer_breaks(USES) == []


def test_the_layer_check_finds_a_break():
    assert layer_breaks({"saeembed.store.store": {"saeembed.shards.encode"}}) == [
        "saeembed.store.store (store) imports saeembed.shards.encode (subjects)"
    ]
    assert layer_breaks({"saeembed.cli.corpus": {"saeembed.analysis.diff"}}) == [
        "saeembed.cli.corpus (cli) imports saeembed.analysis.diff (subjects)"
    ]


def test_every_name_the_cli_reads_through_the_api_exists():
    from saeembed.api import defaults

    for name in defaults.__all__:
        assert getattr(defaults, name) is not None, name


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
    monkeypatch.setitem(
        GRAPH, "saeembed.errors", GRAPH["saeembed.errors"] | {"saeembed.cli.render"}
    )
    monkeypatch.setitem(
        GRAPH, "saeembed.cli.render", GRAPH["saeembed.cli.render"] | {"saeembed.errors"}
    )
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
    import saeembed.api

    for module, names in ((saeembed, saeembed._EXPORTS), (saeembed.api, saeembed.api.__all__)):
        package = Path(module.__file__).parent
        for name in names:
            assert not (package / f"{name}.py").exists(), f"{module.__name__}.{name}"
            assert not (package / name).is_dir(), f"{module.__name__}.{name}"


MAX_FUNCTION_LINES = 80
# Functions over the limit, each with the length it may not exceed and what splitting it waits
# on; the list only shrinks (a function that gets shorter lowers its entry or leaves).
LONG_FUNCTIONS = {
    "saeembed.sae.saelens.load_saelens": (138, "one pass over SAELens's config variants"),
    "saeembed.labels.label_features": (95, "offline and LLM labelling share its setup"),
    "saeembed.shards.encode.encode_to_shards": (89, "planning and committing shards"),
    "saeembed.analysis.cluster.describe_clusters": (90, "one diff per cluster, vectorised"),
    "saeembed.train.trainer.train_sae": (88, "the training loop with its checkpoints"),
}  # fmt: skip


def function_lengths() -> dict[str, int]:
    lengths = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{name}.{node.name}"
                lengths[key] = max(lengths.get(key, 0), node.end_lineno - node.lineno + 1)
    return lengths


def test_functions_are_short_but_for_the_listed_ones():
    lengths = function_lengths()
    over = {
        name: n for name, n in lengths.items()
        if n > LONG_FUNCTIONS.get(name, (MAX_FUNCTION_LINES,))[0]
    }  # fmt: skip
    assert over == {}, "split these functions (or they grew past their listed length)"
    stale = {name for name, (limit, _) in LONG_FUNCTIONS.items() if lengths.get(name, 0) < limit}
    assert stale == set(), "these got shorter: lower or remove their entry in LONG_FUNCTIONS"


MAX_API_PARAMETERS = 12


def test_public_api_functions_take_at_most_a_dozen_arguments():
    """Options beyond a dozen go into a settings object (`DiffSettings`, `ClusterSettings`,
    `ConceptQuery`, `EncodingOptions`, `ShardOptions`, `FitSettings`), checked once."""
    import inspect

    import saeembed
    from saeembed.api import preferences

    functions = {f"saeembed.{name}": getattr(saeembed, name) for name in saeembed.__all__
                 if name != "preferences" and inspect.isfunction(getattr(saeembed, name))}  # fmt: skip
    functions |= {f"saeembed.preferences.{name}": fn for name, fn in vars(preferences).items()
                  if inspect.isfunction(fn) and not name.startswith("_")
                  and fn.__module__ == preferences.__name__}  # fmt: skip
    assert len(functions) >= 20
    wide = {name: len(inspect.signature(fn).parameters) for name, fn in functions.items()}
    assert {n: k for n, k in wide.items() if k > MAX_API_PARAMETERS} == {}
