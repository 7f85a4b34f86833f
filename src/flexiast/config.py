"""The training configuration: a YAML recipe, dotted overrides, and validation before any data.

A recipe is a YAML mapping whose sections are the dataclasses below; ``phases`` is a
list. ``load_config("recipe.yaml", ["train.lr=1e-4", "phases.0.epochs=3"])`` reads the
file, applies each ``key.path=value`` (values parsed as YAML, so ``[8,16]`` is a list),
builds the typed configuration and validates it. Every refusal is a :class:`ConfigError`
that names the key (``phases[1].patch.sizes``) and, where there is one, the file, so a
wrong setting stops the run before a clip is read:

* unknown keys and wrong types;
* impossible values: negative rates, a patch larger than the phase's (compressed) input,
  a compression that leaves no frames, sampler weights that do not match the sizes;
* missing files: the data root, the initial weights, the distillation teacher; an output
  directory that cannot be written.

Semantics of the sections are in the docstrings of each field group and in
``docs/TRAINING.md``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .constants import (AUTO, AXES, DEFAULT_ARCH, DEVICES, FEATURE_KINDS, HTSAT_EPOCH_BOUNDS, HTSAT_EPOCH_RATES,
                        KFOLD_PROTOCOLS, LOSSES, OFF, ON_ERROR, OPTIMIZERS, PATCH_SAMPLERS, PRECISIONS,
                        RESIZE_METHODS, SCHEDULES, SELECT_MEAN)
from .data.augment import AugmentConfig
from .features import DATASET_STATS, Compression, FeatureConfig
from .models import FamilyError, get_family
from .models.points import OperatingPoint, PatchPoints
from .resize import to_pair

__all__ = ["ConfigError", "RunConfig", "PhaseConfig", "PatchSampling", "PretrainSection", "OptimizerConfig",
           "ScheduleConfig",
           "load_config", "apply_overrides", "build_config", "config_to_dict"]


#: Readers that take ``folds=[...]``, which ``data.kfold`` needs.
KFOLD_FORMATS = ("esc50",)


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the key."""


class ModelSection:
    """The recipe's ``model:`` section. Its ``arch`` (default ``ast``) picks the model family,
    whose section dataclass holds the fields (:class:`flexiast.models.ast.recipe.ASTSection`
    for an AST); unknown fields are refused with that family's list."""

    @staticmethod
    def section_class(raw, key: str) -> type:
        arch = raw.get("arch", DEFAULT_ARCH) if isinstance(raw, dict) else DEFAULT_ARCH
        if not isinstance(arch, str):
            raise ConfigError(f"{key}.arch: expected a model family's name, got {arch!r}")
        try:
            return get_family(arch).recipe_section
        except FamilyError as e:
            raise ConfigError(f"{key}.arch: {e}") from None


@dataclass
class InitSection:
    """Initial weights: ``path`` to an ImageNet ViT/DeiT (timm's files or Google's JAX ``.npz``),
    an AST (any patch size, moved into the stored kernel with the first phase's ``transfer``,
    PI-resize by default), a Hugging Face AST or a flexiast checkpoint; none = scratch.
    ``source_*`` describe the file where its shapes are ambiguous (see ``AST.from_pretrained``)."""

    path: str | None = None
    source_stride: int | None = None
    source_input_tdim: int | None = None
    source_input_fdim: int | None = None


@dataclass
class FeaturesSection:
    """The front end. ``kind`` (default: the model family's, ``kaldi_fbank`` for an AST,
    ``slaney_logmel`` for HTS-AT) starts from that front end's defaults
    (:meth:`flexiast.features.FeatureConfig.for_kind`); fields given override them.
    For Kaldi fbank, ``dataset`` takes AST's statistics and length (audioset, esc50, ...)
    and explicit ``mean``/``std``/``target_length`` override them; the log-mel is not
    normalised here (HTS-AT's BatchNorm does it) and takes no statistics."""

    dataset: str | None = None
    kind: str | None = None
    num_mel_bins: int | None = None
    target_length: int | None = None
    mean: float | None = None
    std: float | None = None
    frame_length_ms: float | None = None
    frame_shift_ms: float | None = None
    window: str | None = None
    sample_rate: int | None = None
    fmin: float | None = None
    fmax: float | None = None


