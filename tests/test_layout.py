"""The package's layout: no module imports another that imports it back, and each one imports on its own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import gotd_stream

PACKAGE = Path(gotd_stream.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Which of our modules each module imports, at the top or inside a function (a lazy import still ties the
    two modules together). `from a import b` counts as importing a.b when that is a module, else a."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in known}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[name].add(target if target in known else node.module)
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import; the package uses absolute ones")
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first search, grey nodes on the stack)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "gotd_stream.finetune.trainer" in graph["gotd_stream.finetune.warmup"]  # the walk sees the imports
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # and the search finds one


# The rooms from the bottom up (ARCHITECTURE.md): a module imports its own room's modules and those of the rooms
# below, never one above. The helpers at the bottom are single modules; `gotd_stream` is the public API.
LAYERS = (
    {"checks", "errors", "hf", "progress", "text", "threads", "version"},
    {"io"},
    {"features"},
    {"select"},
    {"distributed", "finetune", "report", "manifest"},
    {"gotd_stream"},
    {"cli", "__main__"},
)


def room(module: str) -> str:
    """The room of a module: its subpackage or top-level module below gotd_stream, or gotd_stream itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def rooms(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between rooms: room A imports room B when one of A's modules imports one of B's."""
    found: dict[str, set[str]] = {}
    for name, targets in graph.items():
        found.setdefault(room(name), set()).update(room(target) for target in targets)
    for name, targets in found.items():
        targets.discard(name)
    return found


def against_the_flow(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a room above its own (LAYERS), as "module -> module"."""
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    return sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if level[room(target)] > level[room(name)]
    )


def test_every_room_has_a_layer():
    """A new subpackage or top-level module finds its place in LAYERS (and in ARCHITECTURE.md's rooms)."""
    assert {room(name) for name in modules()} - set().union(*LAYERS) == set()


def test_no_room_imports_one_that_imports_it_back():
    """No cycle between rooms either: features and select, say, each lazily importing the other."""
    graph = rooms(import_graph())
    assert "features" in graph["select"] and "io" in graph["select"]  # the walk sees the rooms' imports
    assert cycles(graph) == []
    assert cycles(rooms({"p.a.x": {"p.b.y"}, "p.b.y": {"p.a.z"}, "p.a.z": set()})) == [["a", "b", "a"]]


