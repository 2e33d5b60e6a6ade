"""Output files being written: where they lie, who holds them, and what a signal or a later run removes.

Every output file is written under a temporary name in a hidden subfolder of its folder, :data:`PARTIAL_DIR`
(``<out>/.runet-partial/<16 hex><suffix>``), then renamed to its final name (:func:`publish`), so that a file exists
under its final name only when whole, and no temporary name can be an output's name (a case named
``.runet-deadbeef`` writes ``.runet-deadbeef.nii.gz`` beside the subfolder, which nothing removes).

The process writing a temporary file holds an exclusive ``flock`` on it from its creation until it is renamed or
removed. A later run removes only the files it can lock itself (:func:`remove_abandoned_temp_files`): those of a
process that was killed. The files of a process that runs, or is paused (SIGSTOP), are kept. The subfolder is
removed whenever it is left empty.

:data:`OUTPUTS` records this process's files as they are written, for the signal handler of a run
(inference.runner): a temporary file is recorded before it is created, and a rename and its record are one step
that a signal waits for (:meth:`OutputRecord.settled`), so that no signal finds a file that is not recorded.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_DIR = ".runet-partial"
"""The hidden subfolder of an output folder that holds the files being written."""
CREATE_TRIES = 100


class OutputRecord:
    """This process's output files: the label maps written (final paths, in order) and the temporary files being
    written now. A signal handler reads it to list what was written and remove what was not."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self.writing: set[Path] = set()
        self.folders: set[Path] = set()  # the subfolders of temporary files used
        self._depth = 0
        self._deferred: Callable[[], None] | None = None

    def remove_partial(self) -> list[Path]:
        """Delete the temporary files being written now, and the subfolders of temporary files left empty; the files
        that were there."""
        removed = []
        for tmp in list(self.writing):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
            self.writing.discard(tmp)
        for partial in self.folders:
            remove_if_empty(partial)
        return removed

    @contextmanager
    def settled(self) -> Iterator[None]:
        """A step that a signal handler must not cut in two (a rename and its record): an action handed to
        :meth:`when_settled` inside it runs when the outermost such block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._deferred is not None:
                action, self._deferred = self._deferred, None
                action()

    def when_settled(self, action: Callable[[], None]) -> None:
        """Run ``action`` now, or at the end of the :meth:`settled` block under way (the first one asked wins)."""
        if self._depth == 0:
            action()
        elif self._deferred is None:
            self._deferred = action


OUTPUTS = OutputRecord()


def temp_path(folder: Path, suffix: str = ".nii.gz") -> Path:
    """A new temporary name for a file of ``folder``: ``folder/.runet-partial/<16 hex><suffix>``."""
    return Path(folder) / PARTIAL_DIR / f"{secrets.token_hex(8)}{suffix}"


def remove_if_empty(partial: Path) -> None:
    """Remove the subfolder ``partial`` when it is empty (and there); anything else is let be."""
    try:
        os.rmdir(partial)
    except OSError:
        pass


def _same_file(path: Path | str, fd: int) -> bool:
    """Whether ``path`` (not followed) is still the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _create_locked(folder: Path, suffix: str) -> tuple[Path, int]:
    """A new empty temporary file of ``folder`` (recorded in :data:`OUTPUTS` before it exists) and a descriptor that
    holds an exclusive flock on it. OSError when the subfolder is not a folder or the file cannot be created."""
    partial = Path(folder) / PARTIAL_DIR
    OUTPUTS.folders.add(partial)
    for _ in range(CREATE_TRIES):
        tmp = temp_path(folder, suffix)
        OUTPUTS.writing.add(tmp)  # recorded before it exists: a signal from here on removes it
        try:
            try:
                os.mkdir(partial)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(partial).st_mode):
                    raise OSError(errno.ENOTDIR, f"{partial} is not a folder") from None
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except (FileNotFoundError, FileExistsError):  # the empty subfolder was removed just then, or a name repeated
            OUTPUTS.writing.discard(tmp)
            continue
        except BaseException:
            OUTPUTS.writing.discard(tmp)
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(tmp, fd):
            return tmp, fd
        os.close(fd)  # another run removed it as abandoned before the lock was taken: take another name
        OUTPUTS.writing.discard(tmp)
    raise OSError(errno.EAGAIN, f"cannot create a temporary file in {partial}")


@contextmanager
def temp_file(folder: Path, suffix: str = ".nii.gz") -> Iterator[Path]:
    """A new empty temporary file for an output of ``folder`` (see the module's docstring), held under this
    process's lock for the block: write it, then :func:`publish` it. Whatever happens, the file is gone when the
    block ends (renamed, or removed), and its subfolder too when left empty. OSError when it cannot be created."""
    tmp, fd = _create_locked(folder, suffix)
    try:
        yield tmp
    finally:
        try:
            tmp.unlink(missing_ok=True)
        finally:
            OUTPUTS.writing.discard(tmp)
            os.close(fd)
            remove_if_empty(tmp.parent)


def publish(tmp: Path, path: Path, record: bool = True) -> None:
    """Rename the temporary file ``tmp`` to its final ``path`` and, with ``record``, record ``path`` as a label map
    written: one step for a signal handler (:meth:`OutputRecord.settled`)."""
    with OUTPUTS.settled():
        os.replace(tmp, path)
        OUTPUTS.writing.discard(tmp)
        if record:
            OUTPUTS.written.append(path)


def remove_abandoned_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files of ``folder`` that no process holds (those a killed run left), and the subfolder
    when it is left empty; the files of a running or paused process are kept. Returns the paths removed. OSError
    when the subfolder cannot be listed."""
    partial = Path(folder) / PARTIAL_DIR
    try:
        entries = list(os.scandir(partial))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a process holds it
            if _same_file(entry.path, fd):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    remove_if_empty(partial)
    return removed
