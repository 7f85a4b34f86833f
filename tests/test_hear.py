"""flexiast.hear, the HEAR 2021 API, on a FlexiAST trained on real audio (conftest's ``run``).

HEAR's own validator (``hearvalidator``'s ``ValidateModel``) checks a module written
here that serves the run through ``flexiast.hear``. ``hearvalidator.validate`` imports
``tensorflow`` at module level, but for a torch model its checks use tensorflow only in
``isinstance(model, tf.Module)`` (its ``tf.device`` and ``tf.random`` calls are on the
TensorFlow-model path). TensorFlow is not installed here, so the test puts a **stand-in**
``tensorflow`` module into ``sys.modules`` holding only a ``Module`` class that nothing
inherits from: the validator then takes its torch path, as with TensorFlow installed.
Anything else it touched on tensorflow would raise AttributeError and fail the test.

Besides the validator, the numbers are worked out here: a short clip's scene embedding
from the features and the network, and the timestamps from the frame shift and the patch size.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import types

import pytest
import torch

from flexiast.features import FeatureConfig, finish_input, log_mel
from flexiast.hear import get_scene_embeddings, get_timestamp_embeddings, load_model

RATE, SHIFT, FRAME = 16000, 160, 400  # the tiny recipe's fbank: 16 kHz, 10 ms shift, 25 ms frames
WINDOW = FRAME + (48 - 1) * SHIFT  # samples of the model's 48 frames
#: The tiny recipe's features (tests/helpers.py), written out rather than read from the run.
FEATURES = FeatureConfig(num_mel_bins=64, target_length=48, mean=-3.0856, std=5.309)

MODULE = '''"""A HEAR module: a flexiast model through flexiast.hear (model_file_path: a JSON options file)."""
from flexiast.hear import get_scene_embeddings, get_timestamp_embeddings, load_model
'''

#: A module whose timestamps are not regularly spaced: the validator must refuse it.
IRREGULAR = '''"""flexiast.hear with its timestamps stretched: no longer regularly spaced."""
import torch

from flexiast.hear import get_scene_embeddings, load_model
from flexiast.hear import get_timestamp_embeddings as regular


def get_timestamp_embeddings(audio, model):
    embeddings, timestamps = regular(audio, model)
    return embeddings, timestamps * torch.linspace(1, 2, timestamps.shape[1])
'''


@pytest.fixture
def validator(monkeypatch, tmp_path):
    """hearvalidator.validate imported against the stand-in tensorflow, and ``tmp_path`` importable."""
    if importlib.util.find_spec("hearvalidator") is None:
        pytest.fail("hearvalidator is not installed; bash scripts/setup.sh --dev installs it (or: pip install "
                    "--no-deps hearvalidator==2021.0.2, without the TensorFlow it declares)")
    stand_in = types.ModuleType("tensorflow", "Stand-in for TensorFlow: hearvalidator's torch path only "
                                              "asks isinstance(model, tf.Module).")
    stand_in.Module = type("Module", (), {"__doc__": "Stand-in for tf.Module: no flexiast model is one."})
    monkeypatch.setitem(sys.modules, "tensorflow", stand_in)
    monkeypatch.delitem(sys.modules, "hearvalidator.validate", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("hearvalidator.validate")


def _options(tmp_path, run, **options) -> str:
    path = tmp_path / "hear-options.json"
    path.write_text(json.dumps({"model": str(run), "precision": "fp32", "device": "cpu", **options}))
    return str(path)


def test_hearvalidator_accepts_the_module(validator, tmp_path, run, capsys):
    (tmp_path / "flexiast_hear_tiny.py").write_text(MODULE)
    options = _options(tmp_path, run, patch_size=16)
    with pytest.warns(UserWarning, match="interval between timestamps"):  # 160 ms: one 16-frame column
        validator.ValidateModel("flexiast_hear_tiny", options, device="cpu")()
    out = capsys.readouterr().out
    assert "Model sample rate is: 16000" in out and "scene_embedding_size: 32" in out
    # 16 sounds of 2 s: ceil(32000 / 2560) columns of 16 frames; 8 sounds of 3.74 s: one vector each
    assert "Received embedding of shape: torch.Size([16, 13, 32])" in out
    assert "Received timestamps of shape: torch.Size([16, 13])" in out
    assert "Interval between timestamps is 160.0ms" in out
    assert "Received embedding of shape: torch.Size([8, 32])" in out


def test_hearvalidator_refuses_irregular_timestamps(validator, tmp_path, run):
    """The validator's check has teeth: the same module with stretched timestamps fails it."""
    (tmp_path / "flexiast_hear_irregular.py").write_text(IRREGULAR)
    with pytest.raises(validator.ModelError, match="regular intervals"), pytest.warns(UserWarning):
        validator.ValidateModel("flexiast_hear_irregular", _options(tmp_path, run, patch_size=16), device="cpu")()


