"""Unlabeled audio for self-supervised pretraining: the librispeech, audio, label-free ast_json
and mixture readers, mixture sampling weights through to a BalancedSampler, and weights kept
aligned by scan() and the validation holdout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from flexiast.config import build_config
from flexiast.data import (AudioDataset, AugmentConfig, BalancedSampler, DataError, collate, manifest_weights,
                           read_manifest, scan)
from flexiast.engine.splits import holdout, load_splits
from flexiast.features import FeatureConfig

from helpers import sine, tiny_recipe


def _write(path, seconds=0.2, rate=16000, freq=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, sine(rate, seconds, freq, amp=0.3), rate)
    return path


def _librispeech(root, split, speakers):
    """``{speaker: {chapter: utterances}}`` as ``ROOT/split/speaker/chapter/speaker-chapter-NNNN.flac``
    with the chapter's transcript file beside them."""
    for speaker, chapters in speakers.items():
        for chapter, n in chapters.items():
            folder = root / split / str(speaker) / str(chapter)
            for u in range(n):
                _write(folder / f"{speaker}-{chapter}-{u:04d}.flac")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text(
                "".join(f"{speaker}-{chapter}-{u:04d} HELLO\n" for u in range(n)))


def _ast_unlabeled(root, name, n):
    """``n`` wav files and an AST datafile for them (``labels`` present on some entries only)."""
    entries = [{"wav": f"{name}/{i}.wav"} | ({"labels": "/m/x"} if i % 2 else {}) for i in range(n)]
    for i in range(n):
        _write(root / name / f"{i}.wav")
    (root / f"{name}.json").write_text(json.dumps({"data": entries}))
    return root / f"{name}.json"


# -- readers -----------------------------------------------------------------------------
def test_librispeech_one_split_or_several(tmp_path):
    _librispeech(tmp_path, "train-clean-100", {19: {198: 3, 227: 2}, 26: {495: 1}})
    _librispeech(tmp_path, "dev-clean", {84: {121123: 2}})
    m = read_manifest("librispeech", root=tmp_path, split="train-clean-100")
    assert not m.labelled and m.classes == [] and m.weights is None and len(m) == 6
    assert all(i.labels == () and i.path.suffix == ".flac" for i in m.items)
    assert m.items[0].source == "train-clean-100/19/198/19-198-0000.flac"
    assert m.items[0].path == tmp_path / "train-clean-100" / "19" / "198" / "19-198-0000.flac"
    both = read_manifest("librispeech", root=tmp_path, split=["train-clean-100", "dev-clean"])
    assert len(both) == 8 and both.items[-1].source == "dev-clean/84/121123/84-121123-0001.flac"
    with pytest.raises(DataError, match=r"train-other-500: LibriSpeech split folder not found"):
        read_manifest("librispeech", root=tmp_path, split=["train-clean-100", "train-other-500"])
    with pytest.raises(DataError, match="librispeech needs split"):
        read_manifest("librispeech", root=tmp_path)


def test_audio_folder_recursive_with_optional_split(tmp_path):
    for rel in ("a.wav", "deep/b.flac", "deep/deeper/c.ogg"):
        _write(tmp_path / "clips" / rel)
    (tmp_path / "clips" / "deep" / "notes.txt").write_text("not audio")
    m = read_manifest("audio", root=tmp_path / "clips")
    assert not m.labelled and [i.source for i in m.items] == ["a.wav", "deep/b.flac", "deep/deeper/c.ogg"]
    assert len(read_manifest("audio", root=tmp_path / "clips", split="deep")) == 2
    assert len(read_manifest("audio", root=tmp_path / "clips", split="train")) == 3  # no such folder: the root
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty: no audio files"):
        read_manifest("audio", root=tmp_path / "empty")


