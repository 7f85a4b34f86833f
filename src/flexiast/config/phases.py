"""A recipe's phases and the optimizer and schedule each restarts with, with their checks.

A phase's patch sampling (``phases[i].patch``) is not here: the families whose calls take a
patch size declare it (:mod:`flexiast.config.family_keys`); :class:`PhaseConfig` holds it for
the engine to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import HTSAT_EPOCH_BOUNDS, HTSAT_EPOCH_RATES, OPTIMIZERS, RESIZE_METHODS, SCHEDULES
from ..recipe_checks import ConfigError, choice, positive
from .family_keys import FamilySettings
from .sections import CheckContext

__all__ = ["OptimizerConfig", "ScheduleConfig", "PhaseConfig"]


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

    def check(self, key: str) -> None:
        choice(self.name, OPTIMIZERS, f"{key}.name")
        positive(self.lr, f"{key}.lr", strict=False)
        positive(self.weight_decay, f"{key}.weight_decay", strict=False)
        positive(self.eps, f"{key}.eps")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"{key}.betas: {self.betas} must be two numbers in [0, 1)")


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

    def check(self, key: str) -> None:
        choice(self.name, SCHEDULES, f"{key}.name")
        positive(self.warmup_steps, f"{key}.warmup_steps", strict=False)
        positive(self.gamma, f"{key}.gamma")
        positive(self.decay_every, f"{key}.decay_every")
        positive(self.decay_from, f"{key}.decay_from")
        positive(self.min_lr, f"{key}.min_lr", strict=False)
        if self.name == "multistep" and self.milestones is None and self.decay_from is None:
            raise ConfigError(f"{key}: multistep needs milestones or decay_from")
        if self.milestones is not None and any(m < 1 for m in self.milestones):
            raise ConfigError(f"{key}.milestones: {self.milestones} must be epochs >= 1")
        if self.name != "htsat":
            for name in ("epoch_rates", "epoch_bounds"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{key}.{name}: only the htsat schedule takes it (name is {self.name})")
            return
        rates = self.epoch_rates if self.epoch_rates is not None else list(HTSAT_EPOCH_RATES)
        bounds = self.epoch_bounds if self.epoch_bounds is not None else list(HTSAT_EPOCH_BOUNDS)
        if not rates or any(r <= 0 for r in rates):
            raise ConfigError(f"{key}.epoch_rates: {rates} must be a non-empty list of positive factors")
        if len(bounds) != len(rates):
            raise ConfigError(f"{key}.epoch_bounds: {bounds} must have one epoch per rate of epoch_rates={rates}")
        if any(b < len(rates) for b in bounds) or bounds != sorted(bounds):
            raise ConfigError(f"{key}.epoch_bounds: {bounds} must be increasing epochs, each at least the "
                              f"{len(rates)} warm-up epochs")


@dataclass(eq=False)
class PhaseConfig(FamilySettings):
    """One phase: its length (``epochs`` or ``steps``), its compression (``none``,
    ``fshift:C``, ``avgpool:C``, ``maxpool:C``, ``patch:C``), how the kernel moves into and out
    of a ``patch`` phase (``transfer``: pi or bl; the first phase's also moves an initial
    weights' kernel of another size into ``model.patch_size``), and optimizer and schedule
    (the run's unless given), reset when the phase begins. A family whose calls take a patch
    size adds the phase's patch sampler (an AST's ``patch``)."""

    recipe_host = "phases"

    name: str | None = None
    epochs: int | None = None
    steps: int | None = None
    compression: str = "none"
    transfer: str = "pi"
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None

    def check(self, ctx: CheckContext) -> None:
        """Length, compression (its input has frames; a teacher sees full resolution; ``patch:C``
        only where calls take a patch), transfer, and the phase's optimizer and schedule."""
        cfg, key, i = ctx.cfg, ctx.key, ctx.phase
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError(f"{key}: give exactly one of epochs or steps")
        positive(self.epochs, f"{key}.epochs")
        positive(self.steps, f"{key}.steps")
        try:
            comp = cfg.phase_compression(i)
            ctx.features.frames(comp)
        except ValueError as e:
            raise ConfigError(f"{key}.compression: {e}") from None
        try:
            ctx.family.points.check_recipe(arch=ctx.family.arch, compression=comp, key=key)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        choice(self.transfer, RESIZE_METHODS, f"{key}.transfer")
        if cfg.loss.teacher is not None and comp.input_factor > 1:
            raise ConfigError(f"{key}.compression: distillation (loss.teacher) needs full-resolution input; "
                              f"{comp} would feed the teacher compressed spectrograms it was not trained on")
        if self.optimizer is not None:
            self.optimizer.check(f"{key}.optimizer")
        sched, lr = cfg.phase_schedule(i), cfg.phase_optimizer(i).lr
        if sched.name == "cosine" and sched.min_lr > lr:
            raise ConfigError(f"{key}: schedule min_lr={sched.min_lr} is above the learning rate {lr}")
        if self.schedule is not None:
            self.schedule.check(f"{key}.schedule")
