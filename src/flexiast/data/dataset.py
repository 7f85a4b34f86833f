"""From a manifest to model inputs: decode, features, augmentation, with bad files handled.

For clip ``i`` the pipeline is AST's (its dataloader), in this order:

1. waveform at 16 kHz, mean removed (mixed with another clip under waveform mixup);
2. log-mel (``frame_shift x C`` under Fshift), optional gain;
3. zero-pad or cut to ``target_length`` (``/ C`` under Fshift);
4. SpecAugment masks (training); under spectrogram mixup, steps 2-4 run for both clips
   and their results are mixed; then ``(x - mean) / (2 std)``, then noise and roll;
5. 1 x C average or max pooling (pooling compression).

Variable-length batches (``lengths``, a :class:`~flexiast.data.lengths.ClipLengths`; ElasticAST,
Feng et al., Interspeech 2024) replace step 3: a clip keeps its native length, cut to the
phase's longest at a random offset drawn from the clip's ``(seed, epoch, index)`` generator in
training (after the gain), to its leading frames in evaluation, and padded only up to the
fewest frames the model takes. Mixup's partner is cut or padded to the clip's length. Such
clips are batched by :class:`Collate` (``packed``: a :class:`~flexiast.models.packing.Clips`;
``bucketed``: padded to the longest, with their ``lengths``).

Targets are probability vectors (one-hot, multi-hot, or mixed), which both
cross-entropy and BCE take. Bad files follow ``on_error``: ``"raise"`` stops with the
file and manifest entry named; ``"skip"`` drops the clip (``__getitem__`` returns
``{"error": message}``, :func:`collate` lists it). :func:`scan` checks every file's header before
training so most problems surface before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio import AudioError, load_audio, read_header
from ..constants import BATCHINGS, ON_ERROR
from ..features import Compression, FeatureConfig, compress_spec, finish_input, log_mel, normalize, pad_or_cut
from ..models.packing import Clips
from .augment import AugmentConfig, add_noise_and_roll, apply_gain, spec_augment
from .cache import FeatureCache
from .lengths import ClipLengths
from .readers import DataError, Manifest

__all__ = ["AudioDataset", "collate", "Collate", "scan", "ScanReport", "dataset_stats"]


class AudioDataset(torch.utils.data.Dataset):
    def __init__(self, manifest: Manifest, features: FeatureConfig, *, compression: Compression = Compression(),
                 augment: AugmentConfig | None = None, train: bool = False, cache: FeatureCache | None = None,
                 on_error: str = "raise", seed: int = 0, lengths: ClipLengths | None = None):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r} is not one of {', '.join(ON_ERROR)}")
        features.frames(compression)  # refuses a compression that leaves no frames, naming it
        self.manifest, self.features, self.compression, self.lengths = manifest, features, compression, lengths
        self.augment = augment or AugmentConfig()
        self.train, self.cache, self.on_error, self.seed = train, cache, on_error, seed
        self.epoch = 0
        self.num_classes = len(manifest.classes)

    def __len__(self) -> int:
        return len(self.manifest.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))

    def _target(self, index: int) -> torch.Tensor:
        t = torch.zeros(self.num_classes)
        t[list(self.manifest.items[index].labels)] = 1.0
        return t

    def _wave(self, index: int) -> torch.Tensor:
        item = self.manifest.items[index]
        try:
            return load_audio(item.path, self.features.sample_rate)
        except AudioError as e:
            raise AudioError(item.path, f"{e.reason} (entry {item.source})") from None

    def log_mel(self, index: int) -> torch.Tensor:
        """The clip's log-mel before padding, from the cache where one is set."""
        kwargs = self.features.fbank_kwargs(self.compression)
        if self.cache is None:
            return log_mel(self._wave(index), self.features, self.compression)
        path = self.manifest.items[index].path
        try:
            return self.cache.fetch(path, kwargs, lambda: log_mel(self._wave(index), self.features, self.compression))
        except OSError:
            raise AudioError(path, f"no such file (entry {self.manifest.items[index].source})") from None

    def _mixed(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        other = int(rng.integers(len(self)))
        lam = float(rng.beta(self.augment.mixup_alpha, self.augment.mixup_alpha))
        a, b = self._wave(index), self._wave(other)
        a, b = a - a.mean(), b - b.mean()
        b = torch.nn.functional.pad(b, (0, max(0, a.numel() - b.numel())))[: a.numel()]
        spec = log_mel(lam * a + (1 - lam) * b, self.features, self.compression)
        return spec, lam * self._target(index) + (1 - lam) * self._target(other)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Clip ``key`` of the epoch set by :meth:`set_epoch`, or ``key = (epoch, index)``
        (what a loader whose workers outlive an epoch passes: :class:`flexiast.data.loader.EpochKeys`)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        try:
            return self._item(index, epoch)
        except AudioError as e:
            if self.on_error == "skip":
                return {"error": str(e), "index": index}
            raise

    def _fit(self, spec: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
        """A log-mel at the phase's length: padded or cut to its frames (fixed batches); else
        its own length, cut to the longest at an offset drawn from ``rng`` (training) or to
        its leading frames (``rng`` None), padded to the shortest."""
        pad = self.features.pad_value
        if self.lengths is None:
            return pad_or_cut(spec, self.features.fbank_frames(self.compression), pad)
        lo, hi = self.lengths.fbank_range()
        n = spec.shape[-2]
        if n > hi:
            start = int(rng.integers(n - hi + 1)) if rng is not None else 0
            return spec[..., start: start + hi, :]
        return pad_or_cut(spec, lo, pad) if n < lo else spec

    def _masked(self, spec: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Gain, then padded or cut to the phase's frames (:meth:`_fit`), then SpecAugment (a
        training clip's log-mel before normalisation)."""
        aug, cfg = self.augment, self.features
        if aug.gain_db:
            spec = apply_gain(spec, aug.gain_db, rng, cfg.units_per_db)
        shift = self.compression.factor if self.compression.method == "fshift" else 1
        spec = self._fit(spec, rng)
        return spec_augment(spec, aug.freqm, aug.timem // shift, rng, cfg.pad_value)

    def _item(self, index: int, epoch: int) -> dict:
        aug, cfg = self.augment, self.features
        rng = self._rng(index, epoch) if self.train else None
        if rng is None:
            if self.lengths is None:
                spec = finish_input(self.log_mel(index), cfg, self.compression)
            else:
                spec = compress_spec(normalize(self._fit(self.log_mel(index), None), cfg), self.compression)
            return {"spec": spec, "target": self._target(index), "index": index}
        mixed = aug.mixup > 0 and rng.random() < aug.mixup
        if mixed and aug.mixup_on == "spectrogram":
            # Each clip's log-mel (from the cache), with its own gain and masks, then mixed:
            # the mean and the 2 std of the normalisation below commute with a mix whose
            # weights sum to 1, so this is the mix of the two normalised spectrograms.
            other = int(rng.integers(len(self)))
            lam = float(rng.beta(aug.mixup_alpha, aug.mixup_alpha))
            a = self._masked(self.log_mel(index), rng)
            b = self._masked(self.log_mel(other), rng)
            if self.lengths is not None:  # the partner at the clip's length
                b = pad_or_cut(b, a.shape[-2], cfg.pad_value)
            spec = lam * a + (1 - lam) * b
            target = lam * self._target(index) + (1 - lam) * self._target(other)
        else:
            spec, target = self._mixed(index, rng) if mixed else (self.log_mel(index), self._target(index))
            spec = self._masked(spec, rng)
        spec = normalize(spec, cfg)
        if aug.noise:
            shift = self.compression.factor if self.compression.method == "fshift" else 1
            spec = add_noise_and_roll(spec, rng, max_roll=10 // shift)
        return {"spec": compress_spec(spec, self.compression), "target": target, "index": index}


def collate(batch: list[dict]) -> dict:
    """Stack clips; clips skipped under ``on_error="skip"`` are listed in ``"errors"`` (file
    and reason). ``"spec"`` is None when all were."""
    kept = [b for b in batch if "error" not in b]
    errors = [b["error"] for b in batch if "error" in b]
    if not kept:
        return {"spec": None, "target": None, "index": torch.empty(0, dtype=torch.long), "errors": errors}
    return {"spec": torch.stack([b["spec"] for b in kept]), "target": torch.stack([b["target"] for b in kept]),
            "index": torch.tensor([b["index"] for b in kept]), "errors": errors}


class Collate:
    """:func:`collate` for clips of their own lengths. ``packed``: ``spec`` is a
    :class:`~flexiast.models.packing.Clips` whose rows hold ``row_tokens`` tokens; ``bucketed``:
    ``spec`` is ``[batch, longest, bins]``, each clip padded at its end with ``pad`` (the
    normalised features' padding value), and ``lengths [batch]`` its frames. ``fixed``: :func:`collate`."""

    def __init__(self, batching: str, *, row_tokens: int | None = None, pad: float = 0.0):
        if batching not in BATCHINGS:
            raise ValueError(f"batching={batching!r} is not one of {', '.join(BATCHINGS)}")
        self.batching, self.row_tokens, self.pad = batching, row_tokens, pad

    def __call__(self, batch: list[dict]) -> dict:
        if self.batching == "fixed":
            return collate(batch)
        kept = [b for b in batch if "error" not in b]
        errors = [b["error"] for b in batch if "error" in b]
        if not kept:
            return {"spec": None, "target": None, "index": torch.empty(0, dtype=torch.long), "errors": errors,
                    "lengths": torch.empty(0, dtype=torch.long)}
        clips = Clips(tuple(b["spec"] for b in kept), **({"row_tokens": self.row_tokens} if self.row_tokens else {}))
        out = {"target": torch.stack([b["target"] for b in kept]), "index": torch.tensor([b["index"] for b in kept]),
               "errors": errors, "lengths": torch.tensor(clips.lengths)}
        out["spec"] = clips if self.batching == "packed" else clips.padded(self.pad)[0]
        return out


@dataclass
class ScanReport:
    total: int
    problems: list[tuple[str, str]] = field(default_factory=list)  # (entry, message)

    @property
    def bad_fraction(self) -> float:
        return len(self.problems) / max(self.total, 1)


def scan(manifest: Manifest, *, on_error: str = "raise", max_bad_fraction: float = 0.01,
         decode: bool = False) -> tuple[Manifest, ScanReport]:
    """Check that every file exists and has a readable, non-empty audio header.

    With ``decode=True`` every clip is also decoded in full, which finds truncated data
    and NaN or Inf samples too (at the cost of reading the whole dataset once).
    ``on_error="raise"``: any problem raises :class:`DataError` listing the files.
    ``"skip"``: bad clips are removed and reported, unless more than
    ``max_bad_fraction`` of the split is bad, which is refused.
    """
    report = ScanReport(len(manifest.items))
    good = []
    for i, item in enumerate(manifest.items):
        try:
            read_header(item.path)
            if decode:
                load_audio(item.path)
            good.append(i)
        except AudioError as e:
            report.problems.append((item.source, str(e)))
    if report.problems:
        listing = "\n  ".join(msg + f" (entry {src})" for src, msg in report.problems[:10])
        more = f"\n  ... and {len(report.problems) - 10} more" if len(report.problems) > 10 else ""
        if on_error == "raise":
            raise DataError(f"{len(report.problems)} of {report.total} clips cannot be used:\n  {listing}{more}\n"
                            "Fix them, or set on_error: skip to leave them out.")
        if report.bad_fraction > max_bad_fraction:
            raise DataError(f"{len(report.problems)} of {report.total} clips ({report.bad_fraction:.1%}) are bad, "
                            f"more than max_bad_fraction={max_bad_fraction:.1%}:\n  {listing}{more}")
    weights = None if manifest.weights is None else [manifest.weights[i] for i in good]
    kept = Manifest([manifest.items[i] for i in good], manifest.classes, manifest.multilabel, manifest.name,
                    manifest.notes + [f"skipped {len(report.problems)} unreadable clips"] * bool(report.problems),
                    weights)
    return kept, report


def dataset_stats(manifest: Manifest, features: FeatureConfig, *, batch_size: int = 1000,
                  num_workers: int = 0, cache: FeatureCache | None = None) -> dict:
    """Mean and std of the padded, unnormalised features, as AST's ``get_norm_stats.py``:
    the average over batches of each batch's mean and standard deviation. The exact
    mean and std over every value are returned too (``exact_mean``, ``exact_std``)."""
    identity = FeatureConfig(**{**features.to_dict(), "mean": 0.0, "std": 0.5,  # (x - 0) / (2 * 0.5) = x
                                "normalization": "mean_std"})
    ds = AudioDataset(manifest, identity, cache=cache)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    means, stds, total, sq, count = [], [], 0.0, 0.0, 0
    for batch in loader:
        x = batch["spec"].double()
        means.append(float(x.mean()))
        stds.append(float(x.std()))
        total, sq, count = total + float(x.sum()), sq + float((x * x).sum()), count + x.numel()
    exact_mean = total / count
    return {"mean": float(np.mean(means)), "std": float(np.mean(stds)), "exact_mean": exact_mean,
            "exact_std": float(np.sqrt(sq / count - exact_mean**2)), "clips": len(ds),
            "target_length": features.target_length, "batch_size": batch_size}
