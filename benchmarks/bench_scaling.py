"""Step time across patch sizes and compression factors, and what PI-resize costs a step.

AST-tiny on 10 s clips (1024 frames x 128 bins), in the precision ``auto`` trains in here,
batch 8, Adam; the model called with ``patch_size=p`` as FlexiAST training calls it: the
stored 16 x 16 kernel is PI-resized and the positional grid resized on every call.
Compression C feeds ``1024 / C`` frames at patch 16 to a model built for them, what each coarse-to-fine method
(frame shift, pooling) gives the model (Feng et al., ICASSP 2024, Sec. 2.3).

PI-resize per step: forward and backward of the kernel resize and the positional-grid
resize alone, with the pseudo-inverse cached (as from the second step at a size on),
over the step at that size. One-time cost: the first resize to a size not seen before,
which computes and caches the pseudo-inverses (float64 SVDs of the two 1-D ``(p, 16)``
interpolation matrices).
"""

from __future__ import annotations

import time

import torch

from common import auto_dtype, interleaved, ms, run_script, spread, table, train_step
from flexiast import AST, flops
from flexiast import resize as resize_mod
from flexiast.resize import grid_shape, resize_patch_weight

SIZES = (8, 10, 12, 16, 20, 24, 30, 32, 40, 48)


def build(quick: bool, frames: int) -> AST:
    torch.manual_seed(0)
    if quick:
        return AST(num_classes=527, input_tdim=frames, embed_dim=64, depth=2, num_heads=2)
    return AST.preset("tiny", num_classes=527, input_tdim=frames)


def step_fn(model: AST, frames: int, batch: int, patch: int):
    spec, target = torch.randn(batch, frames, 128), torch.randint(0, 527, (batch,))
    return train_step(model, lambda x: model(x, patch_size=patch), spec, target, auto_dtype())


def resize_fn(model: AST, frames: int, patch: int):
    """Forward and backward of what a call at ``patch`` adds: kernel and grid resizes."""
    grid = grid_shape((128, frames), patch)
    kernel, pos = model.patch_embed.proj.weight, model.pos_embed

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto_dtype() == "bf16"):
            w = resize_patch_weight(kernel, patch, "pi")
            p = model.pos_embed_for((patch, patch), (patch, patch), grid)
        (w.float().sum() + p.float().sum()).backward()
        kernel.grad = pos.grad = None
    return run


def one_time_costs(sizes) -> dict[int, float]:
    """Seconds of the first PI-resize to each size, the resize caches emptied first."""
    for fn in (resize_mod._pinv64, resize_mod._axis_cached, resize_mod._axis_matrix64, resize_mod._pi_kron):
        fn.__wrapped__.cache_clear()
    out = {}
    for p in sizes:
        start = time.perf_counter()
        resize_mod.pi_resize(torch.zeros(1, 1, 16, 16), (p, p))
        out[p] = time.perf_counter() - start
    return out


def measure(quick: bool) -> dict:
    sizes = (8, 16, 32) if quick else SIZES
    batch, frames, repeats = (2, 256, 2) if quick else (8, 1024, 5)
    first = one_time_costs([p for p in sizes if p != 16])
    model = build(quick, frames)
    steps = {p: step_fn(model, frames, batch, p) for p in sizes}
    resizes = {p: resize_fn(model, frames, p) for p in sizes}
    step_t = interleaved(steps, repeats=repeats, warmup=1)
    resize_t = interleaved(resizes, repeats=repeats * 4, warmup=2)
    comp = {}
    for c in (1, 2, 4):
        m = build(quick, frames // c)
        comp[c] = step_fn(m, frames // c, batch, 16)
    comp_t = interleaved(comp, repeats=repeats, warmup=1)
    return dict(sizes=sizes, batch=batch, frames=frames, first=first, step=step_t, resize=resize_t, comp=comp_t,
                flops={p: flops(model, (batch, frames, 128), p).training for p in sizes},
                comp_flops={c: flops(build(quick, frames // c), (batch, frames // c, 128)).training for c in (1, 2, 4)},
                tokens={p: flops(model, (frames, 128), p).tokens for p in sizes},
                comp_tokens={c: flops(build(quick, frames // c), (frames // c, 128)).tokens for c in (1, 2, 4)})


def flexiast_share(r: dict) -> float:
    """Resize time over step time when every size is drawn equally often (FlexiAST, Sec. 2.3)."""
    return (sum(spread(r["resize"][p])[0] for p in r["sizes"] if p != 16)
            / sum(spread(r["step"][p])[0] for p in r["sizes"]))


def section(r: dict) -> str:
    doc = __doc__.split("\n\n", 1)[1].split("\n\n")
    lines = ["## Scaling across patch sizes and compression", "", "`python benchmarks/bench_scaling.py`. " +
             doc[0].replace("\n", " ").replace("batch 8", f"batch {r['batch']}").replace(
                 "10 s clips (1024 frames x 128 bins)", f"clips of {r['frames']} frames x 128 bins").replace("1024 / C", f"{r['frames']} / C"),
             ""]
    ref = spread(r["step"][16])[0]
    rows = []
    for p in r["sizes"]:
        med, lo, hi = spread(r["step"][p])
        rows.append([p, r["tokens"][p], ms(med), f"{ms(lo)}-{ms(hi)}", f"{ref / med:.2f}x",
                     f"{r['flops'][16] / r['flops'][p]:.2f}x", f"{r['flops'][p] / med / 1e9:,.0f}"])
    lines += table(["patch", "tokens", "ms/step (median)", "min-max", "speed vs 16", "FLOPs ratio vs 16",
                    "GFLOP/s"], rows)
    lines += ["", f"Compression at patch 16 ({r['frames']} frames / C):", ""]
    ref = spread(r["comp"][1])[0]
    rows = []
    for c, v in r["comp"].items():
        med, lo, hi = spread(v)
        rows.append([c, r["comp_tokens"][c], ms(med), f"{ms(lo)}-{ms(hi)}", f"{ref / med:.2f}x",
                     f"{r['comp_flops'][1] / r['comp_flops'][c]:.2f}x", f"{r['comp_flops'][c] / med / 1e9:,.0f}"])
    lines += table(["C", "tokens", "ms/step (median)", "min-max", "speed vs C=1", "FLOPs ratio vs C=1",
                    "GFLOP/s"], rows)
    lines += ["", "## PI-resize cost", "", doc[1].replace("\n", " "), ""]
    rows = []
    for p in r["sizes"]:
        if p == 16:
            continue
        med, lo, hi = spread(r["resize"][p])
        rows.append([p, f"{med * 1e3:.3f}", f"{lo * 1e3:.3f}-{hi * 1e3:.3f}", f"{med / spread(r['step'][p])[0]:.3%}",
                     ms(r["first"][p])])
    lines += table(["patch", "ms per step (median)", "min-max", "share of the step", "first use, ms"], rows)
    lines += ["", f"Over FlexiAST's uniform draw of these sizes the resizes take {flexiast_share(r):.3%} of the "
              "training time (sum of the resize medians over the sum of the step medians)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_script(__doc__, measure, section)
