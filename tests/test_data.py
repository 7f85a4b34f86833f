"""Dataset readers on fixtures in each official layout, the AST feature recipe, cache,
augmentation, samplers, statistics, and bad-input handling."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast.data import (AudioDataset, AugmentConfig, BalancedSampler, DataError, FeatureCache, ShardedSampler,
                           ast_balanced_weights, dataset_stats, read_manifest, scan)
from flexiast.features import Compression, FeatureConfig


def _tone(path, seconds=0.3, rate=16000, freq=440.0, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t) + noise, rate)
    return path


# -- readers ---------------------------------------------------------------------------
def test_fsdd_counts_and_official_split(fsdd_dir):
    root = fsdd_dir.parent
    assert len(read_manifest("fsdd", root=root, split="all")) == 3000
    test = read_manifest("fsdd", root=root, split="test")
    assert len(test) == 300 and len(read_manifest("fsdd", root=root, split="train")) == 2700
    assert all(int(i.path.stem.split("_")[2]) < 5 for i in test.items)
    speakers = read_manifest("fsdd", root=root, split="test", task="speakers")
    assert len(speakers.classes) == 6 and len(speakers) == 300
    digits = [test.classes[i.labels[0]] for i in test.items]
    assert all(d == i.path.name[0] for d, i in zip(digits, test.items))


def test_ast_json_and_label_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/dog,Dog\n1,/m/cat,Cat\n2,/m/car,Car\n")
    _tone(tmp_path / "a.wav"), _tone(tmp_path / "b.wav")
    data = {"data": [{"wav": "a.wav", "labels": "/m/dog,/m/car"}, {"wav": str(tmp_path / "b.wav"), "labels": "/m/cat"}]}
    (tmp_path / "train.json").write_text(json.dumps(data))
    m = read_manifest("ast_json", datafile=tmp_path / "train.json", label_csv=tmp_path / "labels.csv")
    assert m.multilabel and m.classes == ["Dog", "Cat", "Car"]
    assert [i.labels for i in m.items] == [(0, 2), (1,)] and m.items[0].path == tmp_path / "a.wav"
    data["data"].append({"wav": "b.wav", "labels": "/m/horse"})
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"bad\.json:data\[2\]: label '/m/horse' is not in"):
        read_manifest("ast_json", datafile=tmp_path / "bad.json", label_csv=tmp_path / "labels.csv")


def _esc50(root):
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, cat, esc10 in ((0, "dog", "True"), (1, "rooster", "False"), (41, "chainsaw", "True")):
            name = f"{fold}-{target}-A-0.wav"
            _tone(root / "audio" / name, rate=44100)
            rows.append(f"{name},{fold},{target},{cat},{esc10},{target},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")


def test_esc50_folds_and_esc10(tmp_path):
    _esc50(tmp_path)
    train = read_manifest("esc50", root=tmp_path, split="train", test_fold=2)
    test = read_manifest("esc50", root=tmp_path, split="test", test_fold=2)
    assert (len(train), len(test)) == (12, 3) and train.classes == ["dog", "rooster", "chainsaw"]
    assert all(i.path.name.startswith("2-") for i in test.items)
    assert not any(i.path.name.startswith("2-") for i in train.items)
    esc10 = read_manifest("esc50", root=tmp_path, split="train", folds=[1, 3], esc10=True)
    assert esc10.classes == ["dog", "chainsaw"] and len(esc10) == 4
    assert {i.labels for i in esc10.items} == {(0,), (1,)}


def test_speech_commands_splits(tmp_path):
    for word in ("yes", "no", "up"):
        for k in range(4):
            _tone(tmp_path / word / f"spk{k}_nohash_0.wav", seconds=0.1)
    _tone(tmp_path / "_background_noise_" / "white.wav")
    (tmp_path / "validation_list.txt").write_text("yes/spk0_nohash_0.wav\nno/spk0_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("up/spk1_nohash_0.wav\n")
    train = read_manifest("speechcommands", root=tmp_path, split="train")
    assert train.classes == ["no", "up", "yes"] and len(train) == 9
    assert len(read_manifest("speechcommands", root=tmp_path, split="validation")) == 2
    test = read_manifest("speechcommands", root=tmp_path, split="test")
    assert [(i.path.name, i.labels) for i in test.items] == [("spk1_nohash_0.wav", (1,))]


def test_voxceleb1_identification_split(tmp_path):
    lines = []
    for spk in ("id10001", "id10002"):
        for k, code in enumerate("11123"):
            rel = f"{spk}/vid{k}/0000{k}.wav"
            _tone(tmp_path / "wav" / rel, seconds=0.1)
            lines.append(f"{code} {rel}")
    (tmp_path / "iden_split.txt").write_text("\n".join(lines) + "\n")
    counts = {s: len(read_manifest("voxceleb1", root=tmp_path, split=s)) for s in ("train", "validation", "test")}
    assert counts == {"train": 6, "validation": 2, "test": 2}
    assert read_manifest("voxceleb1", root=tmp_path, split="test").classes == ["id10001", "id10002"]


def test_folder_and_csv_manifest(tmp_path):
    for cls in ("bird", "rain"):
        for k in range(2):
            _tone(tmp_path / "train" / cls / f"{k}.flac")
    m = read_manifest("folder", root=tmp_path, split="train")
    assert m.classes == ["bird", "rain"] and len(m) == 4
    (tmp_path / "vggsound.csv").write_text(
        "path,labels,split\ntrain/bird/0.flac,bird,train\ntrain/rain/0.flac,rain;bird,test\ntrain/rain/1.flac,rain,train\n")
    csv_test = read_manifest("csv", csv_path=tmp_path / "vggsound.csv", split="test")
    assert csv_test.multilabel and csv_test.items[0].labels == (1, 0)
    assert len(read_manifest("csv", csv_path=tmp_path / "vggsound.csv", split="train")) == 2


def test_unknown_format_and_missing_root(tmp_path):
    with pytest.raises(DataError, match="not one of"):
        read_manifest("wavcaps", root=tmp_path)
    with pytest.raises(DataError, match="esc50.csv: ESC-50 metadata not found"):
        read_manifest("esc50", root=tmp_path / "nowhere", test_fold=1)


# -- the AST feature recipe --------------------------------------------------------------
def test_features_equal_hugging_face_ast_extractor_end_to_end(fsdd_dir):
    """Decode 8 kHz FSDD, resample, fbank, pad, normalise: HF's extractor on the same 16 kHz audio."""
    from transformers import ASTFeatureExtractor

    from flexiast.audio import load_audio

    manifest = read_manifest("fsdd", root=fsdd_dir.parent, split="test")
    cfg = FeatureConfig.for_dataset("speechcommands")
    ds = AudioDataset(manifest, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = ASTFeatureExtractor(num_mel_bins=128, max_length=cfg.target_length, mean=cfg.mean, std=cfg.std)
    for i in (0, 57, 299):
        wave = load_audio(manifest.items[i].path).numpy()
        ref = hf(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]
        ours = ds[i]["spec"].numpy()
        n = min(len(wave) and 1 + (len(wave) - 400) // 160, cfg.target_length)
        np.testing.assert_allclose(ours[:n], ref[:n], atol=1e-3 / (2 * cfg.std))
        np.testing.assert_allclose(ours[n:], (0 - cfg.mean) / (2 * cfg.std), atol=1e-6)  # zero padding, normalised


def test_compression_shapes(fsdd_dir):
    manifest = read_manifest("fsdd", root=fsdd_dir.parent, split="test")
    cfg = FeatureConfig(target_length=128)
    full = AudioDataset(manifest, cfg)[0]["spec"]
    assert full.shape == (128, 128)
    assert AudioDataset(manifest, cfg, compression=Compression.parse("fshift:4"))[0]["spec"].shape == (32, 128)
    avg = AudioDataset(manifest, cfg, compression=Compression.parse("avgpool:2"))[0]["spec"]
    torch.testing.assert_close(avg, full.reshape(64, 2, 128).mean(1))
    mx = AudioDataset(manifest, cfg, compression=Compression.parse("maxpool:4"))[0]["spec"]
    torch.testing.assert_close(mx, full.reshape(32, 4, 128).amax(1))
    torch.testing.assert_close(AudioDataset(manifest, cfg, compression=Compression.parse("patch:2"))[0]["spec"], full)
    with pytest.raises(ValueError, match="compression"):
        Compression.parse("stretch:2")
    with pytest.raises(ValueError, match="compression fshift:4 leaves no frames of target_length=3"):
        AudioDataset(manifest, FeatureConfig(target_length=3), compression=Compression.parse("fshift:4"))


# -- cache ---------------------------------------------------------------------------
def test_cache_equals_uncached_and_is_invalidated_by_any_change(tmp_path):
    wav = _tone(tmp_path / "clips" / "x.wav", seconds=1.0)
    manifest = read_manifest("folder", root=tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    cfg = FeatureConfig(target_length=100)
    plain = AudioDataset(manifest, cfg)
    cached = AudioDataset(manifest, cfg, cache=cache)
    first, second = cached[0]["spec"], cached[0]["spec"]
    torch.testing.assert_close(first, plain[0]["spec"], atol=0, rtol=0)
    torch.testing.assert_close(second, first, atol=0, rtol=0)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    for changed in (FeatureConfig(target_length=100, num_mel_bins=64), FeatureConfig(target_length=100, frame_shift_ms=20)):
        other = AudioDataset(manifest, changed, cache=cache)[0]["spec"]
        torch.testing.assert_close(other, AudioDataset(manifest, changed)[0]["spec"], atol=0, rtol=0)
    AudioDataset(manifest, cfg, cache=cache, compression=Compression.parse("fshift:2"))[0]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4
    _tone(wav, seconds=1.0, freq=1500.0, seed=1)  # the file changes: same path, new content
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    torch.testing.assert_close(cached[0]["spec"], plain[0]["spec"], atol=0, rtol=0)
    assert not torch.equal(cached[0]["spec"], first)


# -- augmentation ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fsdd_test(fsdd_dir):
    return read_manifest("fsdd", root=fsdd_dir.parent, split="test")


def test_augmentation_is_seeded_per_clip_and_off_in_evaluation(fsdd_test):
    cfg = FeatureConfig(target_length=128)
    aug = AugmentConfig(freqm=24, timem=24, mixup=0.5, noise=True, gain_db=6)
    a = AudioDataset(fsdd_test, cfg, augment=aug, train=True, seed=3)
    b = AudioDataset(fsdd_test, cfg, augment=aug, train=True, seed=3)
    torch.testing.assert_close(a[5]["spec"], b[5]["spec"], atol=0, rtol=0)
    a.set_epoch(1)
    assert not torch.equal(a[5]["spec"], b[5]["spec"])
    plain = AudioDataset(fsdd_test, cfg)
    evaluation = AudioDataset(fsdd_test, cfg, augment=aug, train=False)
    torch.testing.assert_close(evaluation[5]["spec"], plain[5]["spec"], atol=0, rtol=0)


def test_spec_augment_masks_are_within_bounds(fsdd_test):
    cfg = FeatureConfig(target_length=128)
    masked_value = (0 - cfg.mean) / (2 * cfg.std)  # AST masks before normalising
    ds = AudioDataset(fsdd_test, cfg, augment=AugmentConfig(freqm=20, timem=30), train=True)
    for i in range(20):
        x = ds[i]["spec"]
        bins = int((x == masked_value).all(0).sum())
        assert bins < 20
    assert any(int((ds[i]["spec"] == masked_value).all(0).sum()) > 0 for i in range(20))


def test_mixup_mixes_targets_with_beta_10_weights(fsdd_test):
    ds = AudioDataset(fsdd_test, FeatureConfig(target_length=128), augment=AugmentConfig(mixup=1.0), train=True)
    lams = []
    for i in range(40):
        t = ds[i]["target"]
        assert abs(float(t.sum()) - 1) < 1e-6
        if int((t > 0).sum()) == 2:  # a partner of the same class leaves the target one-hot
            lams.append(float(t.max()))
    assert len(lams) >= 25
    # max(lam, 1 - lam) for lam ~ Beta(10, 10): mean 0.5 + E|lam - 0.5| = 0.587, rarely above 0.8
    assert 0.55 < float(np.mean(lams)) < 0.63 and max(lams) < 0.85


def test_spectrogram_mixup_mixes_two_clips_log_mel_and_targets_with_one_beta_lam(fsdd_test):
    """``mixup_on: spectrogram`` (HTS-AT: every clip, Beta(0.5, 0.5)): the input is
    ``lam a + (1 - lam) b`` of the two clips' spectrograms and the target mixes with the same
    ``lam``, the partner and ``lam`` drawn from the clip's seeded generator (so a resumed run
    draws them again)."""
    cfg = FeatureConfig(target_length=128)
    aug = AugmentConfig(mixup=1.0, mixup_alpha=0.5, mixup_on="spectrogram")
    ds = AudioDataset(fsdd_test, cfg, augment=aug, train=True, seed=7)
    ds.set_epoch(3)
    plain = AudioDataset(fsdd_test, cfg)
    lams, mixed_classes = [], 0
    for i in range(12):
        rng = np.random.default_rng(np.random.SeedSequence([7, 3, i]))
        assert rng.random() < 1.0  # the mixup draw
        other = int(rng.integers(len(ds)))
        lam = float(rng.beta(0.5, 0.5))
        lams.append(lam)
        item = ds[i]
        torch.testing.assert_close(item["spec"], lam * plain[i]["spec"] + (1 - lam) * plain[other]["spec"],
                                   atol=2e-6, rtol=0)
        torch.testing.assert_close(item["target"], lam * plain[i]["target"] + (1 - lam) * plain[other]["target"],
                                   atol=1e-7, rtol=0)
        mixed_classes += int((item["target"] > 0).sum()) == 2
        torch.testing.assert_close(ds[(3, i)]["spec"], item["spec"], atol=0, rtol=0)  # seeded by (seed, epoch, clip)
    assert mixed_classes >= 6
    # Beta(0.5, 0.5) is U-shaped: lam is mostly near 0 or 1, unlike AST's Beta(10, 10).
    assert np.mean([abs(lam - 0.5) for lam in lams]) > 0.2
    assert AugmentConfig().mixup_on == "waveform" and AugmentConfig().mixup_alpha == 10.0  # AST's defaults


# -- samplers --------------------------------------------------------------------------
def test_sharded_sampler_partitions_and_resumes():
    shards = [list(ShardedSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(sum(shards, [])) == set(range(10))
    again = ShardedSampler(10, seed=1, rank=1, world_size=3)
    assert list(again) == shards[1]
    again.set_epoch(0, start=2)
    assert list(again) == shards[1][2:] and len(again) == 2
    again.set_epoch(1)
    assert list(again) != shards[1]


def test_every_rank_gets_the_same_number_of_indices_even_for_tiny_datasets():
    for size, world in ((1, 4), (3, 8), (5, 2)):
        shares = [list(ShardedSampler(size, seed=0, rank=r, world_size=world)) for r in range(world)]
        assert {len(s) for s in shares} == {-(-size // world)}
        assert set(sum(shares, [])) == set(range(size))
    late = ShardedSampler(4, rank=0, world_size=2)
    late.set_epoch(0, start=5)
    assert len(late) == 0 and list(late) == []


def test_masks_longer_than_the_input_start_at_frame_zero():
    from flexiast.data.augment import spec_augment

    for seed in range(20):
        out = spec_augment(torch.ones(32, 8), 0, 400, np.random.default_rng(seed))
        masked = (out == 0).all(1).nonzero().flatten().tolist()
        assert masked == list(range(len(masked))) and len(masked) > 0  # a prefix, as torchaudio masks


def test_fshift_scales_time_masks_to_the_same_duration(tmp_path):
    for k in range(4):
        _tone(tmp_path / "d" / "a" / f"{k}.wav", seconds=2.0, seed=k)  # longer than 128 frames: no padding
    manifest = read_manifest("folder", root=tmp_path / "d")
    cfg = FeatureConfig(target_length=128)
    masked_value = (0 - cfg.mean) / (2 * cfg.std)
    widths = {}
    for comp in ("none", "fshift:4"):
        ds = AudioDataset(manifest, cfg, augment=AugmentConfig(timem=48), train=True,
                          compression=Compression.parse(comp))
        widths[comp] = []
        for epoch in range(10):
            ds.set_epoch(epoch)
            widths[comp] += [int((ds[i]["spec"] == masked_value).all(1).sum()) for i in range(4)]
    assert max(widths["none"]) <= 47 and max(widths["none"]) > 24
    assert max(widths["fshift:4"]) <= 11 and max(widths["fshift:4"]) > 6  # 48 x 10 ms = 12 x 40 ms


def test_ast_balanced_weights_by_hand():
    labels = [(0,), (0, 1), (2,)]
    w = ast_balanced_weights(labels, 3)
    expected = [1000 / 2.01, 1000 / 2.01 + 1000 / 1.01, 1000 / 1.01]
    np.testing.assert_allclose(w.numpy(), expected)
    draws = list(BalancedSampler(w, num_samples=3000, seed=0))
    counts = np.bincount(draws, minlength=3) / 3000
    np.testing.assert_allclose(counts, np.array(expected) / sum(expected), atol=0.03)


# -- statistics ----------------------------------------------------------------------
def test_stats_match_a_direct_computation(fsdd_test):
    from flexiast.audio import load_audio
    from flexiast.fbank import fbank

    subset = type(fsdd_test)(fsdd_test.items[:30], fsdd_test.classes)
    cfg = FeatureConfig(target_length=64)
    stats = dataset_stats(subset, cfg, batch_size=10)
    batches = []
    for k in range(3):
        specs = []
        for item in subset.items[10 * k:10 * k + 10]:
            w = load_audio(item.path).double()
            s = fbank(w - w.mean())[:64]
            specs.append(np.pad(s.numpy(), ((0, 64 - s.shape[0]), (0, 0))))
        batches.append(np.stack(specs))
    assert abs(stats["mean"] - np.mean([b.mean() for b in batches])) < 1e-4
    assert abs(stats["std"] - np.mean([b.std(ddof=1) for b in batches])) < 1e-4
    everything = np.concatenate(batches)
    assert abs(stats["exact_std"] - everything.std()) < 1e-4


# -- bad input -------------------------------------------------------------------------
def _bad_folder(tmp_path, bad: int, good: int = 10):
    for k in range(good):
        _tone(tmp_path / "data" / "a" / f"good{k}.wav", seconds=0.1)
    for k in range(bad):
        (tmp_path / "data" / "a" / f"bad{k}.wav").write_bytes(b"RIFF" + b"\x00" * 10)
    return read_manifest("folder", root=tmp_path / "data")


def test_scan_names_bad_files_or_skips_and_refuses_too_many(tmp_path):
    manifest = _bad_folder(tmp_path, bad=1)
    with pytest.raises(DataError, match=r"1 of 11 clips cannot be used:\n  .*bad0\.wav"):
        scan(manifest)
    kept, report = scan(manifest, on_error="skip", max_bad_fraction=0.2)
    assert len(kept) == 10 and len(report.problems) == 1
    with pytest.raises(DataError, match=r"more than max_bad_fraction=5\.0%"):
        scan(manifest, on_error="skip", max_bad_fraction=0.05)


def test_full_scan_finds_nan_samples_before_training(tmp_path):
    manifest = _bad_folder(tmp_path, bad=0, good=4)
    sf.write(manifest.items[2].path, np.array([0.1, np.nan, 0.3] * 100), 16000, subtype="FLOAT")
    assert len(scan(manifest)[0]) == 4  # a header check cannot see it
    with pytest.raises(DataError, match=r"good2\.wav: holds NaN or Inf samples"):
        scan(manifest, decode=True)
    kept, report = scan(manifest, on_error="skip", max_bad_fraction=0.5, decode=True)
    assert len(kept) == 3 and report.problems[0][0] == "a/good2.wav"


def test_log_mel_clips_pad_and_mask_with_silence_and_gain_in_decibels(fsdd_test):
    """A dB log-mel is padded and masked with the log-mel of digital silence (-100 dB, not a
    loud 0 dB), and a gain of g dB adds g to it (Kaldi's natural-log fbank: g ln(10) / 10)."""
    cfg = FeatureConfig.htsat(target_length=128)
    plain = AudioDataset(fsdd_test, cfg)
    x = plain[0]["spec"]
    n = 1 + sf.info(fsdd_test.items[0].path).frames * 4 // 320  # 8 kHz -> 32 kHz, centred frames
    assert n < 128 and x.shape == (128, 64)
    assert bool((x[n:] == -100.0).all()) and bool((x[:n] > -100.0).any())
    from flexiast.features import log_mel
    assert float(log_mel(torch.zeros(32000), cfg).max()) == -100.0  # the front end's value for zeros

    masked = AudioDataset(fsdd_test, cfg, augment=AugmentConfig(freqm=20), train=True)
    for i in range(10):
        spec = masked[i]["spec"]
        full = (spec == -100.0).all(0)
        assert int(full.sum()) < 20 and not bool((spec == 0.0).all(0).any())

    louder = AudioDataset(fsdd_test, cfg, augment=AugmentConfig(gain_db=6.0), train=True, seed=1)
    kaldi = AudioDataset(fsdd_test, FeatureConfig(target_length=128), augment=AugmentConfig(gain_db=6.0), train=True,
                         seed=1)
    kaldi_plain = AudioDataset(fsdd_test, FeatureConfig(target_length=128))
    for i in range(3):
        shift_db = louder[i]["spec"][:n] - x[:n] if i == 0 else None
        k = (kaldi[i]["spec"] - kaldi_plain[i]["spec"]) * 2 * FeatureConfig().std  # undo AST's normalisation
        g = float(k[0, 0]) / (np.log(10) / 10)  # the draw, in dB, shared by both datasets (same seed, clip)
        assert -6.0 <= g <= 6.0
        if shift_db is not None:
            torch.testing.assert_close(shift_db, torch.full_like(shift_db, g), atol=1e-4, rtol=0)
