"""Profiling saved weights on a dataset: what ``flexiast evaluate`` and the demo do.

The weights are loaded with the features they were trained on (:mod:`flexiast.deploy.model`),
the data is given or read from the recipe of the run that wrote them (its split, as the
engine reads it), and :func:`flexiast.evaluate.profile_model` measures every operating point;
the profile is written and stored beside the weights for budgeted prediction.

For a family that packs, clips run at their own lengths, packed (``packed``; by default when the
weights were trained packed), cut to the trained length; ``lengths`` profiles ElasticAST's
evaluation across lengths (Feng et al., Interspeech 2024, arXiv 2407.08691): each clip cut to
its leading ``s`` seconds at every ``s``, at their own lengths for a packed model and padded to
``s`` for one trained on fixed-length clips (:func:`flexiast.evaluate.profile_points`). A
profile over lengths measures; it is written but not stored beside the weights, where budgets
read a profile of operating points.

A k-fold run (a directory with ``kfold.json`` and ``fold1`` ... ``foldK``,
:mod:`flexiast.engine.kfold`) is profiled fold by fold, each fold's model on its own test
fold, and the folds' profiles averaged (:func:`evaluate_kfold`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml

from ..config import build_config
from ..data import AudioDataset, collate
from ..engine import load_splits
from ..engine.kfold import KFOLD_FILE
from ..evaluate import (ClipInputs, clip_spans, collate_clips, fold_mean_profile, profile_model, profile_points,
                        store_profile, write_profile)
from ..models.points import point_kind
from .files import profile_path, weights_stat
from .model import InferenceModel, load_inference_model

__all__ = ["evaluate_checkpoint", "evaluate_kfold", "is_kfold_run", "run_split"]


def run_split(checkpoint: Path, split: str):
    """The ``split`` manifest of the training run that wrote ``checkpoint``, read from its recipe, and
    the data's description for a profile."""
    run_config = (checkpoint.parent / "config.yaml") if checkpoint.is_file() else None
    if run_config is None or not run_config.exists():
        raise ValueError(f"{checkpoint} is not part of a training run; give the data with --data FORMAT:ROOT")
    cfg = build_config(yaml.safe_load(run_config.read_text()), check_files=False)
    cfg.data.scan = False
    splits, _ = load_splits(cfg)
    if split not in splits:
        raise ValueError(f"the run {checkpoint.parent} has no {split} split (it has {', '.join(splits)})")
    return splits[split], f"{cfg.data.format}:{os.path.normpath(cfg.data.root)} ({split}, from the run's recipe)"


