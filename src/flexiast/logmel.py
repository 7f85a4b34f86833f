"""The Slaney log-mel spectrogram of PANNs (CNN14) and HTS-AT, in PyTorch.

PANNs (Kong et al., 2020) and HTS-AT (Chen et al., ICASSP 2022) feed their models
torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank``: 32 kHz audio, an STFT with
``n_fft = win_length = 1024``, hop 320 (10 ms), 64 mel bins over 50-14,000 Hz (HTS-AT's
Speech Commands recipe: 16 kHz, hop 160). For a waveform ``x`` of ``L`` samples:

1. centre: reflect-pad ``n_fft // 2`` samples at both ends (``x[-k] = x[k]``,
   ``x[L - 1 + k] = x[L - 1 - k]``; reflected again as often as a clip shorter than
   the padding needs), so frame ``t`` is centred on sample ``t * hop`` and a clip
   gives ``1 + L // hop`` frames;
2. window every frame with the periodic Hann window ``w[i] = 0.5 - 0.5 cos(2 pi i / N)``,
   ``N = n_fft`` (librosa's ``get_window("hann", N, fftbins=True)``);
3. power spectrum ``P[t, k] = |sum_i w[i] x_t[i] exp(-2 pi j i k / N)|^2``,
   ``k = 0 .. N / 2``;
4. mel energies ``E[t, m] = sum_k P[t, k] H[k, m]`` with Slaney's filters (Slaney's
   Auditory Toolbox, ``MakeMelFilterBank``; librosa's ``filters.mel`` with ``htk=False,
   norm="slaney"``, which torchlibrosa calls). Slaney's mel scale is linear below
   1000 Hz, ``mel(f) = f / (200 / 3)`` (1000 Hz is mel 15), and logarithmic above,
   ``mel(f) = 15 + ln(f / 1000) / (ln(6.4) / 27)`` (6400 Hz is mel 42). The ``M + 2``
   edge frequencies ``f_0 .. f_{M+1}`` are evenly spaced in mel from ``fmin`` to
   ``fmax``; filter ``m`` is the triangle rising from ``f_m`` to 1 at ``f_{m+1}`` and
   falling to 0 at ``f_{m+2}``, evaluated at the bin frequencies ``k * sample_rate / N``
   and scaled to unit area by ``2 / (f_{m+2} - f_m)`` (Slaney's normalisation);
5. decibels: ``10 log10(max(E, amin)) - 10 log10(max(amin, ref))`` (``ref`` 1, ``amin``
   1e-10), and with ``top_db`` each clip is floored at its maximum minus ``top_db``
   (librosa's ``power_to_db`` on each clip; HTS-AT and PANNs use no ``top_db``).

Written here rather than imported: torchaudio has no wheel for the torch flexiast pins,
and torchlibrosa, the implementation the models were trained with, builds its filters
with librosa (which brings numba and scipy) and runs the STFT as a convolution with
``n_fft`` x ``n_fft`` DFT kernels held as parameters; neither is needed at run time.
The tests check this module against torchlibrosa and librosa (``tests/test_logmel.py``).

Batched over any leading dimensions, on any device, differentiable, in the input's dtype
(float32 or float64; other floating types are computed in float32). The framing is an
index gather (no padding op), so a length known only when the graph runs can be traced
(:mod:`flexiast.export`).
"""

from __future__ import annotations

import math

import torch

from ._caching import tensor_cache
from .fbank import check_waveform

__all__ = ["slaney_logmel", "slaney_mel_filterbank", "hz_to_slaney_mel", "slaney_mel_to_hz", "num_frames",
           "frame_index", "power_to_db"]

#: Slaney's mel scale: Hz per mel below 1000 Hz, the mel of 1000 Hz, and the log step above.
F_SP = 200.0 / 3.0
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP  # 15
LOG_STEP = math.log(6.4) / 27.0
#: The smallest power the dB conversion keeps (HTS-AT's and PANNs' ``amin``), and so the
#: value of digital silence with ``ref = 1``: ``10 log10(amin) = -100`` dB.
AMIN = 1e-10
SILENCE_DB = 10.0 * math.log10(AMIN)


