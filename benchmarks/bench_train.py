"""Training step against Hugging Face's AST, and utilisation of the matrix-multiply peak.

One step is forward, cross-entropy, backward and the optimizer, on the same batch, from
the same weights, with the same optimizer (AST's Adam, built by
``flexiast.engine.optim.build_optimizer`` for both). Hugging Face's model is timed with each
of its attention implementations ("sdpa", "eager") and the faster one is the peer.
bf16 means ``torch.autocast("cpu", torch.bfloat16)`` around the forward for both, timed
only where the CPU computes bf16 natively.
Utilisation is ``flexiast.flops(...).training`` per second over the measured peak
(``bench_peak``) of the same dtype; the peer's is
computed from its own FLOPs, its whole last layer included.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench_peak import peaks
from common import dtypes, interleaved, machine, ms, ratio_spread, spread, table, train_step
from flexiast import AST, flops
from peers import hf_logits, hf_model

CASES = {"AST-tiny, 128 frames, batch 32": dict(preset="tiny", frames=128, batch=32, repeats=9),
         "AST-base, 512 frames, batch 4": dict(preset="base", frames=512, batch=4, repeats=5)}
QUICK = {"2-layer 64-wide, 128 frames, batch 2": dict(dims=dict(embed_dim=64, depth=2, num_heads=2), frames=128,
                                                      batch=2, repeats=2)}


def build(case: dict) -> AST:
    torch.manual_seed(0)
    if "preset" in case:
        return AST.preset(case["preset"], num_classes=527, input_tdim=case["frames"])
    return AST(num_classes=527, input_tdim=case["frames"], **case["dims"])


def full_last_layer_flops(model: AST, shape) -> int:
    """Training FLOPs of a model that runs its last layer for every token (the peer).

    The tokens past the prefix add, in forward, a query and an output projection
    (``2 D^2`` each), the MLP (``4 D M``) and a row of ``q k^T`` and of ``a v`` (``4 S D``);
    backward doubles each.
    """
    c = flops(model, shape)
    s, p, d, m = c.tokens, model.config.prefix_tokens, model.config.embed_dim, model.config.mlp_dim
    return c.training + 3 * shape[0] * (s - p) * (4 * d * d + 4 * d * m + 4 * s * d)


def compare(name: str, case: dict, dtype: str, peak: float, compile_: bool) -> dict:
    model = build(case)
    spec = torch.randn(case["batch"], case["frames"], 128)
    target = torch.randint(0, 527, (case["batch"],))
    fns = {"flexiast": train_step(model, model, spec, target, dtype)}
    for attn in ("sdpa", "eager"):
        hf = hf_model(model, attn)
        fns[f"HF {attn}"] = train_step(hf, lambda x, hf=hf: hf_logits(hf, x), spec, target, dtype)
    compile_s = None
    if compile_:
        twin = build(case)
        compiled = torch.compile(twin, dynamic=False)
        fns["flexiast compiled"] = train_step(twin, compiled, spec, target, dtype)
        start = time.perf_counter()
        fns["flexiast compiled"]()
        compile_s = time.perf_counter() - start
    times = interleaved(fns, repeats=case["repeats"], warmup=1)
    peer = min(("HF sdpa", "HF eager"), key=lambda k: spread(times[k])[0])
    share = {k: matrix_share(fns[k], 1 if case["batch"] <= 4 else 2) for k in ("flexiast", peer)}
    ours_flops = flops(model, spec.shape).training
    peer_flops = full_last_layer_flops(model, spec.shape)
    return dict(name=name, dtype=dtype, times=times, peer=peer, batch=case["batch"], compile_s=compile_s, peak=peak,
                share=share,
                ours_util=ours_flops / spread(times["flexiast"])[0] / 1e9 / peak,
                peer_util=peer_flops / spread(times[peer])[0] / 1e9 / peak,
                compiled_util=(ours_flops / spread(times["flexiast compiled"])[0] / 1e9 / peak) if compile_ else None,
                ours_flops=ours_flops, peer_flops=peer_flops)


MATRIX_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def matrix_share(step, steps: int = 2) -> float:
    """Share of a step's self CPU time (torch.profiler) spent in matrix products and fused attention."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in MATRIX_OPS) / total


