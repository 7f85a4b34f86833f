"""What every model family provides, and the registry the rest of flexiast finds them in.

A family is one folder under :mod:`flexiast.models` that registers a :class:`ModelFamily`:
its name (``arch``), its configuration class, its model class, the kind of features it
takes, its named sizes, how it reads foreign weights and how it counts FLOPs. The
training engine, evaluation, deployment and the CLI hold a model and its configuration
and call the methods below; they never name a family (``tests/test_layering.py``).

A family's configuration is a frozen dataclass deriving from :class:`FamilyConfig` (which
gives ``to_dict()`` with ``arch``, ``from_dict()`` and ``replace(**changes)``), with ``arch``
(a class constant), ``num_classes``, ``input_fdim`` (mel bins), ``input_tdim`` (frames) and
``labels``.
Its model is a :class:`FlexModel`, which builds its configuration, its presets and, through
:func:`load_model`, its ``from_pretrained``. Reading a weights file (:func:`read_weights`,
:func:`identify`, :func:`load_model`) lives here, next to the registry it asks, so that the
model classes use it without importing :mod:`flexiast.models.registry` (which imports this).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn

from ..checkpoints import FORMAT_VERSION, CheckpointError, load_state_dict, save_directory, strip_module
from ..constants import DEFAULT_ARCH, SAVE_FORMATS
from .points import PatchPoints, PointKind

__all__ = ["FlexModel", "FamilyConfig", "FlopCountBase", "check_adapt", "ModelFamily", "TokenEmbedding", "register", "get_family", "families", "FamilyError",
           "identify", "UnknownLayout", "WeightsFile", "read_weights", "load_model"]


class FamilyError(ValueError):
    """An unknown family or preset name, or a configuration of another family."""


class FamilyConfig:
    """What every family's configuration (a frozen dataclass deriving from this) shares: its
    dict form with ``arch`` (``to_dict``, ``from_dict``, which refuses another family's dict and
    unknown keys) and ``replace``. ``tuple_fields`` name the fields held as tuples and written
    as lists (``labels`` always is). A dict without ``arch`` is the default family's
    (:data:`flexiast.constants.DEFAULT_ARCH`: files written before families had names)."""

    arch: ClassVar[str]
    tuple_fields: ClassVar[tuple[str, ...]] = ()

    def _positive_ints(self, *names: str) -> None:
        """Refuse a field of ``names`` that is not a positive integer (a bool is not one)."""
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")

    def _rates(self, *names: str) -> None:
        """Refuse a dropout rate of ``names`` outside ``[0, 1)``."""
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must lie in [0, 1)")

    def _tuple_labels(self) -> None:
        """``labels`` (if any) as a tuple of strings."""
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))

    def _check_labels(self) -> None:
        """Refuse ``labels`` that are not one per class."""
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for num_classes={self.num_classes}")

    def replace(self, **changes):
        """This configuration with ``changes``; a new ``num_classes`` without ``labels`` drops the labels."""
        d = self.to_dict()
        if "num_classes" in changes and "labels" not in changes:
            d["labels"] = None
        d.update(changes)
        return type(self).from_dict(d)

    def to_dict(self) -> dict:
        d = {"arch": self.arch, **dataclasses.asdict(self)}
        for k in (*self.tuple_fields, "labels"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        arch = d.pop("arch", DEFAULT_ARCH if cls.arch == DEFAULT_ARCH else None)
        if arch != cls.arch:
            raise ValueError(f"a {arch!r} configuration, not a {cls.arch!r} one")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown model configuration keys: {', '.join(unknown)}")
        for k in cls.tuple_fields:
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return cls(**d)


class FlexModel(nn.Module):
    """A model whose input geometry can change after it is built.

    ``forward(spec[batch, frames, mel_bins], **call)`` gives logits; ``call`` holds what
    the family lets a caller vary per call (an AST's ``patch_size`` and ``resize``).
    ``adapt(kernel_resize=..., **changes)`` returns the same network for another geometry
    or head (``input_tdim``, ``patch_size``, ``stride``, ``num_classes``): what a training
    phase, a fine-tuning start or a deployment at one size needs, with the weights moved
    as the family defines (an AST PI-resizes its kernel and resizes its positional grid).
    """

    config: Any
    #: The family's configuration class (a :class:`FamilyConfig`): what the model is built from.
    config_class: ClassVar[type]
    #: The features the family was designed for (:attr:`flexiast.features.FeatureConfig.kind`).
    feature_kind: ClassVar[str]
    #: Where the classifier's parameters are in the state dict (what a new ``num_classes`` replaces).
    head_prefix: ClassVar[str] = "head."

    def __init__(self, num_classes: int | None = None, **kwargs):
        """Set :attr:`config`: ``config=`` as given, or :attr:`config_class` built from
        ``num_classes`` (None: the configuration's default) and ``kwargs``. A family's
        ``__init__`` calls this first, then builds its modules from ``self.config``."""
        super().__init__()
        if "config" in kwargs:
            config = kwargs.pop("config")
            if kwargs:
                raise TypeError(f"pass either config= or keyword arguments, not both: {sorted(kwargs)}")
        else:
            config = self.config_class(**({} if num_classes is None else {"num_classes": num_classes}), **kwargs)
        self.config = config

    @property
    def arch(self) -> str:
        return self.config.arch

    @classmethod
    def preset(cls, name: str, num_classes: int | None = None, **kwargs) -> "FlexModel":
        """The family's named size ``name`` (its ``presets``: ``AST.preset("tiny", 10)``, the
        ``ast-tiny`` of :func:`flexiast.models.create_model`), ``kwargs`` overriding its fields."""
        presets = get_family(cls.config_class.arch).presets
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
        return cls(num_classes, **{**presets[name], **kwargs})

    @classmethod
    def from_pretrained(cls, path: "str | Path | WeightsFile", **overrides) -> "FlexModel":
        """The model of this family in ``path`` (a file or directory in any layout the family
        reads, or a :class:`WeightsFile` already read), adapted by ``overrides``: the family's
        :func:`load_model` keywords (an AST's ``num_classes``, ``patch_size``, ``input_tdim``,
        ``stride``, ``source_*`` hints; :meth:`flexiast.AST.from_pretrained`). A file of
        another family is refused, naming both. Never executes code from the file."""
        return load_model(path, arch=cls.config_class.arch, **overrides)

    def adapt(self, *, kernel_resize: str = "pi", **changes) -> "FlexModel":
        raise NotImplementedError

    #: Layers the tokens pass through (:meth:`embed` numbers them ``0 .. num_layers``).
    num_layers: int

    def embed(self, spec: torch.Tensor, *, layer: int | None = None, **call) -> TokenEmbedding:
        """The tokens of one layer (``None``: the last, as the head reads it) for ``spec``."""
        raise NotImplementedError

    def layer_index(self, layer: int | None) -> int:
        """``layer`` as :meth:`embed` counts, ``0`` (the input tokens) to ``num_layers`` (the last);
        ``None`` is the last and a negative one counts from the end (``-1``: the last). A
        ``ValueError`` names the range where the model has no such layer."""
        n = self.num_layers
        chosen = n if layer is None else layer + n + 1 if layer < 0 else layer
        if isinstance(layer, bool) or not 0 <= chosen <= n:
            raise ValueError(f"layer={layer!r} is outside 0..{n} (or -{n + 1}..-1) for this {n}-layer model")
        return chosen

    def fixed(self, *, input_tdim: int | None = None, **call) -> "FlexModel":
        """A copy that computes ``self(spec, **call)`` for ``spec`` of ``input_tdim`` frames
        with nothing resized per call: what export and fast inference at one setting use."""
        raise NotImplementedError

    def _rebuilt(self, changes: dict, fixed_by_weights=()) -> "FlexModel":
        """A copy of this network under ``config.replace(**changes)`` holding its weights
        unchanged, on its device, in its dtype and mode: :meth:`adapt` and :meth:`fixed` of a
        family whose weights do not depend on the input length (HTS-AT, CNN14). Fields in
        ``fixed_by_weights`` are refused (:func:`check_adapt`); a new ``num_classes`` leaves the
        head (the parameters under :attr:`head_prefix`) freshly initialised."""
        check_adapt(self.config, changes, fixed_by_weights)
        config = self.config.replace(**changes) if changes else self.config
        sd = {k: v.detach().clone() for k, v in self.state_dict().items()}
        new_head = config.num_classes != self.config.num_classes
        if new_head:
            sd = {k: v for k, v in sd.items() if not k.startswith(self.head_prefix)}
        param = next(self.parameters())
        model = type(self)(config=config)
        model.load_state_dict(sd, strict=not new_head)
        return model.to(device=param.device, dtype=param.dtype).train(self.training)

    def save_pretrained(self, directory: str | Path, format: str = "flexiast", inference: dict | None = None) -> Path:
        """``directory/config.json`` + ``model.safetensors``: flexiast's layout for every family
        (the configuration with its ``arch``; ``inference``: the features and how scores are
        read), or a family's foreign layout (``format``, e.g. ``"hf"`` for an AST)."""
        family = get_family(self.config.arch)
        if format == "flexiast":
            config = {"format": "flexiast", "format_version": FORMAT_VERSION, "model_config": self.config.to_dict()}
            if inference is not None:
                config["inference"] = inference
            return save_directory(directory, self.state_dict(), config, {"format": "flexiast"})
        if format not in family.writers:
            formats = ", ".join(["flexiast", *family.writers])
            known = "" if format in SAVE_FORMATS else f" (flexiast writes {', '.join(SAVE_FORMATS)})"
            raise ValueError(f"format={format!r}: a {family.arch} model is saved as {formats}{known}")
        return family.writers[format](self, Path(directory), inference)


def check_adapt(config, changes: dict, fixed_by_weights) -> None:
    """Refuse ``changes`` (to :meth:`FlexModel.adapt`) of fields that the weights fix (widths,
    depth, the number of prefix tokens), naming them and those that may change."""
    allowed = sorted({f.name for f in dataclasses.fields(config)} - set(fixed_by_weights))
    bad = sorted(set(changes) - set(allowed))
    if bad:
        raise ValueError(f"cannot adapt {', '.join(bad)}: the weights fix it; allowed: {', '.join(allowed)}")


class FlopCountBase:
    """What every family's FLOP count shares: a frozen dataclass of per-component forward
    counts for ``batch_size`` clips, then ``tokens``, ``grid`` and ``batch_size``. A component's
    backward costs twice its forward (the input and the weight gradients), except those named
    in ``once``, whose input needs no gradient (an AST's patch embedding of the spectrogram)."""

    once: ClassVar[tuple[str, ...]] = ()

    def components(self) -> dict[str, int]:
        skip = {"tokens", "grid", "batch_size"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    @property
    def forward(self) -> int:
        return sum(self.components().values())

    @property
    def backward(self) -> int:
        return sum(v if k in self.once else 2 * v for k, v in self.components().items())

    @property
    def training(self) -> int:
        return self.forward + self.backward

    @property
    def gflops_per_clip(self) -> float:
        return self.forward / self.batch_size / 1e9

    @staticmethod
    def input_of(input_shape, input_fdim: int | None = None, built_for: str = "") -> tuple[int, int, int]:
        """``(batch, frames, mel_bins)`` of a counter's ``input_shape``, ``(frames, mel_bins)`` for
        one clip or ``(batch, frames, mel_bins)``; with ``input_fdim``, other mel bins are refused
        (naming the model, ``built_for``), for a family whose weights fix them."""
        if len(input_shape) == 2:
            batch, (frames, bins) = 1, input_shape
        elif len(input_shape) == 3:
            batch, frames, bins = input_shape
        else:
            raise ValueError(f"input_shape={tuple(input_shape)}: expected (frames, mel_bins) or "
                             "(batch, frames, mel_bins)")
        if input_fdim is not None and bins != input_fdim:
            raise ValueError(f"input_shape has {bins} mel bins; this {built_for} was built for input_fdim={input_fdim}")
        return batch, frames, bins


@dataclass(frozen=True)
class TokenEmbedding:
    """A layer's tokens: ``prefix [B, P, D]`` (an AST's cls and distillation tokens) and
    ``tokens [B, gf * gt, D]``, a ``(gf, gt)`` grid of frequency x time positions in row-major
    order (:meth:`FlexModel.embed`). ``pooling`` says which of them the head reads pooled:
    ``"prefix"``, ``"mean"`` (the patch tokens; an SSAST fine-tuned with ``ft_avgtok``) or
    ``"attention"`` (the patch tokens through ``pool``, the model's learned attention pooling:
    ElasticAST, Feng et al., Interspeech 2024)."""

    prefix: torch.Tensor
    tokens: torch.Tensor
    grid: tuple[int, int]
    pooling: str = "prefix"
    pool: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def pooled(self) -> torch.Tensor:
        """``[B, D]``: the representation the head reads, the mean of the prefix tokens, of the
        patch tokens with ``pooling="mean"``, or ``pool(tokens)`` with ``pooling="attention"``."""
        if self.pooling == "attention":
            if self.pool is None:
                raise ValueError("pooling='attention' reads the tokens through the model's pool; this embedding "
                                 "was made without it")
            return self.pool(self.tokens)
        return self.prefix.mean(dim=1) if self.pooling == "prefix" else self.tokens.mean(dim=1)

    def mean(self) -> torch.Tensor:
        """``[B, D]``: the mean of the patch tokens."""
        return self.tokens.mean(dim=1)

    def frames(self) -> torch.Tensor:
        """``[B, gt, D]``: per time position, the mean of its tokens over frequency."""
        b, _, d = self.tokens.shape
        return self.tokens.reshape(b, self.grid[0], self.grid[1], d).mean(dim=1)


@dataclass(frozen=True)
class ModelFamily:
    """A registered family.

    * ``presets``: named sizes, ``{"tiny": {...}}``, which :func:`flexiast.models.create_model`
      takes as ``"<arch>-<preset>"``;
    * ``detect(state_dict, foreign_config) -> str | None``: the name of a foreign layout
      this family reads (``"hf"``, ``"timm"``, ...), or None; ``layouts`` says in words
      which ones, for the error when no family reads a file;
    * ``load(state_dict, layout, flexiast_config, foreign_config, path=, **overrides) ->
      model``: a state dict of ``layout`` as a model, adapted by ``overrides``;
    * ``init_from(path_or_weights_file, target, **hints) -> model``: a recipe's initial weights
      made to fit its ``target`` configuration (input size, classes, kernel); an
      :class:`flexiast.models.loading.InitFrom` around the family's hook. A family with
      patch points also takes ``kernel_resize`` (pi or bl), how a kernel of another size moves;
    * ``flops(config, input_shape, **call)``: analytic FLOPs, equal to ``FlopCounterMode``;
    * ``writers``: ``{format: write(model, directory, inference)}`` for layouts other than
      flexiast's;
    * ``recipe_section``: the dataclass of a recipe's ``model:`` section for this family,
      and ``config_from_recipe(section, **data) -> config`` (``data``: ``num_classes``,
      ``input_fdim``, ``input_tdim``, ``labels``);
    * ``recipe_keys``: the recipe keys outside ``model:`` that only this family takes
      (:class:`flexiast.recipe_checks.FamilyKeys`: an AST's ``phases[].patch``, an SSAST's
      ``pretrain``); another family's recipe setting one is refused, naming it;
    * ``points``: what its calls vary (:mod:`flexiast.models.points`): a patch size
      (:class:`~flexiast.models.points.PatchPoints`, an AST's) or the input length
      (:class:`~flexiast.models.points.LengthPoints`, HTS-AT's). Only a patch family may
      draw patch sizes per step, widen the kernel (``patch:C``) or validate at several sizes;
    * ``packs``: whether its models take packed clips of their own lengths;
    * ``pools_lengths``: whether ``model(spec, lengths=...)`` pools each clip of a padded batch
      over its own frames only (what a length bucket passes it).
    """

    arch: str
    config_class: type
    model_class: type
    feature_kind: str
    presets: dict = field(default_factory=dict)
    detect: Callable[..., str | None] = lambda sd, foreign: None
    layouts: str = "flexiast's own"
    load: Callable[..., Any] | None = None
    init_from: Callable[..., Any] | None = None
    flops: Callable[..., Any] | None = None
    writers: dict = field(default_factory=dict)
    recipe_section: type | None = None
    config_from_recipe: Callable[..., Any] | None = None
    recipe_keys: tuple = ()
    #: A small configuration (keyword arguments of ``config_class``) and calls that exercise
    #: its flexibility: what the contract test (``tests/test_families.py``) runs on every family.
    #: The contract adapts ``tiny`` to a quarter of its ``input_tdim``, which must still be a valid input.
    tiny: dict = field(default_factory=dict)
    example_calls: tuple[dict, ...] = ({},)
    points: PointKind = field(default_factory=PatchPoints)
    #: Whether the model classifies (``forward`` gives ``[batch, num_classes]`` logits). A
    #: pretraining family (SSAST) has no classifier: its models train on unlabeled audio with
    #: their own task, are refused where a classifier is expected, and start an AST's fine-tuning.
    classifier: bool = True
    #: Whether ``model(clips, **call)`` takes :class:`flexiast.models.packing.Clips` of their own
    #: lengths, packed into rows with attention restricted to each clip (ElasticAST): a token
    #: family's models. A family without it trains on length buckets padded to their longest.
    packs: bool = False
    #: Whether ``model(spec, lengths=lengths)`` leaves each clip's padding (its frames past
    #: ``lengths[b]`` of a padded batch ``spec``) out of its clip pooling: length buckets pass
    #: their clips' lengths to such a family (HTS-AT, CNN14).
    pools_lengths: bool = False


_FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    if family.arch in _FAMILIES and _FAMILIES[family.arch] is not family:
        raise FamilyError(f"a model family {family.arch!r} is already registered")
    _FAMILIES[family.arch] = family
    return family


def get_family(arch: str) -> ModelFamily:
    if arch not in _FAMILIES:
        raise FamilyError(f"unknown model family {arch!r}; registered: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[arch]


def families() -> dict[str, ModelFamily]:
    return dict(_FAMILIES)


# -- weights files ---------------------------------------------------------------------
class UnknownLayout(CheckpointError):
    """A state dict that no registered family reads (:func:`identify`); ``keys`` are a few of its keys."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()):
        super().__init__(message)
        self.keys = keys


def identify(sd: dict, flexiast_config: dict | None, foreign_config: dict | None) -> tuple[ModelFamily, str]:
    """``(family, layout)`` of a state dict: ours (``"flexiast"``; files written before families
    had names are the default family's) or the one layout one family's ``detect`` claims."""
    if flexiast_config is not None:
        return get_family(flexiast_config.get("arch", DEFAULT_ARCH)), "flexiast"
    sd = strip_module(sd)
    claims = [(f, layout) for f in families().values() if (layout := f.detect(sd, foreign_config)) is not None]
    if len(claims) == 1:
        return claims[0]
    if claims:
        raise CheckpointError("checkpoint layout claimed by several families: "
                              + ", ".join(f"{f.arch} ({layout})" for f, layout in claims))
    sample = ", ".join(sorted(sd)[:6])
    readable = "; ".join(f"{f.arch}: {f.layouts}" for f in families().values())
    raise UnknownLayout(f"unrecognised checkpoint layout: expected one of {readable}; found {len(sd)} keys "
                        f"such as {sample}", tuple(sorted(sd)[:6]))


@dataclass(frozen=True)
class WeightsFile:
    """A weights file read once (:func:`read_weights`): its state dict (``module.`` stripped),
    our configuration or a foreign one where it has them, and the family and layout that
    :func:`identify` gives. :func:`load_model` and a family's ``init_from`` build from it as
    from its path, as often as needed (the state dict is not changed by building)."""

    path: Path
    sd: dict
    flexiast_config: dict | None
    foreign_config: dict | None
    family: ModelFamily
    layout: str


def read_weights(path: str | Path) -> WeightsFile:
    """``path`` read (never executing code from it) and identified, naming the file in errors
    (an :class:`UnknownLayout` where no family reads it)."""
    sd, flexiast_config, foreign_config = load_state_dict(path)
    try:
        family, layout = identify(sd, flexiast_config, foreign_config)
    except UnknownLayout as e:
        raise UnknownLayout(f"{path}: {e}", e.keys) from None
    except (CheckpointError, FamilyError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return WeightsFile(Path(path), strip_module(sd), flexiast_config, foreign_config, family, layout)


def load_model(path: str | Path | WeightsFile, *, arch: str | None = None, **overrides) -> FlexModel:
    """The model in ``path`` (a file or a directory, or a :class:`WeightsFile` already read),
    adapted by ``overrides``.

    ``arch`` refuses a file of another family, naming both. ``overrides`` are the
    family's (an AST takes ``num_classes``, ``patch_size``, ``input_tdim``, ``stride``, and
    ``source_*`` hints that describe an ambiguous file; :meth:`flexiast.AST.from_pretrained`).
    Never executes code from the file (safetensors or ``torch.load(weights_only=True)``).
    """
    w = path if isinstance(path, WeightsFile) else read_weights(path)
    if arch is not None and w.family.arch != arch:
        raise CheckpointError(f"{w.path}: holds a model of the {w.family.arch} family ({w.layout} layout), where one "
                              f"of the {arch} family is expected")
    return w.family.load(w.sd, w.layout, w.flexiast_config, w.foreign_config, path=w.path, **overrides)
