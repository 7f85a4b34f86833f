"""Self-describing training checkpoints, written atomically, read without running code.

A checkpoint is one ``torch.save`` of plain containers and tensors:
``model`` (state dict) and ``model_config`` (so ``AST.from_pretrained`` loads it as
weights), ``run_config`` (the resolved recipe), ``optimizer``, ``scaler``, ``rng``
(torch CPU and CUDA states), ``progress`` (phase, global step, phase step, epoch, batch
within the epoch), ``accounting``, ``history`` and ``extra`` (the weight-averaging sum).
Nothing in it needs unpickling beyond ``weights_only=True``.

Writes go to ``NAME.tmp``, are flushed and fsynced, and replace ``NAME`` with
``os.replace`` (:func:`flexiast.atomic.write_atomic`): a kill at any moment leaves either
the old or the new file. Before ``last.pt`` is replaced, the previous one is kept as ``last.prev.pt`` (a hard
link, so ``last.pt`` never goes missing);
:func:`load_latest` falls back to it, with a warning naming the file, when ``last.pt``
is unreadable.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .atomic import write_atomic
from .checkpoints import CheckpointError, torch_load_safe

__all__ = ["save_atomic", "save_run_checkpoint", "load_latest", "load_run_checkpoint"]

REQUIRED = ("model", "model_config", "run_config", "optimizer", "progress")


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: torch.save(obj, f), failpoint="checkpoint-write")


def save_run_checkpoint(state: dict, run_dir: Path, name: str = "last.pt") -> Path:
    """Write ``run_dir/name`` atomically; ``last.pt`` rotates the previous one to ``last.prev.pt``."""
    path = Path(run_dir) / name
    if name == "last.pt" and path.exists():
        # Hard-link the current file as the previous one: last.pt exists at every moment.
        link = path.with_name("last.prev.pt.tmp")
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, path.with_name("last.prev.pt"))
    save_atomic(state, path)
    return path


def load_run_checkpoint(path: Path) -> dict:
    state = torch_load_safe(Path(path))
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a flexiast training checkpoint (missing {', '.join(missing)})")
    return state


def load_latest(run_dir: Path) -> tuple[dict, Path]:
    """The newest readable checkpoint of a run: ``last.pt``, else ``last.prev.pt`` (warned)."""
    run_dir = Path(run_dir)
    errors = []
    for name in ("last.pt", "last.prev.pt"):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = load_run_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            warnings.warn(f"resuming from {path}: the newer checkpoint is unreadable ({errors[0]})", stacklevel=2)
        return state, path
    detail = f": {'; '.join(errors)}" if errors else ""
    raise CheckpointError(f"{run_dir}: no checkpoint to resume from (last.pt, last.prev.pt){detail}")
