"""``flexiast report``: figures from saved profiles or training runs."""

from __future__ import annotations

from ._args import add_command


def cmd_report(args) -> int:
    from ..report import load_inputs, plot_profiles, plot_runs, run_metric

    kind, items = load_inputs(args.inputs)
    labels = args.labels.split(",") if args.labels else None
    if kind == "profiles":
        out = plot_profiles([p for _, p in items], args.out, labels=labels, metric=args.metric, title=args.title)
    else:
        out = plot_runs(items, args.out, labels=labels, baseline=None if args.no_baseline else 0,
                        metric=run_metric(items[0][0]), title=args.title)
    print(f"wrote {out}")
    return 0


def add_parsers(sub) -> None:
    """``report``."""
    rp = add_command(sub, "report", cmd_report, help="figures from saved profiles or training runs")
    rp.add_argument("inputs", nargs="+", help="profile JSON files (or dirs with profile.json), or run directories")
    rp.add_argument("--out", required=True, help="image file (.png, .pdf, .svg)")
    rp.add_argument("--labels", help="comma-separated names, one per input")
    rp.add_argument("--metric", help="profiles: which metric to draw (default: the task's)")
    rp.add_argument("--title")
    rp.add_argument("--no-baseline", action="store_true", help="runs: the first is not a baseline")
