"""Embeddings of audio from a trained model: one vector per clip, and one per time step.

A clip is cut into windows of the trained length as :meth:`InferenceModel.predict` cuts
it (one padded clip, or windows ``hop`` apart), each window runs through the model at
the chosen patch size (given, or the most accurate one within a budget) and
:meth:`FlexModel.embed` gives the tokens of one layer (the last by default, after the
encoder's final norm). Then:

* the **clip** embedding is the mean over windows of each window's pooled tokens:
  ``head``, the mean of the prefix tokens (the representation the classifier reads), or
  ``mean``, the mean of the patch tokens (SSAST's and many downstream users' choice);
* the **frame** embeddings are the patch tokens averaged over frequency, one per token
  column, each at the centre of the audio its patches cover. Where windows overlap, a
  time step is taken from the window whose centre is nearest, so each is reported once;
  steps that cover only the zero padding after the end of the audio are dropped.

With ``regular=True`` the frame embeddings lie on one regular grid, one token column
apart (what HEAR's timestamp embeddings need): the hop is rounded down to whole token
columns (at least one, at most a window's columns) and windows start every hop from the
start of the audio, the last one running past its end where needed (its audio padded
as a short clip is). The default windowing ends its last window at the end of the audio,
whose columns then lie off the grid of the others.
"""

from __future__ import annotations

import torch

from .constants import POOLINGS
from .hardware import resolve_precision
from .inference import InferenceModel

__all__ = ["embed_audio", "column_spans", "regular_windows"]


def column_spans(im: InferenceModel, patch: int, stride: int, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first sample, centre)`` from a window's start of each of ``columns`` token columns whose
    patches span ``patch`` model frames every ``stride``. The centre is the middle of the
    first and last sample their fbank frames cover; a model frame is ``C`` fbank frames
    under avg/max pooling (fshift's longer shift is in the features' frame shift)."""
    shift, window, pool = _framing(im)
    first = torch.arange(columns, dtype=torch.float64) * stride * pool  # first fbank frame of each column
    last = first + patch * pool - 1
    return first * shift, (first * shift + last * shift + window) / 2


def _framing(im: InferenceModel) -> tuple[int, int, int]:
    """``(frame shift, frame length)`` in samples of the fbank, and the fbank frames per model
    frame (``C`` under avg/max pooling, else 1)."""
    f, c = im.features, im.compression
    kw = f.fbank_kwargs(c)
    pool = c.factor if c.method in ("avgpool", "maxpool") else 1
    return int(f.sample_rate * kw["frame_shift_ms"] / 1000), int(f.sample_rate * kw["frame_length_ms"] / 1000), pool


def regular_windows(im: InferenceModel, wave: torch.Tensor, hop: int, patch: int,
                    stride: int) -> tuple[torch.Tensor, list[tuple[int, int]], int]:
    """The model's inputs ``[windows, frames, bins]`` for ``wave``, each window's span in samples
    and the hop used, with every token column (``patch`` model frames every ``stride``) on
    one grid: windows start every ``hop`` (rounded down to whole columns, at least one, at
    most a window's columns) from 0 until the columns whose first sample lies in the audio
    are all covered; a window running past the end is its audio padded as a short clip."""
    shift, _, pool = _framing(im)
    step = stride * pool * shift
    columns = (im.model.config.input_tdim - patch) // stride + 1
    hop = min(max(step, hop // step * step), columns * step)
    needed = -(-wave.numel() // step)  # columns whose first sample is in the audio
    starts = [0]
    while starts[-1] // step + columns < needed:
        starts.append(starts[-1] + hop)
    size = im.window_samples
    specs = torch.cat([im.spectrograms(wave[s:s + size], hop)[0] for s in starts])
    return specs, [(s, s + size) for s in starts], hop


@torch.inference_mode()
def embed_audio(im: InferenceModel, audio, *, sample_rate: int | None = None, patch_size=None,
                max_gflops: float | None = None, max_ms: float | None = None, resize: str | None = None,
                layer: int | None = None, pooling: str = "head", frames: bool = False,
                hop_seconds: float | None = None, regular: bool = False, batch_size: int = 32,
                precision: str = "auto") -> dict:
    """Embeddings of one clip (a path, or a waveform at ``sample_rate``).

    Returns ``source``, ``duration_s``, ``patch_size``, ``resize``, ``choice`` (why that
    size), ``layer``, ``pooling``, ``windows`` (how many), ``clip`` (a float32 ``[D]``
    tensor) and, with ``frames``, ``frames`` ``[T, D]`` with their ``timestamps`` ``[T]``
    (seconds, float64). The patch size and budget arguments are :meth:`InferenceModel.predict`'s.
    ``regular``: windows on the token columns' grid (:func:`regular_windows`), so the
    timestamps are one column apart; the result then says the ``hop_s`` used.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
    device = next(im.model.parameters()).device
    chosen = resolve_precision(precision, device, setting="precision")
    source, wave = im.waveform(audio, sample_rate)
    choice = im.choose(patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize)
    hop = im.hop(hop_seconds)
    model = im.at(choice["patch"], choice["resize"])
    if regular:
        specs, spans, hop = regular_windows(im, wave, hop, model.config.patch_size[1], model.config.stride[1])
    else:
        specs, spans = im.spectrograms(wave, hop)
    outputs = []
    with chosen.autocast():
        for chunk in specs.split(batch_size):
            outputs.append(model.embed(chunk.to(device), layer=layer))
    pooled = torch.cat([o.pooled() if pooling == "head" else o.mean() for o in outputs]).float().cpu()
    result = {"source": source, "duration_s": wave.numel() / im.features.sample_rate,
              "patch_size": list(choice["patch"]), "resize": choice["resize"], "choice": choice["reason"],
              "layer": model.config.depth if layer is None else layer, "pooling": pooling, "windows": len(spans),
              "clip": pooled.mean(0)}
    if frames:
        per_window = torch.cat([o.frames() for o in outputs]).float().cpu()  # [windows, columns, D]
        first, centres = column_spans(im, model.config.patch_size[1], model.config.stride[1], per_window.shape[1])
        starts = torch.tensor([a for a, _ in spans], dtype=torch.float64)
        times = starts[:, None] + centres[None, :]  # [windows, columns], samples
        middles = starts + im.window_samples / 2
        nearest = (times[..., None] - middles).abs().argmin(dim=-1)  # the window each time step belongs to
        keep = (nearest == torch.arange(len(spans))[:, None]) & (starts[:, None] + first[None, :] < wave.numel())
        order = times[keep].argsort()
        result["frames"] = per_window[keep][order]
        result["timestamps"] = times[keep][order] / im.features.sample_rate
        if regular:
            shift, _, pool = _framing(im)
            step = model.config.stride[1] * pool * shift
            if not bool((times[keep][order].diff() == step).all()):
                raise RuntimeError(f"the time steps are not one token column ({step} samples) apart")
            result["hop_s"] = hop / im.features.sample_rate
    return result
