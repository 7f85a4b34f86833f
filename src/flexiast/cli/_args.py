"""Argument types and argument groups the ``flexiast`` subcommands share.

Every value the command line can get wrong is parsed here as an argparse ``type=``, so a
mistake is reported by argparse (usage, ``error: argument --data: ...``, exit code 2):
patch sizes, positive numbers, ``KEY=VALUE`` reader options, the ``--data`` dataset spec
and ``--features``. :class:`UsageError` is for the mistakes only a whole command line
shows (``main`` reports it through the subcommand's parser the same way).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..constants import RUN_WEIGHTS

DATA_METAVAR = "FORMAT:ROOT[,KEY=VALUE...]"
_CLOSE = {"[": "]", "{": "}"}
_QUOTES = "\"'"


class UsageError(Exception):
    """A command line that parses but does not make sense (a missing dataset, options that exclude each other)."""


class IntermixedParser(argparse.ArgumentParser):
    """A subcommand's parser whose options and positionals mix in any order.

    argparse's plain parsing gives a positional list (``train``'s overrides, ``predict``'s
    audio files) only the arguments before the first option: ``train r.yaml --check a=1``
    would leave ``a=1`` unrecognized. :meth:`parse_known_intermixed_args` reads the options
    first, then the positionals, so ``r.yaml --check a=1`` and ``r.yaml a=1 --check`` are
    the same command line. (The subparsers action calls ``parse_known_args`` on this parser.)
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # the two passes of parse_known_intermixed_args
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_command(sub, name: str, func, **kwargs) -> argparse.ArgumentParser:
    """Subcommand ``name`` running ``func(args)``; ``args.parser`` is its parser, which reports usage errors."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=func, parser=parser)
    return parser


# -- patch sizes and numbers ---------------------------------------------------------------------------
def patch_sizes(text: str) -> list:
    """``"8,16,8x32"`` -> ``[8, 16, (8, 32)]``."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            out.append(tuple(int(v) for v in item.split("x")) if "x" in item else int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a patch size like 16 or 16x32") from None
    return out


def patch_size(text: str):
    """One patch size: ``"16"`` -> ``16``, ``"16x32"`` -> ``(16, 32)``."""
    sizes = patch_sizes(text)
    if len(sizes) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one patch size, like 16 or 16x32")
    return sizes[0]


def frame_counts(text: str) -> list[int]:
    """``--input-lengths``: positive frame counts, comma-separated (``"256,512,1024"``)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of frame counts") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive frame counts, like 256,512,1024")
    return values


def seconds_list(text: str) -> list[float]:
    """``--lengths``: positive clip lengths in seconds, comma-separated (``"0.25,0.5,1,2"``)."""
    try:
        values = [float(x.strip().removesuffix("s")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seconds") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive lengths in seconds, like 0.25,0.5,1,2")
    return values


def positive(kind):
    """A type for numbers of ``kind`` (int, float) above zero."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value
    return parse


def non_negative(text: str) -> int:
    """A count that may be zero (``--workers 0``: decode in the main process)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def output_file(formats: tuple[str, ...]):
    """A type for an output file whose suffix is one of ``formats`` (``.csv``, ...)."""
    def parse(text: str) -> Path:
        if Path(text).suffix not in formats:
            raise argparse.ArgumentTypeError(f"{text!r}: the output must end in {' or '.join(formats)}")
        return Path(text)
    return parse


# -- KEY=VALUE and the --data spec ---------------------------------------------------------------------
def split_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes.

    A bracket, brace or quote opens a group where an item or a value starts (``folds=[2,3]``,
    ``name="a,b"``) or inside another group; elsewhere (``/data/Bob's``) it is an ordinary
    character. Raises ``ValueError`` for a group left open or closed by the wrong bracket.
    """
    items, start, stack, quote = [], 0, [], None
    i = 0
    while i < len(text):
        ch = text[i]
        opens_here = stack or i == start or text[i - 1] == "="
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = None
        elif ch in _QUOTES and opens_here:
            quote = ch
        elif ch in _CLOSE and opens_here:
            stack.append(_CLOSE[ch])
        elif stack and ch in "]}":
            if ch != stack.pop():
                raise ValueError(f"{ch!r} at {text[: i + 1]!r} closes no matching bracket")
        elif ch == "," and not stack:
            items.append(text[start:i])
            start = i + 1
        i += 1
    if quote:
        raise ValueError(f"unclosed {quote} in {text[start:]!r}")
    if stack:
        raise ValueError(f"unclosed bracket in {text[start:]!r} (expected {stack[-1]!r})")
    items.append(text[start:])
    return items


