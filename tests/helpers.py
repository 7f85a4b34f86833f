"""Helpers shared by the tests: a tiny training recipe and a pickle that would run code."""

from __future__ import annotations

import os
from pathlib import Path


def tiny_recipe(root: Path, out: Path, **sections) -> dict:
    """A 2-block, 32-wide AST on 64 mel bins x 48 frames: fast enough for several runs per test."""
    raw = {
        "name": "t", "seed": 0, "out": str(out),
        "model": {"preset": None, "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16},
        "features": {"num_mel_bins": 64, "target_length": 48, "mean": -3.0856, "std": 5.309},
        "data": {"format": "fsdd", "root": str(root), "options": {"task": "digits"}, "val_fraction": 0.2,
                 "batch_size": 8},
        "optimizer": {"lr": 1e-3},
        "train": {"progress": False, "tensorboard": False, "log_every": 1},
        "phases": [{"epochs": 2}],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


class Exploit:
    """Unpickling this runs ``touch marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
