"""Checks of the values a user chooses (PlanOptions, EngineOptions), with errors that name the field, so that a
command line can say which of its options was wrong."""

from __future__ import annotations

from collections.abc import Sequence


class OptionError(ValueError):
    """A chosen value that cannot be used: ``field`` is the Python name ("batch_size"), ``problem`` the rest of the
    sentence ("must be >= 1, got 0"); str() is "batch_size must be >= 1, got 0"."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem

    def as_option(self) -> str:
        """The message in a command line's words: "--batch-size must be >= 1, got 0"."""
        return f"--{self.field.replace('_', '-')} {self.problem}"


def is_whole(value: object) -> bool:
    """An int (not a bool) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_whole(field: str, value: object, what: str = "") -> None:
    """OptionError unless ``value`` is an integer >= 1 (``what``: a unit for the message, " (slices)")."""
    if not is_whole(value):
        kind = "" if isinstance(value, int) and not isinstance(value, bool) else "an integer "
        raise OptionError(field, f"must be {kind}>= 1{what}, got {value!r}")


def check_choice(field: str, value: object, choices: Sequence[object]) -> None:
    """OptionError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise OptionError(field, f"must be one of {', '.join(str(c) for c in choices)}, got {value!r}")


def check_overlap(value: float) -> None:
    """OptionError unless the z-window overlap lies in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise OptionError("overlap", f"must be in [0, 1), got {value}")