def test_scene_embedding_of_a_short_clip_is_the_pooled_prefix(run, fsdd_clips_16k):
    """Shorter than a window: one clip padded as in training; its embedding is the mean of the
    prefix tokens of the last layer, computed here from the features and the flexible network."""
    length = min(WINDOW - 1, *(len(c) for c in fsdd_clips_16k[:3]))
    audio = torch.stack([torch.from_numpy(c[:length]) for c in fsdd_clips_16k[:3]])
    model = load_model(str(run), patch_size=12, precision="fp32", device="cpu")
    assert (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size) == (RATE, 32, 32)
    scene = get_scene_embeddings(audio, model)
    assert scene.shape == (3, 32) and scene.dtype == torch.float32
    spec = torch.stack([finish_input(log_mel(a, FEATURES), FEATURES) for a in audio])
    with torch.inference_mode():
        expected = model.network.embed(spec, patch_size=12).pooled()
    torch.testing.assert_close(scene, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(scene[0], scene[1])


@pytest.mark.parametrize("patch", [8, 32])
def test_timestamps_are_one_token_column_apart(run, fsdd_clips_16k, patch):
    """2 s sounds: a column every ``patch`` frames, ceil(32000 / (patch * 160)) of them, each at
    the centre of the samples its frames cover; rows equal; the first columns are those of the
    first window, embedded here from the features and the flexible network."""
    clip = torch.from_numpy(fsdd_clips_16k[0])
    audio = torch.stack([torch.nn.functional.pad(clip, (0, 2 * RATE - len(clip))), torch.rand(2 * RATE) - 0.5])
    model = load_model(str(run), patch_size=patch, precision="fp32", device="cpu")
    embeddings, timestamps = get_timestamp_embeddings(audio, model)
    step = patch * SHIFT
    count = math.ceil(2 * RATE / step)
    centre = ((patch - 1) * SHIFT + FRAME) / 2  # of the first column: its first to its last sample
    expected = (torch.arange(count) * step + centre) / RATE * 1000
    assert embeddings.shape == (2, count, 32) and embeddings.dtype == timestamps.dtype == torch.float32
    assert {8: 25, 32: 7}[patch] == count
    torch.testing.assert_close(timestamps, expected.float().expand(2, -1), rtol=0, atol=1e-3)
    spec = torch.stack([finish_input(log_mel(a[:WINDOW], FEATURES), FEATURES) for a in audio])
    with torch.inference_mode():
        first = model.network.embed(spec, patch_size=patch).frames()
    own = 3 if patch == 8 else 1  # columns nearer the first window's middle than the second's
    torch.testing.assert_close(embeddings[:, :own], first[:, :own], rtol=1e-4, atol=1e-5)


def test_options_file_and_clear_errors(run, tmp_path):
    with pytest.raises(ValueError, match="no built-in weights"):
        load_model()
    options = _options(tmp_path, run, patch_size=32, pooling="mean")
    model = load_model(options)
    assert model.patch_size == (32, 32) and model.pooling == "mean" and model.choice == "given"
    with pytest.raises(ValueError, match="set patch_size in it, not as arguments"):
        load_model(options, patch_size=8)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": str(run), "patch": 8}))
    with pytest.raises(ValueError, match="unknown options patch;"):
        load_model(str(bad))
    for audio, message in [(torch.zeros(RATE), r"\[n_sounds, n_samples\].*shape \(16000,\)"),
                           (torch.zeros(1, 1, RATE), r"shape \(1, 1, 16000\)"),
                           (torch.zeros(2, RATE, dtype=torch.int16), "float samples"),
                           (torch.zeros(0, RATE), "holds no sound")]:
        with pytest.raises(ValueError, match=message):
            get_scene_embeddings(audio, model)
    with pytest.raises(TypeError, match="torch.Tensor"):
        get_timestamp_embeddings([[0.0] * RATE], model)
