"""Decoding and resampling: real formats, sine frequency and level (bad files: test_bad_audio.py)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast import fbank
from flexiast.audio import load_audio

from helpers import sine


@pytest.mark.parametrize("rate,subtype", [(8000, "PCM_16"), (44100, "PCM_24"), (48000, "FLOAT"), (22050, "PCM_U8")])
def test_resampling_keeps_frequency_and_level(tmp_path, rate, subtype):
    path = tmp_path / f"sine_{rate}.wav"
    sf.write(path, sine(rate, 1.0), rate, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and abs(wave.numel() - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave.numpy()[1000:-1000] * np.hanning(wave.numel() - 2000)))
    peak_hz = spectrum.argmax() * 16000 / (wave.numel() - 2000)
    assert abs(peak_hz - 1000) < 2
    rms = float(wave[1000:-1000].pow(2).mean().sqrt())
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.01 * 0.5 / np.sqrt(2) + (0.01 if subtype == "PCM_U8" else 0)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_same_frames_per_second_at_any_rate(tmp_path, rate):
    sf.write(tmp_path / "x.wav", sine(rate, 2.0), rate)
    assert fbank(load_audio(tmp_path / "x.wav")).shape[0] == 1 + (32000 - 400) // 160


def test_flac_ogg_and_mp3_decode(tmp_path):
    for ext in ("flac", "ogg", "mp3"):
        sf.write(tmp_path / f"a.{ext}", sine(16000, 0.5), 16000)
        wave = load_audio(tmp_path / f"a.{ext}")
        assert abs(wave.numel() - 8000) <= 1152  # MP3 frames pad the end
        assert 0.4 < float(wave.abs().max()) < 0.6
