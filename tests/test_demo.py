"""``flexiast demo``: the procedural classes have the structure the docstring promises, and the
whole pipeline (data, two trainings, PI/BL profiles, report, figure) runs and reports its own files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import yaml

from flexiast import PATCH_SIZES
from flexiast.cli import main
from flexiast.data import read_manifest
from flexiast.demo import CLASSES, SAMPLE_RATE, make_dataset, synth_clip


def _clip(name: str, i: int = 0) -> np.ndarray:
    return synth_clip(CLASSES.index(name), np.random.default_rng([7, i]))


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)[spec.argmax()])


def _active(x: np.ndarray, frame: int = 160) -> np.ndarray:
    """Frame energies (10 ms), normalised."""
    e = (x[: x.size // frame * frame].reshape(-1, frame) ** 2).mean(1)
    return e / e.max()


def _dominant_over_time(x: np.ndarray) -> list[float]:
    """Peak frequency of each 40 ms frame where the clip is loud (top third of frames by energy)."""
    frame = 640
    frames = x[: x.size // frame * frame].reshape(-1, frame)
    energy = (frames ** 2).mean(1)
    loud = energy > np.quantile(energy, 0.66)
    return [_peak_hz(f) for f, keep in zip(frames, loud) if keep]


def _modulation_hz(x: np.ndarray) -> float:
    """Rate of the amplitude envelope (rectified, 2 ms frames), from its spectrum between 2 and 40 Hz."""
    frame = 32
    env = np.abs(x[: x.size // frame * frame]).reshape(-1, frame).mean(1)
    loud = env > 0.25 * env.max()
    idx = np.flatnonzero(loud)
    seg = env[idx[0]: idx[-1] + 1]
    seg = seg - seg.mean()
    n = 8 * seg.size  # zero-padded for resolution
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n))
    freqs = np.fft.rfftfreq(n, frame / SAMPLE_RATE)
    band = (freqs > 2) & (freqs < 40)
    return float(freqs[band][spec[band].argmax()])


@pytest.mark.parametrize("i", range(5))
def test_sweeps_rise_and_fall(i):
    up, down = _dominant_over_time(_clip("rising_sweep", i)), _dominant_over_time(_clip("falling_sweep", i))
    assert up[-1] > 1.8 * up[0] and down[0] > 1.8 * down[-1]


@pytest.mark.parametrize("i", range(5))
def test_pulses_and_tremolo_differ_in_modulation_rate(i):
    assert 3.5 <= _modulation_hz(_clip("tone_pulses", i)) <= 8.5
    assert 11 <= _modulation_hz(_clip("tremolo_tone", i)) <= 21


def test_harmonic_stack_has_peaks_at_multiples_of_its_fundamental():
    x = _clip("harmonic_stack")
    spec = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    low = (freqs > 100) & (freqs < 500)
    f0 = freqs[low][spec[low].argmax()]
    for k in (2, 3):
        near = np.abs(freqs - k * f0) < 8
        assert spec[near].max() > 5 * np.median(spec)  # a peak at k * f0


def test_noise_band_energy_is_inside_its_band_and_bursts_are_short():
    x = _clip("noise_band")
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    centre = freqs[np.argmax(np.convolve(spec, np.ones(200), "same"))]
    inside = (freqs > centre / 1.45) & (freqs < centre * 1.45)
    assert spec[inside].sum() > 0.8 * spec.sum()  # 10-30 dB SNR of white noise is spread over 8 kHz
    loud = _active(_clip("noise_bursts")) > 0.2
    assert 0.05 < loud.mean() < 0.4  # 3-5 bursts of 30-60 ms in 0.96 s


def test_clips_are_deterministic_bounded_and_seeded():
    a, b = _clip("vibrato_tone", 3), _clip("vibrato_tone", 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _clip("vibrato_tone", 4))
    for name in CLASSES:
        x = _clip(name)
        assert x.dtype == np.float32 and x.size == int(0.96 * SAMPLE_RATE) and np.abs(x).max() <= 0.9 + 1e-6
        assert np.isfinite(x).all() and np.abs(x).max() > 1e-3


def test_dataset_layout_is_the_folder_reader_s(tmp_path):
    counts = make_dataset(tmp_path, train_per_class=3, test_per_class=2, seed=1)
    assert counts == {"train": 24, "test": 16}
    train, test = read_manifest("folder", root=tmp_path, split="train"), read_manifest("folder", root=tmp_path,
                                                                                      split="test")
    assert train.classes == test.classes == sorted(CLASSES) and len(train) == 24 and len(test) == 16
    audio, rate = sf.read(tmp_path / "train" / "tremolo_tone" / "0002.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    ref = synth_clip(CLASSES.index("tremolo_tone"), np.random.default_rng([1, 0, CLASSES.index("tremolo_tone"), 2]))
    np.testing.assert_allclose(audio, ref, atol=1 / 32768)  # 16-bit PCM of the documented draw


def test_demo_end_to_end_writes_report_figure_and_profiles(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--train-per-class", "5", "--test-per-class", "2"]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert str(out / "report.md") in printed and str(out / "patch_sizes.png") in printed
    assert (out / "patch_sizes.png").stat().st_size > 10_000
    for key in ("flexiast-pi", "flexiast-bl", "ast16-pi", "ast16-bl"):
        prof = json.loads((out / "eval" / key / "profile.json").read_text())
        assert [r["size"] for r in prof["rows"]] == list(PATCH_SIZES) and prof["clips"] == 16
    # The report's table is the profiles' numbers: each row's accuracies, in column order.
    cols = [("flexiast", "pi"), ("flexiast", "bl"), ("ast16", "pi"), ("ast16", "bl")]
    profiles = [json.loads((out / "eval" / f"{m}-{r}" / "profile.json").read_text()) for m, r in cols]
    rows = [line for line in report.splitlines() if re.match(r"\| \d+x\d+ \|", line)]
    assert len(rows) == len(PATCH_SIZES)
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert [float(c) for c in cells[3:]] == [round(p["rows"][i]["accuracy"], 3) for p in profiles]
    # Both models continue the one shared start, with the same recipe but for the patch sizes.
    shared, ast, flexi = (yaml.safe_load((out / "recipes" / f"{k}.yaml").read_text())
                          for k in ("shared", "ast16", "flexiast"))
    assert [p["patch"] for p in shared["phases"] + ast["phases"]] == [{"sampler": "fixed", "sizes": [16]}] * 2
    assert [p["patch"] for p in flexi["phases"]] == [{"sampler": "uniform", "sizes": list(PATCH_SIZES)}]
    assert ast["init"] == flexi["init"] == {"path": str(out / "runs" / "shared" / "last.pt")}
    assert "init" not in shared
    assert shared["phases"][0]["epochs"] + ast["phases"][0]["epochs"] == 2
    assert ast["phases"][0]["epochs"] == flexi["phases"][0]["epochs"]
    for r in (ast, flexi):
        for key in ("name", "out", "train", "phases"):
            r.pop(key)
    assert ast == flexi
    # One line per epoch, with the time left; the precision and why.
    assert len(re.findall(r"epoch +1/1: .* about .* left in this training", printed)) == 3
    assert "training on cpu in " in printed and "auto: " in printed
    assert main(["demo", "--out", str(out), "--epochs", "2"]) == 2  # never trains over an earlier demo
    assert f"{out} already holds a demo" in capsys.readouterr().err
