"""The project's Python sources as the checks in tools/ see them: packages, files, parsed syntax trees.

A package is a folder at the repository root with an ``__init__.py`` (so a new one is checked without being
named anywhere). Paths are relative to the root, with "/" separators; ``exclude`` holds fnmatch patterns
matched against them (``training/phantom*.py``).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

SKIPPED_DIRS = {".venv", "__pycache__", "node_modules"}


def check_parser(doc: str) -> argparse.ArgumentParser:
    """The options every check takes: --root (the repository root) and --exclude GLOB (repeatable)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], allow_abbrev=False)
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip these files (fnmatch)")
    return p


def report(lines: list[str], passed: str) -> int:
    """Print each problem line on stderr, or ``passed`` on stdout when there is none; the exit code (1 or 0)."""
    for line in lines:
        print(line, file=sys.stderr)
    if not lines:
        print(passed)
    return 1 if lines else 0


def _excluded(rel: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in exclude)


def packages(root: Path) -> list[str]:
    """Names of the top-level packages under ``root``, sorted."""
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "__init__.py").is_file()
    )


def python_files(root: Path, folders: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> Iterator[str]:
    """Relative paths of the .py files under ``folders`` of ``root`` (default: the whole tree), sorted, without
    hidden folders, virtual environments and the excluded ones."""
    tops = [root / f for f in folders] if folders is not None else [root]
    found = set()
    for top in tops:
        for path in top.rglob("*.py"):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part in SKIPPED_DIRS for part in rel.parts[:-1]):
                continue
            if not _excluded(rel.as_posix(), exclude):
                found.add(rel.as_posix())
    yield from sorted(found)


def parse(root: Path, rel: str) -> ast.Module:
    """The syntax tree of ``root/rel``."""
    return ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel)


def module_name(rel: str) -> str:
    """``inference/ct_io.py`` -> ``inference.ct_io``; ``inference/__init__.py`` -> ``inference``."""
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
