"""The default input path: workers from the cores, the feature cache on (within a size
limit), workers that persist across epochs and still augment per (seed, epoch, clip)."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from flexiast.config import build_config
from flexiast.data import AudioDataset, AugmentConfig, FeatureCache, ShardedSampler, read_manifest
from flexiast.data import loader
from flexiast.data.loader import EpochKeys, loader_workers, make_loader, resolve_cache
from flexiast.features import FeatureConfig
from flexiast.engine import train

from helpers import tiny_recipe


def test_workers_follow_the_cores_per_rank_and_the_device():
    # On a CPU the step needs the cores: no worker below 4 cores per rank.
    assert loader_workers("auto", cpu_count=2) == 0
    assert loader_workers("auto", cpu_count=4) == 1
    assert loader_workers("auto", cpu_count=16) == 4
    assert loader_workers("auto", cpu_count=64) == 4
    assert loader_workers("auto", cpu_count=16, local_world_size=4) == 1
    # On a GPU the cores are the loader's.
    assert loader_workers("auto", device="cuda", cpu_count=16) == 8
    assert loader_workers("auto", device="cuda", cpu_count=16, local_world_size=8) == 1
    assert loader_workers("auto", device="cuda", cpu_count=1) == 0
    assert loader_workers(3, cpu_count=2) == 3


def test_cache_auto_off_a_folder_and_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXIAST_CACHE_DIR", str(tmp_path / "auto"))
    cache, note = resolve_cache("auto", estimate_bytes=10 * 2**20)
    assert isinstance(cache, FeatureCache) and cache.directory == tmp_path / "auto"
    assert "auto" in note and "10 MiB" in note
    assert resolve_cache("off", estimate_bytes=1)[0] is None
    assert resolve_cache(None, estimate_bytes=1)[0] is None
    explicit, _ = resolve_cache(str(tmp_path / "mine"), estimate_bytes=10**15)  # an explicit folder is obeyed
    assert explicit.directory == tmp_path / "mine"
    big, note = resolve_cache("auto", estimate_bytes=loader.CACHE_MAX_BYTES + 1)
    assert big is None and "data.cache_dir" in note and "off" in note
    monkeypatch.setattr(loader, "_free_bytes", lambda directory: 4 * 2**20)  # a nearly full disk
    small, note = resolve_cache("auto", estimate_bytes=2 * 2**20)
    assert small is None and "2 MiB" in note


def test_persistent_workers_augment_as_the_dataset_does_in_every_epoch(fsdd_dir):
    """Through one loader whose worker outlives the epochs, each clip's augmentation equals
    the dataset's own for that epoch (set_epoch, then indexing in this process)."""
    manifest = read_manifest("fsdd", root=fsdd_dir.parent, split="test")
    manifest.items[:] = manifest.items[:12]
    aug = AugmentConfig(freqm=24, timem=24, noise=True, gain_db=6)
    cfg = FeatureConfig(target_length=64)
    ds = AudioDataset(manifest, cfg, augment=aug, train=True, seed=5)
    sampler = ShardedSampler(len(ds), seed=5)
    dl = make_loader(ds, batch_size=4, sampler=EpochKeys(sampler), workers=1, drop_last=True)
    reference = AudioDataset(manifest, cfg, augment=aug, train=True, seed=5)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        got = [b for b in dl]
        reference.set_epoch(epoch)
        for batch in got:
            for index, spec in zip(batch["index"].tolist(), batch["spec"]):
                torch.testing.assert_close(spec, reference[index]["spec"], atol=0, rtol=0)
        epochs.append(torch.cat([b["spec"] for b in got]))
    assert dl._iterator is not None and dl._iterator._persistent_workers  # the same worker served all three
    assert not torch.equal(epochs[0], epochs[1])  # and the epochs differ


def test_defaults_cache_and_use_workers_and_give_the_numbers_of_the_plain_loader(fsdd_small, tmp_path, monkeypatch,
                                                                                 capsys):
    """A run with the defaults (auto precision, workers and cache) against one with no worker
    and no cache, and one with a worker: the same weights, bit for bit; a second default run
    reads the cache the first left."""
    monkeypatch.setenv("FLEXIAST_CACHE_DIR", str(tmp_path / "cache"))
    aug, auto = {"freqm": 8, "timem": 8}, {"precision": "auto"}
    plain = train(build_config(tiny_recipe(fsdd_small, tmp_path / "plain", augment=aug, train=auto,
                                           data={"num_workers": 0, "cache_dir": "off"})))
    assert "feature cache off (data.cache_dir)" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()
    default = train(build_config(tiny_recipe(fsdd_small, tmp_path / "default", augment=aug, train=auto)))
    out = capsys.readouterr().out
    assert f"feature cache {tmp_path / 'cache'} (auto" in out
    assert f"{loader_workers('auto')} loader worker" in out
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 200  # every clip of train, val and test, once
    stamps = [e.stat().st_mtime_ns for e in entries]
    again = train(build_config(tiny_recipe(fsdd_small, tmp_path / "again", augment=aug, train=auto)))
    assert [e.stat().st_mtime_ns for e in sorted((tmp_path / "cache").rglob("*.npy"))] == stamps  # read, not rewritten
    worker = train(build_config(tiny_recipe(fsdd_small, tmp_path / "worker", augment=aug, train=auto,
                                            data={"num_workers": 1})))
    assert "1 loader worker," in capsys.readouterr().out
    runs = ("plain", "default", "again", "worker")
    weights = [safetensors.torch.load_file(str(tmp_path / r / "best.safetensors")) for r in runs]
    for w in weights[1:]:
        assert w.keys() == weights[0].keys()
        for k in w:
            torch.testing.assert_close(w[k], weights[0][k], atol=0, rtol=0)
    assert plain["best_val"] == default["best_val"] == again["best_val"] == worker["best_val"]
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["precision"]["requested"] == "auto"


def test_num_workers_must_be_auto_or_a_count(fsdd_small, tmp_path):
    from flexiast.config import ConfigError

    with pytest.raises(ConfigError, match="data.num_workers: 'many' is not one of auto"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", data={"num_workers": "many"}))
    with pytest.raises(ConfigError, match="data.num_workers: -1 must be non-negative"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", data={"num_workers": -1}))
