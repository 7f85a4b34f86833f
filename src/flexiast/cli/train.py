"""``flexiast train`` (a recipe, or ``--resume``) and ``flexiast savings`` (Tables 2 and 6 of coarse-to-fine training)."""

from __future__ import annotations

import errno
import json
from contextlib import contextmanager
from pathlib import Path

from ._args import UsageError, add_command, positive


@contextmanager
def resumable_writes(run_dir: Path, kfold: bool = False):
    """A file of the run in ``run_dir`` that could not be written (a full disk) stops it with an
    error naming the file, the run directory and how to continue: the write replaced nothing,
    so the last checkpoint is whole and ``flexiast train --resume`` (a k-fold run: the same
    command again) continues the run to the numbers it would have reached."""
    from ..atomic import WriteError

    try:
        yield
    except WriteError as e:
        fix = "free space on its disk" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        again = "by running the same command again" if kfold else f"with flexiast train --resume {run_dir}"
        raise WriteError(e.path, e, f"the run in {run_dir} stopped there with its last checkpoint whole: "
                                    f"{fix}, then continue it {again}") from e


def cmd_train(args) -> int:
    from ..config import load_config
    from ..engine import resume, train

    if args.resume:
        if args.recipe or args.overrides:
            raise UsageError("--resume RUN_DIR continues a run with its saved recipe; give no recipe or overrides")
        with resumable_writes(Path(args.resume).absolute()):
            summary = resume(args.resume)
    else:
        if not args.recipe:
            raise UsageError("give a recipe (flexiast train recipe.yaml [key=value ...]) or --resume RUN_DIR")
        cfg = load_config(args.recipe, args.overrides)
        if args.check:
            from ..hardware import resolve_precision, select_device

            device = select_device(cfg.train.device, setting="train.device")
            precision = resolve_precision(cfg.train.precision, device, setting="train.precision")
            print(f"{args.recipe}: valid; {len(cfg.phases)} phase(s), output {cfg.out_dir}; on this machine: "
                  f"{device}, precision {precision}")
            return 0
        with resumable_writes(Path(cfg.out_dir).absolute(), kfold=bool(cfg.data.kfold)):
            summary = train(cfg)
    if "folds" not in summary:
        print(f"best validation {summary['metric']} {summary['best_val']:.4f} at epoch {summary['best_epoch']}; "
              f"{summary['train_flops'] / 1e12:.3f} training TFLOPs in {summary['train_seconds']:.1f} s")
        bad = summary.get("unreadable", {})
        if bad.get("files"):
            print(f"left out {len(bad['files'])} unreadable files ({sum(bad['left_out_at_scan'].values())} at the "
                  f"scan, {bad['skipped_reads']} reads skipped); they are listed in summary.json under 'unreadable'")
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.4f}"


