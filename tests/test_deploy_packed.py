"""Deployment of clips at their own lengths, packed (ElasticAST, Feng et al., Interspeech 2024,
arXiv 2407.08691): predict, embed, HEAR and evaluate on real FSDD speech of mixed lengths.

The model is a tiny AST with ElasticAST's attention pooling (64 mel bins, 48 frames, patch 16),
its weights drawn at random with a large spread so that its outputs depend on the input. Every
reference is computed here, clip by clip: the file's log-mel, normalised, at its own length (or
cut and padded as the test says), through the model alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from flexiast import AST
from flexiast.audio import load_audio
from flexiast.batch import embed_files, predict_files
from flexiast.checkpoints import save_safetensors
from flexiast.cli import main
from flexiast.data import read_manifest
from flexiast.deploy.profiling import evaluate_checkpoint
from flexiast.embeddings import embed_audio
from flexiast.evaluate import evaluate_model, profile_points
from flexiast.features import SILENCE_DB, FeatureConfig, log_mel, normalize, pad_or_cut
from flexiast.inference import load_inference_model
from flexiast.models import create_model
from flexiast.models.packing import Clips
from flexiast.models.points import OperatingPoint
from flexiast.profiles import read_profile
from flexiast.report import profiles_figure
import flexiast.hear as hear

BINS, FRAMES, PATCH = 64, 48, 16
FEATURES = FeatureConfig(num_mel_bins=BINS, target_length=FRAMES, mean=-3.0856, std=5.309)
SHORT = ("6_yweweler_1.wav", "6_nicolas_0.wav", "4_yweweler_0.wav")  # 14, 20 and 39 frames (14: under a patch)
LONG = ("0_lucas_1.wav", "8_lucas_0.wav")  # 66 and 112 frames: windowed


def _tiny_ast() -> AST:
    torch.manual_seed(0)
    model = AST(10, input_fdim=BINS, input_tdim=FRAMES, embed_dim=32, depth=2, num_heads=2, patch_size=PATCH,
                pooling="attention")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def _save_run(model, folder: Path, recipe: dict | None) -> Path:
    """A run folder as training leaves it: best.safetensors with its features, and (if given) the recipe."""
    folder.mkdir(parents=True)
    save_safetensors(model, folder / "best.safetensors",
                     inference={"features": FEATURES.to_dict(), "compression": "none", "multilabel": False})
    if recipe is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(recipe))
    return folder


@pytest.fixture(scope="module")
def model() -> AST:
    return _tiny_ast()


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory) -> dict:
    """The same weights as a run trained packed (``data.batching: packed``) and as one trained fixed."""
    root = tmp_path_factory.mktemp("runs")
    return {"packed": _save_run(model, root / "packed", {"data": {"batching": "packed", "row_tokens": 2048}}),
            "fixed": _save_run(model, root / "fixed", {"data": {"batching": "fixed"}})}


@pytest.fixture(scope="module")
def im(runs):
    return load_inference_model(runs["packed"], device="cpu")


@pytest.fixture(scope="module")
def files(fsdd_dir) -> dict:
    return {name: str(fsdd_dir / name) for name in SHORT + LONG}


def _own(path, frames: int | None = None) -> torch.Tensor:
    """The file's model input at its own length (cut to ``frames`` where given), padded to one patch."""
    spec = log_mel(load_audio(path), FEATURES)
    spec = spec[:frames] if frames is not None else spec
    return normalize(pad_or_cut(spec, max(PATCH, spec.shape[0])), FEATURES)


def _scores(result: dict) -> torch.Tensor:
    out = torch.full((10,), float("nan"))
    for t in result["top"]:
        out[t["index"]] = t["score"]
    return out


