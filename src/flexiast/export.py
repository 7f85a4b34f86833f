"""Export at one patch size: ONNX (checked against ONNX Runtime) and Hugging Face.

A deployed model runs at one patch size and input length. :meth:`flexiast.AST.at_patch_size`
bakes the call's resized kernel and positional grid into a plain ViT, so the exported
graph holds no resize (no pseudo-inverse to trace) and costs exactly what that size
costs. The ONNX graph takes ``spec [batch, frames, mel_bins]`` (normalised log-mel, as
:mod:`flexiast.features` makes it; batch is dynamic) and returns ``logits [batch, classes]``.
A JSON file beside it records the features, labels, patch size and score function a
runtime needs to reproduce the preprocessing.

ONNX export needs the ``export`` extra (``onnx``, ``onnxscript``, ``onnxruntime``).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import torch

from .models import FlexModel

__all__ = ["export_onnx", "check_onnx", "export_hf"]


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs {module}: pip install 'flexiast[export]' "
                          "(onnx, onnxscript, onnxruntime)") from None


class _Logits(torch.nn.Module):
    """``spec -> logits`` of a fixed-size model, the one signature the graph exposes."""

    def __init__(self, model: FlexModel):
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model(spec)


def export_onnx(model: FlexModel, path: str | Path, *, patch_size=None, frames: int | None = None, resize: str = "pi",
                pos_grid: str = "leading", opset: int = 18, inference: dict | None = None) -> Path:
    """Write ``model`` at ``patch_size`` for ``frames``-frame inputs to ``path`` (ONNX).

    ``inference`` (features and multi-label flag) is written, with the labels and the
    sizes, to ``path`` with suffix ``.json``.
    """
    _need("onnx")
    _need("onnxscript")
    path = Path(path)
    fixed = model.fixed(patch_size=patch_size, resize=resize, input_tdim=frames, pos_grid=pos_grid).float().cpu().eval()
    cfg = fixed.config
    example = torch.zeros(2, cfg.input_tdim, cfg.input_fdim)
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed": flexiast needs none of its ops
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notices about its own internals
        try:
            program = torch.onnx.export(_Logits(fixed), (example,), dynamo=True, input_names=["spec"],
                                        output_names=["logits"], dynamic_shapes=({0: batch},),
                                        opset_version=opset, verbose=False, external_data=False)
        finally:
            registration.setLevel(level)
    program.save(str(path))
    meta = {"format": "flexiast-onnx", "input": "spec", "input_shape": ["batch", cfg.input_tdim, cfg.input_fdim],
            "output": "logits", "patch_size": list(cfg.patch_size), "stride": list(cfg.stride), "resize": resize,
            "pos_grid": pos_grid, "labels": list(cfg.labels) if cfg.labels else None, **(inference or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def check_onnx(path: str | Path, model: FlexModel, *, patch_size=None, resize: str = "pi", pos_grid: str = "leading",
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
        ref = eager(spec, patch_size=patch_size, resize=resize, pos_grid=pos_grid)
    return float((got - ref).abs().max())


def export_hf(model: FlexModel, directory: str | Path, *, patch_size=None, frames: int | None = None,
              resize: str = "pi", pos_grid: str = "leading", inference: dict | None = None) -> Path:
    """Hugging Face's ``ASTForAudioClassification`` layout at one (square) patch size.

    ``ASTFeatureExtractor`` frames audio one way only (25 ms Hanning windows every 10 ms,
    no compression); features made otherwise are refused, naming the setting, since
    ``transformers`` would silently compute other ones.
    """
    if inference is not None:
        feats = inference.get("features", {})
        fixed_framing = {"frame_length_ms": 25.0, "frame_shift_ms": 10.0, "window": "hanning"}
        for key, value in fixed_framing.items():
            if key in feats and feats[key] != value:
                raise ValueError(f"features.{key}={feats[key]!r}: Hugging Face's ASTFeatureExtractor only "
                                 f"computes {key}={value!r}; export to ONNX or flexiast instead")
        if inference.get("compression", "none") != "none" and not str(inference["compression"]).startswith("patch"):
            raise ValueError(f"compression {inference['compression']}: Hugging Face's ASTFeatureExtractor cannot "
                             "compress time; export to ONNX or flexiast instead")
    fixed = model.fixed(patch_size=patch_size, resize=resize, input_tdim=frames, pos_grid=pos_grid)
    return fixed.save_pretrained(directory, format="hf", inference=inference)
