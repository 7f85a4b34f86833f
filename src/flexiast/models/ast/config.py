"""The configuration of an AST: everything needed to rebuild one, stored with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...constants import HEAD_POOLINGS, PARTIAL_PATCHES
from ...resize import grid_shape, to_pair
from ..base import FamilyConfig

__all__ = ["ASTConfig", "PRESETS"]

#: DeiT widths (Touvron et al., 2021); every preset has 12 layers and 64-wide heads.
PRESETS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}


@dataclass(frozen=True)
class ASTConfig(FamilyConfig):
    """Everything needed to rebuild an :class:`AST`; stored with every checkpoint.

    ``patch_size`` and ``stride`` are ``(freq, time)``; ``stride=None`` means the patch
    size. ``norm_eps`` is the encoder's LayerNorm epsilon (1e-6 in AST/timm, 1e-12 in
    Hugging Face's port), ``head_norm_eps`` the classifier's (1e-5 in AST).
    ``partial_patches`` says what happens to bins or frames that do not fill a last patch
    (:func:`flexiast.resize.grid_shape`): ``"drop"`` (the convolution's floor, AST's and
    the FlexiAST authors' code) or ``"pad"`` (zero-padded to whole patches, the ceil grid of
    FlexiAST Sec. 2.2). At patch 48 on 128 mel bins ``drop`` never sees the top 32 bins.
    ``pooling`` is what the classifier reads: ``"prefix"``, the mean of the prefix tokens
    (AST's ``(cls + dist) / 2``), or ``"mean"``, the mean of the patch tokens (SSAST's
    fine-tuning default, ``ft_avgtok``; Gong et al., AAAI 2022, Sec. 3), or ``"attention"``,
    one learned query attending over the patch tokens (ElasticAST's masked attention pooling,
    Feng et al., Interspeech 2024: :class:`flexiast.models.ast.attention.AttentionPool`).
    """

    num_classes: int = 527
    input_fdim: int = 128
    input_tdim: int = 1024
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: tuple[int, int] = (16, 16)
    stride: tuple[int, int] | None = None
    prefix_tokens: int = 2
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    head_norm_eps: float = 1e-5
    partial_patches: str = "drop"
    pooling: str = "prefix"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    #: The family's name in the registry, stored with every saved configuration.
    tuple_fields: ClassVar[tuple[str, ...]] = ('patch_size', 'stride')
    arch: ClassVar[str] = "ast"
    #: Whether the model ends in a classifier of ``num_classes`` (an SSAST pretraining model
    #: has masked-patch heads instead, and ``num_classes`` 0).
    classifier: ClassVar[bool] = True

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("patch_size", to_pair(self.patch_size, "patch_size"))
        set_("stride", to_pair(self.stride, "stride") if self.stride is not None else self.patch_size)
        self._tuple_labels()
        if not self.classifier and self.num_classes != 0:
            raise ValueError(f"num_classes={self.num_classes!r}: a {self.arch} model has no classifier (num_classes=0)")
        self._positive_ints(*(("num_classes",) if self.classifier else ()), "input_fdim", "input_tdim", "embed_dim",
                            "depth", "num_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.prefix_tokens not in (1, 2):
            raise ValueError(f"prefix_tokens={self.prefix_tokens!r} must be 1 (cls) or 2 (cls + distillation)")
        if self.pooling not in HEAD_POOLINGS:
            raise ValueError(f"pooling={self.pooling!r} must be one of {', '.join(HEAD_POOLINGS)}")
        if self.partial_patches not in PARTIAL_PATCHES:
            raise ValueError(f"partial_patches={self.partial_patches!r} must be one of {', '.join(PARTIAL_PATCHES)}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} must be positive")
        self._rates("drop_rate", "drop_path_rate")
        self._check_labels()
        if any(s > p for s, p in zip(self.stride, self.patch_size)):
            raise ValueError(f"stride={self.stride} is larger than patch_size={self.patch_size}: the bins and frames "
                             "between patches would never be read (give stride <= patch_size, or none)")
        grid_shape(self.input_size, self.patch_size, self.stride, self.partial_patches)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(mel_bins, frames)`` the stored positional grid was made for."""
        return (self.input_fdim, self.input_tdim)

    @property
    def grid(self) -> tuple[int, int]:
        """The stored positional grid, ``(freq, time)`` tokens."""
        return grid_shape(self.input_size, self.patch_size, self.stride, self.partial_patches)

    def grid_at(self, input_size: tuple[int, int], patch, stride) -> tuple[int, int]:
        """The token grid of a call on a ``(mel_bins, frames)`` input (:func:`grid_shape`
        with this model's ``partial_patches``)."""
        return grid_shape(input_size, patch, stride, self.partial_patches)

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def resolve_patch(self, patch_size=None, stride=None) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(patch, stride)`` of a call: the stored pair, or ``patch_size`` without overlap."""
        patch = self.patch_size if patch_size is None else to_pair(patch_size, "patch_size")
        if stride is not None:
            return patch, to_pair(stride, "stride")
        return patch, (self.stride if patch == self.patch_size else patch)

    def replace(self, **changes) -> "ASTConfig":
        """:meth:`FamilyConfig.replace`; a new ``patch_size`` without a ``stride`` no longer overlaps
        (the same patch size, given again, keeps the stride)."""
        if ("patch_size" in changes and "stride" not in changes
                and to_pair(changes["patch_size"], "patch_size") != self.patch_size):
            changes["stride"] = None
        return super().replace(**changes)
