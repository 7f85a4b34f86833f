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

A family without patch sizes (HTS-AT: ``ModelFamily.patch_calls`` False) is run with no
call options at its trained input length; a given patch size is refused, naming the
family, and a budget picks a row of its input-length profile (the windows then
average-pooled to that length). A model with framewise output (``model.sed``) also gets
sound events: its framewise scores, windows stitched so each frame of the audio is
scored once (:func:`stitch_framewise`), and the runs above a threshold (:func:`detect_events`).
"""

from __future__ import annotations

import dataclasses
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
from .models import FlexModel, family_of, flops, load_model, patch_call
from .resize import to_pair

__all__ = ["InferenceModel", "WindowTask", "batched_windows", "load_inference_model", "resolve_weights",
           "profile_path", "choose_patch", "window_starts", "grid_window_starts", "weights_stat", "WEIGHT_NAMES",
           "stitch_framewise", "detect_events", "pooled_compression", "SED_THRESHOLD"]

#: The default score above which a frame counts as an event (:func:`detect_events`).
SED_THRESHOLD = 0.5

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
        if profile.get("row_kind") == "input_length":
            raise ValueError(f"no profiled input length fits {budget}: the cheapest, {cheapest['frames']} frames "
                             f"({cheapest['compression']}), costs {cheapest['gflops']:.3g} GFLOPs "
                             f"and {cheapest['latency_ms']:.3g} ms per clip")
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


def grid_window_starts(num_samples: int, window: int, hop: int, grid: int) -> list[int]:
    """:func:`window_starts` with every start on a multiple of ``grid`` samples (``hop`` must be
    one): the last window starts at the first multiple at or after ``num_samples - window``,
    so it may run up to ``grid - 1`` samples past the end (padded as a short clip is). With
    ``grid`` one model frame, every window's frames lie on one grid of the audio's frames."""
    if hop % grid:
        raise ValueError(f"hop of {hop} samples is not a whole number of {grid}-sample frames")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(-(-(num_samples - window) // grid) * grid)
    return starts


def pooled_compression(base: Compression, factor: int) -> Compression:
    """``base`` followed by average pooling of time by ``factor``: how a model is fed a profile's
    shorter input length (:func:`flexiast.evaluate.profile_model`) when deployed."""
    if factor == 1:
        return base
    if base.method == "none":
        return Compression("avgpool", factor)
    if base.method == "avgpool":
        return Compression("avgpool", base.factor * factor)
    raise ValueError(f"the model's input is compressed by {base}; a profiled input length that pools it by a "
                     f"further {factor} cannot be deployed on top of that (only on none or avgpool)")


def stitch_framewise(starts: list[int], frames_per_window: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which window scores each of the audio's ``total`` frames, and at which of its frames.

    Window ``w`` begins at the audio's frame ``starts[w]`` (a whole number of frames) and
    holds ``frames_per_window`` frames. Each audio frame ``g`` is scored once, by the window
    in which it lies most centrally: among the windows holding it (``0 <= g - starts[w] <
    frames_per_window``), the one whose frame ``g - starts[w]`` is nearest the window's
    middle frame ``(frames_per_window - 1) / 2``; on a tie, the earlier window. Returns
    ``(window [total], frame in that window [total])``. Raises where a frame lies in no window.
    """
    n = frames_per_window
    start = torch.tensor(starts, dtype=torch.long)
    if len(starts) > 1 and not bool((start[1:] > start[:-1]).all()):
        raise ValueError(f"window starts {starts} must increase")
    g = torch.arange(total, dtype=torch.long)
    # Windows of one length: the one whose middle is nearest holds g whenever any window does,
    # so each frame needs only the two windows whose (doubled) middles bracket 2g: O(frames).
    middle = 2 * start + (n - 1)  # twice each window's middle frame, increasing
    after = torch.searchsorted(middle, 2 * g).clamp(max=len(starts) - 1)  # first middle >= 2g
    before = (after - 1).clamp(min=0)
    earlier = (2 * g - middle[before]).abs() <= (middle[after] - 2 * g).abs()  # a tie: the earlier window
    window = torch.where(earlier, before, after)
    local = g - start[window]
    if not bool(((local >= 0) & (local < n)).all()):
        raise ValueError("some frames lie in no window")
    return window, local


