"""Counts in the messages a user reads: "1 case", "2 cases", never "1 cases" or "case(s)".

count(1, "case")              -> "1 case"
count(3, "label map")         -> "3 label maps"
count(2, "entry")             -> "2 entries"
count(1234, "voxel")          -> "1,234 voxels"
plural(2, "process")          -> "processes" (the noun alone, for "failed cases: a, b")
"""

from __future__ import annotations

_VOWELS = "aeiou"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``noun`` when ``n`` is 1, else its plural: ``many`` when given, else English's regular one (entry ->
    entries, process -> processes, box -> boxes, case -> cases, epoch -> epochs; pass ``many`` for "batch" and
    the like); the last word of a phrase is the one that changes ("label map" -> "label maps")."""
    if n == 1:
        return noun
    if many is not None:
        return many
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z")):
        return noun + "es"
    return noun + "s"


def count(n: int, noun: str, many: str | None = None) -> str:
    """``n`` (with thousands separators) and the noun in the form that agrees with it: "1 case", "2 cases"."""
    return f"{n:,} {plural(n, noun, many)}"
