"""Run every benchmark and write this machine's section of docs/PERFORMANCE.md: ``python benchmarks/run.py``.

docs/PERFORMANCE.md holds one section per kind of machine (a CPU with native bf16, one
without, a GPU); a run replaces its own kind's section and keeps the others. The kind
and the contenders follow the machine's capability (:mod:`flexiast.hardware`): on a CPU
without native bf16, bf16 is left out and the fp32 comparisons are the headline.
``--quick`` runs each on tiny shapes with two repeats and writes to ``--out`` (it checks
the scripts, its numbers mean nothing); ``--only train,fbank`` runs some sections.
The full run takes about 15 minutes on a 2-core machine; run it on an idle one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import bench_attention  # noqa: E402
import bench_compile  # noqa: E402
import bench_data  # noqa: E402
import bench_embed  # noqa: E402
import bench_epochs  # noqa: E402
import bench_fbank  # noqa: E402
import bench_latency  # noqa: E402
import bench_packing  # noqa: E402
import bench_peak  # noqa: E402
import bench_scaling  # noqa: E402
import bench_train  # noqa: E402
from common import auto_dtype, kind, machine, ratio_spread, spread, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("peak", "train", "compile", "attention", "fbank", "scaling", "data", "epochs", "latency", "embed",
            "packing")

KINDS = {"cpu-no-bf16": "CPU without native bf16 (AVX2: most laptops, CI runners and cloud CPUs)",
         "cpu-native-bf16": "CPU with native bf16 (AVX512-BF16 or AMX)",
         "cuda": "GPU"}
BEGIN, END = "<!-- machine kind: {} -->", "<!-- end of machine kind -->"

HEADER = """# Performance

Written by `python benchmarks/run.py`, one section per kind of machine, each from one
run on one machine of that kind (each benchmark also runs alone as
`python benchmarks/bench_<name>.py`). Timings are medians over rounds with their minimum
and maximum; every comparison is measured side by side in the same run, interleaved
round by round, and reported as a ratio. Timings are never asserted in the test suite
(`tests/test_benchmarks.py` only checks that the scripts run and that the contenders
compute the same function). What `precision: auto` picks on each kind, and why, is in
`flexiast.hardware`. The GPU section is written by `python benchmarks/gpu_check.py`, one
short script for a lent GPU; no GPU has been lent to this work yet, so nothing on a GPU
has been measured.

{index}
"""


def kind_sections(text: str) -> dict[str, str]:
    """The per-kind sections of an existing docs/PERFORMANCE.md, by kind."""
    out = {}
    for k in KINDS:
        begin = BEGIN.format(k)
        if begin in text and END in text.split(begin, 1)[1]:
            out[k] = begin + text.split(begin, 1)[1].split(END, 1)[0] + END
    return out


def assemble(existing: str, kind_: str, section: str) -> str:
    """docs/PERFORMANCE.md with ``kind_``'s section replaced by ``section``, the others kept."""
    sections = kind_sections(existing)
    sections[kind_] = section
    rows = [f"- {KINDS[k]}: " + (sections[k].split("\n", 3)[2].removeprefix("Machine: ") if k in sections
                                   else "not measured yet") for k in KINDS]
    return HEADER.format(index="\n".join(["Sections:", ""] + rows)) + "\n" + "\n\n".join(
        sections[k] for k in KINDS if k in sections) + "\n"


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
        need = rows_[bench_data.consumer()][0]
        add(f"cached loader vs {auto_dtype()} training step", ">= 1x", f"{supply / need:.1f}x", supply >= need)
    if "epochs" in res:
        for r in res["epochs"]:
            for comp in r["coarse"]:
                flop, _, warm = bench_epochs.ratios(r, True, comp)
                add(f"{comp} epoch time / full epoch time, {r['model']}, defaults, warm cache",
                    f"<= FLOP ratio ({flop:.0%}) + 10 points", f"{warm:.0%}", warm <= flop + 0.10)
    if "packing" in res:
        for r in res["packing"]["cases"]:
            saved, gone = bench_packing.saving(r, r["headline"])[0], bench_packing.removed(r)
            add(f"packed step time saved / padding removed ({gone:.0%}), {r['model']}, {r['dist']} lengths, "
                f"{r['headline'].removeprefix('packed, ')}", f">= {bench_packing.TARGET}", f"{saved / gone:.2f}",
                saved >= bench_packing.TARGET * gone)
    return "\n".join(["### Targets", ""] + table(["what", "target", "measured", ""], rows)) + "\n"


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
        elif name == "compile":
            res[name] = bench_compile.measure(q)
            text[name] = bench_compile.section(res[name])
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
        elif name == "epochs":
            res[name] = bench_epochs.measure(q, args.fsdd)
            text[name] = bench_epochs.section(res[name])
        elif name == "latency":
            res[name] = bench_latency.measure(q)
            text[name] = bench_latency.section(res[name])
        elif name == "embed":
            res[name] = bench_embed.measure(q, args.fsdd)
            text[name] = bench_embed.section(res[name])
        elif name == "packing":
            res[name] = bench_packing.measure(q, args.fsdd)
            text[name] = bench_packing.section(res[name])
        took[name] = time.perf_counter() - start
        print(text[name], flush=True)
    when = time.strftime("%Y-%m-%d") + ", " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in took.items())
    k = kind()
    out = Path(args.out)
    existing = out.read_text() if out.exists() else ""
    if set(only) != set(SECTIONS) and k in kind_sections(existing):
        body = update_sections(kind_sections(existing)[k], [demote(text[s]) for s in text],
                               f"Updated by `python benchmarks/run.py --only {','.join(text)}` on {machine()}: "
                               f"{when}.")
    else:
        findings = Path(__file__).parent / "findings" / f"{k}.md"
        body = "\n".join([BEGIN.format(k), f"## {KINDS[k]}", f"Machine: {machine()}.", "",
                          f"Run of {when}.", "", targets(res),
                          findings.read_text() if findings.exists() else "", ""]
                         + [demote(text[s]) for s in text] + [END])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(assemble(existing, k, body))
    print(f"wrote {k}'s section of {out}")


def update_sections(section: str, texts: list[str], note: str) -> str:
    """A kind's existing section with the sub-sections in ``texts`` replaced (matched by their
    ``### `` heading) or added at its end, and ``note`` after its "Run of" line: what a
    partial run (``--only``) changes, the rest of the full run kept as it was measured."""
    lines = section.splitlines()
    for text in texts:
        heading = text.splitlines()[0]
        if heading in lines:
            start = lines.index(heading)
            end = next((i for i in range(start + 1, len(lines))
                        if lines[i].startswith("### ") or lines[i] == END), len(lines))
            lines[start:end] = text.splitlines() + [""]
        else:
            end = lines.index(END)
            lines[end:end] = ([""] if lines[end - 1] else []) + text.splitlines() + [""]
    run = next(i for i, line in enumerate(lines) if line.startswith("Run of "))
    lines[run + 1:run + 1] = ["", note]
    return "\n".join(lines)


def demote(markdown: str) -> str:
    """One heading level down, so that a machine's sections sit under its own heading."""
    return "\n".join("#" + line if line.startswith("## ") or line.startswith("### ") else line
                      for line in markdown.splitlines())


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
