"""The shape of the phantom package: short functions, imports at module level only, no import cycle in the tree,
and nothing of the product or of the training loop importing the generator (checked on the source with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inference", "evaluation", "niftiio", "training", "phantom")
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).glob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement names (`from pkg import mod` names the module pkg.mod)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [n for n in names if n in modules]


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """(module-level imports, imports inside functions or classes) of each project module, project modules only."""
    top: dict[str, set[str]] = {}
    nested: dict[str, list[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        top[name] = {
            m for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for m in imported(node, modules)
        }
        nested[name] = [
            m
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body
            for m in imported(node, modules)
        ]
    return top, nested


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_function_in_phantom_is_over_100_lines():
    long = []
    for path in sorted((REPO / "phantom").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_tree_has_no_import_cycle_and_phantom_imports_at_module_level():
    modules = project_modules()
    assert "phantom.generate" in modules and "phantom.cli" in modules
    top, nested = import_graph(modules)
    assert find_cycle(top) is None, f"import cycle: {' -> '.join(find_cycle(top))}"
    inside = {m: n for m, n in nested.items() if m.startswith("phantom") and n}
    assert not inside, f"project modules imported inside a function: {inside}"


def test_nothing_but_tests_and_benchmarks_imports_the_phantom_generator():
    """The image's inference/ and niftiio/, evaluation/ and the training loop read phantoms as files only."""
    modules = project_modules()
    top, nested = import_graph(modules)
    users = {m: sorted(n for n in top[m] | set(nested[m]) if n.split(".")[0] == "phantom") for m in modules}
    assert {m: n for m, n in users.items() if n and not m.startswith("phantom")} == {}