def detect_events(scores: torch.Tensor, labels: list[str], *, hop_s: float, first_s: float = 0.0,
                  duration_s: float | None = None, threshold: float = SED_THRESHOLD, min_duration_s: float = 0.0,
                  merge_gap_s: float = 0.0) -> list[dict]:
    """Events from framewise scores ``[frames, classes]``: per class, each run of consecutive
    frames whose score is above ``threshold`` (strictly) is one event.

    Frame ``g`` is centred at ``first_s + g * hop_s`` seconds and stands for the ``hop_s``
    around its centre, so an event of frames ``a .. b`` runs from ``first_s + (a - 1/2)
    hop_s`` to ``first_s + (b + 1/2) hop_s``, clipped to ``[0, duration_s]``. Events of one
    class that are ``merge_gap_s`` or less apart are merged first; events shorter than
    ``min_duration_s`` are then dropped. An event's ``score`` is the largest frame score in
    it. Returns ``{"onset_s", "offset_s", "label", "index", "score"}`` (times rounded to the
    microsecond) sorted by onset (then class index).
    """
    if scores.dim() != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores of shape {tuple(scores.shape)}: expected [frames, {len(labels)} classes]")
    if min_duration_s < 0 or merge_gap_s < 0:
        raise ValueError(f"min_duration_s={min_duration_s} and merge_gap_s={merge_gap_s} must not be negative")
    above = (scores > threshold).cpu()
    edges = torch.diff(torch.nn.functional.pad(above.to(torch.int8).T, (1, 1)), dim=1)  # [classes, frames + 1]
    events = []
    for c in torch.nonzero(above.any(dim=0)).flatten().tolist():
        firsts = torch.nonzero(edges[c] == 1).flatten().tolist()  # a run's first frame
        lasts = (torch.nonzero(edges[c] == -1).flatten() - 1).tolist()  # its last
        runs = []  # [first frame, last frame], runs merged across gaps of merge_gap_s or less
        for a, b in zip(firsts, lasts):
            if runs and (a - runs[-1][1] - 1) * hop_s <= merge_gap_s + 1e-9:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        for a, b in runs:
            onset = max(0.0, first_s + (a - 0.5) * hop_s)
            offset = first_s + (b + 0.5) * hop_s
            if duration_s is not None:
                offset = min(offset, duration_s)
            if offset - onset + 1e-9 < min_duration_s:
                continue
            events.append({"onset_s": round(onset, 6), "offset_s": round(offset, 6), "label": labels[c], "index": c,
                           "score": float(scores[a:b + 1, c].max())})
    return sorted(events, key=lambda e: (e["onset_s"], e["index"]))