def hz_to_slaney_mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Slaney's mel of ``freq`` Hz: ``f / (200/3)`` below 1000 Hz, ``15 + ln(f / 1000) / (ln 6.4 / 27)`` from it."""
    if isinstance(freq, torch.Tensor):
        log = MIN_LOG_MEL + torch.log(freq.clamp_min(MIN_LOG_HZ) / MIN_LOG_HZ) / LOG_STEP
        return torch.where(freq >= MIN_LOG_HZ, log, freq / F_SP)
    if freq >= MIN_LOG_HZ:
        return MIN_LOG_MEL + math.log(freq / MIN_LOG_HZ) / LOG_STEP
    return freq / F_SP


def slaney_mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor | float:
    """The inverse of :func:`hz_to_slaney_mel`."""
    if isinstance(mel, torch.Tensor):
        log = MIN_LOG_HZ * torch.exp(LOG_STEP * (mel.clamp_min(MIN_LOG_MEL) - MIN_LOG_MEL))
        return torch.where(mel >= MIN_LOG_MEL, log, F_SP * mel)
    if mel >= MIN_LOG_MEL:
        return MIN_LOG_HZ * math.exp(LOG_STEP * (mel - MIN_LOG_MEL))
    return F_SP * mel


def slaney_mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                          fmax: float | None = None) -> torch.Tensor:
    """Slaney's area-normalised triangular mel filters as a ``[n_fft // 2 + 1, n_mels]`` float64 matrix.

    Step 4 of the module's description: edges ``f_0 .. f_{n_mels+1}`` evenly spaced in
    Slaney mel between ``fmin`` and ``fmax`` (default: Nyquist); column ``m`` is
    ``max(0, min((f - f_m) / (f_{m+1} - f_m), (f_{m+2} - f) / (f_{m+2} - f_{m+1})))``
    at the bin frequencies ``f = k * sample_rate / n_fft``, times ``2 / (f_{m+2} - f_m)``.
    A filter narrower than the bin spacing may hold no bin and be all zero, as in librosa.
    """
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else fmax
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"n_mels={n_mels} must be at least 1 and n_fft={n_fft} at least 2")
    if not 0.0 <= fmin < fmax <= nyquist:
        raise ValueError(f"need 0 <= fmin < fmax <= Nyquist ({nyquist:g} Hz of sample_rate={sample_rate:g}); "
                         f"got fmin={fmin:g}, fmax={fmax:g}")
    mels = torch.linspace(hz_to_slaney_mel(float(fmin)), hz_to_slaney_mel(float(fmax)), n_mels + 2,
                          dtype=torch.float64)
    edges = slaney_mel_to_hz(mels)  # [n_mels + 2]
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)  # [n_freq]
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [n_mels, 1]
    rise = (freqs - lower) / (centre - lower)
    fall = (upper - freqs) / (upper - centre)
    weights = torch.clamp(torch.minimum(rise, fall), min=0.0) * (2.0 / (upper - lower))
    return weights.T.contiguous()


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT of ``num_samples`` samples: ``1 + num_samples // hop_length``."""
    return 1 + num_samples // hop_length


