"""Reading audio as AST expects it: mono float32 at 16 kHz.

Decoding is soundfile's (WAV, FLAC, OGG, MP3 and anything libsndfile reads, at any bit
depth); resampling is soxr's (high quality, linear phase). Channels are averaged to mono.
Every failure names the file: a file that does not decode, holds no samples, or holds
NaN, Inf or absurdly large samples (:data:`MAX_PEAK`) raises :class:`AudioError` rather
than reaching the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = ["AudioError", "load_audio", "read_header", "resample", "resampled_length", "SAMPLE_RATE", "MAX_PEAK"]

SAMPLE_RATE = 16000
#: The largest sample magnitude accepted. Float WAVs may exceed full scale (1.0), and some
#: tools store integer-scaled floats (32768), but 1e6 is 120 dB above full scale: such
#: values are corrupt data, and from about 1e18 up fbank's float32 power overflows to NaN.
MAX_PEAK = 1e6


class AudioError(ValueError):
    """An audio file that cannot be used; the message names it."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """soxr's high-quality resampler; a no-op at the target rate."""
    if rate == target:
        return audio
    return soxr.resample(audio, rate, target, quality="HQ")


def resampled_length(samples: int, rate: int, target: int = SAMPLE_RATE) -> int:
    """Samples :func:`resample` gives for ``samples`` at ``rate``: soxr's ``round(samples x
    target / rate)``, halves rounded up (what :func:`load_audio` returns, read from a header)."""
    return samples if rate == target else (2 * samples * target + rate) // (2 * rate)


#: What libsndfile raises for a missing, unreadable or undecodable file.
_DECODE_ERRORS = (sf.LibsndfileError, OSError, RuntimeError, TypeError, ValueError)


def _decode_error(path, e: Exception) -> AudioError:
    if isinstance(e, FileNotFoundError) or not Path(path).exists():
        return AudioError(path, "no such file")
    return AudioError(path, f"cannot decode audio ({e})")


def read_header(path: str | Path) -> sf._SoundFileInfo:
    """``path``'s header (rate, channels, frames), refused as :func:`load_audio` would refuse it."""
    try:
        info = sf.info(str(path))
    except _DECODE_ERRORS as e:
        raise _decode_error(path, e) from None
    if info.frames == 0:
        raise AudioError(path, "holds no samples")
    return info


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode ``path`` to a mono float32 waveform ``[samples]`` at ``sample_rate``."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except _DECODE_ERRORS as e:
        raise _decode_error(path, e) from None
    if audio.shape[0] == 0:
        raise AudioError(path, "holds no samples")
    peak = float(np.abs(audio).max())  # NaN if any sample is NaN, inf if any is infinite
    if not np.isfinite(peak):
        raise AudioError(path, "holds NaN or Inf samples")
    if peak > MAX_PEAK:
        raise AudioError(path, f"samples reach {peak:.3g}, far beyond full scale (1.0, or 32768 for "
                               f"integer-scaled floats): corrupt data? (limit {MAX_PEAK:.0e})")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    mono = resample(np.ascontiguousarray(mono), rate, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
