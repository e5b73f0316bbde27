"""The modules of ``src/crnn`` import each other without a cycle.

The import graph is read from the sources: every ``import`` and ``from ...
import`` of a ``crnn`` module in a ``.py`` file (with ``ast``, at any depth,
so imports inside functions count), and every ``import`` / ``cimport`` of a
``crnn`` module in a ``.pyx`` or ``.pxd`` file. ``from crnn.a import b``
is an edge to ``crnn.a.b`` when that is a module, else to ``crnn.a``. The
parent packages that Python initialises before a module are not edges.
"""
import ast
import pathlib
import re

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
CYTHON_IMPORT = re.compile(
    r"^[ \t]*(?:from\s+(crnn[\w.]*)\s+c?import\s+(\([^)]*\)|[\w, \t]+)"
    r"|c?import\s+(crnn[\w.]*))", re.M)


def module_name(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def crnn_modules():
    """Module name -> its source files (a Cython module has a .pyx and a .pxd)."""
    modules = {}
    for path in sorted(SRC.joinpath("crnn").rglob("*")):
        if path.suffix in (".py", ".pyx", ".pxd"):
            modules.setdefault(module_name(path), []).append(path)
    return modules


def target(modules, package, names):
    """Edges of ``from package import names``."""
    found = [f"{package}.{n}" for n in names if f"{package}.{n}" in modules]
    return found if len(found) == len(names) else found + [package]


def imports_of(name, path, modules):
    text = path.read_text()
    edges = set()
    if path.suffix == ".py":
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                edges.update(target(modules, base, [a.name for a in node.names]))
    else:
        for package, names, plain in CYTHON_IMPORT.findall(text):
            if plain:
                edges.add(plain)
            else:
                names = [n.split(" as ")[0].strip()
                         for n in names.strip("()").replace("\n", " ").split(",")]
                edges.update(target(modules, package, [n for n in names if n]))
    return {e for e in edges if e in modules and e != name}


def import_graph():
    modules = crnn_modules()
    return {name: set().union(*(imports_of(name, p, modules) for p in paths))
            for name, paths in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "crnn._network" in graph["crnn._estimators"]            # from-import
    assert "crnn._validation" in graph["crnn._estimators"]         # from crnn import _validation
    assert "crnn.kernels.blas" in graph["crnn.kernels.stack"]      # cimport
    assert "crnn.kernels.gru" in graph["crnn.kernels.stack"]       # cimport ( ... )
    assert "crnn.kernels._elementwise" in graph["crnn.kernels.activations"]  # .pyx
    assert "crnn.kernels.blas" in graph["crnn.kernels.elman"]       # import in a .pyx
    assert "crnn._estimators" in graph["crnn"]


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
])
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
