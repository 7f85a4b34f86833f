"""Training-time augmentation, as the AST recipes use it, driven by an explicit RNG.

Every function takes a ``numpy.random.Generator``: the dataset seeds one per clip from
``(seed, epoch, index)``, so a clip's augmentation does not depend on worker count,
order or resumption.

* SpecAugment (Park et al. 2019) as torchaudio masks it, on the log-mel before
  normalisation: one frequency mask of width ``floor(u * freqm)`` and one time mask of
  width ``floor(u * timem)``, ``u ~ U(0, 1)``, set to 0.
* Noise (AST): ``x + U(0,1)[T, F] * U(0,1) / 10`` on the normalised spectrogram, then a
  roll of ``randint(-10, 10)`` frames.
* Time masks and the roll count frames of the full-resolution spectrogram: under
  Fshift, whose frames are C times longer, the dataset divides them by C, so an
  augmentation covers the same duration whatever the compression.
* Gain: a random level change of ``g ~ U(-gain_db, gain_db)`` dB. Both front ends give a
  log power, so this adds a constant: ``g ln(10) / 10`` to Kaldi's natural-log fbank,
  ``g`` to the dB log-mel (``FeatureConfig.units_per_db``; exact except at the floor).
* Masks and padding hold ``FeatureConfig.pad_value``: 0 for AST's fbank (as AST), the
  front end's floor (-100 dB, silence) for the dB log-mel, whose 0 would be loud. (HTS-AT
  masks after its BatchNorm, with 0 there: the mean; a mask here is silence instead.)
* Mixup (Zhang et al. 2018, as AST): with probability ``mixup`` a clip is mixed with a
  random other one, ``lam ~ Beta(alpha, alpha)`` (AST: alpha = 10), on the waveforms
  (``mixup_on: waveform``, AST) or on the two clips' log-mel spectrograms after each has
  had its gain and SpecAugment masks (``mixup_on: spectrogram``; HTS-AT mixes after its
  front end and masks, every clip, alpha = 0.5: ``mixup: 1.0, mixup_alpha: 0.5``);
  targets mix with the same ``lam``. Done by the dataset, which owns the clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..constants import MIXUP_DOMAINS

__all__ = ["AugmentConfig", "spec_augment", "add_noise_and_roll", "apply_gain"]


@dataclass(frozen=True)
class AugmentConfig:
    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    mixup_alpha: float = 10.0
    noise: bool = False
    gain_db: float = 0.0
    mixup_on: str = MIXUP_DOMAINS[0]

    def __post_init__(self):
        for name in ("freqm", "timem"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be non-negative")
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError(f"mixup={self.mixup} is a probability in [0, 1]")
        if self.mixup_alpha <= 0 or self.gain_db < 0:
            raise ValueError(f"mixup_alpha={self.mixup_alpha} must be positive and gain_db={self.gain_db} non-negative")
        if self.mixup_on not in MIXUP_DOMAINS:
            raise ValueError(f"mixup_on={self.mixup_on!r} is not one of {', '.join(MIXUP_DOMAINS)}")


def _mask(spec: torch.Tensor, axis: int, width_max: int, rng: np.random.Generator, fill: float) -> torch.Tensor:
    size = spec.shape[axis]
    value = rng.random() * width_max
    start = int(rng.random() * (size - value))  # negative when the mask outgrows the axis
    end = start + int(value)
    start = max(start, 0)
    if end <= start:
        return spec
    spec = spec.clone()
    index = [slice(None)] * spec.dim()
    index[axis] = slice(start, end)
    spec[tuple(index)] = fill
    return spec


def spec_augment(spec: torch.Tensor, freqm: int, timem: int, rng: np.random.Generator,
                 fill: float = 0.0) -> torch.Tensor:
    """One frequency mask and one time mask on ``spec[T, F]``, set to ``fill``."""
    if freqm:
        spec = _mask(spec, -1, freqm, rng, fill)
    if timem:
        spec = _mask(spec, -2, timem, rng, fill)
    return spec


def add_noise_and_roll(spec: torch.Tensor, rng: np.random.Generator, max_roll: int = 10) -> torch.Tensor:
    noise = torch.from_numpy(rng.random(spec.shape, dtype=np.float32)) * (rng.random() / 10)
    return torch.roll(spec + noise, int(rng.integers(-max_roll, max_roll)) if max_roll else 0, dims=-2)


def apply_gain(spec: torch.Tensor, gain_db: float, rng: np.random.Generator,
               units_per_db: float = math.log(10) / 10) -> torch.Tensor:
    """``spec`` ``g ~ U(-gain_db, gain_db)`` dB louder: ``spec + g * units_per_db``."""
    return spec + rng.uniform(-gain_db, gain_db) * units_per_db
