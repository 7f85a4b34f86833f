"""An on-disk cache of log-mel features, so epochs after the first skip decoding,
resampling and fbank.

An entry's key is a SHA-256 of the file's identity (resolved path, size, modification
time in ns) and of every parameter that changes the features (all fbank arguments and
the decoder's sample rate), plus a format version. Any change gives a new key, so a
stale entry is never read. Entries are ``.npy`` files, written atomically (temporary
file, then rename) and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureCache"]

CACHE_VERSION = 1


class FeatureCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
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
