"""Variable-length batches, the data and engine side (issue 29): token-budget micro-batches,
clips cut at a seeded offset, lengths from headers, the recipe's refusals, packed training on
FSDD and its resumption. The packed forward itself is tests/test_packing.py's."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast.audio import load_audio
from flexiast.config import ConfigError, build_config
from flexiast.data import AudioDataset, ClipLengths, Collate, TokenBatchSampler, clip_frames, clip_samples
from flexiast.data.readers import read_manifest
from flexiast.deploy.model import load_inference_model
from flexiast.distributed import DistInfo
from flexiast.engine import train
from flexiast.engine.point_sampler import PointSampler
from flexiast.engine.step import clips_kept
from flexiast.evaluate import evaluate_model
from flexiast.features import Compression, FeatureConfig, log_mel, normalize
from flexiast.models import create_model
from flexiast.models.packing import Clips
from flexiast.models.points import OperatingPoint

from helpers import killed_and_resumed_match, read_csv, tiny_recipe

TOKENS = [int(t) for t in np.random.default_rng(7).integers(3, 40, size=300)]


def _order(seed: int, epoch: int, n: int) -> list[int]:
    """The epoch's shuffle as the samplers' docstring states it: randperm of (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


# -- the token-budget sampler ------------------------------------------------------------------
@pytest.mark.parametrize("bucketed", [False, True])
def test_token_batches_are_deterministic_disjoint_and_resume_from_start(bucketed):
    world, accum, budget = 3, 2, 120
    ranks = [TokenBatchSampler(TOKENS, budget, accum=accum, bucketed=bucketed, seed=5, rank=r, world_size=world)
             for r in range(world)]
    steps = sum(TOKENS) // (budget * world * accum)
    for s in ranks:
        s.set_epoch(4)
        assert s.steps_per_epoch == steps and len(s) == steps * accum
    shares = [list(s) for s in ranks]
    assert all(len(share) == steps * accum for share in shares)  # every rank the same micro-batches
    flat = [i for share in shares for batch in share for i in batch]
    assert len(flat) == len(set(flat))  # a permutation: no clip on two ranks or twice
    again = TokenBatchSampler(TOKENS, budget, accum=accum, bucketed=bucketed, seed=5, rank=1, world_size=world)
    again.set_epoch(4)
    assert list(again) == shares[1]
    again.set_epoch(5)
    assert list(again) != shares[1]
    again.set_epoch(4, start=3)  # resumed after this rank's third micro-batch
    assert list(again) == shares[1][3:] and len(again) == steps * accum - 3


def test_packed_batches_fill_greedily_in_the_epochs_order_within_the_budget():
    budget = 100
    s = TokenBatchSampler(TOKENS, budget, seed=2)
    s.set_epoch(3)
    batches = s.batches()
    assert len(batches) == sum(TOKENS) // budget
    order = _order(2, 3, len(TOKENS))
    assert [i for b in batches for i in b] == order[:sum(map(len, batches))]  # no sorting, nothing skipped
    for a, b in zip(batches, batches[1:]):
        assert sum(TOKENS[i] for i in a) <= budget
        assert sum(TOKENS[i] for i in a) + TOKENS[b[0]] > budget  # a batch closes only when the next clip overflows


def test_bucketed_batches_pad_less_than_the_epochs_order_would():
    budget = 160
    s = TokenBatchSampler(TOKENS, budget, bucketed=True, seed=2)
    s.set_epoch(0)
    batches = s.batches()

    def padded(batch):
        return len(batch) * max(TOKENS[i] for i in batch)

    assert all(padded(b) <= budget for b in batches)
    waste = sum(padded(b) for b in batches) / sum(TOKENS[i] for b in batches for i in b) - 1
    order, unsorted, current = _order(2, 0, len(TOKENS)), [], []
    for i in order:  # the same order, batched by padded tokens without sorting
        if current and (len(current) + 1) * max(TOKENS[k] for k in current + [i]) > budget:
            unsorted.append(current)
            current = []
        current.append(i)
    unsorted_waste = sum(padded(b) for b in unsorted) / sum(TOKENS[i] for b in unsorted for i in b) - 1
    assert waste < 0.1 < unsorted_waste


def test_balanced_token_batches_draw_by_the_weights():
    tokens = [10] * 4
    weights = [1.0, 0.0, 3.0, 0.0]
    s = TokenBatchSampler(tokens, 20, weights=weights, seed=0)
    counts = np.zeros(4)
    for epoch in range(200):
        s.set_epoch(epoch)
        for batch in s:
            np.add.at(counts, batch, 1)
    assert counts[1] == counts[3] == 0
    assert counts[2] / counts.sum() == pytest.approx(0.75, abs=0.03)
    assert s.steps_per_epoch == 2  # an epoch is the clips' tokens' worth, whatever the draws


def test_a_clip_larger_than_a_micro_batch_is_refused():
    with pytest.raises(ValueError, match="does not fit a micro-batch of 30 tokens"):
        TokenBatchSampler([10, 31], 30)


# -- lengths, crops and batches of clips ----------------------------------------------------------
@pytest.fixture(scope="module")
def manifest(fsdd_small):
    return read_manifest("fsdd", root=str(fsdd_small), split="train")


@pytest.mark.parametrize("comp", ["none", "fshift:2", "avgpool:2"])
def test_lengths_from_headers_are_the_frames_the_features_have(manifest, comp):
    features = FeatureConfig(num_mel_bins=64, target_length=48, mean=-3.0, std=5.0)
    compression = Compression.parse(comp)
    items = manifest.items[:12]
    samples = clip_samples(type(manifest)(items, manifest.classes), 16000)
    pool = compression.factor if compression.method == "avgpool" else 1
    lengths = ClipLengths(1, 10_000, pool)
    frames = clip_frames(samples, features, compression, lengths)
    for item, n, f in zip(items, samples, frames):
        wave = load_audio(item.path)
        assert n == wave.numel()
        assert f == log_mel(wave, features, compression).shape[0] // pool
        info = sf.info(str(item.path))
        assert n == round(info.frames * 16000 / info.samplerate)  # 8 kHz FSDD read at 16 kHz


def test_training_clips_are_cut_at_a_seeded_offset_and_evaluation_keeps_the_leading_frames(manifest):
    features = FeatureConfig(num_mel_bins=64, target_length=48, mean=-3.0, std=5.0)
    lengths = ClipLengths(16, 24)
    train_set = AudioDataset(manifest, features, train=True, seed=3, lengths=lengths)
    eval_set = AudioDataset(manifest, features, lengths=lengths)
    offsets = set()
    for index in range(6):
        full = normalize(log_mel(load_audio(manifest.items[index].path), features), features)
        n = full.shape[0]
        assert n > 24
        for epoch in (0, 1):
            train_set.set_epoch(epoch)
            spec = train_set[index]["spec"]
            start = int(np.random.default_rng(np.random.SeedSequence([3, epoch, index])).integers(n - 24 + 1))
            assert spec.shape == (24, 64) and 0 <= start <= n - 24
            torch.testing.assert_close(spec, full[start: start + 24])
            torch.testing.assert_close(train_set[(epoch, index)]["spec"], spec)  # the same for a worker's key
            offsets.add(start)
        torch.testing.assert_close(eval_set[index]["spec"], full[:24])
    assert len(offsets) > 3
    short = AudioDataset(manifest, features, lengths=ClipLengths(400, 500))[0]["spec"]
    full = normalize(log_mel(load_audio(manifest.items[0].path), features), features)
    assert short.shape[0] == 400  # padded only up to the shortest clip the model takes
    torch.testing.assert_close(short[: full.shape[0]], full)
    assert (short[full.shape[0]:] == normalize(torch.tensor(0.0), features)).all()


def test_mixup_noise_and_masks_keep_a_clips_own_length(manifest):
    features = FeatureConfig(num_mel_bins=64, target_length=48, mean=-3.0, std=5.0)
    from flexiast.data import AugmentConfig
    frames = clip_frames(clip_samples(manifest, 16000), features, Compression(), ClipLengths(1, 10_000))
    for on in ("waveform", "spectrogram"):
        aug = AugmentConfig(freqm=8, timem=8, mixup=1.0, noise=True, mixup_on=on)
        ds = AudioDataset(manifest, features, train=True, augment=aug, lengths=ClipLengths(16, 10_000))
        for index in range(5):
            item = ds[index]
            assert item["spec"].shape == (max(frames[index], 16), 64)
            assert item["target"].sum() == pytest.approx(1.0) and (item["target"] > 0).sum() <= 2


def test_collate_packs_clips_or_pads_them_with_their_lengths():
    a, b = torch.randn(5, 4), torch.randn(3, 4)
    batch = [{"spec": a, "target": torch.ones(2), "index": 4}, {"error": "x.wav: bad", "index": 1},
             {"spec": b, "target": torch.zeros(2), "index": 9}]
    packed = Collate("packed", row_tokens=77)(batch)
    assert isinstance(packed["spec"], Clips) and packed["spec"].row_tokens == 77
    assert packed["spec"].lengths == (5, 3) and packed["index"].tolist() == [4, 9]
    assert packed["errors"] == ["x.wav: bad"]
    bucketed = Collate("bucketed", pad=-0.5)(batch)
    assert bucketed["spec"].shape == (2, 5, 4) and bucketed["lengths"].tolist() == [5, 3]
    torch.testing.assert_close(bucketed["spec"][1, :3], b)
    assert (bucketed["spec"][1, 3:] == -0.5).all()


# -- the recipe's refusals --------------------------------------------------------------------------
def _cnn14(raw: dict) -> dict:
    raw["model"] = {"arch": "cnn14", "preset": "micro"}
    raw["features"] = {"kind": "slaney_logmel", "num_mel_bins": 64, "target_length": 96}
    return raw


REFUSALS = {
    "packed_family": (lambda r: _cnn14({**r, "data": {**r["data"], "batching": "packed"}}),
                      ["data.batching", "cnn14", "bucketed"]),
    "draw_clip": (lambda r: {**r, "data": {**r["data"], "batching": "bucketed"},
                             "phases": [{"epochs": 1, "patch": {"sampler": "uniform", "sizes": [8, 16],
                                                                "draw": "clip"}}]},
                  ["phases[0].patch.draw", "packed"]),
    "pretraining": (lambda r: {**r, "model": {"arch": "ssast", "preset": "tiny"}, "pretrain": {"masked": 0.5},
                               "data": {**r["data"], "batching": "bucketed", "options": {"ignore_labels": True}}},
                    ["data.batching", "pretraining"]),
    "row_tokens": (lambda r: {**r, "data": {**r["data"], "batching": "packed", "row_tokens": 5}},
                   ["data.row_tokens", "16 frames"]),
    "batch_tokens": (lambda r: {**r, "data": {**r["data"], "batching": "packed", "batch_tokens": 10}},
                     ["data.batch_tokens", "14 tokens"]),
    "fixed_keeps_its_settings": (lambda r: {**r, "data": {**r["data"], "row_tokens": 100}},
                                 ["data.row_tokens", "fixed"]),
    "compile": (lambda r: {**r, "data": {**r["data"], "batching": "packed"}, "train": {**r["train"], "compile": True}},
                ["train.compile", "packed"]),
    "max_length": (lambda r: {**r, "features": {**r["features"], "max_length": 8},
                              "data": {**r["data"], "batching": "packed"}}, ["features.max_length", "8 frames"]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_names_its_setting(fsdd_small, tmp_path, case):
    make, words = REFUSALS[case]
    with pytest.raises(ConfigError) as e:
        build_config(make(tiny_recipe(fsdd_small, tmp_path / "run")), check_files=False)
    for word in words:
        assert word in str(e.value), str(e.value)


def test_a_row_shorter_than_the_longest_clip_cuts_it_to_fit(fsdd_small, tmp_path):
    from flexiast.config.batching import phase_clips

    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "run", data={"batching": "packed", "row_tokens": 11},
                                   features={"max_length": 48}), check_files=False)
    clips = phase_clips(cfg, 0, cfg.feature_config())
    # 64 bins x 16: 4 patch rows; 2 prefix tokens + 4 per 16-frame column: 2 columns (10 tokens) fit 11,
    # and 32 frames fill them (a 33rd frame would be left unread by every column)
    assert clips.train.longest == 32 and clips.train.shortest == 16


# -- the engine --------------------------------------------------------------------------------------
def test_a_clips_patch_is_drawn_from_seed_step_and_clip():
    points = [OperatingPoint(48, (p, p), "pi") for p in (8, 16, 24)]
    s = PointSampler(points, "uniform", seed=11)
    drawn = s.per_clip(5, [3, 7, 9])
    assert drawn == [s.per_clip(5, [i])[0] for i in (3, 7, 9)]  # whatever batch or rank holds the clip
    for i, point in zip((3, 7, 9), drawn):
        rng = np.random.default_rng(np.random.SeedSequence([11, 0xC11B, 5, i]))
        assert point is points[int(rng.choice(3, p=np.ones(3) / 3))]
    assert len({p.patch for p in s.per_clip(5, range(40))}) == 3


def test_the_clips_kept_are_summed_over_ranks_when_micro_batches_vary(monkeypatch):
    batches = [{"spec": Clips((torch.zeros(4, 2),) * 3)}, {"spec": None}]
    info = DistInfo(rank=0, world_size=2)
    assert clips_kept(batches, info, varies=False) == 6  # equal micro-batches: 3 x 2 ranks, no message
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.add_(5))  # the other rank kept 5
    assert clips_kept(batches, info, varies=True) == 8


