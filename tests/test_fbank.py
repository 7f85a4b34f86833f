"""flexiast.fbank against Hugging Face's NumPy AST front end, kaldi-native-fbank, and hand values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from flexiast import fbank, mel_filterbank, num_frames
from flexiast.fbank import KALDI_LOG_FLOOR


def _noise(seconds: float, seed: int, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def _hf_fbank(wave: np.ndarray) -> np.ndarray:
    from transformers import ASTFeatureExtractor
    from transformers.utils import is_speech_available

    assert not is_speech_available(), "reference must be the NumPy path (torchaudio would be torch's own fbank)"
    with warnings.catch_warnings():  # its own note that some of AST's 128 filters are empty
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        extractor = ASTFeatureExtractor(num_mel_bins=128, do_normalize=False)
    return extractor._extract_fbank_features(wave, max_length=num_frames(len(wave)))


def _knf_fbank(wave: np.ndarray, **opts) -> np.ndarray:
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = 16000
    o.frame_opts.window_type = opts.get("window", "povey")
    o.frame_opts.snip_edges = opts.get("snip_edges", True)
    o.frame_opts.frame_shift_ms = opts.get("frame_shift_ms", 10.0)
    o.mel_opts.num_bins = opts.get("num_mel_bins", 80)
    o.use_energy = opts.get("use_energy", False)
    o.htk_compat = opts.get("htk_compat", False)
    computer = knf.OnlineFbank(o)
    computer.accept_waveform(16000, wave.tolist())
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


def test_matches_hugging_face_ast_extractor_on_real_speech(fsdd_clips_16k):
    for wave in fsdd_clips_16k:
        ours = fbank(torch.from_numpy(wave)).numpy()
        ref = _hf_fbank(wave)
        assert ours.shape == ref.shape == (num_frames(len(wave)), 128)
        np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_matches_hugging_face_ast_extractor_on_noise():
    wave = _noise(3.0, seed=1)
    np.testing.assert_allclose(fbank(torch.from_numpy(wave)).numpy(), _hf_fbank(wave), atol=1e-3, rtol=0)


@pytest.mark.parametrize("window", ["povey", "hanning", "hamming", "rectangular"])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_matches_kaldi_native_fbank_at_80_bins(fsdd_clips_16k, window, snip_edges):
    for wave in (fsdd_clips_16k[0], fsdd_clips_16k[3], _noise(1.3, seed=2)):
        ours = fbank(torch.from_numpy(wave), num_mel_bins=80, window=window, snip_edges=snip_edges).numpy()
        ref = _knf_fbank(wave, window=window, snip_edges=snip_edges)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("samples", [80, 81, 119, 125, 139, 300])
def test_clips_shorter_than_the_reflection_match_kaldi_native_fbank(samples):
    """snip_edges=False reflects a clip as often as a frame needs (Kaldi's ExtractWindow)."""
    wave = _noise(1.0, seed=samples)[:samples]
    ours = fbank(torch.from_numpy(wave), num_mel_bins=80, window="povey", snip_edges=False).numpy()
    ref = _knf_fbank(wave, snip_edges=False)
    assert ours.shape == ref.shape == (num_frames(samples, snip_edges=False), 80)
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("htk_compat", [False, True])
def test_energy_column_matches_kaldi_native_fbank(fsdd_clips_16k, htk_compat):
    wave = fsdd_clips_16k[1]
    ours = fbank(torch.from_numpy(wave), num_mel_bins=80, window="povey", use_energy=True,
                 htk_compat=htk_compat).numpy()
    ref = _knf_fbank(wave, use_energy=True, htk_compat=htk_compat)
    assert ours.shape == ref.shape == (num_frames(len(wave)), 81)
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_fshift_matches_kaldi_native_fbank_with_a_longer_shift(fsdd_clips_16k):
    """Coarse-to-fine's Fshift C=4: the same features Kaldi computes with a 40 ms shift."""
    wave = fsdd_clips_16k[2]
    ours = fbank(torch.from_numpy(wave), num_mel_bins=80, window="povey", frame_shift_ms=40.0).numpy()
    ref = _knf_fbank(wave, frame_shift_ms=40.0)
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    assert ours.shape[0] == 1 + (len(wave) - 400) // 640


def test_batched_equals_unbatched():
    waves = torch.from_numpy(np.stack([_noise(1.0, seed=s) for s in range(6)])).reshape(2, 3, -1)
    batched = fbank(waves)
    assert batched.shape == (2, 3, 98, 128)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(batched[i, j], fbank(waves[i, j]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("opts", [{}, {"use_energy": True, "snip_edges": False, "window": "povey"},
                                  {"dither": 1e-3, "frame_shift_ms": 20.0}])
def test_one_pass_equals_chunked(opts):
    """``chunked=False`` (one pass over all frames, what torch.export traces) gives the same features."""
    waves = torch.from_numpy(np.stack([_noise(1.0, seed=s) for s in range(3)]))
    chunked = fbank(waves, generator=torch.Generator().manual_seed(1), **opts)
    one_pass = fbank(waves, generator=torch.Generator().manual_seed(1), chunked=False, **opts)
    torch.testing.assert_close(one_pass, chunked, atol=1e-5, rtol=0)


def test_frame_counts_by_hand():
    assert fbank(torch.zeros(16000)).shape == (98, 128)  # 1 + (16000 - 400) // 160
    assert fbank(torch.zeros(16000), frame_shift_ms=20.0).shape == (49, 128)  # 1 + 15600 // 320
    assert fbank(torch.zeros(399)).shape == (0, 128)  # shorter than one 25 ms window
    assert fbank(torch.zeros(16000), snip_edges=False).shape == (100, 128)  # (16000 + 80) // 160
    assert num_frames(160000) == 998


def test_constant_signal_hits_the_log_floor():
    """DC removal leaves nothing of a constant, so every energy is Kaldi's floor."""
    out = fbank(torch.full((4000,), 0.3))
    torch.testing.assert_close(out, torch.full_like(out, math.log(KALDI_LOG_FLOOR)))


def test_sine_energy_lands_in_the_mel_bin_covering_its_frequency():
    freq = 1000.0
    t = torch.arange(16000, dtype=torch.float64) / 16000
    out = fbank(torch.sin(2 * math.pi * freq * t), num_mel_bins=40)
    mel = lambda f: 1127 * math.log1p(f / 700)  # noqa: E731
    delta = (mel(8000) - mel(20)) / 41
    centre_bin = round((mel(freq) - mel(20)) / delta) - 1  # filter m is centred at mel_lo + (m + 1) delta
    assert int(out.mean(0).argmax()) == centre_bin


def test_mel_filterbank_shape_and_triangles():
    bank = mel_filterbank(128, 512, 16000)
    assert bank.shape == (257, 128)
    assert torch.all(bank[-1] == 0)  # Kaldi gives the Nyquist bin no weight
    assert float(bank.max()) <= 1.0 and float(bank.min()) >= 0.0


def test_float64_and_gradients():
    wave = torch.from_numpy(_noise(0.05, seed=3).astype(np.float64)).requires_grad_()
    assert fbank(wave).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda w: fbank(w, num_mel_bins=12), (wave,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("kwargs,message", [
    (dict(window="hann"), "window="),
    (dict(preemphasis=1.5), "preemphasis"),
    (dict(frame_shift_ms=0.01), "frame_shift_ms"),
    (dict(low_freq=9000.0), "low_freq"),
    (dict(num_mel_bins=0), "num_mel_bins"),
    (dict(sample_rate=0), "sample_rate"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fbank(torch.zeros(1000), **kwargs)


def test_integer_audio_is_refused_with_a_hint():
    with pytest.raises(TypeError, match="floating point"):
        fbank(torch.zeros(1000, dtype=torch.int16))


def test_constants_first_built_in_inference_mode_still_support_gradients():
    with torch.inference_mode():
        fbank(torch.randn(800), num_mel_bins=17)
    wave = torch.randn(800, requires_grad=True)
    fbank(wave, num_mel_bins=17).sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()
