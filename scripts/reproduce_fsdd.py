"""Reproduce both papers on FSDD (issue 6): train, evaluate, tabulate.

    python scripts/reproduce_fsdd.py                       # everything, seeds 0-2, 2 jobs of 1 thread
    python scripts/reproduce_fsdd.py --only flex --seeds 0 # one study
    python scripts/reproduce_fsdd.py --tables-only         # rewrite the tables from finished runs

Studies (recipes in ``recipes/fsdd/``):

* ``flex``  FlexiAST Table 1, Fig. 1 and 5: standard ASTs at 8, 16, 32 and FlexiASTs
  (initialised from AST-8, distilled, from scratch), each evaluated at every size in P
  with PI and BL;
* ``axes``  Fig. 4a: speaker identification, FlexiAST resizing both axes, time or frequency;
* ``c2f``   coarse-to-fine Tables 2-5: the AST-16 baseline against Fshift, avg pool, max
  pool, Patch-BL and Patch-PI as 2->1 (every seed) and 4->1 (seed 0; Fshift and Patch-PI
  every seed), and Fshift 4->2->1 (seed 0).
* ``htsat`` coarse-to-fine Table 6's HTS-AT row at small scale: the HTS-AT (micro) baseline
  against Fshift 4->1, every seed.
* ``table1`` coarse-to-fine Table 1 at small scale, every seed: CNN14 (micro) at full resolution
  and trained at max pool 2 (Pool2), AST-16, AST-16 trained at max pool 2 alone, and AST-16 max
  pool 2->1 (:data:`TABLE1`; the paper's Pool2 is max pooling, recipes/generate.py says why).
* ``patchout`` PaSST's structured patchout against and with coarse-to-fine, every seed, same
  epochs: the AST-16 baseline, Fshift 4->1, patchout of a quarter and of a half of the time
  columns and frequency rows, and Fshift 4->1 with the quarter (:data:`PATCHOUT`).

Each run lives in ``RUNS/<recipe name>-s<seed>``. A finished run (``summary.json``) is not
trained again and a started one is resumed, so the command can be killed and rerun. Runs
go ``--jobs`` at a time with ``--threads`` each; wall times of runs that shared the CPU
are comparable only with each other (the tables say so). The tables are written to
``docs/results/fsdd/`` with the profiles they were drawn from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
from generate import METHOD_NAMES, METHODS  # noqa: E402

PY = [sys.executable, "-m", "flexiast"]


@dataclass
class Job:
    recipe: str                   # file name in recipes/fsdd
    seed: int
    study: str
    after: list[str] = field(default_factory=list)       # run names this one initialises from
    evals: list[tuple[str, str]] = field(default_factory=list)  # (resize, axes)

    @property
    def base(self) -> str:
        return "fsdd-" + self.recipe.removesuffix(".yaml").replace("_", "-")

    @property
    def name(self) -> str:
        return f"{self.base}-s{self.seed}"


def jobs(seeds: list[int], only: set[str]) -> list[Job]:
    """The queue, most informative first (a run that was cut short is resumed on the next call):
    seed 0 of every study, then the further seeds of the coarse-to-fine 2->1 comparison, then
    of Fshift and Patch-PI 4->1, then the distilled FlexiAST."""
    s0, rest = seeds[0], seeds[1:]
    both = [("pi", "both"), ("bl", "both")]
    out = []
    if "flex" in only:
        ast8 = f"fsdd-digits-ast8-s{s0}"
        out += [Job("digits_ast16.yaml", s0, "flex", evals=both), Job("digits_ast8.yaml", s0, "flex", evals=both),
                Job("digits_ast32.yaml", s0, "flex", evals=both),
                Job("digits_flexiast_scratch.yaml", s0, "flex", evals=both),
                Job("digits_flexiast.yaml", s0, "flex", after=[ast8], evals=both)]
    if "c2f" in only:
        if "flex" not in only:
            out.append(Job("digits_ast16.yaml", s0, "c2f"))
        out += [Job(f"digits_c2f_{m}_{sched}.yaml", s0, "c2f") for sched in ("2-1", "4-1") for m in METHODS]
        out.append(Job("digits_c2f_fshift_4-2-1.yaml", s0, "c2f"))
    if "axes" in only:
        axes = [("pi", a) for a in ("both", "time", "freq")]
        out.append(Job("speakers_ast16.yaml", s0, "axes", evals=axes))
        out += [Job(f"speakers_flexiast_{a}.yaml", s0, "axes", after=[f"fsdd-speakers-ast16-s{s0}"], evals=axes)
                for a in ("both", "time", "freq")]
    if "c2f" in only:
        for s in rest:
            out.append(Job("digits_ast16.yaml", s, "c2f"))
            out += [Job(f"digits_c2f_{m}_2-1.yaml", s, "c2f") for m in METHODS]
        out += [Job(f"digits_c2f_{m}_4-1.yaml", s, "c2f") for s in rest for m in ("fshift", "patchpi")]
    if "flex" in only:
        out.append(Job("digits_flexiast_kd.yaml", s0, "flex", after=[f"fsdd-digits-ast8-s{s0}"], evals=both))
    if "htsat" in only:
        out += [Job(recipe, s, "htsat") for s in seeds
                for recipe in ("digits_htsat.yaml", "digits_htsat_c2f_fshift_4-1.yaml")]
    if "table1" in only:
        queued = {j.name for j in out}
        out += [job for s in seeds for recipe, *_ in TABLE1
                if (job := Job(recipe, s, "table1")).name not in queued]
    if "patchout" in only:
        queued = {j.name for j in out}
        out += [job for s in seeds for recipe, _ in PATCHOUT
                if (job := Job(recipe, s, "patchout")).name not in queued]
    return out


#: The patchout study's rows (issue 31): (recipe, label), the baseline first.
PATCHOUT = (
    ("digits_ast16.yaml", "baseline AST-16"),
    ("digits_c2f_fshift_4-1.yaml", "Fshift 4->1"),
    ("digits_patchout_25.yaml", "patchout 25% (18 of 32 tokens)"),
    ("digits_patchout_50.yaml", "patchout 50% (8 of 32 tokens)"),
    ("digits_c2f_fshift_4-1_patchout_25.yaml", "Fshift 4->1 + patchout 25%"),
)


#: Coarse-to-fine Table 1's rows on FSDD: (recipe, method, architecture and whether it trains in
#: several phases), in the paper's order; the paper's AudioSet mAP for each row is in its comment.
TABLE1 = (
    ("digits_cnn14.yaml", "Baseline - CNN14 (micro)", "CNN", "no"),            # 43.20
    ("digits_cnn14_pool2.yaml", "Pool2", "CNN", "no"),                         # 42.60
    ("digits_ast16.yaml", "Baseline - AST-16", "Transformer", "no"),           # 44.30
    ("digits_ast16_pool2.yaml", "Pool2", "Transformer", "no"),                 # 42.79
    ("digits_c2f_maxpool_2-1.yaml", "Pool2->1", "Transformer", "yes"),         # 44.35
)


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if code:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log}")


def execute(job: Job, runs: Path, threads: int) -> str:
    run_dir = runs / job.name
    log = runs / f"{job.name}.log"
    if not (run_dir / "summary.json").exists():
        if (run_dir / "last.pt").exists() or (run_dir / "last.prev.pt").exists():
            run(PY + ["train", "--resume", str(run_dir)], log)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # a run killed before its first checkpoint
            overrides = [f"seed={job.seed}", f"out={run_dir}", f"train.threads={threads}", "train.progress=false",
                         "train.tensorboard=false"]
            for dep in job.after:
                overrides.append(f"init.path={runs / dep / 'best.safetensors'}")
                if "kd" in job.recipe:
                    overrides.append(f"loss.teacher={runs / dep / 'best.safetensors'}")
            run(PY + ["train", f"recipes/fsdd/{job.recipe}"] + overrides, log)
    for resize, axes in job.evals:
        out = run_dir / f"eval-{resize}-{axes}"
        if not (out / "profile.json").exists():
            run(PY + ["evaluate", str(run_dir), "--resize", resize, "--axes", axes, "--out", str(out),
                      "--no-store", "--latency-runs", "3", "--label", f"{job.base} ({resize.upper()}, {axes})"],
                log)
    return job.name


def schedule(all_jobs: list[Job], runs: Path, parallel: int, threads: int) -> list[str]:
    pending, done, failed = list(all_jobs), set(), []
    env_threads = str(threads)
    os.environ.update(OMP_NUM_THREADS=env_threads, MKL_NUM_THREADS=env_threads)
    with ThreadPoolExecutor(parallel) as pool:
        active = {}
        while pending or active:
            for job in list(pending):
                if len(active) >= parallel:
                    break
                if any(d in failed for d in job.after):
                    pending.remove(job)
                    failed.append(job.name)
                    print(f"skip {job.name}: what it starts from failed", flush=True)
                elif all(d in done for d in job.after):
                    pending.remove(job)
                    print(f"{time.strftime('%H:%M:%S')} start {job.name}", flush=True)
                    active[pool.submit(execute, job, runs, threads)] = job
            if not active:
                break
            finished, _ = wait(active, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = active.pop(fut)
                try:
                    fut.result()
                    done.add(job.name)
                    print(f"{time.strftime('%H:%M:%S')} done  {job.name}", flush=True)
                except Exception as e:  # noqa: BLE001 - report and go on with the others
                    failed.append(job.name)
                    print(f"{time.strftime('%H:%M:%S')} FAIL  {job.name}: {e}", flush=True)
    return failed


# -- tables ---------------------------------------------------------------------------------
def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:+.0f}%"
    return f"{100 * statistics.mean(values):+.0f}% ± {100 * statistics.stdev(values):.0f}"


def flex_table(runs: Path, seed: int, dest: Path) -> str:
    models = [("digits_ast8", "AST-8"), ("digits_ast16", "AST-16"), ("digits_ast32", "AST-32"),
              ("digits_flexiast", "FlexiAST"), ("digits_flexiast_kd", "FlexiAST KD"),
              ("digits_flexiast_scratch", "FlexiAST scratch")]
    cols, profiles = [], {}
    for key, label in models:
        run_dir = runs / f"fsdd-{key.replace('_', '-')}-s{seed}"
        for resize in ("pi", "bl"):
            prof = _load(run_dir / f"eval-{resize}-both" / "profile.json")
            if prof:
                cols.append((f"{label} {resize.upper()}", prof))
                profiles[f"{key}-{resize}"] = prof
    if not cols:
        return ""
    dest.mkdir(parents=True, exist_ok=True)
    for name, prof in profiles.items():
        (dest / f"{name}.json").write_text(json.dumps(prof, indent=1))
    sizes = [r["size"] for r in cols[0][1]["rows"]]
    lines = ["| patch | tokens | GFLOPs/clip | " + " | ".join(c for c, _ in cols) + " |",
             "|---|---:|---:|" + "---:|" * len(cols)]
    for i, size in enumerate(sizes):
        row = cols[0][1]["rows"][i]
        vals = [f"{p['rows'][i]['accuracy']:.3f}" for _, p in cols]
        lines.append(f"| {size} | {row['tokens']} | {row['gflops']:.3f} | " + " | ".join(vals) + " |")
    means = [statistics.mean(r["accuracy"] for r in p["rows"]) for _, p in cols]
    lines.append("| mean | | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines)


def axes_table(runs: Path, seed: int, dest: Path) -> str:
    models = [("speakers_ast16", "AST-16"), ("speakers_flexiast_both", "FlexiAST both"),
              ("speakers_flexiast_time", "FlexiAST time"), ("speakers_flexiast_freq", "FlexiAST freq")]
    cols = []
    for key, label in models:
        for axes in ("both", "time", "freq"):
            prof = _load(runs / f"fsdd-{key.replace('_', '-')}-s{seed}" / f"eval-pi-{axes}" / "profile.json")
            if prof:
                cols.append((f"{label}, eval {axes}", prof))
                dest.mkdir(parents=True, exist_ok=True)
                (dest / f"{key}-{axes}.json").write_text(json.dumps(prof, indent=1))
    if not cols:
        return ""
    sizes = [r["size"] for r in cols[0][1]["rows"]]
    lines = ["| p | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for i, size in enumerate(sizes):
        lines.append(f"| {size} | " + " | ".join(f"{p['rows'][i]['accuracy']:.3f}" for _, p in cols) + " |")
    means = [statistics.mean(r["accuracy"] for r in p["rows"]) for _, p in cols]
    lines.append("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines)


def _c2f_rows(runs: Path, seeds: list[int]):
    """``(label, [(seed, summary, savings, no_budget)])`` for the baseline (savings None) and every
    coarse-to-fine recipe with a finished run, each against the baseline of its own seed."""
    from flexiast.accounting import no_budget, savings

    base = {s: _load(runs / f"fsdd-digits-ast16-s{s}" / "summary.json") for s in seeds}
    base = {s: b for s, b in base.items() if b}
    if not base:
        return
    yield "baseline AST-16", [(s, b, None, no_budget(*[runs / f"fsdd-digits-ast16-s{s}"] * 2)) for s, b in base.items()]
    for sched in ("2-1", "4-1", "4-2-1"):
        for m in METHODS:
            rows = []
            for s in base:
                name = f"fsdd-digits-c2f-{m}-{sched}-s{s}"
                summ = _load(runs / name / "summary.json")
                if summ:
                    ref = runs / f"fsdd-digits-ast16-s{s}"
                    rows.append((s, summ, savings(runs / name, ref), no_budget(runs / name, ref)))
            if rows:
                yield f"{METHOD_NAMES[m]} {sched.replace('-', '->')}", rows


def c2f_table(runs: Path, seeds: list[int]) -> str:
    """Tables 2 and 3 on FSDD, each read two ways (:mod:`flexiast.accounting`): without a budget
    (Table 3), the test accuracy at the best validation epoch and AST's number (the best test
    epoch); with one (Table 2), the FLOPs and time saved to the first final-phase epoch that
    reaches the baseline's best validation accuracy, and, the paper's reading, to the first
    whose test accuracy surpasses the baseline's best test accuracy, with that accuracy."""
    lines = ["| run | seeds | best val | test at best val | best test epoch (paper's Table 3) | "
             "val reading: reached | FLOPs saved | time saved | paper reading: surpassed | FLOPs saved | "
             "time saved | its test acc | training TFLOPs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, rows in _c2f_rows(runs, seeds):
        nb = [n["run"] for *_, n in rows]
        cells = [label, str(len(rows)), _spread([s["best_val"] for _, s, _, _ in rows]),
                 _spread([n["test_at_best_val"] for n in nb]), _spread([n["paper_value"] for n in nb if n["paper_value"]
                                                                        is not None])]
        if rows[0][2] is None:
            cells += ["-"] * 7
        else:
            for key in ("validation", "paper"):
                reads = [sv[key] for _, _, sv, _ in rows if sv[key] is not None]
                hit = [r for r in reads if r["reached"]]
                cells += [f"{len(hit)}/{len(reads)}", _pct([r["flops_saved"] for r in hit]),
                          _pct([r["time_saved"] for r in hit])]
                if key == "paper":
                    cells.append(_spread([r["run_value"] for r in hit]))
        cells.append(_spread([s["train_flops"] / 1e12 for _, s, _, _ in rows], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _test_accuracy(summ: dict) -> float:
    """Test accuracy of the best epoch at the run's one validation setting (AST-16's ``16``,
    an HTS-AT's ``stored``)."""
    (row,) = [v for k, v in summ["test"]["best"].items() if not k.startswith("_")]
    return row["accuracy"]


def htsat_table(runs: Path, seeds: list[int]) -> str:
    """HTS-AT baseline against Fshift 4->1, per seed and as mean ± std (the paper's Table 6 row)."""
    from flexiast.accounting import savings

    base = [(s, _load(runs / f"fsdd-digits-htsat-s{s}" / "summary.json")) for s in seeds]
    pairs = [(s, b, _load(runs / f"fsdd-digits-htsat-c2f-fshift-4-1-s{s}" / "summary.json")) for s, b in base]
    pairs = [(s, b, c) for s, b, c in pairs if b and c]
    if not pairs:
        return ""
    lines = ["| seed | baseline best val | its test | Fshift 4->1 best val | its test | reached at epoch | "
             "FLOPs saved | time saved | baseline TFLOPs | c2f TFLOPs |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    saved = []
    for s, b, c in pairs:
        sv = savings(runs / f"fsdd-digits-htsat-c2f-fshift-4-1-s{s}", runs / f"fsdd-digits-htsat-s{s}")
        saved.append(sv)
        reached = (f"{sv['run_epoch']} | {100 * sv['flops_saved']:+.0f}% | {100 * sv['time_saved']:+.0f}%"
                   if sv["reached"] else "never | - | -")
        lines.append(f"| {s} | {b['best_val']:.3f} | {_test_accuracy(b):.3f} | {c['best_val']:.3f} | "
                     f"{_test_accuracy(c):.3f} | {reached} | {b['train_flops'] / 1e12:.2f} | "
                     f"{c['train_flops'] / 1e12:.2f} |")
    flops = [sv["flops_saved"] for sv in saved if sv["reached"]]
    secs = [sv["time_saved"] for sv in saved if sv["reached"]]
    lines.append(f"| mean ± std | {_spread([b['best_val'] for _, b, _ in pairs])} | "
                 f"{_spread([_test_accuracy(b) for _, b, _ in pairs])} | {_spread([c['best_val'] for _, _, c in pairs])} | "
                 f"{_spread([_test_accuracy(c) for _, _, c in pairs])} | {sum(sv['reached'] for sv in saved)}/"
                 f"{len(saved)} reached | {_pct(flops)} | {_pct(secs)} | "
                 f"{_spread([b['train_flops'] / 1e12 for _, b, _ in pairs], 2)} | "
                 f"{_spread([c['train_flops'] / 1e12 for _, _, c in pairs], 2)} |")
    return "\n".join(lines)


def table1_table(runs: Path, seeds: list[int]) -> str:
    """Table 1's five rows: best validation and its epoch's test accuracy (mean ± std over the
    seeds that finished), training TFLOPs and training wall time (s) of the whole run."""
    lines = ["| method | architecture | multi-phase | seeds | best val | test acc (best) | training TFLOPs | "
             "training s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for recipe, method, arch, multi in TABLE1:
        base = "fsdd-" + recipe.removesuffix(".yaml").replace("_", "-")
        rows = [r for s in seeds if (r := _load(runs / f"{base}-s{s}" / "summary.json"))]
        if not rows:
            continue
        lines.append(f"| {method} | {arch} | {multi} | {len(rows)} | {_spread([r['best_val'] for r in rows])} | "
                     f"{_spread([_test_accuracy(r) for r in rows])} | "
                     f"{_spread([r['train_flops'] / 1e12 for r in rows], 2)} | "
                     f"{_spread([r['train_seconds'] for r in rows], 0)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def patchout_table(runs: Path, seeds: list[int]) -> str:
    """The patchout study: per row, mean ± std over the seeds that finished of the best validation
    accuracy, the test accuracy at that epoch, training TFLOPs and seconds; the baseline of the
    same seed stopped at the row's FLOPs (:func:`_within_flops`); and Table 2's savings against it
    read both ways (:func:`flexiast.accounting.savings`)."""
    from flexiast.accounting import savings

    lines = ["| run | seeds | best val | test at best val | training TFLOPs | training s | baseline within these "
             "FLOPs: best val | its test | val reading: reached | FLOPs saved | time saved | paper reading: surpassed | "
             "FLOPs saved | time saved |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for recipe, label in PATCHOUT:
        base = "fsdd-" + recipe.removesuffix(".yaml").replace("_", "-")
        rows = [(s, r) for s in seeds if (r := _load(runs / f"{base}-s{s}" / "summary.json"))]
        if not rows:
            continue
        cells = [label, str(len(rows)), _spread([r["best_val"] for _, r in rows]),
                 _spread([_test_accuracy(r) for _, r in rows]), _spread([r["train_flops"] / 1e12 for _, r in rows], 2),
                 _spread([r["train_seconds"] for _, r in rows], 0)]
        ref = {s: runs / f"fsdd-digits-ast16-s{s}" for s, _ in rows}
        matched = [m for s, r in rows if (m := _within_flops(ref[s], r["train_flops"])) is not None]
        cells += [_spread([m[0] for m in matched]), _spread([m[1] for m in matched])] if matched else ["-", "-"]
        reads = [savings(runs / f"{base}-s{s}", ref[s]) for s, _ in rows
                 if recipe != PATCHOUT[0][0] and (ref[s] / "summary.json").exists()]
        for key in ("validation", "paper"):
            if not reads:
                cells += ["-"] * 3
                continue
            hit = [sv[key] for sv in reads if sv[key] is not None and sv[key]["reached"]]
            cells += [f"{len(hit)}/{len(reads)}", _pct([r["flops_saved"] for r in hit]),
                      _pct([r["time_saved"] for r in hit])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _within_flops(base: Path, flops: float) -> tuple[float, float] | None:
    """The baseline run ``base`` stopped at ``flops`` training FLOPs: its best validation accuracy
    over the epochs that had spent at most that, and the test accuracy of that epoch (its
    learning-rate schedule still the full run's). None without its history."""
    history = _load(base / "history.json")
    within = [h for h in history or [] if h["train_flops_cum"] <= flops and h.get("test_select") is not None]
    if not within:
        return None
    best = max(within, key=lambda h: h["val_select"])  # the first of equals, as the run picks
    return best["val_select"], best["test_select"]


def per_seed_c2f(runs: Path, seeds: list[int]) -> str:
    """Each coarse-to-fine run against its seed's baseline, both readings of Table 2: the epoch
    (coarse ones counted) the run stopped at, its number there, and the savings."""
    lines = ["| run | seed | baseline best val (epoch) | reached at epoch | its val | FLOPs saved | time saved | "
             "baseline best test (epoch) | surpassed at epoch | its test | FLOPs saved | time saved |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, rows in _c2f_rows(runs, seeds):
        for s, _, sv, _ in rows:
            if sv is None:
                continue
            cells = [label, str(s)]
            for key in ("validation", "paper"):
                r = sv[key]
                if r is None:
                    cells += ["-"] * 5
                    continue
                cells.append(f"{r['baseline_value']:.3f} ({r['baseline_epoch']})")
                if r["reached"]:
                    cells += [str(r["run_epoch"]), f"{r['run_value']:.3f}", f"{100 * r['flops_saved']:+.0f}%",
                              f"{100 * r['time_saved']:+.0f}%"]
                else:
                    cells += ["never", f"{r['run_best']:.3f} (best)", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def walltimes(runs: Path) -> str:
    lines = ["| run | training s | validation s | TFLOPs |", "|---|---:|---:|---:|"]
    for d in sorted(runs.iterdir()):
        summ = _load(d / "summary.json") if d.is_dir() else None
        if summ:
            val = sum(p.get("val_seconds", 0) for p in summ["phases"])
            lines.append(f"| {d.name} | {summ['train_seconds']:.0f} | {val:.0f} | {summ['train_flops'] / 1e12:.2f} |")
    return "\n".join(lines)


def _machine(summ: dict) -> str:
    """The machine a run's ``summary.json`` names, in words."""
    m, p = summ.get("machine", {}), summ.get("precision", {})
    bf16 = "native bf16" if m.get("native_bf16") else "no native bf16"
    return (f"{m.get('name', '?')}, {m.get('isa', '?')}, {bf16}, {m.get('cores', '?')} cores, "
            f"{m.get('threads', '?')} thread(s), {p.get('name', '?')}")


def tables(runs: Path, seeds: list[int], out: Path) -> Path:
    machines = sorted({_machine(summ) for d in sorted(runs.iterdir())
                       if d.is_dir() and (summ := _load(d / "summary.json"))})
    parts = ["# FSDD reproduction tables", "",
             f"Written by `python scripts/reproduce_fsdd.py` from the runs in `{runs}`; seeds {seeds}.",
             "Machine (each run's `summary.json`): " + "; ".join(machines), ""]
    for title, body in (("Flexibility (seed %d): test accuracy, 300 clips" % seeds[0],
                         flex_table(runs, seeds[0], out / "flex")),
                        ("Axes (seed %d): speaker identification test accuracy (PI)" % seeds[0],
                         axes_table(runs, seeds[0], out / "axes")),
                        ("Coarse-to-fine: mean ± standard deviation over seeds", c2f_table(runs, seeds)),
                        ("Coarse-to-fine per seed", per_seed_c2f(runs, seeds)),
                        ("HTS-AT (micro): baseline against Fshift 4->1", htsat_table(runs, seeds)),
                        ("Coarse-to-fine Table 1: CNN and transformer at Pool2", table1_table(runs, seeds)),
                        ("Patchout and coarse-to-fine", patchout_table(runs, seeds)),
                        ("Wall time of every run", walltimes(runs))):
        if body:
            parts += [f"## {title}", "", body, ""]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tables.md"
    path.write_text("\n".join(parts))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=str(ROOT / "runs" / "fsdd"), help="where the runs go (default runs/fsdd)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default="flex,axes,c2f,htsat,table1,patchout",
                    help="studies: flex, axes, c2f, htsat, table1, patchout")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--tables", default=str(ROOT / "docs" / "results" / "fsdd"), help="where tables go")
    ap.add_argument("--tables-only", action="store_true")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = Path(args.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.tables_only:
        failed = schedule(jobs(seeds, set(args.only.split(","))), runs, args.jobs, args.threads)
    print(f"tables: {tables(runs, seeds, Path(args.tables))}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