def test_evaluation_scores_packed_clips_as_each_clip_alone(manifest):
    torch.manual_seed(0)
    features = FeatureConfig(num_mel_bins=64, target_length=48, mean=-3.0, std=5.0)
    model = create_model("ast-tiny", num_classes=10, input_fdim=64, input_tdim=48, embed_dim=32, depth=2,
                         num_heads=2).eval()
    ds = AudioDataset(type(manifest)(manifest.items[:10], manifest.classes), features,
                      lengths=ClipLengths(16, 96))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=Collate("packed", row_tokens=120))
    points = {"16": OperatingPoint(48, (16, 16), "pi"), "8": OperatingPoint(48, (8, 8), "pi")}
    result = evaluate_model(model, loader, points, multilabel=False)
    clips = [ds[i] for i in range(len(ds))]
    for name, point in points.items():
        with torch.no_grad():
            hits = [int(model(c["spec"][None], **point.call()).argmax()) == int(c["target"].argmax()) for c in clips]
        assert result[name]["accuracy"] == pytest.approx(sum(hits) / len(hits))
    lengths = [len(c["spec"]) for c in clips]
    assert result["_clips"] == 10 and len(set(lengths)) > 3
    assert all(result["_lengths"][name] == {str(n): k for n, k in Counter(lengths).items()} for name in points)


