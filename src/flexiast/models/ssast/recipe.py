"""A pretraining recipe (an SSAST): its ``model:`` section and configuration, and the keys only
an SSAST takes, registered as ``RECIPE_KEYS``: ``pretrain`` (the masked-patch task) and each
phase's ``patch``, which an SSAST's heads fix to the stored size."""

from __future__ import annotations

from dataclasses import dataclass

from ...masking import MASKINGS, mask_count
from ...recipe_checks import ConfigError, FamilyKeys, choice
from ...resize import to_pair
from ..ast.recipe import NO_PATCH, ASTSection, PatchSampling
from .config import SSASTConfig

__all__ = ["SSASTSection", "config_from_recipe", "PretrainSection", "SSASTPatchSampling", "OBJECTIVES",
           "RECIPE_KEYS"]

#: What a pretraining step optimises (the names of :data:`flexiast.tasks.masked_patch.OBJECTIVES`,
#: which a test keeps equal: that task is a layer above the families).
OBJECTIVES = ("joint", "discriminative", "generative")


@dataclass
class SSASTSection(ASTSection):
    """The AST section's network fields (``preset``, widths, ``patch_size``: 16 for SSAST's
    patch model, ``[128, 2]`` for its frame model); no classifier, so ``pooling`` is unused."""

    arch: str = SSASTConfig.arch


def config_from_recipe(section: SSASTSection, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None) -> SSASTConfig:
    """The SSAST a pretraining recipe trains (``num_classes`` and ``labels`` must be none: the
    data is unlabeled)."""
    if num_classes or labels:
        raise ValueError(f"an SSAST pretrains on unlabeled audio; the data has {num_classes} classes")
    return SSASTConfig(input_fdim=input_fdim, input_tdim=input_tdim, patch_size=to_pair(section.patch_size, "patch_size"),
                       stride=None if section.stride is None else to_pair(section.stride, "stride"),
                       prefix_tokens=section.prefix_tokens, partial_patches=section.partial_patches,
                       drop_rate=section.drop_rate, drop_path_rate=section.drop_path_rate, **section.widths())


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

    def check(self, ctx) -> None:
        """Its masks fit every phase's patches, and nothing else in the recipe asks for labels
        or for patch sizes the heads cannot predict."""
        cfg = ctx.cfg
        choice(self.masking, MASKINGS, "pretrain.masking")
        choice(self.objective, OBJECTIVES, "pretrain.objective")
        if not self.generative_weight >= 0:
            raise ConfigError(f"pretrain.generative_weight: {self.generative_weight} must be non-negative")
        why = f"a {cfg.model.arch} model pretrains on unlabeled audio"
        if cfg.loss.teacher is not None:
            raise ConfigError(f"loss.teacher: {why}; there are no labels to distil")
        if cfg.data.balanced:
            raise ConfigError(f"data.balanced: {why}; balanced sampling needs labels (weight a data.format: mixture's "
                              "sources instead)")
        if cfg.train.eval_patch_sizes is not None:
            raise ConfigError(f"train.eval_patch_sizes: {why} and validates at its own patch (its heads predict it)")
        for i in range(len(cfg.phases)):
            comp = cfg.phase_compression(i)
            frames = ctx.features.frames(comp)
            grid = config_from_recipe(cfg.model, num_classes=0, input_fdim=ctx.features.num_mel_bins,
                                      input_tdim=frames).grid
            try:
                mask_count(self.masked, grid[0] * grid[1])
            except ValueError as e:
                raise ConfigError(f"{e} (phase {i}, {frames} frames, compression {comp})") from None


@dataclass
class SSASTPatchSampling(PatchSampling):
    """An AST's phase patch sampler, held to the stored patch: an SSAST's heads predict it."""

    def check(self, ctx) -> None:
        super().check(ctx)
        cfg, i = ctx.cfg, ctx.phase
        base = to_pair(cfg.model.patch_size, "model.patch_size")
        if cfg.phase_compression(i).method == "patch":
            raise ConfigError(f"phases[{i}].compression: patch:C widens the kernel, and an SSAST's heads predict "
                              f"{base[0]}x{base[1]} patches; compress with fshift:C, avgpool:C or maxpool:C")
        if any(point.patch != base for point in cfg.phase_points(i, ctx.features)):
            raise ConfigError(f"{ctx.key}.sizes: an SSAST's heads predict {base[0]}x{base[1]} patches; it trains "
                              "at that size only (remove the sizes)")


#: The recipe keys an SSAST takes besides its ``model:`` section.
RECIPE_KEYS = (
    FamilyKeys("phases", SSASTPatchSampling, "patch", NO_PATCH + "; remove the section (it has nothing to draw)"),
    FamilyKeys("", PretrainSection, "pretrain", "masked-patch pretraining needs a model without a classifier "
                                                "(model.arch: ssast); a {arch} model is trained on labels"),
)
