"""Packed variable-length batches (ElasticAST) against padded batches of the same clips.

A batch of clips of their own lengths can be padded (today's way: each batch padded at the
end to its longest clip, ``Clips.padded()``, or every clip padded or cut to one fixed length,
``features.target_length``) or packed (issue 29, ElasticAST: ``model(Clips(specs,
row_tokens=R))``, the clips' tokens laid into rows of at most ``R`` tokens, attention masked
block-diagonally). Issue 29's target: the time a packed training step saves over the step
padded to the longest clip is at least 80% of the padding fraction it removes,
``1 - real tokens / padded tokens``.

* **Lengths.** FSDD: the real durations of FSDD's 3,000 recordings, read from the WAV headers
  (8 kHz, resampled to 16 kHz on loading), as frames of the recipe's features (25 ms windows
  at a 10 ms shift, 128 mel bins): 12 to 226 frames, median 40. A clip shorter than one patch
  (16 frames) is lengthened to 16, as a model must see at least one patch. Synthetic: lengths
  uniform in [32, 320] frames, a 10x spread. The features are random normal tensors of those
  lengths: a step's time does not depend on the values, only on the shapes.
* **Batches.** The lengths shuffled (seeded) and cut into batches of 32 in that order, as a
  shuffled loader gives them; every contender steps on the same batches.
* **Contenders.** "padded to longest": the batch padded to its longest clip, one
  ``[32, longest, 128]`` tensor (the model attends to the padding too: it computes another
  function than packing, which is exactly each clip alone). "packed, R": ``Clips`` with
  ``row_tokens=R``, one block-masked attention over each row's length; the clips in the
  batch's order, which ``pack_rows`` fills greedily (ElasticAST's rule), so a row closes as
  soon as the next clip does not fit, and every row is padded to the longest row. "packed,
  R, first-fit decreasing": the same clips and labels reordered so that the same greedy fill
  gives first-fit decreasing's rows (longest first, each into the first row with room),
  nearly full: what a token-budget sampler (issue 29, item 2) could hand the model. "fixed F": every clip
  padded or cut to F frames; for FSDD F = 64, the recipe's ``target_length``, which cuts the
  clips longer than 0.64 s (the model then sees less audio: a cost comparison with today's
  recipe, not like with like); for the synthetic lengths F = 320, the longest, a fixed length
  that keeps every clip.
* **Step.** Forward, cross-entropy, backward, the recipe's Adam (``build_optimizer``) and
  zeroed gradients, fp32 (what ``precision: auto`` trains in on a CPU without native bf16;
  bf16 is not timed here), each contender on its own copy of the same initial weights with
  its own optimizer. Inference: ``model.eval()`` under ``torch.inference_mode``, logits of
  the same batches. The packed logits are checked against each clip run alone before timing.
* **Timing.** Interleaved finely: within a round, every contender steps on batch 1, then every
  contender on batch 2, and so on, the contenders' order rotated from round to round, so a
  slow spell of a shared machine hits all contenders alike. A contender's time against the
  padded one is the median of its same-batch, same-round ratios, with their quartiles (on a
  busy machine the extremes say more about the other processes than about the contenders);
  milliseconds per step are the median of the rounds' means, with their minimum and maximum.
* **Row budget.** Masked attention over a row of ``L`` positions computes ``L^2`` scores
  where its clips need ``sum S_i^2``: the cross-clip pairs are wasted work, which grows
  with ``R``, against rows filled less fully (each row is padded to the longest row) as
  ``R`` shrinks. The headline ``R`` is fixed before measuring by one rule: the tokens of the
  distribution's longest clip, rounded up to a multiple of 64 (the least budget that takes
  every clip whole: 128 for FSDD, 192 for the synthetic lengths);
  the others show how the saving varies with ``R``, ElasticAST's 2048 among them.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
import wave
from pathlib import Path

import torch
import torch.nn.functional as F

from common import machine, ms, spread, table
from flexiast import AST, flops
from flexiast.fbank import num_frames
from flexiast.models.ast.packed import layout
from flexiast.models.packing import Clips

BINS, PATCH, CLASSES = 128, 16, 10
#: The FSDD recipe's AST (recipes/fsdd/digits_ast16.yaml) and one 3x wider.
MODELS = {"FSDD recipe AST (128 wide, 4 layers, 4 heads)": dict(embed_dim=128, depth=4, num_heads=4),
          "384 wide, 4 layers, 6 heads": dict(embed_dim=384, depth=4, num_heads=6)}
QUICK_MODELS = {"32 wide, 1 layer": dict(embed_dim=32, depth=1, num_heads=2)}
#: Per distribution: its row budgets (the headline's first), the fixed length, and per model
#: kind (recipe / wide) how many batches a round holds; rounds.
PLANS = {
    "FSDD": dict(rows=(128, 256, 512, 2048), fixed=64,
                 recipe=dict(batches=4, rounds=7, sweep=True), wide=dict(batches=2, rounds=5, sweep=False)),
    "synthetic, 32-320 frames": dict(rows=(192, 384, 1024, 2048), fixed=320,
                                     recipe=dict(batches=2, rounds=7, sweep=True),
                                     wide=dict(batches=1, rounds=5, sweep=False)),
}
QUICK_PLAN = dict(batches=1, rounds=1, sweep=False)
BATCH, QUICK_BATCH = 32, 4
TARGET = 0.8


def fsdd_frames(fsdd: str) -> list[int]:
    """Frames of each FSDD recording at 16 kHz (25 ms windows, 10 ms shift), from its header."""
    paths = sorted(Path(fsdd, "recordings").glob("*.wav"))
    if not paths:
        raise SystemExit(f"no FSDD recordings under {fsdd}/recordings (pass --fsdd)")
    out = []
    for p in paths:
        with wave.open(str(p)) as w:
            out.append(num_frames(round(w.getnframes() * 16000 / w.getframerate())))
    return out


def lengths(fsdd: str) -> dict[str, list[int]]:
    """Each distribution's clip lengths in frames, shuffled (seeded)."""
    real = fsdd_frames(fsdd)
    rng = random.Random(0)
    synthetic = [rng.randint(32, 320) for _ in range(len(real))]
    random.Random(1).shuffle(real)
    return {"FSDD": real, "synthetic, 32-320 frames": synthetic}