# -- predict ---------------------------------------------------------------------------------------
def test_a_short_file_runs_at_its_own_length_and_equals_the_file_alone(im, model, files):
    rows = predict_files(im, list(files.values()), workers=0, batch_size=4, top_k=10, precision="fp32")
    for name in SHORT:
        row = next(r for r in rows if r["path"] == files[name])
        spec = _own(files[name])
        assert row["packed"] and row["num_windows"] == 1 and row["input_frames"] == max(PATCH, spec.shape[0])
        with torch.no_grad():
            alone = torch.softmax(model(spec[None]), -1)[0]
            padded = torch.softmax(model(normalize(pad_or_cut(log_mel(load_audio(files[name]), FEATURES), FRAMES),
                                                   FEATURES)[None]), -1)[0]
        torch.testing.assert_close(_scores(row), alone, rtol=0, atol=1e-5)
        assert (alone - padded).abs().max() > 1e-3  # padding to the window would have given other scores
    # The 14-frame file is shorter than a patch: padded to one patch column (16 frames), no more.
    assert next(r for r in rows if r["path"] == files[SHORT[0]])["input_frames"] == PATCH


def test_a_long_file_is_windowed_as_before(im, files):
    for name in LONG:
        packed = im.predict(files[name], top_k=10, precision="fp32")
        padded = im.predict(files[name], top_k=10, precision="fp32", packed=False)
        assert packed["packed"] and not padded["packed"]
        assert len(packed["windows"]) == len(padded["windows"]) > 1
        assert [w["start_s"] for w in packed["windows"]] == [w["start_s"] for w in padded["windows"]]
        torch.testing.assert_close(_scores(packed), _scores(padded), rtol=0, atol=1e-5)


def test_a_files_result_does_not_depend_on_the_files_it_is_packed_with(im, files):
    target = files[SHORT[1]]
    alone = predict_files(im, [target], workers=0, batch_size=1, top_k=10, precision="fp32")[0]
    crowds = [[files[SHORT[0]], target, files[LONG[1]]], [files[LONG[0]], files[SHORT[2]], target]]
    for crowd, batch, row_tokens in zip(crowds, (8, 3), (2048, 20)):  # 20 tokens: a row per clip or two
        rows = predict_files(im, crowd, workers=0, batch_size=batch, top_k=10, precision="fp32",
                             row_tokens=row_tokens)
        torch.testing.assert_close(_scores(rows[crowd.index(target)]), _scores(alone), rtol=0, atol=1e-5)


def test_packing_follows_how_the_weights_were_trained(runs, files):
    short = files[SHORT[1]]
    trained_packed = load_inference_model(runs["packed"], device="cpu")
    trained_fixed = load_inference_model(runs["fixed"], device="cpu")
    assert (trained_packed.batching, trained_fixed.batching) == ("packed", "fixed")
    assert trained_packed.predict(short)["input_frames"] == 20
    assert trained_fixed.predict(short)["input_frames"] == FRAMES  # padded to the window, as trained
    assert trained_fixed.predict(short, packed=True)["input_frames"] == 20


def test_a_family_that_cannot_pack_keeps_padded_windows(tmp_path, files):
    features = FeatureConfig.htsat(num_mel_bins=16, target_length=64)
    torch.manual_seed(0)
    cnn = create_model("cnn14", num_classes=3, input_fdim=16, input_tdim=64, channels=(4, 8, 8)).eval()
    folder = cnn.save_pretrained(tmp_path / "cnn", inference={"features": features.to_dict(), "multilabel": False})
    cim = load_inference_model(folder, device="cpu")
    assert not cim.packing()
    with pytest.warns(UserWarning, match="cannot take packed clips"):
        asked = cim.predict(files[SHORT[1]], packed=True, precision="fp32")
    plain = cim.predict(files[SHORT[1]], precision="fp32")
    assert not asked["packed"] and asked["input_frames"] == plain["input_frames"] == 64
    assert asked["top"] == plain["top"]


