"""Check that no function or method of the tree is longer than a limit (default 100 lines, decorators apart).

    python tools/check_function_length.py [--root DIR] [--max N] [--exclude GLOB ...]

Every .py file of the tree counts (packages, tests, scripts), nested functions too. Prints each function over the
limit (path:line name: N lines) and exits 1 when there is one; else the longest one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from source_tree import check_parser, parse, python_files


def function_lengths(root: Path, exclude: list[str]) -> list[tuple[int, str, int, str]]:
    """(lines, path, first line, name) of every function of the tree, longest first."""
    out = []
    for rel in python_files(root, exclude=exclude):
        for node in ast.walk(parse(root, rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, rel, node.lineno, node.name))
    return sorted(out, key=lambda t: (-t[0], t[1], t[2]))


def main(argv: list[str] | None = None) -> int:
    p = check_parser(__doc__)
    p.add_argument("--max", type=int, default=100, metavar="N", help="longest function allowed, in lines")
    args = p.parse_args(argv)
    lengths = function_lengths(args.root, args.exclude)
    over = [t for t in lengths if t[0] > args.max]
    for n, rel, line, name in over:
        print(f"{rel}:{line} {name}: {n} lines (more than {args.max})", file=sys.stderr)
    if not over and lengths:
        n, rel, line, name = lengths[0]
        print(f"functions: none over {args.max} lines (longest: {rel}:{line} {name}, {n} lines)")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
