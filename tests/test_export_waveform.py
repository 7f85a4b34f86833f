"""ONNX graphs that take the waveform: run in ONNX Runtime on real FSDD speech, against eager flexiast.

The reference is flexiast's own evaluation input (``features.log_mel`` then
``features.finish_input``: mean removed, Kaldi fbank, zero-padded or cut to the model's
frames, normalised, pooled), which ``test_fbank`` checks against kaldi-native-fbank and
Hugging Face's extractor, fed to the flexible model at the exported patch size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flexiast import PATCH_SIZES
from flexiast.audio import load_audio
from flexiast.cli import main
from flexiast.config import build_config
from flexiast.engine import train
from flexiast.export import WaveformFrontEnd, check_onnx_waveform, export_onnx, export_program
from flexiast.features import finish_input, log_mel
from flexiast.inference import load_inference_model

from helpers import tiny_recipe

WINDOW = 400 + 47 * 160  # samples of the tiny recipe's 48 Kaldi frames (25 ms window, 10 ms shift at 16 kHz)
TOLERANCE = 1e-3  # on logits, as `flexiast export --input waveform` checks by default
#: Real FSDD clips (8 kHz, read at 16 kHz): two shorter than WINDOW, two longer.
CLIPS = ("1_george_37.wav", "2_george_32.wav", "6_george_2.wav", "9_george_22.wav")


@pytest.fixture(scope="module")
def run(fsdd_small, tmp_path_factory) -> Path:
    """A tiny FlexiAST (patch drawn from P per step) trained 1 epoch on 200 FSDD clips."""
    out = tmp_path_factory.mktemp("export-waveform") / "run"
    train(build_config(tiny_recipe(fsdd_small, out, phases=[{"epochs": 1, "patch": {
        "sampler": "uniform", "sizes": list(PATCH_SIZES)}}], train={"eval_patch_sizes": [16]})))
    return out


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _eager(im, waves: list[torch.Tensor], patch) -> torch.Tensor:
    """Logits of flexiast's evaluation input for each waveform, the flexible model at ``patch``."""
    f, c = im.features, im.compression
    specs = torch.stack([finish_input(log_mel(w, f, c), f, c) for w in waves])
    with torch.no_grad():
        return im.model(specs, patch_size=patch)


def _onnx(session, waves: list[torch.Tensor]) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {"waveform": torch.stack(waves).numpy()})[0])


def _real_clips(fsdd_dir: Path, window: int) -> list[torch.Tensor]:
    """The CLIPS at 16 kHz, and the longest of them cut to exactly ``window`` samples."""
    waves = [load_audio(fsdd_dir / name, 16000) for name in CLIPS]
    assert [len(w) < window for w in waves] == [True, True, False, False]
    return waves + [waves[-1][:window]]


def test_dynamic_length_graph_agrees_with_flexiast_on_real_speech(run, fsdd_dir, tmp_path, capsys):
    im = load_inference_model(run)
    path = tmp_path / "wave.onnx"
    audio = [str(fsdd_dir / name) for name in CLIPS]
    assert main(["export", str(run), str(path), "--patch-size", "8", "--input", "waveform", "--dynamic-length",
                 "--check-audio", *audio]) == 0
    out = capsys.readouterr().out
    assert "waveform [batch, samples] at 16000 Hz" in out and "on the given audio" in out and "within 0.001" in out
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["input_kind"] == "waveform" and meta["input"] == "waveform" and meta["output"] == "logits"
    assert meta["input_shape"] == ["batch", "samples"] and meta["length"] == "dynamic" and meta["samples"] is None
    assert meta["sample_rate"] == 16000 and meta["clip_samples"] == WINDOW and meta["patch_size"] == [8, 8]
    assert meta["features"]["mean"] == -3.0856 and meta["compression"] == "none" and meta["multilabel"] is False

    session = _ort(path)
    under_a_window = 0.1 * torch.randn(300, generator=torch.Generator().manual_seed(0))  # 300 < 400 samples
    waves = _real_clips(fsdd_dir, WINDOW) + [under_a_window]
    for w in waves:  # each at its own length: shorter padded, longer cut at the frame level
        np.testing.assert_allclose(_onnx(session, [w]), _eager(im, [w], 8), rtol=0, atol=TOLERANCE)
    pair = [waves[2][:6000], waves[3][:6000]]  # the batch is dynamic too
    np.testing.assert_allclose(_onnx(session, pair), _eager(im, pair, 8), rtol=0, atol=TOLERANCE)
    assert check_onnx_waveform(path, im.model, im.features, patch_size=8) <= TOLERANCE  # seeded noise


