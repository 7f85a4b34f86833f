"""Export at one patch size: ONNX (checked against ONNX Runtime) and Hugging Face.

A deployed model runs at one patch size and input length. ``model.fixed`` (an AST's
:meth:`~flexiast.AST.at_patch_size`) bakes the call's resized kernel and positional grid
into a plain ViT, so the exported
graph holds no resize (no pseudo-inverse to trace) and costs exactly what that size
costs. The ONNX graph takes ``spec [batch, frames, mel_bins]`` (normalised log-mel, as
:mod:`flexiast.features` makes it; batch is dynamic) and returns ``logits [batch, classes]``.
A JSON file beside it records the features, labels, patch size and score function a
runtime needs to reproduce the preprocessing.

With ``input="waveform"`` the graph holds the preprocessing too (:class:`WaveformFrontEnd`):
it takes ``waveform [batch, samples]`` (float32 at the features' sample rate) and computes
what evaluation computes before the model (:func:`flexiast.features.log_mel`, then
:func:`flexiast.features.finish_input`), so a runtime needs only the audio.

A family without patch sizes (HTS-AT) exports the same way at one input length: ``model.fixed``
at ``frames`` with no call options; a patch size, another resize than ``pi`` or another
``pos_grid`` than ``leading`` is refused, naming the family. HTS-AT's Swin windows are planned
from the (static) input length in Python, so the graph traces; its batch is dynamic, its length
fixed. Hugging Face's layout is an AST's only.

ONNX export needs the ``export`` extra (``onnx``, ``onnxscript``, ``onnxruntime``).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..constants import EXPORT_INPUTS
from ..fbank import _frame_sizes, fbank
from ..features import Compression, FeatureConfig, finish_input, log_mel
from ..logmel import slaney_logmel
from ..models import FlexModel, family_of

__all__ = ["export_onnx", "export_program", "check_onnx", "check_onnx_waveform", "export_hf", "WaveformFrontEnd"]


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs {module}: pip install 'flexiast[export]' "
                          "(onnx, onnxscript, onnxruntime)") from None


def _point(model: FlexModel, patch_size, resize: str | None, pos_grid: str, frames: int | None = None):
    """The operating point to export ``model`` at: an AST's ``patch_size`` (None: the stored one;
    ``resize`` None: PI) and ``pos_grid``, at ``frames``; a family without patches refuses them,
    naming itself (:meth:`flexiast.models.points.PointKind.given`)."""
    return family_of(model).points.given(model.config, arch=model.arch, patch_size=patch_size, resize=resize,
                                          pos_grid=pos_grid, frames=frames)


def _fixed(model: FlexModel, patch_size, resize: str | None, frames: int | None, pos_grid: str) -> FlexModel:
    """``model.fixed`` at the point of :func:`_point`, in fp32 on the CPU, in eval mode."""
    return _point(model, patch_size, resize, pos_grid, frames).fixed(model).float().cpu().eval()


class _Logits(torch.nn.Module):
    """``spec -> logits`` of a fixed-size model, the one signature the graph exposes."""

    def __init__(self, model: FlexModel):
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model(spec)


class WaveformFrontEnd(torch.nn.Module):
    """``waveform [batch, samples] -> [batch, frames, mel_bins]``: the model's input as evaluation makes it.

    Per clip, :func:`~flexiast.features.log_mel` then :func:`~flexiast.features.finish_input`
    for any ``samples``: the features' front end (``features.frontend_kwargs(compression)``),
    zero-padded or cut to ``features.fbank_frames(compression)`` frames, normalised, pooled
    (avgpool / maxpool). The shapes inside do not depend on ``samples``, so
    ``torch.export`` traces it with a symbolic length, and the frames that the clip itself
    does not give are set to ``features.pad_value``, as :func:`~flexiast.features.pad_or_cut` pads them:

    * ``kaldi_fbank``: after the mean is removed, the waveform is zero-padded or cut to
      the samples of exactly ``fbank_frames`` frames (``features.clip_samples``); frame
      ``i`` is the clip's if ``i * shift + window <= samples``. A clip shorter than one
      window gives all-zero frames, as in evaluation.
    * ``slaney_logmel``: the first ``fbank_frames`` centred frames are gathered from the
      clip at its own length (reflected at its ends, :func:`~flexiast.logmel.frame_index`),
      so a frame reaching past the end reads the reflection an eager call reads; frame
      ``i`` is the clip's if ``i * shift <= samples``.
    """

    def __init__(self, features: FeatureConfig, compression: Compression = Compression()):
        super().__init__()
        self.features, self.compression = features, compression
        self.kwargs = features.frontend_kwargs(compression)
        self.frames = features.fbank_frames(compression)
        self.samples = features.clip_samples(compression)
        # The front end's window and mel matrix are built once and cached; building fbank's is
        # not traceable (nonzero), so they are built here, eagerly, and a trace finds them built.
        if features.kind == "slaney_logmel":
            self.window, self.shift = features.frame_length_samples(), features.frame_shift_samples(compression)
            slaney_logmel(torch.zeros(1, self.window), **self.kwargs)
        else:
            self.window, self.shift, _ = _frame_sizes(features.sample_rate, self.kwargs["frame_length_ms"],
                                                      self.kwargs["frame_shift_ms"], True)
            fbank(torch.zeros(1, self.window), chunked=False, **self.kwargs)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be [batch, samples], got {waveform.dim()} dimensions "
                             f"{tuple(waveform.shape)}")
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be float32 samples in [-1, 1], got {waveform.dtype}")
        length = waveform.shape[-1]
        first = torch.arange(self.frames, device=waveform.device) * self.shift
        if self.features.kind == "slaney_logmel":
            spec = slaney_logmel(waveform, frames=self.frames, length=length, **self.kwargs)
            filled = first <= length
        else:
            x = waveform - waveform.mean(dim=-1, keepdim=True)
            x = torch.cat([x, x.new_zeros(x.shape[0], self.samples)], dim=-1)[:, :self.samples]
            spec = fbank(x, chunked=False, **self.kwargs)
            filled = first + self.window <= length
        pad = torch.full((), self.features.pad_value, dtype=spec.dtype, device=spec.device)
        spec = torch.where(filled[:, None], spec, pad)
        return finish_input(spec, self.features, self.compression)


class _WaveformLogits(torch.nn.Module):
    """``waveform -> logits``: :class:`WaveformFrontEnd` then the fixed-size model."""

    def __init__(self, front: WaveformFrontEnd, model: FlexModel):
        super().__init__()
        self.front, self.model = front, model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(self.front(waveform))


#: How the waveform graph's JSON describes each front end and normalisation.
_FRONT_ENDS = {"kaldi_fbank": "mean removed, Kaldi fbank",
               "slaney_logmel": "Slaney log-mel in dB (centred STFT, reflect padding)"}
_NORMALIZED = {"mean_std": "normalised", "none": "not normalised"}


def _inference_features(inference: dict | None) -> tuple[FeatureConfig, Compression]:
    """The features and compression an ``inference`` dict records (needed by a waveform graph)."""
    if not inference or "features" not in inference:
        raise ValueError("a waveform graph computes the features inside: pass inference={'features': ..., "
                         "'compression': ...} (InferenceModel.inference_info())")
    return FeatureConfig(**inference["features"]), Compression.parse(inference.get("compression"))


def _to_onnx(module: torch.nn.Module, example: torch.Tensor, name: str, dynamic: dict, opset: int):
    """``torch.onnx.export(dynamo=True)`` of ``module`` on one example input, without the exporter's chatter."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed": flexiast needs none of its ops
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notices about its own internals
        try:
            return torch.onnx.export(module, (example,), dynamo=True, input_names=[name], output_names=["logits"],
                                     dynamic_shapes=(dynamic,), opset_version=opset, verbose=False,
                                     external_data=False)
        finally:
            registration.setLevel(level)


