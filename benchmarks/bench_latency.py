"""Inference latency per clip, batch 1, at each patch size: eager, compiled, ONNX Runtime.

AST-base on one 10 s clip (1024 frames x 128 bins), fp32 unless marked bf16, under
``torch.inference_mode``. "flexible" is ``model(spec, patch_size=p)`` (kernel and grid
resized per call); "fixed" is ``model.at_patch_size(p)``, the copy deployment uses;
"compiled" is ``torch.compile`` of the fixed copy (inductor, shapes static); "ONNX
Runtime" runs the graph ``flexiast export`` writes, CPU provider, as many intra-op
threads as torch. Each path's logits are checked against eager fp32 before timing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import dtypes, interleaved, ms, run_script, spread, table
from flexiast import AST, flops
from flexiast.export import export_onnx

SIZES = (8, 10, 12, 16, 20, 24, 30, 32, 40, 48)
COMPILED = (8, 16, 32, 48)


def build(quick: bool) -> AST:
    torch.manual_seed(0)
    if quick:
        return AST(num_classes=527, input_tdim=256, embed_dim=64, depth=2, num_heads=2).eval()
    return AST.preset("base", num_classes=527, input_tdim=1024).eval()


def ort_session(model: AST, patch: int, directory: Path):
    import onnxruntime as ort

    path = export_onnx(model, directory / f"p{patch}.onnx", patch_size=patch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure(quick: bool) -> dict:
    model = build(quick)
    frames = model.config.input_tdim
    spec = torch.randn(1, frames, 128)
    sizes = (8, 16, 32) if quick else SIZES
    compiled_sizes = () if quick else COMPILED
    repeats = 2 if quick else 7
    rows, setup = {}, {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for p in sizes:
            fixed = model.at_patch_size(p)
            ref = model(spec, patch_size=p)
            fns = {"eager flexible": lambda p=p: model(spec, patch_size=p), "eager fixed": lambda f=fixed: f(spec)}

            def bf16(f=fixed):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return f(spec)
            if "bf16" in dtypes():  # emulated bf16 would only show the emulation
                fns["eager fixed bf16"] = bf16
            start = time.perf_counter()
            session = ort_session(model, p, Path(tmp))
            setup[(p, "ONNX Runtime")] = time.perf_counter() - start
            x = spec.numpy()
            fns["ONNX Runtime"] = lambda s=session, x=x: s.run(None, {"spec": x})
            got = torch.from_numpy(np.asarray(session.run(None, {"spec": x})[0]))
            assert torch.allclose(got, ref, atol=1e-3), f"ONNX Runtime disagrees at patch {p}"
            if p in compiled_sizes:
                compiled = torch.compile(fixed, dynamic=False)
                start = time.perf_counter()
                got = compiled(spec)
                setup[(p, "compiled")] = time.perf_counter() - start
                assert torch.allclose(got, ref, atol=1e-3), f"compiled model disagrees at patch {p}"
                fns["compiled"] = lambda c=compiled: c(spec)
            rows[p] = interleaved(fns, repeats=repeats, warmup=1)
    return dict(rows=rows, setup=setup, frames=frames,
                gflops={p: flops(model, (frames, 128), p).forward / 1e9 for p in sizes},
                tokens={p: flops(model, (frames, 128), p).tokens for p in sizes})


def section(r: dict) -> str:
    kinds = [k for k in ("eager flexible", "eager fixed", "eager fixed bf16", "compiled", "ONNX Runtime")
             if any(k in t for t in r["rows"].values())]
    lines = ["## Inference latency", "", "`python benchmarks/bench_latency.py`. " +
             __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() +
             " Milliseconds per clip: median of the rounds, and min-max.", ""]
    rows = []
    for p, t in r["rows"].items():
        row = [p, r["tokens"][p], f"{r['gflops'][p]:.1f}"]
        for k in kinds:
            row.append("{} ({}-{})".format(*map(ms, spread(t[k]))) if k in t else "-")
        fixed = spread(t["eager fixed"])[0]
        best = min(kinds, key=lambda k: spread(t[k])[0] if k in t else float("inf"))
        row.append(f"{best} ({fixed / spread(t[best])[0]:.2f}x fixed)")
        rows.append(row)
    lines += table(["patch", "tokens", "GFLOPs"] + kinds + ["fastest"], rows)
    setup = ", ".join(f"{k[1]} at {k[0]}: {v:.0f} s" for k, v in sorted(r["setup"].items()) if k[1] == "compiled")
    onnx = [v for k, v in r["setup"].items() if k[1] == "ONNX Runtime"]
    lines += ["", f"One-time costs: compiling {setup or 'not measured'}; exporting and loading the ONNX "
              f"graph {min(onnx):.0f}-{max(onnx):.0f} s per size."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_script(__doc__, measure, section)