def test_fixed_length_graphs_agree_with_flexiast_on_real_speech(run, fsdd_dir, tmp_path, capsys):
    im = load_inference_model(run)
    clips = _real_clips(fsdd_dir, WINDOW)
    for samples in (None, 5000, 12000):  # the model's clip, shorter, longer
        path = tmp_path / f"wave_{samples}.onnx"
        length = ["--samples", str(samples)] if samples else []
        assert main(["export", str(run), str(path), "--patch-size", "16x32", "--input", "waveform", *length]) == 0
        assert "on seeded noise" in capsys.readouterr().out
        meta = json.loads(path.with_suffix(".json").read_text())
        n = samples or WINDOW
        assert meta["input_shape"] == ["batch", n] and meta["length"] == "fixed" and meta["samples"] == n
        session = _ort(path)
        assert session.get_inputs()[0].shape == ["batch", n]
        waves = [torch.nn.functional.pad(w[:n], (0, max(0, n - len(w)))) for w in clips]
        ref = _eager(im, waves, (16, 32))
        np.testing.assert_allclose(_onnx(session, waves), ref, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(_onnx(session, waves[:1]), ref[:1], rtol=0, atol=TOLERANCE)
        assert check_onnx_waveform(path, im.model, im.features, waveforms=clips, patch_size=(16, 32)) <= TOLERANCE


@pytest.mark.parametrize("method", ["fshift", "avgpool"])
def test_a_model_trained_last_on_compressed_input_gets_it_in_the_graph(method, fsdd_small, fsdd_dir, tmp_path):
    """fshift:2 frames every 20 ms inside the graph (24 frames); avgpool:2 pools 48 frames to 24."""
    out = tmp_path / method
    train(build_config(tiny_recipe(fsdd_small, out, phases=[{"epochs": 1, "compression": f"{method}:2"}])))
    im = load_inference_model(out)
    assert str(im.compression) == f"{method}:2" and im.model.config.input_tdim == 24
    path = export_onnx(im.model, tmp_path / "wave.onnx", input="waveform", dynamic_length=True,
                       inference=im.inference_info())
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["compression"] == f"{method}:2" and meta["clip_samples"] == im.window_samples
    session = _ort(path)
    for w in _real_clips(fsdd_dir, im.window_samples):
        np.testing.assert_allclose(_onnx(session, [w]), _eager(im, [w], None), rtol=0, atol=TOLERANCE)


def test_torch_export_program_of_the_same_waveform_graph(run, fsdd_dir, tmp_path):
    im = load_inference_model(run)
    path = export_program(im.model, tmp_path / "wave.pt2", patch_size=12, dynamic_length=True,
                          inference=im.inference_info())
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == "flexiast-torch-export" and meta["length"] == "dynamic" and meta["output"] == "logits"
    program = torch.export.load(str(path)).module()
    for w in _real_clips(fsdd_dir, WINDOW):
        with torch.no_grad():
            torch.testing.assert_close(program(w[None]), _eager(im, [w], 12), atol=1e-5, rtol=0)


def test_front_end_is_evaluation_input_and_refuses_bad_waveforms(run, fsdd_dir, tmp_path, capsys):
    im = load_inference_model(run)
    front = WaveformFrontEnd(im.features)
    for w in _real_clips(fsdd_dir, WINDOW):
        torch.testing.assert_close(front(w[None])[0], finish_input(log_mel(w, im.features), im.features),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"waveform must be \[batch, samples\], got 1 dimensions"):
        front(torch.zeros(WINDOW))
    with pytest.raises(TypeError, match="waveform must be float32 samples in \\[-1, 1\\], got torch.int16"):
        front(torch.zeros(1, WINDOW, dtype=torch.int16))

    path = export_onnx(im.model, tmp_path / "wave.onnx", input="waveform", inference=im.inference_info())
    session = _ort(path)
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument, match="Invalid rank for input: waveform Got: 1 Expected: 2"):
        session.run(None, {"waveform": np.zeros(WINDOW, np.float32)})
    with pytest.raises(InvalidArgument, match=r"Actual: \(tensor\(int16\)\) , expected: \(tensor\(float\)\)"):
        session.run(None, {"waveform": np.zeros((1, WINDOW), np.int16)})

    with pytest.raises(ValueError, match="a waveform graph computes the features inside"):
        export_onnx(im.model, tmp_path / "x.onnx", input="waveform")
    with pytest.raises(ValueError, match="apply to input='waveform' only"):
        export_onnx(im.model, tmp_path / "x.onnx", samples=WINDOW)
    with pytest.raises(ValueError, match="input='audio' is not one of spectrogram, waveform"):
        export_onnx(im.model, tmp_path / "x.onnx", input="audio")
    for args, why in (([str(tmp_path / "x.onnx"), "--dynamic-length"], "apply to --input waveform"),
                      ([str(tmp_path / "hf"), "--format", "hf", "--input", "waveform"], "apply to --format onnx")):
        with pytest.raises(SystemExit) as stop:  # usage errors, reported by argparse
            main(["export", str(run), *args])
        assert stop.value.code == 2 and why in capsys.readouterr().err
