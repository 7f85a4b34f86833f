"""The recipe's shared sections (``model``, ``init``, ``features``, ``data``, ``loss``, ``train``),
each with the ``check`` that refuses what cannot run, naming the key.

A check is given a :class:`CheckContext`: the whole recipe (for settings that depend on
another section: a batch divided by the accumulation steps), its features, its model family
and whether files must exist. Keys only some families take are not here: the families declare
them (:mod:`flexiast.config.family_keys`); :class:`InitSection` and :class:`LossSection` hold
them for the engine to read.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..constants import (AUTO, BATCHINGS, DEFAULT_ARCH, DEVICES, FEATURE_KINDS, KFOLD_PROTOCOLS, LOSSES, OFF,
                         ON_ERROR, PRECISIONS, RESIZE_METHODS, SELECT_MEAN)
from ..data.readers import FORMATS
from ..features import DATASET_STATS, Compression, FeatureConfig
from ..models import FamilyError, ModelFamily, get_family
from ..models.packing import DEFAULT_ROW_TOKENS
from ..recipe_checks import ConfigError, choice, positive
from .family_keys import FamilySettings

__all__ = ["CheckContext", "ModelSection", "InitSection", "FeaturesSection", "DataSection", "LossSection",
           "TrainSection", "KFOLD_FORMATS", "fold_paths"]

#: Readers that take ``folds=[...]``, which ``data.kfold`` needs.
KFOLD_FORMATS = ("esc50",)


@dataclass
class CheckContext:
    """What a section's check may read besides itself: the recipe ``cfg`` (a
    :class:`flexiast.config.RunConfig`), its ``features`` (once the features section passed),
    its ``family``, the section's ``key`` and, under ``phases``, the ``phase`` index."""

    cfg: object
    family: ModelFamily
    check_files: bool = True
    features: FeatureConfig | None = None
    key: str = ""
    phase: int | None = None

    def at(self, key: str, phase: int | None = None) -> "CheckContext":
        """This context for the section at ``key`` (of phase ``phase``)."""
        return dataclasses.replace(self, key=key, phase=self.phase if phase is None else phase)


class ModelSection:
    """The recipe's ``model:`` section. Its ``arch`` (default ``ast``) picks the model family,
    whose section dataclass holds the fields (:class:`flexiast.models.ast.recipe.ASTSection`
    for an AST); unknown fields are refused with that family's list."""

    @staticmethod
    def family(raw, key: str) -> ModelFamily:
        """The family a raw ``model:`` section names (the default family without ``arch``)."""
        arch = raw.get("arch", DEFAULT_ARCH) if isinstance(raw, dict) else DEFAULT_ARCH
        if not isinstance(arch, str):
            raise ConfigError(f"{key}.arch: expected a model family's name, got {arch!r}")
        try:
            return get_family(arch)
        except FamilyError as e:
            raise ConfigError(f"{key}.arch: {e}") from None

    @staticmethod
    def section_class(raw, key: str) -> type:
        return ModelSection.family(raw, key).recipe_section

    @staticmethod
    def check(section, ctx: CheckContext) -> None:
        """The family's own checks of its section, on a placeholder input every kernel fits."""
        try:
            ctx.family.config_from_recipe(section, num_classes=1 if ctx.family.classifier else 0,
                                          input_fdim=1 << 20, input_tdim=1 << 20)
        except ValueError as e:
            raise ConfigError(f"model.{e}") from None

    @staticmethod
    def check_input(section, ctx: CheckContext) -> None:
        """The family's checks again, on the recipe's input size."""
        f = ctx.features
        try:
            ctx.family.config_from_recipe(section, num_classes=1 if ctx.family.classifier else 0,
                                          input_fdim=f.num_mel_bins, input_tdim=f.target_length)
        except ValueError as e:
            raise ConfigError(f"features.num_mel_bins / features.target_length: the {section.arch} model of the model: "
                              f"section cannot take {f.num_mel_bins} mel bins x {f.target_length} frames: "
                              f"{e}") from None