# -- the row budget --------------------------------------------------------------------------------
def test_audio_longer_than_a_row_is_windowed_never_dropped(im, model, files):
    # 6 tokens: 2 prefix + one column of 4 (64 mel bins / 16); a row holds 16 of the 48 frames.
    name = SHORT[2]  # 39 frames: one window at its own length, were a row not shorter
    result = im.predict(files[name], top_k=10, precision="fp32", row_tokens=6)
    wave = load_audio(files[name])
    window, hop = 400 + 15 * 160, 8 * 160  # the samples of 16 frames; half of them, in whole frames
    starts = list(range(0, wave.numel() - window + 1, hop))
    starts += [wave.numel() - window] if starts[-1] + window < wave.numel() else []  # the last ends at the end
    assert result["input_frames"] == PATCH and len(result["windows"]) == len(starts) == 4
    assert result["window_s"] == pytest.approx(window / 16000)
    assert [w["start_s"] for w in result["windows"]] == pytest.approx([s / 16000 for s in starts])
    with torch.no_grad():
        specs = torch.stack([normalize(log_mel(wave[s:s + window], FEATURES), FEATURES) for s in starts])
        expected = torch.softmax(model(specs), -1).mean(0)
    torch.testing.assert_close(_scores(result), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"row_tokens=5 \(--row-tokens\) cannot hold the shortest clip"):
        im.predict(files[name], row_tokens=5)


# -- embeddings --------------------------------------------------------------------------------------
def test_attention_pooled_embedding_is_what_the_head_reads(model, files):
    spec = _own(files[SHORT[2]])[None]
    with torch.no_grad():
        tokens = model.embed(spec)
        pooled = tokens.pooled()
        torch.testing.assert_close(model.head(pooled), model(spec), rtol=0, atol=1e-6)
        torch.testing.assert_close(pooled, model.pool(tokens.tokens), rtol=0, atol=0)
        assert (pooled - tokens.mean()).abs().max() > 1e-2  # not the mean of the tokens


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_packed_embed_equals_each_clip_alone(model, files, layer):
    specs = [_own(files[n]) for n in SHORT] + [_own(files[LONG[0]], FRAMES)]
    with torch.no_grad():
        packed = model.embed(Clips(tuple(specs), row_tokens=30), layer=layer)
        for spec, got in zip(specs, packed):
            alone = model.embed(spec[None], layer=layer)
            assert got.grid == alone.grid
            torch.testing.assert_close(got.tokens, alone.tokens, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.prefix, alone.prefix, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.pooled(), alone.pooled(), rtol=1e-5, atol=1e-5)


