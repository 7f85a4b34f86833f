"""Fault injection: SIGKILL this process at a named point of the code, for the crash tests.

``FLEXIAST_FAILPOINT="NAME:N"`` in the environment kills the process with SIGKILL (no
``finally``, no flush, no atexit: what an OOM killer or a pre-empted node does) the
``N``-th time execution passes :func:`point` with that ``NAME``. Without the variable,
:func:`point` is one comparison. This is the failpoint technique of FreeBSD's fail(9) and
etcd's gofail; it lets ``tests/test_reliability.py`` kill a run exactly where a random
external kill would land only by luck.

Points:

* ``step``: an optimizer step after its backward pass, before the weights are updated;
* ``validation``: after each evaluation batch (validation and test);
* ``checkpoint-write``: while a checkpoint is written (:func:`write_point`): the first
  half of its bytes reach the temporary file, then the process dies before the rename.
"""

from __future__ import annotations

import os
import signal

__all__ = ["point", "write_point", "ENV"]

ENV = "FLEXIAST_FAILPOINT"


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, count = value.partition(":")
    try:
        n = int(count or 1)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected NAME:N with N a positive integer") from None
    if n < 1:
        raise ValueError(f"{ENV}={value!r}: N must be at least 1")
    return name, n


_NAME, _AT = _parse(os.environ.get(ENV))
_hits = 0


def _due(name: str) -> bool:
    global _hits
    if name != _NAME:
        return False
    _hits += 1
    return _hits == _AT


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


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


def write_point(name: str, file):
    """``file`` itself, or on the point's N-th pass a stand-in whose ``cut()`` leaves the file
    half-written and kills the process (call it once everything was written)."""
    return _HalfWriter(file) if _due(name) else file
