"""Issue 29's study on FSDD digits: packed native-length training against fixed 64-frame clips.

    python scripts/study_packing.py                  # seeds 0-2, 2 runs at a time, 1 thread each
    python scripts/study_packing.py --tables-only    # rewrite the tables from finished runs

Four recipes (``recipes/fsdd/``), every seed, from random weights, 24 epochs each:

* ``digits_ast16``: today's AST-16, every clip padded or cut to 64 frames (0.64 s);
* ``digits_ast16_native``: the same model packed at native length (ElasticAST), clips up to
  2.56 s whole (FSDD's longest is 2.28 s);
* ``digits_flexiast_native`` and ``digits_flexiast_native_clip``: FlexiAST from scratch at
  native length, the patch size drawn per optimizer step (FlexiAST's rule) or per clip
  inside the packed batch.

Each run is then evaluated at clip lengths of 0.25 to 2 s (``flexiast evaluate --lengths``:
every clip cut to its leading seconds; the native-length models run shorter clips at their
own length, the 64-frame model pads them to the length, as it was trained), and the
FlexiASTs at every patch size of the evaluation grid. The table reports training TFLOPs,
steps and wall time per epoch, test accuracy (a FlexiAST's: the mean over its validation
patch sizes) and accuracy at each length (the stored patch size), as mean ± std over seeds; runs share the CPU two at a time, so wall times compare only within this study.
Runs and tables reuse :mod:`reproduce_fsdd`'s job runner (a finished run is not trained
again, a started one is resumed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_fsdd import PY, ROOT, Job, _load, _spread, run, schedule  # noqa: E402

LENGTHS = "0.25,0.5,0.75,1,1.5,2"
FLEXI_SIZES = "8,16,32,48"
RECIPES = (("digits_ast16.yaml", "AST-16, fixed 64 frames"),
           ("digits_ast16_native.yaml", "AST-16, packed native length"),
           ("digits_flexiast_native.yaml", "FlexiAST native, patch per step"),
           ("digits_flexiast_native_clip.yaml", "FlexiAST native, patch per clip"))


def evaluations(job: Job, runs: Path) -> None:
    """The length profile of a finished run (and the patch-size profile of a FlexiAST)."""
    run_dir = runs / job.name
    log = runs / f"{job.name}.log"
    todo = [("eval-lengths", ["--lengths", LENGTHS])]
    if "flexiast" in job.recipe:
        todo.append(("eval-patch", ["--patch-sizes", FLEXI_SIZES]))
    for name, args in todo:
        out = run_dir / name
        if not (out / "profile.json").exists():
            run(PY + ["evaluate", str(run_dir), *args, "--out", str(out), "--no-store", "--latency-runs", "3",
                      "--label", job.name], log)


def _epochs(run_dir: Path) -> int:
    return len(_load(run_dir / "history.json") or []) or 1


def _test(summ: dict) -> float:
    """Test accuracy of the best epoch, the mean over the run's validation patch sizes (one for
    an AST-16; 8, 16, 32 and 48 for a FlexiAST, whose best epoch is chosen on that mean)."""
    rows = [v for k, v in summ["test"]["best"].items() if not k.startswith("_")]
    return statistics.mean(r["accuracy"] for r in rows)


def _by_length(profile: dict) -> dict[str, float]:
    return {f"{r['seconds']:g} s": r["accuracy"] for r in profile["rows"]}


def table(runs: Path, seeds: list[int]) -> str:
    """The study's Markdown table (mean ± std over the seeds that finished)."""
    lengths = [f"{float(x):g} s" for x in LENGTHS.split(",")]
    head = ["recipe", "seeds", "train TFLOPs", "steps / epoch", "s / epoch", "test acc"] + lengths
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for recipe, label in RECIPES:
        rows = []
        for s in seeds:
            job = Job(recipe, s, "packing")
            summ = _load(runs / job.name / "summary.json")
            prof = _load(runs / job.name / "eval-lengths" / "profile.json")
            if summ:
                rows.append((summ, _by_length(prof) if prof else {}))
                summ["_epochs"] = _epochs(runs / job.name)
        if not rows:
            continue
        cells = [label, str(len(rows)), _spread([s["train_flops"] / 1e12 for s, _ in rows], 2),
                 f"{rows[0][0]['phases'][0]['steps'] / rows[0][0]['_epochs']:g}",
                 _spread([s["train_seconds"] / s["_epochs"] for s, _ in rows], 1), _spread([_test(s) for s, _ in rows])]
        cells += [_spread([p[k] for _, p in rows if k in p]) for k in lengths]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def patch_table(runs: Path, seeds: list[int]) -> str:
    """The two FlexiASTs' test accuracy at each patch size, clips at native length."""
    cols = []
    for recipe, label in RECIPES[2:]:
        profs = [_load(runs / Job(recipe, s, "packing").name / "eval-patch" / "profile.json") for s in seeds]
        profs = [p for p in profs if p]
        if profs:
            cols.append((label, profs))
    if not cols:
        return ""
    sizes = [r["size"] for r in cols[0][1][0]["rows"]]
    lines = ["| patch | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for i, size in enumerate(sizes):
        lines.append(f"| {size} | " + " | ".join(_spread([p["rows"][i]["accuracy"] for p in profs])
                                                for _, profs in cols) + " |")
    lines.append("| mean | " + " | ".join(
        _spread([statistics.mean(r["accuracy"] for r in p["rows"]) for p in profs]) for _, profs in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "fsdd"), help="where the runs go (default runs/fsdd)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--tables", default=str(ROOT / "docs" / "results" / "fsdd"), help="where the table goes")
    ap.add_argument("--tables-only", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated recipe stems to run (default: all four)")
    args = ap.parse_args(argv)
    runs, seeds = Path(args.runs), [int(s) for s in args.seeds.split(",")]
    runs.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.tables_only:
        only = None if args.only is None else set(args.only.split(","))
        jobs = [Job(recipe, s, "packing") for s in seeds for recipe, _ in RECIPES
                if only is None or recipe.removesuffix(".yaml") in only]
        failed = schedule(jobs, runs, args.jobs, args.threads)
        for job in jobs:
            if job.name not in failed:
                evaluations(job, runs)
    text = ["# Packed native-length training on FSDD digits (issue 29)", "",
            f"`python scripts/study_packing.py --seeds {args.seeds} --jobs {args.jobs} --threads {args.threads}`", "",
            table(runs, seeds), "", "FlexiAST test accuracy by patch size, clips at native length:", "",
            patch_table(runs, seeds), ""]
    dest = Path(args.tables)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "packing.md").write_text("\n".join(text))
    print("\n".join(text))
    summaries = {Job(r, s, "packing").name: _load(runs / Job(r, s, "packing").name / "summary.json")
                 for r, _ in RECIPES for s in seeds}
    (dest / "packing.json").write_text(json.dumps({k: v for k, v in summaries.items() if v}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
