"""The ``flexiast`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from .checkpoints import CheckpointError, save_safetensors
from .constants import PATCH_SIZES, POS_GRID_POLICIES, PRECISIONS
from .features import FeatureConfig
from .models import flops
from .models.ast import AST, PRESETS, ASTConfig
from .resize import to_pair

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


def cmd_demo(args) -> int:
    """Built-in data, a standard AST-16 and a FlexiAST, every patch size with PI and BL, a report."""
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, seed=args.seed, train_per_class=args.train_per_class,
             test_per_class=args.test_per_class)
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
        model.save_pretrained(dest, format=args.format)
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


def _add_data_arguments(p: argparse.ArgumentParser, split: str = "train") -> None:
    from .data import FORMATS

    p.add_argument("--data", metavar="FORMAT:ROOT[,KEY=VALUE...]",
                   help="the dataset in one string, e.g. esc50:/data/ESC-50,test_fold=1 or fsdd:../shared/data/fsdd")
    p.add_argument("--format", choices=sorted(FORMATS), help="dataset layout (or give --data)")
    p.add_argument("--root", help="dataset folder (for ast_json / csv, give --option datafile=... etc.)")
    p.add_argument("--split", default=split)
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. task=speakers, test_fold=1, label_csv=labels.csv")


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
    from .engine import resume, train

    if args.resume:
        if args.recipe or args.overrides:
            raise ValueError("--resume RUN_DIR continues a run with its saved recipe; give no recipe or overrides")
        summary = resume(args.resume)
    else:
        if not args.recipe:
            raise ValueError("give a recipe (flexiast train recipe.yaml [key=value ...]) or --resume RUN_DIR")
        cfg = load_config(args.recipe, args.overrides)
        if args.check:
            from .hardware import resolve_precision, select_device

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


def _data_label(args) -> str:
    return args.data or f"{args.format}:{args.root or ''}"


def _features_arg(text: str | None):
    """``--features``: a dataset name (AST's statistics) or a JSON object of FeatureConfig fields."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--features {text!r}: not a dataset name or a JSON object ({e})") from None


def _load_inference(args):
    from .inference import load_inference_model

    return load_inference_model(args.checkpoint, weights=args.weights, features=_features_arg(args.features),
                                compression=args.compression, multilabel=args.multilabel, device=args.device,
                                profile=getattr(args, "profile", None))


def _run_split(checkpoint: Path, split: str):
    """The ``split`` manifest of the training run that wrote ``checkpoint``, read from its recipe."""
    from .config import build_config
    from .engine import load_splits

    run_config = (checkpoint.parent / "config.yaml") if checkpoint.is_file() else None
    if run_config is None or not run_config.exists():
        raise ValueError(f"{checkpoint} is not part of a training run; give the data with --data FORMAT:ROOT")
    import yaml

    cfg = build_config(yaml.safe_load(run_config.read_text()), check_files=False)
    cfg.data.scan = False
    splits, _ = load_splits(cfg)
    if split not in splits:
        raise ValueError(f"the run {checkpoint.parent} has no {split} split (it has {', '.join(splits)})")
    return splits[split], f"{cfg.data.format}:{os.path.normpath(cfg.data.root)} ({split}, from the run's recipe)"


def cmd_evaluate(args) -> int:
    from .data import AudioDataset, collate
    from .evaluate import profile_markdown, profile_model, store_profile, write_profile
    from .inference import profile_path, weights_stat

    im = _load_inference(args)
    if args.data or args.format:
        manifest, data = _manifest(args), f"{_data_label(args)} ({args.split})"
    else:
        manifest, data = _run_split(im.weights, args.split)
    labels = im.model.config.labels
    if labels is not None and tuple(manifest.classes) != tuple(labels):
        raise ValueError(f"{data}: its {len(manifest.classes)} classes are not the model's {len(labels)} labels "
                         f"in the same order (e.g. data {list(manifest.classes)[:3]}, model {list(labels)[:3]})")
    if len(manifest.classes) != im.model.config.num_classes:
        raise ValueError(f"{data}: {len(manifest.classes)} classes, the model predicts {im.model.config.num_classes}")
    dataset = AudioDataset(manifest, im.features, compression=im.compression, on_error=args.on_error)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate,
                                         num_workers=args.workers)
    describe = {"checkpoint": str(im.weights), "weights_stat": weights_stat(im.weights), "label": args.label or None,
                "data": data, "compression": str(im.compression)}
    profile = profile_model(im.model, loader, multilabel=im.multilabel, patch_sizes=args.patch_sizes,
                            resize=args.resize, axes=args.axes, frames=im.model.config.input_tdim,
                            precision=args.precision, latency_runs=args.latency_runs, describe=describe)
    print(profile_markdown(profile))
    out = Path(args.out) if args.out else im.weights.parent / f"eval-{im.weights.stem}-{args.resize}-{args.axes}"
    paths = write_profile(profile, out)
    print(f"wrote {paths['md']}, {paths['csv'].name}, {paths['json'].name}")
    if not args.no_store:
        stored = profile_path(im.weights)
        try:
            store_profile(profile, stored)
            print(f"stored as the profile of {im.weights}: {stored} (read by flexiast predict --max-gflops/--max-ms)")
        except OSError as e:
            print(f"could not store the profile beside the weights ({e}); pass --profile {paths['json']} to predict",
                  file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    from .evaluate import read_profile
    from .inference import format_prediction

    im = _load_inference(args)
    if args.profile:
        im.profile = read_profile(args.profile)  # a bad --profile fails here, naming the file
    results = []
    for audio in args.audio:
        results.append(im.predict(audio, patch_size=args.patch_size, max_gflops=args.max_gflops, max_ms=args.max_ms,
                                  resize=args.resize, top_k=args.top_k, hop_seconds=args.hop, aggregate=args.aggregate,
                                  whole=args.whole, pos_grid=args.pos_grid, precision=args.precision))
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=1))
    else:
        print("\n".join(format_prediction(r, windows=not args.no_windows) for r in results))
    return 0


