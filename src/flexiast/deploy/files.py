"""Finding a model's files and what they say: a run's weights, its stored profile, and the
features and score function saved with the weights.

A model is only usable with the features it was trained on (and, for clips of their own lengths,
with how its batches were made: :func:`training_batching`). They travel with the weights:
a training run's checkpoint (``inference``, or its recipe for runs written before
checkpoints carried it), a directory written by ``save_pretrained`` (``config.json``), a
flexiast safetensors file (its metadata), a Hugging Face directory
(``preprocessor_config.json``); files that carry none (official AST releases) say nothing,
and the caller names the dataset statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from safetensors import safe_open

from ..checkpoints import CheckpointError, torch_load_safe
from ..config import build_config
from ..engine.run_checkpoint import WEIGHT_FILES, run_weights
from ..features import DATASET_STATS
from ..models.packing import DEFAULT_ROW_TOKENS

__all__ = ["resolve_weights", "profile_path", "stored_inference_info", "training_batching", "weights_stat",
           "WEIGHT_NAMES", "MULTILABEL_DATASETS"]

WEIGHT_NAMES = tuple(WEIGHT_FILES)
#: Datasets whose task is multi-label, for files that do not say.
MULTILABEL_DATASETS = ("audioset",)


def _is_run(path: Path) -> bool:
    return path.is_dir() and any(run_weights(path, n) for n in WEIGHT_NAMES)


def resolve_weights(path: str | Path, weights: str = "best") -> Path:
    """The weights to load: ``RUN_DIR/best.safetensors`` (or ``averaged``, ``last``) for a
    training run, else ``path`` itself."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if not _is_run(path):
        return path
    if weights not in WEIGHT_NAMES:
        raise ValueError(f"weights={weights!r} is not one of {', '.join(WEIGHT_NAMES)}")
    file = run_weights(path, weights)
    if file is None:
        have = [n for n in WEIGHT_NAMES if run_weights(path, n)]
        raise CheckpointError(f"{path}: the run has no {WEIGHT_FILES[weights]} (it has {', '.join(have)}); "
                              f"choose --weights {have[0]}")
    return file


def profile_path(weights: str | Path) -> Path:
    """Where a checkpoint's profile is stored: ``DIR/profile.json`` or ``X.profile.json`` beside ``X.safetensors`` or ``X.pt``."""
    weights = Path(weights)
    if weights.is_dir():
        return weights / "profile.json"
    return weights.with_name(weights.stem + ".profile.json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _info_from_training_file(path: Path) -> dict:
    obj = torch_load_safe(path)
    if not isinstance(obj, dict):
        return {}
    if isinstance(obj.get("inference"), dict):
        return obj["inference"]
    if isinstance(obj.get("run_config"), dict):  # runs written before checkpoints carried "inference"
        cfg = build_config(obj["run_config"], check_files=False)
        phase = min(int(obj.get("progress", {}).get("phase", len(cfg.phases) - 1)), len(cfg.phases) - 1)
        info = {"features": cfg.feature_config().to_dict(), "compression": str(cfg.phase_compression(phase))}
        summary = path.parent / "summary.json"
        if cfg.loss.name in ("bce", "ce"):
            info["multilabel"] = cfg.loss.name == "bce"
        elif summary.exists():
            info["multilabel"] = json.loads(summary.read_text()).get("metric") == "mAP"
        return info
    return {}


def _info_from_hf(directory: Path) -> dict:
    info = {}
    pre = directory / "preprocessor_config.json"
    if pre.exists():
        p = _read_json(pre)
        info["features"] = {"num_mel_bins": p.get("num_mel_bins", 128), "target_length": p.get("max_length", 1024),
                            "mean": p.get("mean", DATASET_STATS["audioset"][0]),
                            "std": p.get("std", DATASET_STATS["audioset"][1]),
                            "sample_rate": p.get("sampling_rate", 16000)}
    problem = _read_json(directory / "config.json").get("problem_type")
    if problem:
        info["multilabel"] = problem == "multi_label_classification"
    return info


def stored_inference_info(weights: Path) -> dict:
    """``{"features": {...}, "multilabel": bool}`` as far as the weights' files say (maybe empty)."""
    weights = Path(weights)
    if weights.is_dir():
        config = weights / "config.json"
        if not config.exists():
            return {}
        data = _read_json(config)
        if data.get("format") == "flexiast":
            return data.get("inference") or {}
        return _info_from_hf(weights)
    if weights.suffix == ".safetensors":
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
        if "flexiast_inference" not in meta:
            return {}
        try:
            return json.loads(meta["flexiast_inference"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{weights}: its flexiast_inference metadata is not valid JSON ({e})") from None
    return _info_from_training_file(weights)


def weights_stat(weights: Path) -> dict:
    """Size and modification time of the weights, so a profile can tell it is stale."""
    weights = Path(weights)
    file = weights / "model.safetensors" if weights.is_dir() else weights
    st = file.stat()
    return {"file": file.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def training_batching(weights: Path, info: dict) -> tuple[str, int]:
    """``(batching, row_tokens)`` the weights were trained with: ``info``'s (the weights' stored
    inference information, where it has ``batching``), else the recipe of the training run whose
    folder holds the weights (``data.batching`` and ``data.row_tokens`` of its ``config.yaml``),
    else ``("fixed", 2048)``: weights from elsewhere were trained on clips of one length."""
    if "batching" in info:
        return str(info["batching"]), int(info.get("row_tokens") or DEFAULT_ROW_TOKENS)
    weights = Path(weights)
    recipe = weights.parent / "config.yaml" if weights.is_file() else None
    data = {}
    if recipe is not None and recipe.is_file():
        try:
            raw = yaml.safe_load(recipe.read_text())
        except yaml.YAMLError as e:
            raise CheckpointError(f"{recipe}: the run's recipe is not valid YAML ({e})") from None
        data = (raw or {}).get("data") or {}
    return str(data.get("batching") or "fixed"), int(data.get("row_tokens") or DEFAULT_ROW_TOKENS)
