"""The configuration of an HTS-AT: everything needed to rebuild one, stored with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..base import FamilyConfig

__all__ = ["HTSATConfig", "PRESETS"]

#: Named sizes, all with HTS-AT's window 8 and 4 x 4 patches. ``tiny`` is the paper's Swin-T
#: (Chen et al. 2022). The smaller ones train on a 2-core CPU in minutes. Parameters at 64 mel
#: bins with 10 (527) classes, and forward FLOPs of one 1024-frame (256-frame) clip at 10 classes:
#:
#: * ``tiny``: embed 96, depths (2, 2, 6, 2), heads (4, 8, 16, 32): 27.6M (30.0M), 11.8G (2.93G);
#: * ``mini``: embed 48, depths (1, 1, 2, 1), heads (2, 4, 8, 16): 3.23M (4.42M), 1.36G (0.336G);
#: * ``micro``: embed 32, three stages, depths (1, 1, 2), heads (1, 2, 4): 0.52M (1.31M), 0.51G
#:   (0.125G); its time positions are 16 frames, not 32.
PRESETS = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32)),
    "mini": dict(embed_dim=48, depths=(1, 1, 2, 1), num_heads=(2, 4, 8, 16)),
    "micro": dict(embed_dim=32, depths=(1, 1, 2), num_heads=(1, 2, 4)),
}


def _ints(value, name: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be a sequence of positive integers") from None
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{name}={value!r} must be a sequence of positive integers")
    return out


@dataclass(frozen=True)
class HTSATConfig(FamilyConfig):
    """Everything needed to rebuild an :class:`HTSAT`; stored with every checkpoint.

    HTS-AT's defaults (Swin-T on 64 mel bins): ``embed_dim`` 96, ``depths`` (2, 2, 6, 2),
    ``num_heads`` (4, 8, 16, 32), ``window_size`` 8, ``patch_size`` 4 (patches do not overlap:
    the stride is the patch), MLP ratio 4, ``freq_ratio`` 4 (the spectrogram's time axis is
    cut in 4 chunks stacked along frequency), drop path 0.1, no dropout, qkv bias, a
    LayerNorm after the patch embedding. ``input_tdim`` is the nominal input length (what
    a recipe trains on); no weight depends on it and any length runs. ``input_fdim`` (mel
    bins) fixes the head's kernel: the last stage has ``input_fdim / (patch_size *
    2**(stages-1))`` frequency rows (2 for Swin-T on 64 bins), which must be whole.
    """

    num_classes: int = 527
    input_fdim: int = 64
    input_tdim: int = 1024
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    patch_size: int = 4
    mlp_ratio: float = 4.0
    freq_ratio: int = 4
    qkv_bias: bool = True
    patch_norm: bool = True
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    #: The family's name in the registry, stored with every saved configuration.
    tuple_fields: ClassVar[tuple[str, ...]] = ('depths', 'num_heads')
    arch: ClassVar[str] = "htsat"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("depths", _ints(self.depths, "depths"))
        set_("num_heads", _ints(self.num_heads, "num_heads"))
        self._tuple_labels()
        self._positive_ints("num_classes", "input_fdim", "input_tdim", "embed_dim", "window_size", "patch_size",
                            "freq_ratio")
        if len(self.num_heads) != len(self.depths):
            raise ValueError(f"num_heads={self.num_heads} needs one entry per stage of depths={self.depths}")
        for i, heads in enumerate(self.num_heads):
            if self.embed_dim * 2 ** i % heads:
                raise ValueError(f"num_heads={self.num_heads}: stage {i} is {self.embed_dim * 2 ** i} wide, not "
                                 f"divisible by {heads} heads")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} must be positive")
        self._rates("drop_rate", "drop_path_rate")
        if self.input_fdim % self.frames_per_position:
            raise ValueError(f"input_fdim={self.input_fdim} must be a multiple of patch_size * 2**(stages - 1) = "
                             f"{self.frames_per_position}: the last stage's frequency rows (the head's kernel "
                             "height) must be whole")
        self._check_labels()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def num_features(self) -> int:
        """Width of the last stage (768 for Swin-T)."""
        return self.embed_dim * 2 ** (self.num_stages - 1)

    @property
    def frames_per_position(self) -> int:
        """Input frames per time position of the last stage (32 for Swin-T): its patch side."""
        return self.patch_size * 2 ** (self.num_stages - 1)

    @property
    def unit(self) -> int:
        """Frames an input is zero-padded to a multiple of (128 for Swin-T), so that the fold
        into ``freq_ratio`` chunks, the patches and every merging divide exactly."""
        return self.freq_ratio * self.frames_per_position

    @property
    def c_freq_bin(self) -> int:
        """Frequency rows of the last stage after unfolding: the head's kernel height."""
        return self.input_fdim // self.frames_per_position

