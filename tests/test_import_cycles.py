"""No import cycle anywhere in itcollect/: module-level and function-local imports both count (a
deferred import hides a cycle from Python, not from a reader); imports under ``if TYPE_CHECKING:``
exist for type hints only and do not."""

from __future__ import annotations

import ast

from .importgraph import import_graph
from .importgraph import imports_of as _imports


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def test_the_graph_sees_function_local_imports_and_skips_type_checking(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n")
    assert sorted(a.name for node in _imports(tree) for a in node.names) == ["TYPE_CHECKING", "b", "c"]
    assert find_cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
    graph = import_graph()
    assert "itcollect.config" in graph["itcollect.workspace"]


def test_no_import_cycle_in_itcollect():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles (break them by moving code where it belongs):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)
