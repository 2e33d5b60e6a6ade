"""Check that every package defines the task's label set and input-image suffix at most once, and that no other
code writes them: each package imports its one definition (inference/ and evaluation/ each have their own, as
neither imports the other; the others import inference's).

    python tools/check_task_constants.py [--root DIR] [--exclude GLOB ...]

The label set is a literal (dict, tuple, list or set, nested ones included) that holds the four organ names with
their ids 1-4, or the four names alone; the suffix is a string that holds ``_0000.nii.gz`` (or its regular-expression
form). A definition is such a literal
assigned to a name at module level; any other occurrence in code is a copy. Docstrings and ``help=`` texts of
options are prose, not code, and are not checked. Prints one line per problem and exits 1 when there is one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from source_tree import check_parser, packages, parse, python_files, report

ORGAN_NAMES = frozenset({"liver", "kidney", "spleen", "pancreas"})
SUFFIXES = ("_0000.nii.gz", r"_0000\.nii\.gz")
LABEL_SET, SUFFIX = "the label set", "the input suffix"
CONTAINERS = (ast.Dict, ast.Tuple, ast.List, ast.Set)


@dataclass(frozen=True)
class Occurrence:
    """One place that writes a task constant: its file, line, which constant, and whether it is a definition."""

    path: str
    line: int
    what: str
    definition: bool


def _prose(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (string statements) or ``help=`` texts (with their parts)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstrings, of names too
            ids.add(id(node.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            ids |= {id(n) for n in ast.walk(node.value)}
    return ids


def _constants(node: ast.AST, kind: type) -> set:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is kind}


def is_label_set(node: ast.AST) -> bool:
    """A literal that holds the four organ names with the ids 1-4 ({1: "liver", ...}, (("liver", 1), ...)), or
    the four names alone (("liver", "kidney", "spleen", "pancreas")); a table that merely mentions them (organ
    name -> tissue) is not one."""
    if not isinstance(node, CONTAINERS) or not ORGAN_NAMES <= _constants(node, str):
        return False
    elements = node.keys + node.values if isinstance(node, ast.Dict) else node.elts
    names_only = all(isinstance(e, ast.Constant) and e.value in ORGAN_NAMES for e in elements)
    return names_only or {1, 2, 3, 4} <= _constants(node, int)


def _module_level_values(tree: ast.Module) -> set[int]:
    """ids of the values assigned to names at module level."""
    out = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            out.add(id(stmt.value))
    return out


def occurrences(tree: ast.Module, path: str) -> list[Occurrence]:
    """Every label-set literal (the outermost one) and every suffix string of a module, in line order."""
    prose, defined = _prose(tree), _module_level_values(tree)
    found, inside = [], set()
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if is_label_set(node):
            found.append(Occurrence(path, node.lineno, LABEL_SET, id(node) in defined))
            inside |= {id(n) for n in ast.walk(node)}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if any(s in node.value for s in SUFFIXES):
                found.append(Occurrence(path, node.lineno, SUFFIX, id(node) in defined))
    return sorted(found, key=lambda o: o.line)


def problems(root: Path, exclude: list[str]) -> list[str]:
    """One line per problem: a second definition in a package, or a copy of a constant anywhere."""
    found = {package: [] for package in packages(root)}
    for package, occs in found.items():
        for rel in python_files(root, [package], exclude):
            occs += occurrences(parse(root, rel), rel)
    anywhere = defaultdict(list)
    for occ in (o for occs in found.values() for o in occs if o.definition):
        anywhere[occ.what].append(occ.path)
    lines = []
    for package, occs in found.items():
        for what in (LABEL_SET, SUFFIX):
            defs = [o for o in occs if o.definition and o.what == what]
            if len(defs) > 1:
                places = ", ".join(f"{d.path}:{d.line}" for d in defs)
                lines.append(f"{package}/: {what} is defined {len(defs)} times ({places}); keep one and import it")
        for occ in (o for o in occs if not o.definition):
            mine = [o.path for o in occs if o.definition and o.what == occ.what]
            hint = f"import it from {mine[0]}" if mine else f"import it ({', '.join(anywhere[occ.what])} define it)"
            lines.append(f"{occ.path}:{occ.line}: {occ.what} written out again; {hint}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = check_parser(__doc__)
    args = p.parse_args(argv)
    passed = f"task constants: each defined at most once per package ({', '.join(packages(args.root))})"
    return report(problems(args.root, args.exclude), passed)


if __name__ == "__main__":
    raise SystemExit(main())
