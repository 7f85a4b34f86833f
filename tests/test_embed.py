"""Embeddings and many-file inference (flexiast.embeddings, flexiast.batch, ``flexiast embed``,
``flexiast predict --out``) against computations written out here, on real FSDD audio."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from flexiast import AST
from flexiast import batch as batch_module
from flexiast.batch import embed_files, predict_files, read_embeddings, read_predictions
from flexiast.cli import main
from flexiast.embeddings import embed_audio
from flexiast.features import FeatureConfig
from flexiast.inference import batched_windows, load_inference_model

BINS, FRAMES, DEPTH, PREFIX = 64, 48, 3, 2
WINDOW = 400 + (FRAMES - 1) * 160  # samples of 48 Kaldi frames (25 ms window, 10 ms shift at 16 kHz)
CLIPS = ["0_george_0.wav", "1_jackson_3.wav", "2_lucas_5.wav", "3_nicolas_7.wav", "4_theo_9.wav",
         "5_yweweler_11.wav"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 3-layer, 32-wide AST on 64 mel bins x 48 frames, saved with its features. Its weights are
    drawn wider than the usual initialisation, so clips differ clearly in every output."""
    torch.manual_seed(0)
    model = AST(10, embed_dim=32, depth=DEPTH, num_heads=2, patch_size=16, input_fdim=BINS, input_tdim=FRAMES)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    info = {"features": FeatureConfig(num_mel_bins=BINS, target_length=FRAMES, mean=-3.0856, std=5.309).to_dict(),
            "compression": "none", "multilabel": False}
    return model.save_pretrained(tmp_path_factory.mktemp("embed") / "model", inference=info)


@pytest.fixture(scope="module")
def im(model_dir):
    return load_inference_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def audio(fsdd_dir, tmp_path_factory):
    """The FSDD clips of :data:`CLIPS` and a 3 s clip (exactly 48000 samples) of FSDD speech at 16 kHz."""
    import soxr

    root = tmp_path_factory.mktemp("audio")
    parts = []
    for name in CLIPS:
        x, rate = sf.read(fsdd_dir / name, dtype="float32")
        parts.append(soxr.resample(x, rate, 16000).astype(np.float32))
    long = np.concatenate(parts * 3)[:48000]
    assert long.size == 48000
    sf.write(root / "three_seconds.wav", long, 16000, subtype="FLOAT")
    return [fsdd_dir / n for n in CLIPS], root / "three_seconds.wav"