@dataclass
class DataSection:
    """Where clips come from. ``format``/``root``/``options`` go to ``read_manifest``; ``train``,
    ``val`` and ``test`` add reader options per split (``{split: val}``, ``{folds: [2]}``).
    Without ``val``, ``val_fraction`` of the training clips is held out (seeded) for
    validation. ``batch_size`` is global: divided over ranks and accumulation steps.
    ``kfold: K`` runs K folds (ESC-50 style; the reader must accept ``folds=[...]``): fold k
    tests on fold k; ``kfold_protocol`` says what picks its best epoch: ``held_out`` (default)
    fold ``k mod K + 1``, training on the other ``K - 2``; ``ast`` the test fold itself,
    training on the other ``K - 1``, as AST's egs/esc50 recipe does (optimistic).
    ``num_workers``: loader processes, ``auto`` (from the cores) or a number; ``cache_dir``:
    the feature cache, ``auto`` (a shared folder, unless the features would not fit),
    ``off`` or a folder (:mod:`flexiast.data.loader`)."""

    format: str = ""
    root: str | None = None
    options: dict = field(default_factory=dict)
    train: dict = field(default_factory=lambda: {"split": "train"})
    val: dict | None = None
    test: dict | None = field(default_factory=lambda: {"split": "test"})
    val_fraction: float = 0.1
    kfold: int = 0
    kfold_protocol: str = KFOLD_PROTOCOLS[0]
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int | str = "auto"
    cache_dir: str | None = "auto"
    on_error: str = "raise"
    max_bad_fraction: float = 0.01
    scan: bool = True
    balanced: bool = False


@dataclass
class LossSection:
    """``ce`` (single-label), ``bce`` (multi-label) or ``auto`` (from the data). With a
    ``teacher`` (weights file), knowledge distillation: ``(1 - kd_weight) * loss +
    kd_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``; the teacher runs
    at its own patch size (``teacher_patch_size`` overrides)."""

    name: str = "auto"
    label_smoothing: float = 0.0
    teacher: str | None = None
    teacher_patch_size: int | list[int] | None = None
    temperature: float = 1.0
    kd_weight: float = 0.5


@dataclass
class PretrainSection:
    """SSAST's masked-patch pretraining (a recipe whose model has no classifier, ``model.arch:
    ssast``; :class:`flexiast.tasks.MaskedPatchPrediction`). ``masked``: patches hidden per
    clip, a count (SSAST: 400 of the 512 of a 1024-frame input) or a fraction of the
    patches (a float in (0, 1), e.g. 0.78125 = 400 / 512), which scales with a coarse phase's
    shorter input where a count would not fit. ``masking``: ``cluster``, ``uniform`` or
    ``auto`` (SSAST's: cluster for a patch model, uniform for a frame model). ``objective``:
    ``joint`` (NCE + ``generative_weight`` x MSE, two passes), ``discriminative`` or ``generative``."""

    masked: int | float = 400
    masking: str = "auto"
    objective: str = "joint"
    generative_weight: float = 10.0


