"""Deploying a family without patch sizes: an HTS-AT trained here on synthetic tones, predicted
(with sound events), profiled over input lengths, embedded, served through HEAR and exported.

The model is the family's tiny configuration (16 mel bins, 64 frames, two stages: a time
position is 8 frames, 80 ms) trained for 150 steps to tell a 600 Hz tone ("low") from a
5 kHz one ("high") in clips where each is present or not over a random stretch. The
numbers the tests compare with are worked out here: events from hand-written score
arrays, window assignments and timestamps by hand, window outputs from the features and
the network called directly, FLOPs as torch counts them, metrics with scikit-learn.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from flexiast import AST
from flexiast.checkpoints import CheckpointError
from flexiast.cli import main
from flexiast.embeddings import embed_audio
from flexiast.evaluate import profile_markdown, profile_model, read_profile, store_profile, write_profile
from flexiast.features import Compression, FeatureConfig, finish_input, log_mel
from flexiast.hear import get_scene_embeddings, get_timestamp_embeddings, load_model
from flexiast.inference import detect_events, load_inference_model, profile_path, stitch_framewise
from flexiast.models import create_model

from helpers import measured_flops

SR, SHIFT = 32000, 320  # HTS-AT's front end: 32 kHz, 10 ms hop
FEATURES = FeatureConfig.htsat(num_mel_bins=16, target_length=64)
WINDOW = 63 * SHIFT  # a centred STFT's 64 frames: 1 + 20160 // 320
FREQ = (600.0, 5000.0)
TINY = dict(num_classes=2, input_fdim=16, input_tdim=64, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4,
            freq_ratio=2, drop_path_rate=0.0, labels=["low", "high"])


def tone(n: int, freq: float) -> torch.Tensor:
    return 0.3 * torch.sin(2 * math.pi * freq * torch.arange(n) / SR)


@pytest.fixture(scope="module")
def data():
    """384 clips of 64 frames (0.63 s): each tone present with probability 1/2 over a random stretch."""
    g = torch.Generator().manual_seed(0)
    specs, targets = [], []
    for _ in range(384):
        x = 0.003 * torch.randn(WINDOW, generator=g)
        y = torch.zeros(2)
        for c in range(2):
            if torch.rand(1, generator=g) < 0.5:
                n = int(torch.randint(int(0.15 * SR), WINDOW, (1,), generator=g))
                a = int(torch.randint(0, WINDOW - n + 1, (1,), generator=g))
                x[a:a + n] += tone(n, FREQ[c])
                y[c] = 1
        specs.append(finish_input(log_mel(x, FEATURES), FEATURES))
        targets.append(y)
    return torch.stack(specs), torch.stack(targets)


@pytest.fixture(scope="module")
def model_dir(data, tmp_path_factory):
    x, y = data
    torch.manual_seed(0)
    model = create_model("htsat", **TINY)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        i = torch.randint(0, len(x), (32,), generator=g)
        loss = F.binary_cross_entropy_with_logits(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    info = {"features": FEATURES.to_dict(), "compression": "none", "multilabel": True}
    return model.eval().save_pretrained(tmp_path_factory.mktemp("htsat") / "model", inference=info)


@pytest.fixture(scope="module")
def im(model_dir):
    return load_inference_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def two_sounds(tmp_path_factory) -> tuple[torch.Tensor, str]:
    """2 s: the low tone for a second, then the high one, over faint noise; also as a 16 kHz WAV."""
    g = torch.Generator().manual_seed(2)
    wave = torch.cat([tone(SR, FREQ[0]), tone(SR, FREQ[1])]) + 0.003 * torch.randn(2 * SR, generator=g)
    path = tmp_path_factory.mktemp("audio") / "two.wav"
    sf.write(path, soxr.resample(wave.numpy().astype(np.float64), SR, 16000), 16000, subtype="FLOAT")
    return wave, str(path)


def _window_framewise(im, wave: torch.Tensor) -> torch.Tensor:
    """Sigmoid framewise scores ``[64, classes]`` of one window, from the features and the network."""
    spec = finish_input(log_mel(wave, FEATURES), FEATURES)
    with torch.no_grad():
        return torch.sigmoid(im.model.sed(spec[None]).framewise[0])


# -- events and stitching by hand --------------------------------------------------------------------
def test_events_from_a_hand_written_score_array():
    scores = torch.tensor([[0.1, 0.9], [0.6, 0.9], [0.7, 0.2], [0.5, 0.2], [0.2, 0.8], [0.9, 0.8], [0.3, 0.1]])
    events = detect_events(scores, ["a", "b"], hop_s=0.01, duration_s=0.07, threshold=0.5)
    # a: frames 1-2 (0.5 is not above 0.5) and 5; b: frames 0-1 and 4-5. Frame g spans (g -+ 1/2) * 10 ms.
    expect = [(0.0, 0.015, "b", 0.9), (0.005, 0.025, "a", 0.7), (0.035, 0.055, "b", 0.8), (0.045, 0.055, "a", 0.9)]
    got = [(e["onset_s"], e["offset_s"], e["label"], e["score"]) for e in events]
    assert [g[2] for g in got] == [e[2] for e in expect]
    np.testing.assert_allclose([g[:2] + g[3:] for g in got], [e[:2] + e[3:] for e in expect], atol=1e-6)
    # both classes' two events are 20 ms apart (two frames): merged with a gap of 20 ms, not of 10 ms
    merged = detect_events(scores, ["a", "b"], hop_s=0.01, threshold=0.5, merge_gap_s=0.02)
    assert [(e["label"], round(e["onset_s"], 6), round(e["offset_s"], 6), e["score"]) for e in merged] == [
        ("b", 0.0, 0.055, pytest.approx(0.9)), ("a", 0.005, 0.055, pytest.approx(0.9))]
    assert len(detect_events(scores, ["a", "b"], hop_s=0.01, threshold=0.5, merge_gap_s=0.01)) == 4
    # a's frame-5 event lasts 10 ms: dropped by a minimum of 15 ms, the 20 ms ones kept
    kept = detect_events(scores, ["a", "b"], hop_s=0.01, threshold=0.5, min_duration_s=0.015)
    assert [(e["label"], round(e["onset_s"], 6)) for e in kept] == [("b", 0.0), ("a", 0.005), ("b", 0.035)]
    # frames centred later (pooled frames: first_s) shift every time
    later = detect_events(scores, ["a", "b"], hop_s=0.02, first_s=0.005, threshold=0.5)
    assert later[0]["onset_s"] == 0.0 and later[1]["onset_s"] == pytest.approx(0.005 + 0.5 * 0.02)


def test_each_frame_is_taken_from_the_window_it_lies_most_centrally_in():
    # 64-frame windows at frames 0, 31, 62 and 87 (1.5 s: the last one ends at the audio's end), 151 frames.
    # Middle frame 31.5: windows at 0 and 31 are equally central at frame 47 (the earlier wins), so
    # frames 0-47 come from window 0, 48-78 from window 1, 79-106 from window 2 and 107-150 from window 3.
    window, local = stitch_framewise([0, 31, 62, 87], 64, 151)
    expect = torch.tensor([0] * 48 + [1] * 31 + [2] * 28 + [3] * 44)
    assert torch.equal(window, expect)
    assert torch.equal(local, torch.arange(151) - torch.tensor([0, 31, 62, 87])[expect])
    with pytest.raises(ValueError, match="no window"):
        stitch_framewise([0, 80], 64, 150)


# -- prediction with sound events ----------------------------------------------------------------------
def test_two_sounds_give_two_events_in_time_order(im, two_sounds):
    wave, _ = two_sounds
    r = im.predict(wave, sample_rate=SR, framewise=True, precision="fp32")
    assert r["patch_size"] is None and r["input_frames"] == 64 and r["scores"] == "sigmoid"
    assert r["sed"]["frame_hop_s"] == pytest.approx(0.01) and r["sed"]["first_frame_s"] == 0.0
    assert r["sed"]["frames"] == 1 + 2 * SR // SHIFT == 201
    times = np.array(r["framewise"]["times_s"])
    np.testing.assert_allclose(times, np.arange(201) * 0.01, atol=1e-9)
    assert [e["label"] for e in r["events"]] == ["low", "high"]
    low, high = r["events"]
    assert low["onset_s"] == 0.0 and 0.75 <= low["offset_s"] <= 1.25
    assert 0.75 <= high["onset_s"] <= 1.25 and high["offset_s"] == 2.0
    scores = np.array(r["framewise"]["scores"])  # [frames, classes]
    assert scores[:70, 0].min() > 0.5 and scores[:70, 1].max() < 0.5
    assert scores[130:, 1].min() > 0.5 and scores[130:, 0].max() < 0.5
    assert low["score"] == pytest.approx(scores[: round(low["offset_s"] / 0.01), 0].max(), abs=1e-6)


def test_stitched_framewise_is_the_windows_own_scores(im, two_sounds):
    wave = two_sounds[0][: 48000]  # 1.5 s: windows at frames 0, 31, 62, 87 (hop: half a window, in whole frames)
    r = im.predict(wave, sample_rate=SR, framewise=True, precision="fp32")
    assert [w["start_s"] for w in r["windows"]] == pytest.approx([0.0, 0.31, 0.62, 0.87])
    pieces = [_window_framewise(im, wave[s * SHIFT: s * SHIFT + WINDOW]) for s in (0, 31, 62, 87)]
    expect = torch.cat([pieces[0][0:48], pieces[1][48 - 31:79 - 31], pieces[2][79 - 62:107 - 62],
                        pieces[3][107 - 87:151 - 87]])
    torch.testing.assert_close(torch.tensor(r["framewise"]["scores"]), expect, rtol=0, atol=1e-5)


def test_one_window_covering_the_clip_is_its_framewise_result(im, two_sounds):
    wave = two_sounds[0][: 16000]  # 0.5 s: one padded window; 1 + 16000 // 320 = 51 frames of audio
    r = im.predict(wave, sample_rate=SR, framewise=True, precision="fp32")
    assert len(r["windows"]) == 1 and r["sed"]["frames"] == 51
    torch.testing.assert_close(torch.tensor(r["framewise"]["scores"]), _window_framewise(im, wave)[:51],
                               rtol=0, atol=1e-5)
    whole = im.predict(two_sounds[0], sample_rate=SR, whole=True, framewise=True, precision="fp32")  # one pass: its own length
    spec = log_mel(two_sounds[0], FEATURES)
    with torch.no_grad():
        ref = torch.sigmoid(im.model.sed(spec[None]).framewise[0])
    assert whole["sed"]["frames"] == 201
    torch.testing.assert_close(torch.tensor(whole["framewise"]["scores"]), ref, rtol=0, atol=1e-5)


def test_timestamps_follow_the_front_end_and_its_compression(im):
    import dataclasses

    assert im.frame_timing() == pytest.approx((0.01, 0.0))  # centred: frame t at t * 320 samples
    fshift = dataclasses.replace(im, compression=Compression("fshift", 2))
    assert fshift.frame_timing() == pytest.approx((0.02, 0.0))  # a 640-sample hop
    pooled = dataclasses.replace(im, compression=Compression("avgpool", 2))
    assert pooled.frame_timing() == pytest.approx((0.02, 0.005))  # frames 2t, 2t+1: centred at 20t + 5 ms
    kaldi = FeatureConfig(num_mel_bins=16, target_length=64)  # Kaldi frames start at t * shift: centre + 12.5 ms
    assert dataclasses.replace(im, features=kaldi).frame_timing() == pytest.approx((0.01, 0.0125))


def test_audio_at_another_rate_is_resampled(im, two_sounds):
    wave, path = two_sounds
    half = soxr.resample(wave.numpy().astype(np.float64), SR, 16000).astype(np.float32)
    back = soxr.resample(half.astype(np.float64), 16000, SR, quality="HQ").astype(np.float32)
    given = im.predict(half, sample_rate=16000, framewise=True, precision="fp32")
    ref = im.predict(back, sample_rate=SR, framewise=True, precision="fp32")
    from_file = im.predict(path, framewise=True, precision="fp32")
    for r in (given, from_file):
        assert r["duration_s"] == pytest.approx(2.0)
        np.testing.assert_allclose(r["framewise"]["scores"], ref["framewise"]["scores"], atol=1e-4)
        assert [e["label"] for e in r["events"]] == ["low", "high"]


# -- the profile over input lengths, and budgets ---------------------------------------------------------
def test_profile_over_input_lengths_feeds_pooled_clips(im, data, tmp_path):
    x, y = data[0][:96], data[1][:96]
    loader = [{"spec": x[i:i + 32], "target": y[i:i + 32], "index": torch.arange(i, i + 32), "errors": []}
              for i in range(0, 96, 32)]
    profile = profile_model(im.model, loader, multilabel=True, input_lengths=[16, 32, 64], latency_runs=2,
                            describe={"checkpoint": str(im.weights), "data": "tones"})
    assert profile["row_kind"] == "input_length" and [r["frames"] for r in profile["rows"]] == [64, 32, 16]
    assert [r["compression"] for r in profile["rows"]] == ["none", "avgpool:2", "avgpool:4"]
    for r in profile["rows"]:
        c = 64 // r["frames"]
        pooled = F.avg_pool1d(x.transpose(1, 2), c, c).transpose(1, 2)  # [clips, L, bins]
        with torch.no_grad():
            scores = torch.sigmoid(im.model(pooled))
            assert r["gflops"] == pytest.approx(measured_flops(im.model, pooled[:1]) / 1e9, rel=1e-9)
        ap = np.mean([average_precision_score(y[:, k], scores[:, k]) for k in range(2)])
        assert r["mAP"] == pytest.approx(ap, abs=1e-5)
        assert r["latency_ms"] > 0
    md = profile_markdown(profile)
    assert "| input frames | pooling |" in md and "| 32 | avgpool:2 |" in md
    files = write_profile(profile, tmp_path / "eval")
    assert files["csv"].read_text().splitlines()[0].startswith("input_frames,compression,tokens,gflops")
    assert read_profile(files["json"])["rows"][2]["frames"] == 16
    with pytest.raises(ValueError, match="must divide 64"):
        profile_model(im.model, loader, multilabel=True, input_lengths=[48], latency_runs=1)
    with pytest.raises(ValueError, match="htsat model takes no patch size"):
        profile_model(im.model, loader, multilabel=True, patch_sizes=[16], latency_runs=1)

    # a budget picks a row; predict then feeds the windows pooled as the profile did
    store_profile(profile, profile_path(im.weights))
    fresh = load_inference_model(im.weights, device="cpu")
    cheapest = min(profile["rows"], key=lambda r: r["gflops"])
    within = [r for r in profile["rows"] if r["gflops"] <= cheapest["gflops"] * 1.01]
    best = max(within, key=lambda r: (r["mAP"], -r["gflops"]))
    choice = fresh.choose(max_gflops=cheapest["gflops"] * 1.01)
    assert (choice.point.frames, str(choice.point.compression)) == (best["frames"], best["compression"])
    clip = tone(WINDOW, FREQ[0])
    r = fresh.predict(clip, sample_rate=SR, max_gflops=cheapest["gflops"] * 1.01, framewise=True, precision="fp32")
    c = 64 // best["frames"]
    spec = F.avg_pool1d(finish_input(log_mel(clip, FEATURES), FEATURES).T[None], c, c)[0].T
    with torch.no_grad():
        out = fresh.model.sed(spec[None])
    assert r["input_frames"] == best["frames"] and r["compression"] == best["compression"]
    assert r["top"][0]["score"] == pytest.approx(float(torch.sigmoid(out.clip).max()), abs=1e-5)
    assert r["sed"]["frame_hop_s"] == pytest.approx(0.01 * c)
    with pytest.raises(ValueError, match="no profiled input length fits"):
        fresh.choose(max_gflops=cheapest["gflops"] / 2)
    profile_path(im.weights).unlink()


def test_cli_evaluate_profiles_input_lengths_and_predict_budgets_with_it(model_dir, tmp_path, capsys):
    from flexiast.models import load_model as load_weights

    # the model under labels that sort as the folder reader's classes do
    model = load_weights(model_dir).adapt(labels=("a_low", "b_high"))
    weights = model.save_pretrained(tmp_path / "model", inference={"features": FEATURES.to_dict(),
                                                                   "compression": "none", "multilabel": True})
    g = torch.Generator().manual_seed(3)
    for c, name in enumerate(("a_low", "b_high")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for k in range(4):
            wave = tone(WINDOW, FREQ[c]) + 0.003 * torch.randn(WINDOW, generator=g)
            sf.write(tmp_path / "data" / name / f"{k}.wav", wave.numpy(), SR, subtype="FLOAT")
    assert main(["evaluate", str(weights), "--data", f"folder:{tmp_path / 'data'}", "--input-lengths", "32,64",
                 "--latency-runs", "1", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "| input frames | pooling |" in out and "| 32 | avgpool:2 |" in out
    profile = read_profile(profile_path(weights))
    assert profile["row_kind"] == "input_length" and profile["clips"] == 8
    assert (tmp_path / "eval-model-lengths" / "profile.csv").exists()
    cheap = min(r["gflops"] for r in profile["rows"])
    assert main(["predict", str(weights), str(tmp_path / "data" / "a_low" / "0.wav"), "--max-gflops",
                 f"{cheap * 1.001:.9g}", "--json", "--precision", "fp32"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["input_frames"], r["compression"]) == (32, "avgpool:2") and r["events"][0]["label"] == "a_low"


# -- embeddings and HEAR -----------------------------------------------------------------------------------
def test_embeddings_use_the_models_own_time_steps(im, two_sounds):
    wave = two_sounds[0][:48000]  # 1.5 s: 151 frames; the last layer's columns are 8 frames (80 ms)
    r = embed_audio(im, wave, sample_rate=SR, frames=True, precision="fp32")
    assert r["patch_size"] is None
    n = math.ceil(151 / 8)
    # column c covers frames 8c .. 8c + 7, centred at (8c + 3.5) * 10 ms (frame t centred at t * 320 samples)
    np.testing.assert_allclose(r["timestamps"].numpy(), (8 * np.arange(n) + 3.5) * 0.01, atol=1e-9)
    assert r["frames"].shape == (n, 32)
    first = embed_audio(im, wave, sample_rate=SR, frames=True, layer=0)  # the patch embeddings: 4-frame columns
    np.testing.assert_allclose(first["timestamps"].numpy(), (4 * np.arange(math.ceil(151 / 4)) + 1.5) * 0.01,
                               atol=1e-9)
    # a short clip's clip embedding is HTS-AT's latent output, the mean of its tokens over real positions
    short = two_sounds[0][:16000]
    got = embed_audio(im, short, sample_rate=SR, frames=True, precision="fp32")
    spec = finish_input(log_mel(short, FEATURES), FEATURES)[None]
    with torch.no_grad():
        sed = im.model.sed(spec)
        tokens = im.model.embed(spec)
    # 64 input frames: 8 columns of 8, all real; 0.5 s of audio gives 51 frames, so 7 columns are kept
    torch.testing.assert_close(got["clip"], sed.embedding[0], rtol=0, atol=1e-5)
    assert tokens.grid == (2, 8)  # c_freq_bin = 16 bins / 8 = 2 frequency rows
    by_hand = tokens.tokens.reshape(1, 2, 8, 32).mean(dim=1)[0]  # TokenEmbedding.frames() on its grid
    torch.testing.assert_close(tokens.frames()[0], by_hand)
    torch.testing.assert_close(got["frames"], by_hand[:7], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="htsat model takes no patch size"):
        embed_audio(im, short, sample_rate=SR, patch_size=16, precision="fp32")


def test_hear_api_on_htsat_weights(model_dir, two_sounds):
    model = load_model(str(model_dir), device="cpu", precision="fp32")
    assert model.sample_rate == SR and model.scene_embedding_size == 32 and model.patch_size is None
    audio = torch.stack([two_sounds[0][:48000], two_sounds[0][16000:64000]])
    emb, stamps = get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, 19, 32) and stamps.shape == (2, 19)
    np.testing.assert_allclose(np.diff(stamps[0].numpy()), 80.0, atol=1e-3)  # regular: one column, 80 ms
    assert stamps[0, 0].item() == pytest.approx(35.0)
    scene = get_scene_embeddings(audio[:, :16000], model)
    spec = torch.stack([finish_input(log_mel(a, FEATURES), FEATURES) for a in audio[:, :16000]])
    with torch.no_grad():
        torch.testing.assert_close(scene, model.network.sed(spec).embedding, rtol=0, atol=1e-5)


# -- export ---------------------------------------------------------------------------------------------
def test_onnx_export_of_spectrogram_and_waveform_graphs(im, model_dir, tmp_path, capsys):
    assert main(["export", str(model_dir), str(tmp_path / "spec.onnx")]) == 0
    out = capsys.readouterr().out
    assert "htsat, 64 input frames" in out and "within 0.0001" in out
    meta = json.loads((tmp_path / "spec.json").read_text())
    assert meta["arch"] == "htsat" and meta["patch_size"] is None and meta["input_shape"] == ["batch", 64, 16]
    assert main(["export", str(model_dir), str(tmp_path / "wave.onnx"), "--input", "waveform"]) == 0
    out = capsys.readouterr().out
    assert f"waveform [batch, {WINDOW}] at 32000 Hz" in out and "within 0.001" in out
    # the waveform graph on a clip, against the features and the network called directly
    import onnxruntime as ort

    clip = tone(WINDOW, FREQ[1]) + tone(WINDOW, FREQ[0])
    session = ort.InferenceSession(str(tmp_path / "wave.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"waveform": clip[None].numpy()})[0]
    with torch.no_grad():
        ref = im.model(finish_input(log_mel(clip, FEATURES), FEATURES)[None])
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-3)
    assert main(["export", str(model_dir), str(tmp_path / "x.onnx"), "--patch-size", "16"]) == 2
    assert "htsat model takes no patch size" in capsys.readouterr().err
    assert main(["export", str(model_dir), str(tmp_path / "hf"), "--format", "hf"]) == 2
    assert "htsat model is exported to ONNX or flexiast" in capsys.readouterr().err


def test_flops_per_input_length(model_dir, capsys):
    assert main(["flops", "--checkpoint", str(model_dir), "--input-lengths", "16,32,64", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    model = create_model("htsat", **TINY).eval()
    assert [r["frames"] for r in rows] == [16, 32, 64]
    for r in rows:
        spec = torch.zeros(1, r["frames"], 16)
        assert r["forward_gflops"] == pytest.approx(measured_flops(model, spec) / 1e9, rel=1e-9)
    assert main(["flops", "--model", "htsat-tiny"]) == 0
    out = capsys.readouterr().out
    assert "FLOPs per clip of each input length" in out and "  256  " in out and " 1024 " in out
    with pytest.raises(SystemExit):
        main(["flops", "--model", "htsat-tiny", "--patch-sizes", "16"])
    assert "htsat model takes no patch size" in capsys.readouterr().err


# -- the command line and bad requests -----------------------------------------------------------------
def test_cli_predict_writes_events_and_framewise(model_dir, two_sounds, tmp_path, capsys):
    _, path = two_sounds
    assert main(["predict", str(model_dir), path, "--threshold", "0.5", "--framewise", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [e["label"] for e in r["events"]] == ["low", "high"] and r["sed"]["threshold"] == 0.5
    assert len(r["framewise"]["scores"]) == 201 and r["framewise"]["labels"] == ["low", "high"]
    assert main(["predict", str(model_dir), path]) == 0
    text = capsys.readouterr().out
    assert "64 input frames" in text and "patch" not in text and "2 event(s) above 0.5" in text
    assert main(["predict", str(model_dir), path, "--out", str(tmp_path / "p.jsonl"), "--quiet", "--workers", "0"]) == 0
    row = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert [e["label"] for e in row["events"]] == ["low", "high"] and "framewise" not in row
    assert main(["predict", str(model_dir), path, "--out", str(tmp_path / "p.csv"), "--quiet", "--workers", "0"]) == 0
    import csv

    with open(tmp_path / "p.csv", newline="") as f:
        csv_row = next(csv.DictReader(f))
    assert [e[2] for e in json.loads(csv_row["events"])] == ["low", "high"] and csv_row["patch_size"] == ""
    with pytest.raises(SystemExit):
        main(["predict", str(model_dir), path, "--out", str(tmp_path / "q.csv"), "--framewise"])
    assert "--framewise keeps each file's framewise scores in a .jsonl output" in capsys.readouterr().err


def test_bad_requests_name_the_setting_and_the_family(im, model_dir, two_sounds, data, tmp_path, capsys):
    _, path = two_sounds
    assert main(["predict", str(model_dir), path, "--patch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "--patch-size" in err and "htsat model takes no patch size" in err
    assert main(["evaluate", str(model_dir), "--patch-sizes", "16,32"]) == 2
    assert "--patch-sizes" in capsys.readouterr().err
    wrong = json.dumps({**FEATURES.to_dict(), "num_mel_bins": 64})
    assert main(["predict", str(model_dir), path, "--features", wrong]) == 2
    assert "the model takes 16 mel bins, the features give 64" in capsys.readouterr().err
    loader = [{"spec": torch.zeros(2, 64, 64), "target": data[1][:2], "index": torch.arange(2), "errors": []}]
    with pytest.raises(ValueError, match="spectrogram has 64 mel bins; this HTS-AT was built for input_fdim=16"):
        profile_model(im.model, loader, multilabel=True, latency_runs=1)
    with pytest.raises(CheckpointError, match="holds a model of the htsat family .* the ast family is expected"):
        AST.from_pretrained(model_dir)
    assert main(["convert", str(model_dir), str(tmp_path / "hf"), "--format", "hf"]) == 2
    assert "a htsat model is saved as flexiast" in capsys.readouterr().err
    ast_model = load_inference_model(model_dir, device="cpu")
    ast_like = AST(2, embed_dim=16, depth=1, num_heads=2, patch_size=16, input_fdim=16, input_tdim=64)
    with pytest.raises(ValueError, match="no framewise output"):
        ast_model.__class__(ast_like, FeatureConfig(num_mel_bins=16, target_length=64), True,
                            ast_model.weights).prediction_task(threshold=0.3)
