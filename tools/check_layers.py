"""Check that each package imports only what its layer may: inference/ (shipped in the container) neither
training's tools (torch.optim, torch.amp.GradScaler, training/) nor evaluation/, phantom/ or bench/; phantom/ not
training/; niftiio/ none of the project's other packages.

    python tools/check_layers.py [--root DIR] [--exclude GLOB ...]

Every import statement counts, at module level or inside a function, and so does an attribute chain that names a
forbidden module (``torch.optim.Adam``, ``torch.amp.GradScaler``). Prints one line per forbidden import and exits 1
when there is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from source_tree import check_parser, packages, parse, python_files, report

FORBIDDEN = {
    "inference": ("torch.optim", "torch.amp.GradScaler", "training", "evaluation", "phantom", "bench"),
    "phantom": ("training",),
    "niftiio": ("inference", "training", "evaluation", "phantom", "bench"),
}
"""Package -> the modules (and everything below them) it may not import."""


def _dotted(node: ast.AST) -> str | None:
    """``torch.optim.Adam`` for an attribute chain on a name; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _module_names(tree: ast.Module) -> set[str]:
    """The names that ``import`` statements bind to modules (``import torch`` and ``import torch.nn``: torch)."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {a.asname or a.name.split(".")[0] for a in node.names}
    return bound


def imported_names(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, dotted name) of everything a module imports, or names through an attribute chain on an imported
    module (``torch.optim.Adam``; a variable's attributes do not count)."""
    out = []
    modules = _module_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name is not None and name.split(".")[0] in modules:
                out.append((node.lineno, name))
    return out


def _under(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def problems(root: Path, exclude: list[str]) -> list[str]:
    """One line per forbidden import: path:line, the package, what it imports."""
    lines = []
    for package in (p for p in packages(root) if p in FORBIDDEN):
        for rel in python_files(root, [package], exclude):
            seen = set()
            for line, name in imported_names(parse(root, rel)):
                banned = next((m for m in FORBIDDEN[package] if _under(name, m)), None)
                if banned is not None and (line, banned) not in seen:
                    seen.add((line, banned))
                    lines.append(f"{rel}:{line}: {package}/ may not import {banned} ({name})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = check_parser(__doc__)
    args = p.parse_args(argv)
    passed = f"layers: {', '.join(f'{k}/ imports none of {len(v)} modules' for k, v in FORBIDDEN.items())}"
    return report(problems(args.root, args.exclude), passed)


if __name__ == "__main__":
    raise SystemExit(main())