def parse_value(text: str):
    """A reader option's value: JSON where it is JSON (``1``, ``true``, ``[2,3]``, ``{...}``, ``"a,b"``),
    the text between single quotes, else the text itself (``labels.csv``, ``test``)."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if text.startswith(("[", "{", '"')):
            raise ValueError(f"{text!r} is not valid JSON ({e})") from None
        return text


def _pair(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE")
    try:
        return key.strip(), parse_value(value)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None


def key_value(text: str) -> tuple[str, object]:
    """``--option KEY=VALUE`` -> ``(key, value)``, the value parsed by :func:`parse_value`."""
    try:
        return _pair(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclass(frozen=True)
class DataSource:
    """A dataset as its reader takes it: the format, the reader's options (root, split, folds, ...),
    ``label`` naming it in output (the ``--data`` text) and the split it reads."""

    format: str
    options: dict
    label: str
    split: str | None = None

    def read(self):
        """The :class:`~flexiast.data.Manifest` of this dataset."""
        from ..data import read_manifest

        return read_manifest(self.format, **self.options)


def data_spec(text: str) -> DataSource:
    """``--data FORMAT:ROOT[,KEY=VALUE...]``, e.g. ``esc50:/data/ESC-50,esc10=true,folds=[2,3,4,5]``.

    Pairs are separated by the commas outside brackets and quotes; values are parsed by
    :func:`parse_value`. An empty ROOT (``ast_json:,datafile=...``) sets no root.
    """
    from ..data import FORMATS

    fmt, sep, rest = text.partition(":")
    try:
        if not sep or not fmt:
            raise ValueError(f"expected {DATA_METAVAR}")
        if fmt not in FORMATS:
            raise ValueError(f"{fmt!r} is not a data format (one of {', '.join(sorted(FORMATS))})")
        root, *pairs = split_items(rest)
        options = {}
        for key, value in map(_pair, pairs):
            if key in options:
                raise ValueError(f"{key!r} is given twice")
            options[key] = value
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if len(root) >= 2 and root[0] == root[-1] and root[0] in _QUOTES:
        root = root[1:-1]
    return DataSource(fmt, {"root": root, **options} if root else options, label=text)


def add_data_arguments(p: argparse.ArgumentParser, split: str = "train") -> None:
    """``--data`` (or ``--format``, ``--root``, ``--option``) and ``--split``; read with :func:`data_source`."""
    from ..data import FORMATS

    p.add_argument("--data", type=data_spec, metavar=DATA_METAVAR,
                   help="the dataset in one string, e.g. esc50:/data/ESC-50,test_fold=1 or fsdd:../shared/data/fsdd "
                        "(values are JSON where they parse: folds=[2,3,4,5], esc10=true)")
    p.add_argument("--format", choices=sorted(FORMATS), help="dataset layout (or give --data)")
    p.add_argument("--root", help="dataset folder (for ast_json / csv, give --option datafile=... etc.)")
    p.add_argument("--split", default=split)
    p.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. task=speakers, test_fold=1, folds=[2,3], label_csv=labels.csv")


def data_source(args: argparse.Namespace, *, required: bool = True) -> DataSource | None:
    """The dataset the arguments of :func:`add_data_arguments` name, or None where they name none
    and ``required`` is false. ``--option`` overrides the pairs of ``--data``, whose root
    overrides ``--root``; a ``split`` among them overrides ``--split``."""
    if args.data is None and args.format is None:
        if required:
            raise UsageError(f"give the dataset with --data {DATA_METAVAR} or --format and --root")
        return None
    options = dict(args.option)
    fmt = args.format
    if args.data is not None:
        fmt = args.data.format
        for key, value in args.data.options.items():
            options.setdefault(key, value)
    if args.root:
        options.setdefault("root", args.root)
    if fmt != "ast_json":
        options.setdefault("split", args.split)
    label = args.data.label if args.data is not None else f"{fmt}:{args.root or ''}"
    return DataSource(fmt, options, label, split=options.get("split", args.split))


# -- the model of deploy commands ----------------------------------------------------------------------
def features_arg(text: str):
    """``--features``: a dataset name (AST's statistics) or a JSON object of FeatureConfig fields."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a dataset name or a JSON object ({e})") from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The checkpoint and how to read it: ``--weights``, ``--features``, ``--compression``,
    ``--multilabel`` and ``--device``; load with :func:`load_inference`."""
    p.add_argument("checkpoint", help="a training run directory, a saved model directory, or a weights file")
    p.add_argument("--weights", choices=RUN_WEIGHTS, default=RUN_WEIGHTS[0],
                   help=f"which weights of a training run (default {RUN_WEIGHTS[0]})")
    p.add_argument("--features", type=features_arg, help="feature settings where the weights carry none: a dataset "
                   "name (audioset, esc50, speechcommands, vggsound, voxceleb) or a JSON object")
    p.add_argument("--compression", help="the input compression of the model's last phase (fshift:2, avgpool:4, ...), "
                   "where the weights do not say")
    p.add_argument("--multilabel", action=argparse.BooleanOptionalAction, default=None,
                   help="sigmoid (multi-label) or softmax scores, where the weights do not say")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")


def load_inference(args: argparse.Namespace, classifier: bool = True):
    """The :class:`~flexiast.deploy.model.InferenceModel` that :func:`add_model_arguments` name
    (``classifier=False``: a pretraining model too, for its embeddings)."""
    from ..deploy.model import load_inference_model

    return load_inference_model(args.checkpoint, weights=args.weights, features=args.features,
                                compression=args.compression, multilabel=args.multilabel, device=args.device,
                                profile=getattr(args, "profile", None), classifier=classifier)

