"""Run every benchmark and write docs/PERFORMANCE.md: ``python benchmarks/run.py``.

``--quick`` runs each on tiny shapes with two repeats and writes to ``--out`` (it checks
the scripts, its numbers mean nothing); ``--only train,fbank`` runs some sections.
The full run takes about 11 minutes on a 2-core machine; run it on an idle one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import bench_attention  # noqa: E402
import bench_data  # noqa: E402
import bench_fbank  # noqa: E402
import bench_latency  # noqa: E402
import bench_peak  # noqa: E402
import bench_scaling  # noqa: E402
import bench_train  # noqa: E402
from common import machine, ratio_spread, spread, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("peak", "train", "attention", "fbank", "scaling", "data", "latency")

HEADER = """# Performance

Written by `python benchmarks/run.py` ({when}; each section also runs alone as
`python benchmarks/bench_<name>.py`). Timings are medians over rounds with their minimum
and maximum; every comparison is measured side by side in the same run, interleaved
round by round, and reported as a ratio. Timings are never asserted in the test suite
(`tests/test_benchmarks.py` only checks that the scripts run and that the contenders
compute the same function).

Machine: {machine}.

"""


def targets(res: dict) -> str:
    """The issue's targets against what this run measured."""
    rows = []

    def add(what, goal, value, ok):
        rows.append([what, goal, value, "-" if goal == "report" else "met" if ok else "**not met**"])
    if "train" in res:
        for r in res["train"]["results"]:
            med = ratio_spread(r["times"][r["peer"]], r["times"]["flexiast"])[0]
            add(f"training step, {r['name']}, {r['dtype']}, vs HF ({r['peer']})", ">= 1.2x", f"{med:.2f}x", med >= 1.2)
        for r in res["train"]["results"]:
            if "base" in r["name"]:
                goal = ">= 75%" if r["dtype"] == "fp32" else "report"
                add(f"utilisation, {r['name']}, {r['dtype']}", goal, f"{r['ours_util']:.0%}",
                    r["ours_util"] >= 0.75 or r["dtype"] != "fp32")
    if "fbank" in res:
        for r, goal in zip(res["fbank"], (5, 10)):
            med = ratio_spread(r["times"]["peer"], r["times"]["flexiast, 1 thread"])[0]
            add(f"fbank vs {r['name']}, one thread each", f">= {goal}x", f"{med:.1f}x", med >= goal)
    if "scaling" in res:
        s = res["scaling"]
        share = bench_scaling.flexiast_share(s)
        add("PI-resize per step, cached, over FlexiAST's sizes", "< 1% of the step", f"{share:.2%}", share < 0.01)
        worst = max(s["sizes"], key=lambda p: spread(s["resize"][p])[0] / spread(s["step"][p])[0] if p != 16 else 0)
        share = spread(s["resize"][worst])[0] / spread(s["step"][worst])[0]
        add(f"PI-resize per step, cached, worst size ({worst})", "< 1% of the step", f"{share:.2%}", share < 0.01)
        if 32 in s["step"]:
            x = spread(s["step"][16])[0] / spread(s["step"][32])[0]
            add("patch 32 vs patch 16 step", ">= 3.5x", f"{x:.2f}x", x >= 3.5)
        x = spread(s["comp"][1])[0] / spread(s["comp"][4])[0]
        add("4x-compressed vs full-resolution step", ">= 3.5x", f"{x:.2f}x", x >= 3.5)
    if "data" in res:
        rows_ = dict(res["data"])
        supply = rows_["cached, 2 workers"][0]
        need = rows_["training step, AST-tiny patch 16, bf16 (consumer)"][0]
        add("cached loader vs bf16 training step", ">= 1x", f"{supply / need:.1f}x", supply >= need)
    return "\n".join(["## Targets", ""] + table(["what", "target", "measured", ""], rows)) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    parser.add_argument("--fsdd", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    q = args.quick
    res, text, took = {}, {}, {}
    for name in SECTIONS:
        if name not in only:
            continue
        start = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        if name == "peak":
            res[name] = bench_peak.peaks(q)
            text[name] = bench_peak.section(res[name])
        elif name == "train":
            peak = {k: v[0] for k, v in res["peak"].items()} if "peak" in res else None
            res[name] = bench_train.measure(q, peak)
            r = res[name]
            text[name] = bench_train.section(r["results"], r["optimizer"], r["peak"])
        elif name == "attention":
            res[name] = bench_attention.measure(q)
            text[name] = bench_attention.section(res[name])
        elif name == "fbank":
            clips, seconds, repeats = (2, 1.0, 2) if q else (32, 10.0, 7)
            res[name] = bench_fbank.measure(clips, seconds, repeats)
            text[name] = bench_fbank.section(res[name], clips, seconds)
        elif name == "scaling":
            res[name] = bench_scaling.measure(q)
            text[name] = bench_scaling.section(res[name])
        elif name == "data":
            batches = 2 if q else 20
            res[name] = bench_data.measure(args.fsdd, batches, q)
            text[name] = bench_data.section(res[name], batches, 8 if q else 64)
        elif name == "latency":
            res[name] = bench_latency.measure(q)
            text[name] = bench_latency.section(res[name])
        took[name] = time.perf_counter() - start
        print(text[name], flush=True)
    when = time.strftime("%Y-%m-%d") + ", " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in took.items())
    findings = (Path(__file__).parent / "findings.md").read_text()
    body = (HEADER.format(when=when, machine=machine()) + targets(res) + "\n" + findings + "\n"
            + "\n".join(text[k] for k in text))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
