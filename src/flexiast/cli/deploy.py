"""``flexiast evaluate``, ``predict``, ``embed`` and ``export``: a trained model profiled, run on audio, exported."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..constants import (AGGREGATES, AUDIO_EXTENSIONS, AXES, EMBEDDING_FORMATS, EXPORT_FORMATS, EXPORT_INPUTS,
                         ON_ERROR, PATCH_SIZES, EMBEDDING_POOLINGS, POS_GRID_POLICIES, PRECISIONS, PREDICTION_FORMATS,
                         RESIZE_METHODS)
from ._args import (UsageError, add_command, add_data_arguments, add_model_arguments, data_source, frame_counts,
                    load_inference, non_negative, output_file, patch_size, patch_sizes, positive, seconds_list)

PRECISION_HELP = "auto: bf16 where the device computes it natively, else fp32 (fp16 on older GPUs)"


def non_negative_float(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def cmd_evaluate(args) -> int:
    from ..deploy.profiling import evaluate_checkpoint, is_kfold_run
    from ..evaluate import profile_markdown

    source = data_source(args, required=False)
    if is_kfold_run(args.checkpoint):
        return _evaluate_kfold(args, source)
    im = load_inference(args)  # before the data: a bad checkpoint is named first
    data, data_label = (source.read(), f"{source.label} ({source.split})") if source else (None, None)
    result = evaluate_checkpoint(
        im, data=data, data_label=data_label, split=args.split, patch_sizes=args.patch_sizes, resize=args.resize,
        axes=args.axes, precision=args.precision, batch_size=args.batch_size, workers=args.workers,
        on_error=args.on_error, latency_runs=args.latency_runs, label=args.label, out=args.out,
        store=not args.no_store, input_lengths=args.input_lengths, lengths=args.lengths, packed=args.packed,
        row_tokens=args.row_tokens)
    files = result["files"]
    print(profile_markdown(result["profile"]))
    print(f"wrote {files['md']}, {files['csv'].name}, {files['json'].name}")
    if args.lengths is not None:
        print("a profile over clip lengths measures each length and chooses no operating point: it is not stored "
              "beside the weights")
    elif result["stored"]:
        print(f"stored as the profile of {result['weights']}: {result['stored']} "
              "(read by flexiast predict --max-gflops/--max-ms)")
    elif result["store_error"]:
        print(f"could not store the profile beside the weights ({result['store_error']}); pass --profile "
              f"{files['json']} to predict", file=sys.stderr)
    return 0


def _evaluate_kfold(args, source) -> int:
    """``flexiast evaluate KFOLD_RUN``: every fold's model on its own test fold, then the fold average."""
    from ..deploy.profiling import evaluate_kfold
    from ..evaluate import profile_markdown

    if source is not None:
        raise UsageError(f"{args.checkpoint} is a k-fold run: each fold's model is evaluated on its own test fold "
                         "(from the fold's recipe); give no --data/--format/--root")
    result = evaluate_kfold(
        args.checkpoint, split=args.split, weights=args.weights, features=args.features,
        compression=args.compression, multilabel=args.multilabel, device=args.device, patch_sizes=args.patch_sizes,
        resize=args.resize, axes=args.axes, precision=args.precision, batch_size=args.batch_size,
        workers=args.workers, on_error=args.on_error, latency_runs=args.latency_runs, label=args.label,
        out=args.out, store=not args.no_store, input_lengths=args.input_lengths, lengths=args.lengths,
        packed=args.packed, row_tokens=args.row_tokens)
    for fold in result["folds"]:
        print(f"fold profile: {fold['files']['json']}")
    print(profile_markdown(result["profile"]))
    files = result["files"]
    print(f"wrote {files['md']}, {files['csv'].name}, {files['json'].name} (the fold average)")
    return 0


