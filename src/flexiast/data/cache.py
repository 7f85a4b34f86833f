"""An on-disk cache of log-mel features, so epochs after the first skip decoding,
resampling and fbank.

An entry's key is a SHA-256 of the file's identity (resolved path, size, modification
time in ns) and of every parameter that changes the features (all fbank arguments and
the decoder's sample rate), plus a format version. Any change gives a new key, so a
stale entry is never read. Entries are ``.npy`` files, written atomically (temporary
file, then rename) and read with ``allow_pickle=False``.

On top of the files, each process keeps the entries it has read in memory, up to
``memory_bytes`` (the first entries that fit stay; epochs revisit every clip, so a cache
that evicted would miss every time once a split outgrows it), keyed like the files by
the path, size, modification time and parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureCache"]

CACHE_VERSION = 1


class FeatureCache:
    def __init__(self, directory: str | Path, *, memory_bytes: int = 512 * 2**20):
        self.directory = Path(directory)
        self.memory_bytes = memory_bytes
        self._memory: dict = {}
        self._held = 0
        self._write_failed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        if not os.access(self.directory, os.W_OK):
            raise PermissionError(f"feature cache directory {self.directory} is not writable")

    def key(self, path: str | Path, params: dict) -> str:
        st = Path(path).stat()
        ident = {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "params": params, "version": CACHE_VERSION}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        f = self._file(key)
        if not f.exists():
            return None
        try:
            return torch.from_numpy(np.load(f, allow_pickle=False))
        except (ValueError, OSError, EOFError):
            return None  # a damaged entry is recomputed and overwritten

    def __getstate__(self) -> dict:  # a loader worker starts with an empty memory of its own
        return {**self.__dict__, "_memory": {}, "_held": 0}

    def fetch(self, path: str | Path, params: dict, compute) -> torch.Tensor:
        """The entry of ``path`` under ``params``: from memory, from disk, or ``compute()``d
        and stored. Raises OSError if ``path`` cannot be stat'ed (a missing file)."""
        st = os.stat(path)
        memo = (str(path), st.st_size, st.st_mtime_ns, json.dumps(params, sort_keys=True))
        value = self._memory.get(memo)
        if value is not None:
            return value
        key = self.key(path, params)
        value = self.get(key)
        if value is None:
            value = compute()
            try:
                self.put(key, value)
            except OSError as e:  # a full or read-only disk costs speed, not the run
                if not self._write_failed:
                    warnings.warn(f"feature cache {self.directory}: cannot write ({e}); continuing without "
                                  "storing new entries", stacklevel=2)
                self._write_failed = True
        size = value.numel() * value.element_size()
        if self._held + size <= self.memory_bytes:
            self._memory[memo] = value
            self._held += size
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        f = self._file(key)
        f.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.save(out, value.numpy(), allow_pickle=False)
            os.replace(tmp, f)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