@dataclass(frozen=True)
class _Compressed:
    """A window cutter run with another compression than the model's own (a profiled input length)."""

    cut: Callable
    compression: Compression

    def __call__(self, im: "InferenceModel", wave: torch.Tensor):
        return self.cut(dataclasses.replace(im, compression=self.compression), wave)


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

    @property
    def patch_calls(self) -> bool:
        """Whether the model's calls take a patch size (an AST's do; an HTS-AT's do not)."""
        return family_of(self.model).patch_calls

    @property
    def sed(self) -> bool:
        """Whether the model gives framewise scores (``model.sed``: HTS-AT), so that
        :meth:`predict` detects sound events."""
        return callable(getattr(self.model, "sed", None))

    def _refuse_patch(self, patch_size, resize) -> None:
        given = [name for name, v in (("patch_size (--patch-size)", patch_size), ("resize (--resize)", resize))
                 if v is not None]
        if given:
            raise ValueError(f"{' and '.join(given)}: a {self.model.arch} model takes no patch size (its family's "
                             "calls have none: the patches are fixed by the weights and the tokens follow the input "
                             "length); leave it out, or budget with --max-gflops/--max-ms over input lengths")

    def choose(self, patch_size=None, *, max_gflops: float | None = None, max_ms: float | None = None,
               resize: str | None = None) -> dict:
        """``{"patch", "resize", "reason", "row"}``: the size given, the budget's, or the stored one.

        Budgets are per clip of the trained length (one window), as profiled. For a family
        without patch sizes (HTS-AT) ``patch`` and ``resize`` are None, a given ``patch_size``
        or ``resize`` is refused, and the choice adds ``frames`` (the model's input length)
        and ``compression`` (how a window of the trained length is brought to it): the stored
        length and compression, or a budget's row of an input-length profile
        (:func:`flexiast.evaluate.profile_model`: the window average-pooled by a whole factor).
        """
        if not self.patch_calls:
            return self._choose_length(patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize)
        if patch_size is not None and (max_gflops is not None or max_ms is not None):
            raise ValueError("give a patch size or a budget, not both")
        if max_gflops is not None or max_ms is not None:
            profile = self._checked_profile(max_ms)
            if profile.get("row_kind", "patch_size") != "patch_size":
                raise ValueError(f"the stored profile's rows are {profile['row_kind']}s, not patch sizes; "
                                 "evaluate this model again")
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

    def _choose_length(self, patch_size, *, max_gflops, max_ms, resize) -> dict:
        self._refuse_patch(patch_size, resize)
        frames = self.model.config.input_tdim
        if max_gflops is None and max_ms is None:
            return {"patch": None, "resize": None, "frames": frames, "compression": str(self.compression),
                    "reason": "stored input length", "row": None}
        profile = self._checked_profile(max_ms)
        if profile.get("row_kind") != "input_length":
            raise ValueError(f"the stored profile of this {self.model.arch} model has no input-length rows; "
                             f"evaluate it again (flexiast evaluate {self.weights})")
        row = choose_patch(profile, max_gflops=max_gflops, max_ms=max_ms)
        factor = frames // row["frames"]
        if factor * row["frames"] != frames:
            raise ValueError(f"the profiled input length {row['frames']} does not divide the model's {frames} frames; "
                             "evaluate this model again")
        compression = pooled_compression(self.compression, factor)
        budget = ", ".join(f"{k} {v:g}" for k, v in (("max GFLOPs", max_gflops), ("max ms", max_ms)) if v is not None)
        m = profile["metric"]
        reason = (f"most accurate profiled input length within {budget}: {row['frames']} frames "
                  f"(compression {compression}), {m} {row[m]:.4f} on {profile.get('data')}, "
                  f"{row['gflops']:.3g} GFLOPs, {row['latency_ms']:.3g} ms on {profile['machine']['name']}")
        return {"patch": None, "resize": None, "frames": row["frames"], "compression": str(compression),
                "reason": reason, "row": row}

    def deployed(self, choice: dict) -> "InferenceModel":
        """This model with the compression of ``choice`` (itself where it is the stored one)."""
        compression = Compression.parse(choice.get("compression")) if "compression" in choice else self.compression
        return self if compression == self.compression else dataclasses.replace(self, compression=compression)

    def at(self, patch, resize: str = "pi", frames: int | None = None) -> FlexModel:
        """The model fixed at ``patch`` (``model.fixed``), made once per size and method; for a
        family without patch sizes (``patch`` None) fixed at ``frames`` (default: its own)."""
        if not self.patch_calls:
            if patch is not None:
                self._refuse_patch(patch, None)
            key = ("frames", frames)
            if key not in self._fixed:
                self._fixed[key] = self.model.fixed(input_tdim=frames, **patch_call(None)).eval()
            return self._fixed[key]
        key = (tuple(to_pair(patch, "patch_size")), resize)
        if key not in self._fixed:
            self._fixed[key] = self.model.fixed(patch_size=key[0], resize=resize).eval()
        return self._fixed[key]

    def frame_timing(self) -> tuple[float, float]:
        """``(hop_s, first_s)``: seconds between the model's input frames and the centre of
        frame 0 from the start of its window. A centred front end (``slaney_logmel``)
        centres frame ``t`` on sample ``t * shift``; Kaldi's frame ``t`` starts there and is
        centred half a frame length later. ``shift`` is ``C`` times longer under fshift; under
        avg/max pooling a model frame is ``C`` front-end frames, centred on their middle."""
        f, c = self.features, self.compression
        shift = f.frame_shift_samples(c)
        pool = c.factor if c.method in ("avgpool", "maxpool") else 1
        offset = 0.0 if f.centered else f.frame_length_samples() / 2
        return pool * shift / f.sample_rate, ((pool - 1) / 2 * shift + offset) / f.sample_rate

    def audio_frames(self, samples: int) -> int:
        """The model frames that ``samples`` of audio give (a pooled frame counts if its first
        front-end frame does), at least 1."""
        c = self.compression
        pool = c.factor if c.method in ("avgpool", "maxpool") else 1
        return max(1, -(-self.features.num_frames(samples, c) // pool))

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

    def spectrograms(self, wave: torch.Tensor, hop: int, whole: bool = False,
                     grid: int | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The model's inputs ``[windows, frames, bins]`` for ``wave`` and each window's span in
        samples: one clip padded as in training, windows ``hop`` apart over longer audio, or with
        ``whole`` the whole clip at its own length. With ``grid`` (samples per model frame) every
        window starts on the frame grid (:func:`grid_window_starts`)."""
        f, c = self.features, self.compression
        if whole and wave.numel() > self.window_samples:  # the whole clip, at its own length
            return compress_spec(normalize(log_mel(wave, f, c), f), c)[None], [(0, wave.numel())]
        if wave.numel() <= self.window_samples:  # one clip, padded as in training
            return finish_input(log_mel(wave, f, c), f, c)[None], [(0, wave.numel())]
        starts = (window_starts(wave.numel(), self.window_samples, hop) if grid is None
                  else grid_window_starts(wave.numel(), self.window_samples, hop, grid))
        specs = [finish_input(log_mel(wave[s:s + self.window_samples], f, c), f, c) for s in starts]
        return torch.stack(specs), [(s, s + self.window_samples) for s in starts]

    def prediction_task(self, *, patch_size=None, max_gflops: float | None = None, max_ms: float | None = None,
                        resize: str | None = None, top_k: int = 5, hop_seconds: float | None = None,
                        aggregate: str = "mean", whole: bool = False, pos_grid: str = "leading",
                        precision: str = "auto", threshold: float | None = None, framewise: bool = False,
                        min_duration_s: float = 0.0, merge_gap_s: float = 0.0) -> WindowTask:
        """The :class:`WindowTask` of :meth:`predict`: logits per window, and a file's result from them."""
        if not family_of(self.model).classifier:
            raise ValueError(f"{self.weights}: a {self.model.arch} pretraining model has no classifier to predict with; "
                             "take its embeddings, or fine-tune it")
        if aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate={aggregate!r} is not one of mean, max")
        if not self.sed and (threshold is not None or framewise or min_duration_s or merge_gap_s):
            raise ValueError(f"threshold (--threshold), framewise (--framewise), min_duration_s and merge_gap_s "
                             f"detect sound events; a {self.model.arch} model has no framewise output (no sed)")
        if not self.patch_calls and pos_grid != "leading":
            raise ValueError(f"pos_grid={pos_grid!r} (--pos-grid): a {self.model.arch} model has no positional grid "
                             "to resize; its tokens follow the input length")
        if min_duration_s < 0 or merge_gap_s < 0:
            raise ValueError(f"min_duration_s={min_duration_s} and merge_gap_s={merge_gap_s} must not be negative")
        device = next(self.model.parameters()).device
        chosen = resolve_precision(precision, device, setting="precision")
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be at least 1")
        if whole and (max_gflops is not None or max_ms is not None):
            raise ValueError("budgets are profiled per clip of the trained length; with whole=True (--whole) the "
                             "cost grows with the clip: give a patch size instead")
        choice = self.choose(patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize)
        if not self.patch_calls:
            return self._length_task(choice, chosen, device, top_k=top_k, hop_seconds=hop_seconds,
                                     aggregate=aggregate, whole=whole, threshold=threshold, framewise=framewise,
                                     min_duration_s=min_duration_s, merge_gap_s=merge_gap_s)
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

    def _length_task(self, choice: dict, chosen, device, *, top_k: int, hop_seconds, aggregate: str, whole: bool,
                     threshold, framewise: bool, min_duration_s: float, merge_gap_s: float) -> WindowTask:
        """:meth:`prediction_task` for a family without patch sizes: the model fixed at the chosen
        input length, and for a model with ``sed`` the framewise scores stitched across windows
        and the events above ``threshold``."""
        im = self.deployed(choice)
        model = self.at(None, frames=choice["frames"])
        sed = self.sed
        threshold = SED_THRESHOLD if threshold is None else float(threshold)
        f = im.features
        sr = f.sample_rate
        frame_hop_s, first_s = im.frame_timing()
        frame_samples = int(round(frame_hop_s * sr))  # a whole number of front-end shifts
        hop = im.hop(hop_seconds)
        if sed:
            hop = max(frame_samples, hop // frame_samples * frame_samples)
        cut = functools.partial(InferenceModel.spectrograms, hop=hop, whole=whole,
                                grid=frame_samples if sed else None)
        if im.compression != self.compression:
            cut = _Compressed(cut, im.compression)
        multilabel = self.multilabel

        def compute(specs: torch.Tensor) -> dict:
            with chosen.autocast():
                if not sed:
                    return {"logits": model(specs.to(device)).float().cpu()}
                out = model.sed(specs.to(device))
                return {"logits": out.clip.float().cpu(), "framewise": out.framewise.float().cpu()}

        def score(logits: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)

        def finish(source: str, samples: int, spans: list, shape: tuple, outputs: dict) -> dict:
            scores = score(outputs["logits"])
            total = scores.mean(0) if aggregate == "mean" else scores.max(0).values
            per_window = flops(model.config, tuple(shape)).forward / 1e9
            result = {
                "source": source, "duration_s": samples / sr, "patch_size": None, "resize": None,
                "input_frames": int(shape[0]), "choice": choice["reason"], "profile_row": choice["row"],
                "compression": str(im.compression), "precision": chosen.name, "gflops_per_window": per_window,
                "gflops_total": per_window * len(spans), "scores": "sigmoid" if multilabel else "softmax",
                "aggregate": aggregate if len(spans) > 1 else "none",
                "window_s": samples / sr if whole else im.window_samples / sr,
                "hop_s": hop / sr if len(spans) > 1 else None,
                "top": self._top(total, top_k),
                "windows": [{"start_s": a / sr, "end_s": min(b, samples) / sr, "top": self._top(s, top_k)}
                            for (a, b), s in zip(spans, scores)],
            }
            if sed:
                frame_scores = score(outputs["framewise"])  # [windows, frames, classes]
                total_frames = im.audio_frames(samples)
                if len(spans) == 1:  # a short clip's padding, or the frames a whole-clip pass gives
                    total_frames = min(total_frames, frame_scores.shape[1])
                starts = [a // frame_samples for a, _ in spans]
                window, local = stitch_framewise(starts, frame_scores.shape[1], total_frames)
                stitched = frame_scores[window, local]  # [frames, classes]
                events = detect_events(stitched, self.labels, hop_s=frame_hop_s, first_s=first_s,
                                       duration_s=samples / sr, threshold=threshold, min_duration_s=min_duration_s,
                                       merge_gap_s=merge_gap_s)
                result["sed"] = {"threshold": threshold, "frame_hop_s": frame_hop_s, "first_frame_s": first_s,
                                 "frames": int(total_frames), "min_duration_s": min_duration_s,
                                 "merge_gap_s": merge_gap_s, "event_score": "max"}
                result["events"] = events
                if framewise:
                    result["framewise"] = {"times_s": [first_s + g * frame_hop_s for g in range(total_frames)],
                                           "labels": self.labels, "scores": stitched.tolist()}
            return result

        setting = {"patch_size": None, "resize": None, "choice": choice["reason"], "hop_s": hop / sr,
                   "input_frames": choice["frames"], "compression": str(im.compression)}
        if sed:
            setting.update(threshold=threshold, framewise=framewise, min_duration_s=min_duration_s,
                           merge_gap_s=merge_gap_s)
        return WindowTask(cut=cut, compute=compute, finish=finish, setting=setting)

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
                pos_grid: str = "leading", batch_size: int = 32, precision: str = "auto",
                threshold: float | None = None, framewise: bool = False, min_duration_s: float = 0.0,
                merge_gap_s: float = 0.0) -> dict:
        """Labels with scores for one clip (a path, or a waveform at ``sample_rate``).

        Returns the top ``top_k`` labels of the aggregated scores and, per window, its
        span in seconds and its own top labels; plus the patch size used, why, and the
        GFLOPs per window and in all. :func:`flexiast.batch.predict_files` runs the same
        :meth:`prediction_task` over many files.

        A model with framewise output (``model.sed``: HTS-AT) also gives ``events``: per
        class, the runs of frames whose score (sigmoid for multi-label models, else softmax
        over the classes) is above ``threshold`` (default 0.5), as ``{"onset_s", "offset_s",
        "label", "index", "score"}`` (:func:`detect_events`; ``min_duration_s`` and
        ``merge_gap_s`` filter and join them), ``sed`` (how: the frame hop and the first
        frame's centre in seconds, the number of frames), and with ``framewise`` the scores of
        every frame (``framewise``: ``times_s``, ``labels``, ``scores [frames][classes]``).
        Windows start on the frame grid, and each frame is scored by the window in which it
        lies most centrally (:func:`stitch_framewise`), so each frame of the audio is scored once.
        """
        task = self.prediction_task(patch_size=patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize,
                                    top_k=top_k, hop_seconds=hop_seconds, aggregate=aggregate, whole=whole,
                                    pos_grid=pos_grid, precision=precision, threshold=threshold,
                                    framewise=framewise, min_duration_s=min_duration_s, merge_gap_s=merge_gap_s)
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
                         device: str | torch.device | None = None, profile: str | Path | None = None,
                         classifier: bool = True) -> InferenceModel:
    """Load weights with their features, score function and stored profile.

    ``path``: a training run (``weights`` picks ``best.safetensors``, ``averaged.safetensors`` or ``last.pt``),
    a saved directory, or any weights file :func:`flexiast.models.load_model` reads.
    ``features`` overrides what the files say: a :class:`FeatureConfig`, a dict of its
    fields (the model's mel bins and frames unless given), or a dataset name (AST's
    statistics for ``audioset``, ``esc50``, ...); required where the files say nothing.
    ``compression`` (``fshift:2``, ...) likewise, for models whose last phase was
    compressed. ``profile`` reads a profile from elsewhere than beside the weights.
    ``classifier=False`` also takes a pretraining model without a classifier (an SSAST), for
    its embeddings; a classifier is required otherwise.
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
    if classifier and not family_of(model).classifier:
        raise CheckpointError(f"{file}: holds a {model.arch} pretraining model (an encoder and masked-patch heads, "
                              "no classifier); fine-tune it first (init.path of a classifier's recipe), or take its "
                              "embeddings (flexiast embed)")
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
    if result["patch_size"] is None:
        compression = f", compression {result['compression']}" if result.get("compression", "none") != "none" else ""
        lines = [f"{result['source']}: {result['duration_s']:.2f} s, {result['input_frames']} input frames"
                 f"{compression} ({result['choice']}), {result['gflops_per_window']:.3g} GFLOPs per window"]
    else:
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
    if "events" in result:
        sed = result["sed"]
        lines.append(f"  {len(result['events'])} event(s) above {sed['threshold']:g} ({result['scores']} scores of "
                     f"{sed['frames']} frames every {1000 * sed['frame_hop_s']:g} ms):")
        lines += [f"    [{e['onset_s']:8.3f} - {e['offset_s']:8.3f} s]  {e['label']}  {e['score']:.4f}"
                  for e in result["events"]]
    return "\n".join(lines)
