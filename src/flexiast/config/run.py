"""The whole recipe, :class:`RunConfig`: its sections, what it derives (features, the model's
configuration, each phase's optimizer, schedule, compression and patches), and :func:`validate`,
which walks the sections' checks.

The operating points a phase trains and validates at (``phase_geometry``, ``phase_points``,
``eval_points``) are the family's kind's (:mod:`flexiast.models.points`), asked here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..constants import DEFAULT_ARCH
from ..data.augment import AugmentConfig
from ..features import Compression, FeatureConfig
from ..models import ModelFamily, get_family
from ..models.points import OperatingPoint, PointKind
from ..recipe_checks import ConfigError
from .batching import check_batching
from .family_keys import FamilySettings, family_sections, refuse_foreign
from .phases import OptimizerConfig, PhaseConfig, ScheduleConfig
from .sections import (CheckContext, DataSection, FeaturesSection, InitSection, LossSection, ModelSection,
                       TrainSection, writable)

__all__ = ["RunConfig", "validate"]


@dataclass(eq=False)
class RunConfig(FamilySettings):
    """A recipe: its sections (``docs/TRAINING.md``), and the top-level sections a family adds
    (an SSAST's ``pretrain``)."""

    recipe_host = ""

    name: str = "run"
    seed: int = 0
    out: str = "runs/{name}"
    model: ModelSection = field(default_factory=lambda: get_family(DEFAULT_ARCH).recipe_section())
    init: InitSection = field(default_factory=InitSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossSection = field(default_factory=LossSection)
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

    def family(self) -> ModelFamily:
        """The model family the recipe trains (``model.arch``)."""
        return get_family(self.model.arch)

    def feature_kind(self) -> str:
        return self.features.kind or self.family().feature_kind

    def feature_config(self) -> FeatureConfig:
        """The features: the kind's defaults, AST's dataset statistics (Kaldi fbank), then the fields given."""
        return self.features.config(self.feature_kind())

    @property
    def pretraining(self) -> bool:
        """Whether the recipe pretrains (its model has no classifier: SSAST) on unlabeled audio."""
        return not self.family().classifier

    def model_config(self, *, num_classes: int, features: FeatureConfig | None = None, labels=None):
        """The configuration of the model this recipe trains, for the data's classes: the
        family's (``model.arch``) from the ``model:`` section and the features' input size."""
        features = features or self.feature_config()
        return self.family().config_from_recipe(
            self.model, num_classes=num_classes, input_fdim=features.num_mel_bins,
            input_tdim=features.target_length, labels=labels)

    def phase_optimizer(self, i: int) -> OptimizerConfig:
        return self.phases[i].optimizer or self.optimizer

    def phase_schedule(self, i: int) -> ScheduleConfig:
        return self.phases[i].schedule or self.schedule

    def phase_compression(self, i: int) -> Compression:
        return Compression.parse(self.phases[i].compression)

    # -- the operating points: which calls a phase trains and validates with -----------------
    def points(self) -> PointKind:
        """What the family's calls vary (:mod:`flexiast.models.points`)."""
        return self.family().points

    def phase_frames(self, i: int, features: FeatureConfig | None = None) -> int:
        """Phase ``i``'s input frames (``target_length / C`` under fshift or pooling)."""
        return (features or self.feature_config()).frames(self.phase_compression(i))

    def phase_geometry(self, i: int, features: FeatureConfig | None = None) -> dict:
        """The model configuration's changes for phase ``i`` (its input length, and a patch
        family's stored kernel, ``p x Cp`` in a ``patch:C`` phase)."""
        return self.points().phase_geometry(self.model, self.phase_compression(i), self.phase_frames(i, features))

    def phase_points(self, i: int, features: FeatureConfig | None = None) -> list[OperatingPoint]:
        """The operating points phase ``i``'s steps draw from (its ``patch.sizes`` on its axes,
        widened by C in a patch phase; the stored point alone where none are drawn)."""
        return self.points().phase_points(self.model, self.phases[i], self.phase_compression(i),
                                          self.phase_frames(i, features))

    def eval_points(self, i: int, features: FeatureConfig | None = None) -> dict[str, OperatingPoint]:
        """``{name: point}`` of the validation sizes that fit phase ``i``'s input.

        Coarse phases validate at the sizes their shorter input allows; the final phase
        (which picks ``best.safetensors``) at all of them (validation refuses a recipe otherwise).
        """
        features = features or self.feature_config()
        return self.points().eval_points(self.model, self.phases[i], self.phase_compression(i),
                                         self.phase_frames(i, features), features.num_mel_bins, self.eval_sizes(),
                                         self.train.eval_resize)

    def eval_sizes(self) -> list:
        """Validation patch sizes of the final phase (ints on the phase's axes, or None)."""
        return list(self.train.eval_patch_sizes or self.phases[-1].patch.sizes or [None])


def _family_hosts(cfg: RunConfig):
    """``(key, section)`` of every section a family may extend."""
    yield "", cfg
    yield "init", cfg.init
    yield "loss", cfg.loss
    for i, phase in enumerate(cfg.phases):
        yield f"phases[{i}]", phase


def validate(cfg: RunConfig, *, check_files: bool = True) -> None:
    """Refuse what cannot run, naming the key: each section checks itself, in the order a
    reader meets them; ``check_files`` also checks that paths exist and ``out`` can be written."""
    family = cfg.family()
    ctx = CheckContext(cfg=cfg, family=family, check_files=check_files)
    ModelSection.check(cfg.model, ctx.at("model"))
    ctx.features = cfg.features.check(ctx.at("features"))
    for where, host in _family_hosts(cfg):
        refuse_foreign(host, where, family)
    cfg.data.check(ctx.at("data"))
    cfg.loss.check(ctx.at("loss"))
    cfg.optimizer.check("optimizer")
    cfg.schedule.check("schedule")
    if not cfg.phases:
        raise ConfigError("phases: at least one phase")
    for i, phase in enumerate(cfg.phases):
        phase.check(ctx.at(f"phases[{i}]", phase=i))
        for key, section in family_sections(phase, f"phases[{i}]", family):
            section.check(ctx.at(key, phase=i))
    cfg.train.check(ctx.at("train"))
    ModelSection.check_input(cfg.model, ctx.at("model"))
    for where, host in (("", cfg), ("init", cfg.init), ("loss", cfg.loss)):
        for key, section in family_sections(host, where, family):
            section.check(ctx.at(key))
    cfg.train.check_averaging(cfg.phases)
    check_batching(cfg, ctx.at("data"))
    if check_files:
        cfg.data.check_paths()
        cfg.init.check_paths(cfg.data.kfold)
        cfg.loss.check_paths(cfg.data.kfold)
        cfg.data.check_cache_dir()
        writable(cfg.out_dir, "out")
