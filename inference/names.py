"""How names read from disk (files, folders, cases) are checked and shown: the one place that decides it.

A name on Linux is any bytes but "/" and NUL. Python hands the bytes that are not UTF-8 on as lone surrogates
(``os.fsdecode``); the image library (SimpleITK, in C++) cannot take such a name, and aborts the whole process
instead of raising. So every name is checked with :func:`name_problem` before it reaches the image library: a case
whose file name is not UTF-8 fails alone, with one line.

Names are shown with :func:`shown`: the bytes that are not UTF-8 as ``\\xNN`` and control characters (a newline, a
tab, an escape) escaped, so that a name never breaks a log line, a CSV row or a terminal.
"""

from __future__ import annotations

import os
import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str) -> str:
    """``text`` (a name, or a line holding names) as one printable line: bytes that are not UTF-8 (lone surrogates
    of ``os.fsdecode``) become ``\\xNN``, newline, carriage return and tab ``\\n``, ``\\r``, ``\\t``, any other
    control or lone surrogate character ``\\xNN`` or ``\\uNNNN``; everything else is kept."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte of os.fsdecode that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Cs"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def name_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be handed to the image library, as one line naming it (:func:`shown`), or None: it is
    not valid UTF-8."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{shown(text)}: the name is not valid UTF-8, which the image library cannot open; rename it"
    return None
