"""The ``model:`` section of a pretraining recipe (an SSAST), and its configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ...resize import to_pair
from ..ast.recipe import ASTSection
from .config import SSASTConfig

__all__ = ["SSASTSection", "config_from_recipe"]


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
