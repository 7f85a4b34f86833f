"""Shared helpers for the benchmark scripts: timing with spread, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def timed(fn, repeats: int = 5, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summary(seconds: list[float], work: float) -> tuple[float, float, float]:
    """(median rate, min rate, max rate) of ``work`` units per second."""
    rates = sorted(work / s for s in seconds)
    return statistics.median(rates), rates[0], rates[-1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads, Python {platform.python_version()}")