def test_ast_json_without_label_csv_is_unlabeled(tmp_path):
    datafile = _ast_unlabeled(tmp_path, "bal", 3)
    m = read_manifest("ast_json", datafile="bal.json", root=tmp_path)
    assert not m.labelled and not m.multilabel and [i.labels for i in m.items] == [(), (), ()]
    assert [i.path for i in m.items] == [tmp_path / "bal" / f"{i}.wav" for i in range(3)]
    assert read_manifest("ast_json", datafile=datafile, label_csv=None).items == m.items
    datafile.write_text(json.dumps({"data": [{"wav": "bal/0.wav"}, {"labels": "/m/x"}]}))
    with pytest.raises(DataError, match=r"bal\.json:data\[1\]: entry needs 'wav'"):
        read_manifest("ast_json", datafile=datafile)


# -- mixture -----------------------------------------------------------------------------
def _mixture_root(root):
    """Three unlabeled sources of 30, 5 and 2 clips."""
    _ast_unlabeled(root, "audioset", 30)
    _librispeech(root / "LibriSpeech", "train-clean-100", {19: {198: 3}, 26: {495: 2}})
    for i in range(2):
        _write(root / "misc" / f"{i}.wav")
    return [{"format": "ast_json", "datafile": "audioset.json", "weight": 2.0},
            {"format": "librispeech", "root": "LibriSpeech", "split": "train-clean-100"},
            {"format": "audio", "root": str(root / "misc"), "weight": 0.5}]


def test_mixture_weights_draw_each_source_in_proportion(tmp_path):
    m = read_manifest("mixture", root=tmp_path, split="train", sources=_mixture_root(tmp_path))
    assert not m.labelled and len(m) == 37 and m.name == "audioset+librispeech+misc"
    # w_s / n_s per clip: 2/30, 1/5, 0.5/2
    assert m.weights == pytest.approx([2 / 30] * 30 + [1 / 5] * 5 + [0.5 / 2] * 2)
    source = np.array([0] * 30 + [1] * 5 + [2] * 2)
    draws = np.array(list(BalancedSampler(manifest_weights(m), num_samples=20_000, seed=3)))
    freq = np.bincount(source[draws], minlength=3) / 20_000
    # P(source s) = w_s / sum w = 2/3.5, 1/3.5, 0.5/3.5; binomial std <= sqrt(.25/20000) = 0.0035
    assert freq == pytest.approx([2 / 3.5, 1 / 3.5, 0.5 / 3.5], abs=0.015)
    # uniform drawing would give each source its share of clips instead: 30/37, 5/37, 2/37
    assert abs(freq[0] - 30 / 37) > 0.2


def test_mixture_options_reach_every_source_and_bad_sources_are_named(tmp_path):
    sources = _mixture_root(tmp_path)
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/x,X\n")
    (tmp_path / "eval.json").write_text(json.dumps({"data": [{"wav": "audioset/0.wav", "labels": "/m/x"}]}))
    labelled = {"format": "ast_json", "datafile": "eval.json", "label_csv": "labels.csv"}
    with pytest.raises(DataError, match=r"mixture sources\[1\] \(ast_json\): labelled \(1 classes\)"):
        read_manifest("mixture", root=tmp_path, sources=[sources[0], labelled])
    nested = {"format": "mixture", "sources": sources}
    with pytest.raises(DataError, match=r"sources\[0\]: a mixture cannot hold a mixture"):
        read_manifest("mixture", root=tmp_path, sources=[nested])
    with pytest.raises(DataError, match=r"sources\[2\] \(audio\): weight -1"):
        read_manifest("mixture", root=tmp_path, sources=sources[:2] + [{**sources[2], "weight": -1}])
    # the split option reaches a source without its own: LibriSpeech has no 'train' folder
    no_split = {"format": "librispeech", "root": "LibriSpeech"}
    with pytest.raises(DataError, match=r"sources\[0\] \(librispeech\): .*LibriSpeech/train: LibriSpeech split"):
        read_manifest("mixture", root=tmp_path, split="train", sources=[no_split])
    assert len(read_manifest("mixture", root=tmp_path, split="train-clean-100", sources=[no_split])) == 5


def test_balanced_is_refused_where_there_is_nothing_to_balance(tmp_path):
    m = read_manifest("mixture", root=tmp_path, sources=_mixture_root(tmp_path))
    with pytest.raises(DataError, match="has its own sampling weights"):
        manifest_weights(m, balanced=True)
    plain = read_manifest("audio", root=tmp_path / "misc")
    assert manifest_weights(plain) is None
    with pytest.raises(DataError, match="is unlabeled"):
        manifest_weights(plain, balanced=True)


