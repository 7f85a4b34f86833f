"""Does ``torch.compile`` pay for training on this machine?

For the demo's and FSDD recipes' AST (128 wide, 4 blocks, 96 frames, batch 16) and for
AST-base (512 frames, batch 4): the eager training step (forward, cross-entropy,
backward, Adam) against the same step through ``torch.compile(model, dynamic=False)``, in
the precision ``auto`` picks here, with the compile time measured cold (inductor's
on-disk cache pointed at an empty folder). The break-even is the number of steps at one
patch size after which the compiled run has won back its compile time; a FlexiAST run
compiles once per patch size it draws (ten).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from common import auto_dtype, interleaved, ms, ratio_spread, spread, table, train_step
from flexiast import AST

CASES = {"demo / FSDD AST, 96 frames, batch 16": dict(dims=dict(embed_dim=128, depth=4, num_heads=4), frames=96,
                                                      batch=16, classes=8, repeats=15),
         "AST-base, 512 frames, batch 4": dict(dims={}, frames=512, batch=4, classes=527, repeats=5)}
QUICK = {"2-block 32-wide, 64 frames, batch 2": dict(dims=dict(embed_dim=32, depth=2, num_heads=2), frames=64,
                                                     batch=2, classes=4, repeats=2)}


def compare(case: dict, backend: str = "inductor") -> dict:
    torch.manual_seed(0)
    eager = AST(num_classes=case["classes"], input_tdim=case["frames"], **case["dims"])
    twin = AST(num_classes=case["classes"], input_tdim=case["frames"], **case["dims"])
    twin.load_state_dict(eager.state_dict())
    spec = torch.randn(case["batch"], case["frames"], 128)
    target = torch.randint(0, case["classes"], (case["batch"],))
    dtype = auto_dtype()
    compiled = torch.compile(twin, dynamic=False, backend=backend)
    fns = {"eager": train_step(eager, eager, spec, target, dtype), "compiled": train_step(twin, compiled, spec, target,
                                                                                          dtype)}
    start = time.perf_counter()
    fns["compiled"]()  # the first step compiles forward and backward
    compile_s = time.perf_counter() - start
    times = interleaved(fns, repeats=case["repeats"], warmup=1)
    return {"times": times, "compile_s": compile_s, "dtype": dtype}


def measure(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="flexiast-inductor-") as cache:
        old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold: nothing compiled before
        try:
            # --quick checks the script: AOT tracing without inductor's C++ code generation.
            return {name: compare(case, "aot_eager" if quick else "inductor")
                    for name, case in (QUICK if quick else CASES).items()}
        finally:
            if old is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def section(results: dict) -> str:
    lines = ["## torch.compile for training", "",
             "`python benchmarks/bench_compile.py`. " + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(), ""]
    rows = []
    for name, r in results.items():
        eager, comp = spread(r["times"]["eager"])[0], spread(r["times"]["compiled"])[0]
        speed, lo, hi = ratio_spread(r["times"]["eager"], r["times"]["compiled"])
        gain = eager - comp
        even = f"{r['compile_s'] / gain:,.0f}" if gain > 0 else "never"
        rows.append([name, r["dtype"], ms(eager), ms(comp), f"{speed:.2f}x ({lo:.2f}-{hi:.2f})",
                     f"{r['compile_s']:.0f}", even])
    lines += table(["model", "dtype", "eager ms/step", "compiled ms/step", "speed-up", "compile s (cold)",
                    "break-even steps per size"], rows)
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args, _ = parser.parse_known_args(argv)
    return section(measure(args.quick))


if __name__ == "__main__":
    print(main())
