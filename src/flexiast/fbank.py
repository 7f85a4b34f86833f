"""Kaldi-compatible log-mel filterbank features, in PyTorch.

This is the front end of AST (Gong et al., Interspeech 2021, Sec. 2.1), which calls
``torchaudio.compliance.kaldi.fbank`` with 128 mel bins, a 25 ms Hanning window and a
10 ms shift. torchaudio is not a dependency of flexiast, so the algorithm is written
here, following Kaldi's ``FbankComputer`` step by step. For each frame ``x`` of
``W = sample_rate * frame_length_ms / 1000`` samples taken every
``S = sample_rate * frame_shift_ms / 1000`` samples:

1. dither: ``x += dither * N(0, 1)`` (off by default, as AST);
2. DC removal: ``x -= mean(x)``;
3. pre-emphasis: ``x[i] -= k * x[i-1]`` for ``i > 0`` and ``x[0] -= k * x[0]``;
4. window: ``x *= w`` (Kaldi's "hanning" is the symmetric Hann window
   ``0.5 - 0.5 cos(2 pi i / (W - 1))``);
5. zero-pad to ``N`` (the next power of two) and take ``|FFT(x)|^2``;
6. mel energies ``E_m = sum_k |X_k|^2 H_m(k)`` with triangles ``H_m`` that are linear in
   Kaldi's mel scale ``mel(f) = 1127 ln(1 + f / 700)``, their edges evenly spaced in mel
   between ``low_freq`` and ``high_freq``; the Nyquist bin gets no weight;
7. ``log(max(E_m, eps))`` with ``eps = 1.1920929e-07`` (float32 machine epsilon).

Batched over any leading dimensions, runs on any device, and differentiable. Two
choices make it fast on CPU (``benchmarks/bench_fbank.py``): the power spectrum is
``re^2 + im^2`` of two strided views, since a sum over the size-2 axis was several
times slower; and the mel product uses, for each group of adjacent filters, only the FFT
bins they touch, about a quarter of the dense product. Together with working clip by
clip they made a batch of 10 s clips about 5x faster than whole-batch dense steps. The
coarse-to-fine paper's *Fshift* compression (Feng et al., ICASSP 2024, Sec. 2.3) is this
function with ``frame_shift_ms`` multiplied by the compression factor C.
"""

from __future__ import annotations

import math
import torch

from ._caching import tensor_cache

__all__ = ["fbank", "mel_filterbank", "num_frames", "check_waveform", "KALDI_LOG_FLOOR"]

#: Kaldi's floor for the log of mel energies (``std::numeric_limits<float>::epsilon()``).
KALDI_LOG_FLOOR = float(torch.finfo(torch.float32).eps)

WINDOWS = ("hanning", "hamming", "povey", "rectangular", "blackman")


def _mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


def check_waveform(waveform, sample_rate: float) -> None:
    """Refuse what no front end can read: a non-tensor, integer samples, a scalar, a rate <= 0."""
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise TypeError(f"waveform must be floating point, got {waveform.dtype}; "
                        "convert integer PCM with waveform.float() / 32768")
    if waveform.dim() < 1:
        raise ValueError("waveform must have a samples dimension, got a scalar")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate} must be positive")


def _frame_sizes(sample_rate: float, frame_length_ms: float, frame_shift_ms: float,
                 round_to_power_of_two: bool) -> tuple[int, int, int]:
    """Window length W, shift S and FFT size N in samples, truncated as Kaldi does."""
    window = int(sample_rate * 0.001 * frame_length_ms)
    shift = int(sample_rate * 0.001 * frame_shift_ms)
    if window < 2:
        raise ValueError(f"frame_length_ms={frame_length_ms} at sample_rate={sample_rate} "
                         f"gives a window of {window} samples; need at least 2")
    if shift < 1:
        raise ValueError(f"frame_shift_ms={frame_shift_ms} at sample_rate={sample_rate} "
                         f"gives a shift of {shift} samples; need at least 1")
    padded = 1 << (window - 1).bit_length() if round_to_power_of_two else window
    return window, shift, padded


