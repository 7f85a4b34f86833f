"""Loader throughput on FSDD (cold, cached; 0 and 2 workers) beside the training step.

The dataset is FSDD's training split (2,700 real clips, 8 kHz, resampled to 16 kHz),
at 128 frames x 128 bins with SpecAugment, batch 64. "cold" decodes, resamples and
computes the fbank for every clip; "cached" reads features written by an earlier pass.
The training step is AST-tiny at patch 16 on the same batch (forward, backward, AdamW),
the model the FSDD recipes train on this machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from common import auto_dtype, dtypes, summary, timed, train_step
from flexiast import AST
from flexiast.data import AudioDataset, AugmentConfig, FeatureCache, ShardedSampler, collate, read_manifest
from flexiast.features import FeatureConfig

ROOT = Path(__file__).resolve().parents[1]


def loader_rate(manifest, cfg, workers: int, cache, batches: int, batch: int) -> list[float]:
    ds = AudioDataset(manifest, cfg, augment=AugmentConfig(freqm=24, timem=24), train=True, cache=cache)
    sampler = ShardedSampler(len(ds), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, persistent_workers=False)

    def run():
        for k, _ in enumerate(loader):
            if k + 1 == batches:
                break
    return timed(run, repeats=1 if batches < 5 else 3, warmup=0)


def train_rate(batch: int, dtype) -> list[float]:
    torch.manual_seed(0)
    model = AST.preset("tiny", num_classes=10, input_tdim=128)
    spec, target = torch.randn(batch, 128, 128), torch.randint(0, 10, (batch,))
    return timed(train_step(model, model, spec, target, dtype), repeats=10, warmup=3)


def measure(fsdd: str, batches: int, quick: bool = False) -> list:
    batch = 8 if quick else 64
    manifest = read_manifest("fsdd", root=fsdd, split="train")
    if quick:
        manifest.items = manifest.items[:64]
    cfg = FeatureConfig(target_length=128)
    rows = []
    for workers in (0, 2):
        rows.append((f"cold (decode + resample + fbank), {workers} workers",
                     summary(loader_rate(manifest, cfg, workers, None, batches, batch), batches * batch)))
    tmp = Path(tempfile.mkdtemp(prefix="flexiast-cache-"))
    try:
        cache = FeatureCache(tmp)
        loader_rate(manifest, cfg, 2, cache, len(manifest) // batch + 1, batch)  # fill the cache
        for workers in (0, 2):
            rows.append((f"cached, {workers} workers",
                         summary(loader_rate(manifest, cfg, workers, cache, batches, batch), batches * batch)))
    finally:
        shutil.rmtree(tmp)
    for dtype in dtypes():
        rows.append((f"training step, AST-tiny patch 16, {dtype} (consumer)", summary(train_rate(batch, dtype), batch)))
    return rows


def consumer() -> str:
    """The name of the row of the step that ``precision: auto`` takes here."""
    return f"training step, AST-tiny patch 16, {auto_dtype()} (consumer)"


def section(rows: list, batches: int, batch: int = 64) -> str:
    lines = ["## Data loading", "", "`python benchmarks/bench_data.py`.", "",
             f"FSDD training split, 128 frames x 128 bins, SpecAugment on, batch {batch}; "
             f"{batches} batches per run, 3 runs (training step: 10 steps after 3 warm-up).", "",
             "| what | clips/s (median) | min | max |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {med:,.0f} | {lo:,.0f} | {hi:,.0f} |" for name, (med, lo, hi) in rows]
    step = dict(rows)[consumer()][0]
    lines += ["", f"The cached loader with 2 workers supplies {rows[3][1][0] / step:.1f}x what the {auto_dtype()} "
              f"training step (what `precision: auto` trains in here) consumes; the cold loader with 2 workers "
              f"{rows[1][1][0] / step:.1f}x."]
    return "\n".join(lines) + "\n"


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fsdd", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        args.batches = 2
    return args


def main(argv=None) -> str:
    args = arguments(argv)
    return section(measure(args.fsdd, args.batches, args.quick), args.batches, 8 if args.quick else 64)


if __name__ == "__main__":
    print(main())
