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

A family without patch sizes (HTS-AT) has its own time steps: the time columns of the
layer's token grid (:meth:`FlexModel.embed` unfolds HTS-AT's into time order), each
``model.token_frames(layer)`` model frames wide and one column apart (4 frames after the
patch embedding, 32 at Swin-T's last stage), centred as above on the front end's centred
frames; its ``head`` and ``mean`` pooling are both the mean token (it has no prefix tokens).
"""

from __future__ import annotations

import functools

import torch

from .constants import POOLINGS
from .hardware import resolve_precision
from .inference import InferenceModel, WindowTask, _Compressed

__all__ = ["embed_audio", "embedding_task", "column_spans", "regular_windows"]


def column_spans(im: InferenceModel, patch: int, stride: int, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _framing(im: InferenceModel) -> tuple[int, int, int]:
    """``(frame shift, frame length)`` in samples of the front end, and its frames per model
    frame (``C`` under avg/max pooling, else 1)."""
    f, c = im.features, im.compression
    pool = c.factor if c.method in ("avgpool", "maxpool") else 1
    return f.frame_shift_samples(c), f.frame_length_samples(), pool


def column_hop(im: InferenceModel, hop: int, patch: int, stride: int) -> tuple[int, int, int]:
    """``(hop, column step, columns per window)`` in samples: ``hop`` rounded down to whole token
    columns (``patch`` model frames every ``stride``), at least one and at most a window's."""
    shift, _, pool = _framing(im)
    step = stride * pool * shift
    columns = (im.features.frames(im.compression) - patch) // stride + 1
    return min(max(step, hop // step * step), columns * step), step, columns


def audio_columns(im: InferenceModel, samples: int, step: int) -> int:
    """How many token columns, ``step`` samples apart, start on a frame the front end gives
    for ``samples`` samples of audio (a whole Kaldi frame, ``snip_edges``; a centred
    frame whose centre lies in the audio); at least one."""
    shift, window, _ = _framing(im)
    if im.features.centered:  # 1 + samples // shift frames; a column every step // shift of them
        return max(1, -(-im.features.num_frames(samples, im.compression) // (step // shift)))
    return max(1, (samples - window) // step + 1) if samples >= window else 1


def regular_windows(im: InferenceModel, wave: torch.Tensor, *, hop: int, patch: int,
                    stride: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The model's inputs ``[windows, frames, bins]`` for ``wave`` and each window's span in
    samples, every token column on one grid: windows start every :func:`column_hop` from 0
    until every column of :func:`audio_columns` is in one; a window running past the end is
    its audio padded as a short clip is."""
    hop, step, columns = column_hop(im, hop, patch, stride)
    needed = audio_columns(im, wave.numel(), step)
    starts = [0]
    while starts[-1] // step + columns < needed:
        starts.append(starts[-1] + hop)
    size = im.window_samples
    specs = torch.cat([im.spectrograms(wave[s:s + size], hop)[0] for s in starts])
    return specs, [(s, s + size) for s in starts]


def embedding_task(im: InferenceModel, *, patch_size=None, max_gflops: float | None = None,
                   max_ms: float | None = None, resize: str | None = None, layer: int | None = None,
                   pooling: str = "head", frames: bool = False, hop_seconds: float | None = None,
                   precision: str = "auto", choice: dict | None = None) -> WindowTask:
    """The :class:`WindowTask` of :func:`embed_audio`: each window's pooled tokens (and its
    frame tokens), and a clip's embeddings from its windows'. Every argument is checked
    here, before any audio is read or any model runs. ``choice`` (:meth:`InferenceModel.choose`'s)
    replaces the patch size and budget arguments."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
    chosen_layer = im.model.layer_index(layer)
    device = next(im.model.parameters()).device
    chosen = resolve_precision(precision, device, setting="precision")
    if choice is None:
        choice = im.choose(patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize)
    base, im = im, im.deployed(choice)  # im: with the choice's compression (a profiled input length)
    if base.patch_calls:
        model = im.at(choice["patch"], choice["resize"])
        patch, stride = model.config.patch_size[1], model.config.stride[1]
    else:
        model = base.at(None, frames=choice["frames"])
        patch = stride = model.token_frames(chosen_layer)  # its time columns: whole, side by side
    hop, step, _ = column_hop(im, im.hop(hop_seconds), patch, stride)
    sr = im.features.sample_rate
    cut = functools.partial(regular_windows, hop=hop, patch=patch, stride=stride)
    if im.compression != base.compression:
        cut = _Compressed(cut, im.compression)
    chosen_patch = list(choice["patch"]) if choice["patch"] is not None else None

    def compute(specs: torch.Tensor) -> dict:
        with chosen.autocast():
            tokens = model.embed(specs.to(device), layer=chosen_layer)
        out = {"pooled": (tokens.pooled() if pooling == "head" else tokens.mean()).float().cpu()}
        if frames:
            out["frames"] = tokens.frames().float().cpu()
        return out

    def finish(source: str, samples: int, spans: list, shape: tuple, outputs: dict) -> dict:
        result = {"source": source, "duration_s": samples / sr, "patch_size": chosen_patch,
                  "resize": choice["resize"], "choice": choice["reason"], "layer": chosen_layer, "pooling": pooling,
                  "windows": len(spans), "clip": outputs["pooled"].mean(0)}
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

    setting = {"patch_size": chosen_patch, "resize": choice["resize"], "choice": choice["reason"],
               "layer": chosen_layer, "pooling": pooling, "frames": frames, "hop_s": hop / sr}
    if not base.patch_calls:
        setting.update(input_frames=choice["frames"], compression=str(im.compression),
                       step_s=step / sr)
    return WindowTask(cut=cut, compute=compute, finish=finish, setting=setting)


@torch.inference_mode()
def embed_audio(im: InferenceModel, audio, *, sample_rate: int | None = None, patch_size=None,
                max_gflops: float | None = None, max_ms: float | None = None, resize: str | None = None,
                layer: int | None = None, pooling: str = "head", frames: bool = False,
                hop_seconds: float | None = None, batch_size: int = 32, precision: str = "auto") -> dict:
    """Embeddings of one clip (a path, or a waveform at ``sample_rate``).

    Returns ``source``, ``duration_s``, ``patch_size``, ``resize``, ``choice`` (why that
    size), ``layer``, ``pooling``, ``windows`` (how many), ``clip`` (a float32 ``[D]``
    tensor) and, with ``frames``, ``frames`` ``[T, D]`` with their ``timestamps`` ``[T]``
    (seconds, float64). The patch size and budget arguments are :meth:`InferenceModel.predict`'s.
    :func:`flexiast.batch.embed_files` runs the same :func:`embedding_task` over many files.
    """
    task = embedding_task(im, patch_size=patch_size, max_gflops=max_gflops, max_ms=max_ms, resize=resize,
                          layer=layer, pooling=pooling, frames=frames, hop_seconds=hop_seconds, precision=precision)
    return im.run_task(task, audio, sample_rate, batch_size)
