"""``flexiast stats``: the mean and std of a dataset's AST features, as a recipe snippet."""

from __future__ import annotations

import sys
from pathlib import Path

from ._args import add_command, add_data_arguments, data_source


def cmd_stats(args) -> int:
    from ..data import dataset_stats, scan
    from ..features import FeatureConfig

    source = data_source(args)
    manifest, report = scan(source.read(), on_error="skip", max_bad_fraction=1.0, decode=True)
    if report.problems:
        print(f"left out {len(report.problems)} unreadable clips, e.g. {report.problems[0][1]}", file=sys.stderr)
    features = FeatureConfig(num_mel_bins=args.mel_bins, target_length=args.target_length)
    stats = dataset_stats(manifest, features, batch_size=args.batch_size, num_workers=args.workers)
    print(f"{stats['clips']} clips of {source.format} ({source.split}), {args.target_length} frames x "
          f"{args.mel_bins} bins")
    print(f"AST's statistic (mean over batches of {args.batch_size}): mean {stats['mean']:.7g}, std {stats['std']:.7g}")
    print(f"over all values: mean {stats['exact_mean']:.7g}, std {stats['exact_std']:.7g}")
    snippet = (f"features:\n  target_length: {args.target_length}\n  num_mel_bins: {args.mel_bins}\n"
               f"  mean: {stats['mean']:.7g}\n  std: {stats['std']:.7g}\n")
    print("\nrecipe snippet:\n" + snippet)
    if args.out:
        Path(args.out).write_text(snippet)
        print(f"wrote {args.out}")
    return 0


def add_parsers(sub) -> None:
    """``stats``."""
    st = add_command(sub, "stats", cmd_stats, help="dataset mean and std of AST features, as AST computes them")
    add_data_arguments(st)
    st.add_argument("--target-length", type=int, default=1024, help="frames after padding or cutting")
    st.add_argument("--mel-bins", type=int, default=128)
    st.add_argument("--batch-size", type=int, default=1000,
                    help="AST averages per-batch statistics over batches of 1000")
    st.add_argument("--workers", type=int, default=0)
    st.add_argument("--out", help="also write the recipe snippet to this file")
