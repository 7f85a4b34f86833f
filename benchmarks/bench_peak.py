"""The machine's matrix-multiply peak per dtype: the yardstick for utilisation.

The peak is the best median rate over square products (512-3072) and the products an
AST layer makes (tokens x width x 3 width, and so on), each timed several times: a
product a model could not beat, measured on the same machine in the same run. On a CPU
without native bf16, bf16 is timed on one product only, to show what emulation costs.
"""

from __future__ import annotations


import torch

from common import dtypes, interleaved, run_script, spread, table

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (3072, 3072, 3072),
          (2112, 192, 576), (2112, 768, 192), (2408, 768, 2304), (2408, 3072, 768)]
QUICK_SHAPES = [(256, 256, 256), (512, 512, 512)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
EMULATED_SHAPE = (1024, 768, 2304)


def peaks(quick: bool = False) -> dict[str, tuple[float, tuple[int, int, int]]]:
    """``{dtype: (GFLOP/s, shape)}``: the best of the shapes' median rates (``bf16 (emulated)``
    on one shape where the CPU lacks native bf16)."""
    out = {}
    for name, dtype in DTYPES.items():
        emulated = name not in dtypes()
        best = (0.0, None)
        shapes = QUICK_SHAPES if quick else SHAPES
        for m, k, n in ([shapes[0]] if quick else [EMULATED_SHAPE]) if emulated else shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            med = spread(interleaved({"mm": lambda: a @ b}, repeats=3 if quick else 9, warmup=2)["mm"])[0]
            best = max(best, (2 * m * k * n / med / 1e9, (m, k, n)), key=lambda t: t[0])
        out[f"{name} (emulated)" if emulated else name] = best
    return out


def section(result: dict) -> str:
    rows = [[name, f"{rate:,.0f}", "x".join(map(str, shape))] for name, (rate, shape) in result.items()]
    lines = ["## Matrix-multiply peak", "",
             "`torch.matmul` on this machine, the best median over square and AST-layer shapes "
             "(`benchmarks/bench_peak.py`); the denominator of every utilisation below. fp32 products "
             "are MKL's SGEMM; bf16 ones oneDNN's.", ""]
    return "\n".join(lines + table(["dtype", "GFLOP/s", "best shape (m x k x n)"], rows)) + "\n"


if __name__ == "__main__":
    run_script(__doc__, peaks, section)