def num_frames(num_samples: int, sample_rate: float = 16000, *, frame_length_ms: float = 25.0,
               frame_shift_ms: float = 10.0, snip_edges: bool = True) -> int:
    """Number of frames Kaldi produces for ``num_samples`` samples.

    With ``snip_edges`` only whole windows count: ``1 + (L - W) // S`` (0 if ``L < W``);
    otherwise ``(L + S // 2) // S``.
    """
    window, shift, _ = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms, True)
    if snip_edges:
        return 0 if num_samples < window else 1 + (num_samples - window) // shift
    return (num_samples + shift // 2) // shift


def _window(kind: str, size: int) -> torch.Tensor:
    """Kaldi's analysis windows (``FeatureWindowFunction``), float64."""
    i = torch.arange(size, dtype=torch.float64)
    a = 2 * math.pi / (size - 1)
    if kind == "hanning":
        return 0.5 - 0.5 * torch.cos(a * i)
    if kind == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    if kind == "povey":
        return (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    if kind == "rectangular":
        return torch.ones(size, dtype=torch.float64)
    if kind == "blackman":
        return 0.42 - 0.5 * torch.cos(a * i) + 0.08 * torch.cos(2 * a * i)
    raise ValueError(f"window={kind!r} is not one of {', '.join(WINDOWS)}")


def mel_filterbank(num_mel_bins: int, fft_size: int, sample_rate: float,
                   low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """Kaldi's triangular mel filters as a ``[fft_size // 2 + 1, num_mel_bins]`` matrix.

    Filter ``m`` rises linearly in mel from ``mel_lo + m * d`` to ``mel_lo + (m + 1) * d``
    and falls to ``mel_lo + (m + 2) * d``, ``d = (mel_hi - mel_lo) / (num_mel_bins + 1)``,
    evaluated at the FFT bin centres ``k * sample_rate / fft_size`` for
    ``k < fft_size / 2``; the last (Nyquist) row is zero, as in Kaldi. A
    non-positive ``high_freq`` counts down from Nyquist (Kaldi's convention).
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins={num_mel_bins} must be at least 1")
    nyquist = 0.5 * sample_rate
    high = high_freq + nyquist if high_freq <= 0.0 else high_freq
    if not (0.0 <= low_freq < nyquist) or not (low_freq < high <= nyquist):
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist:g} Hz); got "
                         f"low_freq={low_freq}, high_freq={high_freq} (resolved to {high:g})")
    mel_lo, mel_hi = _mel(low_freq), _mel(high)
    delta = (mel_hi - mel_lo) / (num_mel_bins + 1)
    m = torch.arange(num_mel_bins, dtype=torch.float64).unsqueeze(1)
    left, centre, right = mel_lo + m * delta, mel_lo + (m + 1) * delta, mel_lo + (m + 2) * delta
    bins_mel = _mel(torch.arange(fft_size // 2, dtype=torch.float64) * (sample_rate / fft_size))
    up = (bins_mel - left) / (centre - left)
    down = (right - bins_mel) / (right - centre)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    nyquist_row = torch.zeros(num_mel_bins, 1, dtype=torch.float64)
    return torch.cat([weights, nyquist_row], dim=1).T.contiguous()


@tensor_cache(64)
def _constants(window: str, window_size: int, num_mel_bins: int, fft_size: int,
               sample_rate: float, low_freq: float, high_freq: float,
               device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, list]:
    """Window and mel blocks, built once per setting, device and dtype.

    The mel matrix is almost all zeros (each FFT bin feeds at most two filters). It is
    cut into up to four groups of adjacent filters, each kept with only the FFT bins
    its filters touch: ``(first bin, last bin + 1, weights)``. The product with the
    blocks is the product with the whole matrix at about a quarter of the work.
    """
    win = _window(window, window_size).to(device=device, dtype=dtype)
    mel = mel_filterbank(num_mel_bins, fft_size, sample_rate, low_freq, high_freq)
    groups = max(1, min(4, num_mel_bins // 16))
    blocks = []
    for g in range(groups):
        cols = mel[:, g * num_mel_bins // groups:(g + 1) * num_mel_bins // groups]
        used = cols.ne(0).any(dim=1).nonzero()
        lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        blocks.append((lo, hi, cols[lo:hi].to(device=device, dtype=dtype).contiguous()))
    return win, blocks


def _frames(x: torch.Tensor, window: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """Cut ``[..., L]`` into ``[..., frames, W]`` as Kaldi's ``ExtractWindow`` does."""
    length = x.shape[-1]
    if snip_edges:
        if length < window:
            return x.new_zeros(*x.shape[:-1], 0, window)
        return x.unfold(-1, window, shift)
    count = (length + shift // 2) // shift
    if count == 0:
        return x.new_zeros(*x.shape[:-1], 0, window)
    # Kaldi's FirstSampleOfFrame: frame i starts at i * S + S // 2 - W // 2, so it is centred
    # on i * S + S / 2; samples outside [0, L) are read by reflection (-1 -> 0, L -> L - 1),
    # repeated as often as a clip shorter than the padding needs (ExtractWindow).
    start = shift // 2 - window // 2
    idx = torch.arange(start, start + (count - 1) * shift + window, device=x.device).remainder(2 * length)
    idx = torch.where(idx >= length, 2 * length - 1 - idx, idx)
    return x[..., idx].unfold(-1, window, shift)


def fbank(
    waveform: torch.Tensor,
    sample_rate: float = 16000,
    *,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window: str = "hanning",
    dither: float = 0.0,
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    use_power: bool = True,
    use_log_fbank: bool = True,
    use_energy: bool = False,
    raw_energy: bool = True,
    energy_floor: float = 0.0,
    htk_compat: bool = False,
    generator: torch.Generator | None = None,
    chunked: bool = True,
) -> torch.Tensor:
    """Kaldi ``compute-fbank-feats`` on ``waveform[..., samples]``.

    Defaults are AST's settings (128 bins, 25 ms Hanning window, 10 ms shift, no dither)
    with Kaldi's defaults elsewhere. The waveform's scale is kept as given: AST feeds
    floats in [-1, 1]. Returns ``[..., frames, num_mel_bins]`` (one more column, the log
    energy, with ``use_energy``: last with ``htk_compat``, else first), in the input's
    dtype (float32 or float64; other floating types are computed in float32). With
    ``snip_edges`` a clip shorter than one window gives zero frames; without, a clip gives
    ``round(samples / shift)`` frames however short (Kaldi reflects it as often as needed).

    ``chunked=False`` computes steps 1-7 for every frame of every clip in one pass, with
    no Python loop over the clips or the frames, so that ``torch.export`` can trace it
    with a symbolic batch (:mod:`flexiast.export`); it gives the same features with more
    memory at once. It needs at least one frame (the traced graph has no empty branch).
    """
    check_waveform(waveform, sample_rate)
    if window not in WINDOWS:
        raise ValueError(f"window={window!r} is not one of {', '.join(WINDOWS)}")
    if not 0.0 <= preemphasis <= 1.0:
        raise ValueError(f"preemphasis={preemphasis} must lie in [0, 1]")
    if dither < 0:
        raise ValueError(f"dither={dither} must be non-negative")
    win_len, shift, fft_size = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms,
                                            round_to_power_of_two)

    out_dtype = waveform.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    x = waveform.to(dtype)
    win, mel_blocks = _constants(window, win_len, num_mel_bins, fft_size, float(sample_rate),
                                 float(low_freq), float(high_freq), x.device, dtype)

    frames = _frames(x, win_len, shift, snip_edges)
    if chunked and frames.numel() == 0:  # no frames, or an empty batch
        width = num_mel_bins + (1 if use_energy else 0)
        return x.new_zeros(*frames.shape[:-1], width).to(out_dtype)
    noise = None
    if dither != 0.0:
        noise = torch.randn(frames.shape, generator=generator, dtype=dtype, device="cpu").to(frames.device)
    steps = dict(noise=noise, dither=dither, remove_dc_offset=remove_dc_offset, preemphasis=preemphasis,
                 win=win, fft_size=fft_size, use_power=use_power, use_energy=use_energy, raw_energy=raw_energy,
                 energy_floor=energy_floor)
    lead, count = frames.shape[:-2], frames.shape[-2]
    frames = frames.reshape(-1, count, win_len)  # a view for batched contiguous input
    if noise is not None:
        steps["noise"] = noise.reshape(-1, count, win_len)
    if chunked:
        rows = max(1, CHUNK_FLOATS // fft_size)
        feats = frames.new_empty(frames.shape[0], count, num_mel_bins)
        energies = []
        for b in range(frames.shape[0]):
            for i in range(0, count, rows):
                power, energy = _frame_power(frames[b, i:i + rows], b, i, steps)
                col = 0
                for lo, hi, block in mel_blocks:
                    feats[b, i:i + len(power), col:col + block.shape[1]] = torch.matmul(power[:, lo:hi], block)
                    col += block.shape[1]
                energies.append(energy)
    else:
        if noise is not None:
            steps["noise"] = steps["noise"].reshape(1, -1, win_len)
        power, energy = _frame_power(frames.reshape(-1, win_len), 0, 0, steps)
        feats = torch.cat([torch.matmul(power[:, lo:hi], block) for lo, hi, block in mel_blocks], dim=-1)
        feats = feats.reshape(frames.shape[0], count, num_mel_bins)
        energies = [energy]
    if use_log_fbank:
        feats = feats.clamp_min(KALDI_LOG_FLOOR).log()
    if use_energy:
        e = torch.cat(energies).reshape(frames.shape[0], count, 1)
        feats = torch.cat([feats, e] if htk_compat else [e, feats], dim=-1)
    return feats.reshape(*lead, count, feats.shape[-1]).to(out_dtype)


#: Frames go through steps 1-5 a block at a time, at most ``CHUNK_FLOATS / fft_size``
#: frames (1024 for AST's 512-point FFT): the temporaries stay a few MiB however long the
#: recording. The speed does not depend on it (64 frames to a whole 10 s clip timed alike).
CHUNK_FLOATS = 1 << 19


def _frame_power(frames: torch.Tensor, clip: int, first: int, st: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps 1-5 of :func:`fbank` for ``frames[n, W]``, frames ``first..`` of clip ``clip``:
    the power (or magnitude) spectrum ``[n, N / 2 + 1]`` and the log energy if asked for."""
    log_floor = KALDI_LOG_FLOOR
    if st["noise"] is not None:
        frames = frames + st["dither"] * st["noise"][clip, first:first + frames.shape[0]]
    if st["remove_dc_offset"]:
        frames = frames - frames.mean(dim=-1, keepdim=True)

    def log_energy(f: torch.Tensor) -> torch.Tensor:
        e = f.pow(2).sum(dim=-1).clamp_min(log_floor).log()
        if st["energy_floor"] > 0.0:
            e = e.clamp_min(math.log(st["energy_floor"]))
        return e

    energy = log_energy(frames) if st["use_energy"] and st["raw_energy"] else None
    k = st["preemphasis"]
    if k != 0.0:
        frames = frames - k * torch.cat([frames[:, :1], frames[:, :-1]], dim=-1)
    frames = frames * st["win"]
    if st["use_energy"] and not st["raw_energy"]:
        energy = log_energy(frames)
    parts = torch.view_as_real(torch.fft.rfft(frames, n=st["fft_size"], dim=-1)).square()
    power = parts[..., 0] + parts[..., 1]  # a sum over the size-2 axis is several times slower
    return (power if st["use_power"] else power.sqrt()), energy