# -- scan, holdout, dataset --------------------------------------------------------------
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_scan_of_an_unlabeled_mixture_with_a_corrupt_file(tmp_path, on_error):
    sources = _mixture_root(tmp_path)
    (tmp_path / "LibriSpeech/train-clean-100/26/495/26-495-0001.flac").write_bytes(b"not a flac file" * 10)
    m = read_manifest("mixture", root=tmp_path, sources=sources)
    if on_error == "raise":
        with pytest.raises(DataError, match=r"(?s)1 of 37 clips cannot be used.*26-495-0001\.flac"):
            scan(m, on_error="raise")
        return
    kept, report = scan(m, on_error="skip", max_bad_fraction=0.05)
    assert [src for src, _ in report.problems] == ["train-clean-100/26/495/26-495-0001.flac"]
    assert len(kept) == 36 and not kept.labelled
    # each kept clip keeps its own weight: the four other LibriSpeech clips still 1/5
    assert kept.weights == pytest.approx([2 / 30] * 30 + [1 / 5] * 4 + [0.5 / 2] * 2)


def test_holdout_keeps_weights_with_their_clips(tmp_path):
    m = read_manifest("mixture", root=tmp_path, sources=_mixture_root(tmp_path))
    weight_of = {item.path: w for item, w in zip(m.items, m.weights)}
    train, val = holdout(m, 0.3, seed=5)
    assert len(train) + len(val) == 37 and len(val) == 11
    for part in (train, val):
        assert part.classes == [] and part.weights == [weight_of[item.path] for item in part.items]
    assert len({i.path for i in train.items} | {i.path for i in val.items}) == 37


def test_load_splits_reads_scans_and_holds_out_a_mixture(tmp_path):
    sources = _mixture_root(tmp_path)
    (tmp_path / "misc" / "1.wav").write_bytes(b"RIFF")
    raw = tiny_recipe(tmp_path, tmp_path / "run", data={"format": "mixture", "root": str(tmp_path),
                                                       "options": {"sources": sources}, "test": None,
                                                       "val_fraction": 0.25, "on_error": "skip",
                                                       "max_bad_fraction": 0.1})
    splits, left_out = load_splits(build_config(raw))
    assert len(splits["train"]) + len(splits["val"]) == 36 and sum(map(len, left_out.values())) == 1
    per_source = {"audioset": 2 / 30, "LibriSpeech": 1 / 5, "misc": 0.5 / 2}  # w_s / n_s as read
    for name in ("train", "val"):
        m = splits[name]
        assert m.classes == [] and len(m.weights) == len(m.items)
        assert m.weights == pytest.approx([per_source[i.path.relative_to(tmp_path).parts[0]] for i in m.items])


def test_dataset_of_unlabeled_clips_has_empty_targets_also_under_mixup(tmp_path):
    _write(tmp_path / "a" / "x.wav"), _write(tmp_path / "a" / "y.wav", freq=1000.0)
    m = read_manifest("audio", root=tmp_path / "a")
    features = FeatureConfig(num_mel_bins=64, target_length=48)
    for mixup_on in ("waveform", "spectrogram"):
        ds = AudioDataset(m, features, augment=AugmentConfig(mixup=1.0, mixup_on=mixup_on), train=True)
        batch = collate([ds[0], ds[1]])
        assert batch["spec"].shape == (2, 48, 64) and batch["target"].shape == (2, 0)
    assert AudioDataset(m, features)[0]["target"].shape == (0,)


# -- real audio --------------------------------------------------------------------------
def test_audio_format_reads_the_fsdd_recordings(fsdd_dir):
    m = read_manifest("audio", root=fsdd_dir)
    assert len(m) == 3000 and not m.labelled and m.weights is None
    assert {i.source for i in m.items} == {p.name for p in fsdd_dir.glob("*.wav")}
    assert torch.zeros(0).shape == AudioDataset(m, FeatureConfig(num_mel_bins=64, target_length=48))[0]["target"].shape
