"""Many audio files through one model: embeddings and predictions, resumable, bad files skipped.

A :class:`torch.utils.data.DataLoader` over the file list decodes each file in its
workers (:meth:`InferenceModel.waveform`) and cuts it into the model's inputs
(:meth:`InferenceModel.spectrograms`), or returns why it could not: a missing, empty or
corrupt file, NaN samples (:class:`~flexiast.audio.AudioError`, ``ValueError``). The
main process runs the model on batches of windows taken across files
(:func:`flexiast.deploy.windows.batched_windows`) with the :class:`WindowTask` the one-file
functions run (:func:`flexiast.embeddings.embed_audio`, :meth:`InferenceModel.predict`),
so a file's result here is theirs. A file that cannot be read is reported with its path
and reason, and the run goes on. At a packed point (ElasticAST) the windows of many files, each
short file at its own length, share one packed call, and a file's result is still its own.

:func:`embed_files` writes ``.safetensors`` or ``.npz`` (read back with
:func:`read_embeddings`): ``clip [N, D]`` in the order of ``files``, and with frames
``frames [sum T, D]``, ``timestamps [sum T]`` (seconds from the start of each file) and
``frame_offsets [N + 1]`` (file ``i``'s frames are rows ``offsets[i]:offsets[i + 1]``).
:func:`predict_files` writes one row per file to ``.csv`` or ``.jsonl``; a file that could
not be read gets a row with its ``error``. Both rewrite their output atomically every
``save_every`` files and at the end, so a killed run loses little, and with ``resume``
skip the files the output already holds (files skipped as unreadable are tried again).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..atomic import write_atomic
from ..constants import AUDIO_EXTENSIONS, AUTO, EMBEDDING_FORMATS, PREDICTION_FORMATS, VERSION
from ..data.loader import loader_workers
from .embed import EmbedOptions, embedding_task
from .files import weights_stat
from .model import InferenceModel
from .predict import PredictOptions
from .windows import WindowTask, batched_windows

__all__ = ["audio_files", "check_output", "run_files", "embed_files", "read_embeddings", "write_embeddings",
           "predict_files", "read_predictions", "model_identity", "RESUME_KEYS"]

#: What an embeddings file must share with a run that resumes it.
RESUME_KEYS = ("model", "patch_size", "resize", "layer", "pooling", "frames", "hop_s", "input_frames", "compression",
               "step_s", "packed", "window_frames")
#: What a :func:`predict_files` output's rows depend on: a resume with other values is refused.
PREDICTION_KEYS = ("model", "patch_size", "resize", "top_k", "aggregate", "hop_s", "whole", "input_frames",
                   "compression", "threshold", "framewise", "min_duration_s", "merge_gap_s", "packed", "window_frames")


def audio_files(inputs, list_file: str | Path | None = None) -> list[str]:
    """The files named by ``inputs`` (files as given; folders searched recursively, in sorted
    order, for :data:`~flexiast.constants.AUDIO_EXTENSIONS`) and by ``list_file`` (one path a
    line; blank lines ignored), each once, in order. A path that does not exist stays in
    the list, to be reported as unreadable."""
    paths = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths += sorted(str(f) for f in item.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
        else:
            paths.append(str(item))
    if list_file is not None:
        paths += [line.strip() for line in Path(list_file).read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(paths))


class _Windows(torch.utils.data.Dataset):
    """File ``i`` as ``(i, samples, specs, spans, None)``, or ``(i, None, None, None, reason)``."""

    def __init__(self, im: InferenceModel, paths: list[str], cut):
        self.im = dataclasses.replace(im, model=None, _profile=None, _fixed={})  # workers need only the features
        self.paths, self.cut = paths, cut

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            _, wave = self.im.waveform(self.paths[i])
            specs, spans = self.cut(self.im, wave)
        except ValueError as e:  # AudioError names the file; the reason alone is reported with the path
            return i, None, None, None, getattr(e, "reason", str(e))
        return i, wave.numel(), specs, spans, None


def _identity(item):
    return item


def run_files(im: InferenceModel, paths: list[str], task: WindowTask, *, batch_size: int = 32,
              workers: int | None = None, progress: bool = False,
              desc: str = "files") -> Iterator[tuple[str, dict | None, str | None]]:
    """``(path, result, None)`` or ``(path, None, reason)`` for each of ``paths``, in order:
    ``task`` on each file, the windows of many files run ``batch_size`` at a time.

    ``workers`` decode files (default: as :func:`~flexiast.data.loader.loader_workers`
    chooses for the model's device); ``progress`` shows a tqdm bar of files done and skipped.
    """
    from tqdm.auto import tqdm

    if workers is None:
        workers = loader_workers(AUTO, device=next(im.model.parameters()).device.type)
    extra = {"prefetch_factor": 8} if workers > 0 else {}
    loader = torch.utils.data.DataLoader(_Windows(im, paths, task.cut), batch_size=None,
                                         num_workers=workers, collate_fn=_identity, **extra)
    read = {}

    def decoded():
        for i, samples, specs, spans, reason in loader:
            read[i] = (samples, spans, reason, None if specs is None else tuple(specs.shape[1:]))
            yield i, specs

    compute = torch.inference_mode()(task.compute)
    skipped = 0
    with tqdm(total=len(paths), desc=desc, unit="file", disable=not progress, dynamic_ncols=True) as bar:
        for i, outputs in batched_windows(decoded(), compute, batch_size, packed=task.packed):
            samples, spans, reason, shape = read.pop(i)
            if outputs is None:
                skipped += 1
                bar.set_postfix(skipped=skipped)
                bar.update()
                yield paths[i], None, reason
            else:
                bar.update()
                yield paths[i], task.finish(paths[i], samples, spans, shape, outputs), None


def check_output(out: str | Path, formats: tuple[str, ...], resume: bool, overwrite: bool) -> Path:
    """``out`` as a Path, if it may be written: its suffix one of ``formats``; refused where it
    exists unless ``resume`` or ``overwrite`` (not both); its folder made."""
    out = Path(out)
    if out.suffix not in formats:
        raise ValueError(f"{out}: the output must end in {' or '.join(formats)}")
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    if out.exists() and not (resume or overwrite):
        raise ValueError(f"{out} exists: give --resume to add the files it lacks, or --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def model_identity(im: InferenceModel) -> dict:
    """The weights an output was computed with: their path, family, configuration, size and time."""
    return {"weights": str(Path(im.weights).resolve()), "arch": im.model.arch,
            "config": json.loads(json.dumps(im.model.config.to_dict())), "stat": weights_stat(im.weights)}


# -- embeddings ------------------------------------------------------------------------------------------
def write_embeddings(path: str | Path, data: dict) -> None:
    """Write ``data`` as :func:`read_embeddings` returns it, atomically (``.safetensors`` or ``.npz``)."""
    path = Path(path)
    arrays = {k: data[k].contiguous() for k in ("clip", "frames", "timestamps", "frame_offsets") if k in data}
    meta = {"files": data["files"], "skipped": data["skipped"], **data["metadata"]}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        blob = save(arrays, metadata={k: json.dumps(v) for k, v in meta.items()})
        write_atomic(path, lambda f: f.write(blob))
    else:
        write_atomic(path, lambda f: np.savez(f, **{k: v.numpy() for k, v in arrays.items()},
                                              metadata=np.array(json.dumps(meta))))


def read_embeddings(path: str | Path) -> dict:
    """An embeddings file of :func:`embed_files` (``flexiast embed``).

    Returns ``clip`` (float32 ``[N, D]``, row ``i`` for ``files[i]``); where frames were
    asked for, ``frames`` ``[sum T, D]``, ``timestamps`` (float64 seconds) and
    ``frame_offsets`` ``[N + 1]``; ``files``; ``skipped`` (``{"path", "reason"}`` of the
    files that could not be read); and ``metadata``: ``model`` (:func:`model_identity`),
    ``patch_size``, ``resize``, ``choice``, ``layer``, ``pooling``, ``frames``, ``hop_s``,
    ``flexiast_version``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            raw = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        meta = {k: json.loads(v) for k, v in raw.items()}
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: torch.from_numpy(z[k]) for k in z.files if k != "metadata"}
            meta = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
    else:
        raise ValueError(f"{path}: embeddings are stored as {' or '.join(EMBEDDING_FORMATS)}")
    if "files" not in meta or "clip" not in arrays:
        raise ValueError(f"{path}: not an embeddings file of flexiast embed (no clip tensor and file list)")
    return {**arrays, "files": meta.pop("files"), "skipped": meta.pop("skipped", []), "metadata": meta}


