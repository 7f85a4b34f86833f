"""Evaluation, prediction, export and reports, on a FlexiAST trained on real audio (FSDD)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from flexiast import AST, PATCH_SIZES
from flexiast.audio import load_audio
from flexiast.checkpoints import CheckpointError, save_safetensors
from flexiast.cli import main
from flexiast.config import build_config
from flexiast.data import AudioDataset, read_manifest
from flexiast.features import FeatureConfig
from flexiast.inference import choose_row, load_inference_model, window_starts
from flexiast.report import profiles_figure, runs_figure
from flexiast.engine import train

from helpers import tiny_recipe
from reference_vit import pinv_resize

BINS, FRAMES = 64, 48  # the tiny recipe's input: 64 mel bins x 48 frames
WINDOW = 400 + (FRAMES - 1) * 160  # samples of 48 Kaldi frames (25 ms window, 10 ms shift at 16 kHz)


# -- a FlexiAST trained on FSDD (conftest's run), evaluated once -----------------------
@pytest.fixture(scope="module")
def evaluated(run) -> Path:
    """``flexiast evaluate`` of the run at every size in P (PI, both axes), stored with best.safetensors."""
    assert main(["evaluate", str(run), "--latency-runs", "2", "--label", "tiny FlexiAST"]) == 0
    return run / "eval-best-pi-both"


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _forward_gflops(d: int, layers: int, classes: int, patch: tuple[int, int]) -> float:
    """ViT forward FLOPs by hand: patch GEMM, per layer qkv + attention + proj + MLP (4x), head.

    The last layer serves only the 2 prefix tokens the head reads: their queries,
    attention rows, projections and MLPs, but keys and values for all ``s`` tokens.
    """
    n = (BINS // patch[0]) * (FRAMES // patch[1])
    s = n + 2
    per_layer = 2 * s * d * 3 * d + 4 * s * s * d + 2 * s * d * d + 2 * 2 * s * d * 4 * d
    last = 2 * (2 * s + 2) * d * d + 4 * 2 * s * d + 2 * 2 * d * d + 2 * 2 * 2 * d * 4 * d
    return (2 * n * patch[0] * patch[1] * d + (layers - 1) * per_layer + last + 2 * d * classes) / 1e9


def _test_clips(root: Path) -> list[tuple[Path, int]]:
    """FSDD's test split by its documented rule (takes 0-4), labels from the file names."""
    files = sorted((root / "recordings").glob("*.wav"))
    return [(f, int(f.name.split("_")[0])) for f in files if int(f.stem.split("_")[2]) < 5]