def _waveform_graph(fixed: FlexModel, inference: dict | None, samples: int | None,
                    dynamic_length: bool) -> tuple[torch.nn.Module, torch.Tensor, dict, dict]:
    """``waveform -> logits`` of a fixed-size model: the module, an example input, its dynamic
    dimensions for ``torch.export`` and what the JSON beside the graph says about the input."""
    if samples is not None and dynamic_length:
        raise ValueError("give samples (a fixed length) or dynamic_length=True, not both")
    if samples is not None and samples < 2:
        raise ValueError(f"samples={samples} must be at least 2")
    cfg = fixed.config
    features, compression = _inference_features(inference)
    if (features.frames(compression), features.num_mel_bins) != (cfg.input_tdim, cfg.input_fdim):
        raise ValueError(f"the features give {features.frames(compression)} frames x {features.num_mel_bins} "
                         f"bins (compression {compression}); the model takes {cfg.input_tdim} x {cfg.input_fdim}")
    front = WaveformFrontEnd(features, compression)
    length = front.samples if samples is None else samples
    example = torch.randn(2, length + (1 if dynamic_length else 0), generator=torch.Generator().manual_seed(0))
    dynamic = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic_length:
        dynamic[1] = torch.export.Dim("samples", min=2, max=2 ** 31 - 1)
    about = dict(input="waveform", input_shape=["batch", "samples" if dynamic_length else length],
                 sample_rate=features.sample_rate, length="dynamic" if dynamic_length else "fixed",
                 samples=None if dynamic_length else length, clip_samples=front.samples,
                 preprocessing=f"in the graph: {_FRONT_ENDS[features.kind]}, zero-padded or cut to "
                               f"{front.frames} frames, {_NORMALIZED[features.normalization]}, "
                               f"compression {compression}")
    return _WaveformLogits(front, fixed), example, dynamic, about


