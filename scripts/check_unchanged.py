"""Check that a change left flexiast's deployment outputs unchanged.

    python scripts/check_unchanged.py --before REV [--after WORKTREE_OR_REV] [--fsdd DIR] [--out DIR]

A refactor of the deployment path (inference, evaluation, embeddings, the command line) must
not change what a trained model gives. This script shows it: on the same FSDD clips, the
``predict``, ``embed`` and ``evaluate`` outputs of runs trained with the code before the
change equal those after it. It is run by hand at the end of such a refactor (and by a slow
test, comparing HEAD with itself).

1. The code of ``--before`` (a git revision) is exported with ``git archive``; ``--after`` is
   a directory holding a checkout (default: this script's repository, uncommitted changes
   included) or another revision, exported likewise.
2. With the BEFORE code, two tiny runs are trained on a small FSDD subset (one epoch each):
   an AST drawing its patch size per step (the patch-size family) and an HTS-AT (the
   input-length family, with sound event detection).
3. With each code in turn (one process each, ``PYTHONPATH=<code>/src``, this Python, one
   thread), the same command lines run on the same run directories and clips: ``evaluate``
   (the AST at three patch sizes, the HTS-AT at two input lengths), ``predict --json`` (short
   clips and a 5 s file of ten clips end to end, so windows happen; at a patch size, under a
   GFLOPs budget read from the BEFORE profile; the HTS-AT with ``--framewise`` events) and
   ``embed`` (clip and per-time-step embeddings).
4. The outputs are compared: the exit codes, then every value of the JSON printed or written
   (profiles) and of the embedding files (tensors and metadata): every number equal or within
   ``--rtol`` (default 1e-6) relative, every string, key and list length equal. Fields that
   time the run or describe the machine (``created``, ``machine``, ``latency_ms*``,
   ``flexiast_version``) are left out.

It prints a table of what was compared and exits 1 naming every difference (0: unchanged).
``--accept KEY`` and ``--accept-new-keys`` declare the differences a change makes on purpose;
those are listed as accepted and do not fail the check (every other value must still match).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORED = ("created", "machine", "flexiast_version")  # and every key starting with latency_ms
SPEAKERS, TAKES = ("george", "jackson"), range(7)  # takes 0-4 are FSDD's test split
CLIPS = ("0_george_0.wav", "5_jackson_1.wav", "9_george_2.wav")
TRAIN = {
    "data": {"format": "fsdd", "root": "fsdd", "options": {"task": "digits"}, "val_fraction": 0.2, "batch_size": 8,
             "cache_dir": "off", "num_workers": 0},
    "optimizer": {"lr": 1e-3}, "seed": 0,
    "train": {"precision": "fp32", "progress": False, "tensorboard": False},
}
RECIPES = {
    "ast": {"model": {"preset": None, "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16},
            "features": {"num_mel_bins": 64, "target_length": 48, "mean": -3.0856, "std": 5.309},
            "phases": [{"epochs": 1, "patch": {"sampler": "uniform", "sizes": [8, 16, 24]}}]},
    "htsat": {"model": {"arch": "htsat", "preset": None, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2],
                        "window_size": 4, "freq_ratio": 2},
              "features": {"kind": "slaney_logmel", "num_mel_bins": 16, "target_length": 64},
              "phases": [{"epochs": 1}]},
}
# Runs one list of flexiast command lines in-process (one import per code), each command's
# stdout to its file, the exit codes to argv[2].
DRIVER = """
import contextlib, io, json, sys, traceback
import flexiast
from flexiast.cli import main
codes = {"flexiast": flexiast.__file__}
for name, argv, stdout in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            codes[name] = main(argv)
        except SystemExit as e:
            codes[name] = e.code
        except Exception as e:
            traceback.print_exc()
            codes[name] = f"{type(e).__name__}: {e}"
    open(stdout, "w").write(out.getvalue())
