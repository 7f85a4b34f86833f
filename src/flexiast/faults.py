"""Fault injection: SIGKILL this process (or fill its disk) at a named point of the code, for the crash tests.

``FLEXIAST_FAILPOINT="NAME:N"`` in the environment kills the process with SIGKILL (no
``finally``, no flush, no atexit: what an OOM killer or a pre-empted node does) the
``N``-th time execution passes :func:`point` with that ``NAME``. At a write point,
``NAME:N:enospc`` fills the disk instead: 4 KiB of the file are written, then the next write
raises ``OSError(ENOSPC)``, as a full disk does. Without the variable, :func:`point` is one
comparison. This is the failpoint technique of FreeBSD's fail(9) and etcd's gofail; it lets
``tests/test_reliability.py`` kill a run (or fill its disk) exactly where a random external
event would land only by luck.

Points:

* ``step``: an optimizer step after its backward pass, before the weights are updated;
* ``validation``: after each evaluation batch (validation and test);
* ``checkpoint-write``: while a checkpoint is written (:func:`write_point`): the first
  half of its bytes reach the temporary file, then the process dies before the rename.
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["point", "write_point", "ENV", "ACTIONS"]

ENV = "FLEXIAST_FAILPOINT"
#: What a failpoint does when it fires: SIGKILL the process, or fill the disk (ENOSPC; write points only).
ACTIONS = ("kill", "enospc")
WRITE_POINTS = ("checkpoint-write",)
#: The bytes of a file a full disk (``enospc`` at a write point) still takes.
DISK_ROOM = 4096


def _parse(value: str | None) -> tuple[str | None, int, str]:
    if not value:
        return None, 0, ACTIONS[0]
    name, _, rest = value.partition(":")
    count, _, action = rest.partition(":")
    try:
        n = int(count or 1)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected NAME:N[:ACTION] with N a positive integer") from None
    if n < 1:
        raise ValueError(f"{ENV}={value!r}: N must be at least 1")
    if (action or ACTIONS[0]) not in ACTIONS:
        raise ValueError(f"{ENV}={value!r}: ACTION must be one of {', '.join(ACTIONS)}")
    if action == "enospc" and name not in WRITE_POINTS:
        raise ValueError(f"{ENV}={value!r}: enospc applies to the write points ({', '.join(WRITE_POINTS)})")
    return name, n, action or ACTIONS[0]


_NAME, _AT, _ACTION = _parse(os.environ.get(ENV))
_hits = 0


def _due(name: str) -> bool:
    global _hits
    if name != _NAME:
        return False
    _hits += 1
    return _hits == _AT


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def point(name: str) -> None:
    """Kill the process here if ``FLEXIAST_FAILPOINT`` names this point and its count is reached."""
    if _due(name):
        _kill()


class _HalfWriter:
    """Collects what is written; :meth:`cut` writes the first half to the real file and dies."""

    def __init__(self, file):
        self.file, self.chunks = file, []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def cut(self) -> None:
        data = b"".join(self.chunks)
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        _kill()


class _FullDisk:
    """Writes through to the file until :data:`DISK_ROOM` bytes are in it, then raises ENOSPC:
    a disk that fills during the write (the file keeps what fitted)."""

    def __init__(self, file):
        self.file, self.written = file, 0

    def write(self, data) -> int:
        data = bytes(data)
        room = DISK_ROOM - self.written
        self.file.write(data[:room])
        self.written += min(len(data), room)
        if len(data) > room:
            self.file.flush()
            raise _disk_full()
        return len(data)

    def flush(self) -> None:
        self.file.flush()

    def cut(self) -> None:
        """The whole file fitted: the disk fills at its flush."""
        raise _disk_full()


def write_point(name: str, file):
    """``file`` itself, or on the point's N-th pass a stand-in whose ``cut()`` leaves the file
    half-written and kills the process (call it once everything was written); with the
    ``enospc`` action, a stand-in that raises ENOSPC once the file holds 4 KiB."""
    if not _due(name):
        return file
    return _FullDisk(file) if _ACTION == "enospc" else _HalfWriter(file)
