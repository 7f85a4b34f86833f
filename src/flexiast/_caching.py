"""One decorator for the module-level caches of constant tensors (resize matrices, windows)."""

from __future__ import annotations

from functools import lru_cache

import torch


def tensor_cache(maxsize: int):
    """``lru_cache`` for functions that build constant tensors.

    The tensors are built under ``no_grad`` and outside ``torch.inference_mode()``: a
    tensor first asked for during evaluation would otherwise be an inference tensor, and
    a later training step that reuses it would fail. Under ``torch.compile`` the lookup
    runs eagerly (``torch.compiler.disable``): traced, the cache would be bypassed and the
    matrix rebuilt inside every compiled call.
    """
    def wrap(fn):
        return torch.compiler.disable(lru_cache(maxsize=maxsize)(torch.no_grad()(torch.inference_mode(False)(fn))))
    return wrap