@dataclass
class OptimizerConfig:
    """Adam or AdamW; AST uses Adam with weight decay 5e-7 and betas (0.95, 0.999). ``amsgrad``:
    the AMSGrad variant (PANNs trains with Adam, ``amsgrad=True``: audioset_tagging_cnn pytorch/main.py)."""

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 5e-7
    betas: list[float] = field(default_factory=lambda: [0.95, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate factor over a phase. ``warmup_steps``: linear ramp from ``lr / warmup``
    (AST's first 1000 steps). Then ``constant``; ``multistep``: times ``gamma`` at each epoch
    of ``milestones`` (AST: ``milestones`` from ``decay_from`` every ``decay_every`` epochs);
    or ``cosine``: half cosine per step from lr to ``min_lr``. Milestones follow ``MultiStepLR``
    stepped after each epoch: milestone m lowers the rate from epoch m + 1 on.
    ``htsat``: HTS-AT's per-epoch factor table from ``epoch_rates`` (its ``lr_rate``, default
    ``[0.02, 0.05, 0.1]``) and ``epoch_bounds`` (its ``lr_scheduler_epoch``, default
    ``[10, 20, 30]``), constant within an epoch (:func:`flexiast.engine.optim.htsat_factor`)."""

    name: str = "constant"
    warmup_steps: int = 0
    milestones: list[int] | None = None
    decay_from: int | None = None
    decay_every: int = 1
    gamma: float = 0.5
    min_lr: float = 0.0
    epoch_rates: list[float] | None = None
    epoch_bounds: list[int] | None = None


@dataclass
class PatchSampling:
    """Patch sizes of a phase's steps. ``fixed`` uses ``sizes[0]``; ``uniform`` draws from
    ``sizes``; ``weighted`` draws with ``weights``. ``axes``: ``both`` (p x p), ``time``
    (base_f x p, FlexiAST's speaker setting) or ``freq`` (p x base_t). None = the model's
    stored size. ``resize``: how each step's kernel is made from the stored one, ``pi``
    (PI-resize, FlexiAST eq. 3) or ``bl`` (bilinear, antialiased: the BL FlexiAST of
    FlexiAST Sec. 3.4 item 2, Fig. 4b); the gradient flows through either."""

    sampler: str = "fixed"
    sizes: list[int] | None = None
    weights: list[float] | None = None
    axes: str = "both"
    resize: str = "pi"


@dataclass
class PhaseConfig:
    """One phase: its length (``epochs`` or ``steps``), its compression (``none``,
    ``fshift:C``, ``avgpool:C``, ``maxpool:C``, ``patch:C``), how the kernel moves into and out
    of a ``patch`` phase (``transfer``: pi or bl; the first phase's also moves an initial
    weights' kernel of another size into ``model.patch_size``), its patch sampler, and
    optimizer and schedule (the run's unless given), reset when the phase begins."""

    name: str | None = None
    epochs: int | None = None
    steps: int | None = None
    compression: str = "none"
    transfer: str = "pi"
    patch: PatchSampling = field(default_factory=PatchSampling)
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None


@dataclass
class TrainSection:
    """The loop. ``precision``: ``auto`` (bf16 autocast where the device computes bf16 natively,
    fp16 with loss scaling on a GPU without it, fp32 otherwise: :mod:`flexiast.hardware`),
    fp32, bf16 (autocast, CPU or GPU) or fp16 (GPU, with a scaler).
    ``eval_patch_sizes``: validation sizes (None = the last phase's sampler sizes);
    ``select``: the validation number that picks ``best.safetensors``, ``mean`` over those sizes or
    one size. ``checkpoint_every``: also checkpoint every N optimizer steps.
    ``weight_averaging``: AST's average of the final phase's epoch weights from ``wa_start``
    to ``wa_end`` (1-based, inclusive; None = last). ``average_best: k`` (0 = off): the
    uniform average of the final phase's ``k`` best epochs by ``select`` (HTS-AT's AudioSet
    recipe averages its best checkpoints); their weights are kept as files in the run
    directory (``best_epochs/``) until the run ends. Both write ``averaged.safetensors``, so
    a run takes one or the other. ``test_every_epoch``: also score the test split after every
    epoch (at the validation sizes, recorded in ``history.json`` as ``test`` and
    ``test_select``; it costs an evaluation per epoch), which the coarse-to-fine paper's reading
    of Table 2 needs (``flexiast savings``); it never picks ``best.safetensors``. Where the
    validation split is the test split (``data.kfold_protocol: ast``) the validation numbers are
    recorded as the test numbers at no cost."""

    precision: str = "auto"
    compile: bool | str = False
    grad_clip: float | None = None
    accum_steps: int = 1
    device: str = "auto"
    threads: int | None = None
    eval_patch_sizes: list[int] | None = None
    eval_resize: str = "pi"
    select: str | int = "mean"
    checkpoint_every: int = 0
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True
    weight_averaging: bool = False
    wa_start: int = 1
    wa_end: int | None = None
    average_best: int = 0
    test_every_epoch: bool = False


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    out: str = "runs/{name}"
    model: ModelSection = field(default_factory=lambda: get_family(DEFAULT_ARCH).recipe_section())
    init: InitSection = field(default_factory=InitSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossSection = field(default_factory=LossSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainSection = field(default_factory=TrainSection)
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig(epochs=1)])

    # -- derived -------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        try:
            return Path(self.out.format(name=self.name))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"out: {self.out!r} may only use {{name}} ({e})") from None

    def feature_kind(self) -> str:
        return self.features.kind or get_family(self.model.arch).feature_kind

    def feature_config(self) -> FeatureConfig:
        """The features: the kind's defaults, AST's dataset statistics (Kaldi fbank), then the fields given."""
        f = self.features
        base = {}
        if f.dataset is not None:
            mean, std, length = DATASET_STATS[f.dataset]
            base = {"mean": mean, "std": std, "target_length": length}
        given = {k.name: getattr(f, k.name) for k in dataclasses.fields(f)
                 if k.name not in ("dataset", "kind") and getattr(f, k.name) is not None}
        return FeatureConfig.for_kind(self.feature_kind(), **{**base, **given})

    @property
    def pretraining(self) -> bool:
        """Whether the recipe pretrains (its model has no classifier: SSAST) on unlabeled audio."""
        return not get_family(self.model.arch).classifier

    @property
    def patch_calls(self) -> bool:
        """Whether the model's calls take a patch size (an AST's do; an HTS-AT's take none)."""
        return isinstance(get_family(self.model.arch).points, PatchPoints)

    def base_patch(self) -> tuple[int, int] | None:
        """The recipe's stored patch, or None for a family whose calls take none."""
        return to_pair(self.model.patch_size, "model.patch_size") if self.patch_calls else None

    def model_config(self, *, num_classes: int, features: FeatureConfig | None = None, labels=None):
        """The configuration of the model this recipe trains, for the data's classes: the
        family's (``model.arch``) from the ``model:`` section and the features' input size."""
        features = features or self.feature_config()
        return get_family(self.model.arch).config_from_recipe(
            self.model, num_classes=num_classes, input_fdim=features.num_mel_bins,
            input_tdim=features.target_length, labels=labels)

    def phase_optimizer(self, i: int) -> OptimizerConfig:
        return self.phases[i].optimizer or self.optimizer

    def phase_schedule(self, i: int) -> ScheduleConfig:
        return self.phases[i].schedule or self.schedule

    def phase_compression(self, i: int) -> Compression:
        return Compression.parse(self.phases[i].compression)

    def phase_kernel(self, i: int) -> tuple[int, int]:
        """The stored kernel during phase ``i``: ``p x Cp`` in a ``patch:C`` phase (None without patches)."""
        if not self.patch_calls:
            return None
        pf, pt = self.base_patch()
        c = self.phase_compression(i)
        return (pf, pt * c.factor) if c.method == "patch" else (pf, pt)

    def phase_patch_sizes(self, i: int) -> list[tuple[int, int]]:
        """Every ``(freq, time)`` patch phase ``i`` can draw, widened by C in a patch phase."""
        return [self.patch_pair(s, i) for s in (self.phases[i].patch.sizes or [None])]

    def patch_pair(self, size, i: int) -> tuple[int, int]:
        """``size`` on the phase's axes: ``(s, s)``, ``(base_f, s)`` or ``(s, base_t)``, time x C;
        None for a family whose calls take no patch size."""
        if not self.patch_calls:
            return None
        pf, pt = self.base_patch()
        axes = self.phases[i].patch.axes
        if size is not None:
            s = int(size)
            pf, pt = {"both": (s, s), "time": (pf, s), "freq": (s, pt)}[axes]
        c = self.phase_compression(i)
        return (pf, pt * c.factor) if c.method == "patch" else (pf, pt)

    def eval_patches(self, i: int, features: FeatureConfig | None = None) -> dict:
        """``{name: OperatingPoint}`` of the validation sizes that fit phase ``i``'s input.

        Coarse phases validate at the sizes their shorter input allows; the final phase
        (which picks ``best.safetensors``) at all of them (validation refuses a recipe otherwise).
        """
        features = features or self.feature_config()
        frames = features.frames(self.phase_compression(i))
        if not self.patch_calls:
            return {"stored": OperatingPoint(frames)}
        out = {}
        for s in self.eval_sizes():
            pf, pt = self.patch_pair(s, i)
            if pf <= features.num_mel_bins and pt <= frames:
                out[str(s if s is not None else "stored")] = OperatingPoint(frames, (pf, pt), self.train.eval_resize)
        return out

    def eval_sizes(self) -> list:
        """Validation patch sizes of the final phase (ints on the phase's axes, or None)."""
        return list(self.train.eval_patch_sizes or self.phases[-1].patch.sizes or [None])


# -- reading ------------------------------------------------------------------------
def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` (``phases.0.epochs=3``) to a nested dict/list, in order."""
    raw = _copy(raw)
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {text!r} is not key.path=value")
        parts = key.split(".")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            _index(node, last, key)
            node[int(last)] = _parse_value(value)
        elif isinstance(node, dict):
            node[last] = _parse_value(value)
        else:
            raise ConfigError(f"override {key}: {'.'.join(parts[:-1])} is not a section")
    return raw


def _copy(x):
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_copy(v) for v in x]
    return x


def _index(node: list, part: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not 0 <= int(part) < len(node):
        raise ConfigError(f"override {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node, part: str, key: str, create: bool):
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node, dict):
        raise ConfigError(f"override {key}: not a section")
    if node.get(part) is None and create:
        node[part] = {}
    return node[part]


def load_config(path: str | Path | None, overrides: list[str] = (), *, check_files: bool = True) -> RunConfig:
    """Read a recipe (or nothing: the defaults), apply overrides, build and validate."""
    raw = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"recipe {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"recipe {path}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe {path}: expected a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    try:
        return build_config(raw, check_files=check_files)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


# -- typed construction -------------------------------------------------------------
def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


#: Scalar types: what a YAML value may be, and how the error names it (bools are not numbers).
_SCALARS = {bool: (bool, "true or false"), int: (int, "an integer"), float: ((int, float), "a number"),
            str: (str, "a string")}


def _convert(value, tp, key: str):
    """``value`` as type ``tp`` (int, float, bool, str, list[X], dict, dataclass, unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must be set (got null)")
        present = [o for o in options if o is not type(None)]
        if len(present) == 1:  # X | None: X's own message names the key inside it
            return _convert(value, present[0], key)
        for option in present:
            try:
                return _convert(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not {' or '.join(_type_name(o) for o in options if o is not type(None))}")
    if tp is ModelSection:
        return _build(ModelSection.section_class(value, key), value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 as a string
        except ValueError:
            pass
    if tp in _SCALARS:
        accepted, what = _SCALARS[tp]
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, accepted):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        return tp(value)
    raise TypeError(f"unsupported configuration type {tp} at {key}")


def _build(cls, raw, key: str):
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; {cls.__name__} takes {', '.join(names)}")
    kwargs = {name: _convert(raw[name], hints[name], f"{key}.{name}" if key else name)
              for name in names if name in raw}
    try:
        return cls(**kwargs)
    except ValueError as e:  # dataclasses with their own checks (AugmentConfig)
        raise ConfigError(f"{key}: {e}") from None


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def build_config(raw: dict, *, check_files: bool = True) -> RunConfig:
    cfg = _build(RunConfig, raw, "")
    validate(cfg, check_files=check_files)
    return cfg


# -- validation ---------------------------------------------------------------------
def _choice(value, options, key):
    if value not in options:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, options))}")


def _positive(value, key, strict=True):
    if value is None:
        return
    if (value <= 0) if strict else (value < 0):
        raise ConfigError(f"{key}: {value} must be {'positive' if strict else 'non-negative'}")


def _check_optimizer(o: OptimizerConfig, key: str):
    _choice(o.name, OPTIMIZERS, f"{key}.name")
    _positive(o.lr, f"{key}.lr", strict=False)
    _positive(o.weight_decay, f"{key}.weight_decay", strict=False)
    _positive(o.eps, f"{key}.eps")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"{key}.betas: {o.betas} must be two numbers in [0, 1)")


def _check_schedule(s: ScheduleConfig, key: str):
    _choice(s.name, SCHEDULES, f"{key}.name")
    _positive(s.warmup_steps, f"{key}.warmup_steps", strict=False)
    _positive(s.gamma, f"{key}.gamma")
    _positive(s.decay_every, f"{key}.decay_every")
    _positive(s.decay_from, f"{key}.decay_from")
    _positive(s.min_lr, f"{key}.min_lr", strict=False)
    if s.name == "multistep" and s.milestones is None and s.decay_from is None:
        raise ConfigError(f"{key}: multistep needs milestones or decay_from")
    if s.milestones is not None and any(m < 1 for m in s.milestones):
        raise ConfigError(f"{key}.milestones: {s.milestones} must be epochs >= 1")
    if s.name != "htsat":
        for name in ("epoch_rates", "epoch_bounds"):
            if getattr(s, name) is not None:
                raise ConfigError(f"{key}.{name}: only the htsat schedule takes it (name is {s.name})")
        return
    rates = s.epoch_rates if s.epoch_rates is not None else list(HTSAT_EPOCH_RATES)
    bounds = s.epoch_bounds if s.epoch_bounds is not None else list(HTSAT_EPOCH_BOUNDS)
    if not rates or any(r <= 0 for r in rates):
        raise ConfigError(f"{key}.epoch_rates: {rates} must be a non-empty list of positive factors")
    if len(bounds) != len(rates):
        raise ConfigError(f"{key}.epoch_bounds: {bounds} must have one epoch per rate of epoch_rates={rates}")
    if any(b < len(rates) for b in bounds) or bounds != sorted(bounds):
        raise ConfigError(f"{key}.epoch_bounds: {bounds} must be increasing epochs, each at least the "
                          f"{len(rates)} warm-up epochs")


def fold_paths(path: str | None, kfold: int, key: str) -> list[str | None]:
    """``path`` once, or with ``{fold}`` filled in for every fold of a k-fold run (fold k's
    FlexiAST starts from fold k's AST: a model trained on another fold has seen this test fold)."""
    if path is None or "{fold}" not in path:
        return [path]
    if not kfold:
        raise ConfigError(f"{key}: {path} names a {{fold}}, but data.kfold is off")
    return [path.replace("{fold}", str(k)) for k in range(1, kfold + 1)]


def _exists(path: str | None, key: str, what: str):
    if path is not None and not Path(path).exists():
        raise ConfigError(f"{key}: {what} {path} does not exist")


def _writable(directory: Path, key: str):
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write the output directory {directory} ({probe} is not writable)")


def validate(cfg: RunConfig, *, check_files: bool = True) -> None:
    """Refuse what cannot run, naming the key; ``check_files`` also checks paths exist."""
    m, f, d, t, loss = cfg.model, cfg.features, cfg.data, cfg.train, cfg.loss
    family = get_family(m.arch)
    classes = 1 if family.classifier else 0  # a placeholder class count the family takes
    try:  # the family's own checks, on a placeholder input every kernel fits
        family.config_from_recipe(m, num_classes=classes, input_fdim=1 << 20, input_tdim=1 << 20)
    except ValueError as e:
        raise ConfigError(f"model.{e}") from None
    if loss.teacher_patch_size is not None and min(to_pair(loss.teacher_patch_size, "loss.teacher_patch_size")) < 1:
        raise ConfigError(f"loss.teacher_patch_size: {loss.teacher_patch_size} must be positive")
    kind = cfg.feature_kind()
    _choice(kind, FEATURE_KINDS, "features.kind")
    if kind != "kaldi_fbank":
        if f.dataset is not None:
            raise ConfigError(f"features.dataset: {f.dataset!r} names AST's Kaldi fbank statistics; {kind} "
                              f"features take none (give target_length)")
        for name in ("mean", "std"):
            if getattr(f, name) is not None:
                raise ConfigError(f"features.{name}: {kind} features take no dataset statistics (the model "
                                  f"normalises them with its own BatchNorm); remove features.{name}")
    elif f.dataset is not None:
        _choice(f.dataset, tuple(DATASET_STATS), "features.dataset")
    elif None in (f.target_length, f.mean, f.std):
        raise ConfigError("features: give target_length, mean and std (flexiast stats computes them), "
                          "or dataset for AST's statistics")
    _positive(f.num_mel_bins, "features.num_mel_bins")
    _positive(f.target_length, "features.target_length")
    _positive(f.std, "features.std")
    _positive(f.frame_shift_ms, "features.frame_shift_ms")
    _positive(f.frame_length_ms, "features.frame_length_ms")
    try:
        features = cfg.feature_config()
    except ValueError as e:
        raise ConfigError(str(e) if str(e).startswith("features.") else f"features: {e}") from None
    if features.kind != family.feature_kind:
        raise ConfigError(f"features: {features.kind} features, but a {m.arch} model takes {family.feature_kind}")
    if not isinstance(family.points, PatchPoints):
        _refuse_patch_settings(cfg)

    from .data.readers import FORMATS
    _choice(d.format, tuple(FORMATS), "data.format")
    _choice(d.on_error, ON_ERROR, "data.on_error")
    _positive(d.batch_size, "data.batch_size")
    _positive(d.eval_batch_size, "data.eval_batch_size")
    if isinstance(d.num_workers, str):
        _choice(d.num_workers, (AUTO,), "data.num_workers")
    else:
        _positive(d.num_workers, "data.num_workers", strict=False)
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: {d.val_fraction} must lie in [0, 1)")
    if d.val is None and d.val_fraction == 0.0 and not d.kfold:
        raise ConfigError("data: give a val split or a val_fraction > 0; the best checkpoint is chosen on "
                          "validation, never on test")
    if not 0.0 <= d.max_bad_fraction <= 1.0:
        raise ConfigError(f"data.max_bad_fraction: {d.max_bad_fraction} must lie in [0, 1]")
    if d.kfold == 1 or d.kfold < 0:
        raise ConfigError(f"data.kfold: {d.kfold} must be 0 (off) or at least 2")
    _choice(d.kfold_protocol, KFOLD_PROTOCOLS, "data.kfold_protocol")
    if d.kfold_protocol != KFOLD_PROTOCOLS[0] and not d.kfold:
        raise ConfigError(f"data.kfold_protocol: {d.kfold_protocol} applies to k-fold runs; set data.kfold "
                          "(e.g. 5 for ESC-50) or leave kfold_protocol out")
    if d.kfold_protocol == "held_out" and d.kfold == 2:
        raise ConfigError("data.kfold: 2 folds under kfold_protocol held_out leave no fold to train on (one "
                          "tests, one validates); use 3 or more, or kfold_protocol: ast")
    if d.kfold and d.format not in KFOLD_FORMATS:
        raise ConfigError(f"data.kfold: the {d.format} reader has no folds (k-fold runs on "
                          f"{', '.join(KFOLD_FORMATS)}); its validation and test would be the training clips")

    _choice(loss.name, LOSSES, "loss.name")
    if not 0.0 <= loss.label_smoothing < 1.0:
        raise ConfigError(f"loss.label_smoothing: {loss.label_smoothing} must lie in [0, 1)")
    _positive(loss.temperature, "loss.temperature")
    if not 0.0 <= loss.kd_weight <= 1.0:
        raise ConfigError(f"loss.kd_weight: {loss.kd_weight} must lie in [0, 1]")

    _check_optimizer(cfg.optimizer, "optimizer")
    _check_schedule(cfg.schedule, "schedule")
    _choice(t.precision, PRECISIONS, "train.precision")
    _choice(t.device, DEVICES, "train.device")
    if t.precision == "fp16" and t.device == "cpu":
        raise ConfigError("train.precision: fp16 needs a GPU; train.device is cpu (use auto, fp32 or bf16)")
    _positive(t.grad_clip, "train.grad_clip")
    _positive(t.accum_steps, "train.accum_steps")
    _positive(t.threads, "train.threads")
    _positive(t.checkpoint_every, "train.checkpoint_every", strict=False)
    if t.test_every_epoch and d.test is None and not d.kfold:
        raise ConfigError("train.test_every_epoch: the run has no test split (data.test is null)")
    _positive(t.log_every, "train.log_every")
    _choice(t.eval_resize, RESIZE_METHODS, "train.eval_resize")
    if d.batch_size % t.accum_steps:
        raise ConfigError(f"data.batch_size: {d.batch_size} is not divisible by train.accum_steps={t.accum_steps}")
    if isinstance(t.compile, str) and not t.compile:
        raise ConfigError("train.compile: give true, false or a backend name")

    if not cfg.phases:
        raise ConfigError("phases: at least one phase")
    for i, ph in enumerate(cfg.phases):
        key = f"phases[{i}]"
        if (ph.epochs is None) == (ph.steps is None):
            raise ConfigError(f"{key}: give exactly one of epochs or steps")
        _positive(ph.epochs, f"{key}.epochs")
        _positive(ph.steps, f"{key}.steps")
        try:
            comp = cfg.phase_compression(i)
            frames = features.frames(comp)
        except ValueError as e:
            raise ConfigError(f"{key}.compression: {e}") from None
        _choice(ph.transfer, RESIZE_METHODS, f"{key}.transfer")
        s = ph.patch
        _choice(s.sampler, PATCH_SAMPLERS, f"{key}.patch.sampler")
        _choice(s.axes, AXES, f"{key}.patch.axes")
        _choice(s.resize, RESIZE_METHODS, f"{key}.patch.resize")
        if s.sizes is not None and (not s.sizes or any(p < 1 for p in s.sizes)):
            raise ConfigError(f"{key}.patch.sizes: {s.sizes} must be a non-empty list of positive sizes")
        if s.sampler == "fixed" and s.sizes is not None and len(s.sizes) != 1:
            raise ConfigError(f"{key}.patch.sizes: a fixed sampler takes one size, got {s.sizes}")
        if s.sampler == "weighted":
            if s.weights is None or s.sizes is None or len(s.weights) != len(s.sizes):
                raise ConfigError(f"{key}.patch.weights: a weighted sampler needs one weight per size")
            if any(w < 0 for w in s.weights) or not sum(s.weights) > 0:
                raise ConfigError(f"{key}.patch.weights: {s.weights} must be non-negative with a positive sum")
        elif s.weights is not None:
            raise ConfigError(f"{key}.patch.weights: only the weighted sampler takes weights")
        if loss.teacher is not None and comp.input_factor > 1:
            raise ConfigError(f"{key}.compression: distillation (loss.teacher) needs full-resolution input; "
                              f"{comp} would feed the teacher compressed spectrograms it was not trained on")
        if cfg.patch_calls:
            _check_phase_patches(cfg, i, features, frames, comp)
        if ph.optimizer is not None:
            _check_optimizer(ph.optimizer, f"{key}.optimizer")
        sched, lr = cfg.phase_schedule(i), cfg.phase_optimizer(i).lr
        if sched.name == "cosine" and sched.min_lr > lr:
            raise ConfigError(f"{key}: schedule min_lr={sched.min_lr} is above the learning rate {lr}")
        if ph.schedule is not None:
            _check_schedule(ph.schedule, f"{key}.schedule")
    if cfg.patch_calls:
        _check_eval_sizes(cfg, features)
    try:  # the family's own checks, now on the recipe's input
        family.config_from_recipe(m, num_classes=classes, input_fdim=features.num_mel_bins,
                                  input_tdim=features.target_length)
    except ValueError as e:
        raise ConfigError(f"features.num_mel_bins / features.target_length: the {m.arch} model of the model: section "
                          f"cannot take {features.num_mel_bins} mel bins x {features.target_length} frames: {e}") from None
    _check_pretrain(cfg, features)
    if t.weight_averaging:
        _positive(t.wa_start, "train.wa_start")
        last = cfg.phases[-1]
        if last.epochs is None:
            raise ConfigError("train.weight_averaging: the final phase must be counted in epochs")
        end = t.wa_end or last.epochs
        if not 1 <= t.wa_start <= end <= last.epochs:
            raise ConfigError(f"train.wa_start/wa_end: {t.wa_start}..{end} must lie within the final phase's "
                              f"{last.epochs} epochs")
    if t.average_best < 0:
        raise ConfigError(f"train.average_best={t.average_best} must be 0 (off) or the number of best epochs to "
                          "average")
    if t.average_best and t.weight_averaging:
        raise ConfigError(f"train.average_best={t.average_best} cannot be combined with train.weight_averaging: both "
                          "write the run's averaged weights (averaged.safetensors); choose one")
    if t.average_best and cfg.phases[-1].epochs is not None and t.average_best > cfg.phases[-1].epochs:
        raise ConfigError(f"train.average_best={t.average_best} is more than the final phase's "
                          f"{cfg.phases[-1].epochs} epochs")
    if check_files:
        _exists(d.root, "data.root", "data folder")
        for key, path, what in (("init.path", cfg.init.path, "initial weights"),
                                ("loss.teacher", loss.teacher, "teacher checkpoint")):
            for one in fold_paths(path, d.kfold, key):
                _exists(one, key, what)
        if d.cache_dir not in (None, AUTO, OFF):
            _exists(str(Path(d.cache_dir).parent), "data.cache_dir", "parent folder")
        _writable(cfg.out_dir, "out")


def _check_phase_patches(cfg: RunConfig, i: int, features: FeatureConfig, frames: int, comp: Compression) -> None:
    """Phase ``i``'s stored kernel and drawn patches fit its (compressed) input."""
    key = f"phases[{i}]"
    kf, kt = cfg.phase_kernel(i)
    if kf > features.num_mel_bins or kt > frames:
        raise ConfigError(f"{key}.compression: the stored {kf}x{kt} kernel (model.patch_size, x C in a patch "
                          f"phase) is larger than the phase's input of {features.num_mel_bins} bins x "
                          f"{frames} frames (compression {comp})")
    for pf, pt in cfg.phase_patch_sizes(i):
        if pf > features.num_mel_bins or pt > frames:
            raise ConfigError(f"{key}.patch.sizes: patch {pf}x{pt} (freq x time) is larger than the phase's "
                              f"input of {features.num_mel_bins} bins x {frames} frames "
                              f"(compression {comp})")
    if not cfg.eval_patches(i, features):
        raise ConfigError(f"train.eval_patch_sizes: none of {cfg.eval_sizes()} fits phase {i}'s input of "
                          f"{features.num_mel_bins} bins x {frames} frames")


def _check_eval_sizes(cfg: RunConfig, features: FeatureConfig) -> None:
    """Every validation size fits the final phase, which picks ``best.safetensors``; ``select`` is one of them."""
    t = cfg.train
    last_frames = features.frames(cfg.phase_compression(len(cfg.phases) - 1))
    for size in cfg.eval_sizes():  # all of them must fit the final phase, which picks best.safetensors
        pf, pt = cfg.patch_pair(size, len(cfg.phases) - 1)
        if pf > features.num_mel_bins or pt > last_frames:
            raise ConfigError(f"train.eval_patch_sizes: patch {pf}x{pt} is larger than the input "
                              f"({features.num_mel_bins} x {last_frames})")
    if isinstance(t.select, str):
        if t.select != SELECT_MEAN:
            raise ConfigError(f"train.select: {t.select!r} is not 'mean' or a patch size")
    elif t.select not in cfg.eval_sizes():
        raise ConfigError(f"train.select: patch size {t.select} is not among the validation sizes {cfg.eval_sizes()}")


def _check_pretrain(cfg: RunConfig, features: FeatureConfig) -> None:
    """A pretraining recipe (SSAST): its masks fit every phase's patches, and nothing asks for
    labels or for patch sizes its heads cannot predict; a classifier's recipe has no ``pretrain``."""
    from .masking import MASKINGS, mask_count
    from .tasks.masked_patch import OBJECTIVES

    p, arch = cfg.pretrain, cfg.model.arch
    if not cfg.pretraining:
        if p != PretrainSection():
            raise ConfigError(f"pretrain: masked-patch pretraining needs a model without a classifier (model.arch: "
                              f"ssast); a {arch} model is trained on labels")
        return
    _choice(p.masking, MASKINGS, "pretrain.masking")
    _choice(p.objective, tuple(OBJECTIVES), "pretrain.objective")
    if not p.generative_weight >= 0:
        raise ConfigError(f"pretrain.generative_weight: {p.generative_weight} must be non-negative")
    why = f"a {arch} model pretrains on unlabeled audio"
    if cfg.loss.teacher is not None:
        raise ConfigError(f"loss.teacher: {why}; there are no labels to distil")
    if cfg.data.balanced:
        raise ConfigError(f"data.balanced: {why}; balanced sampling needs labels (weight a data.format: mixture's "
                          "sources instead)")
    if cfg.train.eval_patch_sizes is not None:
        raise ConfigError(f"train.eval_patch_sizes: {why} and validates at its own patch (its heads predict it)")
    base = cfg.base_patch()
    family = get_family(arch)
    for i, ph in enumerate(cfg.phases):
        key = f"phases[{i}]"
        comp = cfg.phase_compression(i)
        if comp.method == "patch":
            raise ConfigError(f"{key}.compression: patch:C widens the kernel, and an SSAST's heads predict "
                              f"{base[0]}x{base[1]} patches; compress with fshift:C, avgpool:C or maxpool:C")
        if any(pair != base for pair in cfg.phase_patch_sizes(i)):
            raise ConfigError(f"{key}.patch.sizes: an SSAST's heads predict {base[0]}x{base[1]} patches; it trains "
                              "at that size only (remove the sizes)")
        frames = features.frames(comp)
        grid = family.config_from_recipe(cfg.model, num_classes=0, input_fdim=features.num_mel_bins,
                                         input_tdim=frames).grid
        try:
            mask_count(p.masked, grid[0] * grid[1])
        except ValueError as e:
            raise ConfigError(f"{e} (phase {i}, {frames} frames, compression {comp})") from None


def _refuse_patch_settings(cfg: RunConfig) -> None:
    """A family whose calls take no patch size (HTS-AT) has no patch to draw, widen or sweep."""
    arch, t = cfg.model.arch, cfg.train
    why = f"a {arch} model's calls take no patch size"
    for i, ph in enumerate(cfg.phases):
        if ph.patch != PatchSampling():
            raise ConfigError(f"phases[{i}].patch: {why}; remove the section (it has nothing to draw)")
        if str(ph.compression).partition(":")[0] == "patch":
            raise ConfigError(f"phases[{i}].compression: patch:C widens a patch kernel and {why}; "
                              f"compress with fshift:C, avgpool:C or maxpool:C")
    if t.eval_patch_sizes is not None:
        raise ConfigError(f"train.eval_patch_sizes: {why}; a {arch} model validates at its input length")
    if t.select != SELECT_MEAN:
        raise ConfigError(f"train.select: {t.select!r} names a patch size and {why}; use 'mean'")
    if cfg.loss.teacher_patch_size is not None:
        raise ConfigError(f"loss.teacher_patch_size: {why}")
