"""Decoding and resampling: real formats, sine frequency and level, bad files named."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast import fbank
from flexiast.audio import AudioError, load_audio


def _sine(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("rate,subtype", [(8000, "PCM_16"), (44100, "PCM_24"), (48000, "FLOAT"), (22050, "PCM_U8")])
def test_resampling_keeps_frequency_and_level(tmp_path, rate, subtype):
    path = tmp_path / f"sine_{rate}.wav"
    sf.write(path, _sine(rate, 1.0), rate, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and abs(wave.numel() - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave.numpy()[1000:-1000] * np.hanning(wave.numel() - 2000)))
    peak_hz = spectrum.argmax() * 16000 / (wave.numel() - 2000)
    assert abs(peak_hz - 1000) < 2
    rms = float(wave[1000:-1000].pow(2).mean().sqrt())
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.01 * 0.5 / np.sqrt(2) + (0.01 if subtype == "PCM_U8" else 0)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_same_frames_per_second_at_any_rate(tmp_path, rate):
    sf.write(tmp_path / "x.wav", _sine(rate, 2.0), rate)
    assert fbank(load_audio(tmp_path / "x.wav")).shape[0] == 1 + (32000 - 400) // 160


def test_six_channels_48k_mix_to_mono(tmp_path):
    x = _sine(48000, 0.5, channels=6)
    x[:, 3] = 0.0
    sf.write(tmp_path / "six.wav", x, 48000, subtype="PCM_24")
    wave = load_audio(tmp_path / "six.wav")
    assert wave.shape == (8000,)
    np.testing.assert_allclose(float(wave.abs().max()), 0.5 * 5 / 6, rtol=0.02)


def test_flac_ogg_and_mp3_decode(tmp_path):
    for ext in ("flac", "ogg", "mp3"):
        sf.write(tmp_path / f"a.{ext}", _sine(16000, 0.5), 16000)
        wave = load_audio(tmp_path / f"a.{ext}")
        assert abs(wave.numel() - 8000) <= 1152  # MP3 frames pad the end
        assert 0.4 < float(wave.abs().max()) < 0.6


def test_ten_minute_file(tmp_path):
    sf.write(tmp_path / "long.wav", _sine(8000, 600.0, amp=0.2), 8000)
    wave = load_audio(tmp_path / "long.wav")
    assert wave.numel() == 600 * 16000
    assert fbank(wave[:16000 * 30]).shape == (2998, 128)


def test_silence_and_one_sample_work(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(16000), 16000)
    assert float(load_audio(tmp_path / "silence.wav").abs().max()) == 0.0
    sf.write(tmp_path / "one.wav", np.array([0.1]), 16000)
    assert load_audio(tmp_path / "one.wav").numel() == 1


@pytest.mark.parametrize("make,reason", [
    (lambda p: p.write_bytes(b""), "cannot decode"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "cannot decode"),
    (lambda p: sf.write(p, np.zeros(0), 16000), "no samples"),
    (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2]), 16000, subtype="FLOAT"), "NaN or Inf"),
    (lambda p: sf.write(p, np.array([0.1, np.inf]), 16000, subtype="FLOAT"), "NaN or Inf"),
])
def test_bad_files_are_named(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=rf"bad\.wav: .*{reason}"):
        load_audio(path)


def test_truncated_header_and_missing_file(tmp_path):
    sf.write(tmp_path / "ok.wav", _sine(16000, 0.5), 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:30])
    with pytest.raises(AudioError, match="cut.wav"):
        load_audio(tmp_path / "cut.wav")
    with pytest.raises(AudioError, match="gone.wav: no such file"):
        load_audio(tmp_path / "gone.wav")
