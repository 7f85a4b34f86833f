"""``flexiast train`` (a recipe, or ``--resume``) and ``flexiast savings`` (Table 2 of coarse-to-fine training)."""

from __future__ import annotations

import json

from ._args import UsageError, add_command


def cmd_train(args) -> int:
    from ..config import load_config
    from ..engine import resume, train

    if args.resume:
        if args.recipe or args.overrides:
            raise UsageError("--resume RUN_DIR continues a run with its saved recipe; give no recipe or overrides")
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
        summary = train(cfg)
    if "folds" not in summary:
        print(f"best validation {summary['metric']} {summary['best_val']:.4f} at epoch {summary['best_epoch']}; "
              f"{summary['train_flops'] / 1e12:.3f} training TFLOPs in {summary['train_seconds']:.1f} s")
        bad = summary.get("unreadable", {})
        if bad.get("files"):
            print(f"left out {len(bad['files'])} unreadable files ({sum(bad['left_out_at_scan'].values())} at the "
                  f"scan, {bad['skipped_reads']} reads skipped); they are listed in summary.json under 'unreadable'")
    return 0


def cmd_savings(args) -> int:
    from ..accounting import savings

    s = savings(args.run, args.baseline)
    if args.json:
        print(json.dumps(s, indent=1))
    elif s["reached"]:
        print(f"baseline best {s['baseline_best']:.4f} at epoch {s['baseline_epoch']}; reached at epoch "
              f"{s['run_epoch']} ({s['run_value']:.4f}): FLOPs saved {100 * s['flops_saved']:.1f}%, "
              f"time saved {100 * s['time_saved']:.1f}%")
    else:
        print(f"never reached the baseline's best {s['baseline_best']:.4f} (run's best {s['run_best']:.4f})")
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
    sv.add_argument("--json", action="store_true")
