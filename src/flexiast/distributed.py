"""Distributed data parallel from torchrun's environment (nanoGPT's pattern).

``torchrun --nproc-per-node N -m flexiast train recipe.yaml`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins the process group (NCCL on GPUs,
gloo on CPU) and returns who this process is. Without those variables the run is a
single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .hardware import select_device

__all__ = ["DistInfo", "setup", "teardown", "gather_objects", "broadcast_object", "sync_batchnorm",
           "SYNC_BN_DEVICES"]

#: Devices whose tensors ``torch.nn.SyncBatchNorm`` synchronises (torch 2.13 refuses CPU tensors
#: in a training forward: "SyncBatchNorm expected input tensor to be on GPU or XPU ...").
SYNC_BN_DEVICES = ("cuda", "xpu", "hpu")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _device(kind: str, local_rank: int) -> torch.device:
    device = select_device(kind, setting="train.device", local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(device: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=_device(device, 0))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, str | None]:
    """``model`` with its BatchNorm layers made ``SyncBatchNorm`` (HTS-AT trains with Lightning's
    ``sync_batchnorm=True``), for a model about to be wrapped in DDP, and a note for the log.

    The conversion keeps every parameter and buffer (the same tensors, under the same
    state-dict keys), so what a run saves loads into the plain model. It happens only on
    :data:`SYNC_BN_DEVICES`: on CPU (gloo) SyncBatchNorm cannot run, the layers stay as they
    are, and the note says that each rank normalises with its own micro-batch's statistics.
    A model without BatchNorm is returned as it is, with no note.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or all(isinstance(m, torch.nn.SyncBatchNorm) for m in bns):
        return model, None
    if device.type not in SYNC_BN_DEVICES:
        return model, (f"{len(bns)} BatchNorm layers stay per process: SyncBatchNorm does not run on {device.type}, "
                       "so each rank normalises with its own micro-batch's statistics (the running statistics "
                       "are rank 0's, which DDP broadcasts)")
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return synced, f"{len(bns)} BatchNorm layers synchronised across ranks"
