"""CNN14 (PANNs, Kong et al. 2020) against panns-inference's own ``Cnn14``, and what the family adds.

The reference is ``panns_inference.models.Cnn14`` (PANNs' pytorch/models.py as PyPI ships it), its
front end torchlibrosa's. Its package ``__init__`` imports ``config.py``, which downloads a labels
CSV with ``wget`` at import, so ``models.py`` is loaded here under a stub package that runs
nothing else (:func:`_panns_models`); no network is used.

* Parity: the same weights (a PANNs checkpoint this test writes from the reference module, in
  PANNs' ``{"model": state dict}`` layout with the front end's buffers) give the same
  ``clipwise_output`` and ``embedding`` in float64, on a spoken digit from FSDD resampled to
  32 kHz and on noise; flexiast computes the log-mel itself (``FeatureConfig.htsat()``). The
  fast tests run ``Cnn14.forward`` with its blocks built at CNN14-micro's widths (its own
  ``ConvBlock`` class); the slow one, the 80M-parameter module on 10 s.
* Loading: the file is claimed by the CNN14 family alone, its front end is checked and dropped,
  a new head is made for other classes, and a front end other than flexiast's is refused.
* Inputs shorter than the poolings allow are refused, naming the length; FLOPs follow the
  input length, so the engine's ``avgpool:2`` phase costs about half a full-resolution one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast import CheckpointError
from flexiast.audio import resample
from flexiast.features import FeatureConfig, log_mel
from flexiast.models import create_model, flops, load_model
from flexiast.models.cnn14.weights import check_front_end
from flexiast.models.registry import identify

from helpers import measured_flops

ROOT = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("FLEXIAST_FSDD", ROOT.parent / "shared" / "data" / "fsdd"))  # as conftest.py finds it
CLIP = FSDD / "recordings" / "0_jackson_1.wav"  # 0.53 s, 8 kHz
PANNS = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000)


def _panns_models():
    """``panns_inference.models`` without running the package's ``__init__`` (which downloads)."""
    name = "panns_inference"
    if f"{name}.models" in sys.modules:
        return sys.modules[f"{name}.models"]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("panns-inference is a test dependency (pip install -e '.[test]')")
    stub = types.ModuleType(name)
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault(name, stub)
    path = Path(stub.__path__[0]) / "models.py"
    mod_spec = importlib.util.spec_from_file_location(f"{name}.models", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    return module


def _reference(divisor: int = 1, seed: int = 0):
    """panns-inference's Cnn14 with weights and BatchNorm statistics moved off their initialisation.
    ``divisor`` > 1 divides every width (its ``ConvBlock`` s built by its own class, ``fc1`` and
    ``fc_audioset`` as its own ``init_layer`` makes them): ``Cnn14.forward`` unchanged, at the cost
    of CNN14-micro rather than 80M parameters."""
    models = _panns_models()
    block = models.ConvBlock
    def narrow(in_channels, out_channels):  # ConvBlock.__init__ names its class: restore it meanwhile
        models.ConvBlock = block
        try:
            return block(in_channels=in_channels if in_channels == 1 else in_channels // divisor,
                         out_channels=out_channels // divisor)
        finally:
            models.ConvBlock = narrow

    if divisor > 1:
        models.ConvBlock = narrow
    torch.manual_seed(seed)
    try:
        model = models.Cnn14(**PANNS, classes_num=527)
    finally:
        models.ConvBlock = block
    if divisor > 1:
        width = 2048 // divisor
        model.fc1, model.fc_audioset = torch.nn.Linear(width, width), torch.nn.Linear(width, 527)
        model.init_weight()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(("spectrogram_extractor.", "logmel_extractor.")):  # the front end stays PANNs'
                p.add_(torch.randn_like(p) * (0.05 if "conv" in name or "fc" in name else 0.2))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.5)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return model.eval()


def _save(model, path: Path) -> Path:
    """``model``'s weights as PANNs' pytorch/main.py saves them."""
    torch.save({"iteration": 0, "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def reference():
    """PANNs' Cnn14 at CNN14-micro's widths (8 .. 256 channels)."""
    return _reference(divisor=8)


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory) -> Path:
    return _save(reference, tmp_path_factory.mktemp("panns") / "Cnn14.pth")


@pytest.fixture(scope="module")
def ours(checkpoint):
    return load_model(checkpoint).eval()


@pytest.fixture(scope="module")
def front_end64():
    """torchlibrosa's STFT and mel modules as the reference builds them, in float64. torchlibrosa
    stores its DFT kernels as ``torch.Tensor`` (float32 by default, float64 here) and its mel
    matrix from librosa's ``filters.mel``, which computes in float32 by default; the matrix is
    asked of librosa in float64 here. Rounded to float32, either gives the reference's outputs a
    1e-6 to 1e-5 relative difference from the exact front end."""
    import librosa
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    n_fft, default = PANNS["window_size"], torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        stft = Spectrogram(n_fft=n_fft, hop_length=PANNS["hop_size"], win_length=n_fft, window="hann", center=True,
                           pad_mode="reflect", freeze_parameters=True)
        mel = LogmelFilterBank(sr=PANNS["sample_rate"], n_fft=n_fft, n_mels=PANNS["mel_bins"], fmin=PANNS["fmin"],
                               fmax=PANNS["fmax"], ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
    finally:
        torch.set_default_dtype(default)
    exact = librosa.filters.mel(sr=PANNS["sample_rate"], n_fft=n_fft, n_mels=PANNS["mel_bins"], fmin=PANNS["fmin"],
                                fmax=PANNS["fmax"], dtype=np.float64)
    assert exact.shape == (PANNS["mel_bins"], n_fft // 2 + 1) and mel.melW.dtype == stft.stft.conv_real.weight.dtype
    mel.melW.data = torch.from_numpy(exact.T.copy())
    return stft, mel


def _compare(reference, ours, front_end64, wave32k: np.ndarray) -> None:
    """The reference (weights as saved, front end in float64) against flexiast's log-mel and CNN14, in float64."""
    wave = torch.from_numpy(np.asarray(wave32k, dtype=np.float64))[None]
    saved = reference.spectrogram_extractor, reference.logmel_extractor
    reference.double()
    reference.spectrogram_extractor, reference.logmel_extractor = front_end64
    ours.double()
    try:
        with torch.no_grad():
            want = reference(wave)
            spec = log_mel(wave, FeatureConfig.htsat())
            got = ours.outputs(spec)
        assert spec.dtype == torch.float64
        torch.testing.assert_close(torch.sigmoid(got.clip), want["clipwise_output"], rtol=1e-8, atol=1e-11)
        torch.testing.assert_close(got.embedding, want["embedding"], rtol=1e-8, atol=1e-11)
        assert want["embedding"].abs().max() > 0.1 and 0.01 < want["clipwise_output"].mean() < 0.99  # not all 0 or 1
    finally:
        reference.spectrogram_extractor, reference.logmel_extractor = saved
        reference.float(), ours.float()


def test_a_panns_checkpoint_is_claimed_by_cnn14_alone(checkpoint, reference, ours):
    sd = reference.state_dict()
    family, layout = identify(sd, None, None)
    assert (family.arch, layout) == ("cnn14", "panns")
    assert ours.config.channels == (8, 16, 32, 64, 128, 256) and ours.config.num_classes == 527
    assert set(ours.state_dict()) == {k for k in sd if not k.startswith(("spectrogram_extractor.",
                                                                          "logmel_extractor."))}


def test_parity_with_panns_on_a_spoken_digit(reference, ours, front_end64):
    audio, rate = sf.read(CLIP, dtype="float32")
    _compare(reference, ours, front_end64, resample(audio, rate, 32000))


def test_parity_with_panns_on_noise(reference, ours, front_end64):
    noise = np.random.default_rng(0).standard_normal(16000) * 0.1  # 0.5 s: 51 frames
    _compare(reference, ours, front_end64, noise)


@pytest.mark.slow
def test_parity_with_panns_full_size(front_end64, tmp_path):
    """PANNs' Cnn14 itself (80.8M parameters, loaded from its checkpoint layout) on the spoken digit
    and on PANNs' 10 s input (1001 frames); about 30 s."""
    reference = _reference(seed=1)
    ours = load_model(_save(reference, tmp_path / "Cnn14_full.pth")).eval()
    assert ours.config.channels == (64, 128, 256, 512, 1024, 2048)
    audio, rate = sf.read(CLIP, dtype="float32")
    _compare(reference, ours, front_end64, resample(audio, rate, 32000))
    _compare(reference, ours, front_end64, np.random.default_rng(1).standard_normal(320000) * 0.1)


def test_a_new_head_for_other_classes(checkpoint, ours):
    """A fine-tuning start: the PANNs file loaded for 10 classes keeps every convolution and
    ``fc1`` and makes a new ``fc_audioset``."""
    ten = load_model(checkpoint, num_classes=10)
    assert ten.config.num_classes == 10 and ten.fc_audioset.weight.shape == (10, 256)
    kept = [k for k in ours.state_dict() if not k.startswith("fc_audioset.")]
    assert all(torch.equal(ten.state_dict()[k], ours.state_dict()[k]) for k in kept)


def test_another_front_end_is_refused(reference):
    sd = dict(reference.state_dict())
    check_front_end(sd)  # PANNs' own: 32 kHz, 1024-point FFT, 64 bins, 50-14,000 Hz
    from torchlibrosa.stft import LogmelFilterBank

    other = LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=8000)  # PANNs' 16 kHz models' band
    with pytest.raises(CheckpointError, match="Slaney mel filter bank"):
        check_front_end({**sd, "logmel_extractor.melW": other.melW})
    with pytest.raises(CheckpointError, match="mel bins"):
        check_front_end({**sd, "logmel_extractor.melW": sd["logmel_extractor.melW"][:, :32]})


def test_an_input_too_short_for_the_poolings_is_refused():
    model = create_model("cnn14-micro", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 32, 64)).shape == (1, 3)
        with pytest.raises(ValueError, match="31 frames.*at least 32"):
            model(torch.randn(1, 31, 64))
    with pytest.raises(ValueError, match="31 frames"):
        flops(model, (31, 64))


def test_flops_follow_the_pooled_input():
    """Counted by hand for CNN14-micro (8 .. 256 channels, 10 classes) at 128 x 64, and equal to
    FlopCounterMode at 128 and at 64 frames (the input of an avgpool:2 phase)."""
    model = create_model("cnn14-micro", num_classes=10).eval()
    widths, t, f, c_in, total = (8, 16, 32, 64, 128, 256), 128, 64, 1, 0
    for k, c in enumerate(widths):
        total += 2 * t * f * 9 * (c * c_in + c * c)
        c_in, t, f = c, (t // 2 if k < 5 else t), (f // 2 if k < 5 else f)
    total += 2 * 256 * 256 + 2 * 256 * 10
    assert flops(model, (128, 64)).forward == total
    for frames in (128, 64):
        spec = torch.randn(2, frames, 64)
        with torch.no_grad():
            assert flops(model, spec.shape).forward == measured_flops(model, spec)
    half = flops(model, (64, 64)).forward / flops(model, (128, 64)).forward
    assert 0.49 < half < 0.51


def test_embed_gives_panns_embedding_at_the_last_layer():
    model = create_model("cnn14-micro", num_classes=3).eval()
    spec = torch.randn(2, 70, 64)
    with torch.no_grad():
        last = model.embed(spec)
        first = model.embed(spec, layer=1)
        out = model.outputs(spec)
    torch.testing.assert_close(last.pooled(), out.embedding)
    assert last.grid == (2, 70 // 32) and last.tokens.shape == (2, 2 * 2, 256)
    assert first.grid == (32, 35) and first.tokens.shape == (2, 32 * 35, 8)
    assert model.token_frames(1) == 2 and model.token_frames() == 32
