"""A run's data splits: read, checked for matching classes, scanned, and a seeded holdout."""

from __future__ import annotations

import logging

import numpy as np

from ..config import ConfigError, RunConfig
from ..data import collate, read_manifest, scan
from ..data.loader import make_loader
from ..data.readers import DataError, Manifest
from ..distributed import DistInfo

__all__ = ["load_splits", "holdout", "eval_loader"]

log = logging.getLogger(__name__)


def holdout(manifest: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """Split ``fraction`` of the clips off as validation, by a seeded permutation; each part
    keeps its clips' sampling weights (:attr:`Manifest.weights`)."""
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(len(manifest.items))
    n_val = max(1, int(round(fraction * len(order))))
    val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())

    def part(idx: list[int], name: str) -> Manifest:
        weights = None if manifest.weights is None else [manifest.weights[i] for i in idx]
        return Manifest([manifest.items[i] for i in idx], manifest.classes, manifest.multilabel, name,
                        weights=weights)

    return part(train_idx, manifest.name), part(val_idx, manifest.name + "-val")


def load_splits(cfg: RunConfig) -> tuple[dict[str, Manifest], dict[str, list[str]]]:
    """The train, val and test manifests of a run, checked for matching classes and scanned,
    and per split the clips the scan left out under ``on_error: skip`` ("file: reason")."""
    d = cfg.data
    common = dict(d.options)
    if d.root is not None:
        common["root"] = d.root

    def read(name: str, options: dict) -> Manifest:
        try:
            return read_manifest(d.format, **{**common, **options})
        except DataError as e:  # a missing file or a wrong option: name the setting too
            raise ConfigError(f"data.{name}: {e}") from None

    splits = {"train": read("train", d.train)}
    if d.val is not None:
        splits["val"] = read("val", d.val)
    else:
        splits["train"], splits["val"] = holdout(splits["train"], d.val_fraction, cfg.seed)
    if d.test is not None:
        splits["test"] = read("test", d.test)
    classes = splits["train"].classes
    for name, m in splits.items():
        if m.classes != classes:
            raise ConfigError(f"data.{name}: its classes differ from the training split's "
                              f"({len(m.classes)} against {len(classes)}); give the reader the same classes")
    left_out = {name: [] for name in splits}
    if d.scan:
        for name in splits:
            splits[name], report = scan(splits[name], on_error=d.on_error, max_bad_fraction=d.max_bad_fraction)
            left_out[name] = [f"{msg} (entry {entry})" for entry, msg in report.problems]
            if report.problems:
                log.warning("data.%s: left out %d unreadable clips, e.g. %s", name, len(report.problems),
                            report.problems[0][1])
    return splits, left_out


def eval_loader(dataset, batch_size: int, info: DistInfo, workers: int, *, collate_fn=collate, frames=None):
    """This rank's share of an evaluation set, unpadded (indices rank, rank + W, ...); with
    clips' ``frames`` (variable-length batches) in order of length, so a batch's clips are
    alike and a padded batch pads little (predictions are gathered by index, so order is free)."""
    indices = list(range(info.rank, len(dataset), info.world_size))
    if frames is not None:
        indices.sort(key=lambda i: frames[i])
    return make_loader(dataset, batch_size=batch_size, sampler=indices, workers=min(workers, len(indices)),
                       collate_fn=collate_fn)