def row_rule(longest_tokens: int) -> int:
    """The headline row budget: the longest clip's tokens rounded up to a multiple of 64."""
    return -(-longest_tokens // 64) * 64


def build(dims: dict) -> AST:
    torch.manual_seed(0)
    return AST(CLASSES, input_fdim=BINS, input_tdim=64, patch_size=PATCH, **dims)


def step_fn(model: AST, train: bool):
    """One training step (or, with ``train=False``, one inference call) of ``model`` on an input."""
    from flexiast.config import OptimizerConfig
    from flexiast.engine.optim import build_optimizer

    if not train:
        model.eval()

        def infer(x, target):
            with torch.inference_mode():
                model(x)
        return infer
    opt = build_optimizer(model.parameters(), OptimizerConfig())

    def step(x, target):
        F.cross_entropy(model(x), target).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def rounds(fns: dict, inputs: dict, repeats: int) -> dict[str, list[list[float]]]:
    """Seconds of each step of each contender, ``[round][batch]``: ``fns[c](*inputs[c][b])``
    (an input and its targets), every contender on one batch before the next batch, the
    contenders' order rotated per round; one untimed round first."""
    names = list(fns)
    out = {c: [] for c in names}
    for r in range(repeats + 1):
        order = names[r % len(names):] + names[: r % len(names)]
        spent = {c: [] for c in names}
        for b in range(len(inputs[names[0]])):
            for c in order:
                start = time.perf_counter()
                fns[c](*inputs[c][b])
                spent[c].append(time.perf_counter() - start)
        if r:
            for c in names:
                out[c].append(spent[c])
    return out


def first_fit_decreasing(sizes: list[int], budget: int) -> list[int]:
    """An order of the clips (indices) in which :func:`~flexiast.models.packing.pack_rows`'
    greedy in-order fill gives the rows of first-fit decreasing: clips taken longest first,
    each into the first row with room. Each row then starts with a row of that packing and
    ends at or after its end, so there are no more rows than first-fit decreasing makes."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = next((j for j, free in enumerate(room) if free >= sizes[i]), None)
        if j is None:
            bins.append([]), room.append(budget)
            j = len(bins) - 1
        bins[j].append(i)
        room[j] -= sizes[i]
    return [i for b in bins for i in b]


def pairs(steps: dict, name: str, ref: str = "padded to longest") -> tuple[float, float, float]:
    """``name``'s time over ``ref``'s on the same batch in the same round: (median, lower
    quartile, upper quartile) over all such pairs."""
    r = [a / b for ra, rb in zip(steps[name], steps[ref]) for a, b in zip(ra, rb)]
    if len(r) < 2:
        return r[0], r[0], r[0]
    q1, q2, q3 = statistics.quantiles(r, n=4, method="inclusive")
    return q2, q1, q3


def per_step(steps: dict, name: str) -> tuple[float, float, float]:
    """Seconds per step, (median, min, max) over the rounds' means."""
    return spread([sum(r) / len(r) for r in steps[name]])


def case(model: AST, frames: list[int], plan: dict, rows: tuple, fixed: int, batch: int) -> dict:
    """Time every contender of one model on one distribution; count their tokens and FLOPs."""
    g = torch.Generator().manual_seed(2)
    batches = [frames[i * batch:(i + 1) * batch] for i in range(plan["batches"])]
    specs = [[torch.randn(max(n, PATCH), BINS, generator=g) for n in b] for b in batches]
    targets = [torch.randint(0, CLASSES, (batch,), generator=g) for _ in batches]
    sizes = [layout(model.config, Clips(s)).sizes for s in specs]
    longest = torch.zeros(max(max(frames), PATCH), BINS)
    headline = row_rule(layout(model.config, Clips([longest])).sizes[0])  # holds the distribution's longest clip
    budgets = [headline] + [r for r in rows if r != headline and r >= headline] if plan["sweep"] else [headline]
    inputs = {"padded to longest": [(Clips(s).padded()[0], t) for s, t in zip(specs, targets)],
              f"fixed {fixed}": [(torch.stack([F.pad(x[:fixed], (0, 0, 0, max(0, fixed - x.shape[0]))) for x in s]), t)
                                  for s, t in zip(specs, targets)]}
    for r in budgets:
        inputs[f"packed, R={r}"] = [(Clips(s, row_tokens=r), t) for s, t in zip(specs, targets)]
    ffd = f"packed, R={headline}, first-fit decreasing"
    inputs[ffd] = []
    for s, t, z in zip(specs, targets, sizes):  # the same clips and labels, in another order
        order = first_fit_decreasing(list(z), headline)
        inputs[ffd].append((Clips([s[i] for i in order], row_tokens=headline), t[order]))
    model.eval()
    with torch.no_grad():  # the packed contenders compute each clip alone
        alone = torch.cat([model(x[None]) for x in specs[0]])
        for r in budgets:
            torch.testing.assert_close(model(inputs[f"packed, R={r}"][0][0]), alone, rtol=0, atol=1e-4)
        order = first_fit_decreasing(list(sizes[0]), headline)
        torch.testing.assert_close(model(inputs[ffd][0][0]), alone[order], rtol=0, atol=1e-4)
    model.train()
    counts = {}
    for name, xs in inputs.items():
        shapes = [x if isinstance(x, Clips) else tuple(x.shape) for x, _ in xs]
        lays = [layout(model.config, x) if isinstance(x, Clips) else None for x in shapes]
        tokens = sum(lay.tokens if lay else flops(model, s).tokens * s[0] for lay, s in zip(lays, shapes))
        counts[name] = dict(tokens=tokens, flops=sum(flops(model, s).training for s in shapes))
    counts["real"] = dict(tokens=sum(sum(z) for z in sizes))
    train = rounds({c: step_fn(copy.deepcopy(model), True) for c in inputs}, inputs, plan["rounds"])
    infer = rounds({c: step_fn(copy.deepcopy(model), False) for c in inputs}, inputs, plan["rounds"])
    return dict(batches=len(batches), batch=batch, headline=f"packed, R={headline}", ffd=ffd, fixed=f"fixed {fixed}",
                counts=counts, train=train, infer=infer,
                short=sum(n < PATCH for b in batches for n in b), cut=sum(n > fixed for b in batches for n in b),
                clips=sum(len(b) for b in batches))


def measure(quick: bool, fsdd: str, models: str = "recipe,wide") -> dict:
    """Every case; ``models``: which of the two models (``recipe``, ``wide``) to time."""
    dists = lengths(fsdd)
    chosen = [m.strip() for m in models.split(",")]
    models = QUICK_MODELS if quick else {k: v for k, v in MODELS.items()
                                         if ("wide" if v["embed_dim"] > 128 else "recipe") in chosen}
    out = {"machine": machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "threads": torch.get_num_threads(),
           "fsdd_frames": summary_of(fsdd_frames(fsdd)), "cases": []}
    for mname, dims in models.items():
        for dname, plan in PLANS.items():
            kind = QUICK_PLAN if quick else plan["wide" if dims["embed_dim"] > 128 else "recipe"]
            start = time.perf_counter()
            res = case(build(dims), dists[dname], kind, plan["rows"], plan["fixed"], QUICK_BATCH if quick else BATCH)
            res.update(model=mname, dist=dname, seconds=time.perf_counter() - start)
            out["cases"].append(res)
            saved, gone = saving(res, res["headline"])[0], removed(res)
            print(f"  {mname}, {dname}: {res['seconds']:.0f} s; {res['headline']}: time saved {saved:.1%}, "
                  f"padding removed {gone:.1%}, ratio {saved / gone:.2f}", flush=True)
    return out


def summary_of(frames: list[int]) -> dict:
    return dict(clips=len(frames), min=min(frames), median=statistics.median(frames), max=max(frames),
                under_patch=sum(n < PATCH for n in frames))


def saving(res: dict, name: str, train: bool = True) -> tuple[float, float, float]:
    """Time saved against "padded to longest": 1 - the same-batch time ratio, (median, and
    from the ratio's upper and lower quartiles)."""
    med, q1, q3 = pairs(res["train" if train else "infer"], name)
    return 1 - med, 1 - q3, 1 - q1


def removed(res: dict) -> float:
    """The padding fraction packing removes: 1 - real tokens / padded-to-longest tokens."""
    c = res["counts"]
    return 1 - c["real"]["tokens"] / c["padded to longest"]["tokens"]


def section(res: dict) -> str:
    doc = __doc__.split("\n\n", 1)[1].strip()
    f = res["fsdd_frames"]
    lines = ["## Packed variable-length batches", "",
             "`python benchmarks/bench_packing.py` (alone: `--json FILE` also writes the raw timings). " + doc, "",
             f"torch.backends.cpu.get_cpu_capability(): {res['cpu_capability']}; "
             f"torch.ops.mkldnn._is_mkldnn_bf16_supported(): {res['mkldnn_bf16']}; {res['threads']} threads; fp32. "
             f"FSDD: {f['clips']} clips, {f['min']}-{f['max']} frames (median {f['median']:.0f}), "
             f"{f['under_patch']} under one patch.", ""]
    targets = []
    for r in res["cases"]:
        c, t = r["counts"], r["train"]
        pad = c["padded to longest"]
        lines += [f"### {r['model']}, {r['dist']} lengths", "",
                  f"{r['batches']} batches of {r['batch']} clips per round, {len(t['padded to longest'])} timed rounds; "
                  f"{r['cut']} of the {r['clips']} clips are longer than {r['fixed']} frames (cut there), "
                  f"{r['short']} shorter than one patch. Real tokens: {c['real']['tokens']:,}, "
                  f"{c['real']['tokens'] / pad['tokens']:.0%} of the padded batches' "
                  f"(padding fraction packing removes: {removed(r):.1%}).", ""]
        rows = []
        for name in t:
            n = c[name]
            if name == "padded to longest":
                vs = saved = of = "-"
            else:
                med, lo, hi = pairs(t, name)
                vs = f"{med:.2f} ({lo:.2f}-{hi:.2f})"
                saved = f"{1 - med:.1%}"
                of = f"{(1 - med) / removed(r):.2f}" if name.startswith("packed") else "-"
            tm = per_step(t, name)
            rows.append([name + (" (headline)" if name == r["headline"] else ""), f"{n['tokens']:,}",
                         f"{n['tokens'] / pad['tokens']:.0%}", f"{n['flops'] / pad['flops']:.0%}",
                         f"{ms(tm[0])} ({ms(tm[1])}-{ms(tm[2])})", vs, saved, of])
        lines += table(["training step", "positions computed", "vs padded", "training FLOPs vs padded",
                        "ms per step", "time / padded, same batch (quartiles)", "time saved",
                        "saved / padding removed"], rows)
        lines += [""]
        rows = []
        i = r["infer"]
        for name in i:
            cps = sorted(r["clips"] / sum(s) for s in i[name])
            med, q1, q3 = pairs(i, name)
            x = "-" if name == "padded to longest" else f"{1 / med:.2f}x ({1 / q3:.2f}-{1 / q1:.2f})"
            rows.append([name, f"{statistics.median(cps):,.0f} ({cps[0]:,.0f}-{cps[-1]:,.0f})", x])
        lines += table(["inference", "clips/s", "speed-up over padded, same batch (quartiles)"], rows)
        lines += [""]
        med, lo, hi = saving(r, r["headline"])
        ffd = saving(r, r["ffd"])[0]
        targets.append([f"{r['model']}, {r['dist']}, {r['headline']}", f"{removed(r):.1%}",
                        f"{med:.1%} ({lo:.1%} to {hi:.1%})", f"{med / removed(r):.2f}",
                        "met" if med >= TARGET * removed(r) else "**not met**",
                        f"{ffd:.1%}, {ffd / removed(r):.2f}"])
    head = ["### Against the target", "",
            f"Time saved by the packed step (headline R) over the step padded to the longest clip, against the "
            f"padding fraction packing removes; the target is a ratio of at least {TARGET}. The last column is "
            f"the same clips in first-fit decreasing order (not the target's contender: a sampler's choice).", ""]
    head += table(["case", "padding removed", "time saved (quartiles)", "ratio", "target",
                   "first-fit decreasing: saved, ratio"], targets)
    i = lines.index(next(line for line in lines if line.startswith("### ")))
    return "\n".join(lines[:i] + head + [""] + lines[i:]) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, a few clips, two rounds: checks the script runs")
    parser.add_argument("--fsdd", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"))
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--models", default="recipe,wide", help="recipe (128 wide), wide (384 wide) or both")
    parser.add_argument("--json", help="also write the raw timings and counts here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"Machine: {machine()}\n", flush=True)
    res = measure(args.quick, args.fsdd, args.models)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(section(res))


if __name__ == "__main__":
    main()
