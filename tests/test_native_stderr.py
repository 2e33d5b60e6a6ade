"""A line the program writes itself (a signal handler's, say) reaches the real stderr at every moment of a capture
of what C libraries print (niftiio/native_stderr.py)."""

from __future__ import annotations

import os
import sys

from niftiio import native_stderr
from niftiio.native_stderr import captured_stderr, write_line


def test_a_line_written_as_the_capture_starts_and_ends_reaches_the_real_stderr(monkeypatch, capfd):
    """Lines written just after each redirection of descriptor 2 (where a signal handler may run): none is lost
    in the capture; what the libraries print inside it is captured."""
    real_dup2 = os.dup2

    def dup2(fd: int, fd2: int) -> None:
        real_dup2(fd, fd2)
        if fd2 == 2:
            write_line(f"a handler's line after dup2 #{len(seen)}")
            seen.append(fd)

    seen: list[int] = []
    fd2 = open(2, "w", closefd=False)  # sys.stderr as a program has it: writing to descriptor 2
    monkeypatch.setattr(sys, "stderr", fd2)
    monkeypatch.setattr(native_stderr.os, "dup2", dup2)
    with captured_stderr() as captured:
        os.write(2, b"printed by a library\n")
    monkeypatch.undo()
    err = capfd.readouterr().err
    assert len(seen) == 2
    assert "a handler's line after dup2 #0" in err and "a handler's line after dup2 #1" in err
    assert captured.lines == ["printed by a library"] and "printed by a library" not in err
