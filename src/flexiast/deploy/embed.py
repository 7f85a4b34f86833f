"""Embeddings of audio from a trained model: one vector per clip, and one per time step.

A clip is cut into windows of the trained length (:func:`regular_windows`): one padded
clip, or windows every ``hop`` from its start, the hop (half a window by default) rounded
down to whole token columns and the last window padded past the end of the audio as a
short clip is, so that every window's token columns lie on one grid. Each window runs
through the model at the chosen patch size (given, or the most accurate one within a
budget) and :meth:`FlexModel.embed` gives the tokens of one layer (the last by default,
after the encoder's final norm). Then:

* the **clip** embedding is the mean over windows of each window's pooled tokens:
  ``head``, the mean of the prefix tokens (the representation the classifier reads), or
  ``mean``, the mean of the patch tokens (SSAST's and many downstream users' choice);
* the **frame** embeddings are the patch tokens averaged over frequency, one per token
  column, each at the centre of the audio its patches cover: one column apart, regularly
  spaced (what HEAR's timestamp embeddings need). Where windows overlap, a time step is
  taken from the window whose centre is nearest, so each is reported once; steps whose
  first frame lies past the end of the audio (only zero padding) are dropped.

The time columns are the operating point kind's (:meth:`flexiast.models.points.PointKind.token_columns`):
an AST's patch columns, or for a family whose tokens follow the input (HTS-AT) the time
columns of the layer's token grid (:meth:`FlexModel.embed` unfolds HTS-AT's into time
order), each ``model.token_frames(layer)`` model frames wide and one column apart (4
frames after the patch embedding, 32 at Swin-T's last stage), centred as above on the front
end's centred frames; HTS-AT's ``head`` and ``mean`` pooling are both the mean token (it
has no prefix tokens). ``head`` is what the classifier reads: for an AST with attention pooling
(ElasticAST) the pooled vector of its learned query (:meth:`TokenEmbedding.pooled`).

At a ``packed`` point (ElasticAST, Feng et al., Interspeech 2024, arXiv 2407.08691; by default
as the weights were trained) audio no longer than a window is embedded at its own length,
not padded, as one window; the windows of many files run packed together (the model's packed
``embed``), and each file's embeddings equal those of the file alone at that length. Longer
audio is windowed as above.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..constants import EMBEDDING_POOLINGS
from ..hardware import resolve_precision
from .budget import PointRequest
from .predict import packed_clips
from .windows import WindowTask, WithCompression

__all__ = ["EmbedOptions", "embed_audio", "embedding_task", "column_spans", "regular_windows"]


@dataclass(frozen=True)
class EmbedOptions(PointRequest):
    """How to embed: the operating point (:class:`~flexiast.deploy.budget.PointRequest`, with
    ``packed`` and ``row_tokens``), the
    ``layer`` (None: the last; negative counts from the end), the clip ``pooling`` (``head``
    or ``mean``), whether to give per-time-step ``frames``, the ``hop_seconds`` between
    windows of long audio and the ``precision``."""

    layer: int | None = None
    pooling: str = "head"
    frames: bool = False
    hop_seconds: float | None = None
    precision: str = "auto"


def column_spans(im, patch: int, stride: int, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first sample, centre)`` from a window's start of each of ``columns`` token columns whose
    patches span ``patch`` model frames every ``stride``. The first sample is ``t * shift``
    of the column's first frame ``t`` (where a Kaldi frame starts; where a centred STFT's
    frame is centred, its window reaching half a window before). The centre is the middle
    of the first and last sample their frames cover; a model frame is ``C`` front-end
    frames under avg/max pooling (fshift's longer shift is in the features' frame shift)."""
    shift, window, pool = _framing(im)
    offset = -(window // 2) if im.features.centered else 0  # a frame covers t * shift + offset + [0, window)
    first = torch.arange(columns, dtype=torch.float64) * stride * pool  # first frame of each column
    last = first + patch * pool - 1
    return first * shift, (first * shift + last * shift + 2 * offset + window) / 2


def _framing(im) -> tuple[int, int, int]:
    """``(frame shift, frame length)`` in samples of the front end, and its frames per model
    frame (``C`` under avg/max pooling, else 1)."""
    f, c = im.features, im.compression
    pool = c.factor if c.method in ("avgpool", "maxpool") else 1
    return f.frame_shift_samples(c), f.frame_length_samples(), pool


def column_hop(im, hop: int, patch: int, stride: int) -> tuple[int, int, int]:
    """``(hop, column step, columns per window)`` in samples: ``hop`` rounded down to whole token
    columns (``patch`` model frames every ``stride``), at least one and at most a window's."""
    shift, _, pool = _framing(im)
    step = stride * pool * shift
    columns = (im.features.frames(im.compression) - patch) // stride + 1
    return min(max(step, hop // step * step), columns * step), step, columns


def audio_columns(im, samples: int, step: int) -> int:
    """How many token columns, ``step`` samples apart, start on a frame the front end gives
    for ``samples`` samples of audio (a whole Kaldi frame, ``snip_edges``; a centred
    frame whose centre lies in the audio); at least one."""
    shift, window, _ = _framing(im)
    if im.features.centered:  # 1 + samples // shift frames; a column every step // shift of them
        return max(1, -(-im.features.num_frames(samples, im.compression) // (step // shift)))
    return max(1, (samples - window) // step + 1) if samples >= window else 1


def regular_windows(im, wave: torch.Tensor, *, hop: int, patch: int, stride: int,
                    fewest: int | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The model's inputs ``[windows, frames, bins]`` for ``wave`` and each window's span in
    samples, every token column on one grid: windows start every :func:`column_hop` from 0
    until every column of :func:`audio_columns` is in one; a window running past the end is
    its audio padded as a short clip is. With ``fewest`` (a packed point), audio that one
    window holds is that window at its own length (:meth:`InferenceModel.spectrograms`)."""
    hop, step, columns = column_hop(im, hop, patch, stride)
    needed = audio_columns(im, wave.numel(), step)
    starts = [0]
    while starts[-1] // step + columns < needed:
        starts.append(starts[-1] + hop)
    size = im.window_samples
    own = fewest if len(starts) == 1 else None
    specs = torch.cat([im.spectrograms(wave[s:s + size], hop, fewest=own)[0] for s in starts])
    return specs, [(s, s + size) for s in starts]


def embedding_task(im, options: EmbedOptions | None = None, *, choice=None, **fields) -> WindowTask:
    """The :class:`WindowTask` of :func:`embed_audio`: each window's pooled tokens (and its
    frame tokens), and a clip's embeddings from its windows'. Every option is checked here,
    before any audio is read or any model runs. ``choice`` (:meth:`InferenceModel.choose`'s)
    replaces the options' operating point (whether it is packed too)."""
    options = options if options is not None else EmbedOptions(**fields)
    if options.pooling not in EMBEDDING_POOLINGS:
        raise ValueError(f"pooling={options.pooling!r} is not one of {', '.join(EMBEDDING_POOLINGS)}")
    pooling, frames = options.pooling, options.frames
    chosen_layer = im.model.layer_index(options.layer)
    device = next(im.model.parameters()).device
    chosen = resolve_precision(options.precision, device, setting="precision")
    choice = choice if choice is not None else im.choose(options)
    point = choice.point
    packed, row = point.packed, options.row_tokens or im.row_tokens
    base, im = im, im.deployed(choice, options.row_tokens)  # im: fed as the point needs
    model = base.at(point)
    patch, stride = base.points.token_columns(model, chosen_layer)
    hop, step, _ = column_hop(im, im.hop(options.hop_seconds), patch, stride)
    sr = im.features.sample_rate
    cut = functools.partial(regular_windows, hop=hop, patch=patch, stride=stride,
                            fewest=base.fewest_frames(point) if packed else None)
    if im.compression != base.compression or im.features != base.features:
        cut = WithCompression(cut, im.compression, im.features if im.features != base.features else None)
    chosen_patch = list(point.patch) if point.patch is not None else None

    def pooled(tokens) -> torch.Tensor:
        return (tokens.pooled() if pooling == "head" else tokens.mean()).float().cpu()

    def compute(specs) -> dict:
        if packed:  # windows of any length: one TokenEmbedding per window, from one packed call
            with chosen.autocast():
                each = model.embed(packed_clips(base, point, specs, row, device), layer=chosen_layer)
            out = {"pooled": torch.cat([pooled(t) for t in each])}
            if frames:
                out["frames"] = [t.frames()[0].float().cpu() for t in each]
            return out
        with chosen.autocast():
            tokens = model.embed(specs.to(device), layer=chosen_layer)
        out = {"pooled": pooled(tokens)}
        if frames:
            out["frames"] = tokens.frames().float().cpu()
        return out

    def finish(source: str, samples: int, spans: list, shape: tuple, outputs: dict) -> dict:
        result = {"source": source, "duration_s": samples / sr, "patch_size": chosen_patch,
                  "resize": point.resize, "choice": choice.reason, "layer": chosen_layer, "pooling": pooling,
                  "packed": packed, "windows": len(spans), "clip": outputs["pooled"].mean(0)}
        if frames:
            per_window = outputs["frames"]  # [windows, columns, D]
            first, centres = column_spans(im, patch, stride, per_window.shape[1])
            starts = torch.tensor([a for a, _ in spans], dtype=torch.float64)
            times = starts[:, None] + centres[None, :]  # [windows, columns], samples
            middles = starts + im.window_samples / 2
            nearest = (times[..., None] - middles).abs().argmin(dim=-1)  # the window each time step belongs to
            index = (starts[:, None] + first[None, :]) / step  # the column's place on the audio's grid
            keep = (nearest == torch.arange(len(spans))[:, None]) & (index < audio_columns(im, samples, step))
            order = times[keep].argsort()
            result["frames"] = per_window[keep][order]
            result["timestamps"] = times[keep][order] / sr
        return result

    setting = {"patch_size": chosen_patch, "resize": point.resize, "choice": choice.reason,
               "layer": chosen_layer, "pooling": pooling, "frames": frames, "hop_s": hop / sr,
               "input_frames": point.frames, "compression": str(im.compression), "step_s": step / sr,
               "operating_point": point.label, "packed": packed, "window_frames": im.features.frames(im.compression)}
    return WindowTask(cut=cut, compute=compute, finish=finish, setting=setting, packed=packed)


@torch.inference_mode()
def embed_audio(im, audio, options: EmbedOptions | None = None, *, sample_rate: int | None = None,
                batch_size: int = 32, **fields) -> dict:
    """Embeddings of one clip (a path, or a waveform at ``sample_rate``).

    Returns ``source``, ``duration_s``, ``patch_size``, ``resize``, ``choice`` (why that
    point), ``layer``, ``pooling``, ``windows`` (how many), ``clip`` (a float32 ``[D]``
    tensor) and, with ``frames``, ``frames`` ``[T, D]`` with their ``timestamps`` ``[T]``
    (seconds, float64). ``options`` (or its fields) are :class:`EmbedOptions`.
    :func:`flexiast.batch.embed_files` runs the same :func:`embedding_task` over many files.
    """
    return im.run_task(embedding_task(im, options, **fields), audio, sample_rate, batch_size)
