"""Check that no module of the project's packages imports itself through others: no import cycle.

    python tools/check_import_cycles.py [--root DIR] [--exclude GLOB ...]

Every import statement counts, at module level or inside a function (a function-level import that closes a
cycle is still one). ``from pkg import name`` is an edge to the module pkg.name when that is a module of the
tree, else to pkg. Prints each cycle as ``a -> b -> a`` and exits 1 when there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from source_tree import check_parser, module_name, packages, parse, python_files


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]) -> set[str]:
    """The tree's modules that an import statement of module ``importer`` names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importer's package, one level up per extra dot
            parts = importer.split(".") if is_package else importer.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in modules:  # import a.b.c of a non-module: the nearest enclosing module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(root: Path, exclude: list[str]) -> dict[str, set[str]]:
    """module -> the tree's modules it imports (anywhere in its code), over every package of ``root``."""
    files = {module_name(rel): rel for rel in python_files(root, packages(root), exclude)}
    graph = {}
    for mod, rel in files.items():
        is_package = rel.endswith("__init__.py")
        edges = set()
        for node in ast.walk(parse(root, rel)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, mod, is_package, set(files))
        graph[mod] = edges - {mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a closed path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(_closed_path(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), as [a, ..., a]."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


def main(argv: list[str] | None = None) -> int:
    p = check_parser(__doc__)
    args = p.parse_args(argv)
    graph = import_graph(args.root, args.exclude)
    found = cycles(graph)
    for path in found:
        print("import cycle: " + " -> ".join(path), file=sys.stderr)
    if not found:
        print(f"imports: no cycle among {len(graph)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
