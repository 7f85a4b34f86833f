"""``flexiast flops`` and ``flexiast convert``: FLOPs per patch size (per input length for a family
without patch sizes, HTS-AT), and weights from one layout to another.

Models are named as :func:`flexiast.models.list_models` names them (``ast-base``) and
files are read by :func:`flexiast.models.load_model`, whatever their family.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..constants import PATCH_SIZES, RESIZE_METHODS, SAVE_FORMATS
from ._args import UsageError, add_command, frame_counts, patch_sizes, positive


def cmd_flops(args) -> int:
    """FLOPs at each of the family's operating points: patch sizes for an AST (``--patch-sizes``),
    input lengths for a family whose tokens follow the input (``--input-lengths``)."""
    from ..models import create_config, family_of, flops, load_model

    if args.checkpoint:
        config = load_model(args.checkpoint).config
    else:
        sizes = {k: v for k, v in (("input_tdim", args.frames), ("input_fdim", args.mel_bins)) if v is not None}
        if family_of(create_config(args.model)).classifier:
            sizes["num_classes"] = args.num_classes
        config = create_config(args.model, **sizes)
    kind = family_of(config).points
    frames = args.frames or config.input_tdim
    mel_bins = args.mel_bins or config.input_fdim
    if mel_bins != config.input_fdim and not kind.any_mel_bins:
        raise UsageError(f"--mel-bins {args.mel_bins}: this {config.arch} model takes {config.input_fdim} mel bins")
    try:
        points = kind.count_grid(config, frames, arch=config.arch, patch_sizes=args.patch_sizes, resize=args.resize,
                                 input_lengths=args.input_lengths)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = []
    for point in points:
        c = flops(config, (point.frames, mel_bins), **point.call())
        rows.append({**kind.count_fields(point), "tokens": c.tokens, "grid": list(c.grid),
                     "forward_gflops": c.forward / 1e9, "training_gflops": c.training / 1e9,
                     "components_gflops": {k: v / 1e9 for k, v in c.components().items()}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{config.arch}, {frames} frames x {mel_bins} mel bins; FLOPs per clip of each {kind.noun}:")
    print(f"{kind.column:>7}  {'tokens':>6}  {'grid':>8}  {'forward GFLOPs':>14}  {'training GFLOPs':>15}")
    for point, r in zip(points, rows):
        print(f"{kind.row_label(kind.row_fields(point)):>7}  {r['tokens']:>6}  {'x'.join(map(str, r['grid'])):>8}"
              f"  {r['forward_gflops']:>14.2f}  {r['training_gflops']:>15.2f}")
    return 0


def cmd_convert(args) -> int:
    from ..checkpoints import save_safetensors
    from ..models import load_model

    dest = Path(args.dest)
    single_file = dest.suffix == ".safetensors"
    if single_file and args.format != "flexiast":
        raise UsageError("a single .safetensors file is flexiast's format; give a directory for --format hf")
    model = load_model(args.source)
    if single_file:
        save_safetensors(model, dest)
    else:
        model.save_pretrained(dest, format=args.format)
    print(f"wrote {dest} ({args.format}): {model.config}")
    return 0


def add_parsers(sub) -> None:
    """``flops`` and ``convert``."""
    from ..models import list_models

    fl = add_command(sub, "flops", cmd_flops, help="forward and training FLOPs per clip at each patch size "
                     "(each input length for HTS-AT)")
    fl.add_argument("--checkpoint", help="take the configuration from these weights")
    fl.add_argument("--model", choices=list_models(), default="ast-base",
                    help="a model by name (default ast-base), where no --checkpoint is given")
    fl.add_argument("--num-classes", type=positive(int), default=527)
    fl.add_argument("--frames", type=positive(int), help="input frames (default: the model's, 1024 for an AST "
                    "preset; for HTS-AT and CNN14 its trained length, whose quarter, half and whole are counted)")
    fl.add_argument("--mel-bins", type=positive(int), help="mel bins (default: the model's; 128 for an AST preset)")
    fl.add_argument("--patch-sizes", type=patch_sizes,
                    help=f"default {','.join(map(str, PATCH_SIZES))} (AST)")
    fl.add_argument("--input-lengths", type=frame_counts, metavar="FRAMES",
                    help="for a model without patch sizes (HTS-AT): the input lengths to count (e.g. 256,512,1024)")
    fl.add_argument("--resize", choices=RESIZE_METHODS, help="default pi (AST)")
    fl.add_argument("--json", action="store_true")

    cv = add_command(sub, "convert", cmd_convert,
                     help="official AST / FlexiAST / Hugging Face / timm weights to flexiast or HF")
    cv.add_argument("source")
    cv.add_argument("dest", help="a directory, or a .safetensors file")
    cv.add_argument("--format", choices=SAVE_FORMATS, default=SAVE_FORMATS[0])