def cmd_export(args) -> int:
    from .export import check_onnx, export_hf, export_onnx

    im = _load_inference(args)
    frames = args.frames or im.model.config.input_tdim
    info = im.inference_info(frames)
    kwargs = dict(patch_size=args.patch_size, frames=frames, resize=args.resize, pos_grid=args.pos_grid)
    patch = im.model.config.resolve_patch(args.patch_size)[0]
    if args.format == "onnx":
        path = export_onnx(im.model, args.dest, opset=args.opset, inference=info, **kwargs)
        print(f"wrote {path} (patch {patch[0]}x{patch[1]}, {frames} frames) and {path.with_suffix('.json')}")
        if not args.no_check:
            diff = check_onnx(path, im.model, patch_size=args.patch_size, resize=args.resize, pos_grid=args.pos_grid)
            ok = diff <= args.tolerance
            print(f"ONNX Runtime against eager PyTorch: max |difference| of logits {diff:.2e} "
                  f"({'within' if ok else 'ABOVE'} {args.tolerance:g})")
            if not ok:
                return 1
    elif args.format == "hf":
        path = export_hf(im.model, args.dest, inference=info, **kwargs)
        print(f"wrote {path} (Hugging Face ASTForAudioClassification, patch {patch[0]}x{patch[1]}, {frames} frames)")
    else:
        model = im.model if args.patch_size is None and args.frames is None else \
            im.model.at_patch_size(args.patch_size, resize=args.resize, input_tdim=frames, pos_grid=args.pos_grid)
        path = model.save_pretrained(args.dest, inference=info)
        print(f"wrote {path} (flexiast, stored patch {model.config.patch_size}; any patch size at run time)")
    return 0


def cmd_report(args) -> int:
    from .report import load_inputs, plot_profiles, plot_runs, run_metric

    kind, items = load_inputs(args.inputs)
    labels = args.labels.split(",") if args.labels else None
    if kind == "profiles":
        out = plot_profiles([p for _, p in items], args.out, labels=labels, metric=args.metric, title=args.title)
    else:
        out = plot_runs(items, args.out, labels=labels, baseline=None if args.no_baseline else 0,
                        metric=run_metric(items[0][0]), title=args.title)
    print(f"wrote {out}")
    return 0


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a training run directory, a saved model directory, or a weights file")
    p.add_argument("--weights", choices=("best", "averaged", "last"), default="best",
                   help="which weights of a training run (default best)")
    p.add_argument("--features", help="feature settings where the weights carry none: a dataset name "
                   "(audioset, esc50, speechcommands, vggsound, voxceleb) or a JSON object")
    p.add_argument("--compression", help="the input compression of the model's last phase (fshift:2, avgpool:4, ...), "
                   "where the weights do not say")
    p.add_argument("--multilabel", action=argparse.BooleanOptionalAction, default=None,
                   help="sigmoid (multi-label) or softmax scores, where the weights do not say")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value
    return parse