def export_onnx(model: FlexModel, path: str | Path, *, patch_size=None, frames: int | None = None, resize: str | None = None,
                pos_grid: str = "leading", opset: int = 18, inference: dict | None = None,
                input: str = "spectrogram", samples: int | None = None, dynamic_length: bool = False) -> Path:
    """Write ``model`` at ``patch_size`` for ``frames``-frame inputs to ``path`` (ONNX).

    ``inference`` (features, compression and multi-label flag) is written, with the
    labels and the sizes, to ``path`` with suffix ``.json``. The graph returns logits.

    ``input="spectrogram"``: the graph takes ``spec [batch, frames, mel_bins]``, normalised
    log-mel. ``input="waveform"``: it takes ``waveform [batch, samples]`` (float32 at
    ``inference["features"]["sample_rate"]``) and computes the features inside
    (:class:`WaveformFrontEnd`); ``samples`` fixes the length (default: the samples that
    fill the model's frames exactly, ``FeatureConfig.clip_samples``), or
    ``dynamic_length=True`` takes any length of at least 2 samples, cut or zero-padded at
    the frame level as evaluation does. The batch is dynamic either way.
    """
    if input not in EXPORT_INPUTS:
        raise ValueError(f"input={input!r} is not one of {', '.join(EXPORT_INPUTS)}")
    if input == "spectrogram" and (samples is not None or dynamic_length):
        raise ValueError("samples and dynamic_length apply to input='waveform' only")
    _need("onnx")
    _need("onnxscript")
    path = Path(path)
    fixed = _fixed(model, patch_size, resize, frames, pos_grid)
    cfg = fixed.config
    meta = {"format": "flexiast-onnx", "input_kind": input}
    if input == "spectrogram":
        module, name, dynamic = _Logits(fixed), "spec", {0: torch.export.Dim("batch", min=1, max=4096)}
        example = torch.zeros(2, cfg.input_tdim, cfg.input_fdim)
        meta.update(input="spec", input_shape=["batch", cfg.input_tdim, cfg.input_fdim])
    else:
        module, example, dynamic, about = _waveform_graph(fixed, inference, samples, dynamic_length)
        name = "waveform"
        meta.update(about)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = _to_onnx(module, example, name, dynamic, opset)
    program.save(str(path))
    _write_meta(path, meta, cfg, resize, pos_grid, inference)
    return path


