"""The package's import graph keeps its layers: data → faces → synth → model → train → infer → commands/demo.

Every import is read with `ast` (module top and function-local alike, since a lazy import is still a
dependency), resolved to a module of the package, and checked: no import cycle between modules, and no
module importing from a higher layer. utils, errors and config are the bottom layer. `synth` (the
synthetic benchmark) draws faces, so it sits above faces and below the model. `testing` (fixtures for
the tests) may use anything and nothing in the package may use it, so it sits at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import micronbert

LAYERS = [
    ("micronbert.utils", "micronbert.errors", "micronbert.config"),
    ("micronbert.data",),
    ("micronbert.faces",),
    ("micronbert.synth",),
    ("micronbert.model",),
    ("micronbert.train",),
    ("micronbert.infer", "micronbert"),  # the package root only re-exports the inference API
    ("micronbert.commands", "micronbert.demo", "micronbert.cli", "micronbert.__main__"),
    ("micronbert.testing",),
]

# Edges that break the layering in files this refactor's owner may not edit; each names the file.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, modules: set[str]) -> set[str]:
    """The `modules` that the file imports anywhere (top level, functions, classes)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` depends on the module mod; `from mod import name` on mod
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(submodules or {base})
    return (found & modules) - {module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package that it imports."""
    root = Path(root)
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {mod: imports_of(path, mod, set(files)) for mod, path in files.items()}


def layer_of(module: str, layers=LAYERS) -> int:
    """Index of the longest layer prefix that the module belongs to."""
    best, best_len = None, -1
    for i, names in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[tuple[str, str]]:
    return sorted((a, b) for a, deps in graph.items() for b in deps if layer_of(b, layers) > layer_of(a, layers))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def package_graph() -> dict[str, set[str]]:
    graph = import_graph(Path(micronbert.__file__).parent)
    return {a: {b for b in deps if (a, b) not in KNOWN_EXCEPTIONS} for a, deps in graph.items()}


def test_no_import_cycles():
    assert cycles(package_graph()) == []


def test_no_upward_imports():
    assert upward_imports(package_graph()) == []


def test_every_module_has_a_layer():
    for module in package_graph():
        layer_of(module)


# -- the checker itself must be able to fail -----------------------------------------------------------
def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_finds_a_hidden_cycle_and_an_upward_import(tmp_path):
    pkg = write_tree(tmp_path / "micronbert", {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "",
        "data/a.py": "from micronbert.errors import X\n",
        "model/__init__.py": "",
        "model/m.py": "def f():\n    from micronbert.train import t  # function-local, upward\n",
        "train/__init__.py": "",
        "train/t.py": "from . import u\n",
        "train/u.py": "import micronbert.data.a\ndef g():\n    from .t import h\n",
    })
    graph = import_graph(pkg)
    assert graph["micronbert.train.t"] == {"micronbert.train.u"}
    assert graph["micronbert.train.u"] == {"micronbert.data.a", "micronbert.train.t"}
    assert cycles(graph) == [["micronbert.train.t", "micronbert.train.u"]]
    assert upward_imports(graph) == [("micronbert.model.m", "micronbert.train.t")]


def test_checker_passes_a_clean_graph_and_orders_layers():
    graph = {"micronbert.data.a": {"micronbert.utils.io"}, "micronbert.infer.p": {"micronbert.model.c"},
             "micronbert.synth.s": {"micronbert.faces.f"}}
    assert cycles(graph) == [] and upward_imports(graph) == []
    assert upward_imports({"micronbert.faces.f": {"micronbert.synth.s"}}) == [("micronbert.faces.f",
                                                                               "micronbert.synth.s")]
    assert upward_imports({"micronbert.model.x": {"micronbert.testing.fake"}})
    with pytest.raises(AssertionError, match="no layer"):
        layer_of("somewhere.else")
