"""What every command line of the project shares: help that shows defaults, usage errors on one line, progress
that suits where stderr goes (bars on a terminal, plain lines elsewhere)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from tqdm import tqdm

from niftiio.native_stderr import STDERR_LOCK, write_line


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's line breaks and adds "(default: X)" to every option that has a default
    (not to required options, flags that are off by default, or options without a default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
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


class UsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, ending with a pointer to --help, exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def log(message: str) -> None:
    """One line on stderr, printed above any progress bar, and never lost in a capture of what ITK prints (see
    niftiio.native_stderr)."""
    write_line(message, write=lambda m: tqdm.write(m, file=sys.stderr))


_BARS_OFF = False


def bars_off() -> None:
    """No progress bars from here on, terminal or not (several processes share the terminal)."""
    global _BARS_OFF
    _BARS_OFF = True


def bar(**kwargs) -> tqdm:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal (elsewhere: no bar and no '\\r') and
    :func:`bars_off` was not called.

    Bars redraw under the lock that a capture of ITK's stderr holds, so a redraw never lands inside one."""
    tqdm.set_lock(STDERR_LOCK)
    return tqdm(file=sys.stderr, disable=True if _BARS_OFF else None, dynamic_ncols=True, **kwargs)