def test_evaluate_writes_the_table_and_its_numbers_are_right(run, evaluated, fsdd_small):
    rows = json.loads((evaluated / "profile.json").read_text())["rows"]
    assert [r["size"] for r in rows] == list(PATCH_SIZES)  # every size fits 64 x 48 (48 <= 48)
    table = _csv(evaluated / "profile.csv")
    assert [int(r["size"]) for r in table] == list(PATCH_SIZES)
    md = (evaluated / "profile.md").read_text()
    assert md.count("\n| ") == 1 + len(PATCH_SIZES) and "| 16x16 | 14 |" in md  # header + rows; 4x3 + 2 tokens
    # The profile is stored with the weights, where predict finds it.
    assert json.loads((run / "best.profile.json").read_text())["rows"] == rows

    model = AST.from_pretrained(run / "best.safetensors").eval()
    assert model.config.embed_dim == 32 and model.config.depth == 2
    feats = FeatureConfig(num_mel_bins=BINS, target_length=FRAMES, mean=-3.0856, std=5.309)
    clips = _test_clips(fsdd_small)
    assert json.loads((evaluated / "profile.json").read_text())["clips"] == len(clips) == 100
    # Independent path: clip by clip from the files, labels from the names, no DataLoader.
    from flexiast.features import log_mel, normalize, pad_or_cut

    specs = torch.stack([normalize(pad_or_cut(log_mel(load_audio(f), feats), FRAMES), feats) for f, _ in clips])
    labels = torch.tensor([y for _, y in clips])
    for row, line in zip(rows, table):
        p = (row["size"], row["size"])
        assert row["patch"] == list(p)
        with torch.no_grad():
            acc = float((model(specs, patch_size=p).argmax(-1) == labels).double().mean())
        assert row["accuracy"] == pytest.approx(acc, abs=1e-9)
        assert float(line["accuracy"]) == pytest.approx(acc, abs=1e-9)
        assert row["tokens"] == (BINS // p[0]) * (FRAMES // p[1]) + 2
        assert row["gflops"] == pytest.approx(_forward_gflops(32, 2, 10, p), rel=1e-12)
        assert 0 < row["latency_ms_min"] <= row["latency_ms"] <= row["latency_ms_max"]


def _expected_choice(table: list[dict], max_gflops: float) -> list[int]:
    fits = [r for r in table if float(r["gflops"]) <= max_gflops]
    best = max(float(r["accuracy"]) for r in fits)
    cheapest = min((r for r in fits if float(r["accuracy"]) == best), key=lambda r: float(r["gflops"]))
    return [int(cheapest["patch_freq"]), int(cheapest["patch_time"])]


def test_predict_with_a_gflops_budget_picks_the_most_accurate_size_that_fits(run, evaluated, fsdd_dir, capsys):
    table = _csv(evaluated / "profile.csv")
    clip = fsdd_dir / "7_theo_3.wav"
    costs = sorted(float(r["gflops"]) for r in table)
    for budget in (costs[2] * 1.0001, costs[5] * 1.0001, costs[-1] * 2):
        capsys.readouterr()
        assert main(["predict", str(run), str(clip), "--max-gflops", f"{budget!r}", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["patch_size"] == _expected_choice(table, budget), budget
        assert result["gflops_per_window"] <= budget
        assert "most accurate profiled patch size" in result["choice"]
    capsys.readouterr()
    assert main(["predict", str(run), str(clip), "--max-gflops", f"{costs[0] / 2!r}"]) == 2
    err = capsys.readouterr().err
    assert "no profiled patch size fits --max-gflops" in err and "the cheapest" in err
    # A latency budget: the most accurate row measured within it.
    latency = sorted(float(r["latency_ms"]) for r in table)[len(table) // 2]
    fits = [r for r in table if float(r["latency_ms"]) <= latency]
    best = max(fits, key=lambda r: (float(r["accuracy"]), -float(r["gflops"])))
    assert main(["predict", str(run), str(clip), "--max-ms", f"{latency!r}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["patch_size"] == [int(best["patch_freq"]), int(best["patch_time"])]


def test_choose_row_by_hand():
    rows = [{"patch": [8, 8], "gflops": 4.0, "latency_ms": 40.0, "accuracy": 0.90},
            {"patch": [16, 16], "gflops": 1.0, "latency_ms": 10.0, "accuracy": 0.88},
            {"patch": [24, 24], "gflops": 0.5, "latency_ms": 6.0, "accuracy": 0.88},
            {"patch": [32, 32], "gflops": 0.3, "latency_ms": 8.0, "accuracy": 0.80}]
    profile = {"metric": "accuracy", "rows": rows}
    assert choose_row(profile, max_gflops=10)["patch"] == [8, 8]
    assert choose_row(profile, max_gflops=1.0)["patch"] == [24, 24]  # tie at 0.88: the cheaper
    assert choose_row(profile, max_ms=7.0)["patch"] == [24, 24]
    assert choose_row(profile, max_gflops=0.4)["patch"] == [32, 32]
    with pytest.raises(ValueError, match="cheapest, 32x32"):
        choose_row(profile, max_gflops=0.1)
    with pytest.raises(ValueError, match="--max-gflops 2 and --max-ms 5"):
        choose_row(profile, max_gflops=2.0, max_ms=5.0)


def test_window_starts_by_hand():
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(100, 40, 25) == [0, 25, 50, 60]  # the last window ends at the end
    assert window_starts(30, 40, 10) == [0]
    assert window_starts(40, 40, 10) == [0]
    with pytest.raises(ValueError):
        window_starts(100, 40, 0)


@pytest.fixture(scope="module")
def long_wav(fsdd_dir, tmp_path_factory) -> Path:
    """30 s of FSDD clips (8 kHz) back to back, each followed by 0.25 s of silence."""
    parts, n = [], 0
    files = sorted(fsdd_dir.glob("*_lucas_1.wav"))
    i = 0
    while n < 30 * 8000:
        audio, rate = sf.read(files[i % len(files)], dtype="float32")
        parts += [audio, np.zeros(2000, dtype=np.float32)]
        n += len(audio) + 2000
        i += 1
    path = tmp_path_factory.mktemp("long") / "thirty_seconds.wav"
    sf.write(path, np.concatenate(parts)[: 30 * 8000], 8000)
    return path


def test_predict_on_30_seconds_reports_its_windows(run, long_wav, capsys):
    assert main(["predict", str(run), str(long_wav), "--top-k", "10", "--json", "--precision", "fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    samples = 30 * 16000  # resampled to the model's 16 kHz
    hop = WINDOW // 2 // 160 * 160  # half a window, in whole frame shifts: 3840 samples
    count = (samples - WINDOW) // hop + 1
    count += (count - 1) * hop + WINDOW < samples  # one more, ending at the end
    windows = result["windows"]
    assert len(windows) == count == 124
    assert windows[0]["start_s"] == 0 and windows[-1]["end_s"] == pytest.approx(30.0)
    assert windows[1]["start_s"] == pytest.approx(hop / 16000)
    assert result["window_s"] == pytest.approx(WINDOW / 16000) and result["hop_s"] == pytest.approx(hop / 16000)
    # The clip's scores are the mean of its windows' softmax scores.
    per_window = np.zeros((len(windows), 10))
    for i, w in enumerate(windows):
        assert len(w["top"]) == 10
        for x in w["top"]:
            per_window[i, x["index"]] = x["score"]
    np.testing.assert_allclose(per_window.sum(1), 1.0, atol=1e-5)
    mean = per_window.mean(0)
    for x in result["top"]:
        assert x["score"] == pytest.approx(mean[x["index"]], abs=1e-6)
    assert [x["score"] for x in result["top"]] == sorted((x["score"] for x in result["top"]), reverse=True)
    # Window i scores audio[i * hop : i * hop + WINDOW] (the last: the final WINDOW samples), as a training clip.
    from flexiast.features import log_mel, normalize, pad_or_cut

    im = load_inference_model(run)
    wave = load_audio(long_wav)
    for i, start in ((0, 0), (60, 60 * hop), (count - 1, samples - WINDOW)):
        assert windows[i]["start_s"] == pytest.approx(start / 16000)
        spec = normalize(pad_or_cut(log_mel(wave[start:start + WINDOW], im.features), FRAMES), im.features)
        with torch.no_grad():
            want = torch.softmax(im.model(spec[None]), -1)[0]
        np.testing.assert_allclose(per_window[i], want.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="--hop"):
        im.predict(long_wav, hop_seconds=0.6)  # longer than a window: audio would go unscored
    # Text output lists the windows too.
    assert main(["predict", str(run), str(long_wav), "--hop", "0.25", "--patch-size", "24"]) == 0
    text = capsys.readouterr().out
    assert f"120 windows of {WINDOW / 16000:.2f} s, hop 0.25 s" in text and "patch 24x24" in text  # at 0, 0.25, ..., 29.5 s, + the end
    assert text.count("    [") == 120


def test_predict_on_a_short_clip_matches_the_training_pipeline(run, fsdd_small):
    """A clip shorter than the window is padded as in training: the scores of the dataset's item."""
    im = load_inference_model(run)
    manifest = read_manifest("fsdd", root=fsdd_small, split="test", task="digits")
    ds = AudioDataset(manifest, im.features)
    short = [i for i, item in enumerate(manifest.items) if sf.info(item.path).frames * 2 < WINDOW]
    assert len(short) >= 3
    for i in short[:: max(1, len(short) // 3)][:3]:
        result = im.predict(manifest.items[i].path, patch_size=12, top_k=10, precision="fp32")
        assert len(result["windows"]) == 1 and result["aggregate"] == "none"
        with torch.no_grad():
            ref = torch.softmax(im.model(ds[i]["spec"][None], patch_size=12), -1)[0]
        for x in result["top"]:
            assert x["score"] == pytest.approx(float(ref[x["index"]]), abs=1e-6)
            assert x["label"] == str(x["index"])


def test_predict_whole_clip_in_one_pass(run, long_wav):
    from flexiast.features import log_mel, normalize

    im = load_inference_model(run)
    wave = load_audio(long_wav)
    spec = normalize(log_mel(wave, im.features), im.features)  # all 2998 frames, no cut
    assert spec.shape == (2998, BINS)
    with torch.no_grad():
        want = torch.softmax(im.model(spec[None], patch_size=16), -1)[0]
    result = im.predict(long_wav, whole=True, patch_size=16, top_k=10, precision="fp32")
    assert len(result["windows"]) == 1 and result["windows"][0]["end_s"] == pytest.approx(30.0)
    assert result["window_s"] == pytest.approx(30.0)
    for x in result["top"]:
        assert x["score"] == pytest.approx(float(want[x["index"]]), abs=1e-5)
    with pytest.raises(ValueError, match="budgets are profiled per clip"):
        im.predict(long_wav, whole=True, max_gflops=1.0)


# -- the model at another length, and fixed at one size --------------------------------------
def _tiny(input_tdim: int, **kw) -> AST:
    torch.manual_seed(0)
    model = AST(5, embed_dim=32, depth=1, num_heads=2, input_fdim=BINS, input_tdim=input_tdim, **kw).eval()
    with torch.no_grad():
        model.pos_embed.normal_()
    return model


def test_pos_grid_policies_for_shorter_and_longer_inputs():
    model = _tiny(64)
    d = model.config.embed_dim
    stored = model.pos_embed[:, 2:].transpose(1, 2).reshape(1, d, 4, 4)  # 64 bins x 64 frames at 16
    ref = F.interpolate(stored, size=(4, 2), mode="bilinear", align_corners=False, antialias=True)  # patch 16x32

    def body(pos, grid):
        return pos[:, 2:].transpose(1, 2).reshape(1, d, *grid)

    with torch.no_grad():
        # 32 frames at patch 16: two of the four trained time columns.
        assert torch.equal(body(model.pos_embed_for(16, 16, (4, 2), "leading"), (4, 2)), stored[..., 0:2])
        assert torch.equal(body(model.pos_embed_for(16, 16, (4, 2), "centre"), (4, 2)), stored[..., 1:3])  # AST
        resized = model.pos_embed_for(16, 16, (4, 2), "resize")
        want = F.interpolate(stored, size=(4, 2), mode="bilinear", align_corners=False)
        torch.testing.assert_close(body(resized, (4, 2)), want, rtol=0, atol=1e-6)
        # At 16x32 the trained grid is first resized to 4x2 (FlexiAST); 32 frames then keep one column.
        torch.testing.assert_close(body(model.pos_embed_for((16, 32), (16, 32), (4, 1), "leading"), (4, 1)),
                                   ref[..., :1], rtol=0, atol=1e-6)
        for policy in ("leading", "centre", "resize"):  # longer: every policy stretches
            long = model.pos_embed_for((16, 32), (16, 32), (4, 5), policy)
            want = F.interpolate(ref, size=(4, 5), mode="bilinear", align_corners=False)
            torch.testing.assert_close(body(long, (4, 5)), want, rtol=0, atol=1e-6)
            assert torch.equal(long[:, :2], model.pos_embed[:, :2])
    with pytest.raises(ValueError, match="pos_grid='middle' is not one of leading, centre, resize"):
        model(torch.zeros(1, 32, BINS), pos_grid="middle")


def test_a_model_trained_on_5_seconds_runs_on_1_and_30_seconds():
    model = _tiny(500)
    for frames in (100, 3000):
        for patch in (16, 32, (16, 48)):
            outs = []
            for policy in ("leading", "centre", "resize"):
                with torch.no_grad():
                    outs.append(model(torch.randn(1, frames, BINS, generator=torch.Generator().manual_seed(0)),
                                      patch_size=patch, pos_grid=policy))
                assert outs[-1].shape == (1, 5) and torch.isfinite(outs[-1]).all()
            if frames < 500:  # shorter: the three policies place the input differently
                assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_at_patch_size_is_the_same_model_fixed_at_one_size():
    model = _tiny(64)
    torch.manual_seed(1)
    spec = torch.randn(2, 64, BINS)
    for patch, resize in ((8, "pi"), ((16, 32), "pi"), (24, "bl"), (16, "pi")):
        fixed = model.at_patch_size(patch, resize=resize)
        p = fixed.config.patch_size
        assert p == ((patch, patch) if isinstance(patch, int) else patch)
        if resize == "pi":  # the stored kernel is the PI-resized one (NumPy pinv reference)
            ref = pinv_resize(model.patch_embed.proj.weight.detach().double(), p).float()
            torch.testing.assert_close(fixed.patch_embed.proj.weight, ref, rtol=0, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(fixed(spec), model(spec, patch_size=patch, resize=resize), rtol=0, atol=1e-6)
    longer = model.at_patch_size(16, input_tdim=100)
    spec = torch.randn(1, 100, BINS)
    with torch.no_grad():
        torch.testing.assert_close(longer(spec), model(spec, patch_size=16), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="larger than the input"):
        model.at_patch_size(80)


# -- export -----------------------------------------------------------------------------------
def test_onnx_export_agrees_with_eager_at_two_patch_sizes(run, fsdd_small, tmp_path, capsys):
    import onnxruntime as ort

    im = load_inference_model(run)
    manifest = read_manifest("fsdd", root=fsdd_small, split="test", task="digits")
    ds = AudioDataset(manifest, im.features)
    specs = torch.stack([ds[i]["spec"] for i in (3, 50, 77)])  # real normalised log-mel
    for patch in ("8", "16x32"):
        path = tmp_path / f"model_{patch}.onnx"
        assert main(["export", str(run), str(path), "--patch-size", patch]) == 0
        assert "within 0.0001" in capsys.readouterr().out
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        p = (8, 8) if patch == "8" else (16, 32)
        with torch.no_grad():
            ref = im.model(specs, patch_size=p)
        for batch in (specs, specs[:1]):  # the batch axis is dynamic
            got = session.run(None, {"spec": batch.numpy()})[0]
            np.testing.assert_allclose(got, ref[: len(batch)].numpy(), rtol=0, atol=1e-4)
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["patch_size"] == list(p) and meta["input_shape"] == ["batch", FRAMES, BINS]
        assert meta["features"]["mean"] == -3.0856 and meta["labels"] == [str(i) for i in range(10)]
        assert meta["multilabel"] is False


def test_hugging_face_export_runs_in_transformers_with_its_feature_extractor(run, fsdd_dir, tmp_path):
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    out = tmp_path / "hf"
    with pytest.warns(UserWarning, match="one layer_norm_eps"):  # the head's 1e-5 becomes HF's 1e-6
        assert main(["export", str(run), str(out), "--format", "hf", "--patch-size", "24"]) == 0
    hf = ASTForAudioClassification.from_pretrained(out, attn_implementation="eager").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its note that some mel filters are empty
        extractor = ASTFeatureExtractor.from_pretrained(out)
    im = load_inference_model(run)
    wave = load_audio(fsdd_dir / "4_nicolas_2.wav").numpy()
    hf_spec = torch.from_numpy(extractor(wave, sampling_rate=16000, return_tensors="np")["input_values"])
    assert hf_spec.shape == (1, FRAMES, BINS)
    with torch.no_grad():
        ours = im.model(hf_spec, patch_size=24)
        theirs = hf(input_values=hf_spec).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)
    assert hf.config.id2label[3] == "3" and hf.config.problem_type == "single_label_classification"
    # Their features are ours, so the whole pipeline agrees with our prediction.
    result = im.predict(fsdd_dir / "4_nicolas_2.wav", patch_size=24, top_k=10)
    probs = torch.softmax(theirs[0], -1)
    for x in result["top"]:
        assert x["score"] == pytest.approx(float(probs[x["index"]]), abs=2e-3)


def test_saved_model_keeps_its_features_and_predicts(run, tmp_path, fsdd_dir):
    out = tmp_path / "saved"
    assert main(["export", str(run), str(out), "--format", "flexiast"]) == 0
    saved = load_inference_model(out)
    original = load_inference_model(run)
    assert saved.features == original.features and saved.multilabel is False
    clip = fsdd_dir / "2_george_8.wav"
    assert saved.predict(clip, patch_size=10)["top"] == original.predict(clip, patch_size=10)["top"]
    # A single .safetensors file carries them in its metadata.
    file = save_safetensors(original.model, tmp_path / "m.safetensors",
                            inference={"features": original.features.to_dict(), "multilabel": False})
    assert load_inference_model(file).features == original.features


# -- reports ------------------------------------------------------------------------------------
def test_report_draws_the_saved_numbers(run, evaluated, tmp_path, capsys):
    assert main(["evaluate", str(run), "--resize", "bl", "--no-store", "--latency-runs", "1",
                 "--patch-sizes", "8,16,32"]) == 0
    bl = run / "eval-best-bl-both"
    figure = tmp_path / "fig5.png"
    assert main(["report", str(evaluated), str(bl / "profile.json"), "--out", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pi_rows = json.loads((evaluated / "profile.json").read_text())["rows"]
    bl_rows = json.loads((bl / "profile.json").read_text())["rows"]
    fig = profiles_figure([json.loads((evaluated / "profile.json").read_text()),
                           json.loads((bl / "profile.json").read_text())])
    left, right = fig.axes
    pi_line, bl_line = left.lines
    assert pi_line.get_label().endswith("(PI)") and bl_line.get_linestyle() == "--"
    np.testing.assert_array_equal(pi_line.get_xdata(), [r["size"] for r in pi_rows])
    np.testing.assert_array_equal(bl_line.get_ydata(), [r["accuracy"] for r in bl_rows])
    np.testing.assert_array_equal(sorted(right.lines[0].get_xdata()), sorted(r["gflops"] for r in pi_rows))

    history = json.loads((run / "history.json").read_text())
    fig = runs_figure([(str(run), history), (str(run), history[:2])])
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_xdata(), [h["train_flops_cum"] / 1e12 for h in history])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [h["val_select"] for h in history])
    assert left.lines[-1].get_ydata()[0] == max(h["val_select"] for h in history)  # the baseline's best
    assert main(["report", str(run), "--out", str(tmp_path / "runs.svg")]) == 0
    assert (tmp_path / "runs.svg").read_text().lstrip().startswith("<?xml")
    assert main(["report", str(run), str(evaluated), "--out", str(tmp_path / "x.png")]) == 2
    assert "not both" in capsys.readouterr().err


# -- refusals -----------------------------------------------------------------------------------
def test_bad_requests_fail_with_the_setting_named(run, evaluated, tmp_path, fsdd_dir, fsdd_small, capsys):
    clip = str(fsdd_dir / "0_theo_0.wav")
    # Weights without features: the caller must name them.
    model = load_inference_model(run).model
    bare = save_safetensors(model, tmp_path / "bare.safetensors")
    assert main(["predict", str(bare), clip]) == 2
    assert "does not say which features" in capsys.readouterr().err
    assert main(["predict", str(bare), clip, "--features", json.dumps({"num_mel_bins": 128})]) == 2
    assert "takes 64 mel bins, the features give 128" in capsys.readouterr().err
    # A dataset name gives AST's statistics for it; the shape stays the model's.
    assert main(["predict", str(bare), clip, "--features", "speechcommands", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["window_s"] == pytest.approx(WINDOW / 16000)
    with pytest.warns(UserWarning, match="do not say whether the task is multi-label"):  # softmax, said so
        assert main(["predict", str(bare), clip, "--features", '{"mean": -3.0856, "std": 5.309}']) == 0
    capsys.readouterr()
    assert main(["predict", str(bare), clip, "--features", '{"mean": -3.0, "sd": 5.0}']) == 2
    assert "the fields are num_mel_bins" in capsys.readouterr().err
    assert main(["predict", str(bare), clip, "--features", '{"target_length": 96}']) == 2
    assert "the model takes 48 frames; the features give 96" in capsys.readouterr().err
    # A budget needs a profile.
    shutil.copytree(run, tmp_path / "copy", ignore=shutil.ignore_patterns("*.profile.json", "eval-*"))
    assert main(["predict", str(tmp_path / "copy"), clip, "--max-gflops", "1"]) == 2
    assert "has no stored profile" in capsys.readouterr().err
    # A patch larger than the input, a missing file, a file that is not audio.
    assert main(["predict", str(run), clip, "--patch-size", "64"]) == 2
    assert "larger than the input" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    assert main(["predict", str(run), str(junk)]) == 2
    assert "junk.wav: cannot decode audio" in capsys.readouterr().err
    # Data whose classes are not the model's.
    assert main(["evaluate", str(run), "--data", f"fsdd:{fsdd_small},task=speakers", "--no-store"]) == 2
    assert "classes are not the model's" in capsys.readouterr().err
    assert main(["predict", str(run), clip, "--weights", "averaged"]) == 2
    assert "has no averaged.safetensors" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no such file"):
        load_inference_model(tmp_path / "nothing")
    # Encoder-only weights would predict with a random head: refused.
    headless = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    torch.save({"model": headless, "model_config": model.config.to_dict()}, tmp_path / "encoder.pt")
    assert main(["predict", str(tmp_path / "encoder.pt"), clip, "--features", "speechcommands"]) == 2
    assert "encoder.pt: the weights hold no classifier head" in capsys.readouterr().err


def test_axis_wise_profiles_resize_one_axis(run, tmp_path, capsys):
    """FlexiAST Fig. 4a: time only keeps the stored 16 bins per patch; frequency only, 16 frames."""
    profiles = []
    for axes in ("both", "time", "freq"):
        out = tmp_path / axes
        assert main(["evaluate", str(run), "--axes", axes, "--patch-sizes", "8,32,64", "--no-store",
                     "--latency-runs", "1", "--out", str(out)]) == 0
        profiles.append(json.loads((out / "profile.json").read_text()))
    both, time_only, freq_only = profiles
    assert [r["patch"] for r in both["rows"]] == [[8, 8], [32, 32]] and both["skipped_sizes"] == [64]
    assert [r["patch"] for r in time_only["rows"]] == [[16, 8], [16, 32]]  # 64 > 48 frames: left out
    assert [r["patch"] for r in freq_only["rows"]] == [[8, 16], [32, 16], [64, 16]]  # 64 bins fit
    assert [r["tokens"] for r in freq_only["rows"]] == [8 * 3 + 2, 2 * 3 + 2, 1 * 3 + 2]
    for r in both["rows"]:
        assert set(r) >= {"accuracy", "mAP", "AUC", "d_prime"} and 0 <= r["mAP"] <= 1
    fig = profiles_figure(profiles)
    assert [line.get_marker() for line in fig.axes[0].lines] == ["o", "s", "^"]
    assert [line.get_label() for line in fig.axes[0].lines][1].endswith(", time")


def test_a_damaged_stored_profile_blocks_only_budgets(run, evaluated, tmp_path, fsdd_dir, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "best.profile.json").write_text('{"format": "flexiast-profile", "rows": [{"size": 8}')  # truncated
    clip = str(fsdd_dir / "5_yweweler_1.wav")
    assert main(["predict", str(copy), clip, "--patch-size", "16"]) == 0
    assert main(["export", str(copy), str(tmp_path / "saved"), "--format", "flexiast"]) == 0
    capsys.readouterr()
    assert main(["predict", str(copy), clip, "--max-gflops", "1"]) == 2
    assert "best.profile.json: not a profile (invalid JSON" in capsys.readouterr().err
    (copy / "best.profile.json").write_text(json.dumps({"format": "flexiast-profile", "rows": [{"size": 8}]}))
    assert main(["predict", str(copy), clip, "--max-gflops", "1"]) == 2
    assert "the profile lacks metric" in capsys.readouterr().err
    # evaluate writes it again
    assert main(["evaluate", str(copy), "--patch-sizes", "16,32", "--latency-runs", "1"]) == 0
    assert main(["predict", str(copy), clip, "--max-gflops", "1", "--json"]) == 0


def test_infinite_d_prime_is_written_as_null(tmp_path):
    from flexiast.evaluate import read_profile, store_profile

    profile = {"format": "flexiast-profile", "metric": "accuracy", "multilabel": False, "resize": "pi",
               "axes": "both", "input": {"frames": 48, "mel_bins": 64}, "machine": {"name": "x"},
               "rows": [{"size": 16, "patch": [16, 16], "tokens": 14, "gflops": 0.1, "latency_ms": 1.0,
                         "accuracy": 1.0, "AUC": 1.0, "d_prime": float("inf")}]}
    path = store_profile(profile, tmp_path / "p.json")
    assert '"d_prime": null' in path.read_text()
    assert read_profile(path)["rows"][0]["d_prime"] is None


def test_a_model_trained_last_on_compressed_input_is_fed_that_input(fsdd_small, tmp_path, fsdd_dir, capsys):
    """Coarse-to-fine's compressed-only models: fshift x2 gives 24 frames of 20 ms; pooling, 24 pooled frames."""
    for method in ("fshift", "avgpool"):
        out = tmp_path / method
        train(build_config(tiny_recipe(fsdd_small, out, phases=[{"epochs": 1, "compression": f"{method}:2"}])))
        im = load_inference_model(out)
        assert str(im.compression) == f"{method}:2" and im.model.config.input_tdim == FRAMES // 2
        manifest = read_manifest("fsdd", root=fsdd_small, split="test", task="digits")
        ds = AudioDataset(manifest, im.features, compression=im.compression)  # the training pipeline
        short = [i for i, item in enumerate(manifest.items) if sf.info(item.path).frames * 2 < im.window_samples]
        i = short[0]
        result = im.predict(manifest.items[i].path, top_k=10, precision="fp32")
        with torch.no_grad():
            ref = torch.softmax(im.model(ds[i]["spec"][None]), -1)[0]
        for x in result["top"]:
            assert x["score"] == pytest.approx(float(ref[x["index"]]), abs=1e-6)
        # fshift windows span 400 + 23 * 320 samples; pooled ones 400 + 47 * 160
        assert im.window_samples == (400 + 23 * 320 if method == "fshift" else WINDOW)
        assert main(["evaluate", str(out), "--patch-sizes", "8,16", "--latency-runs", "1"]) == 0
        profile = json.loads((out / "best.profile.json").read_text())
        assert profile["input"]["frames"] == 24 and profile["compression"] == f"{method}:2"
        capsys.readouterr()
        assert main(["export", str(out), str(tmp_path / "hf"), "--format", "hf"]) == 2
        assert "cannot compress time" in capsys.readouterr().err
    with pytest.raises(ValueError, match="the model takes 24 frames; the features give 48"):
        load_inference_model(out, compression="none")


def test_export_at_another_length_records_it(run, tmp_path, fsdd_dir):
    path = tmp_path / "long.onnx"
    assert main(["export", str(run), str(path), "--patch-size", "16", "--frames", "96"]) == 0
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["input_shape"] == ["batch", 96, BINS] and meta["features"]["target_length"] == 96
    assert meta["pos_grid"] == "leading"
    assert main(["export", str(run), str(tmp_path / "saved96"), "--format", "flexiast", "--frames", "96"]) == 0
    saved = load_inference_model(tmp_path / "saved96")
    assert saved.model.config.input_tdim == 96 and saved.features.target_length == 96
    assert saved.window_samples == 400 + 95 * 160
    assert len(saved.predict(fsdd_dir / "1_george_3.wav")["windows"]) == 1