def _patch(text: str):
    sizes = _sizes(text)
    if len(sizes) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one patch size, like 16 or 16x32")
    return sizes[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flexiast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="built-in data: train an AST-16 and a FlexiAST, evaluate every patch size, "
                                        "write a report and a figure")
    demo.add_argument("--out", default="flexiast-demo", help="output folder (default ./flexiast-demo)")
    demo.add_argument("--epochs", type=_positive(int), default=30,
                      help="epochs of each model, the first half shared (at least 2; default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--train-per-class", type=_positive(int), default=150)
    demo.add_argument("--test-per-class", type=_positive(int), default=25)
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
    st.add_argument("--target-length", type=int, default=1024, help="frames after padding or cutting")
    st.add_argument("--mel-bins", type=int, default=128)
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

    ev = sub.add_parser("evaluate", help="metric, GFLOPs and latency at every patch size; stores the profile")
    _add_model_arguments(ev)
    _add_data_arguments(ev, split="test")
    ev.add_argument("--patch-sizes", type=_sizes, default=list(PATCH_SIZES))
    ev.add_argument("--resize", choices=("pi", "bl"), default="pi", help="how the kernel is resized (default pi)")
    ev.add_argument("--axes", choices=("both", "time", "freq"), default="both",
                    help="resize both axes (p x p), time only or frequency only (FlexiAST Fig. 4a)")
    ev.add_argument("--out", help="directory for profile.md/.csv/.json (default: beside the weights)")
    ev.add_argument("--label", help="the model's name in reports")
    ev.add_argument("--no-store", action="store_true", help="do not store the profile beside the weights")
    ev.add_argument("--batch-size", type=_positive(int), default=32)
    ev.add_argument("--workers", type=int, default=0)
    ev.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                    help="an unreadable clip stops the evaluation (raise) or is left out and counted (skip)")
    ev.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto: bf16 where the device computes it natively, else fp32 (fp16 on older GPUs)")
    ev.add_argument("--latency-runs", type=_positive(int), default=20, help="timed batch-1 calls per size")
    ev.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="labels with scores for audio files of any length")
    _add_model_arguments(pr)
    pr.add_argument("audio", nargs="+", help="audio files")
    choice = pr.add_mutually_exclusive_group()
    choice.add_argument("--patch-size", type=_patch, help="run at this size (16 or 16x32)")
    choice.add_argument("--max-gflops", type=_positive(float), help="the most accurate profiled size within this")
    pr.add_argument("--max-ms", type=_positive(float), help="... and/or within this profiled latency per clip")
    pr.add_argument("--profile", help="a profile JSON to budget with, instead of the one stored with the weights")
    pr.add_argument("--resize", choices=("pi", "bl"), help="kernel resize (default pi, or the profile's)")
    pr.add_argument("--top-k", type=_positive(int), default=5)
    pr.add_argument("--hop", type=_positive(float), help="seconds between windows of long audio (default half a window)")
    pr.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="how window scores combine")
    pr.add_argument("--whole", action="store_true", help="one pass over the whole clip instead of windows")
    pr.add_argument("--pos-grid", choices=POS_GRID_POLICIES, default="leading",
                    help="positional grid for a shorter or longer input (--whole); see docs/DEPLOYMENT.md")
    pr.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto: bf16 where the device computes it natively, else fp32 (fp16 on older GPUs)")
    pr.add_argument("--no-windows", action="store_true", help="do not list the windows")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="ONNX (checked with ONNX Runtime), Hugging Face or flexiast at one size")
    _add_model_arguments(ex)
    ex.add_argument("dest", help="a .onnx file, or a directory for --format hf / flexiast")
    ex.add_argument("--format", choices=("onnx", "hf", "flexiast"), default="onnx")
    ex.add_argument("--patch-size", type=_patch, help="the size to export (default: the stored one)")
    ex.add_argument("--frames", type=_positive(int), help="input length (default: the trained one)")
    ex.add_argument("--resize", choices=("pi", "bl"), default="pi")
    ex.add_argument("--pos-grid", choices=POS_GRID_POLICIES, default="leading",
                    help="positional grid when --frames differs from the trained length")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--tolerance", type=float, default=1e-4, help="largest ONNX-eager difference accepted")
    ex.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="figures from saved profiles or training runs")
    rp.add_argument("inputs", nargs="+", help="profile JSON files (or dirs with profile.json), or run directories")
    rp.add_argument("--out", required=True, help="image file (.png, .pdf, .svg)")
    rp.add_argument("--labels", help="comma-separated names, one per input")
    rp.add_argument("--metric", help="profiles: which metric to draw (default: the task's)")
    rp.add_argument("--title")
    rp.add_argument("--no-baseline", action="store_true", help="runs: the first is not a baseline")
    rp.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ValueError, OSError, ImportError) as e:
        print(f"flexiast {args.command}: error: {e}", file=sys.stderr)
        return 2
