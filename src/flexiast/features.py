"""The features a model takes, by kind, and the temporal compression of the coarse-to-fine paper.

Two front ends (``FeatureConfig.kind``):

* ``kaldi_fbank``, AST's (Gong et al. 2021; its dataloader): subtract the waveform's
  mean, Kaldi fbank (128 bins, 25 ms Hanning, 10 ms shift; natural-log energies,
  :mod:`flexiast.fbank`), zero-pad or cut to ``target_length`` frames, normalise as
  ``(x - mean) / (2 std)`` with the dataset's statistics;
* ``slaney_logmel``, HTS-AT's and PANNs' (:mod:`flexiast.logmel`): 32 kHz, a centred
  1024-point STFT every 10 ms, 64 Slaney mel bins over 50-14,000 Hz, in dB; no mean
  removed and no dataset normalisation (``normalization="none"``: the model normalises
  with a BatchNorm). :meth:`FeatureConfig.htsat` gives these settings.

Coarse-to-fine (Feng et al., ICASSP 2024, Sec. 2.3) compresses time by ``C``, for either kind:

* ``fshift``: the frame shift (hop) times ``C`` (``target_length / C`` frames);
* ``avgpool`` / ``maxpool``: pooling with kernel and stride ``1 x C`` over time, on the
  finished spectrogram, before tokenising;
* ``patch``: the input is untouched; the model uses ``p x Cp`` patches (see the model).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .constants import COMPRESSION_METHODS, FEATURE_KINDS, FEATURE_NORMALIZATIONS
from .fbank import fbank
from .fbank import num_frames as kaldi_num_frames
from .logmel import SILENCE_DB, slaney_logmel

__all__ = ["Compression", "FeatureConfig", "log_mel", "pad_or_cut", "normalize", "compress_spec",
           "finish_input", "DATASET_STATS", "HTSAT_FEATURES"]

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


#: Fields added to :class:`FeatureConfig` after its first release, with their defaults:
#: :meth:`FeatureConfig.to_dict` writes them only where they differ, so a ``kaldi_fbank``
#: configuration's dict is the one earlier versions wrote, and dicts without them load.
_LATER_FIELDS = {"fmin": None, "fmax": None, "normalization": "mean_std"}

#: HTS-AT's front end (its ``htsat_config``; PANNs' CNN14 shares it): 32 kHz, 64 bins, a
#: 1024-sample (32 ms) window every 320 samples (10 ms), 50-14,000 Hz, 1024 frames, and no
#: dataset normalisation (a BatchNorm over the mel bins inside the model).
HTSAT_FEATURES = dict(kind="slaney_logmel", sample_rate=32000, num_mel_bins=64, frame_length_ms=32.0,
                      frame_shift_ms=10.0, window="hann", fmin=50.0, fmax=14000.0, target_length=1024,
                      normalization="none", mean=None, std=None)


def _whole_samples(value_ms: float, sample_rate: int, name: str) -> int:
    """``value_ms`` as a whole number of samples at ``sample_rate``, or a ValueError naming ``name``."""
    samples = sample_rate * value_ms / 1000
    if abs(samples - round(samples)) > 1e-6 * max(1.0, samples):
        raise ValueError(f"features.{name}={value_ms:g} is {samples:g} samples at sample_rate={sample_rate}; "
                         "a slaney_logmel frame takes a whole number of samples")
    return int(round(samples))


@dataclass(frozen=True)
class FeatureConfig:
    """How a waveform becomes the model's input ``[target_length, num_mel_bins]``.

    ``kind`` names the front end, stored with the weights: a model family takes one kind
    (``FlexModel.feature_kind``), and the engine, evaluation and inference refuse another.

    * ``frame_length_ms`` / ``frame_shift_ms``: the analysis window and the hop. Kaldi
      truncates them to samples; ``slaney_logmel`` needs whole samples (its window is
      also the FFT size: 32 ms is 1024 samples at 32 kHz, 512 at 16 kHz).
    * ``window``: Kaldi's window name (``hanning``, ...); ``slaney_logmel`` takes ``hann``,
      the periodic Hann window.
    * ``fmin`` / ``fmax``: the mel filters' range in Hz; ``None`` is the kind's default
      (Kaldi: 20 Hz to Nyquist; Slaney: 0 Hz to Nyquist).
    * ``normalization``: ``mean_std`` is AST's ``(x - mean) / (2 std)`` with ``mean`` and
      ``std``; ``none`` leaves the features as they are (``mean`` and ``std`` are then
      ``None``), for models that normalise inside (HTS-AT, CNN14).

    :meth:`htsat` gives HTS-AT's (and PANNs') ``slaney_logmel`` settings,
    :meth:`for_dataset` AST's statistics, :meth:`for_kind` either kind's defaults.
    """

    num_mel_bins: int = 128
    target_length: int = 1024
    mean: float | None = -4.2677393
    std: float | None = 4.5689974
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hanning"
    sample_rate: int = 16000
    kind: str = "kaldi_fbank"
    fmin: float | None = None
    fmax: float | None = None
    normalization: str = "mean_std"

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"features kind {self.kind!r} is not one of {', '.join(FEATURE_KINDS)}")
        if self.target_length < 1 or self.num_mel_bins < 1:
            raise ValueError(f"target_length={self.target_length} and num_mel_bins={self.num_mel_bins} must be positive")
        if self.normalization not in FEATURE_NORMALIZATIONS:
            raise ValueError(f"features.normalization={self.normalization!r} is not one of "
                             f"{', '.join(FEATURE_NORMALIZATIONS)}")
        if self.normalization == "none":
            if self.mean is not None or self.std is not None:
                raise ValueError(f"features.mean={self.mean} and features.std={self.std}: with "
                                 "features.normalization='none' no statistics apply; set both to None")
        else:
            if self.mean is None or self.std is None:
                raise ValueError(f"features.mean={self.mean} and features.std={self.std}: "
                                 "features.normalization='mean_std' needs both")
            if not self.std > 0:
                raise ValueError(f"std={self.std} must be positive")
        if self.sample_rate <= 0:
            raise ValueError(f"features.sample_rate={self.sample_rate} must be positive")
        nyquist = self.sample_rate / 2
        if self.fmin is not None and not 0 <= self.fmin < nyquist:
            raise ValueError(f"features.fmin={self.fmin:g} must lie in [0, {nyquist:g}), below the Nyquist "
                             f"frequency of sample_rate={self.sample_rate}")
        if self.fmax is not None and self.fmax > nyquist:
            raise ValueError(f"features.fmax={self.fmax:g} exceeds the Nyquist frequency {nyquist:g} of "
                             f"sample_rate={self.sample_rate}")
        low = self.fmin if self.fmin is not None else (20.0 if self.kind == "kaldi_fbank" else 0.0)
        if self.fmax is not None and not self.fmax > low:
            raise ValueError(f"features.fmax={self.fmax:g} must exceed features.fmin={low:g}")
        if self.kind == "slaney_logmel":
            self._check_slaney()

    def _check_slaney(self) -> None:
        if self.window != "hann":
            raise ValueError(f"features.window={self.window!r}: slaney_logmel uses the periodic Hann window; "
                             "set window='hann' (FeatureConfig.htsat() gives HTS-AT's settings)")
        if _whole_samples(self.frame_length_ms, self.sample_rate, "frame_length_ms") < 2:
            raise ValueError(f"features.frame_length_ms={self.frame_length_ms:g} gives fewer than 2 samples")
        if _whole_samples(self.frame_shift_ms, self.sample_rate, "frame_shift_ms") < 1:
            raise ValueError(f"features.frame_shift_ms={self.frame_shift_ms:g} gives no sample")
        if self.normalization == "mean_std":
            for name, (mean, std, _) in DATASET_STATS.items():
                if (self.mean, self.std) == (mean, std):
                    raise ValueError(f"features.mean={self.mean} and features.std={self.std} are AST's statistics "
                                     f"of Kaldi fbank on {name} (natural-log energies), not of slaney_logmel "
                                     "features (dB): set normalization='none' (HTS-AT normalises in the model) "
                                     "or the statistics of these features (flexiast data stats)")

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "FeatureConfig":
        """AST's statistics and length for ``audioset``, ``esc50``, ``speechcommands``, ... ."""
        if name not in DATASET_STATS:
            raise ValueError(f"no statistics for {name!r}; known: {', '.join(DATASET_STATS)}")
        mean, std, length = DATASET_STATS[name]
        return cls(**{"mean": mean, "std": std, "target_length": length, **overrides})

    @classmethod
    def htsat(cls, **overrides) -> "FeatureConfig":
        """HTS-AT's front end (:data:`HTSAT_FEATURES`, PANNs' too), with ``overrides``.

        Its Speech Commands recipe: ``htsat(sample_rate=16000, fmax=8000.0, ...)``; the
        32 ms window is then 512 samples and the 10 ms hop 160.
        """
        return cls(**{**HTSAT_FEATURES, **overrides})

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> "FeatureConfig":
        """The defaults of front end ``kind`` with ``overrides``: AST's (AudioSet) for
        ``kaldi_fbank``, HTS-AT's (:meth:`htsat`) for ``slaney_logmel``."""
        if kind not in FEATURE_KINDS:
            raise ValueError(f"features kind {kind!r} is not one of {', '.join(FEATURE_KINDS)}")
        return cls.htsat(**overrides) if kind == "slaney_logmel" else cls(**{**overrides, "kind": kind})

    @property
    def pad_value(self) -> float:
        """What fills frames a clip does not give, and SpecAugment's masks, before normalisation.

        AST pads its fbank with 0 (which its normalisation then maps near the mean). For the
        dB log-mel 0 would be loud (0 dB); it is padded with the front end's floor,
        ``10 log10(amin) = -100`` dB, the log-mel of digital silence: a short clip is padded
        as if its waveform were padded with zeros (HTS-AT pads the waveform).
        """
        return 0.0 if self.kind == "kaldi_fbank" else SILENCE_DB

    @property
    def units_per_db(self) -> float:
        """How much one dB of level moves a value: ``ln(10) / 10`` for Kaldi's natural-log
        energies, 1 for the dB log-mel (a gain augmentation of ``g`` dB adds ``g`` times this)."""
        return math.log(10) / 10 if self.kind == "kaldi_fbank" else 1.0

    @property
    def centered(self) -> bool:
        """Whether frame ``t`` is centred on sample ``t * hop`` (a centred STFT, ``slaney_logmel``)
        rather than starting there (Kaldi's ``snip_edges``)."""
        return self.kind == "slaney_logmel"

    def frame_length_samples(self) -> int:
        """The analysis window in samples (Kaldi's ``int(sample_rate * ms / 1000)``; slaney_logmel's
        is whole, and its FFT size)."""
        if self.kind == "kaldi_fbank":
            return int(self.sample_rate * self.frame_length_ms / 1000)
        return _whole_samples(self.frame_length_ms, self.sample_rate, "frame_length_ms")

    def frame_shift_samples(self, compression: Compression = Compression()) -> int:
        """The hop in samples, C times longer under fshift."""
        if self.kind == "kaldi_fbank":
            return int(self.sample_rate * self.fbank_kwargs(compression)["frame_shift_ms"] / 1000)
        factor = compression.factor if compression.method == "fshift" else 1
        return _whole_samples(self.frame_shift_ms, self.sample_rate, "frame_shift_ms") * factor

    def num_frames(self, samples: int, compression: Compression = Compression()) -> int:
        """Frames the front end gives for ``samples`` samples: Kaldi's whole windows
        (``1 + (L - W) // S``, 0 below one window), or a centred STFT's ``1 + L // S``."""
        if self.centered:
            return 1 + samples // self.frame_shift_samples(compression)
        kw = self.fbank_kwargs(compression)
        return kaldi_num_frames(samples, self.sample_rate, frame_length_ms=kw["frame_length_ms"],
                                frame_shift_ms=kw["frame_shift_ms"])

    def fbank_frames(self, compression: Compression = Compression()) -> int:
        """Frames padded or cut to before pooling: ``target_length // C`` under fshift."""
        return self.target_length // (compression.factor if compression.method == "fshift" else 1)

    def clip_samples(self, compression: Compression = Compression()) -> int:
        """Samples of audio that fill :meth:`fbank_frames` exactly: ``W + (frames - 1) S``
        for Kaldi's framing (snip_edges), ``(frames - 1) S`` for a centred STFT
        (``1 + L // S == frames``)."""
        shift = self.frame_shift_samples(compression)
        if self.centered:
            return (self.fbank_frames(compression) - 1) * shift
        return self.frame_length_samples() + (self.fbank_frames(compression) - 1) * shift

    def frames(self, compression: Compression = Compression()) -> int:
        """Frames of the model's input: ``target_length // C`` under fshift or pooling."""
        frames = self.target_length // compression.input_factor
        if frames < 1:
            raise ValueError(f"compression {compression} leaves no frames of target_length={self.target_length}")
        return frames

    def frontend_kwargs(self, compression: Compression = Compression()) -> dict:
        """Arguments of the kind's front end: :func:`~flexiast.fbank.fbank` or
        :func:`~flexiast.logmel.slaney_logmel`; the hop grows by C under fshift."""
        if self.kind == "slaney_logmel":
            return dict(sample_rate=self.sample_rate, n_fft=self.frame_length_samples(),
                        hop_length=self.frame_shift_samples(compression), n_mels=self.num_mel_bins,
                        fmin=0.0 if self.fmin is None else float(self.fmin),
                        fmax=None if self.fmax is None else float(self.fmax))
        shift = self.frame_shift_ms * (compression.factor if compression.method == "fshift" else 1)
        kw = dict(sample_rate=self.sample_rate, num_mel_bins=self.num_mel_bins,
                  frame_length_ms=self.frame_length_ms, frame_shift_ms=shift, window=self.window)
        if self.fmin is not None:
            kw["low_freq"] = float(self.fmin)
        if self.fmax is not None:
            kw["high_freq"] = float(self.fmax)
        return kw

    def fbank_kwargs(self, compression: Compression = Compression()) -> dict:
        """Every front-end parameter that changes the features, as the feature cache keys them.

        For ``kaldi_fbank``, :func:`~flexiast.fbank.fbank`'s arguments (the dict earlier
        versions keyed their caches with, so those entries stay valid); for another kind,
        ``kind`` and its front end's arguments (:meth:`frontend_kwargs`), so two kinds or
        two settings never share an entry.
        """
        kw = self.frontend_kwargs(compression)
        return kw if self.kind == "kaldi_fbank" else {"kind": self.kind, **kw}

    def to_dict(self) -> dict:
        """The fields; those added later (:data:`_LATER_FIELDS`) only where they differ from their defaults."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}


def log_mel(wave: torch.Tensor, cfg: FeatureConfig, compression: Compression = Compression()) -> torch.Tensor:
    """The log-mel of a waveform ``[..., samples]`` by ``cfg.kind``: ``[..., frames, bins]``.

    ``kaldi_fbank``: AST's fbank of the waveform with its mean removed.
    ``slaney_logmel``: the Slaney log-mel in dB of the waveform as it is (HTS-AT and PANNs
    remove no mean).
    """
    if cfg.kind == "slaney_logmel":
        return slaney_logmel(wave, **cfg.frontend_kwargs(compression))
    return fbank(wave - wave.mean(dim=-1, keepdim=True), **cfg.frontend_kwargs(compression))


def pad_or_cut(spec: torch.Tensor, frames: int, value: float = 0.0) -> torch.Tensor:
    """Pad at the end with ``value`` (:attr:`FeatureConfig.pad_value`), or keep the first
    ``frames`` frames, of ``[..., T, F]``."""
    n = spec.shape[-2]
    if n < frames:
        return F.pad(spec, (0, 0, 0, frames - n), value=value)
    return spec[..., :frames, :]


def normalize(spec: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``(x - mean) / (2 std)``, AST's normalisation (``normalization="mean_std"``), or
    ``spec`` itself with ``normalization="none"`` (the model normalises: HTS-AT, CNN14)."""
    if cfg.normalization == "none":
        return spec
    return (spec - cfg.mean) / (2 * cfg.std)


def finish_input(spec: torch.Tensor, cfg: FeatureConfig, compression: Compression = Compression()) -> torch.Tensor:
    """A clip's log-mel ``[T, F]`` made into the model's input, as for evaluation in training.

    Pad (with :attr:`FeatureConfig.pad_value`) or cut to :meth:`FeatureConfig.fbank_frames`,
    normalise, then pool (avgpool / maxpool): the model sees ``cfg.frames(compression)`` frames.
    """
    padded = pad_or_cut(spec, cfg.fbank_frames(compression), cfg.pad_value)
    return compress_spec(normalize(padded, cfg), compression)


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