def frame_index(frames: int, n_fft: int, hop_length: int, length, device=None) -> torch.Tensor:
    """``[frames, n_fft]`` sample indices of centred frames of a clip of ``length`` samples.

    Frame ``t`` reads samples ``t * hop - n_fft // 2 .. + n_fft - 1``; indices outside
    ``[0, length)`` are reflected about the ends without repeating the edge sample
    (``-1 -> 1``, ``length -> length - 2``), as often as needed: indices run modulo
    ``2 (length - 1)``. ``length`` may be a symbolic size (``torch.export``) of at
    least 2; a clip of one sample reads that sample everywhere.
    """
    idx = (torch.arange(frames, device=device)[:, None] * hop_length
           + torch.arange(n_fft, device=device)[None, :] - n_fft // 2)
    if isinstance(length, int) and length == 1:
        return torch.zeros_like(idx)
    if not isinstance(length, int):  # a symbolic size: as a tensor, which the ONNX exporter takes
        length = torch.scalar_tensor(length, dtype=idx.dtype, device=idx.device)
    period = 2 * (length - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= length, period - idx, idx)


@tensor_cache(32)
def _constants(sample_rate: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None,
               device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The periodic Hann window ``[n_fft]`` and the mel matrix ``[n_fft // 2 + 1, n_mels]``,
    built once per setting, device and dtype."""
    i = torch.arange(n_fft, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * i / n_fft)
    mel = slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return window.to(device=device, dtype=dtype), mel.to(device=device, dtype=dtype)


def power_to_db(power: torch.Tensor, *, ref: float = 1.0, amin: float = AMIN,
                top_db: float | None = None) -> torch.Tensor:
    """``10 log10(max(power, amin)) - 10 log10(max(amin, ref))`` of ``[..., frames, bins]``;
    with ``top_db``, floored at each clip's maximum minus ``top_db``."""
    if amin <= 0:
        raise ValueError(f"amin={amin} must be positive")
    if ref <= 0:
        raise ValueError(f"ref={ref} must be positive")
    db = 10.0 * torch.log10(power.clamp_min(amin)) - 10.0 * math.log10(max(amin, ref))
    if top_db is not None:
        if top_db < 0:
            raise ValueError(f"top_db={top_db} must be non-negative")
        peak = db.amax(dim=(-2, -1), keepdim=True) if db.dim() >= 2 else db.amax()
        db = torch.maximum(db, peak - top_db)
    return db


def slaney_logmel(
    waveform: torch.Tensor,
    sample_rate: float = 32000,
    *,
    n_fft: int = 1024,
    hop_length: int = 320,
    n_mels: int = 64,
    fmin: float = 50.0,
    fmax: float | None = 14000.0,
    ref: float = 1.0,
    amin: float = AMIN,
    top_db: float | None = None,
    frames: int | None = None,
    length=None,
) -> torch.Tensor:
    """Slaney log-mel (dB) of ``waveform[..., samples]``: ``[..., 1 + samples // hop_length, n_mels]``.

    Defaults are HTS-AT's and PANNs' (32 kHz, 1024-point window and FFT, hop 320, 64 bins
    over 50-14,000 Hz, ref 1, amin 1e-10, no top_db); ``fmax=None`` is Nyquist. The
    waveform's scale is kept (floats in [-1, 1], as the models were trained on), and no
    mean is removed (torchlibrosa removes none).

    ``frames`` and ``length`` are for a traced front end (:mod:`flexiast.export`): the
    first ``frames`` frames of a clip whose first ``length`` samples are its audio (the
    rest of ``waveform`` is not read); frames past the clip's own are computed from its
    reflection and are the caller's to discard.
    """
    check_waveform(waveform, sample_rate)
    for name, value, least in (("n_fft", n_fft, 2), ("hop_length", hop_length, 1), ("n_mels", n_mels, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r} must be an integer of at least {least}")
    length = waveform.shape[-1] if length is None else length
    if isinstance(length, int) and length < 1:
        raise ValueError("waveform has no samples: a centred STFT needs at least one")
    count = num_frames(length, hop_length) if frames is None else frames

    out_dtype = waveform.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    x = waveform.to(dtype)
    window, mel = _constants(float(sample_rate), n_fft, n_mels, float(fmin),
                             None if fmax is None else float(fmax), x.device, dtype)
    framed = x[..., frame_index(count, n_fft, hop_length, length, x.device)]  # [..., frames, n_fft]
    parts = torch.view_as_real(torch.fft.rfft(framed * window, dim=-1)).square()
    power = parts[..., 0] + parts[..., 1]  # [..., frames, n_fft // 2 + 1]
    return power_to_db(torch.matmul(power, mel), ref=ref, amin=amin, top_db=top_db).to(out_dtype)
