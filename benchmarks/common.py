"""Shared helpers for the benchmark scripts: timing with spread, machine description, tables.

Every comparison is timed *interleaved*: one call of each contender per round, rounds
repeated, so a slow spell of this (shared, virtual) machine hits all contenders alike.
Reported figures are the median over rounds, with the minimum and maximum.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from flexiast.hardware import cpu_capability, describe_capability, native_bf16, resolve_precision


def timed(fn, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    return interleaved({"fn": fn}, repeats, warmup)["fn"]


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, called in turn, ``repeats`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out


def spread(seconds: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of a list of timings."""
    return statistics.median(seconds), min(seconds), max(seconds)


def summary(seconds: list[float], work: float) -> tuple[float, float, float]:
    """(median rate, min rate, max rate) of ``work`` units per second."""
    rates = sorted(work / s for s in seconds)
    return statistics.median(rates), rates[0], rates[-1]


def ratio_spread(slow: list[float], fast: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-round ratio ``slow / fast`` (interleaved rounds)."""
    r = sorted(a / b for a, b in zip(slow, fast))
    return statistics.median(r), r[0], r[-1]


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table; the first column left-aligned, the rest right-aligned."""
    out = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def machine() -> str:
    """The capability line: CPU, ISA level, native bf16 or not, cores, threads, versions."""
    return (f"{describe_capability(cpu_capability())}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def kind() -> str:
    """Which section of docs/PERFORMANCE.md this machine's figures belong to."""
    return "cpu-native-bf16" if native_bf16("cpu") else "cpu-no-bf16"


def dtypes() -> tuple[str, ...]:
    """The precisions worth timing here: bf16 only where the CPU computes it natively (an
    emulated bf16 product is tens of times slower than fp32; ``bench_peak`` shows by how much)."""
    return ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)


def auto_dtype() -> str:
    """What ``precision: auto`` trains in on this CPU."""
    return resolve_precision("auto", "cpu").name


def run_script(doc: str, measure, section, fsdd: bool = False) -> None:
    """Command line of a benchmark module: ``--quick`` (and ``--fsdd DIR`` for ``measure(quick,
    fsdd)``, default ``../shared/data/fsdd``), then print its section."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, two repeats: checks the script runs")
    if fsdd:
        parser.add_argument("--fsdd", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"))
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    print(section(measure(args.quick, args.fsdd) if fsdd else measure(args.quick)))


def train_step(model, forward, spec: torch.Tensor, target: torch.Tensor, dtype: str):
    """One training step as flexiast's trainer takes it, on ``spec``'s device: forward under
    ``dtype``'s autocast (fp32, bf16, or fp16 with loss scaling), cross-entropy, backward,
    the optimizer ``build_optimizer`` makes for AST's recipe (Adam), zeroed gradients.
    ``forward(spec)`` gives logits; ``model`` owns the parameters."""
    from flexiast.config import OptimizerConfig
    from flexiast.hardware import Precision
    from flexiast.engine.optim import build_optimizer

    opt = build_optimizer(model.parameters(), OptimizerConfig())
    precision = Precision(dtype, dtype, spec.device.type, "benchmark")
    scaler = torch.amp.GradScaler(spec.device.type, enabled=precision.scaler)

    def step():
        with precision.autocast():
            loss = F.cross_entropy(forward(spec).float(), target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    return step
