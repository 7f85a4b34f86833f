"""Deploying a model: its features, a patch size chosen by budget, audio of any length.

A model is only usable with the features it was trained on. :func:`load_inference_model`
finds them with the weights: a training run (its recipe), a directory written by
:func:`flexiast.checkpoints.save_pretrained` (``config.json``), a Hugging Face directory
(``preprocessor_config.json``), or, for files that carry none (official AST releases),
the dataset statistics the caller names (``features="audioset"``).

:meth:`InferenceModel.predict` scores a clip as training evaluates one
(:func:`flexiast.features.finish_input`: AST's log-mel, zero-padded or cut to the trained
length, normalised, pooled where the model was trained on pooled input). Longer audio is cut into
overlapping windows of the trained length (hop: half a window unless given), each
scored as a training clip, and the window scores (softmax, or sigmoid for multi-label
models) are averaged (or max-pooled). With ``whole=True`` the clip is scored in one pass
instead, the positional grid following its length (:meth:`flexiast.AST.pos_embed_for`).

With a budget (``max_gflops``, ``max_ms``) the patch size is the most accurate row of the
checkpoint's stored profile (:mod:`flexiast.evaluate`) whose cost fits.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .audio import load_audio, resample
from .checkpoints import CheckpointError, torch_load_safe
from .engine.run_checkpoint import WEIGHT_FILES, run_weights
from .evaluate import read_profile
from .features import DATASET_STATS, Compression, FeatureConfig, compress_spec, finish_input, log_mel, normalize
from .hardware import device_capability, resolve_precision
from .models import FlexModel, flops, load_model
from .resize import to_pair

__all__ = ["InferenceModel", "WindowTask", "batched_windows", "load_inference_model", "resolve_weights",
           "profile_path", "choose_patch", "window_starts", "weights_stat", "WEIGHT_NAMES"]

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
        from .config import build_config

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
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
        if "flexiast_inference" not in meta:
            return {}
        try:
            return json.loads(meta["flexiast_inference"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{weights}: its flexiast_inference metadata is not valid JSON ({e})") from None
    return _info_from_training_file(weights)


def choose_patch(profile: dict, *, max_gflops: float | None = None, max_ms: float | None = None) -> dict:
    """The most accurate profiled row whose GFLOPs and latency fit the budgets.

    Ties in the metric go to the cheaper row. Raises, naming the cheapest row, when none fits.
    """
    if max_gflops is None and max_ms is None:
        raise ValueError("give a budget: max_gflops or max_ms")
    metric = profile["metric"]
    fits = [r for r in profile["rows"]
            if (max_gflops is None or r["gflops"] <= max_gflops) and (max_ms is None or r["latency_ms"] <= max_ms)]
    if not fits:
        cheapest = min(profile["rows"], key=lambda r: (r["gflops"], r["latency_ms"]))
        budget = " and ".join(f"{name} {v:g}" for name, v in (("--max-gflops", max_gflops), ("--max-ms", max_ms))
                              if v is not None)
        raise ValueError(f"no profiled patch size fits {budget}: the cheapest, "
                         f"{cheapest['patch'][0]}x{cheapest['patch'][1]}, costs {cheapest['gflops']:.3g} GFLOPs "
                         f"and {cheapest['latency_ms']:.3g} ms per clip")
    return max(fits, key=lambda r: (r[metric], -r["gflops"]))


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Sample offsets of windows ``window`` long every ``hop``, the last one ending at the end."""
    if hop < 1:
        raise ValueError(f"hop of {hop} samples must be positive")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def weights_stat(weights: Path) -> dict:
    """Size and modification time of the weights, so a profile can tell it is stale."""
    weights = Path(weights)
    file = weights / "model.safetensors" if weights.is_dir() else weights
    st = file.stat()
    return {"file": file.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class WindowTask:
    """What runs on a clip's windows and how they make the clip's result.

    ``cut(inference_model, waveform) -> (specs, spans)`` cuts a waveform into the model's
    inputs and their spans in samples (:meth:`InferenceModel.spectrograms`; it runs in data
    loader workers, which get the features but not the network);
    ``compute(specs[B, frames, bins]) -> {name: tensor [B, ...]}`` runs the model on a batch
    of windows (from one clip or many); ``finish(source, samples, spans, input_shape,
    outputs)`` turns one clip's rows of those outputs, in window order, into its result;
    ``setting`` is what every result shares (the patch size chosen, ...).
    """

    cut: Callable[["InferenceModel", torch.Tensor], tuple[torch.Tensor, list[tuple[int, int]]]]
    compute: Callable[[torch.Tensor], dict]
    finish: Callable[..., dict]
    setting: dict = field(default_factory=dict)


def batched_windows(items: Iterable, compute: Callable[[torch.Tensor], dict],
                    batch_size: int) -> Iterator[tuple[object, dict | None]]:
    """Run ``compute`` on batches of ``batch_size`` windows taken across clips, in order.

    ``items`` yields ``(key, specs[windows, frames, bins])`` (``specs`` None for a clip
    that could not be read); yields ``(key, {name: rows of that clip})`` (or ``(key, None)``)
    in the order of ``items``, each as soon as all its windows have run. Windows of
    another shape than those waiting (whole clips of other lengths) start a new batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    waiting: list[list] = []  # [open clip, specs not yet computed]
    opened: deque = deque()  # [key, windows left, output pieces], in the order of items
    count = 0

    def run(n: int) -> None:
        nonlocal count
        taken = []
        while n:
            clip, specs = waiting[0]
            part = specs[:n]
            taken.append((clip, part))
            if len(part) == len(specs):
                waiting.pop(0)
            else:
                waiting[0][1] = specs[len(part):]
            n -= len(part)
        out = compute(torch.cat([part for _, part in taken]))
        start = 0
        for clip, part in taken:
            clip[2].append({k: v[start:start + len(part)] for k, v in out.items()})
            clip[1] -= len(part)
            start += len(part)
        count -= start

    def finished() -> Iterator[tuple[object, dict | None]]:
        while opened and opened[0][1] == 0:
            key, _, pieces = opened.popleft()
            yield key, None if pieces is None else {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}

    for key, specs in items:
        if specs is None:
            opened.append([key, 0, None])
        else:
            if waiting and waiting[-1][1].shape[1:] != specs.shape[1:]:
                run(count)
            clip = [key, len(specs), []]
            opened.append(clip)
            waiting.append([clip, specs])
            count += len(specs)
            while count >= batch_size:
                run(batch_size)
        yield from finished()
    if count:
        run(count)
    yield from finished()


def _machine_name() -> str:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device_capability(device)["name"]


@dataclass
class InferenceModel:
    """A model with its features, its input compression, its score function and its profile.

    The profile (:mod:`flexiast.evaluate`) is read from ``profile_file`` when a budget
    first needs it, so a damaged profile never blocks anything else.
    """

    model: FlexModel
    features: FeatureConfig
    multilabel: bool
    weights: Path
    compression: Compression = Compression()
    profile_file: Path | None = None
    _profile: dict | None = field(default=None, repr=False)
    _fixed: dict = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> dict | None:
        if self._profile is None and self.profile_file is not None and Path(self.profile_file).exists():
            self._profile = read_profile(self.profile_file)
        return self._profile

    @profile.setter
    def profile(self, value: dict | None) -> None:
        self._profile = value

    @property
    def labels(self) -> list[str]:
        return list(self.model.config.labels or (str(i) for i in range(self.model.config.num_classes)))

    @property
    def window_samples(self) -> int:
        """Samples of audio that make one trained clip (``target_length`` frames, compressed)."""
        return self.features.clip_samples(self.compression)

    def inference_info(self, frames: int | None = None) -> dict:
        """What to save with exported weights, for inputs of ``frames`` model frames (default: trained)."""
        features = self.features.to_dict()
        if frames is not None:
            features["target_length"] = frames * self.compression.input_factor
        return {"features": features, "compression": str(self.compression), "multilabel": self.multilabel}

    def _checked_profile(self, max_ms: float | None) -> dict:
        profile = self.profile
        if profile is None:
            raise ValueError(f"{self.weights} has no stored profile ({profile_path(self.weights)}); "
                             f"write one with: flexiast evaluate {self.weights}")
        if profile["input"]["frames"] != self.model.config.input_tdim:
            raise ValueError(f"the profile was measured on {profile['input']['frames']}-frame inputs; this model "
                             f"takes {self.model.config.input_tdim}; evaluate it again")
        stat = profile.get("weights_stat")
        if stat is not None and stat != weights_stat(self.weights):
            warnings.warn(f"the profile of {self.weights} was measured on other weights (their size or time "
                          "differs); evaluate again to budget these", stacklevel=3)
        if max_ms is not None and profile["machine"]["name"] != _machine_name():
            warnings.warn(f"latencies in the profile were measured on {profile['machine']['name']}, not on this "
                          f"machine ({_machine_name()}); --max-ms budgets follow that machine", stacklevel=3)
        return profile

    def choose(self, patch_size=None, *, max_gflops: float | None = None, max_ms: float | None = None,
               resize: str | None = None) -> dict:
        """``{"patch", "resize", "reason", "row"}``: the size given, the budget's, or the stored one.

        Budgets are per clip of the trained length (one window), as profiled.
        """
        if patch_size is not None and (max_gflops is not None or max_ms is not None):
            raise ValueError("give a patch size or a budget, not both")
        if max_gflops is not None or max_ms is not None:
            profile = self._checked_profile(max_ms)
            if resize is not None and resize != profile["resize"]:
                raise ValueError(f"the stored profile was measured with resize={profile['resize']}, "
                                 f"not {resize}; evaluate with --resize {resize} to budget it")
            row = choose_patch(profile, max_gflops=max_gflops, max_ms=max_ms)
            budget = ", ".join(f"{k} {v:g}" for k, v in (("max GFLOPs", max_gflops), ("max ms", max_ms))
                               if v is not None)
            m = profile["metric"]
            reason = (f"most accurate profiled size within {budget}: {m} {row[m]:.4f} on {profile.get('data')}, "
                      f"{row['gflops']:.3g} GFLOPs, {row['latency_ms']:.3g} ms on {profile['machine']['name']}")
            return {"patch": tuple(row["patch"]), "resize": profile["resize"], "reason": reason, "row": row}
        patch = to_pair(patch_size, "patch_size") if patch_size is not None else self.model.config.patch_size
        reason = "given" if patch_size is not None else "stored patch size"
        return {"patch": patch, "resize": resize or "pi", "reason": reason, "row": None}

    def at(self, patch, resize: str = "pi") -> FlexModel:
        """The model fixed at ``patch`` (``model.fixed``), made once per size and method."""
        key = (tuple(to_pair(patch, "patch_size")), resize)
        if key not in self._fixed:
            self._fixed[key] = self.model.fixed(patch_size=key[0], resize=resize).eval()
        return self._fixed[key]

    def waveform(self, audio, sample_rate: int | None = None) -> tuple[str, torch.Tensor]:
        """``(source, mono waveform at the features' rate)`` of a path or of samples at ``sample_rate``."""
        f = self.features
        if isinstance(audio, (str, Path)):
            return str(audio), load_audio(audio, f.sample_rate)
        wave = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
        if sample_rate is not None and sample_rate != f.sample_rate:
            wave = torch.from_numpy(resample(wave.numpy(), sample_rate, f.sample_rate))
        if wave.numel() == 0 or not torch.isfinite(wave).all():
            raise ValueError("the waveform is empty or holds NaN or Inf samples")
        return "<waveform>", wave

    def hop(self, hop_seconds: float | None = None) -> int:
        """Samples between windows of long audio: ``hop_seconds`` in whole frame shifts, or half a window."""
        f, c = self.features, self.compression
        shift_ms = f.frame_shift_ms * (c.factor if c.method == "fshift" else 1)
        shift = f.frame_shift_samples(c)
        if hop_seconds is None:
            return max(shift, self.window_samples // 2 // shift * shift)
        hop = int(round(hop_seconds * f.sample_rate)) // shift * shift
        if not shift <= hop <= self.window_samples:
            raise ValueError(f"hop_seconds={hop_seconds} (--hop) must lie between one frame shift "
                             f"({shift_ms:g} ms) and one window ({self.window_samples / f.sample_rate:g} s), "
                             "or audio between windows would go unscored")
        return hop

    def spectrograms(self, wave: torch.Tensor, hop: int, whole: bool = False) -> tuple[torch.Tensor,
                                                                                      list[tuple[int, int]]]:
        """The model's inputs ``[windows, frames, bins]`` for ``wave`` and each window's span in
        samples: one clip padded as in training, windows ``hop`` apart over longer audio, or with
        ``whole`` the whole clip at its own length."""
        f, c = self.features, self.compression
        if whole and wave.numel() > self.window_samples:  # the whole clip, at its own length
            return compress_spec(normalize(log_mel(wave, f, c), f), c)[None], [(0, wave.numel())]
        if wave.numel() <= self.window_samples:  # one clip, padded as in training
            return finish_input(log_mel(wave, f, c), f, c)[None], [(0, wave.numel())]
        starts = window_starts(wave.numel(), self.window_samples, hop)
        specs = [finish_input(log_mel(wave[s:s + self.window_samples], f, c), f, c) for s in starts]
        return torch.stack(specs), [(s, s + self.window_samples) for s in starts]

    def prediction_task(self, *, patch_size=None, max_gflops: float | None = None, max_ms: float | None = None,
                        resize: str | None = None, top_k: int = 5, hop_seconds: float | None = None,
                        aggregate: str = "mean", whole: bool = False, pos_grid: str = "leading",
                        precision: str = "auto") -> WindowTask:
        """The :class:`WindowTask` of :meth:`predict`: logits per window, and a file's result from them."""
        if aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate={aggregate!r} is not one of mean, max")
        device = next(self.model.parameters()).device
        chosen = resolve_precision(precision, device, setting="precision")
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be at least 1")
        if whole and (max_gflops is not None or max_ms is not None):
            raise ValueError("budgets are profiled per clip of the trained length; with whole=True (--whole) the "
                             "cost grows with the clip: give a patch size instead")
        choice = self.choose(patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize)
        hop = self.hop(hop_seconds)
        model = self.at(choice["patch"], choice["resize"])
        f = self.features
        sr = f.sample_rate

        def compute(specs: torch.Tensor) -> dict:
            with chosen.autocast():
                return {"logits": model(specs.to(device), pos_grid=pos_grid).float().cpu()}

        def finish(source: str, samples: int, spans: list, shape: tuple, outputs: dict) -> dict:
            logits = outputs["logits"]
            scores = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
            total = scores.mean(0) if aggregate == "mean" else scores.max(0).values
            per_window = flops(model.config, tuple(shape)).forward / 1e9
            return {
                "source": source, "duration_s": samples / sr, "patch_size": list(choice["patch"]),
                "resize": choice["resize"], "choice": choice["reason"], "profile_row": choice["row"],
                "compression": str(self.compression), "precision": chosen.name, "gflops_per_window": per_window,
                "gflops_total": per_window * len(spans), "scores": "sigmoid" if self.multilabel else "softmax",
                "aggregate": aggregate if len(spans) > 1 else "none",
                "window_s": samples / sr if whole else f.target_length * f.frame_shift_ms / 1000,
                "hop_s": hop / sr if len(spans) > 1 else None,
                "top": self._top(total, top_k),
                "windows": [{"start_s": a / sr, "end_s": min(b, samples) / sr, "top": self._top(s, top_k)}
                            for (a, b), s in zip(spans, scores)],
            }

        return WindowTask(cut=functools.partial(InferenceModel.spectrograms, hop=hop, whole=whole), compute=compute,
                          finish=finish,
                          setting={"patch_size": list(choice["patch"]), "resize": choice["resize"],
                                   "choice": choice["reason"], "hop_s": hop / sr})

    def run_task(self, task: WindowTask, audio, sample_rate: int | None = None, batch_size: int = 32) -> dict:
        """``task`` on one clip (a path, or a waveform at ``sample_rate``): :meth:`run_tasks`."""
        return self.run_tasks(task, [self.waveform(audio, sample_rate)], batch_size)[0]

    @torch.inference_mode()
    def run_tasks(self, task: WindowTask, clips: list[tuple[str, torch.Tensor]], batch_size: int = 32) -> list[dict]:
        """``task`` on decoded clips ``(source, waveform at the features' rate)``, their windows
        run ``batch_size`` at a time across clips (:func:`batched_windows`), as
        :mod:`flexiast.batch` runs many files; one result per clip, in order."""
        cut = [task.cut(self, wave) for _, wave in clips]
        out = []
        for i, outputs in batched_windows(((i, specs) for i, (specs, _) in enumerate(cut)), task.compute, batch_size):
            (source, wave), (specs, spans) = clips[i], cut[i]
            out.append(task.finish(source, wave.numel(), spans, tuple(specs.shape[1:]), outputs))
        return out

    @torch.inference_mode()
    def predict(self, audio, *, sample_rate: int | None = None, patch_size=None, max_gflops: float | None = None,
                max_ms: float | None = None, resize: str | None = None, top_k: int = 5,
                hop_seconds: float | None = None, aggregate: str = "mean", whole: bool = False,
                pos_grid: str = "leading", batch_size: int = 32, precision: str = "auto") -> dict:
        """Labels with scores for one clip (a path, or a waveform at ``sample_rate``).

        Returns the top ``top_k`` labels of the aggregated scores and, per window, its
        span in seconds and its own top labels; plus the patch size used, why, and the
        GFLOPs per window and in all. :func:`flexiast.batch.predict_files` runs the same
        :meth:`prediction_task` over many files.
        """
        task = self.prediction_task(patch_size=patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize,
                                    top_k=top_k, hop_seconds=hop_seconds, aggregate=aggregate, whole=whole,
                                    pos_grid=pos_grid, precision=precision)
        return self.run_task(task, audio, sample_rate, batch_size)

    def _top(self, scores: torch.Tensor, k: int) -> list[dict]:
        values, idx = scores.topk(min(k, scores.numel()))
        labels = self.labels
        return [{"label": labels[i], "index": int(i), "score": float(v)} for v, i in zip(values.tolist(), idx.tolist())]


def _features(given, info: dict, model: FlexModel, file: Path) -> FeatureConfig:
    cfg = model.config
    shape = {"num_mel_bins": cfg.input_fdim, "target_length": cfg.input_tdim}
    if isinstance(given, str):
        return FeatureConfig.for_dataset(given, **shape)
    if isinstance(given, FeatureConfig):
        return given
    if given is None and "features" not in info:
        raise ValueError(f"{file}: the file does not say which features the model was trained on; "
                         f"name its dataset statistics (features=/--features {', '.join(DATASET_STATS)}, "
                         "or a JSON object of FeatureConfig fields)")
    try:
        return FeatureConfig(**(info["features"] if given is None else {**shape, **given}))
    except TypeError as e:
        raise ValueError(f"features {given if given is not None else info['features']}: {e}; the fields are "
                         f"{', '.join(FeatureConfig.__dataclass_fields__)}") from None


def load_inference_model(path: str | Path, *, weights: str = "best", features: FeatureConfig | str | dict | None = None,
                         compression: str | None = None, multilabel: bool | None = None,
                         device: str | torch.device | None = None, profile: str | Path | None = None) -> InferenceModel:
    """Load weights with their features, score function and stored profile.

    ``path``: a training run (``weights`` picks ``best.safetensors``, ``averaged.safetensors`` or ``last.pt``),
    a saved directory, or any weights file :func:`flexiast.models.load_model` reads.
    ``features`` overrides what the files say: a :class:`FeatureConfig`, a dict of its
    fields (the model's mel bins and frames unless given), or a dataset name (AST's
    statistics for ``audioset``, ``esc50``, ...); required where the files say nothing.
    ``compression`` (``fshift:2``, ...) likewise, for models whose last phase was
    compressed. ``profile`` reads a profile from elsewhere than beside the weights.
    """
    file = resolve_weights(path, weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(file)
    for w in caught:
        if "classifier head initialised at random" in str(w.message):
            raise CheckpointError(f"{file}: the weights hold no classifier head (an ImageNet or encoder-only "
                                  "file?); fine-tune them before predicting")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    info = stored_inference_info(file)
    if multilabel is None and isinstance(features, str):
        multilabel = features in MULTILABEL_DATASETS
    feats = _features(features, info, model, file)
    if feats.kind != model.feature_kind:
        raise ValueError(f"{file}: a {model.arch} model takes {model.feature_kind} features; the files give "
                         f"{feats.kind}")
    comp = Compression.parse(compression if compression is not None else info.get("compression"))
    cfg = model.config
    if feats.num_mel_bins != cfg.input_fdim:
        raise ValueError(f"{file}: the model takes {cfg.input_fdim} mel bins, the features give {feats.num_mel_bins}")
    if feats.frames(comp) != cfg.input_tdim:
        raise ValueError(f"{file}: the model takes {cfg.input_tdim} frames; the features give {feats.frames(comp)} "
                         f"(target_length {feats.target_length}, compression {comp}); give the model's features")
    if multilabel is None:
        if "multilabel" not in info:
            warnings.warn(f"{file}: the files do not say whether the task is multi-label; scores are softmax "
                          "(pass multilabel=True / --multilabel for sigmoid)", stacklevel=2)
        multilabel = bool(info.get("multilabel", False))
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return InferenceModel(model.to(device).eval(), feats, multilabel, file, comp,
                          Path(profile) if profile is not None else profile_path(file))


def format_prediction(result: dict, windows: bool = True) -> str:
    """A prediction as lines of text: the choice, the top labels, and the windows."""
    f, t = result["patch_size"]
    lines = [f"{result['source']}: {result['duration_s']:.2f} s, patch {f}x{t} ({result['resize'].upper()}; "
             f"{result['choice']}), {result['gflops_per_window']:.3g} GFLOPs per window"]
    n = len(result["windows"])
    if n > 1:
        lines.append(f"  {n} windows of {result['window_s']:.2f} s, hop {result['hop_s']:.2f} s, "
                     f"{result['aggregate']} of {result['scores']} scores; {result['gflops_total']:.3g} GFLOPs in all")
    lines += [f"  {i + 1}. {x['label']}  {x['score']:.4f}" for i, x in enumerate(result["top"])]
    if windows and n > 1:
        width = max(4, math.ceil(math.log10(max(result["duration_s"], 1) + 1)) + 3)
        for w in result["windows"]:
            best = w["top"][0]
            lines.append(f"    [{w['start_s']:{width}.2f} - {w['end_s']:{width}.2f} s]  {best['label']}  {best['score']:.4f}")
    return "\n".join(lines)
