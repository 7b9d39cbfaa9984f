"""The module graph: no import cycles among gcj's modules, and no gcj import hidden inside a
function (the usual way to dodge a cycle); the evaluation's random keys by name."""
import ast
import os

import jax
import numpy as np
from conftest import ROOT

from gcj import keys

PACKAGE = os.path.join(ROOT, "gcj")


def _modules() -> dict:
    """gcj module name -> its parsed source."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                out[name] = ast.parse(open(path).read(), path)
    return out


def _imports(node, known) -> set:
    """The gcj modules an import statement loads (``from gcj import X``: gcj.X if X is a module)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gcj":
        subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
        return subs | ({node.module} if len(subs) < len(node.names) else set())
    return set()


def _graph():
    modules = _modules()
    edges, nested = {}, []
    for name, tree in modules.items():
        edges[name] = set()
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            found = _imports(node, modules) - {name}
            edges[name] |= found
            if found and id(node) not in top:
                nested.append(f"{name}:{node.lineno} imports {', '.join(sorted(found))}")
    return edges, nested


def _cycles(edges: dict) -> list:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_gcj_modules():
    edges, _ = _graph()
    assert len(edges) > 30 and edges["gcj.classifier"] >= {"gcj.models", "gcj.data"}  # the graph is read
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_gcj_import_inside_a_function():
    _, nested = _graph()
    assert nested == []


def _numbered_keys(tree) -> list:
    """Lines of ``fold_in(key, <int literal>)`` calls: a key numbered by hand."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "fold_in"
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)]


def test_evaluation_keys_are_named_not_numbered():
    """Every key evaluate.py and the suites draw is ``gcj.keys.named``: no number to coordinate."""
    modules = _modules()
    found = {n: _numbered_keys(t) for n, t in modules.items()
             if n == "gcj.evaluate" or n.startswith("gcj.suites")}
    assert set(found) >= {"gcj.evaluate", "gcj.suites.adversarial", "gcj.suites.ood"}
    assert {n: v for n, v in found.items() if v} == {}
    assert _numbered_keys(ast.parse("k = jax.random.fold_in(key, 5)")) == [1]  # the check can fail


def test_named_keys():
    k = jax.random.key(0)
    data = lambda key: np.asarray(jax.random.key_data(key))  # noqa: E731
    assert np.array_equal(data(keys.named(k, "ood", "mnist5k")), data(keys.named(keys.named(k, "ood"), "mnist5k")))
    assert np.array_equal(data(keys.named(k, "ood")), data(keys.named(k, "ood")))
    drawn = {tuple(data(keys.named(k, n)).ravel()) for n in ("a", "b", "ood", "adversarial", "corruptions")}
    assert len(drawn) == 5 and tuple(data(k).ravel()) not in drawn
    assert np.array_equal(data(keys.named(k)), data(k))
