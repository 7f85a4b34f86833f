"""AST's features, and the temporal compression of the coarse-to-fine paper.

AST (Gong et al. 2021; its dataloader): subtract the waveform's mean, Kaldi fbank
(128 bins, 25 ms Hanning, 10 ms shift), zero-pad or cut to ``target_length`` frames,
normalise as ``(x - mean) / (2 std)`` with the dataset's statistics.

Coarse-to-fine (Feng et al., ICASSP 2024, Sec. 2.3) compresses time by ``C``:

* ``fshift``: the fbank's frame shift times ``C`` (``target_length / C`` frames);
* ``avgpool`` / ``maxpool``: pooling with kernel and stride ``1 x C`` over time, on the
  finished spectrogram, before tokenising;
* ``patch``: the input is untouched; the model uses ``p x Cp`` patches (see the model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .constants import COMPRESSION_METHODS, FEATURE_KINDS
from .fbank import fbank

__all__ = ["Compression", "FeatureConfig", "log_mel", "pad_or_cut", "normalize", "compress_spec",
           "finish_input", "DATASET_STATS"]

#: (mean, std, target_length) of AST's features per dataset, from the AST code.
DATASET_STATS = {
    "audioset": (-4.2677393, 4.5689974, 1024),
    "esc50": (-6.6268077, 5.358466, 512),
    "speechcommands": (-6.845978, 5.5654526, 128),
    "vggsound": (-5.0767093, 4.4533687, 1024),
    "voxceleb": (-3.7614744, 4.2011642, 1024),
}


@dataclass(frozen=True)
class Compression:
    """A temporal compression: ``method`` in none, fshift, avgpool, maxpool, patch; factor C."""

    method: str = "none"
    factor: int = 1

    def __post_init__(self):
        if self.method not in COMPRESSION_METHODS:
            raise ValueError(f"compression method {self.method!r} is not one of {', '.join(COMPRESSION_METHODS)}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"compression factor {self.factor!r} must be a positive integer")
        if self.method == "none" and self.factor != 1:
            raise ValueError("compression 'none' takes factor 1")

    @classmethod
    def parse(cls, text: str | None) -> "Compression":
        """``"none"``, ``"fshift:2"``, ``"avgpool:4"``, ``"maxpool:2"``, ``"patch:4"``."""
        if not text or text == "none":
            return cls()
        method, _, factor = text.partition(":")
        try:
            return cls(method, int(factor or 1))
        except ValueError as e:
            raise ValueError(f"compression {text!r}: {e}") from None

    @property
    def input_factor(self) -> int:
        """How much shorter the model's input becomes (1 for ``patch``, which compresses tokens)."""
        return self.factor if self.method in ("fshift", "avgpool", "maxpool") else 1

    def __str__(self) -> str:
        return "none" if self.method == "none" else f"{self.method}:{self.factor}"


@dataclass(frozen=True)
class FeatureConfig:
    """How a waveform becomes the model's input ``[target_length, num_mel_bins]``.

    ``kind`` names the front end, stored with the weights: a model family takes one kind
    (``FlexModel.feature_kind``), and the engine, evaluation and inference refuse another.
    """

    num_mel_bins: int = 128
    target_length: int = 1024
    mean: float = -4.2677393
    std: float = 4.5689974
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hanning"
    sample_rate: int = 16000
    kind: str = "kaldi_fbank"

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"features kind {self.kind!r} is not one of {', '.join(FEATURE_KINDS)}")
        if self.target_length < 1 or self.num_mel_bins < 1:
            raise ValueError(f"target_length={self.target_length} and num_mel_bins={self.num_mel_bins} must be positive")
        if not self.std > 0:
            raise ValueError(f"std={self.std} must be positive")

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "FeatureConfig":
        """AST's statistics and length for ``audioset``, ``esc50``, ``speechcommands``, ... ."""
        if name not in DATASET_STATS:
            raise ValueError(f"no statistics for {name!r}; known: {', '.join(DATASET_STATS)}")
        mean, std, length = DATASET_STATS[name]
        return cls(**{"mean": mean, "std": std, "target_length": length, **overrides})

    def fbank_frames(self, compression: Compression = Compression()) -> int:
        """Frames padded or cut to before pooling: ``target_length // C`` under fshift."""
        return self.target_length // (compression.factor if compression.method == "fshift" else 1)

    def clip_samples(self, compression: Compression = Compression()) -> int:
        """Samples of audio that fill :meth:`fbank_frames` exactly (Kaldi framing, snip_edges)."""
        kw = self.fbank_kwargs(compression)
        length = int(self.sample_rate * kw["frame_length_ms"] / 1000)
        shift = int(self.sample_rate * kw["frame_shift_ms"] / 1000)
        return length + (self.fbank_frames(compression) - 1) * shift

    def frames(self, compression: Compression = Compression()) -> int:
        """Frames of the model's input: ``target_length // C`` under fshift or pooling."""
        frames = self.target_length // compression.input_factor
        if frames < 1:
            raise ValueError(f"compression {compression} leaves no frames of target_length={self.target_length}")
        return frames

    def fbank_kwargs(self, compression: Compression = Compression()) -> dict:
        """Arguments of :func:`fbank`; the frame shift grows by C under fshift."""
        shift = self.frame_shift_ms * (compression.factor if compression.method == "fshift" else 1)
        return dict(sample_rate=self.sample_rate, num_mel_bins=self.num_mel_bins,
                    frame_length_ms=self.frame_length_ms, frame_shift_ms=shift, window=self.window)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def log_mel(wave: torch.Tensor, cfg: FeatureConfig, compression: Compression = Compression()) -> torch.Tensor:
    """AST's fbank of a waveform ``[..., samples]`` with its mean removed: ``[..., frames, bins]``."""
    return fbank(wave - wave.mean(dim=-1, keepdim=True), **cfg.fbank_kwargs(compression))


def pad_or_cut(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad at the end, or keep the first ``frames`` frames, of ``[..., T, F]``."""
    n = spec.shape[-2]
    if n < frames:
        return F.pad(spec, (0, 0, 0, frames - n))
    return spec[..., :frames, :]


def normalize(spec: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``(x - mean) / (2 std)``, AST's normalisation."""
    return (spec - cfg.mean) / (2 * cfg.std)


def finish_input(spec: torch.Tensor, cfg: FeatureConfig, compression: Compression = Compression()) -> torch.Tensor:
    """A clip's log-mel ``[T, F]`` made into the model's input, as for evaluation in training.

    Zero-pad or cut to :meth:`FeatureConfig.fbank_frames`, normalise, then pool (avgpool /
    maxpool): the model sees ``cfg.frames(compression)`` frames.
    """
    return compress_spec(normalize(pad_or_cut(spec, cfg.fbank_frames(compression)), cfg), compression)


def compress_spec(spec: torch.Tensor, compression: Compression) -> torch.Tensor:
    """Average or max pooling over time with kernel and stride C; other methods pass through."""
    if compression.method not in ("avgpool", "maxpool"):
        return spec
    x = spec.transpose(-1, -2)
    shape = x.shape
    x = x.reshape(-1, 1, shape[-1])
    pool = F.avg_pool1d if compression.method == "avgpool" else F.max_pool1d
    x = pool(x, compression.factor, compression.factor)
    return x.reshape(*shape[:-1], x.shape[-1]).transpose(-1, -2)
