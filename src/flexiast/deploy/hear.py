"""The HEAR 2021 API (Holistic Evaluation of Audio Representations) for any flexiast model.

HEAR imports a module and calls :func:`load_model`, then :func:`get_scene_embeddings`
and :func:`get_timestamp_embeddings` on batches of sounds ``[n_sounds, n_samples]``
(one length per batch, at ``model.sample_rate``). ``flexiast.hear`` is such a module:

* :func:`load_model` loads any flexiast model, run or weights file
  (:func:`flexiast.deploy.model.load_inference_model`) and fixes its patch size once, given
  or the most accurate one within a budget (:meth:`InferenceModel.choose`), so every
  call embeds at that size;
* a **scene** embedding is :func:`flexiast.embeddings.embed_audio`'s ``clip``: the mean
  over the sound's windows of the pooled tokens of one layer (``head``: the prefix
  tokens, ``mean``: the patch tokens);
* the **timestamp** embeddings are ``embed_audio``'s ``frames``:
  per token column, the mean of its tokens over frequency, one column apart, at the
  centre of the audio the column covers, in milliseconds;
* at a ``packed`` point (ElasticAST, Feng et al., Interspeech 2024, arXiv 2407.08691; by default
  for weights trained packed) a sound no longer than a window is embedded at its own length,
  not padded, and the sounds of a batch run packed together.

The HEAR harness passes only ``model_file_path``. To choose the other options there,
``model_file_path`` may name a JSON **options file** (``*.json``): an object whose
``"model"`` is the weights' path (relative to the file's folder) and whose other keys
are :func:`load_model`'s keyword arguments, e.g.
``{"model": "runs/fsdd", "patch_size": 16, "layer": -1, "pooling": "mean"}``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn as nn

from ..constants import EMBEDDING_POOLINGS
from .budget import Choice, PointRequest
from .embed import EmbedOptions, embedding_task
from .model import InferenceModel, load_inference_model

__all__ = ["HearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings", "read_options"]

#: load_model's keyword arguments and their defaults: what an options file may set.
OPTIONS = {"patch_size": None, "max_gflops": None, "max_ms": None, "resize": None, "layer": None, "pooling": "head",
           "hop_seconds": None, "device": None, "features": None, "weights": "best", "precision": "auto",
           "batch_size": 32, "packed": None, "row_tokens": None}


class HearModel(nn.Module):
    """A flexiast model at one patch size, with HEAR's attributes.

    ``sample_rate``: the rate of the model's features; ``scene_embedding_size`` and
    ``timestamp_embedding_size``: the width of the chosen layer's tokens. ``patch_size``,
    ``resize`` and ``choice`` say which size embeds and why, ``packed`` whether sounds run at
    their own lengths. The network (and its copy
    fixed at that size) are submodules, so ``.to(device)`` moves them.
    """

    def __init__(self, im: InferenceModel, choice: Choice, *, layer: int | None, pooling: str,
                 hop_seconds: float | None, precision: str, batch_size: int, row_tokens: int | None = None):
        super().__init__()
        if pooling not in EMBEDDING_POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {', '.join(EMBEDDING_POOLINGS)}")
        self.im = im
        self.network = im.model
        self.encoder = im.at(choice.point)
        self.patch_size = choice.point.patch
        self.resize, self.choice, self.chosen = choice.point.resize, choice.reason, choice
        point = choice.point
        self.packed = point.packed
        self.options = EmbedOptions(layer=layer, pooling=pooling, hop_seconds=hop_seconds, precision=precision,
                                    packed=point.packed, row_tokens=row_tokens)
        self.layer, self.pooling, self.hop_seconds = layer, pooling, hop_seconds
        self.precision, self.batch_size = precision, batch_size
        self.sample_rate = int(im.features.sample_rate)
        cfg = self.encoder.config
        device = next(self.encoder.parameters()).device
        with torch.inference_mode():
            probe = self.encoder.embed(torch.zeros(1, cfg.input_tdim, cfg.input_fdim, device=device), layer=layer)
        self.scene_embedding_size = self.timestamp_embedding_size = int(probe.prefix.shape[-1])

    def embed(self, audio: torch.Tensor, frames: bool) -> list[dict]:
        """:func:`embed_audio`'s result for each sound of ``audio [n_sounds, n_samples]`` at the
        fixed size, the windows of all the sounds run ``batch_size`` at a time."""
        sounds = _checked_audio(audio)
        task = embedding_task(self.im, dataclasses.replace(self.options, frames=frames), choice=self.chosen)
        return self.im.run_tasks(task, [self.im.waveform(sound) for sound in sounds.detach().cpu()], self.batch_size)


def _checked_audio(audio) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor [n_sounds, n_samples], not {type(audio).__name__}")
    if audio.dim() != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples] (HEAR's batch of equal-length sounds); "
                         f"got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must hold float samples at the model's sample rate, not {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio of shape {tuple(audio.shape)} holds no sound")
    return audio


def read_options(path: str | Path) -> dict:
    """An options file as :func:`load_model`'s arguments: ``model_file_path`` (``"model"``,
    relative to the file's folder) and the keyword arguments it sets."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: the HEAR options file is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ValueError(f'{path}: a HEAR options file is a JSON object with "model": the path of the weights')
    unknown = sorted(set(data) - {"model"} - set(OPTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown options {', '.join(unknown)}; the options are model, {', '.join(OPTIONS)}")
    options = {k: v for k, v in data.items() if k != "model"}
    return {"model_file_path": str(path.parent / data["model"]), **options}


def load_model(model_file_path: str = "", *, patch_size=None, max_gflops: float | None = None,
               max_ms: float | None = None, resize: str | None = None, layer: int | None = None,
               pooling: str = "head", hop_seconds: float | None = None, device=None, features=None,
               weights: str = "best", precision: str = "auto", batch_size: int = 32, packed: bool | None = None,
               row_tokens: int | None = None) -> HearModel:
    """HEAR's ``load_model``: the model at ``model_file_path`` at one patch size.

    ``model_file_path``: a training run (``weights``: best, averaged, last), a saved
    directory, a weights file, or a JSON options file (this module's docstring).
    ``patch_size`` or a budget (``max_gflops``, ``max_ms``, read from the stored profile)
    picks the size, once; neither: the model's stored size. ``layer`` and ``pooling`` are
    :func:`embed_audio`'s; ``hop_seconds`` spaces the windows of long sounds (default:
    half a window); ``features``: the features, for weights that do not carry them;
    ``packed``: sounds at their own lengths, packed into rows of ``row_tokens`` tokens (None: as
    the weights were trained; a family that cannot pack keeps padded windows).
    """
    if not model_file_path:
        raise ValueError("flexiast has no built-in weights and downloads none: give model_file_path, a flexiast "
                         "run, saved directory or weights file, or a JSON options file naming one")
    if str(model_file_path).endswith(".json"):
        given = {k: v for k, v in locals().items() if k in OPTIONS and v != OPTIONS[k]}
        if given:
            raise ValueError(f"{model_file_path} is an options file; set {', '.join(given)} in it, not as arguments")
        return load_model(**read_options(model_file_path))
    im = load_inference_model(model_file_path, weights=weights, features=features, device=device, classifier=False)
    choice = im.choose(PointRequest(patch_size, max_gflops, max_ms, resize, packed=packed, row_tokens=row_tokens))
    return HearModel(im, choice, layer=layer, pooling=pooling, hop_seconds=hop_seconds, precision=precision,
                     batch_size=batch_size, row_tokens=row_tokens)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``[n_sounds, scene_embedding_size]`` float32 on ``audio``'s device: each sound's clip embedding."""
    clips = [r["clip"] for r in model.embed(audio, frames=False)]
    return torch.stack(clips).float().to(audio.device)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``([n_sounds, n_timestamps, timestamp_embedding_size], [n_sounds, n_timestamps])`` float32 on
    ``audio``'s device: each sound's frame embeddings, one token column apart, and their times in
    milliseconds (the centre of the audio each column covers). The sounds of a batch have one
    length, so they share their windows and timestamps."""
    results = model.embed(audio, frames=True)
    times = results[0]["timestamps"]
    if any(not torch.equal(r["timestamps"], times) for r in results[1:]):
        raise RuntimeError("the sounds of one batch were windowed differently; their timestamps differ")
    embeddings = torch.stack([r["frames"] for r in results]).float().to(audio.device)
    stamps = (times * 1000).float().expand(len(results), -1).contiguous().to(audio.device)
    return embeddings, stamps