def optimizer_rows(quick: bool) -> list[list]:
    """Adam's step on AST-base's parameters: one kernel per operation (foreach) or fused."""
    model = AST(num_classes=527, **(dict(embed_dim=64, depth=2, num_heads=2) if quick else dict()))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    fns = {}
    for fused in (False, True):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-7, fused=fused)
        fns["fused" if fused else "foreach (default)"] = opt.step
    with torch.no_grad():
        times = interleaved(fns, repeats=3 if quick else 9, warmup=1)
    base = spread(times["foreach (default)"])[0]
    return [[k, ms(spread(v)[0]), ms(min(v)), ms(max(v)), f"{base / spread(v)[0]:.2f}x"] for k, v in times.items()]


def section(results: list[dict], opt_rows: list[list], peak: dict) -> str:
    lines = ["## Training step against Hugging Face's AST", "",
             "`python benchmarks/bench_train.py`. " + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(), ""]
    rows = []
    for r in results:
        t = r["times"]
        for k in t:
            med, lo, hi = spread(t[k])
            rows.append([r["name"], r["dtype"], k, ms(med), f"{ms(lo)}-{ms(hi)}", f"{r['batch'] / med:,.1f}"])
    lines += table(["model", "dtype", "implementation", "ms/step (median)", "min-max", "clips/s"], rows)
    lines += ["", "Speed-up over the faster Hugging Face attention (median of per-round ratios, min-max), "
              "and achieved training FLOP/s over the matrix-multiply peak:", ""]
    rows = []
    for r in results:
        t = r["times"]
        med, lo, hi = ratio_spread(t[r["peer"]], t["flexiast"])
        util = f"{r['ours_util']:.0%}"
        comp = "-"
        if r["compiled_util"] is not None:
            cm, clo, chi = ratio_spread(t[r["peer"]], t["flexiast compiled"])
            comp = f"{cm:.2f}x ({clo:.2f}-{chi:.2f}), {r['compiled_util']:.0%} of peak, {r['compile_s']:.0f} s to compile"
        bound = spread(t[r["peer"]])[0] / (r["ours_flops"] / 1e9 / r["peak"])
        shares = f"{r['share']['flexiast']:.0%} / {r['share'][r['peer']]:.0%}"
        rows.append([r["name"], r["dtype"], r["peer"], f"{med:.2f}x ({lo:.2f}-{hi:.2f})", f"{bound:.2f}x", util,
                     f"{r['peer_util']:.0%}", shares, comp])
    lines += table(["model", "dtype", "peer", "flexiast eager vs peer", "bound", "flexiast util.", "peer util.",
                    "matrix share, flexiast / peer", "flexiast compiled vs peer"], rows)
    lines += ["", "*bound*: the speed-up over the peer of a step that did flexiast's matrix-product FLOPs at "
              "the measured peak and nothing else; no implementation of this model can exceed it here. "
              "*matrix share*: the part of each step's CPU time (torch.profiler, self time) spent in matrix "
              "products and fused attention; the rest is normalisation, GELU, softmax, casts, residual "
              "additions and the optimizer, element-wise work that eager PyTorch runs one operation at a time."]
    lines += ["", "Peaks: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peak.items()) + ".", "",
              "Adam's step alone on AST-base's parameters (86 M), one step, ms (flexiast uses the default; "
              "see the findings):", ""]
    lines += table(["Adam", "median", "min", "max", "speed-up"], opt_rows)
    return "\n".join(lines) + "\n"


def measure(quick: bool, peak: dict | None = None, compile_: bool = True) -> dict:
    peak = peak or {k: v[0] for k, v in peaks(quick).items()}
    results = []
    for name, case in (QUICK if quick else CASES).items():
        for dtype in dtypes():
            results.append(compare(name, case, dtype, peak[dtype], compile_ and not quick and case.get("preset") == "tiny"))
    return dict(results=results, optimizer=optimizer_rows(quick), peak=peak)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats: checks the script runs")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled contender")
    args, _ = parser.parse_known_args(argv)
    r = measure(args.quick, compile_=not args.no_compile)
    return section(r["results"], r["optimizer"], r["peak"])


if __name__ == "__main__":
    print(f"Machine: {machine()}\n")
    print(main())