def _report_skipped(skipped: list[dict]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file(s) that could not be read:", file=sys.stderr)
        for s in skipped:
            print(f"  {s['path']}: {s['reason']}", file=sys.stderr)


def _batch_audio(args) -> list[str]:
    """The files of ``AUDIO...`` and ``--list``; a command line naming none is a usage error."""
    from ..deploy.batch import audio_files

    if not args.audio and args.list is None:
        raise UsageError("give audio files or folders, or --list FILE")
    return audio_files(args.audio, args.list)


def cmd_predict(args) -> int:
    from ..deploy.predict import PredictOptions, format_prediction
    from ..evaluate import read_profile

    if args.out is None:
        if not args.audio:
            raise UsageError("give audio files to score (or --out FILE with folders or --list FILE)")
        given = [flag for flag, on in (("--list", args.list is not None), ("--resume", args.resume),
                                       ("--overwrite", args.overwrite), ("--windows", args.windows)) if on]
        if given:
            raise UsageError(f"{', '.join(given)} go with --out FILE (many files to a CSV or JSONL file)")
        if args.framewise and not args.json:
            raise UsageError("--framewise prints every frame's scores as JSON: add --json (or write --out FILE.jsonl)")
    elif args.windows and args.out.suffix != ".jsonl":
        raise UsageError("--windows keeps each file's windows in a .jsonl output; a .csv row has no room for them")
    elif args.framewise and args.out.suffix != ".jsonl":
        raise UsageError("--framewise keeps each file's framewise scores in a .jsonl output; a .csv row has room "
                         "for the events only (its events column)")
    options = PredictOptions(patch_size=args.patch_size, max_gflops=args.max_gflops, max_ms=args.max_ms,
                             resize=args.resize, top_k=args.top_k, hop_seconds=args.hop, aggregate=args.aggregate,
                             whole=args.whole, pos_grid=args.pos_grid, precision=args.precision,
                             threshold=args.threshold, framewise=args.framewise, min_duration_s=args.min_duration,
                             merge_gap_s=args.merge_gap, packed=args.packed, row_tokens=args.row_tokens)
    if args.out is not None:
        return _predict_to_file(args, options)
    im = load_inference(args)
    if args.profile:
        im.profile = read_profile(args.profile)  # a bad --profile fails here, naming the file
    results = [im.predict(audio, options, batch_size=args.batch_size) for audio in args.audio]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=1))
    else:
        print("\n".join(format_prediction(r, windows=not args.no_windows) for r in results))
    return 0


def _predict_to_file(args, options) -> int:
    from ..deploy.batch import check_output, predict_files
    from ..evaluate import read_profile

    files = _batch_audio(args)
    check_output(args.out, PREDICTION_FORMATS, args.resume, args.overwrite)  # before the model is loaded
    im = load_inference(args)
    if args.profile:
        im.profile = read_profile(args.profile)
    rows = predict_files(im, files, options, out=args.out, resume=args.resume, overwrite=args.overwrite,
                         windows=args.windows, save_every=args.save_every, batch_size=args.batch_size,
                         workers=args.workers, progress=not args.quiet)
    bad = [{"path": r["path"], "reason": r["error"]} for r in rows if "error" in r]
    print(f"wrote {args.out}: {len(rows) - len(bad)} file(s) scored in this run, "
          f"{len(files) - len(rows)} already there")
    _report_skipped(bad)
    return 0


def cmd_embed(args) -> int:
    from ..deploy.batch import check_output, embed_files
    from ..deploy.embed import EmbedOptions
    from ..evaluate import read_profile

    files = _batch_audio(args)
    check_output(args.out, EMBEDDING_FORMATS, args.resume, args.overwrite)  # before the model is loaded
    im = load_inference(args, classifier=False)  # a pretraining model (SSAST) gives embeddings too
    if args.profile:
        im.profile = read_profile(args.profile)
    options = EmbedOptions(patch_size=args.patch_size, max_gflops=args.max_gflops, max_ms=args.max_ms,
                           resize=args.resize, layer=args.layer, pooling=args.pooling, frames=args.frames,
                           hop_seconds=args.hop, precision=args.precision, packed=args.packed,
                           row_tokens=args.row_tokens)
    data = embed_files(im, files, options, out=args.out, resume=args.resume, overwrite=args.overwrite,
                       save_every=args.save_every, batch_size=args.batch_size, workers=args.workers,
                       progress=not args.quiet)
    meta = data["metadata"]
    what = f"clip embeddings [{', '.join(map(str, data['clip'].shape))}]"
    if args.frames:
        what += f" and {len(data['frames'])} frame embeddings"
    print(f"wrote {args.out}: {what} from layer {meta['layer']} ({meta['pooling']} pooling), {meta['operating_point']}")
    _report_skipped(data["skipped"])
    return 0