def _resume_difference(old: dict, new: dict, keys=RESUME_KEYS) -> list[str]:
    """The settings in which ``old`` (an output's) and ``new`` differ; a key the output does not
    record (written before flexiast recorded it for its model's kind) is not compared."""
    return [f"{k} {json.dumps(old.get(k))} there, {json.dumps(new.get(k))} here" for k in keys
            if k in old and old[k] != new.get(k)]


def embed_files(im: InferenceModel, paths, options: EmbedOptions | None = None, *, out: str | Path | None = None,
                resume: bool = False, overwrite: bool = False, save_every: int = 1000, batch_size: int = 32,
                workers: int | None = None, progress: bool = False, **fields) -> dict:
    """Embeddings of many files, as :func:`flexiast.embeddings.embed_audio` computes each.

    Returns what :func:`read_embeddings` returns. With ``out`` it is also written there
    (every ``save_every`` files and at the end); an existing ``out`` is refused unless
    ``overwrite`` or ``resume``, which keeps its rows, embeds only the files it lacks and
    appends them, and is refused, naming the difference, if the file was written with other
    weights, layer, pooling, patch size, resize, hop or frames. Every argument is checked
    before any file is read.
    """
    out = check_output(out, EMBEDDING_FORMATS, resume, overwrite) if out is not None else None
    options = options if options is not None else EmbedOptions(**fields)
    task = embedding_task(im, options)
    frames = options.frames
    metadata = {"model": model_identity(im), **task.setting, "flexiast_version": VERSION}
    files, clips, frame_rows, times, skipped = [], [], [], [], []
    if resume and out is not None and out.exists():
        old = read_embeddings(out)
        differences = _resume_difference(old["metadata"], metadata)
        if differences:
            raise ValueError(f"cannot resume {out}: it was written with other settings ({'; '.join(differences)})")
        files, clips = list(old["files"]), list(old["clip"])
        if frames:
            offsets = old["frame_offsets"].tolist()
            frame_rows = [old["frames"][a:b] for a, b in zip(offsets, offsets[1:])]
            times = [old["timestamps"][a:b] for a, b in zip(offsets, offsets[1:])]
        skipped = old["skipped"]
    done = set(files)
    todo = [p for p in map(str, paths) if p not in done]
    retried = set(todo)
    skipped = [s for s in skipped if s["path"] not in retried]

    def collected() -> dict:
        dim = clips[0].numel() if clips else 0
        data = {"clip": torch.stack(clips) if clips else torch.zeros(0, dim), "files": list(files),
                "skipped": list(skipped), "metadata": metadata}
        if frames:
            counts = torch.tensor([0] + [len(f) for f in frame_rows], dtype=torch.int64)
            data["frames"] = torch.cat(frame_rows) if frame_rows else torch.zeros(0, dim)
            data["timestamps"] = torch.cat(times) if times else torch.zeros(0, dtype=torch.float64)
            data["frame_offsets"] = counts.cumsum(0)
        return data

    for n, (path, result, reason) in enumerate(run_files(im, todo, task, batch_size=batch_size, workers=workers,
                                                         progress=progress, desc="embed"), 1):
        if result is None:
            skipped.append({"path": path, "reason": reason})
        else:
            files.append(path)
            clips.append(result["clip"])
            if frames:
                frame_rows.append(result["frames"])
                times.append(result["timestamps"])
        if out is not None and n % save_every == 0:
            write_embeddings(out, collected())
    data = collected()
    if out is not None:
        write_embeddings(out, data)
    return data


