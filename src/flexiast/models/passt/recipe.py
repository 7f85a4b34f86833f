"""A PaSST's recipe: its ``model:`` section (an AST's fields at PaSST's defaults) and the keys it
shares with the AST family: each phase's patch sampler and patchout, ``init.source_*`` and
``loss.teacher_patch_size`` (:data:`flexiast.models.ast.recipe.RECIPE_KEYS`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ast.recipe import RECIPE_KEYS, ASTSection, config_from_recipe as ast_config_from_recipe
from .config import PaSSTConfig

__all__ = ["PaSSTSection", "config_from_recipe", "RECIPE_KEYS"]


@dataclass
class PaSSTSection(ASTSection):
    """The AST section's fields with PaSST's stride (10: overlapping 16 x 16 patches)."""

    arch: str = PaSSTConfig.arch
    stride: int | list[int] | None = 10


def config_from_recipe(section: PaSSTSection, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None) -> PaSSTConfig:
    """The PaSST a recipe trains: its section's network on the data's classes and input size."""
    return ast_config_from_recipe(section, num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim,
                                  labels=labels, config_class=PaSSTConfig)