def _add_choice_arguments(p) -> None:
    """The patch size or budget (``--patch-size``, ``--max-gflops``, ``--max-ms``, ``--profile``,
    ``--resize``), ``--hop`` and ``--precision`` that predict and embed share."""
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--patch-size", type=patch_size, help="run at this size (16 or 16x32)")
    choice.add_argument("--max-gflops", type=positive(float), help="the most accurate profiled size within this")
    p.add_argument("--max-ms", type=positive(float), help="... and/or within this profiled latency per clip")
    p.add_argument("--profile", help="a profile JSON to budget with, instead of the one stored with the weights")
    p.add_argument("--resize", choices=RESIZE_METHODS, help="kernel resize (default pi, or the profile's)")
    p.add_argument("--hop", type=positive(float), help="seconds between windows of long audio (default half a window)")
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0], help=PRECISION_HELP)
    _add_packing_arguments(p, "audio no longer than a window at its own length, not padded")


def _add_packing_arguments(p, what: str) -> None:
    """``--packed/--no-packed`` and ``--row-tokens`` (ElasticAST's packed clips of their own lengths)."""
    p.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{what}, packed with other clips into rows of tokens (ElasticAST; an AST-family model). "
                        "Default: as the weights were trained (data.batching: packed)")
    p.add_argument("--row-tokens", type=positive(int), metavar="N",
                   help="tokens per packed row (default: the training run's data.row_tokens, else 2048)")