def test_packed_embeddings_of_files_equal_each_file_alone(im, model, files, tmp_path):
    names = [SHORT[0], LONG[0], SHORT[1], SHORT[2]]
    data = embed_files(im, [files[n] for n in names], out=tmp_path / "e.safetensors", frames=True, workers=0,
                       batch_size=3, precision="fp32")
    assert data["metadata"]["packed"] is True
    offsets = data["frame_offsets"].tolist()
    for i, name in enumerate(names):
        one = embed_audio(im, files[name], frames=True, precision="fp32")
        torch.testing.assert_close(data["clip"][i], one["clip"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(data["frames"][offsets[i]:offsets[i + 1]], one["frames"], rtol=1e-5, atol=1e-5)
        if name in SHORT:  # one window at the file's own length, through the network alone
            with torch.no_grad():
                tokens = model.embed(_own(files[name])[None])
            assert one["windows"] == 1
            torch.testing.assert_close(one["clip"], tokens.pooled()[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(one["frames"], tokens.frames()[0], rtol=1e-5, atol=1e-5)


def test_hear_embeds_short_sounds_at_their_own_length(runs, model, files):
    hm = hear.load_model(str(runs["packed"]), precision="fp32", device="cpu")
    assert hm.packed
    audio = torch.stack([load_audio(files[n])[:5000] for n in (SHORT[2], LONG[0])])  # 29 frames each, under a window
    scene = hear.get_scene_embeddings(audio, hm)
    frames, stamps = hear.get_timestamp_embeddings(audio, hm)
    assert frames.shape == (2, 1, 32) and stamps.shape == (2, 1)  # one 16-frame column in 29 frames
    for i, sound in enumerate(audio):
        with torch.no_grad():
            tokens = model.embed(normalize(log_mel(sound, FEATURES), FEATURES)[None])
        torch.testing.assert_close(scene[i], tokens.pooled()[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(frames[i], tokens.frames()[0], rtol=1e-5, atol=1e-5)


# -- evaluate across lengths -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(fsdd_dir, tmp_path_factory) -> Path:
    """20 FSDD test clips (takes 0), 14 to 112 frames, in an FSDD layout."""
    root = tmp_path_factory.mktemp("digits")
    (root / "recordings").mkdir()
    for speaker in ("lucas", "yweweler"):
        for digit in range(10):
            name = f"{digit}_{speaker}_0.wav"
            (root / "recordings" / name).symlink_to(fsdd_dir / name)
    return root


def files_of(root: Path) -> list[str]:
    return [str(f) for f in sorted((root / "recordings").glob("*.wav"))]


def _accuracy(model, root: Path, frames: int, packed: bool) -> float:
    """Each clip cut to ``frames``; shorter ones at their own length (packed) or padded to ``frames``."""
    hits, clips = 0, sorted((root / "recordings").glob("*.wav"))
    for f in clips:
        spec = log_mel(load_audio(f), FEATURES)[:frames]
        spec = pad_or_cut(spec, max(PATCH, spec.shape[0]) if packed else frames)
        with torch.no_grad():
            hits += int(model(normalize(spec, FEATURES)[None]).argmax()) == int(f.name[0])
    return hits / len(clips)


def test_evaluate_profiles_accuracy_at_each_clip_length(im, model, digits, runs, tmp_path, capsys):
    data = read_manifest("fsdd", root=str(digits), split="test", task="digits")
    for packed in (True, False):
        result = evaluate_checkpoint(im, data=data, lengths=[0.25, 1.0], packed=packed, latency_runs=1,
                                     out=tmp_path / str(packed), precision="fp32")
        profile = result["profile"]
        assert profile["row_kind"] == "input_length" and profile["length_feed"] == "cut"
        assert profile.get("packed", False) is packed and result["stored"] is None
        rows = profile["rows"]
        assert [(r["seconds"], r["frames"], r["patch"]) for r in rows] == [(0.25, 23, [16, 16]), (1.0, 98, [16, 16])]
        for r in rows:
            assert r["accuracy"] == pytest.approx(_accuracy(model, digits, r["frames"], packed), abs=1e-9)
        assert ("gflops_mean" in rows[0]) is packed
        md = (tmp_path / str(packed) / "profile.md").read_text()
        assert "| 16x16 | 0.25 s | 23 |" in md and "| 16x16 | 1 s | 98 |" in md
        assert read_profile(tmp_path / str(packed))["rows"] == json.loads(json.dumps(rows))
    assert not (runs["packed"] / "best.profile.json").exists()  # a length profile chooses no point


def test_cli_profiles_a_fixed_length_model_across_lengths_and_no_budget_reads_it(model, runs, digits, tmp_path,
                                                                                   capsys):
    out = tmp_path / "cli"
    assert main(["evaluate", str(runs["fixed"]), "--data", f"fsdd:{digits},task=digits", "--split", "test",
                 "--lengths", "0.25,1", "--latency-runs", "1", "--precision", "fp32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a shorter clip padded to it" in printed and "not stored beside the weights" in printed
    fixed = read_profile(out)["rows"]
    assert fixed[1]["accuracy"] == pytest.approx(_accuracy(model, digits, 98, packed=False), abs=1e-9)
    assert main(["predict", str(runs["fixed"]), files_of(digits)[0], "--max-gflops", "1",
                 "--profile", str(out / "profile.json")]) == 2
    assert "over clip lengths" in capsys.readouterr().err



def test_a_packed_profile_at_the_trained_length_keeps_each_clip_up_to_it(im, model, digits, tmp_path):
    data = read_manifest("fsdd", root=str(digits), split="test", task="digits")
    result = evaluate_checkpoint(im, data=data, patch_sizes=[16, 24], latency_runs=1, out=tmp_path,
                                 precision="fp32", store=False)
    profile = result["profile"]
    assert profile["row_kind"] == "patch_size" and profile["packed"] is True
    row16 = profile["rows"][0]
    assert row16["accuracy"] == pytest.approx(_accuracy(model, digits, FRAMES, packed=True), abs=1e-9)
    assert row16["gflops_mean"] < row16["gflops"]  # most clips are shorter than the 48 frames a row is counted at
    assert result["files"]["json"].parent.name == tmp_path.name


def test_a_non_packing_family_is_profiled_across_lengths_padded(digits, tmp_path):
    features = FeatureConfig.htsat(num_mel_bins=16, target_length=64)
    torch.manual_seed(0)
    cnn = create_model("cnn14", num_classes=10, input_fdim=16, input_tdim=64, channels=(4, 8, 8)).eval()
    with torch.no_grad():
        for p in cnn.parameters():
            p.normal_(0.0, 0.3)
    folder = cnn.save_pretrained(tmp_path / "cnn", inference={"features": features.to_dict(), "multilabel": False})
    cim = load_inference_model(folder, device="cpu")
    data = read_manifest("fsdd", root=str(digits), split="test", task="digits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not asked to pack: no warning
        profile = evaluate_checkpoint(cim, data=data, lengths=[0.5, 1.0], latency_runs=1, out=tmp_path / "p",
                                      precision="fp32")["profile"]
    assert [(r["seconds"], r["frames"], r["patch"]) for r in profile["rows"]] == [(0.5, 51, None), (1.0, 101, None)]
    for r in profile["rows"]:
        hits = 0
        for f in files_of(digits):
            spec = pad_or_cut(log_mel(load_audio(f, 32000), features), r["frames"], SILENCE_DB)
            with torch.no_grad():
                hits += int(cnn(spec[None]).argmax()) == int(Path(f).name[0])
        assert r["accuracy"] == pytest.approx(hits / 20, abs=1e-9)
    with pytest.raises(ValueError, match="cannot take packed clips"):
        profile_points(cnn, packed=True)


def test_a_length_profile_at_several_patch_sizes_has_a_row_per_pair(im, model, digits, tmp_path):
    data = read_manifest("fsdd", root=str(digits), split="test", task="digits")
    profile = evaluate_checkpoint(im, data=data, lengths=[0.25, 1.0], patch_sizes=[16, 32], latency_runs=1,
                                  out=tmp_path, precision="fp32")["profile"]
    # 32 frames of patch do not fit 0.25 s (23 frames): that pair is left out and named.
    assert [(r["patch"][0], r["seconds"]) for r in profile["rows"]] == [(16, 0.25), (16, 1.0), (32, 1.0)]
    assert profile["skipped_sizes"] == ["patch 32x32, PI, packed at 0.25 s"]
    row = profile["rows"][2]
    hits = 0
    for f in files_of(digits):
        spec = log_mel(load_audio(f), FEATURES)[:98]
        spec = normalize(pad_or_cut(spec, max(32, spec.shape[0])), FEATURES)
        with torch.no_grad():
            hits += int(model(spec[None], patch_size=32).argmax()) == int(Path(f).name[0])
    assert row["accuracy"] == pytest.approx(hits / 20, abs=1e-9)
    with pytest.raises(ValueError, match=r"several rows at one x value \(seconds\)"):
        profiles_figure([profile])


def test_evaluate_model_takes_a_loaders_own_clips(model, files):
    specs = tuple(_own(files[n]) for n in SHORT + (LONG[0],))
    with torch.no_grad():  # each clip's class alone is its target: only the clips alone score 1
        alone = [int(model(s[None]).argmax()) for s in specs]
    batch = {"spec": Clips(specs), "target": torch.eye(10)[alone], "index": torch.arange(4), "errors": []}
    out = evaluate_model(model, [batch], {"p": OperatingPoint(FRAMES, (PATCH, PATCH), "pi", packed=True)},
                         multilabel=False)
    assert out["p"]["accuracy"] == 1.0 and out["_lengths"]["p"] == {"16": 1, "20": 1, "39": 1, "66": 1}