def _bad_files(folder):
    """An undecodable file, an empty WAV and one holding NaN: each must be skipped, named."""
    junk, empty, nan = folder / "junk.wav", folder / "empty.wav", folder / "nan.wav"
    junk.write_bytes(b"not audio at all")
    sf.write(empty, np.zeros(0, np.float32), 16000)
    sf.write(nan, np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    return junk, empty, nan


STEP = 16 * 160  # samples per token column: a 16-frame patch of 10 ms frames


def _specs(im, path):
    """The model's inputs for a clip as the embeddings cut it, written out: windows every
    STEP (the default hop, half a window of 3840 samples, rounded down to whole columns)
    from 0 until every column whose first frame (400 samples from 2560m) lies in the audio
    is in a window, each window's audio made into one input as a short clip is."""
    _, wave = im.waveform(path)
    columns = max(1, (wave.numel() - 400) // STEP + 1)
    starts = [STEP * k for k in range(max(1, columns - 2))]  # 3 columns per window
    return torch.cat([im.spectrograms(wave[s:s + WINDOW], im.hop())[0] for s in starts])


# -- one clip against the model's own layers ---------------------------------------------------------
def test_head_pooling_is_what_the_head_reads_and_gives_predicts_scores(im, audio):
    clip = audio[0][0]
    specs = _specs(im, clip)
    model = im.model
    with torch.no_grad():
        features = model.forward_features(specs)  # [windows, prefix + tokens, D]
        expected = features[:, :PREFIX].mean(dim=1).mean(dim=0)
        result = embed_audio(im, clip, precision="fp32")
        torch.testing.assert_close(result["clip"], expected, rtol=1e-5, atol=1e-5)
        # The head on that vector (one window: nothing averaged) gives the scores predict reports.
        assert len(specs) == 1
        scores = torch.softmax(model.head(result["clip"][None]), dim=-1)[0]
        top = im.predict(clip, top_k=10, precision="fp32")["top"]
        assert len(top) == 10
        for t in top:
            assert t["score"] == pytest.approx(float(scores[t["index"]]), rel=1e-5, abs=1e-6)
    assert result["layer"] == DEPTH and result["pooling"] == "head" and result["windows"] == len(specs)


def test_mean_pooling_is_the_mean_of_the_patch_tokens(im, audio):
    clip = audio[0][1]
    specs = _specs(im, clip)
    with torch.no_grad():
        expected = im.model.forward_features(specs)[:, PREFIX:].mean(dim=1).mean(dim=0)
    result = embed_audio(im, clip, pooling="mean", precision="fp32")
    torch.testing.assert_close(result["clip"], expected, rtol=1e-5, atol=1e-5)


def test_layer_0_is_the_patch_embedding_with_positions_and_layer_k_runs_k_blocks(im, audio):
    clip = audio[0][2]
    specs = _specs(im, clip)
    m = im.model
    with torch.no_grad():
        # Patch embedding by hand: a 16x16 convolution of [B, 1, bins, frames] with stride 16.
        x = specs.unsqueeze(1).transpose(2, 3)
        tokens = F.conv2d(x, m.patch_embed.proj.weight, m.patch_embed.proj.bias, stride=16).flatten(2).transpose(1, 2)
        assert tokens.shape[1] == (BINS // 16) * (FRAMES // 16)
        prefix = torch.cat([m.cls_token, m.dist_token], dim=1).expand(len(specs), -1, -1)
        layer0 = torch.cat([prefix, tokens], dim=1) + m.pos_embed
        layer1 = m.blocks[0](layer0)
    for layer, ref in ((0, layer0), (1, layer1), (-DEPTH, layer1)):
        mean = embed_audio(im, clip, layer=layer, pooling="mean", precision="fp32")
        head = embed_audio(im, clip, layer=layer, pooling="head", precision="fp32")
        torch.testing.assert_close(mean["clip"], ref[:, PREFIX:].mean(1).mean(0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head["clip"], ref[:, :PREFIX].mean(1).mean(0), rtol=1e-5, atol=1e-5)
    assert embed_audio(im, clip, layer=-1, precision="fp32")["layer"] == DEPTH
    for layer in (DEPTH + 1, -DEPTH - 2):
        with pytest.raises(ValueError, match=r"outside 0\.\.3"):
            embed_audio(im, clip, layer=layer)


def test_frames_of_3_seconds_by_hand(im, audio):
    """48000 samples, windows of 7920 (48 frames). A 16x16 patch makes 3 columns per window,
    frames 0-15, 16-31, 32-47, centred on samples (16c*160 + (16c+15)*160 + 400) / 2 =
    2560c + 1400 from the window's start: 1400, 3960, 6520. The default hop, half a window
    (3840), rounded down to whole columns is 2560, so windows start every 2560: the columns
    start at 2560m; m = 0..18 start on a frame inside the audio, so windows k = 0..16
    (the last covering columns 16-18, its audio padded past 48000): 17 windows; column 18's
    first frame, samples 46080-46479, lies in the audio. Column m
    lies in windows m-2..m; the window whose centre (2560k + 3960) is nearest is k = m-1,
    whose middle column it is, except m = 0 (window 0) and m = 18 (window 16). So 19 steps,
    2560m + 1400 samples: one column apart, regularly spaced."""
    result = embed_audio(im, audio[1], frames=True, precision="fp32")
    assert result["windows"] == 17
    assert result["timestamps"].tolist() == pytest.approx([(STEP * m + 1400) / 16000 for m in range(19)])
    assert result["frames"].shape == (19, 32)
    # Step 1 is the first window's middle column: its 4 tokens averaged over frequency;
    # step 18 the last window's (audio from 40960 on, padded) third column.
    _, wave = im.waveform(audio[1])
    first = im.spectrograms(wave[:WINDOW], im.hop())[0]
    last = im.spectrograms(wave[16 * STEP:], im.hop())[0]
    with torch.no_grad():
        tokens = im.model.forward_features(torch.cat([first, last]))[:, PREFIX:].reshape(2, 4, 3, 32)
    torch.testing.assert_close(result["frames"][1], tokens[0, :, 1].mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result["frames"][-1], tokens[1, :, 2].mean(0), rtol=1e-5, atol=1e-5)


def test_batched_windows_batches_across_clips_and_keeps_each_clips_rows():
    calls = []

    def compute(x):
        calls.append(len(x))
        return {"double": x * 2}

    items = [("a", torch.arange(5.0)[:, None, None]), ("bad", None), ("b", torch.arange(5.0, 8.0)[:, None, None]),
             ("c", torch.ones(1, 2, 1))]  # another shape: a batch of its own
    out = list(batched_windows(items, compute, batch_size=4))
    assert [k for k, _ in out] == ["a", "bad", "b", "c"]
    assert out[1][1] is None
    assert out[0][1]["double"].flatten().tolist() == [0, 2, 4, 6, 8]
    assert out[2][1]["double"].flatten().tolist() == [10, 12, 14]
    assert calls == [4, 4, 1]


# -- many files --------------------------------------------------------------------------------------
def test_batch_embeddings_equal_per_file_embeddings(im, audio, tmp_path):
    files = [str(p) for p in audio[0]] + [str(audio[1])]
    data = embed_files(im, files, out=tmp_path / "e.safetensors", frames=True, layer=2, pooling="mean",
                       batch_size=5, workers=0, precision="fp32")
    assert data["files"] == files and data["skipped"] == []
    offsets = data["frame_offsets"].tolist()
    assert offsets[0] == 0 and offsets[-1] == len(data["frames"]) == len(data["timestamps"])
    for i, f in enumerate(files):
        one = embed_audio(im, f, frames=True, layer=2, pooling="mean", precision="fp32")
        torch.testing.assert_close(data["clip"][i], one["clip"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(data["frames"][offsets[i]:offsets[i + 1]], one["frames"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(data["timestamps"][offsets[i]:offsets[i + 1]], one["timestamps"])
    # What was written is what was returned, with the model and the setting named.
    back = read_embeddings(tmp_path / "e.safetensors")
    for key in ("clip", "frames", "timestamps", "frame_offsets"):
        assert torch.equal(back[key], data[key])
    meta = back["metadata"]
    assert meta["model"]["weights"] == str(im.weights.resolve()) and meta["model"]["arch"] == "ast"
    assert meta["model"]["config"]["depth"] == DEPTH
    assert meta["model"]["stat"]["size"] == (im.weights / "model.safetensors").stat().st_size
    assert (meta["layer"], meta["pooling"], meta["patch_size"], meta["resize"], meta["frames"]) == \
        (2, "mean", [16, 16], "pi", True)
    assert meta["flexiast_version"]


def test_resume_appends_exactly_the_missing_files(im, audio, tmp_path):
    files = [str(p) for p in audio[0]]
    for suffix in (".npz", ".safetensors"):
        whole = embed_files(im, files, out=tmp_path / f"whole{suffix}", frames=True, batch_size=3, precision="fp32")
        half = tmp_path / f"half{suffix}"
        embed_files(im, files[:3], out=half, frames=True, batch_size=3, precision="fp32")
        seen = []
        real = batch_module.run_files

        def spy(im_, paths, task, **kw):
            seen.append(list(paths))
            return real(im_, paths, task, **kw)

        batch_module.run_files = spy
        try:
            resumed = embed_files(im, files, out=half, resume=True, frames=True, batch_size=3, precision="fp32")
        finally:
            batch_module.run_files = real
        assert seen == [files[3:]]
        back = read_embeddings(half)
        assert back["files"] == files == resumed["files"]
        for key in ("clip", "frames", "timestamps", "frame_offsets"):
            torch.testing.assert_close(back[key], whole[key], rtol=1e-5, atol=1e-5)
        # Other settings: refused, naming what differs, before anything runs.
        with pytest.raises(ValueError, match="layer 3 there, 1 here"):
            embed_files(im, files, out=half, resume=True, frames=True, layer=1)
        with pytest.raises(ValueError, match="pooling"):
            embed_files(im, files, out=half, resume=True, frames=True, pooling="mean")
        with pytest.raises(ValueError, match="exists"):
            embed_files(im, files, out=half)


def test_partial_results_are_written_every_k_files(im, audio, tmp_path, monkeypatch):
    written = []
    real = batch_module.write_embeddings
    monkeypatch.setattr(batch_module, "write_embeddings", lambda p, d: (written.append(len(d["files"])), real(p, d)))
    embed_files(im, audio[0][:5], out=tmp_path / "e.npz", save_every=2, precision="fp32")
    assert written == [2, 4, 5]


def test_unreadable_files_are_reported_with_their_path_and_the_rest_embedded(im, audio, tmp_path, capsys):
    junk, empty, nan = _bad_files(tmp_path)
    good = [str(p) for p in audio[0][:3]]
    files = [good[0], str(junk), good[1], str(empty), str(nan), str(tmp_path / "missing.wav"), good[2]]
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(im.weights), *files, "--out", str(out), "--precision", "fp32",
                 "--workers", "1", "--quiet"]) == 0
    data = read_embeddings(out)
    assert data["files"] == good
    reasons = {s["path"]: s["reason"] for s in data["skipped"]}
    assert list(reasons) == [str(junk), str(empty), str(nan), str(tmp_path / "missing.wav")]
    assert "cannot decode" in reasons[str(junk)] and "no samples" in reasons[str(empty)]
    assert "NaN" in reasons[str(nan)] and "no such file" in reasons[str(tmp_path / "missing.wav")]
    err = capsys.readouterr().err
    assert "skipped 4 file(s)" in err and f"{junk}: cannot decode" in err
    for i, f in enumerate(good):
        torch.testing.assert_close(data["clip"][i], embed_audio(im, f, precision="fp32")["clip"], rtol=1e-5, atol=1e-5)


def test_cli_embed_reads_folders_and_lists(im, audio, tmp_path, capsys):
    folder = tmp_path / "in" / "deeper"
    folder.mkdir(parents=True)
    for p in audio[0][:2]:
        (folder / p.name).symlink_to(p)
    (folder / "notes.txt").write_text("not audio")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{audio[0][2]}\n\n{audio[0][3]}\n")
    out = tmp_path / "e.npz"
    assert main(["embed", str(im.weights), str(tmp_path / "in"), "--list", str(listed), "--out", str(out),
                 "--layer", "1", "--pooling", "mean", "--frames", "--quiet", "--precision", "fp32"]) == 0
    data = read_embeddings(out)
    assert data["files"] == sorted(str(folder / p.name) for p in audio[0][:2]) + [str(audio[0][2]), str(audio[0][3])]
    assert data["metadata"]["layer"] == 1 and data["metadata"]["pooling"] == "mean"
    assert "wrote" in capsys.readouterr().out


def test_refusals_happen_before_any_model_runs(im, audio, tmp_path, monkeypatch, capsys):
    clip = str(audio[0][0])
    weights = str(im.weights)

    def never(*a, **k):
        raise AssertionError("the model ran")

    monkeypatch.setattr(AST, "forward", never)
    monkeypatch.setattr(AST, "embed", never)
    for layer in (str(DEPTH + 1), str(-DEPTH - 2)):
        assert main(["embed", weights, clip, "--out", str(tmp_path / "x.npz"), "--layer", layer]) == 2
        assert "outside 0..3" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["embed", weights, clip, "--out", str(tmp_path / "x.npz"), "--pooling", "max"])
    assert exit_.value.code == 2 and "invalid choice: 'max'" in capsys.readouterr().err
    # An existing output is refused before the model is even loaded.
    import flexiast.deploy.model

    monkeypatch.setattr(flexiast.deploy.model, "load_inference_model", never)
    existing = tmp_path / "old.safetensors"
    existing.write_bytes(b"keep me")
    for command in (["embed", weights, clip, "--out", str(existing)],
                    ["predict", weights, clip, "--out", str(tmp_path / "old.csv")]):
        (tmp_path / "old.csv").write_text("keep me")
        assert main(command) == 2
        assert "exists: give --resume" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me" and (tmp_path / "old.csv").read_text() == "keep me"
    with pytest.raises(SystemExit) as stop:  # an argparse error
        main(["embed", weights, clip, "--out", str(tmp_path / "x.txt")])
    assert stop.value.code == 2 and "must end in .safetensors or .npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --list and --resume go with --out
        main(["predict", weights, clip, "--resume"])


# -- predict over many files ---------------------------------------------------------------------------
def _scores(top: list[dict]) -> dict:
    return {t["label"]: t["score"] for t in top}


def test_batch_predict_rows_equal_per_file_predict(im, audio, tmp_path):
    junk, _, _ = _bad_files(tmp_path)
    files = [str(audio[0][0]), str(audio[1]), str(junk), str(audio[0][1])]
    rows = predict_files(im, files, out=tmp_path / "p.jsonl", top_k=10, batch_size=4, precision="fp32")
    assert [r["path"] for r in rows] == files
    assert "cannot decode" in rows[2]["error"]
    for row in (rows[0], rows[1], rows[3]):
        one = im.predict(row["path"], top_k=10, precision="fp32")
        assert row["num_windows"] == len(one["windows"]) and "windows" not in row
        assert row["patch_size"] == one["patch_size"] and row["duration_s"] == one["duration_s"]
        ref = _scores(one["top"])
        assert _scores(row["top"]) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert rows[1]["num_windows"] == 12
    assert read_predictions(tmp_path / "p.jsonl") == json.loads(json.dumps(rows))
    with_windows = predict_files(im, files[:2], windows=True, top_k=3, precision="fp32")
    assert len(with_windows[1]["windows"]) == 12


def test_batch_predict_csv_resumes_and_retries_bad_files(im, audio, tmp_path, capsys):
    files = [str(p) for p in audio[0][:4]]
    out = tmp_path / "p.csv"
    weights = str(im.weights)
    bad = tmp_path / "later.wav"
    bad.write_bytes(b"broken for now")
    assert main(["predict", weights, files[0], files[1], str(bad), "--out", str(out), "--top-k", "3",
                 "--quiet", "--precision", "fp32"]) == 0
    first = read_predictions(out)
    assert [r["path"] for r in first] == [files[0], files[1], str(bad)]
    assert first[2]["error"].startswith("cannot decode") and first[0]["error"] == ""
    assert f"{bad}: cannot decode" in capsys.readouterr().err
    # The bad file is repaired; the resumed run scores it and the two new files, and keeps the rest.
    x, rate = sf.read(files[0], dtype="float32")
    sf.write(bad, x, rate)
    assert main(["predict", weights, *files, str(bad), "--out", str(out), "--top-k", "3", "--resume",
                 "--quiet", "--precision", "fp32"]) == 0
    assert "2 already there" in capsys.readouterr().out
    rows = read_predictions(out)
    assert [r["path"] for r in rows] == files[:2] + files[2:] + [str(bad)]
    assert rows[:2] == first[:2]
    for row in rows:
        one = im.predict(row["path"], top_k=3, precision="fp32")
        assert row["error"] == "" and row["patch_size"] == "16x16" and int(row["windows"]) == len(one["windows"])
        assert [row[f"label_{r}"] for r in (1, 2, 3)] == [t["label"] for t in one["top"]]
        assert [float(row[f"score_{r}"]) for r in (1, 2, 3)] == pytest.approx([t["score"] for t in one["top"]],
                                                                               rel=1e-4)
    with open(out, newline="") as f:
        assert next(csv.reader(f))[:5] == ["path", "error", "patch_size", "duration_s", "windows"]
    # The settings of the rows are kept beside them; another --top-k or patch size is refused, naming it.
    assert json.loads((tmp_path / "p.csv.json").read_text())["top_k"] == 3
    assert main(["predict", weights, *files, "--out", str(out), "--top-k", "5", "--resume"]) == 2
    assert "other settings (top_k 3 there, 5 here)" in capsys.readouterr().err
    assert main(["predict", weights, *files, "--out", str(out), "--top-k", "3", "--resume", "--patch-size", "8"]) == 2
    assert "patch_size [16, 16] there, [8, 8] here" in capsys.readouterr().err
    # A wrong suffix, or --windows with a CSV, is an argparse error before anything loads.
    for args in (["--out", str(tmp_path / "p.txt")], ["--out", str(out), "--windows", "--resume"]):
        with pytest.raises(SystemExit) as stop:
            main(["predict", weights, *files, *args])
        assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "the output must end in .csv or .jsonl" in err and "--windows keeps each file's windows" in err
