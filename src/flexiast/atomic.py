"""Atomic file replacement, for every file a run or a profile writes.

A file is written to ``NAME.tmp`` and renamed over ``NAME`` with ``os.replace``, which
POSIX makes atomic: a reader, or a run resumed after a kill, sees the old file or the new
one, never a mix. (The one writer per file is the main rank.) A write that fails (a full
disk) raises :class:`WriteError`, which names the file, and removes its partial ``.tmp``:
the old file is untouched, and the partial one would only hold space the disk lacks.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress
from pathlib import Path

from . import faults

__all__ = ["WriteError", "writing", "write_atomic", "write_text_atomic"]


class WriteError(OSError):
    """Writing ``path`` failed; ``errno`` is the cause's (``ENOSPC`` for a full disk).

    An ``OSError`` from ``write`` or ``fsync`` names no file (``[Errno 28] No space left on
    device``); this one does, and ``advice`` (added by the caller that knows it, e.g. how to
    continue a run) follows the message.
    """

    def __init__(self, path, cause: OSError, advice: str = ""):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path, self.advice = Path(path), advice

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}" + (f"; {self.advice}" if self.advice else "")


def _os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error``: itself, or the first in its chain of causes and contexts
    (``torch.save`` reports a failed write of its file as a ``RuntimeError`` raised during it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def writing(path):
    """Turn an ``OSError`` raised inside the block, or an error caused by one, into a
    :class:`WriteError` naming ``path``; other errors pass unchanged."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        cause = _os_error(e)
        if cause is None:
            raise
        raise WriteError(path, cause) from e


def write_atomic(path: Path, write, *, fsync: bool = True, failpoint: str | None = None) -> None:
    """Replace ``path`` with what ``write(file)`` writes, atomically: a kill at any moment
    leaves the old file or the new one, never a mix (``path.tmp``, then ``os.replace``).

    With ``fsync`` the data and the rename are on disk before this returns (a power cut
    keeps them too); a process kill alone cannot lose data the kernel already holds.
    ``failpoint`` names the :func:`flexiast.faults.write_point` that can cut this write short.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(path), open(tmp, "wb") as f:
            sink = faults.write_point(failpoint, f) if failpoint else f
            write(sink)
            if sink is not f:
                sink.cut()
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except WriteError:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """A text file (a summary, a history, a profile) through :func:`write_atomic`, without fsync."""
    write_atomic(path, lambda f: f.write(text.encode()), fsync=False)
