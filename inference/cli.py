"""What every command line of inference/ and training/ shares: the parser of niftiio.command_line (help that shows
defaults, usage errors on one line with exit code 2, no prefix matching of options), log lines, and progress that
suits where stderr goes (bars on a terminal, plain lines elsewhere)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from niftiio.command_line import HelpFormatter, UsageParser
from niftiio.native_stderr import STDERR_LOCK, write_line

__all__ = ["HelpFormatter", "UsageParser", "bar", "bars_off", "log"]


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