# -- predictions -----------------------------------------------------------------------------------------
def _csv_fields(top_k: int, events: bool = False) -> list[str]:
    ranks = [f"{what}_{r}" for r in range(1, top_k + 1) for what in ("label", "score")]
    return ["path", "error", "patch_size", "duration_s", "windows", *ranks, *(["events"] if events else [])]


def settings_path(out: Path) -> Path:
    """Where :func:`predict_files` keeps the settings of ``out``'s rows: ``OUT.json``."""
    return out.with_name(out.name + ".json")


def _csv_row(row: dict) -> dict:
    if "error" in row:
        return {"path": row["path"], "error": row["error"]}
    patch = "" if row["patch_size"] is None else "x".join(map(str, row["patch_size"]))
    out = {"path": row["path"], "error": "", "patch_size": patch,
           "duration_s": f"{row['duration_s']:.6g}", "windows": row["num_windows"]}
    for r, top in enumerate(row["top"], 1):
        out[f"label_{r}"], out[f"score_{r}"] = top["label"], f"{top['score']:.6g}"
    if "events" in row:  # one JSON list of [onset_s, offset_s, label, score]
        out["events"] = json.dumps([[round(e["onset_s"], 6), round(e["offset_s"], 6), e["label"],
                                     round(e["score"], 6)] for e in row["events"]])
    return out