def _write_meta(path: Path, meta: dict, cfg, resize: str, pos_grid: str, inference: dict | None) -> None:
    """The JSON beside an exported graph: its input, logits out, the sizes, labels and ``inference``."""
    if hasattr(cfg, "stride"):
        sizes = {"patch_size": list(cfg.patch_size), "stride": list(cfg.stride), "resize": resize or "pi",
                 "pos_grid": pos_grid}
    else:  # a family without patch sizes: its length is the graph's
        sizes = {"arch": cfg.arch, "patch_size": None, "input_frames": cfg.input_tdim}
    meta = {**meta, "output": "logits", **sizes, "labels": list(cfg.labels) if cfg.labels else None,
            **(inference or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def export_program(model: FlexModel, path: str | Path, *, patch_size=None, frames: int | None = None,
                   resize: str | None = None, pos_grid: str = "leading", inference: dict | None = None,
                   samples: int | None = None, dynamic_length: bool = False) -> Path:
    """The waveform graph of :func:`export_onnx` as a ``torch.export`` program (``torch.export.save``).

    Same module, input and JSON as ``export_onnx(input="waveform", ...)``; load it with
    ``torch.export.load(path).module()`` and call it on ``waveform [batch, samples]``.
    """
    path = Path(path)
    fixed = _fixed(model, patch_size, resize, frames, pos_grid)
    module, example, dynamic, about = _waveform_graph(fixed, inference, samples, dynamic_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=(dynamic,))
    torch.export.save(program, str(path))
    _write_meta(path, {"format": "flexiast-torch-export", "input_kind": "waveform", **about}, fixed.config, resize,
                pos_grid, inference)
    return path


def check_onnx(path: str | Path, model: FlexModel, *, patch_size=None, resize: str | None = None, pos_grid: str = "leading",
               batch: int = 2, seed: int = 0) -> float:
    """Largest absolute difference of ONNX Runtime's logits from eager PyTorch's.

    The input is a random normalised spectrogram of the graph's shape (``batch`` clips);
    eager runs the flexible ``model`` at ``patch_size`` (fp32), not the baked copy, so the
    check covers the baking too.
    """
    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    frames, bins = int(shape[1]), int(shape[2])
    spec = torch.randn(batch, frames, bins, generator=torch.Generator().manual_seed(seed))
    got = torch.from_numpy(session.run(None, {"spec": spec.numpy()})[0])
    eager = copy.deepcopy(model).float().cpu().eval()  # the caller's model keeps its dtype, device and mode
    with torch.no_grad():
        ref = eager(spec, **_point(eager, patch_size, resize, pos_grid).call())
    return float((got - ref).abs().max())


def check_onnx_waveform(path: str | Path, model: FlexModel, features: FeatureConfig,
                        compression: Compression = Compression(), waveforms=None, *, patch_size=None,
                        resize: str | None = None, pos_grid: str = "leading", seed: int = 0) -> float:
    """Largest absolute difference of a waveform graph's logits in ONNX Runtime from eager flexiast's.

    ``waveforms``: 1-D float arrays at ``features.sample_rate`` (default: three seeded
    noise clips, half, once and one and a half times ``features.clip_samples``). A
    fixed-length graph gets them zero-padded or cut to its length, all in one batch; a
    dynamic-length graph gets each at its own length. Eager computes flexiast's own input
    for each (:func:`~flexiast.features.log_mel`, :func:`~flexiast.features.finish_input`)
    and runs the flexible ``model`` at ``patch_size`` (fp32), so the check covers the
    front end in the graph, the baking and the export.
    """
    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fixed = session.get_inputs()[0].shape[1]
    fixed = fixed if isinstance(fixed, int) else None
    if waveforms is None:
        rng = np.random.default_rng(seed)
        clip = features.clip_samples(compression)
        waveforms = [rng.standard_normal(n).astype(np.float32) * np.linspace(0.02, 0.3, n, dtype=np.float32)
                     for n in (clip // 2, clip, clip * 3 // 2)]
    waves = [torch.as_tensor(np.asarray(w), dtype=torch.float32).reshape(-1) for w in waveforms]
    if fixed is not None:
        waves = [torch.nn.functional.pad(w[:fixed], (0, max(0, fixed - len(w)))) for w in waves]
        got = [torch.from_numpy(session.run(None, {"waveform": torch.stack(waves).numpy()})[0])]
    else:
        got = [torch.from_numpy(session.run(None, {"waveform": w[None].numpy()})[0]) for w in waves]
    specs = torch.stack([finish_input(log_mel(w, features, compression), features, compression) for w in waves])
    eager = copy.deepcopy(model).float().cpu().eval()  # the caller's model keeps its dtype, device and mode
    with torch.no_grad():
        ref = eager(specs, **_point(eager, patch_size, resize, pos_grid).call())
    return float((torch.cat(got) - ref).abs().max())


def export_hf(model: FlexModel, directory: str | Path, *, patch_size=None, frames: int | None = None,
              resize: str | None = None, pos_grid: str = "leading", inference: dict | None = None) -> Path:
    """Hugging Face's ``ASTForAudioClassification`` layout at one (square) patch size.

    ``ASTFeatureExtractor`` frames audio one way only (25 ms Hanning windows every 10 ms,
    no compression); features made otherwise are refused, naming the setting, since
    ``transformers`` would silently compute other ones.
    """
    if "hf" not in family_of(model).writers:
        raise ValueError(f"format hf: Hugging Face's layout here is ASTForAudioClassification; a {model.arch} "
                         "model is exported to ONNX or flexiast")
    if inference is not None:
        feats = inference.get("features", {})
        kind = feats.get("kind", "kaldi_fbank")
        if kind != "kaldi_fbank":
            raise ValueError(f"features.kind={kind!r}: Hugging Face's ASTFeatureExtractor computes Kaldi fbank "
                             "only; export to ONNX or flexiast instead")
        fixed_framing = {"frame_length_ms": 25.0, "frame_shift_ms": 10.0, "window": "hanning"}
        for key, value in fixed_framing.items():
            if key in feats and feats[key] != value:
                raise ValueError(f"features.{key}={feats[key]!r}: Hugging Face's ASTFeatureExtractor only "
                                 f"computes {key}={value!r}; export to ONNX or flexiast instead")
        if inference.get("compression", "none") != "none" and not str(inference["compression"]).startswith("patch"):
            raise ValueError(f"compression {inference['compression']}: Hugging Face's ASTFeatureExtractor cannot "
                             "compress time; export to ONNX or flexiast instead")
    fixed = model.fixed(patch_size=patch_size, resize=resize or "pi", input_tdim=frames, pos_grid=pos_grid)
    return fixed.save_pretrained(directory, format="hf", inference=inference)
