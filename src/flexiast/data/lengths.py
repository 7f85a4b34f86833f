"""Clip lengths for variable-length batches, from the files' headers, before training.

ElasticAST (Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv 2407.08691) trains on clips of
their native length. Batching them by tokens (:mod:`flexiast.data.token_batches`) needs every
clip's length before the first step, so it is read once per run from the headers
(:func:`clip_samples`: the decoded samples at the features' rate, soxr's rounding, without
decoding), and a phase turns it into the frames its model sees (:meth:`ClipLengths.frames`:
the front end's frames at the phase's frame shift, kept between the shortest and the longest
the phase allows, divided by its pooling).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audio import AudioError, read_header, resampled_length
from ..features import Compression, FeatureConfig
from .readers import Manifest

__all__ = ["ClipLengths", "clip_samples", "clip_frames"]


@dataclass(frozen=True)
class ClipLengths:
    """The lengths a phase's clips keep, in model input frames: ``shortest`` (a shorter clip is
    padded to it: the fewest the model takes) and ``longest`` (a longer one is cut to it);
    ``pool`` is the factor by which pooling compression divides the fbank's frames (1 without)."""

    shortest: int
    longest: int
    pool: int = 1

    def __post_init__(self):
        if not 1 <= self.shortest <= self.longest or self.pool < 1:
            raise ValueError(f"clip lengths {self.shortest}..{self.longest} (pool {self.pool}) must be 1 <= shortest "
                             "<= longest")

    def fbank_range(self) -> tuple[int, int]:
        """``(shortest, longest)`` in the front end's frames, before pooling."""
        return self.shortest * self.pool, self.longest * self.pool

    def frames(self, fbank_frames: int) -> int:
        """The model frames of a clip whose front end gives ``fbank_frames`` frames."""
        lo, hi = self.fbank_range()
        return min(max(fbank_frames, lo), hi) // self.pool


def clip_samples(manifest: Manifest, sample_rate: int) -> list[int]:
    """Each clip's samples once decoded at ``sample_rate``, from its header (0 for a file whose
    header cannot be read: it is left out when read, as ``data.on_error`` says)."""
    samples = []
    for item in manifest.items:
        try:
            info = read_header(item.path)
        except AudioError:
            samples.append(0)
            continue
        samples.append(resampled_length(int(info.frames), int(info.samplerate), sample_rate))
    return samples


def clip_frames(samples: list[int], features: FeatureConfig, compression: Compression,
                lengths: ClipLengths) -> list[int]:
    """The model frames of clips of ``samples`` samples in a phase compressed by ``compression``
    whose clips keep ``lengths``."""
    return [lengths.frames(features.num_frames(n, compression)) for n in samples]