def _header_tokens(root: Path, cfg) -> int:
    """The training clips' tokens by hand: FSDD's 8 kHz headers at 16 kHz, Kaldi's whole 25 ms
    windows every 10 ms, cut to 48 frames; 64 bins / 16 = 4 patch rows, 2 prefix tokens."""
    from flexiast.engine.splits import load_splits

    splits, _ = load_splits(cfg)
    total = 0
    for item in splits["train"].items:
        n = sf.info(str(item.path)).frames * 2
        frames = min(1 + (n - 400) // 160, 48)
        total += 2 + 4 * (frames // 16)
    return total


def test_packed_training_on_fsdd_runs_the_steps_the_budget_gives(fsdd_small, tmp_path):
    raw = tiny_recipe(fsdd_small, tmp_path / "run", data={"batching": "packed", "batch_tokens": 200},
                      phases=[{"epochs": 1, "patch": {"sampler": "uniform", "sizes": [8, 16], "draw": "clip"}}],
                      train={"eval_patch_sizes": [16]})
    raw["data"]["test"] = None
    cfg = build_config(raw)
    summary = train(cfg)
    steps = _header_tokens(fsdd_small, cfg) // 200
    assert summary["phases"][0]["steps"] == steps
    rows = read_csv(tmp_path / "run" / "steps.csv")
    assert len(rows) == steps and {r["patch"] for r in rows} == {"per clip"}
    assert summary["final_val"]["_clips"] == 20 and math.isfinite(float(rows[-1]["loss"]))
    # the weights say how they were trained, so a copy away from the run still deploys packed
    (copy := tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "run" / "best.safetensors", copy / "model.safetensors")
    im = load_inference_model(copy / "model.safetensors")
    assert (im.batching, im.row_tokens) == ("packed", 2048)


def test_a_packed_run_killed_mid_epoch_resumes_to_the_same_weights(fsdd_small, tmp_path, monkeypatch):
    def recipe(out):
        raw = tiny_recipe(fsdd_small, out, data={"batching": "packed", "batch_tokens": 240},
                          train={"threads": 1, "accum_steps": 2, "checkpoint_every": 1},
                          phases=[{"epochs": 2, "patch": {"sampler": "uniform", "sizes": [8, 16], "draw": "clip"}}])
        raw["data"]["test"] = None
        return raw

    killed_and_resumed_match(recipe, tmp_path, monkeypatch, 3)  # epoch 1's third step, after two checkpoints


# -- length buckets for the families that cannot pack ------------------------------------------------
def test_cnn14_and_htsat_pool_each_clip_of_a_bucket_over_its_own_frames():
    from flexiast.models import get_family

    torch.manual_seed(0)
    for arch in ("cnn14", "htsat"):
        family = get_family(arch)
        assert family.pools_lengths and not family.packs
        model = create_model(family.config_class(**family.tiny)).eval()
        frames, bins = 2 * model.config.input_tdim, model.config.input_fdim
        spec = torch.randn(2, frames, bins)
        lengths = torch.tensor([frames, frames // 2 + 3])
        with torch.no_grad():
            masked, whole = model(spec, lengths=lengths), model(spec)
            torch.testing.assert_close(masked[0], whole[0])  # a clip of the batch's length: as before
            if arch == "cnn14":
                x = model._maps(spec, model.num_layers).mean(dim=3)[1]  # [C, T']
                keep = math.ceil(int(lengths[1]) / model.token_frames())
                pooled = x[:, :keep].max(dim=1).values + x[:, :keep].mean(dim=1)
                expected = model.fc_audioset(torch.relu(model.fc1(pooled)))
            else:
                fpp = model.config.frames_per_position
                framewise = model.sed(spec).framewise[1]  # each position's logits repeated over its frames
                expected = framewise[::fpp][: math.ceil(int(lengths[1]) / fpp)].mean(dim=0)
            torch.testing.assert_close(masked[1], expected)
            assert not torch.allclose(masked[1], whole[1])


def test_bucketed_ast_training_takes_the_budgets_steps(fsdd_small, tmp_path):
    raw = tiny_recipe(fsdd_small, tmp_path / "run", data={"batching": "bucketed", "batch_tokens": 200},
                      phases=[{"epochs": 1}])
    raw["data"]["test"] = None
    cfg = build_config(raw)
    summary = train(cfg)
    assert summary["phases"][0]["steps"] == _header_tokens(fsdd_small, cfg) // 200


@pytest.mark.slow
def test_a_bucketed_cnn14_run_passes_each_clips_length(fsdd_small, tmp_path, monkeypatch):
    """CNN14 (channels 4, 8, 8) on FSDD at 32 kHz: every training call gets its bucket's lengths,
    padded to the longest, within the budget (tokens: frames x 64 mel bins)."""
    from flexiast.models import get_family

    cls = get_family("cnn14").model_class
    seen = []
    original = cls.forward

    def spy(self, spec, lengths=None, **call):
        if self.training:
            seen.append((tuple(spec.shape), None if lengths is None else lengths.tolist()))
        return original(self, spec, lengths, **call)

    monkeypatch.setattr(cls, "forward", spy)
    raw = tiny_recipe(fsdd_small, tmp_path / "run", data={"batching": "bucketed", "batch_tokens": 16000},
                      features={"num_mel_bins": 64, "target_length": 96, "mean": None, "std": None,
                                "kind": "slaney_logmel"}, phases=[{"epochs": 1}])
    raw["model"] = {"arch": "cnn14", "preset": None, "channels": [4, 8, 8]}
    raw["data"]["test"] = None
    train(build_config(raw))
    assert seen and all(lengths is not None and max(lengths) == shape[1] and shape[0] * shape[1] * 64 <= 16000
                        for shape, lengths in seen)
