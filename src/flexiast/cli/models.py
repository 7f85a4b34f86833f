"""``flexiast flops`` and ``flexiast convert``: FLOPs per patch size, and weights from one layout to another.

Models are named as :func:`flexiast.models.list_models` names them (``ast-base``) and
files are read by :func:`flexiast.models.load_model`, whatever their family.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..constants import PATCH_SIZES, RESIZE_METHODS, SAVE_FORMATS
from ._args import UsageError, add_command, patch_sizes, positive


def cmd_flops(args) -> int:
    from ..models import create_config, flops, load_model
    from ..resize import to_pair

    if args.checkpoint:
        config = load_model(args.checkpoint).config
    else:
        config = create_config(args.model, num_classes=args.num_classes, input_tdim=args.frames,
                               input_fdim=args.mel_bins)
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

    fl = add_command(sub, "flops", cmd_flops, help="forward and training FLOPs per clip at each patch size")
    fl.add_argument("--checkpoint", help="take the configuration from these weights")
    fl.add_argument("--model", choices=list_models(), default="ast-base",
                    help="a model by name (default ast-base), where no --checkpoint is given")
    fl.add_argument("--num-classes", type=positive(int), default=527)
    fl.add_argument("--frames", type=positive(int), default=1024)
    fl.add_argument("--mel-bins", type=positive(int), default=128)
    fl.add_argument("--patch-sizes", type=patch_sizes, default=list(PATCH_SIZES))
    fl.add_argument("--resize", choices=RESIZE_METHODS, default=RESIZE_METHODS[0])
    fl.add_argument("--json", action="store_true")

    cv = add_command(sub, "convert", cmd_convert,
                     help="official AST / FlexiAST / Hugging Face / timm weights to flexiast or HF")
    cv.add_argument("source")
    cv.add_argument("dest", help="a directory, or a .safetensors file")
    cv.add_argument("--format", choices=SAVE_FORMATS, default=SAVE_FORMATS[0])
