"""``flexiast demo``: built-in data, an AST-16 and a FlexiAST trained from one start, a report."""

from __future__ import annotations

from ._args import add_command, positive


def cmd_demo(args) -> int:
    """Built-in data, a standard AST-16 and a FlexiAST, every patch size with PI and BL, a report."""
    from ..demo import run_demo

    run_demo(args.out, epochs=args.epochs, seed=args.seed, train_per_class=args.train_per_class,
             test_per_class=args.test_per_class)
    return 0


def add_parsers(sub) -> None:
    """``demo``."""
    demo = add_command(sub, "demo", cmd_demo, help="built-in data: train an AST-16 and a FlexiAST, evaluate every "
                                                   "patch size, write a report and a figure")
    demo.add_argument("--out", default="flexiast-demo", help="output folder (default ./flexiast-demo)")
    demo.add_argument("--epochs", type=positive(int), default=30,
                      help="epochs of each model, the first half shared (at least 2; default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--train-per-class", type=positive(int), default=150)
    demo.add_argument("--test-per-class", type=positive(int), default=25)