def evaluate_checkpoint(checkpoint, *, data=None, data_label: str | None = None, split: str = "test",
                        weights: str = "best", features=None, compression: str | None = None,
                        multilabel: bool | None = None, device: str | None = None, patch_sizes=None,
                        resize: str | None = None, axes: str | None = None, precision: str = "auto",
                        batch_size: int = 32, workers: int = 0, on_error: str = "raise", latency_runs: int = 20,
                        label: str | None = None, out: str | Path | None = None, store: bool = True,
                        input_lengths=None, lengths=None, packed: bool | None = None,
                        row_tokens: int | None = None) -> dict:
    """Profile the weights at ``checkpoint`` (what ``flexiast evaluate`` does) and write the profile.

    ``checkpoint`` is a path that :func:`flexiast.inference.load_inference_model` loads with
    ``weights``, ``features``, ``compression``, ``multilabel`` and ``device``, or an
    :class:`~flexiast.inference.InferenceModel` already loaded. ``data`` is a
    :class:`~flexiast.data.Manifest` (``data_label`` names it in the profile); without it,
    the ``split`` of the training run that wrote the weights, read from its recipe. Its
    classes must be the model's. The profile (:func:`profile_model`: over ``patch_sizes``,
    default :data:`~flexiast.constants.PATCH_SIZES`, with ``resize`` pi and ``axes`` both; or,
    for a family without patch sizes, over ``input_lengths``, default the trained length) is
    written into ``out`` (default ``eval-STEM-RESIZE-AXES``, or ``eval-STEM-lengths``, beside
    the weights) and, with ``store``, stored beside the weights for ``predict --max-gflops``.
    ``lengths`` (seconds) profiles every point at each clip length instead (never stored: it
    chooses no point); ``packed`` runs clips at their own lengths in rows of ``row_tokens``
    tokens (None: as the weights were trained, :meth:`InferenceModel.packing`). Prints nothing.

    Returns ``profile``, ``files`` (the paths :func:`write_profile` wrote), ``weights``
    (the file profiled), ``stored`` (where the profile was stored, or None) and
    ``store_error`` (the OSError that kept it from being stored, or None).
    """
    im = checkpoint if isinstance(checkpoint, InferenceModel) else load_inference_model(
        checkpoint, weights=weights, features=features, compression=compression, multilabel=multilabel, device=device)
    cfg = im.model.config  # the grid is checked before any data is read
    packed = im.packing(packed)
    row_tokens = row_tokens or im.row_tokens
    clip_lengths = None if lengths is None else [(float(s), im.clip_frames(float(s))) for s in lengths]
    _, points, _ = profile_points(im.model, cfg.input_tdim, patch_sizes=patch_sizes, resize=resize, axes=axes,
                                  input_lengths=input_lengths, clip_lengths=clip_lengths, packed=packed)
    spans = set(clip_spans(im.model, dict(enumerate(points)), row_tokens).values())
    if data is None:
        data, data_label = run_split(im.weights, split)
    data_label = data_label or data.name
    labels = im.model.config.labels
    if labels is not None and tuple(data.classes) != tuple(labels):
        raise ValueError(f"{data_label}: its {len(data.classes)} classes are not the model's {len(labels)} labels "
                         f"in the same order (e.g. data {list(data.classes)[:3]}, model {list(labels)[:3]})")
    if len(data.classes) != im.model.config.num_classes:
        raise ValueError(f"{data_label}: {len(data.classes)} classes, the model predicts "
                         f"{im.model.config.num_classes}")
    dataset = AudioDataset(data, im.features, compression=im.compression, on_error=on_error)
    if spans != {(cfg.input_tdim, cfg.input_tdim)}:  # clips at their own lengths, or cut to other lengths
        dataset, collate_fn = ClipInputs(dataset, spans), collate_clips
    else:
        collate_fn = collate
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=workers)
    describe = {"checkpoint": str(im.weights), "weights_stat": weights_stat(im.weights), "label": label or None,
                "data": data_label, "compression": str(im.compression)}
    profile = profile_model(im.model, loader, multilabel=im.multilabel, patch_sizes=patch_sizes, resize=resize,
                            axes=axes, frames=im.model.config.input_tdim, precision=precision,
                            latency_runs=latency_runs, describe=describe, input_lengths=input_lengths,
                            clip_lengths=clip_lengths, packed=packed, row_tokens=row_tokens)
    kind = point_kind(profile)
    out = Path(out) if out else im.weights.parent / f"eval-{im.weights.stem}-{kind.tag(profile)}"
    result = {"profile": profile, "files": write_profile(profile, out), "weights": im.weights, "stored": None,
              "store_error": None}
    if store and kind.chooses:
        try:
            result["stored"] = store_profile(profile, profile_path(im.weights))
        except OSError as e:
            result["store_error"] = e
    return result


def is_kfold_run(path) -> bool:
    """Whether ``path`` is the directory of a k-fold run (it holds ``kfold.json``)."""
    return Path(path).is_dir() and (Path(path) / KFOLD_FILE).is_file()


def evaluate_kfold(run_dir, *, split: str = "test", weights: str = "best", out: str | Path | None = None,
                   label: str | None = None, store: bool = True, **options) -> dict:
    """Profile every fold of the k-fold run in ``run_dir`` on its own ``split`` (its test fold)
    with :func:`evaluate_checkpoint` (``weights`` and ``options`` as there: patch sizes, resize,
    axes, precision, ...), then average the folds' profiles (:func:`flexiast.evaluate.fold_mean_profile`).

    Each fold's profile is written as a normal evaluation does (beside its weights, or into
    ``out/fold{k}``) and, with ``store``, stored beside its weights; the fold-averaged profile is
    written into ``out`` (default ``run_dir/eval-STEM-RESIZE-AXES``) and stored nowhere (no
    single model has it). Returns ``profile`` (the average), ``files`` and ``folds`` (each fold's
    :func:`evaluate_checkpoint` result)."""
    run_dir = Path(run_dir)
    table = json.loads((run_dir / KFOLD_FILE).read_text())
    folds = [row["fold"] for row in table["folds"]]
    results = []
    for k in folds:
        fold_dir = run_dir / f"fold{k}"
        if not fold_dir.is_dir():
            raise ValueError(f"{run_dir / KFOLD_FILE} lists fold {k}, but {fold_dir} is missing")
        results.append(evaluate_checkpoint(fold_dir, split=split, weights=weights, store=store,
                                           out=Path(out) / f"fold{k}" if out else None,
                                           label=f"{label or run_dir.name} fold {k}", **options))
    describe = {"checkpoint": str(run_dir), "label": label or None, "weights": weights,
                "data": f"each fold's {split} split (its own fold), from the run's recipe",
                "protocol": table.get("protocol", "held_out"),
                "epoch_chosen_on": table.get("epoch_chosen_on", "validation")}
    profile = fold_mean_profile([r["profile"] for r in results], describe=describe)
    stem = results[0]["weights"].stem
    target = Path(out) if out else run_dir / f"eval-{stem}-{point_kind(profile).tag(profile)}"
    return {"profile": profile, "files": write_profile(profile, target), "folds": results}
