"""Self-describing training checkpoints, written atomically, read without running code.

A checkpoint is one ``torch.save`` of plain containers and tensors:
``model`` (state dict) and ``model_config`` (so ``AST.from_pretrained`` loads it as
weights), ``run_config`` (the resolved recipe), ``optimizer``, ``scaler``, ``rng``
(torch CPU and CUDA states), ``progress`` (phase, global step, phase step, epoch, batch
within the epoch), ``accounting``, ``history``, ``extra`` (the weight-averaging sum) and
``average_best`` (the epochs ``train.average_best`` keeps, whose weights are files in
``best_epochs/``).
Nothing in it needs unpickling beyond ``weights_only=True``.

Writes go to ``NAME.tmp``, are flushed and fsynced, and replace ``NAME`` with
``os.replace`` (:func:`flexiast.atomic.write_atomic`): a kill at any moment leaves either
the old or the new file. Before ``last.pt`` is replaced, the previous one is kept as
``last.prev.pt`` (a hard link, so ``last.pt`` never goes missing); :func:`load_latest`
falls back to it, with a warning naming the file, when ``last.pt`` is unreadable, and
moves the unreadable file aside so the next save cannot rotate it over the good one.

A run's weights (:data:`WEIGHT_FILES`) are safetensors, written by
:func:`flexiast.checkpoints.save_safetensors`; :func:`run_weights` finds them.

A write that fails (a full disk) replaces nothing, so the last checkpoint stays whole; the
error (:class:`flexiast.atomic.WriteError`) names the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .. import distributed
from ..atomic import write_atomic, writing
from ..checkpoints import CheckpointError, torch_load_safe
from ..distributed import DistInfo

__all__ = ["save_atomic", "save_run_checkpoint", "load_latest", "load_run_checkpoint", "run_weights",
           "gather_rng_states", "restore_rng_state", "warn_if_precision_changed", "WEIGHT_FILES"]

REQUIRED = ("model", "model_config", "run_config", "optimizer", "progress")
#: The weight files of a training run, by name: safetensors for the weights a run keeps,
#: ``last.pt`` for the training state (loaded with ``weights_only=True``).
WEIGHT_FILES = {"best": "best.safetensors", "averaged": "averaged.safetensors", "last": "last.pt"}


def run_weights(run_dir: Path, name: str) -> Path | None:
    """``run_dir``'s weights called ``name`` (see :data:`WEIGHT_FILES`), or None; runs written
    before the weights were safetensors have ``NAME.pt``."""
    for file in (Path(run_dir) / WEIGHT_FILES[name], Path(run_dir) / f"{name}.pt"):
        if file.exists():
            return file
    return None


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: torch.save(obj, f), failpoint="checkpoint-write")


def save_run_checkpoint(state: dict, run_dir: Path) -> Path:
    """Write ``run_dir/last.pt`` atomically, keeping the previous one as ``last.prev.pt``."""
    path = Path(run_dir) / "last.pt"
    if path.exists():
        # Hard-link the current file as the previous one: last.pt exists at every moment.
        link = path.with_name("last.prev.pt.tmp")
        with writing(link):
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
    """The newest readable checkpoint of a run: ``last.pt``, else ``last.prev.pt`` (warned).

    On a fallback the unreadable ``last.pt`` is renamed ``last.pt.damaged`` (kept for
    inspection): the next save would otherwise rotate it over ``last.prev.pt``, and a kill
    during that save would leave no readable checkpoint at all.
    """
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
            damaged = run_dir / "last.pt.damaged"
            try:
                os.replace(run_dir / "last.pt", damaged)
            except FileNotFoundError:
                pass  # another rank of the same run moved it first
            warnings.warn(f"resuming from {path}: the newer checkpoint is unreadable ({errors[0]}); "
                          f"it was moved to {damaged}", stacklevel=2)
        return state, path
    detail = f": {'; '.join(errors)}" if errors else ""
    raise CheckpointError(f"{run_dir}: no checkpoint to resume from (last.pt, last.prev.pt){detail}")


def gather_rng_states(info: DistInfo) -> list[dict]:
    """Every rank's RNG state (torch's CPU generator, and the device's on CUDA), in rank
    order: a checkpoint's ``rng``. A collective: every rank calls it."""
    rng = {"torch": torch.get_rng_state()}
    if info.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(info.device)
    return distributed.gather_objects(rng, info)


def restore_rng_state(rng: list[dict], info: DistInfo) -> None:
    """Set this rank's RNG state from a checkpoint's ``rng`` (dropout continues as if never
    stopped). Resumed on another number of ranks, rank ``r`` takes state ``r mod saved``
    and the run continues, with a warning that it is no longer bit-identical."""
    if len(rng) != info.world_size:
        warnings.warn(f"the checkpoint was written by {len(rng)} ranks and is resumed on {info.world_size}: "
                      "the run continues, but not bit-identically", stacklevel=3)
    mine = rng[info.rank % len(rng)]
    torch.set_rng_state(mine["torch"])
    if "cuda" in mine and info.device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], info.device)


def warn_if_precision_changed(saved: dict | None, precision) -> None:
    """Warn when a run that trained in ``saved`` (a checkpoint's ``precision``; None in older
    ones) continues in another ``precision`` (``train.precision: auto`` resolved elsewhere):
    it continues, but its numbers are no longer those of the run never stopped."""
    if saved is not None and saved["name"] != precision.name:
        warnings.warn(f"train.precision: the run trained in {saved['name']} ({saved['reason']}) and continues "
                      f"in {precision}: it continues, but not bit-identically", stacklevel=3)
