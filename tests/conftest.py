"""Shared fixtures: real audio from FSDD (../shared/data/fsdd), resampled to 16 kHz, and a small FlexiAST trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flexiast import PATCH_SIZES
from flexiast.config import build_config
from flexiast.engine import train

from helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("FLEXIAST_FSDD", ROOT.parent / "shared" / "data" / "fsdd"))


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_in_a_temporary_folder(tmp_path_factory):
    """``data.cache_dir: auto`` caches in the user's cache folder; the tests keep theirs apart."""
    os.environ["FLEXIAST_CACHE_DIR"] = str(tmp_path_factory.mktemp("feature-cache"))


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    recordings = FSDD / "recordings"
    if not recordings.is_dir():
        pytest.fail(f"FSDD not found at {recordings}; tests read real audio from ../shared/data/fsdd "
                    "(or set FLEXIAST_FSDD)")
    return recordings


@pytest.fixture(scope="session")
def fsdd_clips_16k(fsdd_dir) -> list[np.ndarray]:
    """Six real 8 kHz clips (one per speaker), resampled to 16 kHz float32 with soxr."""
    import soundfile as sf
    import soxr

    clips = []
    for speaker in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"):
        audio, rate = sf.read(fsdd_dir / f"3_{speaker}_7.wav", dtype="float64")
        assert rate == 8000
        clips.append(soxr.resample(audio, rate, 16000).astype(np.float32))
    return clips


SPEAKERS = ("george", "jackson")


@pytest.fixture(scope="session")
def fsdd_small(tmp_path_factory, fsdd_dir) -> Path:
    """200 real FSDD clips (2 speakers x 10 digits x takes 0-9), linked into a temporary FSDD layout."""
    root = tmp_path_factory.mktemp("fsdd_small")
    rec = root / "recordings"
    rec.mkdir()
    for speaker in SPEAKERS:
        for digit in range(10):
            for take in range(10):
                name = f"{digit}_{speaker}_{take}.wav"
                (rec / name).symlink_to(fsdd_dir / name)
    return root


@pytest.fixture(scope="module")
def run(fsdd_small, tmp_path_factory) -> Path:
    """A tiny FlexiAST (patch drawn from P per step) trained 4 epochs on 200 FSDD clips."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    raw = tiny_recipe(fsdd_small, out, phases=[{"epochs": 4, "patch": {"sampler": "uniform",
                                                                        "sizes": list(PATCH_SIZES)}}],
                      train={"eval_patch_sizes": [16]})
    train(build_config(raw))
    return out
