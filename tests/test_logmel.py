"""flexiast.logmel against independent references: torchlibrosa (what HTS-AT and PANNs
compute their features with), librosa's filters and mel spectrogram, NumPy, and values
worked out by hand from Slaney's formulas.

References run in float64; torchlibrosa's filters are librosa's float32 ones, which is
why its dB differ from flexiast's by ~1e-6 rather than ~1e-12.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch
from torchlibrosa.stft import LogmelFilterBank, Spectrogram

from flexiast.audio import load_audio
from flexiast.logmel import (frame_index, hz_to_slaney_mel, num_frames, slaney_logmel, slaney_mel_filterbank,
                             slaney_mel_to_hz)

#: (sample_rate, n_fft, hop, n_mels, fmin, fmax): HTS-AT / PANNs at 32 kHz, HTS-AT's Speech Commands at 16 kHz.
HTSAT = (32000, 1024, 320, 64, 50.0, 14000.0)
SPEECH_COMMANDS = (16000, 512, 160, 64, 50.0, 8000.0)
DB_TOLERANCE = 1e-4
#: Real FSDD speech (8 kHz recordings, read at the front end's rate by flexiast.audio).
CLIPS = ("0_jackson_0.wav", "3_theo_12.wav", "7_nicolas_40.wav", "9_yweweler_5.wav")


def _kw(setting) -> dict:
    sr, n_fft, hop, n_mels, fmin, fmax = setting
    return dict(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=fmin, fmax=fmax)


def _torchlibrosa(wave: torch.Tensor, setting, *, float64_weights: bool = True) -> torch.Tensor:
    """torchlibrosa's Spectrogram + LogmelFilterBank as HTS-AT builds them, run in float64: ``[batch, frames, mels]``.

    torchlibrosa stores its DFT kernels and mel filters as float32 (``torch.Tensor(...)``,
    librosa's float32 filters), which limits it to ~1e-7 of each frame's loudest bin: a
    band 70 dB down is then off by ~1e-3 dB. With ``float64_weights`` they are made again
    as torchlibrosa makes them (its ``dft_matrix``, librosa's window and filters), in
    float64, so the reference is exact to float64.
    """
    sr, n_fft, hop, n_mels, fmin, fmax = setting
    spec = Spectrogram(n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True,
                       pad_mode="reflect", freeze_parameters=True).double()
    mel = LogmelFilterBank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, ref=1.0, amin=1e-10,
                           top_db=None, freeze_parameters=True).double()
    if float64_weights:
        stft = spec.stft
        window = librosa.filters.get_window("hann", n_fft, fftbins=True)
        kernel = stft.dft_matrix(n_fft)[:, : n_fft // 2 + 1] * window[:, None]  # complex128, as torchlibrosa
        stft.conv_real.weight.data = torch.from_numpy(np.real(kernel).T.copy())[:, None, :]
        stft.conv_imag.weight.data = torch.from_numpy(np.imag(kernel).T.copy())[:, None, :]
        mel.melW.data = torch.from_numpy(_librosa_filters(setting).T.copy())
    with torch.no_grad():
        return mel(spec(wave.double().reshape(-1, wave.shape[-1])))[:, 0]


def _librosa_filters(setting) -> np.ndarray:
    sr, n_fft, _, n_mels, fmin, fmax = setting
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney",
                               dtype=np.float64)


@pytest.fixture(scope="module")
def measured() -> dict:
    """Largest dB differences measured, printed at the end of the module (pytest -s)."""
    found: dict = {}
    yield found
    print("\nlargest |flexiast - reference| in dB:", {k: f"{v:.2e}" for k, v in found.items()})


# -- Slaney's mel scale and filters ---------------------------------------------------

def test_slaney_mel_scale_by_hand():
    """Linear at 200/3 Hz per mel to 1000 Hz (mel 15), then ln(6.4)/27 per mel: 6400 Hz is 15 + 27."""
    assert hz_to_slaney_mel(1000.0) == pytest.approx(15.0, abs=1e-12)
    assert hz_to_slaney_mel(6400.0) == pytest.approx(42.0, abs=1e-12)
    assert hz_to_slaney_mel(500.0) == pytest.approx(7.5, abs=1e-12)
    assert hz_to_slaney_mel(12800.0) == pytest.approx(42.0 + 27 * math.log(2) / math.log(6.4))
    assert slaney_mel_to_hz(42.0) == pytest.approx(6400.0, rel=1e-12)
    freqs = torch.tensor([0.0, 50.0, 999.0, 1000.0, 1001.0, 6400.0, 14000.0, 16000.0], dtype=torch.float64)
    mels = hz_to_slaney_mel(freqs)
    torch.testing.assert_close(mels, torch.tensor([hz_to_slaney_mel(float(f)) for f in freqs], dtype=torch.float64))
    torch.testing.assert_close(slaney_mel_to_hz(mels), freqs, rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(mels.numpy(), librosa.hz_to_mel(freqs.numpy(), htk=False), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("setting", [HTSAT, SPEECH_COMMANDS, (22050, 2048, 512, 128, 0.0, None),
                                     (32000, 1024, 320, 128, 0.0, 16000.0), (8000, 256, 80, 40, 300.0, 3800.0)],
                         ids=["htsat", "speechcommands", "librosa-defaults", "128-full-band", "8k"])
def test_filters_equal_librosa(setting):
    sr, n_fft, _, n_mels, fmin, fmax = setting
    ours = slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == torch.float64
    ref = _librosa_filters((sr, n_fft, 0, n_mels, fmin, fmax if fmax is not None else sr / 2))
    assert np.abs(ours.numpy().T - ref).max() <= 1e-12 * np.abs(ref).max()


def test_filters_refuse_a_range_beyond_nyquist():
    with pytest.raises(ValueError, match=r"Nyquist \(16000 Hz of sample_rate=32000\); got fmin=50, fmax=20000"):
        slaney_mel_filterbank(32000, 1024, 64, 50.0, 20000.0)


def test_a_sine_at_a_bin_centre_by_hand():
    """1000 Hz at 32 kHz is FFT bin 32 (31.25 Hz bins). With HTS-AT's filters (edges every
    (mel(14000) - mel(50)) / 65 = 0.8098 mel from 0.75), mel 15 lies between the centres of
    filters 16 (14.516) and 17 (15.326): filter 17 is the loudest. A periodic Hann window
    puts amplitude A N / 4 in bin 32 and A N / 8 in bins 31 and 33 (nothing elsewhere), so
    a steady frame's energy in filter m is (A N / 4)^2 (H[32, m] + (H[31, m] + H[33, m]) / 4)."""
    sr, n_fft, hop = 32000, 1024, 320
    amp = 0.5
    t = torch.arange(sr, dtype=torch.float64) / sr
    wave = amp * torch.cos(2 * math.pi * 1000.0 * t + 0.3)
    db = slaney_logmel(wave)
    assert db.shape == (1 + sr // hop, 64)
    steady = db[10:-10]
    assert (steady.argmax(dim=-1) == 17).all()
    H = _librosa_filters(HTSAT).T  # [bins, mels], librosa's, not flexiast's
    energy = (amp * n_fft / 4) ** 2 * (H[32] + (H[31] + H[33]) / 4)
    expected = 10 * np.log10(np.maximum(energy, 1e-10))
    np.testing.assert_allclose(steady.numpy(), np.broadcast_to(expected, steady.shape), rtol=0, atol=1e-6)
    assert expected[17] == pytest.approx(10 * math.log10((amp * n_fft / 4) ** 2 * (H[32, 17] + H[31, 17] / 4
                                                                                     + H[33, 17] / 4)))


# -- parity with torchlibrosa --------------------------------------------------------

@pytest.mark.parametrize("setting", [HTSAT, SPEECH_COMMANDS], ids=["htsat-32k", "speechcommands-16k"])
def test_real_speech_equals_torchlibrosa(setting, fsdd_dir, measured):
    sr = setting[0]
    for name in CLIPS:
        wave = load_audio(fsdd_dir / name, sr).double()
        ours = slaney_logmel(wave, **_kw(setting))
        ref = _torchlibrosa(wave[None], setting)[0]
        assert ours.shape == ref.shape == (num_frames(len(wave), setting[2]), setting[3])
        diff = float((ours - ref).abs().max())
        measured[f"fsdd {sr} Hz"] = max(measured.get(f"fsdd {sr} Hz", 0.0), diff)
        assert diff <= DB_TOLERANCE, name
        shipped = float((ours - _torchlibrosa(wave[None], setting, float64_weights=False)[0]).abs().max())
        measured[f"fsdd {sr} Hz, float32 weights"] = max(measured.get(f"fsdd {sr} Hz, float32 weights", 0.0), shipped)
        assert shipped <= 1e-2, name  # torchlibrosa's own float32 rounding (see _torchlibrosa)


@pytest.mark.parametrize("setting", [HTSAT, SPEECH_COMMANDS], ids=["htsat-32k", "speechcommands-16k"])
def test_noise_batches_equal_torchlibrosa(setting, measured):
    """Seeded noise from -80 dB to full scale, a batch of 3 at once, lengths on and off the hop."""
    sr, _, hop = setting[:3]
    g = torch.Generator().manual_seed(1)
    for length in (sr // 2, 7 * hop, 7 * hop + 1, 7 * hop - 1, 2 * sr + 123):
        level = torch.logspace(-4, 0, 3, dtype=torch.float64)[:, None]
        wave = level * torch.randn(3, length, generator=g, dtype=torch.float64)
        ours = slaney_logmel(wave, **_kw(setting))
        ref = _torchlibrosa(wave, setting)
        assert ours.shape == ref.shape == (3, 1 + length // hop, setting[3])
        diff = float((ours - ref).abs().max())
        measured[f"noise {sr} Hz"] = max(measured.get(f"noise {sr} Hz", 0.0), diff)
        assert diff <= DB_TOLERANCE, length


def test_silence_is_the_floor():
    """All-zero audio is 10 log10(amin) = -100 dB everywhere, as in torchlibrosa."""
    wave = torch.zeros(2, 3200, dtype=torch.float64)
    torch.testing.assert_close(slaney_logmel(wave), torch.full((2, 11, 64), -100.0, dtype=torch.float64))
    torch.testing.assert_close(_torchlibrosa(wave, HTSAT), torch.full((2, 11, 64), -100.0, dtype=torch.float64))


def test_a_clip_shorter_than_half_a_window_is_reflected_as_numpy_pads():
    """torchlibrosa's padding refuses clips of n_fft / 2 samples or fewer; NumPy's reflect
    repeats the reflection, and librosa's filters do the rest: the reference here."""
    g = torch.Generator().manual_seed(2)
    for length in (1, 2, 3, 100, 512, 700):
        wave = 0.1 * torch.randn(length, generator=g, dtype=torch.float64)
        padded = np.pad(wave.numpy(), 512, mode="reflect")
        frames = np.stack([padded[t * 320:t * 320 + 1024] for t in range(1 + length // 320)])
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
        power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
        ref = 10 * np.log10(np.maximum(power @ _librosa_filters(HTSAT).T, 1e-10))
        np.testing.assert_allclose(slaney_logmel(wave).numpy(), ref, rtol=0, atol=1e-9, err_msg=str(length))
    with pytest.raises(ValueError, match="no samples"):
        slaney_logmel(torch.zeros(0))


def test_top_db_floors_each_clip_as_librosa_power_to_db():
    """librosa's melspectrogram (reflect padding) then power_to_db(top_db=30), clip by clip."""
    g = torch.Generator().manual_seed(3)
    wave = torch.randn(2, 16000, generator=g, dtype=torch.float64) * torch.tensor([[1.0], [1e-3]],
                                                                                  dtype=torch.float64)
    wave[:, 4000:9000] *= 1e-4  # a quiet stretch, more than 30 dB down
    ours = slaney_logmel(wave, top_db=30.0)
    for clip in range(2):
        mel = librosa.feature.melspectrogram(y=wave[clip].numpy(), sr=32000, n_fft=1024, hop_length=320,
                                             window="hann", center=True, pad_mode="reflect", power=2.0,
                                             n_mels=64, fmin=50, fmax=14000, htk=False, norm="slaney",
                                             dtype=np.float64)
        ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=30.0).T
        np.testing.assert_allclose(ours[clip].numpy(), ref, rtol=0, atol=1e-6)
        assert ours[clip].min() == pytest.approx(ours[clip].max() - 30.0)


# -- batching, dtypes, gradients -----------------------------------------------------

def test_a_batch_equals_clip_by_clip():
    g = torch.Generator().manual_seed(4)
    wave = torch.randn(2, 3, 9000, generator=g, dtype=torch.float64)
    batched = slaney_logmel(wave)
    assert batched.shape == (2, 3, 1 + 9000 // 320, 64)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(batched[i, j], slaney_logmel(wave[i, j]), rtol=0, atol=1e-10)


def test_dtype_follows_the_input():
    g = torch.Generator().manual_seed(5)
    wave = 0.1 * torch.randn(8000, generator=g, dtype=torch.float64)
    ref = slaney_logmel(wave)
    assert ref.dtype == torch.float64
    single = slaney_logmel(wave.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), ref, rtol=0, atol=1e-3)
    half = slaney_logmel(wave.bfloat16())  # computed in float32, returned in bfloat16
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), slaney_logmel(wave.bfloat16().float()).bfloat16().double())


def test_gradients_flow():
    """gradcheck on a tiny float64 case: 40 samples, 16-point FFT, 4 mel bands."""
    g = torch.Generator().manual_seed(6)
    wave = torch.randn(2, 40, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(sample_rate=1600, n_fft=16, hop_length=4, n_mels=4, fmin=0.0, fmax=800.0)
    assert torch.autograd.gradcheck(lambda w: slaney_logmel(w, **kw), (wave,))


def test_frame_index_reflects_about_the_ends():
    idx = frame_index(3, 8, 4, 6)
    # frame 0: samples -4..3 -> 4 3 2 1 0 1 2 3; frame 2: 4..11 -> 4 5 4 3 2 1 0 1
    assert idx[0].tolist() == [4, 3, 2, 1, 0, 1, 2, 3]
    assert idx[1].tolist() == [0, 1, 2, 3, 4, 5, 4, 3]
    assert idx[2].tolist() == [4, 5, 4, 3, 2, 1, 0, 1]
    assert frame_index(2, 4, 1, 1).eq(0).all()