json.dump(codes, open(sys.argv[2], "w"))
"""


def commands(out: Path, before: Path) -> list[tuple[str, list[str], str]]:
    """(name, argv, what to compare: ``stdout`` JSON, a ``profile.json`` or an embeddings file)."""
    clips, long = list(CLIPS), "long.wav"
    budget = ["--max-gflops", "0.001", "--profile", str(before / "evaluate-ast" / "profile.json")]
    budget_h = ["--max-gflops", "0.0008", "--profile", str(before / "evaluate-htsat" / "profile.json")]
    return [
        ("evaluate-ast", ["evaluate", "runs/ast", "--patch-sizes", "8,16,24", "--no-store", "--latency-runs", "1",
                          "--out", str(out / "evaluate-ast")], "profile"),
        ("evaluate-htsat", ["evaluate", "runs/htsat", "--input-lengths", "32,64", "--no-store", "--latency-runs", "1",
                            "--out", str(out / "evaluate-htsat")], "profile"),
        ("predict-ast", ["predict", "runs/ast", *clips, long, "--json", "--patch-size", "24"], "stdout"),
        ("predict-ast-budget", ["predict", "runs/ast", clips[0], long, "--json", *budget], "stdout"),
        ("predict-htsat", ["predict", "runs/htsat", *clips, long, "--json", "--framewise", "--threshold", "0.1"],
         "stdout"),
        ("predict-htsat-budget", ["predict", "runs/htsat", long, "--json", *budget_h], "stdout"),
        ("embed-ast", ["embed", "runs/ast", *clips, long, "--frames", "--patch-size", "8", "--quiet", "--workers", "0",
                       "--out", str(out / "embed-ast.safetensors")], "embeddings"),
        ("embed-htsat", ["embed", "runs/htsat", *clips, long, "--frames", "--quiet", "--workers", "0",
                         "--out", str(out / "embed-htsat.safetensors")], "embeddings"),
    ]


# -- the code, the data, the runs ----------------------------------------------------------------
def export(rev: str, dest: Path) -> Path:
    """``git archive`` of ``rev`` unpacked into ``dest``."""
    git = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True)
    if git.returncode:
        raise SystemExit(f"git archive {rev}: {git.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(git.stdout)) as t:
        t.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


def run_flexiast(code: Path, work: Path, script: str, *args: str) -> None:
    """``script`` run by this Python with ``code``'s flexiast, one thread, in ``work``."""
    env = {**os.environ, "PYTHONPATH": str(code / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0"}
    if subprocess.run([sys.executable, "-c", script, *args], cwd=work, env=env).returncode:
        raise SystemExit(f"the flexiast of {code} failed (its output is above)")


def prepare(work: Path, fsdd: Path, before: Path) -> None:
    """The FSDD subset, the clips (one of ten clips end to end) and the two runs, trained by ``before``."""
    import numpy as np
    import soundfile as sf
    import yaml

    rec = work / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for name in (f"{d}_{s}_{t}.wav" for s in SPEAKERS for d in range(10) for t in TAKES):
        (rec / name).symlink_to(fsdd / name)
    for name in CLIPS:
        shutil.copy(fsdd / name, work / name)
    parts = [sf.read(fsdd / f"{d}_jackson_3.wav") for d in range(10)]
    sf.write(work / "long.wav", np.concatenate([p[0] for p in parts]), parts[0][1])
    for name, recipe in RECIPES.items():
        (work / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "out": f"runs/{name}", **TRAIN, **recipe}))
    train = "from flexiast.cli import main\nfor r in ('ast', 'htsat'):\n    assert main(['train', r + '.yaml']) == 0"
    run_flexiast(before, work, train)


# -- comparing -----------------------------------------------------------------------------------
def differences(a, b, where: str, rtol: float, counts: dict):
    """Where ``a`` and ``b`` differ (JSON values), as messages; ``counts`` gets the numbers compared
    and the largest relative difference."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in {**a, **b} if k not in IGNORED and not k.startswith("latency_ms")]
        for k in keys:
            if k not in a or k not in b:
                yield f"{where}.{k}: only {'after' if k in b else 'before'}"
            else:
                yield from differences(a[k], b[k], f"{where}.{k}", rtol, counts)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: {len(a)} items before, {len(b)} after"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]", rtol, counts)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        counts["numbers"] += 1
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            rel = abs(a - b) / max(abs(a), abs(b))
            counts["max_rel"] = max(counts["max_rel"], rel)
            if not rel <= rtol:
                yield f"{where}: {a!r} before, {b!r} after"
    elif a != b:
        yield f"{where}: {a!r} before, {b!r} after"


def accepted_key(message: str) -> str:
    """The key a difference message is about: ``predict-ast[0].window_s: ...`` -> ``window_s``."""
    return message.split(": ", 1)[0].rpartition(".")[2].split("[", 1)[0]


def is_accepted(message: str, keys: list[str], new_keys: bool) -> bool:
    """Whether a difference is one the caller declared intended: a key of ``keys``, or (with
    ``new_keys``) a key only the after code writes."""
    return accepted_key(message) in keys or (new_keys and message.endswith(": only after"))


def read_embeddings(path: Path) -> dict:
    """The tensors (as float64 lists) and the metadata (values parsed as JSON) of an embeddings file."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return {"tensors": {k: v.astype("float64").tolist() for k, v in load_file(str(path)).items()}, "metadata": meta}


