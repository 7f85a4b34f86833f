"""FeatureConfig's two kinds: Kaldi fbank (AST) unchanged, and the Slaney log-mel of HTS-AT / PANNs.

Settings, saved dicts, frames and samples under coarse-to-fine compression, cache keys,
normalisation, validation messages, and the waveform front end of an ONNX export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flexiast.audio import load_audio
from flexiast.data.cache import FeatureCache
from flexiast.export import WaveformFrontEnd, _to_onnx, export_hf
from flexiast.fbank import fbank
from flexiast.features import Compression, FeatureConfig, compress_spec, finish_input, log_mel, normalize
from flexiast.logmel import slaney_logmel
from flexiast.models import create_model

#: A FeatureConfig's dict as flexiast wrote it before slaney_logmel (no fmin, fmax, normalization).
OLD_KALDI_DICT = {"num_mel_bins": 128, "target_length": 1024, "mean": -4.2677393, "std": 4.5689974,
                  "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "window": "hanning", "sample_rate": 16000,
                  "kind": "kaldi_fbank"}
COMPRESSIONS = [Compression.parse(c) for c in ("none", "fshift:2", "fshift:4", "avgpool:4", "maxpool:2", "patch:2")]


def test_htsat_settings():
    cfg = FeatureConfig.htsat()
    assert (cfg.kind, cfg.sample_rate, cfg.num_mel_bins, cfg.target_length) == ("slaney_logmel", 32000, 64, 1024)
    assert (cfg.frame_length_samples(), cfg.frame_shift_samples(), cfg.fmin, cfg.fmax) == (1024, 320, 50.0, 14000.0)
    assert (cfg.normalization, cfg.mean, cfg.std, cfg.window, cfg.centered) == ("none", None, None, "hann", True)
    assert FeatureConfig.for_kind("slaney_logmel") == cfg
    assert FeatureConfig.for_kind("kaldi_fbank") == FeatureConfig()
    assert cfg.frontend_kwargs() == dict(sample_rate=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0,
                                         fmax=14000.0)
    speech = FeatureConfig.htsat(sample_rate=16000, fmax=8000.0, target_length=101)
    assert (speech.frame_length_samples(), speech.frame_shift_samples()) == (512, 160)


def test_saved_dicts_round_trip_and_old_ones_load():
    old = FeatureConfig(**OLD_KALDI_DICT)
    assert old == FeatureConfig() and old.fmin is None and old.normalization == "mean_std"
    assert FeatureConfig().to_dict() == OLD_KALDI_DICT  # what earlier versions wrote and read
    for cfg in (FeatureConfig(), FeatureConfig.for_dataset("esc50", fmin=40.0), FeatureConfig.htsat(),
                FeatureConfig.htsat(normalization="mean_std", mean=-20.0, std=15.0)):
        saved = json.loads(json.dumps(cfg.to_dict()))
        assert FeatureConfig(**saved) == cfg
    assert FeatureConfig.htsat().to_dict()["normalization"] == "none"


@pytest.mark.parametrize("comp", COMPRESSIONS, ids=str)
@pytest.mark.parametrize("rate", [32000, 16000])
def test_clip_samples_fill_the_frames_exactly(rate, comp):
    """A centred STFT gives 1 + L // hop frames: clip_samples is the least L that gives
    fbank_frames, and one sample fewer gives one frame fewer."""
    cfg = FeatureConfig.htsat(sample_rate=rate, fmax=min(14000.0, rate / 2), target_length=96)
    frames = cfg.fbank_frames(comp)
    hop = 320 * rate // 32000 * (comp.factor if comp.method == "fshift" else 1)
    samples = cfg.clip_samples(comp)
    assert samples == (frames - 1) * hop
    for n, expected in ((samples, frames), (samples - 1, frames - 1), (samples + hop - 1, frames)):
        assert cfg.num_frames(n, comp) == expected
        assert log_mel(torch.zeros(n), cfg, comp).shape == (expected, 64)


def test_fshift_and_pooling_frames_for_the_log_mel_kind(fsdd_dir):
    """fshift:4 is a hop of 1280 samples and target_length // 4 frames; avgpool / maxpool:4
    pool the finished frames by 4, a short clip padded with silence (-100 dB), not with a
    loud 0 dB. HTS-AT's input is not normalised."""
    cfg = FeatureConfig.htsat(target_length=128)
    wave = load_audio(fsdd_dir / "5_lucas_3.wav", 32000)
    fshift = Compression.parse("fshift:4")
    spec = log_mel(wave, cfg, fshift)
    assert spec.shape == (1 + len(wave) // 1280, 64)
    torch.testing.assert_close(spec, slaney_logmel(wave, hop_length=1280))
    x = finish_input(spec, cfg, fshift)
    assert x.shape == (cfg.frames(fshift), 64) == (32, 64)
    full = log_mel(wave, cfg)
    assert full.shape == (1 + len(wave) // 320, 64)
    silence = float(log_mel(torch.zeros(3200), cfg).max())  # digital silence: the floor, 10 log10(1e-10)
    assert silence == cfg.pad_value == -100.0
    padded = torch.nn.functional.pad(full, (0, 0, 0, 128 - len(full)), value=silence) if len(full) < 128 else full[:128]
    for method in ("avgpool", "maxpool"):
        comp = Compression.parse(f"{method}:4")
        x = finish_input(full, cfg, comp)
        groups = padded.reshape(32, 4, 64)
        torch.testing.assert_close(x, groups.mean(1) if method == "avgpool" else groups.amax(1))
        torch.testing.assert_close(x, compress_spec(padded, comp))


def test_log_mel_dispatches_on_kind_and_kaldi_is_unchanged():
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(16000, generator=g) + 0.3  # a DC offset: Kaldi's path removes it, HTS-AT's keeps it
    kaldi = FeatureConfig()
    torch.testing.assert_close(log_mel(wave, kaldi), fbank(wave - wave.mean(), 16000, num_mel_bins=128,
                                                           frame_length_ms=25.0, frame_shift_ms=10.0,
                                                           window="hanning"))
    assert kaldi.fbank_kwargs() == dict(sample_rate=16000, num_mel_bins=128, frame_length_ms=25.0,
                                        frame_shift_ms=10.0, window="hanning")
    slaney = FeatureConfig.htsat(fmin=0.0)
    torch.testing.assert_close(log_mel(wave, slaney), slaney_logmel(wave, fmin=0.0))
    assert not torch.allclose(log_mel(wave, slaney), slaney_logmel(wave - wave.mean(), fmin=0.0))
    ranged = FeatureConfig(fmin=100.0, fmax=7000.0)
    torch.testing.assert_close(log_mel(wave, ranged), fbank(wave - wave.mean(), low_freq=100.0, high_freq=7000.0))


def test_normalization_is_explicit():
    spec = torch.randn(10, 64)
    assert normalize(spec, FeatureConfig.htsat()) is spec
    stats = FeatureConfig.htsat(normalization="mean_std", mean=-30.0, std=10.0)
    torch.testing.assert_close(normalize(spec, stats), (spec + 30.0) / 20.0)
    torch.testing.assert_close(normalize(spec, FeatureConfig()), (spec + 4.2677393) / (2 * 4.5689974))


@pytest.mark.parametrize("changes, message", [
    (dict(fmax=20000.0), "features.fmax=20000 exceeds the Nyquist frequency 16000 of sample_rate=32000"),
    (dict(fmin=14000.0, fmax=8000.0), "features.fmax=8000 must exceed features.fmin=14000"),
    (dict(fmin=-1.0), r"features.fmin=-1 must lie in \[0, 16000\)"),
    (dict(window="hanning"), "features.window='hanning': slaney_logmel uses the periodic Hann window"),
    (dict(frame_length_ms=31.3), "features.frame_length_ms=31.3 is 1001.6 samples at sample_rate=32000"),
    (dict(frame_shift_ms=0.01), "features.frame_shift_ms=0.01 is 0.32 samples"),
    (dict(mean=-4.2677393, std=4.5689974), "with features.normalization='none' no statistics apply"),
    (dict(normalization="mean_std"), "features.normalization='mean_std' needs both"),
    (dict(normalization="mean_std", mean=-6.6268077, std=5.358466),
     "are AST's statistics of Kaldi fbank on esc50"),
    (dict(normalization="batchnorm"), "features.normalization='batchnorm' is not one of mean_std, none"),
])
def test_validation_names_the_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig.htsat(**changes)


def test_a_slaney_config_without_htsat_settings_is_refused():
    """Kaldi's defaults (Hanning window, AST's statistics) never make a slaney_logmel config by accident."""
    with pytest.raises(ValueError, match="features.mean=-4.2677393 and features.std=4.5689974"):
        FeatureConfig(kind="slaney_logmel", window="hann")
    with pytest.raises(ValueError, match="features.window='hanning'"):
        FeatureConfig(kind="slaney_logmel", normalization="none", mean=None, std=None)
    with pytest.raises(ValueError, match="features.fmax=9000 exceeds the Nyquist frequency 8000"):
        FeatureConfig(fmax=9000.0)


def test_cache_keys_differ_between_kinds_and_settings(tmp_path):
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    cache = FeatureCache(tmp_path / "cache")
    configs = [FeatureConfig(num_mel_bins=64, sample_rate=32000), FeatureConfig.htsat(),
               FeatureConfig.htsat(fmax=12000.0), FeatureConfig.htsat(fmin=0.0),
               FeatureConfig.htsat(sample_rate=16000, fmax=8000.0), FeatureConfig.htsat(frame_length_ms=64.0),
               FeatureConfig.htsat(num_mel_bins=128), FeatureConfig(fmin=40.0)]
    keys = {cache.key(clip, c.fbank_kwargs()) for c in configs}
    keys |= {cache.key(clip, FeatureConfig.htsat().fbank_kwargs(Compression.parse("fshift:2")))}
    assert len(keys) == len(configs) + 1
    # what normalisation or length a config has does not change the log-mel, nor its entry
    assert (FeatureConfig.htsat(target_length=10, normalization="mean_std", mean=-20.0, std=9.0).fbank_kwargs()
            == FeatureConfig.htsat().fbank_kwargs())


def test_hugging_face_export_refuses_the_log_mel_kind(tmp_path):
    model = create_model("ast-tiny", num_classes=2, input_fdim=64, input_tdim=64)
    with pytest.raises(ValueError, match="features.kind='slaney_logmel': Hugging Face's ASTFeatureExtractor"):
        export_hf(model, tmp_path / "hf", inference={"features": FeatureConfig.htsat(target_length=64).to_dict()})


@pytest.mark.parametrize("comp", ["none", "fshift:2"])
def test_waveform_front_end_in_onnx_equals_eager(comp, fsdd_dir, tmp_path):
    """The graph of WaveformFrontEnd (dynamic batch and length) in ONNX Runtime against
    log_mel + finish_input per clip: real speech at 32 kHz, cut on and off the frame grid,
    and noise shorter than half a window."""
    import onnxruntime as ort
    c = Compression.parse(comp)
    cfg = FeatureConfig.htsat(target_length=64)
    front = WaveformFrontEnd(cfg, c).eval()
    example = torch.randn(2, front.samples + 1, generator=torch.Generator().manual_seed(0))
    dims = {0: torch.export.Dim("batch", min=1, max=64), 1: torch.export.Dim("samples", min=2, max=2 ** 31 - 1)}
    _to_onnx(front, example, "waveform", dims, 18).save(str(tmp_path / "front.onnx"))
    session = ort.InferenceSession(str(tmp_path / "front.onnx"), providers=["CPUExecutionProvider"])
    speech = load_audio(fsdd_dir / "2_jackson_10.wav", 32000)
    noise = 0.1 * torch.randn(300, generator=torch.Generator().manual_seed(1))
    for wave in (speech, speech[: front.samples], speech[: front.samples - 1], speech[:5000], noise):
        got = torch.from_numpy(session.run(None, {"waveform": wave[None].numpy()})[0])[0]
        ref = finish_input(log_mel(wave, cfg, c), cfg, c)
        assert got.shape == ref.shape == (cfg.frames(c), 64)
        # float32 FFTs (ONNX Runtime's and torch's) agree to ~1e-7 of the loudest bin: 1e-3 dB
        # within 60 dB of the clip's peak; bands 90 dB down (8 kHz speech has none above 4 kHz) to 1e-2
        loud = ref > ref.max() - 60
        np.testing.assert_allclose(got[loud].numpy(), ref[loud].numpy(), rtol=0, atol=1e-3)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-2)