def test_imports_run_down_the_layers():
    """io reads bytes and records and knows no feature space; a feature space knows nothing of the method
    (select) that uses it; the library knows nothing of the CLI. Lazy and type-only imports count too."""
    graph = import_graph()
    assert against_the_flow(graph) == []
    assert against_the_flow({"p.io.records": {"p.features.base"}, "p.features.base": set()}) == [
        "p.io.records -> p.features.base"
    ]
    for name, targets in graph.items():  # the two rules the layers exist for, said plainly
        if room(name) == "io":
            assert {room(target) for target in targets} & {"features", "select"} == set(), name
        if room(name) == "features":
            assert "select" not in {room(target) for target in targets}, name


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Imported first, a module of a cycle finds its partner half-initialised; and the package a command imports
    must leave torch and transformers to the functions that need them."""
    names = [name for name in modules() if name != "gotd_stream.__main__"]
    code = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] == "gotd_stream"]:
        del sys.modules[loaded]
    importlib.import_module(name)
    heavy = sorted({"torch", "transformers", "fsspec"} & set(sys.modules))
    if name in ("gotd_stream.cli", "gotd_stream.finetune") and heavy:
        raise SystemExit(f"{name} imports {heavy}")
print("ok", len(sys.argv) - 1)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", str(len(names))]


def test_the_cli_imports_the_api_click_and_light_modules():
    """cli/ parses, calls the library, reports. It imports click, the standard library, the public API (each
    `gs.X` it uses is in `__all__`) and library modules: at the top only those that leave numpy and torch
    unloaded, the heavy ones inside the command that needs them, so that `--help` answers at once."""
    import gotd_stream as gs

    known = modules()
    outside, private, top, inner = {}, {}, set(), set()
    for name, path in known.items():
        if not name.startswith("gotd_stream.cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        at_top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "gs":
                if node.attr not in gs.__all__:
                    private.setdefault(name, []).append(node.attr)
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
                if node.module == "gotd_stream":  # a public name, or a subpackage (finetune) by its own name
                    targets = [f"gotd_stream.{a.name}" for a in node.names if f"gotd_stream.{a.name}" in known]
                    missing = [
                        a.name for a in node.names if a.name not in gs.__all__ and f"gotd_stream.{a.name}" not in known
                    ]
                    private.setdefault(name, []).extend(missing)
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "gotd_stream":
                    if not target.startswith("gotd_stream.cli"):
                        (top if id(node) in at_top else inner).add(target)
                elif target.split(".")[0] not in sys.stdlib_module_names | {"click", "tqdm", "__future__"}:
                    outside.setdefault(name, []).append(target)
    assert outside == {} and {k: v for k, v in private.items() if v} == {}
    assert "gotd_stream.select.artifact" in inner and "gotd_stream" in top  # the walk sees both kinds
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n"
    code += "print(sorted({'numpy', 'torch', 'transformers', 'fsspec'} & set(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code, *sorted(top)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]"], f"a module cli/ imports at the top loads {result.stdout}"


def _public_api() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, tuple[str, ...]], list[str]]:
    """gotd_stream/__init__.py read as text: its eager imports, its TYPE_CHECKING imports (by module), the lazy
    table and __all__."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    eager, typed, lazy, public = {}, {}, {}, []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gotd_stream."):
            eager.setdefault(node.module, set()).update(alias.name for alias in node.names)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in node.body:
                assert isinstance(inner, ast.ImportFrom), ast.unparse(inner)
                typed.setdefault(inner.module, set()).update(alias.name for alias in inner.names)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_LAZY":
                lazy = ast.literal_eval(node.value)
            elif node.targets[0].id == "__all__":
                public = ast.literal_eval(node.value)
    return eager, typed, lazy, public


def test_the_public_api_is_what_tools_read():
    """IDEs and type checkers follow imports, not a string table: each lazily loaded name is imported under
    TYPE_CHECKING from the module the table names, and the eager and lazy names together are exactly __all__."""
    import gotd_stream as gs

    eager, typed, lazy, public = _public_api()
    assert typed and lazy and public  # the parse found all three
    assert typed == {module: set(names) for module, names in lazy.items()}
    named = [name for names in eager.values() for name in names] + [name for names in lazy.values() for name in names]
    assert sorted(named) == sorted(public) and len(set(public)) == len(public)
    assert public == gs.__all__ and 35 <= len(public) <= 50  # a small API: a verb per step, not a catalogue
    for module, names in {**eager, **lazy}.items():
        for name in names:
            assert getattr(gs, name) is getattr(__import__(module, fromlist=[name]), name), name


def test_the_public_api_is_documented():
    """help(gotd_stream) shows a usable API: every public name resolves and has a docstring of its own (not a
    dataclass's generated signature), and the example uses only public names."""
    import pydoc
    import re

    import gotd_stream as gs

    assert "Example::" in gs.__doc__
    undocumented = []
    for name in gs.__all__:
        value = getattr(gs, name)
        doc = (value.__dict__.get("__doc__") if isinstance(value, type) else getattr(value, "__doc__", "")) or ""
        if callable(value) and (not doc.strip() or doc.startswith(f"{value.__name__}(")):
            undocumented.append(name)
    assert undocumented == []
    used = set(re.findall(r"\bgs\.(\w+)", gs.__doc__))
    assert {"fit", "pick", "merge", "load", "build_report"} <= used and used - set(gs.__all__) == set()
    text = pydoc.render_doc(gs, renderer=pydoc.plaintext)
    for name in ("fit", "score", "merge", "load", "featurizer_for", "FitSettings", "Potentials"):
        assert name in text


def test_the_library_prints_nothing():
    """Only cli/ speaks to the terminal; the library logs (logging.getLogger("gotd_stream")) and raises."""
    printing = [
        f"{name}:{node.lineno}"
        for name, path in modules().items()
        if not name.startswith("gotd_stream.cli")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert printing == []
