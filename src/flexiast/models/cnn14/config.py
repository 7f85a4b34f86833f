"""The configuration of a CNN14: everything needed to rebuild one, stored with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..base import FamilyConfig

__all__ = ["CNN14Config", "PRESETS", "PANNS_CHANNELS"]

#: The widths of PANNs' six convolutional blocks (Kong et al. 2020, Table 1; audioset_tagging_cnn
#: pytorch/models.py, ``Cnn14.__init__``: ``conv_block1`` .. ``conv_block6``).
PANNS_CHANNELS = (64, 128, 256, 512, 1024, 2048)

#: Named sizes. ``base`` is PANNs' CNN14 (the family's defaults: 80.8M parameters with 527
#: classes, 40.1 GFLOPs forward for one 1001-frame, 64-bin clip, counted as FlopCounterMode counts).
#: ``micro`` divides every width by 8 (8 .. 256 channels, 1.25M parameters with 10 classes, 82 MFLOPs
#: for 128 frames, 41 MFLOPs for 64): a CNN14 that trains on a 2-core CPU in minutes.
PRESETS = {
    "base": dict(channels=PANNS_CHANNELS),
    "micro": dict(channels=tuple(c // 8 for c in PANNS_CHANNELS)),
}


@dataclass(frozen=True)
class CNN14Config(FamilyConfig):
    """Everything needed to rebuild a :class:`CNN14`; stored with every checkpoint.

    PANNs' defaults (``Cnn14`` in audioset_tagging_cnn pytorch/models.py): 64 mel bins, six
    blocks of ``channels`` (64 .. 2048), each two 3x3 convolutions without bias, BatchNorm and
    ReLU; 2x2 average pooling after every block but the last (which PANNs pools by (1, 1), a
    no-op); dropout ``conv_dropout`` 0.2 after every block and ``fc_dropout`` 0.5 before ``fc1``
    (PANNs' second dropout of 0.5 only touches the embedding it returns, not the classifier's
    input: :mod:`flexiast.models.cnn14.model`); ``fc1`` as wide as the last block (2048). ``input_tdim`` is the
    nominal input length (what a recipe trains on, 1001 frames for PANNs' 10 s at hop 320); no
    weight depends on it and any length of at least :attr:`min_frames` runs. ``input_fdim``
    must also survive the poolings (:attr:`min_frames` bins).
    """

    num_classes: int = 527
    input_fdim: int = 64
    input_tdim: int = 1001
    channels: tuple[int, ...] = PANNS_CHANNELS
    conv_dropout: float = 0.2
    fc_dropout: float = 0.5
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    #: The family's name in the registry, stored with every saved configuration.
    tuple_fields: ClassVar[tuple[str, ...]] = ('channels',)
    arch: ClassVar[str] = "cnn14"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        channels = (self.channels,) if isinstance(self.channels, int) else self.channels
        try:
            channels = tuple(channels)
        except TypeError:
            raise ValueError(f"channels={self.channels!r} must be a sequence of positive integers") from None
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"channels={self.channels!r} must be a sequence of positive integers")
        set_("channels", channels)
        self._tuple_labels()
        self._positive_ints("num_classes", "input_fdim", "input_tdim")
        self._rates("conv_dropout", "fc_dropout")
        if self.input_fdim < self.min_frames:
            raise ValueError(f"input_fdim={self.input_fdim}: {len(self.channels) - 1} 2x2 poolings need at least "
                             f"{self.min_frames} mel bins")
        if self.input_tdim < self.min_frames:
            raise ValueError(f"input_tdim={self.input_tdim}: {len(self.channels) - 1} 2x2 poolings need at least "
                             f"{self.min_frames} frames")
        self._check_labels()

    @property
    def num_blocks(self) -> int:
        return len(self.channels)

    @property
    def num_features(self) -> int:
        """Width of the last block, of ``fc1`` and of the embedding (2048 for PANNs' CNN14)."""
        return self.channels[-1]

    @property
    def min_frames(self) -> int:
        """The shortest input (frames, and mel bins): ``2 ** (blocks - 1)``, 32 for CNN14, so that
        every 2x2 pooling leaves at least one row."""
        return 2 ** (self.num_blocks - 1)

