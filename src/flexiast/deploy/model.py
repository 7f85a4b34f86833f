"""A deployable model: weights with their features, input compression, score function and
stored profile, at any operating point.

:func:`load_inference_model` reads the weights and what their files say
(:mod:`flexiast.deploy.files`). :class:`InferenceModel` turns audio into the model's inputs
as training did (:func:`flexiast.features.finish_input`: the log-mel, zero-padded or cut to
the trained length, normalised, compressed as the last phase was), cuts longer audio into
windows (:mod:`flexiast.deploy.windows`), chooses an operating point (:mod:`flexiast.deploy.budget`)
and runs a :class:`~flexiast.deploy.windows.WindowTask` (prediction, embeddings) on one
clip or many. Nothing here asks which family the model is: the operating point says what a
call runs at (:mod:`flexiast.models.points`).

Clips of their own lengths (ElasticAST, Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv
2407.08691). For a family that packs, a point may be ``packed`` (:meth:`InferenceModel.packing`:
asked for, or by default when the weights were trained with ``data.batching: packed``): audio
no longer than a window then runs at its own length, padded only to the fewest frames the point
takes, and the windows of many files share packed rows (of ``row_tokens`` tokens); longer audio
is windowed as before, each window at most the frames whose tokens fit one row
(:func:`flexiast.models.spans.clip_span`), so no audio is dropped. A family that
cannot pack keeps windows padded to the trained length (with a warning where packing was asked).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import load_audio, resample
from ..checkpoints import CheckpointError
from ..features import (DATASET_STATS, Compression, FeatureConfig, compress_spec, finish_input, log_mel, normalize,
                        pad_or_cut)
from ..hardware import device_capability
from ..models import FlexModel, family_of, load_model
from ..models.packing import DEFAULT_ROW_TOKENS
from ..models.points import OperatingPoint, PointKind, pooled_compression
from ..models.spans import clip_span, fewest_frames
from ..profiles import read_profile
from .budget import Choice, PointRequest, choose_point
from .files import (MULTILABEL_DATASETS, profile_path, resolve_weights, stored_inference_info, training_batching,
                    weights_stat)
from .predict import PredictOptions, prediction_task
from .windows import WindowTask, batched_windows, grid_window_starts, window_starts

__all__ = ["InferenceModel", "load_inference_model"]


def machine_name() -> str:
    """The name of the device this process computes on (a profile's latencies belong to one)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device_capability(device)["name"]


@dataclass
class InferenceModel:
    """A model with its features, its input compression, its score function and its profile.

    The profile (:mod:`flexiast.evaluate`) is read from ``profile_file`` when a budget
    first needs it, so a damaged profile never blocks anything else. ``batching`` and
    ``row_tokens`` are how the weights were trained (``fixed``, or ``packed`` into rows of that
    many tokens): what :meth:`packing` follows by default.
    """

    model: FlexModel
    features: FeatureConfig
    multilabel: bool
    weights: Path
    compression: Compression = Compression()
    profile_file: Path | None = None
    _profile: dict | None = field(default=None, repr=False)
    _fixed: dict = field(default_factory=dict, repr=False)
    batching: str = "fixed"
    row_tokens: int = DEFAULT_ROW_TOKENS

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
    def points(self) -> PointKind:
        """What the model's calls vary (its family's kind of operating point)."""
        return family_of(self.model).points

    @property
    def packs(self) -> bool:
        """Whether the model's family takes packed clips of their own lengths (``ModelFamily.packs``)."""
        return family_of(self.model).packs

    def packing(self, packed: bool | None = None) -> bool:
        """Whether clips run at their own lengths, packed: ``packed`` as asked, or (None) as the
        weights were trained (``batching``). A family that cannot pack runs windows padded to the
        trained length, as it was trained; asking it to pack warns and does that."""
        if packed is None:
            return self.batching == "packed" and self.packs
        if packed and not self.packs:
            warnings.warn(f"packed: a {self.model.arch} model cannot take packed clips (its family does not pack); "
                          "its audio runs in windows padded to the trained length", stacklevel=3)
            return False
        return bool(packed)

    def clip_frames(self, seconds: float) -> int:
        """The model frames the leading ``seconds`` of audio give (a pooled frame counts when all its
        front-end frames do), at least 1: the length a clip is cut to at ``seconds``."""
        c = self.compression
        pool = c.factor if c.method in ("avgpool", "maxpool") else 1
        if not seconds > 0:
            raise ValueError(f"a clip length of {seconds!r} s must be positive")
        return max(1, self.features.num_frames(int(round(seconds * self.features.sample_rate)), c) // pool)

    @property
    def window_samples(self) -> int:
        """Samples of audio that make one trained clip (``target_length`` frames, compressed)."""
        return self.features.clip_samples(self.compression)

    @property
    def sed(self) -> bool:
        """Whether the model gives framewise scores (``model.sed``: HTS-AT), so that
        :meth:`predict` detects sound events."""
        return callable(getattr(self.model, "sed", None))

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
                          "differs); evaluate again to budget these", stacklevel=4)
        if max_ms is not None and profile["machine"]["name"] != machine_name():
            warnings.warn(f"latencies in the profile were measured on {profile['machine']['name']}, not on this "
                          f"machine ({machine_name()}); --max-ms budgets follow that machine", stacklevel=4)
        return profile

    def choose(self, request: PointRequest | None = None, **fields) -> Choice:
        """The operating point of ``request`` (or of its fields: ``patch_size``, ``max_gflops``,
        ``max_ms``, ``resize``, ``pos_grid``): the point given, the budget's (per clip of the
        trained length, as profiled: the most accurate row of the stored profile whose cost
        fits) or the stored one. Options the family's calls do not take are refused, naming them."""
        request = (request or PointRequest(**fields)).request()
        profile = self._checked_profile(request.max_ms) if request.budget else None
        choice = choose_point(self.points, self.model.config, request, arch=self.model.arch, profile=profile)
        packed = self.packing(request.packed)
        if packed == choice.point.packed:
            return choice
        return dataclasses.replace(choice, point=dataclasses.replace(choice.point, packed=packed))

    def deployed(self, choice: Choice, row_tokens: int | None = None) -> "InferenceModel":
        """This model as ``choice``'s point is fed (itself where that is the stored one): with the
        compression that pools a window to the point's length, and for a packed point with windows
        of at most the frames whose tokens fit a row of ``row_tokens`` (default: :attr:`row_tokens`)."""
        point = choice.point
        compression = pooled_compression(self.compression, point.pool)
        im = self if compression == self.compression else dataclasses.replace(self, compression=compression)
        if point.packed:
            _, longest = clip_span(self.model.config, point, row_tokens or self.row_tokens)
            if longest < im.features.frames(im.compression):
                im = dataclasses.replace(im, features=dataclasses.replace(
                    im.features, target_length=longest * im.compression.input_factor))
        return im

    def fewest_frames(self, point: OperatingPoint) -> int:
        """The fewest model frames ``point`` takes: what a clip shorter than that is padded to."""
        return fewest_frames(self.model.config, point)

    def at(self, point: OperatingPoint) -> FlexModel:
        """The model fixed at ``point`` (``model.fixed``), made once per point; its positional
        grid policy stays a per-call option (:meth:`OperatingPoint.input_call`)."""
        key = dataclasses.replace(point, pos_grid="leading", size=None, seconds=None)
        if key not in self._fixed:
            self._fixed[key] = key.fixed(self.model).eval()
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

    def spectrograms(self, wave: torch.Tensor, hop: int, whole: bool = False, grid: int | None = None,
                     fewest: int | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The model's inputs ``[windows, frames, bins]`` for ``wave`` and each window's span in
        samples: one clip padded as in training, windows ``hop`` apart over longer audio, or with
        ``whole`` the whole clip at its own length. With ``fewest`` (a packed point's fewest model
        frames) a clip no longer than a window runs at its own length too, padded to ``fewest``
        frames where shorter. With ``grid`` (samples per model frame) every window starts on the
        frame grid (:func:`grid_window_starts`)."""
        f, c = self.features, self.compression
        if whole and wave.numel() > self.window_samples:  # the whole clip, at its own length
            return compress_spec(normalize(log_mel(wave, f, c), f), c)[None], [(0, wave.numel())]
        if wave.numel() <= self.window_samples and fewest is not None:  # one clip, at its own length
            pool = c.factor if c.method in ("avgpool", "maxpool") else 1
            spec = log_mel(wave, f, c)
            spec = pad_or_cut(spec, fewest * pool, f.pad_value) if spec.shape[-2] < fewest * pool else spec
            return compress_spec(normalize(spec, f), c)[None], [(0, wave.numel())]
        if wave.numel() <= self.window_samples:  # one clip, padded as in training
            return finish_input(log_mel(wave, f, c), f, c)[None], [(0, wave.numel())]
        starts = (window_starts(wave.numel(), self.window_samples, hop) if grid is None
                  else grid_window_starts(wave.numel(), self.window_samples, hop, grid))
        specs = [finish_input(log_mel(wave[s:s + self.window_samples], f, c), f, c) for s in starts]
        return torch.stack(specs), [(s, s + self.window_samples) for s in starts]

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
        items = ((i, specs) for i, (specs, _) in enumerate(cut))
        for i, outputs in batched_windows(items, task.compute, batch_size, packed=task.packed):
            (source, wave), (specs, spans) = clips[i], cut[i]
            out.append(task.finish(source, wave.numel(), spans, tuple(specs.shape[1:]), outputs))
        return out

    def prediction_task(self, options=None, **fields) -> WindowTask:
        """The :class:`WindowTask` of :meth:`predict` (:func:`flexiast.deploy.predict.prediction_task`)."""
        return prediction_task(self, options if options is not None else PredictOptions(**fields))

    @torch.inference_mode()
    def predict(self, audio, options=None, *, sample_rate: int | None = None, batch_size: int = 32, **fields) -> dict:
        """Labels with scores for one clip (a path, or a waveform at ``sample_rate``), as
        :class:`~flexiast.deploy.predict.PredictOptions` (or its fields: ``patch_size``,
        ``max_gflops``, ``top_k``, ``threshold``, ...) say; :func:`flexiast.deploy.predict.prediction_task`
        says what the result holds. :func:`flexiast.batch.predict_files` runs the same task over many files."""
        return self.run_task(self.prediction_task(options, **fields), audio, sample_rate, batch_size)


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
    its embeddings; a classifier is required otherwise. How the weights were trained, fixed or
    packed (:func:`~flexiast.deploy.files.training_batching`), sets whether clips run packed by default.
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
    batching, row_tokens = training_batching(file, info)
    return InferenceModel(model.to(device).eval(), feats, multilabel, file, comp,
                          Path(profile) if profile is not None else profile_path(file), batching=batching,
                          row_tokens=row_tokens)
