"""Check that every option's choices are written once: a module-level constant that the command lines'
``choices=`` and the code that checks a value use by name.

    python tools/check_option_choices.py [--root DIR] [--exclude GLOB ...] [--package NAME ...]

In the product's packages (inference, training, evaluation, niftiio; --package replaces them), a choice constant is a
module-level tuple literal of two or more str or int constants (``SHORT_VOLUMES = ("pad", "fit")``) that a
``choices=`` argument names, directly or through another constant built from it (``STRIDE_CHOICES`` from
``STRIDES``). Problems: two definitions of a choice constant's values (in any order), any other literal of them
(``if rule in ("pad", "fit")``, a copy in another module), and a ``choices=`` written as a literal. Prints one line
per problem and exits 1 when there is one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from source_tree import check_parser, packages, parse, python_files, report

LITERALS = (ast.Tuple, ast.List, ast.Set)
PRODUCT = ("inference", "training", "evaluation", "niftiio")


@dataclass(frozen=True)
class Literal:
    """A literal of constants: where it is, its values (sorted, as the key that finds copies), whether it is a
    module-level definition (then ``name`` is the name it is assigned to)."""

    path: str
    line: int
    values: tuple
    name: str | None


def _values(node: ast.AST) -> tuple | None:
    """The sorted values of a literal of two or more str or int constants; None for anything else."""
    if not isinstance(node, LITERALS) or len(node.elts) < 2:
        return None
    if not all(isinstance(e, ast.Constant) and type(e.value) in (str, int) for e in node.elts):
        return None
    return tuple(sorted((type(e.value).__name__, e.value) for e in node.elts))


def literals(tree: ast.Module, path: str) -> list[Literal]:
    """Every literal of constants in a module, definitions marked."""
    defined: dict[int, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Tuple):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                defined[id(stmt.value)] = targets[0].id
    out = []
    for node in ast.walk(tree):
        values = _values(node)
        if values is not None:
            out.append(Literal(path, node.lineno, values, defined.get(id(node))))
    return out


def literal_choices(tree: ast.Module, path: str) -> list[str]:
    """One line per ``choices=`` keyword whose value is a literal."""
    return [
        f"{path}:{node.value.lineno}: choices= written as a literal; name it once at module level and use the name"
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "choices" and isinstance(node.value, LITERALS)
    ]


def _names(node: ast.AST) -> set[str]:
    """The names (and attribute names: ``plan.PHASES``) an expression mentions."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def choice_names(trees: list[ast.Module]) -> set[str]:
    """The names ``choices=`` arguments mention, and the names the module-level constants of those names are built
    from, transitively."""
    names: set[str] = set()
    built_from: dict[str, set[str]] = defaultdict(set)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "choices":
                names |= _names(node.value)
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                built_from[stmt.targets[0].id] |= _names(stmt.value)
    todo = list(names)
    while todo:
        for name in built_from.get(todo.pop(), ()):
            if name not in names:
                names.add(name)
                todo.append(name)
    return names


def problems(root: Path, exclude: list[str], package_names: tuple[str, ...] = PRODUCT) -> list[str]:
    """One line per problem: a second definition of a choice constant's values, a copy of them, a literal
    ``choices=``."""
    found: list[Literal] = []
    lines: list[str] = []
    trees = []
    for rel in python_files(root, [p for p in packages(root) if p in package_names], exclude):
        tree = parse(root, rel)
        trees.append(tree)
        found += literals(tree, rel)
        lines += literal_choices(tree, rel)
    chosen = choice_names(trees)
    definitions = defaultdict(list)
    for lit in found:
        if lit.name is not None:
            definitions[lit.values].append(lit)
    definitions = {v: defs for v, defs in definitions.items() if any(d.name in chosen for d in defs)}
    for defs in definitions.values():
        if len(defs) > 1:
            places = ", ".join(f"{d.path}:{d.line} ({d.name})" for d in defs)
            lines.append(f"the choices {_shown(defs[0].values)} are defined {len(defs)} times: {places}; keep one")
    for lit in found:
        if lit.name is None and lit.values in definitions:
            first = definitions[lit.values][0]
            lines.append(
                f"{lit.path}:{lit.line}: {_shown(lit.values)} written out again; use {first.name} ({first.path})"
            )
    return lines


def _shown(values: tuple) -> str:
    return "(" + ", ".join(repr(v) for _, v in values) + ")"


def main(argv: list[str] | None = None) -> int:
    p = check_parser(__doc__)
    p.add_argument("--package", action="append", metavar="NAME", help="check this package (repeatable)")
    args = p.parse_args(argv)
    lines = problems(args.root, args.exclude, tuple(args.package or PRODUCT))
    return report(lines, "option choices: each written once, choices= by name")


if __name__ == "__main__":
    raise SystemExit(main())
