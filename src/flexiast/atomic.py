"""Atomic file replacement, for every file a run or a profile writes.

A file is written to ``NAME.tmp`` and renamed over ``NAME`` with ``os.replace``, which
POSIX makes atomic: a reader, or a run resumed after a kill, sees the old file or the new
one, never a mix. (The one writer per file is the main rank.)
"""

from __future__ import annotations

import os
from pathlib import Path

from . import faults

__all__ = ["write_atomic", "write_text_atomic"]


def write_atomic(path: Path, write, *, fsync: bool = True, failpoint: str | None = None) -> None:
    """Replace ``path`` with what ``write(file)`` writes, atomically: a kill at any moment
    leaves the old file or the new one, never a mix (``path.tmp``, then ``os.replace``).

    With ``fsync`` the data and the rename are on disk before this returns (a power cut
    keeps them too); a process kill alone cannot lose data the kernel already holds.
    ``failpoint`` names the :func:`flexiast.faults.write_point` that can cut this write short.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        sink = faults.write_point(failpoint, f) if failpoint else f
        write(sink)
        if sink is not f:
            sink.cut()
        f.flush()
        if fsync:
            os.fsync(f.fileno())
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
