"""The configuration of an SSAST pretraining model: an AST encoder without a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ast.config import PRESETS, ASTConfig

__all__ = ["SSASTConfig", "PRESETS"]


@dataclass(frozen=True)
class SSASTConfig(ASTConfig):
    """An AST encoder (every :class:`ASTConfig` field but the classifier's) that SSAST
    pretrains with masked-patch prediction (Gong et al., AAAI 2022): ``num_classes`` is 0,
    and the prediction heads predict a whole stored patch (``patch_size``: 16 x 16 for the
    patch model, 128 x 2 for the frame model). SSAST's encoder is DeiT's, with cls and
    distillation tokens (``prefix_tokens=2``) and no ImageNet initialisation."""

    num_classes: int = 0

    arch: ClassVar[str] = "ssast"
    classifier: ClassVar[bool] = False

    @property
    def patch_area(self) -> int:
        """Values per patch, what each prediction head outputs (256 for 16 x 16)."""
        return self.patch_size[0] * self.patch_size[1]

    def encoder(self, **changes) -> ASTConfig:
        """The AST this encoder becomes when fine-tuned (``changes``: its classes, pooling, input)."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ("arch", "num_classes", "labels")}
        return ASTConfig.from_dict({**fields, **changes})
