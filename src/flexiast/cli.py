"""The ``flexiast`` command."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import PATCH_SIZES
from .checkpoints import CheckpointError, save_pretrained, save_safetensors
from .features import FeatureConfig, log_mel, normalize, pad_or_cut
from .flops import flops
from .model import AST, ASTConfig, PRESETS
from .resize import bilinear_resize, pi_resize, to_pair

def _sizes(text: str) -> list:
    """``"8,16,8x32"`` -> ``[8, 16, (8, 32)]``."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            out.append(tuple(int(v) for v in item.split("x")) if "x" in item else int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a patch size like 16 or 16x32") from None
    return out


def _synthetic_clip(seconds: float, sample_rate: int = 16000) -> torch.Tensor:
    """A deterministic test sound: a rising chirp, a 440 Hz tone burst and faint noise."""
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    chirp = torch.sin(2 * math.pi * (200 * t + 600 * t**2))
    burst = torch.sin(2 * math.pi * 440 * t) * ((t % 1.0) < 0.3)
    noise = 0.01 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (0.4 * chirp + 0.3 * burst + noise).float()


def _token_error(spec: torch.Tensor, weight: torch.Tensor, p: int, method: str) -> float:
    """Relative change of the patch tokens when every 16x16 patch is resized to p x p.

    FlexiAST eq. (2): with the kernel PI-resized, ``<resize(x), w_hat> = <x, w>`` exactly
    when p >= 16 and in the least-squares sense when p < 16.
    """
    base = weight.shape[-1]
    x = spec.T[None, None]
    patches = F.unfold(x, base, stride=base).transpose(1, 2).reshape(-1, 1, base, base)
    ref = patches.flatten(1) @ weight.flatten(1).T
    resized = F.interpolate(patches, size=(p, p), mode="bilinear", align_corners=False)
    w_hat = pi_resize(weight, p) if method == "pi" else bilinear_resize(weight, p)
    got = resized.flatten(1) @ w_hat.flatten(1).T
    return float((got - ref).norm() / ref.norm())


