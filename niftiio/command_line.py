"""The one style of every command line of the project: help that shows defaults, usage errors on one line with
exit code 2, and options that must be typed in full (no prefix matching: ``--phase 4`` is not ``--phases 4``).

Shared by inference/, evaluation/, training/ and phantom/ (inference/ and evaluation/ import nothing from each
other); imports only the standard library.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

CONSOLE_SCRIPT_PREFIX = "runet-"
"""The installed commands (pyproject.toml's console scripts) are named ``runet-<command>``."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's line breaks and adds "(default: X)" to every option that has a default
    (not to required options, flags that are off by default, or options without a default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "(default" in text
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == ""
            or isinstance(action, argparse._HelpAction)
        ):
            return text
        if isinstance(default, (list, tuple)):  # shown as typed on the command line: "16 32 64", or none
            shown = " ".join(str(v) for v in default) if default else "none"
            return text + f" (default: {shown})".replace("%", "%%")
        return text + " (default: %(default)s)"


def program_name(module_prog: str) -> str:
    """The name a user typed: ``runet-evaluate`` when run as an installed console script, else ``module_prog``
    (e.g. ``python -m evaluation.evaluate``)."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return invoked if invoked.startswith(CONSOLE_SCRIPT_PREFIX) else module_prog


class UsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, ending with a pointer to --help, exit code 2;
    options are never matched by prefix (``allow_abbrev=False``), and --help shows every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        if kwargs.get("prog"):
            kwargs["prog"] = program_name(kwargs["prog"])
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see <prog> --help)`` as one line and exit with code 2."""
        self.exit(2, self.error_line(message))

    def error_line(self, message: str) -> str:
        """``<prog>: error: <message> (see <prog> --help)`` and a newline, the message's whitespace collapsed."""
        return f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n"

    def fail(self, message: str) -> int:
        """Print the one line of :meth:`error` and return 2, for a main() that returns its exit code."""
        sys.stderr.write(self.error_line(message))
        return 2