def compare(name: str, kind: str, before: Path, after: Path, rtol: float) -> tuple[dict, list[str]]:
    counts = {"numbers": 0, "max_rel": 0.0}
    read = {"stdout": lambda d: json.loads((d / f"{name}.stdout").read_text()),
            "profile": lambda d: json.loads((d / name / "profile.json").read_text()),
            "embeddings": lambda d: read_embeddings(d / f"{name}.safetensors")}[kind]
    try:
        a, b = read(before), read(after)
    except (OSError, ValueError) as e:
        return counts, [f"{name}: output unreadable ({e})"]
    return counts, list(differences(a, b, name, rtol, counts))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", required=True, help="the git revision before the change (e.g. main, HEAD~3)")
    p.add_argument("--after", default=str(REPO),
                   help="a checkout directory (default: this repository's working tree) or a git revision")
    p.add_argument("--fsdd", default=os.environ.get("FLEXIAST_FSDD", REPO.parent / "shared" / "data" / "fsdd"),
                   help="the FSDD folder (or its recordings/); default $FLEXIAST_FSDD or ../shared/data/fsdd")
    p.add_argument("--out", type=Path, help="keep the runs and outputs here (default: a temporary folder, removed)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative difference allowed between numbers")
    p.add_argument("--accept", action="append", default=[], metavar="KEY",
                   help="a key whose values the change alters on purpose (repeatable): its differences are listed "
                        "as accepted and do not fail the check")
    p.add_argument("--accept-new-keys", action="store_true",
                   help="keys the change adds (present only after) are listed as accepted")
    args = p.parse_args()
    fsdd = Path(args.fsdd)
    fsdd = fsdd if fsdd.name == "recordings" else fsdd / "recordings"
    if not (fsdd / CLIPS[0]).exists():
        p.error(f"--fsdd: no FSDD recordings in {fsdd}")
    work = Path(tempfile.mkdtemp(prefix="check-unchanged-")) if args.out is None else args.out.absolute()
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        p.error(f"--out: {args.out} is not empty")
    try:
        before = export(args.before, work / "code-before")
        after = Path(args.after).absolute() if Path(args.after).is_dir() else export(args.after, work / "code-after")
        print(f"before: {args.before}; after: {args.after}; work: {work}", flush=True)
        prepare(work, fsdd, before)
        found = {}
        for label, code in (("before", before), ("after", after)):
            out = work / f"out-{label}"
            out.mkdir()
            plan = [(n, argv, str(out / f"{n}.stdout")) for n, argv, _ in commands(out, work / "out-before")]
            run_flexiast(code, work, DRIVER, json.dumps(plan), str(out / "exit-codes.json"))
            found[label] = json.loads((out / "exit-codes.json").read_text())
            if not Path(found[label]["flexiast"]).is_relative_to(code / "src"):
                raise SystemExit(f"the {label} run imported {found[label]['flexiast']}, not {code / 'src'}")
        problems, accepted = {}, []
        print("\n| output | numbers compared | max rel. difference | result |\n|---|---:|---:|---|")
        for name, _, kind in commands(work / "out-after", work / "out-before"):
            codes = found["before"][name], found["after"][name]
            if codes != (0, 0):
                diffs, counts = [f"{name}: exit code {codes[0]} before, {codes[1]} after"], {"numbers": 0, "max_rel": 0}
            else:
                counts, diffs = compare(name, kind, work / "out-before", work / "out-after", args.rtol)
                accepted += [d for d in diffs if is_accepted(d, args.accept, args.accept_new_keys)]
                diffs = [d for d in diffs if not is_accepted(d, args.accept, args.accept_new_keys)]
            if diffs:
                problems[name] = diffs
            print(f"| {name} ({kind}) | {counts['numbers']} | {counts['max_rel']:.2e} | "
                  f"{'same' if not diffs else f'{len(diffs)} difference(s)'} |")
        for name, diffs in problems.items():  # the first few of each output
            print("\n".join(f"DIFFERENT {line}" for line in diffs[:5]))
            if len(diffs) > 5:
                print(f"... and {len(diffs) - 5} more in {name}")
        if accepted:
            keys = sorted({accepted_key(d) for d in accepted})
            print(f"\naccepted ({len(accepted)} difference(s) in keys changed on purpose): {', '.join(keys)}")
        total = sum(map(len, problems.values()))
        print("\nunchanged" if not total else f"\n{total} difference(s) in {', '.join(problems)}")
        return 1 if total else 0
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