def _add_batch_arguments(p, out_help: str, formats: tuple[str, ...], required: bool) -> None:
    """Many files to one output: ``--list``, ``--out`` (ending in one of ``formats``),
    ``--resume``/``--overwrite``, ``--save-every``, ``--batch-size``, ``--workers``, ``--quiet``."""
    p.add_argument("--list", type=Path, metavar="FILE", help="a file of audio paths, one a line")
    p.add_argument("--out", type=output_file(formats), required=required, metavar="FILE", help=out_help)
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="keep FILE's rows and add the files it lacks")
    again.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    p.add_argument("--save-every", type=positive(int), default=1000, metavar="K",
                   help="rewrite FILE every K files, so a killed run loses little (default 1000)")
    p.add_argument("--batch-size", type=positive(int), default=32, help="windows per model call, across files")
    p.add_argument("--workers", type=non_negative, help="processes decoding files (default: chosen from the cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_export(args) -> int:
    from ..audio import load_audio
    from ..deploy.export import check_onnx, check_onnx_waveform, export_hf, export_onnx
    from ..features import FeatureConfig

    waveform = args.input == "waveform"
    if args.format != "onnx" and (waveform or args.samples or args.dynamic_length or args.check_audio):
        raise UsageError("--input, --samples, --dynamic-length and --check-audio apply to --format onnx")
    if not waveform and (args.samples or args.dynamic_length or args.check_audio):
        raise UsageError("--samples, --dynamic-length and --check-audio apply to --input waveform")
    im = load_inference(args)
    frames = args.frames or im.model.config.input_tdim
    info = im.inference_info(frames)
    kwargs = dict(patch_size=args.patch_size, frames=frames, resize=args.resize, pos_grid=args.pos_grid)
    point = im.points.given(im.model.config, arch=im.model.arch, patch_size=args.patch_size, resize=args.resize,
                            pos_grid=args.pos_grid, frames=frames)  # what the family refuses is named here
    at = point.describe()
    if args.format == "onnx":
        path = export_onnx(im.model, args.dest, opset=args.opset, inference=info, input=args.input,
                           samples=args.samples, dynamic_length=args.dynamic_length, **kwargs)
        meta = json.loads(path.with_suffix(".json").read_text())
        takes = (f", waveform [batch, {meta['samples'] or 'samples'}] at {meta['sample_rate']} Hz"
                 if waveform else "")
        print(f"wrote {path} ({im.model.arch}, {at}{takes}) and {path.with_suffix('.json')}")
        if not args.no_check:
            tolerance = args.tolerance if args.tolerance is not None else (1e-3 if waveform else 1e-4)
            check = dict(patch_size=args.patch_size, resize=args.resize, pos_grid=args.pos_grid)
            if waveform:
                features = FeatureConfig(**info["features"])
                waves = [load_audio(a, features.sample_rate) for a in args.check_audio] or None
                diff = check_onnx_waveform(path, im.model, features, im.compression, waves, **check)
                against = f"eager flexiast on {'the given audio' if waves else 'seeded noise'}"
            else:
                diff = check_onnx(path, im.model, **check)
                against = "eager PyTorch"
            ok = diff <= tolerance
            print(f"ONNX Runtime against {against}: max |difference| of logits {diff:.2e} "
                  f"({'within' if ok else 'ABOVE'} {tolerance:g})")
            if not ok:
                return 1
    elif args.format == "hf":
        path = export_hf(im.model, args.dest, inference=info, **kwargs)
        print(f"wrote {path} (Hugging Face ASTForAudioClassification, {at})")
    else:
        model = im.model if args.patch_size is None and args.frames is None else point.fixed(im.model)
        path = model.save_pretrained(args.dest, inference=info)
        print(f"wrote {path} (flexiast, {im.model.arch} stored at {at}; any operating point at run time)")
    return 0


def add_parsers(sub) -> None:
    """``evaluate``, ``predict``, ``embed`` and ``export``."""
    ev = add_command(sub, "evaluate", cmd_evaluate,
                     help="metric, GFLOPs and latency at every patch size; stores the profile (a k-fold run: "
                          "each fold's model on its test fold, and the fold-averaged profile)")
    add_model_arguments(ev)
    add_data_arguments(ev, split="test")
    ev.add_argument("--patch-sizes", type=patch_sizes,
                    help=f"the sizes to profile (default {','.join(map(str, PATCH_SIZES))}; AST)")
    ev.add_argument("--input-lengths", type=frame_counts, metavar="FRAMES",
                    help="for a model without patch sizes (HTS-AT): the input lengths to profile, each clip "
                         "average-pooled to it (e.g. 256,512,1024; default: the trained length)")
    ev.add_argument("--lengths", type=seconds_list, metavar="SECONDS",
                    help="profile across clip lengths (ElasticAST): each clip cut to its leading SECONDS at each "
                         "length (e.g. 0.25,0.5,1,2), shorter ones at their own length (--packed) or padded; rows "
                         "at (patch, length). Written to --out, not stored with the weights")
    _add_packing_arguments(ev, "each clip at its own length (cut to the trained length), not padded")
    ev.add_argument("--resize", choices=RESIZE_METHODS,
                    help="how the kernel is resized (default pi)")
    ev.add_argument("--axes", choices=AXES,
                    help="resize both axes (p x p), time only or frequency only (FlexiAST Fig. 4a; default both)")
    ev.add_argument("--out", type=Path, help="directory for profile.md/.csv/.json (default: beside the weights)")
    ev.add_argument("--label", help="the model's name in reports")
    ev.add_argument("--no-store", action="store_true", help="do not store the profile beside the weights")
    ev.add_argument("--batch-size", type=positive(int), default=32)
    ev.add_argument("--workers", type=non_negative, default=0)
    ev.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR[0],
                    help="an unreadable clip stops the evaluation (raise) or is left out and counted (skip)")
    ev.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0], help=PRECISION_HELP)
    ev.add_argument("--latency-runs", type=positive(int), default=20, help="timed batch-1 calls per size")

    pr = add_command(sub, "predict", cmd_predict, help="labels with scores for audio files of any length")
    add_model_arguments(pr)
    pr.add_argument("audio", nargs="*", help="audio files (with --out also folders, searched for "
                    f"{'/'.join(AUDIO_EXTENSIONS)})")
    _add_choice_arguments(pr)
    pr.add_argument("--top-k", type=positive(int), default=5)
    pr.add_argument("--aggregate", choices=AGGREGATES, default=AGGREGATES[0], help="how window scores combine")
    pr.add_argument("--whole", action="store_true", help="one pass over the whole clip instead of windows")
    pr.add_argument("--pos-grid", choices=POS_GRID_POLICIES, default=POS_GRID_POLICIES[0],
                    help="positional grid for a shorter or longer input (--whole); see docs/DEPLOYMENT.md")
    pr.add_argument("--no-windows", action="store_true", help="do not list the windows")
    pr.add_argument("--json", action="store_true", help="print JSON")
    _add_batch_arguments(pr, "write one row per file to this .csv or .jsonl instead of printing",
                         PREDICTION_FORMATS, required=False)
    pr.add_argument("--windows", action="store_true", help="with --out .jsonl: keep each file's windows")
    sed = pr.add_argument_group("sound events (models with framewise output: HTS-AT)")
    sed.add_argument("--threshold", type=float, help="a frame belongs to an event where its score (sigmoid, or "
                     "softmax for single-label models) is above this (default 0.5)")
    sed.add_argument("--framewise", action="store_true",
                     help="also every frame's scores (large; --json or --out .jsonl)")
    sed.add_argument("--min-duration", type=non_negative_float, default=0.0, metavar="SECONDS",
                     help="drop events shorter than this")
    sed.add_argument("--merge-gap", type=non_negative_float, default=0.0, metavar="SECONDS",
                     help="join events of one class at most this far apart")

    em = add_command(sub, "embed", cmd_embed, help="clip (and per-time-step) embeddings of many audio files")
    add_model_arguments(em)
    em.add_argument("audio", nargs="*", help=f"audio files, or folders searched for {'/'.join(AUDIO_EXTENSIONS)}")
    _add_choice_arguments(em)
    em.add_argument("--pooling", choices=EMBEDDING_POOLINGS, default=EMBEDDING_POOLINGS[0],
                    help="head: the prefix tokens the classifier reads; mean: the mean of the patch tokens")
    em.add_argument("--layer", type=int, help="the layer: 0 the patch embeddings, 1..depth a block's output "
                    "(default: the last, after the final norm; negative counts from the end)")
    em.add_argument("--frames", action="store_true", help="also per-time-step embeddings with their timestamps")
    _add_batch_arguments(em, "a .safetensors or .npz file (read with flexiast.batch.read_embeddings)",
                         EMBEDDING_FORMATS, required=True)

    ex = add_command(sub, "export", cmd_export,
                     help="ONNX (checked with ONNX Runtime), Hugging Face or flexiast at one size")
    add_model_arguments(ex)
    ex.add_argument("dest", help="a .onnx file, or a directory for --format hf / flexiast")
    ex.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0])
    ex.add_argument("--patch-size", type=patch_size, help="the size to export (default: the stored one)")
    ex.add_argument("--frames", type=positive(int), help="input length (default: the trained one)")
    ex.add_argument("--resize", choices=RESIZE_METHODS, help="kernel resize of an AST (default pi)")
    ex.add_argument("--pos-grid", choices=POS_GRID_POLICIES, default=POS_GRID_POLICIES[0],
                    help="positional grid when --frames differs from the trained length")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--input", choices=EXPORT_INPUTS, default=EXPORT_INPUTS[0],
                    help="what the ONNX graph takes: the normalised spectrogram, or the waveform at the features' "
                         "sample rate (the features computed inside the graph)")
    length = ex.add_mutually_exclusive_group()
    length.add_argument("--samples", type=positive(int),
                        help="--input waveform: the fixed waveform length (default: the samples of the model's frames)")
    length.add_argument("--dynamic-length", action="store_true",
                        help="--input waveform: any length, cut or zero-padded to the model's frames in the graph")
    ex.add_argument("--check-audio", nargs="+", default=[], metavar="AUDIO",
                    help="--input waveform: audio files for the ONNX Runtime check (default: seeded noise)")
    ex.add_argument("--tolerance", type=float,
                    help="largest ONNX-eager difference of logits accepted (default 1e-4; 1e-3 for --input waveform)")
    ex.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