def cmd_demo(args) -> int:
    """Core-library tour: features, one model at every patch size, cost and resize fidelity."""
    torch.manual_seed(args.seed)
    frames = args.frames
    wave = _synthetic_clip(frames / 100 + 0.015)
    features = FeatureConfig.for_dataset("audioset", target_length=frames)
    spec = normalize(pad_or_cut(log_mel(wave, features), frames), features)
    model = AST.preset("tiny", num_classes=10, input_tdim=frames).eval()
    print(f"features: {tuple(spec.shape)} (frames, mel bins) from {wave.numel() / 16000:.2f} s of audio")
    print(f"model: AST-tiny, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"stored patch {model.config.patch_size}, grid {model.config.grid}\n")
    print("patch  tokens  GFLOPs/clip  ms/clip  token error PI  token error BL")
    weight = model.patch_embed.proj.weight.detach()
    with torch.inference_mode():
        for p in PATCH_SIZES:
            count = flops(model, spec.shape, p)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                model(spec[None], patch_size=p)
                times.append(time.perf_counter() - start)
            print(f"{p:>5}  {count.tokens:>6}  {count.gflops_per_clip:>11.3f}  {1e3 * statistics.median(times):>7.1f}"
                  f"  {_token_error(spec, weight, p, 'pi'):>14.2e}  {_token_error(spec, weight, p, 'bl'):>14.2e}")
    print("\nToken error: relative change of the patch tokens when each 16x16 patch is resized to p x p and the\n"
          "kernel is resized with PI (FlexiAST eq. 2) or bilinearly (BL). PI is exact for p >= 16.\n"
          "This is the core-library example. To train: flexiast train recipes/fsdd/digits_ast16.yaml "
          "(docs/TRAINING.md).")
    return 0


def cmd_flops(args) -> int:
    if args.checkpoint:
        config = AST.from_pretrained(args.checkpoint).config
    else:
        config = ASTConfig(num_classes=args.num_classes, input_tdim=args.frames, input_fdim=args.mel_bins,
                           **PRESETS[args.preset])
    shape = (args.frames, args.mel_bins)
    rows = []
    for p in args.patch_sizes:
        c = flops(config, shape, p, resize=args.resize)
        rows.append({"patch_size": list(to_pair(p)), "tokens": c.tokens, "grid": list(c.grid),
                     "forward_gflops": c.forward / 1e9, "training_gflops": c.training / 1e9,
                     "components_gflops": {k: v / 1e9 for k, v in c.components().items()}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'patch':>7}  {'tokens':>6}  {'grid':>8}  {'forward GFLOPs':>14}  {'training GFLOPs':>15}")
    for r in rows:
        print(f"{'x'.join(map(str, r['patch_size'])):>7}  {r['tokens']:>6}  {'x'.join(map(str, r['grid'])):>8}"
              f"  {r['forward_gflops']:>14.2f}  {r['training_gflops']:>15.2f}")
    return 0


def cmd_convert(args) -> int:
    model = AST.from_pretrained(args.source)
    dest = Path(args.dest)
    if dest.suffix == ".safetensors":
        if args.format != "flexiast":
            raise SystemExit("a single .safetensors file is flexiast's format; give a directory for --format hf")
        save_safetensors(model, dest)
    else:
        save_pretrained(model, dest, format=args.format)
    print(f"wrote {dest} ({args.format}): {model.config}")
    return 0


def _option(text: str) -> tuple[str, object]:
    """``key=value`` for a data reader; values parse as JSON where they can (``folds=[1,2]``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    from .data import FORMATS

    p.add_argument("--data", metavar="FORMAT:ROOT[,KEY=VALUE...]",
                   help="the dataset in one string, e.g. esc50:/data/ESC-50,test_fold=1 or fsdd:../shared/data/fsdd")
    p.add_argument("--format", choices=sorted(FORMATS), help="dataset layout (or give --data)")
    p.add_argument("--root", help="dataset folder (for ast_json / csv, give --option datafile=... etc.)")
    p.add_argument("--split", default="train")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. task=speakers, test_fold=1, label_csv=labels.csv")
    p.add_argument("--target-length", type=int, default=1024, help="frames after padding or cutting")
    p.add_argument("--mel-bins", type=int, default=128)


def _manifest(args):
    from .data import read_manifest

    options = dict(args.option)
    if args.data:
        fmt, sep, rest = args.data.partition(":")
        if not sep:
            raise ValueError(f"--data {args.data!r}: expected FORMAT:ROOT[,KEY=VALUE...]")
        root, *pairs = rest.split(",")
        args.format = fmt
        options.setdefault("root", root)
        for pair in pairs:
            key, value = _option(pair)
            options.setdefault(key, value)
    if not args.format:
        raise ValueError("give the dataset with --data FORMAT:ROOT or --format and --root")
    if args.root:
        options.setdefault("root", args.root)
    if args.format not in ("ast_json",):
        options.setdefault("split", args.split)
        args.split = options["split"]
    return read_manifest(args.format, **options)


def cmd_stats(args) -> int:
    from .data import dataset_stats, scan
    manifest, report = scan(_manifest(args), on_error="skip", max_bad_fraction=1.0, decode=True)
    if report.problems:
        print(f"left out {len(report.problems)} unreadable clips, e.g. {report.problems[0][1]}", file=sys.stderr)
    features = FeatureConfig(num_mel_bins=args.mel_bins, target_length=args.target_length)
    stats = dataset_stats(manifest, features, batch_size=args.batch_size, num_workers=args.workers)
    print(f"{stats['clips']} clips of {args.format} ({args.split}), {args.target_length} frames x {args.mel_bins} bins")
    print(f"AST's statistic (mean over batches of {args.batch_size}): mean {stats['mean']:.7g}, std {stats['std']:.7g}")
    print(f"over all values: mean {stats['exact_mean']:.7g}, std {stats['exact_std']:.7g}")
    snippet = (f"features:\n  target_length: {args.target_length}\n  num_mel_bins: {args.mel_bins}\n"
               f"  mean: {stats['mean']:.7g}\n  std: {stats['std']:.7g}\n")
    print("\nrecipe snippet:\n" + snippet)
    if args.out:
        Path(args.out).write_text(snippet)
        print(f"wrote {args.out}")
    return 0


def cmd_train(args) -> int:
    from .config import load_config
    from .train import resume, train

    if args.resume:
        if args.recipe or args.overrides:
            raise ValueError("--resume RUN_DIR continues a run with its saved recipe; give no recipe or overrides")
        summary = resume(args.resume)
    else:
        if not args.recipe:
            raise ValueError("give a recipe (flexiast train recipe.yaml [key=value ...]) or --resume RUN_DIR")
        cfg = load_config(args.recipe, args.overrides)
        if args.check:
            print(f"{args.recipe}: valid; {len(cfg.phases)} phase(s), output {cfg.out_dir}")
            return 0
        summary = train(cfg)
    if "folds" not in summary:
        print(f"best validation {summary['metric']} {summary['best_val']:.4f} at epoch {summary['best_epoch']}; "
              f"{summary['train_flops'] / 1e12:.3f} training TFLOPs in {summary['train_seconds']:.1f} s")
    return 0


def cmd_savings(args) -> int:
    from .accounting import savings

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flexiast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the example: features, one model at every patch size")
    demo.add_argument("--frames", type=int, default=512)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    fl = sub.add_parser("flops", help="forward and training FLOPs per clip at each patch size")
    fl.add_argument("--checkpoint", help="take the configuration from these weights")
    fl.add_argument("--preset", choices=sorted(PRESETS), default="base")
    fl.add_argument("--num-classes", type=int, default=527)
    fl.add_argument("--frames", type=int, default=1024)
    fl.add_argument("--mel-bins", type=int, default=128)
    fl.add_argument("--patch-sizes", type=_sizes, default=list(PATCH_SIZES))
    fl.add_argument("--resize", choices=("pi", "bl"), default="pi")
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(func=cmd_flops)

    st = sub.add_parser("stats", help="dataset mean and std of AST features, as AST computes them")
    _add_data_arguments(st)
    st.add_argument("--batch-size", type=int, default=1000, help="AST averages per-batch statistics over batches of 1000")
    st.add_argument("--workers", type=int, default=0)
    st.add_argument("--out", help="also write the recipe snippet to this file")
    st.set_defaults(func=cmd_stats)

    cv = sub.add_parser("convert", help="official AST / FlexiAST / Hugging Face / timm weights to flexiast or HF")
    cv.add_argument("source")
    cv.add_argument("dest", help="a directory, or a .safetensors file")
    cv.add_argument("--format", choices=("flexiast", "hf"), default="flexiast")
    cv.set_defaults(func=cmd_convert)

    tr = sub.add_parser("train", help="train from a YAML recipe (torchrun --nproc-per-node N -m flexiast train ...)")
    tr.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.precision=bf16")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    tr.add_argument("--check", action="store_true", help="validate the recipe and stop")
    tr.set_defaults(func=cmd_train)

    sv = sub.add_parser("savings", help="coarse-to-fine FLOPs and time saved against a baseline run (Table 2)")
    sv.add_argument("run")
    sv.add_argument("--baseline", required=True)
    sv.add_argument("--json", action="store_true")
    sv.set_defaults(func=cmd_savings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"flexiast {args.command}: error: {e}", file=sys.stderr)
        return 2
