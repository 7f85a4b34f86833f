"""The fast input path, on by default: loader workers chosen from the cores, the feature
cache on, and workers that live for a whole phase.

Coarse-to-fine training (Feng et al., ICASSP 2024, Sec. 2) saves wall time only if a
step's input costs little next to the step: decoding, resampling and the fbank of a clip
cost the same at C = 4 as at C = 1, so a loader that redoes them every epoch in the
training process caps what a coarse phase can save. Hence the defaults:

* ``data.num_workers: auto`` gives worker processes from the cores per rank: on a GPU,
  ``min(8, cores // 2)``; on a CPU, where the step itself needs the cores,
  ``min(4, cores // 4)``, so none on a 2-core machine: there a worker only takes a
  core's share from the step's threads (measured in ``docs/PERFORMANCE.md``, "Data");
* ``data.cache_dir: auto`` caches log-mel features (:class:`FeatureCache`) in
  ``$FLEXIAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/flexiast/features``, else
  ``~/.cache/flexiast/features``, shared by every run, unless the run's features would
  take more than :data:`CACHE_MAX_FRACTION` of the free disk there or
  :data:`CACHE_MAX_BYTES` (then it is off, and the run says so); ``off`` (or null)
  switches it off, a path puts it there;
* workers persist across epochs, each prefetching two batches; the epoch reaches them
  through the sampler (:class:`EpochKeys`), so augmentation stays a function of
  ``(seed, epoch, clip)`` and a resumed run draws the same.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..constants import AUTO, OFF
from .cache import FeatureCache
from .dataset import collate

__all__ = ["AUTO", "OFF", "loader_workers", "default_cache_dir", "resolve_cache", "EpochKeys", "make_loader",
           "CACHE_MAX_BYTES", "CACHE_MAX_FRACTION"]

#: The automatic cache stays off when a run's features would exceed this many bytes ...
CACHE_MAX_BYTES = 64 * 2**30
#: ... or this fraction of the free space where the cache lives.
CACHE_MAX_FRACTION = 0.25


def loader_workers(requested: int | str, *, device: str = "cpu", local_world_size: int = 1,
                   cpu_count: int | None = None) -> int:
    """The number of loader worker processes: ``requested`` if a number, else from the cores
    per rank and whether the step runs on them (``device="cpu"``) or on a GPU."""
    if requested != AUTO:
        return int(requested)
    cores = (cpu_count or os.cpu_count() or 1) // max(local_world_size, 1)
    return min(8, cores // 2) if device == "cuda" else min(4, cores // 4)


def default_cache_dir() -> Path:
    """Where ``cache_dir: auto`` keeps features: ``$FLEXIAST_CACHE_DIR``, else the user's cache folder."""
    if os.environ.get("FLEXIAST_CACHE_DIR"):
        return Path(os.environ["FLEXIAST_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flexiast" / "features"


def _free_bytes(directory: Path) -> int:
    probe = directory
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def resolve_cache(requested: str | None, *, estimate_bytes: int) -> tuple[FeatureCache | None, str]:
    """The feature cache a run uses and a sentence saying which and why.

    ``estimate_bytes`` is what the run's features would take (clips x frames x bins x 4
    per input resolution); only ``auto`` looks at it.
    """
    if requested in (None, OFF):
        return None, "off (data.cache_dir)"
    if requested != AUTO:
        return FeatureCache(requested), f"{requested} (data.cache_dir)"
    directory = default_cache_dir()
    limit = min(CACHE_MAX_BYTES, int(CACHE_MAX_FRACTION * _free_bytes(directory)))
    size = f"{estimate_bytes / 2**30:.2f} GiB" if estimate_bytes >= 2**30 else f"{estimate_bytes / 2**20:.0f} MiB"
    if estimate_bytes > limit:
        return None, (f"off: the run's features would take about {size}, more than the {limit / 2**30:.1f} GiB "
                      f"allowed in {directory} (set data.cache_dir to a folder to cache anyway)")
    try:
        return FeatureCache(directory), f"{directory} (auto; the run's features take about {size})"
    except OSError as e:
        return None, f"off: {directory} cannot be used ({e}); set data.cache_dir to a writable folder"


class EpochKeys(torch.utils.data.Sampler):
    """``(epoch, index)`` for each index of ``sampler`` (for each index of each list, for a
    batch sampler: :class:`~flexiast.data.token_batches.TokenBatchSampler`): workers that
    persist across epochs learn the epoch from the key (:meth:`AudioDataset.__getitem__` takes
    both forms)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return ([(epoch, i) for i in item] if isinstance(item, list) else (epoch, item) for item in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(dataset, *, batch_size: int | None = None, sampler=None, workers: int, drop_last: bool = False,
                seed: int = 0, pin_memory: bool = False, batch_sampler=None,
                collate_fn=collate) -> torch.utils.data.DataLoader:
    """A DataLoader whose ``workers`` persist across its iterations and prefetch two batches
    each; batches of ``batch_size`` from ``sampler``, or the lists ``batch_sampler`` gives."""
    extra = {"persistent_workers": True, "prefetch_factor": 2} if workers > 0 else {}
    if batch_sampler is not None:
        extra["batch_sampler"] = batch_sampler
    else:
        extra.update(batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    return torch.utils.data.DataLoader(dataset, collate_fn=collate_fn, num_workers=workers, pin_memory=pin_memory,
                                       generator=torch.Generator().manual_seed(seed), **extra)