def read_predictions(path: str | Path) -> list[dict]:
    """The rows of a :func:`predict_files` output: CSV rows as text, JSONL rows as written.
    A row with a non-empty ``error`` is a file that could not be read."""
    path = Path(path)
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_predictions(path: Path, rows: list[dict], fields: list[str] | None) -> None:
    if fields is not None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        data = text.getvalue().encode()
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    write_atomic(path, lambda f: f.write(data))


def predict_files(im: InferenceModel, paths, options: PredictOptions | None = None, *,
                  out: str | Path | None = None, resume: bool = False, overwrite: bool = False, windows: bool = False,
                  save_every: int = 1000, batch_size: int = 32, workers: int | None = None, progress: bool = False,
                  **fields) -> list[dict]:
    """One row per file, as :meth:`InferenceModel.predict` scores each: ``path`` and its
    result, ``windows`` replaced by ``num_windows`` unless ``windows``; or, for a file that
    could not be read, ``{"path", "error"}``. Returns the rows of this run.

    With ``out`` (``.jsonl``: the rows as JSON; ``.csv``: ``path``, ``error``,
    ``patch_size``, ``duration_s``, ``windows`` and ``label_R``, ``score_R`` for ranks 1 to
    ``top_k``) the rows are written there, every ``save_every`` files and at the end; an
    existing ``out`` is refused unless ``overwrite`` or ``resume``, which keeps its rows,
    scores only the files without one (rows with an error are replaced when the file is
    tried again) and appends them. The settings go to ``OUT.json`` beside it (the weights'
    identity, patch size, resize, ``top_k``, aggregation, hop, ``whole``, and for a model with
    framewise output the event settings): a resume with other settings is refused, naming them.

    A model with framewise output (:meth:`InferenceModel.predict`'s ``events``) gives each
    row its ``events``; a CSV row holds them in one ``events`` column, a JSON list of
    ``[onset_s, offset_s, label, score]``. ``framewise`` scores go to ``.jsonl`` only.
    """
    options = options if options is not None else PredictOptions(**fields)
    out = check_output(out, PREDICTION_FORMATS, resume, overwrite) if out is not None else None
    if options.framewise and out is not None and out.suffix == ".csv":
        raise ValueError(f"{out}: framewise scores (--framewise) are kept in a .jsonl output; a .csv row has "
                         "room for the events only")
    task = im.prediction_task(options)
    fields = _csv_fields(options.top_k, events=im.sed) if out is not None and out.suffix == ".csv" else None
    settings = {"model": model_identity(im), **task.setting, "top_k": options.top_k, "aggregate": options.aggregate,
                "whole": options.whole, "flexiast_version": VERSION}
    kept = []
    if resume and out is not None and out.exists():
        sidecar = settings_path(out)
        if not sidecar.exists():
            raise ValueError(f"cannot resume {out}: {sidecar}, which says how its rows were scored, is missing")
        differences = _resume_difference(json.loads(sidecar.read_text()), settings, PREDICTION_KEYS)
        if differences:
            raise ValueError(f"cannot resume {out}: it was written with other settings ({'; '.join(differences)})")
        kept = read_predictions(out)
    if out is not None:
        write_atomic(settings_path(out), lambda f: f.write(json.dumps(settings, indent=1).encode()))
    done = {r["path"] for r in kept if not r.get("error")}
    todo = [p for p in map(str, paths) if p not in done]
    retried = set(todo)
    kept = [r for r in kept if r["path"] not in retried]
    rows, written = [], []
    for n, (path, result, reason) in enumerate(run_files(im, todo, task, batch_size=batch_size, workers=workers,
                                                         progress=progress, desc="predict"), 1):
        if result is None:
            row = {"path": path, "error": reason}
        else:
            row = {"path": path, **result, "num_windows": len(result["windows"])}
            if not windows:
                del row["windows"]
        rows.append(row)
        written.append(_csv_row(row) if fields is not None else row)
        if out is not None and n % save_every == 0:
            _write_predictions(out, kept + written, fields)
    if out is not None:
        _write_predictions(out, kept + written, fields)
    return rows