@dataclass(eq=False)
class InitSection(FamilySettings):
    """Initial weights: ``path`` to an ImageNet ViT/DeiT (timm's files or Google's JAX ``.npz``),
    an AST (any patch size, moved into the stored kernel with the first phase's ``transfer``,
    PI-resize by default), a Hugging Face AST or a flexiast checkpoint; none = scratch.
    A family may take hints that describe the file (an AST's ``source_*``)."""

    recipe_host = "init"

    path: str | None = None

    def check_paths(self, kfold: int) -> None:
        for one in fold_paths(self.path, kfold, "init.path"):
            _exists(one, "init.path", "initial weights")


@dataclass
class FeaturesSection:
    """The front end. ``kind`` (default: the model family's, ``kaldi_fbank`` for an AST,
    ``slaney_logmel`` for HTS-AT) starts from that front end's defaults
    (:meth:`flexiast.features.FeatureConfig.for_kind`); fields given override them.
    For Kaldi fbank, ``dataset`` takes AST's statistics and length (audioset, esc50, ...)
    and explicit ``mean``/``std``/``target_length`` override them; the log-mel is not
    normalised here (HTS-AT's BatchNorm does it) and takes no statistics.
    ``max_length``: under variable-length batches (``data.batching``), the most frames a clip
    keeps, before compression (null: ``target_length``); not part of the features a model stores."""

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
    max_length: int | None = None

    def config(self, kind: str) -> FeatureConfig:
        """The features: the kind's defaults, AST's dataset statistics (Kaldi fbank), then the fields given."""
        base = {}
        if self.dataset is not None:
            mean, std, length = DATASET_STATS[self.dataset]
            base = {"mean": mean, "std": std, "target_length": length}
        given = {k.name: getattr(self, k.name) for k in dataclasses.fields(self)
                 if k.name not in ("dataset", "kind", "max_length") and getattr(self, k.name) is not None}
        return FeatureConfig.for_kind(kind, **{**base, **given})

    def check(self, ctx: CheckContext) -> FeatureConfig:
        """Refuse what the front end cannot compute or the family cannot take; give the features."""
        kind = self.kind or ctx.family.feature_kind
        choice(kind, FEATURE_KINDS, "features.kind")
        if kind != "kaldi_fbank":
            if self.dataset is not None:
                raise ConfigError(f"features.dataset: {self.dataset!r} names AST's Kaldi fbank statistics; {kind} "
                                  f"features take none (give target_length)")
            for name in ("mean", "std"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"features.{name}: {kind} features take no dataset statistics (the model "
                                      f"normalises them with its own BatchNorm); remove features.{name}")
        elif self.dataset is not None:
            choice(self.dataset, tuple(DATASET_STATS), "features.dataset")
        elif None in (self.target_length, self.mean, self.std):
            raise ConfigError("features: give target_length, mean and std (flexiast stats computes them), "
                              "or dataset for AST's statistics")
        for name in ("num_mel_bins", "target_length", "std", "frame_shift_ms", "frame_length_ms", "max_length"):
            positive(getattr(self, name), f"features.{name}")
        try:
            features = self.config(kind)
        except ValueError as e:
            raise ConfigError(str(e) if str(e).startswith("features.") else f"features: {e}") from None
        if features.kind != ctx.family.feature_kind:
            raise ConfigError(f"features: {features.kind} features, but a {ctx.family.arch} model takes "
                              f"{ctx.family.feature_kind}")
        return features


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
    ``off`` or a folder (:mod:`flexiast.data.loader`).

    ``batching``: ``fixed`` (every clip padded or cut to ``features.target_length``),
    ``packed`` (clips at their native length in rows of ``row_tokens`` tokens, ElasticAST) or
    ``bucketed`` (clips of similar length padded to the longest of their batch); under the
    last two an optimizer step takes ``batch_tokens`` tokens over all ranks and accumulation
    steps, counted at the phase's stored point (null: ``batch_size`` clips of the phase's full
    length), and ``batch_size`` only sizes evaluation batches (:mod:`flexiast.config.batching`)."""

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
    batching: str = BATCHINGS[0]
    row_tokens: int = DEFAULT_ROW_TOKENS
    batch_tokens: int | None = None

    def check(self, ctx: CheckContext) -> None:
        choice(self.format, tuple(FORMATS), "data.format")
        choice(self.batching, BATCHINGS, "data.batching")
        positive(self.row_tokens, "data.row_tokens")
        positive(self.batch_tokens, "data.batch_tokens")
        choice(self.on_error, ON_ERROR, "data.on_error")
        positive(self.batch_size, "data.batch_size")
        positive(self.eval_batch_size, "data.eval_batch_size")
        if isinstance(self.num_workers, str):
            choice(self.num_workers, (AUTO,), "data.num_workers")
        else:
            positive(self.num_workers, "data.num_workers", strict=False)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction: {self.val_fraction} must lie in [0, 1)")
        if self.val is None and self.val_fraction == 0.0 and not self.kfold:
            raise ConfigError("data: give a val split or a val_fraction > 0; the best checkpoint is chosen on "
                              "validation, never on test")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ConfigError(f"data.max_bad_fraction: {self.max_bad_fraction} must lie in [0, 1]")
        self._check_kfold()

    def _check_kfold(self) -> None:
        if self.kfold == 1 or self.kfold < 0:
            raise ConfigError(f"data.kfold: {self.kfold} must be 0 (off) or at least 2")
        choice(self.kfold_protocol, KFOLD_PROTOCOLS, "data.kfold_protocol")
        if self.kfold_protocol != KFOLD_PROTOCOLS[0] and not self.kfold:
            raise ConfigError(f"data.kfold_protocol: {self.kfold_protocol} applies to k-fold runs; set data.kfold "
                              "(e.g. 5 for ESC-50) or leave kfold_protocol out")
        if self.kfold_protocol == "held_out" and self.kfold == 2:
            raise ConfigError("data.kfold: 2 folds under kfold_protocol held_out leave no fold to train on (one "
                              "tests, one validates); use 3 or more, or kfold_protocol: ast")
        if self.kfold and self.format not in KFOLD_FORMATS:
            raise ConfigError(f"data.kfold: the {self.format} reader has no folds (k-fold runs on "
                              f"{', '.join(KFOLD_FORMATS)}); its validation and test would be the training clips")

    def check_paths(self) -> None:
        _exists(self.root, "data.root", "data folder")

    def check_cache_dir(self) -> None:
        if self.cache_dir not in (None, AUTO, OFF):
            _exists(str(Path(self.cache_dir).parent), "data.cache_dir", "parent folder")


@dataclass(eq=False)
class LossSection(FamilySettings):
    """``ce`` (single-label), ``bce`` (multi-label) or ``auto`` (from the data). With a
    ``teacher`` (weights file), knowledge distillation: ``(1 - kd_weight) * loss +
    kd_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``; the teacher runs
    at its own call (a family may take a key that overrides it: an AST's ``teacher_patch_size``)."""

    recipe_host = "loss"

    name: str = "auto"
    label_smoothing: float = 0.0
    teacher: str | None = None
    temperature: float = 1.0
    kd_weight: float = 0.5

    def check(self, ctx: CheckContext) -> None:
        choice(self.name, LOSSES, "loss.name")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing: {self.label_smoothing} must lie in [0, 1)")
        positive(self.temperature, "loss.temperature")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ConfigError(f"loss.kd_weight: {self.kd_weight} must lie in [0, 1]")

    def check_paths(self, kfold: int) -> None:
        for one in fold_paths(self.teacher, kfold, "loss.teacher"):
            _exists(one, "loss.teacher", "teacher checkpoint")


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

    def check(self, ctx: CheckContext) -> None:
        d = ctx.cfg.data
        choice(self.precision, PRECISIONS, "train.precision")
        choice(self.device, DEVICES, "train.device")
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError("train.precision: fp16 needs a GPU; train.device is cpu (use auto, fp32 or bf16)")
        positive(self.grad_clip, "train.grad_clip")
        positive(self.accum_steps, "train.accum_steps")
        positive(self.threads, "train.threads")
        positive(self.checkpoint_every, "train.checkpoint_every", strict=False)
        if self.test_every_epoch and d.test is None and not d.kfold:
            raise ConfigError("train.test_every_epoch: the run has no test split (data.test is null)")
        positive(self.log_every, "train.log_every")
        choice(self.eval_resize, RESIZE_METHODS, "train.eval_resize")
        if d.batch_size % self.accum_steps:
            raise ConfigError(f"data.batch_size: {d.batch_size} is not divisible by "
                              f"train.accum_steps={self.accum_steps}")
        if isinstance(self.compile, str) and not self.compile:
            raise ConfigError("train.compile: give true, false or a backend name")
        try:
            ctx.family.points.check_recipe(arch=ctx.family.arch, compression=Compression(), key="train",
                                           eval_sizes=self.eval_patch_sizes, select=self.select)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self._check_eval_sizes(ctx)

    def _check_eval_sizes(self, ctx: CheckContext) -> None:
        """Each phase validates at some point; every validation size fits the final phase, which
        picks ``best.safetensors``; ``select`` is one of them."""
        cfg, features = ctx.cfg, ctx.features
        last = len(cfg.phases) - 1
        for i in range(len(cfg.phases)):
            if not cfg.eval_points(i, features):
                raise ConfigError(f"train.eval_patch_sizes: none of {cfg.eval_sizes()} fits phase {i}'s input of "
                                  f"{features.num_mel_bins} bins x {cfg.phase_frames(i, features)} frames")
        kind, comp = ctx.family.points, cfg.phase_compression(last)
        for size in cfg.eval_sizes():
            point = kind.eval_point(cfg.model, cfg.phases[last], comp, cfg.phase_frames(last, features), size,
                                    self.eval_resize)
            why = kind.misfit(point, features.num_mel_bins)
            if why:
                raise ConfigError(f"train.eval_patch_sizes: {why}")
        if isinstance(self.select, str):
            if self.select != SELECT_MEAN:
                raise ConfigError(f"train.select: {self.select!r} is not 'mean' or a patch size")
        elif self.select not in cfg.eval_sizes():
            raise ConfigError(f"train.select: patch size {self.select} is not among the validation sizes "
                              f"{cfg.eval_sizes()}")

    def check_averaging(self, phases: list) -> None:
        """Weight averaging and the average of the best epochs fit the final phase."""
        last = phases[-1]
        if self.weight_averaging:
            positive(self.wa_start, "train.wa_start")
            if last.epochs is None:
                raise ConfigError("train.weight_averaging: the final phase must be counted in epochs")
            end = self.wa_end or last.epochs
            if not 1 <= self.wa_start <= end <= last.epochs:
                raise ConfigError(f"train.wa_start/wa_end: {self.wa_start}..{end} must lie within the final phase's "
                                  f"{last.epochs} epochs")
        if self.average_best < 0:
            raise ConfigError(f"train.average_best={self.average_best} must be 0 (off) or the number of best epochs "
                              "to average")
        if self.average_best and self.weight_averaging:
            raise ConfigError(f"train.average_best={self.average_best} cannot be combined with train.weight_averaging: "
                              "both write the run's averaged weights (averaged.safetensors); choose one")
        if self.average_best and last.epochs is not None and self.average_best > last.epochs:
            raise ConfigError(f"train.average_best={self.average_best} is more than the final phase's "
                              f"{last.epochs} epochs")


def fold_paths(path: str | None, kfold: int, key: str) -> list[str | None]:
    """``path`` once, or with ``{fold}`` filled in for every fold of a k-fold run (fold k's
    FlexiAST starts from fold k's AST: a model trained on another fold has seen this test fold)."""
    if path is None or "{fold}" not in path:
        return [path]
    if not kfold:
        raise ConfigError(f"{key}: {path} names a {{fold}}, but data.kfold is off")
    return [path.replace("{fold}", str(k)) for k in range(1, kfold + 1)]


def _exists(path: str | None, key: str, what: str) -> None:
    if path is not None and not Path(path).exists():
        raise ConfigError(f"{key}: {what} {path} does not exist")


def writable(directory: Path, key: str) -> None:
    """Refuse an output directory whose nearest existing parent cannot be written."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write the output directory {directory} ({probe} is not writable)")
