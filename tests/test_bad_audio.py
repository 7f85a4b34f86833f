"""Bad audio, one case at a time: each file either works correctly or fails naming itself.

Every case runs through :func:`flexiast.audio.load_audio`, through the dataset under both
``on_error`` policies, and all of them together through a training run under ``skip``,
which completes and reports what it left out. docs/RELIABILITY.md lists the cases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from flexiast.audio import AudioError, load_audio
from flexiast.cli import main
from flexiast.data import AudioDataset, collate, read_manifest, scan
from flexiast.features import FeatureConfig

from helpers import read_csv, sine, tiny_recipe


def _cut(keep: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        sf.write(path, sine(16000, 1.0), 16000)
        path.write_bytes(path.read_bytes()[:keep])
    return make


def _six_channels(path: Path) -> None:
    x = sine(48000, 0.5, channels=6)
    x[:, 3] = 0.0
    sf.write(path, x, 48000, subtype="PCM_24")


def _check_six_channels(wave: torch.Tensor) -> None:
    assert wave.shape == (8000,)  # 0.5 s at 16 kHz
    np.testing.assert_allclose(float(wave.abs().max()), 0.5 * 5 / 6, rtol=0.02)  # the mean of 5 live channels


def _check_8k(wave: torch.Tensor) -> None:
    assert wave.numel() == 16000
    x = wave.numpy()[1000:-1000]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(spectrum.argmax() * 16000 / len(x) - 1000) < 2


def _check_24_bit(wave: torch.Tensor) -> None:
    np.testing.assert_allclose(wave.numpy(), sine(16000, 0.5, freq=440.0), atol=2.0 ** -23)


ABOVE_FULL_SCALE = np.array([1.5, -2.0, 0.1] * 100, dtype=np.float32)  # kept as written, not clipped


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], None]
    error: str | None = None  # what the error says; None: the file works
    check: Callable[[torch.Tensor], None] | None = None  # what a working file decodes to
    vanish: bool = False  # deleted after the manifest is read, before the clip is
    at_scan: bool = False  # left out by the header scan that precedes training


CASES = {
    "empty file": Case(lambda p: p.write_bytes(b""), "cannot decode audio", at_scan=True),
    "zero samples": Case(lambda p: sf.write(p, np.zeros(0), 16000), "holds no samples", at_scan=True),
    "truncated header": Case(_cut(30), "cannot decode audio", at_scan=True),
    "random bytes named .wav": Case(lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
                                    "cannot decode audio", at_scan=True),
    "NaN samples": Case(lambda p: sf.write(p, np.array([0.1, np.nan, 0.2] * 100), 16000, subtype="FLOAT"),
                        "holds NaN or Inf samples"),
    "Inf samples": Case(lambda p: sf.write(p, np.array([0.1, np.inf, 0.2] * 100), 16000, subtype="FLOAT"),
                        "holds NaN or Inf samples"),
    "samples of 1e30": Case(lambda p: sf.write(p, np.array([1e30, 0.1] * 100), 16000, subtype="DOUBLE"),
                            "samples reach 1e\\+30, far beyond full scale"),
    "vanishes after indexing": Case(lambda p: sf.write(p, sine(16000, 0.5), 16000), "no such file", vanish=True),
    "one sample": Case(lambda p: sf.write(p, np.array([0.2]), 16000),
                       check=lambda w: np.testing.assert_allclose(w.numpy(), [0.2], atol=2.0 ** -15)),
    "silence": Case(lambda p: sf.write(p, np.zeros(16000), 16000),
                    check=lambda w: (w.shape == (16000,) and not w.any()) or pytest.fail(f"{w}")),
    "6 channels at 48 kHz": Case(_six_channels, check=_check_six_channels),
    "8 kHz": Case(lambda p: sf.write(p, sine(8000, 1.0), 8000), check=_check_8k),
    "24-bit": Case(lambda p: sf.write(p, sine(16000, 0.5, freq=440.0), 16000, subtype="PCM_24"), check=_check_24_bit),
    "float32 above full scale": Case(lambda p: sf.write(p, ABOVE_FULL_SCALE, 16000, subtype="FLOAT"),
                                     check=lambda w: np.testing.assert_array_equal(w.numpy(), ABOVE_FULL_SCALE)),
    "ten minutes": Case(lambda p: sf.write(p, sine(8000, 600.0, amp=0.2), 8000),
                        check=lambda w: (w.numel() == 600 * 16000) or pytest.fail(f"{w.numel()} samples")),
    "data shorter than its header says": Case(_cut(44 + 2 * 5000),
                                              check=lambda w: np.testing.assert_allclose(
                                                  w.numpy(), sine(16000, 1.0)[:5000], atol=2.0 ** -15)),
}
BAD = [name for name, c in CASES.items() if c.error]
ids = {name: re.sub(r"\W+", "_", name) for name in CASES}


def _write(case: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    CASES[case].make(path)
    return path


@pytest.mark.parametrize("case", CASES, ids=ids.get)
def test_load_audio(case, tmp_path):
    path = _write(case, tmp_path / f"{ids[case]}.wav")
    c = CASES[case]
    if c.vanish:
        path.unlink()
    if c.error:
        with pytest.raises(AudioError, match=rf"^{re.escape(str(path))}: .*{c.error}"):
            load_audio(path)
    else:
        wave = load_audio(path)
        assert wave.dtype == torch.float32 and wave.dim() == 1
        c.check(wave)


FEATURES = FeatureConfig(num_mel_bins=64, target_length=100)


@pytest.mark.parametrize("case", CASES, ids=ids.get)
def test_dataset_raises_naming_the_file_or_skips_and_counts(case, tmp_path):
    """The dataset, as training reads it: under ``raise`` the error names the file and its
    manifest entry; under ``skip`` the clip is left out of its batch, counted and listed."""
    path = _write(case, tmp_path / "data" / "a" / f"{ids[case]}.wav")
    sf.write(tmp_path / "data" / "a" / "good.wav", sine(16000, 0.5), 16000)
    manifest = read_manifest("folder", root=tmp_path / "data")
    c = CASES[case]
    if c.vanish:
        path.unlink()
    index = [it.path for it in manifest.items].index(path)
    strict = AudioDataset(manifest, FEATURES)
    skip = AudioDataset(manifest, FEATURES, on_error="skip")
    batch = collate([skip[i] for i in range(len(manifest.items))])
    if c.error:
        with pytest.raises(AudioError, match=rf"^{re.escape(str(path))}: .*{c.error}.*\(entry a/{ids[case]}\.wav\)"):
            strict[index]
        assert len(batch["errors"]) == 1 and batch["spec"].shape == (1, 100, 64)
        assert batch["errors"][0].startswith(f"{path}: ")
        kept, report = scan(manifest, on_error="skip", max_bad_fraction=1.0, decode=True)
        assert [p for p in kept.items] == [manifest.items[1 - index]]
        assert report.problems[0][1].startswith(f"{path}: ")
    else:
        spec = strict[index]["spec"]
        assert spec.shape == (100, 64) and torch.isfinite(spec).all()
        assert batch["errors"] == [] and batch["spec"].shape == (2, 100, 64)
        if case in ("one sample",):  # shorter than one window: every frame is padding
            pad = (0 - FEATURES.mean) / (2 * FEATURES.std)
            assert torch.allclose(spec, torch.full_like(spec, pad))
        if case == "silence":  # 98 frames at the log floor, then padding
            assert (spec[:98] == spec[0, 0]).all() and spec[0, 0] < spec[99, 0]


def test_a_run_under_skip_completes_and_reports_every_bad_file(fsdd_small, tmp_path, monkeypatch, capsys):
    """All cases beside 100 real training clips: the run trains on the good ones, and its summary
    names each bad file once, with how many were left out at the scan and skipped when read."""
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for clip in (fsdd_small / "recordings").iterdir():
        (root / "recordings" / clip.name).symlink_to(clip.resolve())
    paths = {case: _write(case, root / "recordings" / f"{k % 10}_case_{50 + k}.wav")  # takes >= 5: training
             for k, case in enumerate(CASES)}

    import flexiast.engine.trainer as train_module

    load_splits = train_module.load_splits

    def scan_then_delete(cfg):  # the file disappears between indexing (and scanning) and reading
        out = load_splits(cfg)
        for case in CASES:
            if CASES[case].vanish:
                paths[case].unlink()
        return out

    monkeypatch.setattr(train_module, "load_splits", scan_then_delete)
    # Batch 1: every clip is read once per epoch (no incomplete batch is dropped), and a step
    # whose only clip is unreadable leaves the weights alone.
    raw = tiny_recipe(root, tmp_path / "run", data={"on_error": "skip", "max_bad_fraction": 0.2, "batch_size": 1},
                      phases=[{"epochs": 2}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    bad = summary["unreadable"]
    assert sorted(f.split(": ")[0] for f in bad["files"]) == sorted(str(paths[c]) for c in BAD)
    for case in BAD:
        (line,) = [f for f in bad["files"] if f.startswith(f"{paths[case]}: ")]
        assert re.search(CASES[case].error, line), line
    assert sum(bad["left_out_at_scan"].values()) == sum(CASES[c].at_scan for c in BAD)
    # The files that pass the scan fail when read: each is read once per epoch, whether the
    # holdout put it in training or validation.
    read_bad = [c for c in BAD if not CASES[c].at_scan]
    assert bad["skipped_reads"] == bad["skipped_in_training"] + bad["skipped_in_validation"] == 2 * len(read_bad)
    steps = read_csv(tmp_path / "run" / "steps.csv")
    for row in steps:  # the log names the file at the step that skipped it
        assert (row["skipped"] == "1") == any(row["unreadable"].startswith(f"{paths[c]}: ") for c in read_bad), row
    assert f"left out {len(BAD)} unreadable files" in out
