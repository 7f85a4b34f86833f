"""Readers for the datasets of both papers, each in the layout it ships in.

Each returns a :class:`Manifest`: the clips of one split (path, label indices, and where
the entry came from, for error messages), the class names, and whether the task is
multi-label. Nothing is decoded here; :func:`flexiast.data.dataset.scan` checks files.
A manifest with no classes is *unlabeled* (its items have ``labels=()``): the audio that
self-supervised pretraining reads (SSAST, Gong et al. 2022, pretrains on AudioSet and
LibriSpeech together).

=================  ==========================================================================
format             layout
=================  ==========================================================================
``ast_json``       AST's ``{"data": [{"wav": path, "labels": "/m/a,/m/b"}]}`` + label CSV
                   ``index,mid,display_name`` (AudioSet, or anything in AST's format)
``esc50``          ``meta/esc50.csv`` (filename, fold, target, category, esc10, ...) + ``audio/``
``speechcommands`` one folder per word, ``validation_list.txt``, ``testing_list.txt``;
                   ``_background_noise_`` excluded
``voxceleb1``      ``iden_split.txt`` (``1|2|3 id10001/video/00001.wav``) + ``wav/``
``folder``         ``ROOT/<class>/**/audio``, or ``ROOT/<split>/<class>/**/audio``
``csv``            ``path,labels,split`` (labels joined by ``;``), paths relative to the CSV;
                   the documented layout for VGGSound and Kinetics-Sounds. Keep every split
                   in one CSV, or pass the same ``classes=`` to each, so indices agree
``fsdd``           ``recordings/{digit}_{speaker}_{take}.wav``; task ``digits`` or
                   ``speakers``; takes 0-4 are the test split
=================  ==========================================================================
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Item", "Manifest", "DataError", "read_manifest", "FORMATS", "AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class DataError(ValueError):
    """A dataset that cannot be read as described; the message names the file and row."""


@dataclass(frozen=True)
class Item:
    path: Path
    labels: tuple[int, ...]
    source: str  # "file:row" of the manifest entry, for messages


@dataclass
class Manifest:
    """The clips of one split. ``classes == []``: unlabeled. ``weights``: per item, the
    relative probability of drawing it in training (None: uniform); whatever drops or
    reorders items must carry the weights along (:func:`flexiast.data.dataset.scan`)."""

    items: list[Item]
    classes: list[str]
    multilabel: bool = False
    name: str = ""
    notes: list[str] = field(default_factory=list)
    weights: list[float] | None = None

    def __post_init__(self):
        if self.weights is not None and len(self.weights) != len(self.items):
            raise DataError(f"{self.name}: {len(self.weights)} sampling weights for {len(self.items)} clips")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    return path


def _resolve(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else base / q


def _under(root, path: str | Path) -> Path:
    """``path`` as given when absolute or without a ``root``; else relative to ``root`` (a recipe's ``data.root``)."""
    path = Path(path)
    return path if root is None or path.is_absolute() else Path(root) / path


def _ast_entries(datafile: Path) -> list:
    try:
        return json.loads(datafile.read_text())["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{datafile}: not an AST datafile {{\"data\": [...]}} ({e})") from None


def read_ast_json(datafile: str | Path, label_csv: str | Path | None = None, root: str | Path | None = None,
                  **_) -> Manifest:
    """AST's datafile and label CSV; relative names are taken under ``root`` when it is given.
    Without ``label_csv`` the clips are unlabeled: an entry needs only ``wav``."""
    datafile = _need(_under(root, datafile), "AST datafile")
    if label_csv is None:
        items = []
        for i, entry in enumerate(_ast_entries(datafile)):
            if not isinstance(entry, dict) or "wav" not in entry:
                raise DataError(f"{datafile}:data[{i}]: entry needs 'wav'")
            items.append(Item(_resolve(datafile.parent, entry["wav"]), (), f"{datafile}:data[{i}]"))
        return Manifest(items, [], name=datafile.stem)
    label_csv = _need(_under(root, label_csv), "label CSV")
    mids, names = {}, []
    with open(label_csv, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                mids[row["mid"]] = int(row["index"])
                names.append((int(row["index"]), row["display_name"]))
            except (KeyError, ValueError, TypeError):
                raise DataError(f"{label_csv}:{n}: expected columns index,mid,display_name") from None
    if sorted(i for i, _ in names) != list(range(len(names))):
        raise DataError(f"{label_csv}: the index column must number the classes 0..{len(names) - 1} once each")
    classes = [name for _, name in sorted(names)]
    items = []
    for i, entry in enumerate(_ast_entries(datafile)):
        where = f"{datafile}:data[{i}]"
        try:
            wav, labels = entry["wav"], entry["labels"]
        except (KeyError, TypeError):
            raise DataError(f"{where}: entry needs 'wav' and 'labels'") from None
        idx = []
        for mid in str(labels).split(","):
            if mid not in mids:
                raise DataError(f"{where}: label {mid!r} is not in {label_csv}")
            idx.append(mids[mid])
        items.append(Item(_resolve(datafile.parent, wav), tuple(idx), where))
    return Manifest(items, classes, multilabel=True, name=datafile.stem)


def read_esc50(root: str | Path, split: str = "train", folds=None, test_fold: int | None = None,
               esc10: bool = False, **_) -> Manifest:
    """``folds`` (a list) picks folds directly; else ``test_fold`` is held out for ``split='test'``."""
    root = Path(root)
    meta = _need(root / "meta" / "esc50.csv", "ESC-50 metadata")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    if folds is None:
        if test_fold is None:
            raise DataError("esc50 needs folds=[...] or test_fold=N")
        folds = [test_fold] if split == "test" else [k for k in range(1, 6) if k != test_fold]
    folds = {int(k) for k in folds}
    chosen = [(n, r) for n, r in enumerate(rows, start=2) if r["esc10"] == "True" or not esc10]
    targets = sorted({(int(r["target"]), r["category"]) for _, r in chosen})
    remap = {t: i for i, (t, _) in enumerate(targets)}
    items = [Item(root / "audio" / r["filename"], (remap[int(r["target"])],), f"{meta}:{n}")
             for n, r in chosen if int(r["fold"]) in folds]
    return Manifest(items, [c for _, c in targets], name="esc10" if esc10 else "esc50")


def read_speechcommands(root: str | Path, split: str = "train", **_) -> Manifest:
    root = Path(root)
    lists = {}
    for name in ("validation", "testing"):
        path = _need(root / f"{name}_list.txt", "Speech Commands split list")
        lists[name] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
    index = {w: i for i, w in enumerate(words)}
    wanted = {"validation": lists["validation"], "val": lists["validation"], "test": lists["testing"],
              "testing": lists["testing"]}
    items = []
    if split in wanted:
        for rel in sorted(wanted[split]):
            word = rel.split("/")[0]
            if word not in index:
                raise DataError(f"{root}/{'validation' if split.startswith('val') else 'testing'}_list.txt: "
                                f"{rel} names no word folder")
            items.append(Item(root / rel, (index[word],), rel))
    elif split == "train":
        held = lists["validation"] | lists["testing"]
        for w in words:
            for p in sorted((root / w).glob("*.wav")):
                rel = f"{w}/{p.name}"
                if rel not in held:
                    items.append(Item(p, (index[w],), rel))
    else:
        raise DataError(f"speechcommands split {split!r}: use train, validation or test")
    return Manifest(items, words, name="speechcommands")


def read_voxceleb1(root: str | Path, split: str = "train", iden_split: str | Path | None = None, **_) -> Manifest:
    root = Path(root)
    split_file = _need(Path(iden_split) if iden_split else root / "iden_split.txt", "VoxCeleb1 iden_split.txt")
    code = {"train": "1", "validation": "2", "val": "2", "test": "3"}.get(split)
    if code is None:
        raise DataError(f"voxceleb1 split {split!r}: use train, validation or test")
    rows = []
    for n, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in "123":
            raise DataError(f"{split_file}:{n}: expected '<1|2|3> idXXXXX/video/file.wav'")
        rows.append((parts[0], parts[1], n))
    speakers = sorted({rel.split("/")[0] for _, rel, _ in rows})
    index = {s: i for i, s in enumerate(speakers)}
    wav = root / "wav" if (root / "wav").is_dir() else root
    items = [Item(wav / rel, (index[rel.split("/")[0]],), f"{split_file}:{n}") for c, rel, n in rows if c == code]
    return Manifest(items, speakers, name="voxceleb1")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_folder(root: str | Path, split: str | None = None, **_) -> Manifest:
    root = Path(root)
    base = root / split if split and (root / split).is_dir() else _need(root, "folder")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{base}: no class folders")
    items = [Item(p, (i,), str(p.relative_to(base))) for i, c in enumerate(classes) for p in _audio_files(base / c)]
    return Manifest(items, classes, name=root.name)


def read_csv_manifest(csv_path: str | Path, split: str | None = None, classes=None, root: str | Path | None = None,
                      **_) -> Manifest:
    """Columns ``path,labels[,split]`` (labels joined by ``;``); a relative ``csv_path`` is under ``root``."""
    csv_path = _need(_under(root, csv_path), "CSV manifest")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        label_col = "labels" if "labels" in (reader.fieldnames or []) else "label"
        if "path" not in (reader.fieldnames or []) or label_col not in reader.fieldnames:
            raise DataError(f"{csv_path}: expected columns path,labels[,split]")
        rows = list(enumerate(reader, start=2))
    names = list(classes) if classes else sorted({x for _, r in rows for x in r[label_col].split(";") if x})
    index = {c: i for i, c in enumerate(names)}
    items, multilabel = [], False
    for n, r in rows:
        if split is not None and r.get("split") != split:
            continue
        labels = [x for x in r[label_col].split(";") if x]
        if not labels or any(x not in index for x in labels):
            raise DataError(f"{csv_path}:{n}: labels {r[label_col]!r} are empty or not among the classes")
        multilabel |= len(labels) > 1
        items.append(Item(_resolve(csv_path.parent, r["path"]), tuple(index[x] for x in labels), f"{csv_path}:{n}"))
    return Manifest(items, names, multilabel=multilabel, name=csv_path.stem)


FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def read_fsdd(root: str | Path, split: str = "train", task: str = "digits", **_) -> Manifest:
    """Free Spoken Digit Dataset; the conventional split holds out takes 0-4 for test."""
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else _need(root, "FSDD folder")
    if task not in ("digits", "speakers"):
        raise DataError(f"fsdd task {task!r}: use digits or speakers")
    if split not in ("train", "test", "all"):
        raise DataError(f"fsdd split {split!r}: use train, test or all")
    parsed = []
    for p in sorted(folder.glob("*.wav")):
        m = FSDD_NAME.match(p.name)
        if m:
            parsed.append((p, m.group(1), m.group(2), int(m.group(3))))
    speakers = sorted({s for _, _, s, _ in parsed})
    classes = [str(d) for d in range(10)] if task == "digits" else speakers
    index = {c: i for i, c in enumerate(classes)}
    items = [Item(p, (index[d if task == "digits" else s],), p.name) for p, d, s, take in parsed
             if split == "all" or (take < 5) == (split == "test")]
    return Manifest(items, classes, name=f"fsdd-{task}")


def read_librispeech(root: str | Path, split: str | list[str] | None = None, **_) -> Manifest:
    """LibriSpeech's ``ROOT/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` for one or
    more split folders (``train-clean-100``, ``[train-clean-100, train-other-500]``); unlabeled."""
    root = Path(root)
    if not split:
        raise DataError("librispeech needs split: a folder name such as train-clean-100, or a list of them")
    items = []
    for name in [split] if isinstance(split, str) else list(split):
        folder = _need(root / name, "LibriSpeech split folder")
        files = sorted(folder.glob("*/*/*.flac"))
        if not files:
            raise DataError(f"{folder}: no <speaker>/<chapter>/*.flac files")
        items += [Item(p, (), p.relative_to(root).as_posix()) for p in files]
    return Manifest(items, [], name="librispeech")


def read_audio(root: str | Path, split: str | None = None, **_) -> Manifest:
    """Every audio file (:data:`AUDIO_SUFFIXES`) under ``root``, or ``root/split`` where that
    folder exists, recursively; unlabeled."""
    root = Path(root)
    base = root / split if split and (root / split).is_dir() else _need(root, "audio folder")
    files = _audio_files(base)
    if not files:
        raise DataError(f"{base}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return Manifest([Item(p, (), p.relative_to(base).as_posix()) for p in files], [], name=root.name)


def read_mixture(sources: list, root: str | Path | None = None, **options) -> Manifest:
    """Unlabeled sources read as one split: each ``{format, weight (default 1), <its options>}``
    gets this reader's ``options`` (the split's, such as ``split``) under its own keys, and a
    relative ``root`` of its own under ``root``. Item ``i`` of source ``s`` (``n_s`` clips) has
    weight ``w_s / n_s``, so a weighted draw picks source ``s`` with probability
    ``w_s / sum_t w_t`` whatever its size; ``w_s = n_s`` draws clips uniformly, as one
    concatenated list would. SSAST (Gong et al. 2022) pretrains on AudioSet and LibriSpeech
    together: two unlabeled sources (``ast_json`` without ``label_csv``, ``librispeech``)."""
    if not isinstance(sources, list) or not sources:
        raise DataError("mixture needs sources: a list of {format: ..., weight: ..., <options>}")
    items, weights, names, notes = [], [], [], []
    for s, spec in enumerate(sources):
        if not isinstance(spec, dict) or "format" not in spec:
            raise DataError(f"mixture sources[{s}]: needs a format")
        spec = dict(spec)
        fmt, weight = spec.pop("format"), spec.pop("weight", 1.0)
        if fmt == "mixture":
            raise DataError(f"mixture sources[{s}]: a mixture cannot hold a mixture; list its sources instead")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise DataError(f"mixture sources[{s}] ({fmt}): weight {weight!r} must be a positive number")
        own_root = spec.pop("root", None)
        if own_root is not None or root is not None:
            spec["root"] = _under(root, own_root) if own_root is not None else root
        try:
            m = read_manifest(fmt, **{**options, **spec})
        except DataError as e:
            raise DataError(f"mixture sources[{s}] ({fmt}): {e}") from None
        if m.labelled:
            raise DataError(f"mixture sources[{s}] ({fmt}): labelled ({len(m.classes)} classes); a mixture "
                            "takes unlabeled sources only (ast_json without label_csv, librispeech, audio, or "
                            "any reader with ignore_labels: true)")
        items += m.items
        weights += [float(weight) / len(m)] * len(m)
        names.append(m.name or fmt)
        notes += m.notes
    return Manifest(items, [], name="+".join(names), notes=notes, weights=weights)


FORMATS = {
    "ast_json": read_ast_json, "esc50": read_esc50, "speechcommands": read_speechcommands,
    "voxceleb1": read_voxceleb1, "folder": read_folder, "csv": read_csv_manifest, "fsdd": read_fsdd,
    "librispeech": read_librispeech, "audio": read_audio, "mixture": read_mixture,
}


def read_manifest(format: str, *, ignore_labels: bool = False, **options) -> Manifest:
    """``read_manifest("esc50", root=..., split="test", test_fold=1)`` and so on.

    ``ignore_labels``: the clips of a labelled dataset as unlabeled audio (its labels and
    classes dropped), as SSAST pretrains on AudioSet's clips; without it a labelled reader
    stays labelled, and pretraining refuses it."""
    if format not in FORMATS:
        raise DataError(f"data format {format!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(ignore_labels, bool):
        raise DataError(f"data format {format!r}: ignore_labels must be true or false, got {ignore_labels!r}")
    try:
        manifest = FORMATS[format](**options)
    except TypeError as e:
        raise DataError(f"data format {format!r}: {e}") from None
    if not manifest.items:
        raise DataError(f"{format} {options}: no clips in this split")
    if ignore_labels:
        items = [Item(it.path, (), it.source) for it in manifest.items]
        manifest = Manifest(items, [], name=manifest.name, notes=manifest.notes, weights=manifest.weights)
    return manifest