def savings_table(s: dict) -> str:
    """Both readings of :func:`flexiast.accounting.savings` as a Markdown table, and why the
    paper's is missing where it is."""
    rows = [("validation-decided (clean)", s["validation"]), ("paper, Sec. 3.3 (decided on test)", s["paper"])]
    lines = ["| reading | baseline ref. epoch | baseline value | run stops at epoch | run value | run test | "
             "baseline test | FLOPs saved | time saved |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        if r is None:
            lines.append(f"| {name} | not available | | | | | | | |")
            continue
        rule = "reaches (>=) its best val" if r["decided_on"] == "validation" else "surpasses (>) its best test"
        stop = r["run_epoch"] if r["reached"] else f"never (run best {r['run_best']:.4f})"
        if r["decided_on"] == "test":
            run_test, base_test = r["run_value"], r["baseline_value"]
        else:
            run_test, base_test = r.get("run_test"), r.get("baseline_test")
        lines.append(f"| {name}: {rule} | {r['baseline_epoch']} | {_num(r['baseline_value'])} | {stop} | "
                     f"{_num(r['run_value'])} | {_num(run_test)} | {_num(base_test)} | {_pct(r['flops_saved'])} | "
                     f"{_pct(r['time_saved'])} |")
    if s["paper"] is not None and s["paper"]["difference"] is not None:
        lines.append(f"\nTable 2's Acc column (paper reading): {s['paper']['run_value']:.4f} "
                     f"({s['paper']['difference']:+.4f} against the baseline's {s['paper']['baseline_value']:.4f}).")
    if s["paper_unavailable"]:
        lines.append(f"\nPaper reading not available: {s['paper_unavailable']}.")
    return "\n".join(lines)


def no_budget_table(n: dict) -> str:
    """:func:`flexiast.accounting.no_budget` (Table 3) as a Markdown table and what it differs in."""
    from ..accounting import TEST_NEEDED

    r, b = n["run"], n["baseline"]
    lines = ["Without a budget (Table 3):", "", "| reading | run | baseline | difference |", "|---|---:|---:|---:|",
             f"| test at the best validation epoch (epochs {r['best_val_epoch']} / {b['best_val_epoch']}) | "
             f"{_num(r['test_at_best_val'])} | {_num(b['test_at_best_val'])} | {_signed(n['validation_difference'])} |"]
    if r["paper_value"] is not None and b["paper_value"] is not None:
        lines.append(f"| paper (AST's number: run {r['paper_source']}, baseline {b['paper_source']}) | "
                     f"{_num(r['paper_value'])} | {_num(b['paper_value'])} | {_signed(n['paper_difference'])} |")
    else:
        lines.append(f"| paper (AST's number) | not available: it needs {TEST_NEEDED} or weight averaging | | |")
    lines.append(f"\nThe final phases ran {r['final_epochs']} (run) and {b['final_epochs']} (baseline) epochs, "
                 "as their recipes set; the paper trains the run's final phase until convergence.")
    return "\n".join(lines)


def budget_table(b: dict) -> str:
    """:func:`flexiast.accounting.fixed_budget` as a Markdown table."""
    lines = [f"Run at the end of its final-phase epoch {b['fine_epochs']} (global epoch {b['run_epoch']}) against "
             f"the baseline's whole run ({b['baseline_final_epochs']} final-phase epochs, last epoch "
             f"{b['baseline_epoch']}):",
             "", "| | run | baseline | difference |", "|---|---:|---:|---:|",
             f"| validation | {_num(b['run_val'])} | {_num(b['baseline_val'])} | {_signed(b['val_difference'])} |",
             f"| test | {_num(b['run_test'])} | {_num(b['baseline_test'])} | {_signed(b['test_difference'])} |",
             f"| training TFLOPs | {b['run_flops'] / 1e12:.3f} | {b['baseline_flops'] / 1e12:.3f} | "
             f"saved {_pct(b['flops_saved'])} |",
             f"| training seconds | {b['run_seconds']:.1f} | {b['baseline_seconds']:.1f} | "
             f"saved {_pct(b['time_saved'])} |"]
    if b.get("test_unavailable"):
        lines.append(f"\nNo test numbers: {b['test_unavailable']}.")
    return "\n".join(lines)


def pretraining_table(s: dict) -> str:
    """:func:`flexiast.accounting.pretraining_savings` as a Markdown table."""
    w, t = s["whole"], s["to_loss"]
    lines = ["| | run | baseline | saved |", "|---|---:|---:|---:|",
             f"| whole pretraining, TFLOPs | {w['run_flops'] / 1e12:.3f} | {w['baseline_flops'] / 1e12:.3f} | "
             f"{_pct(w['flops_saved'])} |",
             f"| whole pretraining, seconds | {w['run_seconds']:.1f} | {w['baseline_seconds']:.1f} | "
             f"{_pct(w['time_saved'])} |",
             f"| final validation pretraining loss | {_num(w['run_loss'])} | {_num(w['baseline_loss'])} | |"]
    if t is None:
        lines.append("| to the baseline's final loss | never reached | | |")
    else:
        lines.append(f"| to the baseline's final loss (epoch {t['run_epoch']}), TFLOPs / s | "
                     f"{t['run_flops'] / 1e12:.3f} / {t['run_seconds']:.1f} | | {_pct(t['flops_saved'])} / "
                     f"{_pct(t['time_saved'])} |")
    if "downstream" in s:
        d = s["downstream"]
        lines.append(f"| fine-tuned, test {d['run']['metric']} | {_num(d['run']['value'])} | "
                     f"{_num(d['baseline']['value'])} | {_signed(d['difference'])} |")
    return "\n".join(lines)


def cmd_savings(args) -> int:
    from ..accounting import (fixed_budget, is_pretraining, load_history, no_budget, paper_savings, pretraining_savings,
                              savings)

    if is_pretraining(load_history(args.run)):
        if args.fine_epochs is not None or args.reading != "both":
            raise UsageError("a pretraining run is read by its pretraining loss and downstream numbers; it takes no "
                             "--fine-epochs or --reading")
        result = pretraining_savings(args.run, args.baseline, args.downstream)
        print(json.dumps(result, indent=1) if args.json else pretraining_table(result))
        return 0
    if args.downstream is not None:
        raise UsageError("--downstream reads the fine-tuned runs of two pretraining runs; these are not pretraining")

    if args.fine_epochs is not None:
        if args.reading != "both":
            raise UsageError("--fine-epochs reads the run at a fixed epoch; it takes no --reading")
        result = fixed_budget(args.run, args.baseline, args.fine_epochs)
        print(json.dumps(result, indent=1) if args.json else budget_table(result))
        return 0
    if args.reading == "paper":
        paper_savings(args.run, args.baseline)  # refuses here, naming what the histories lack
    s = savings(args.run, args.baseline)
    s["no_budget"] = no_budget(args.run, args.baseline)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(savings_table(s) + "\n\n" + no_budget_table(s["no_budget"]))
    return 0


def add_parsers(sub) -> None:
    """``train`` and ``savings``."""
    tr = add_command(sub, "train", cmd_train,
                     help="train from a YAML recipe (torchrun --nproc-per-node N -m flexiast train ...)")
    tr.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.precision=bf16")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    tr.add_argument("--check", action="store_true", help="validate the recipe and stop")

    sv = add_command(sub, "savings", cmd_savings,
                     help="coarse-to-fine FLOPs and time saved against a baseline run (Table 2)")
    sv.add_argument("run")
    sv.add_argument("--baseline", required=True)
    sv.add_argument("--reading", choices=("both", "paper"), default="both",
                    help="both (default): the validation-decided reading and, where the histories hold per-epoch "
                         "test numbers (train.test_every_epoch), the paper's; paper: fail unless the paper's is there")
    sv.add_argument("--fine-epochs", type=positive(int), metavar="N",
                    help="fixed budget (AudioSet, Table 2): the run at the end of its N-th final-phase epoch against "
                         "the baseline's whole run")
    sv.add_argument("--downstream", nargs=2, metavar=("RUN_FT", "BASELINE_FT"),
                    help="pretraining runs (SSAST): the runs fine-tuned from RUN and from BASELINE, whose test "
                         "numbers are reported beside the pretraining cost (Table 6)")
    sv.add_argument("--json", action="store_true")
