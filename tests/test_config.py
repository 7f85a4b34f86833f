"""The training configuration: YAML + dotted overrides, every refusal naming its key."""

from __future__ import annotations

import re

import pytest

from flexiast.config import ConfigError, apply_overrides, load_config
from flexiast.models.points import OperatingPoint


def recipe(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = """
name: t
out: {out}
model: {{preset: tiny}}
features: {{num_mel_bins: 128, target_length: 128, mean: -3.0, std: 5.0}}
data: {{format: fsdd, root: {root}}}
phases:
  - epochs: 2
    compression: fshift:2
    patch: {{sampler: uniform, sizes: [8, 16, 32]}}
  - epochs: 1
"""


@pytest.fixture
def base(tmp_path, fsdd_dir):
    return BASE.format(out=tmp_path / "run", root=fsdd_dir.parent)


def load(tmp_path, text, *overrides, **kw):
    return load_config(recipe(tmp_path, text), list(overrides), **kw)


def test_recipe_and_overrides_build_typed_config(tmp_path, base):
    cfg = load(tmp_path, base, "optimizer.lr=2.5e-4", "phases.1.patch.sizes=[16]", "data.options.task=speakers",
               "train.precision=bf16")
    assert cfg.optimizer.lr == 2.5e-4 and isinstance(cfg.optimizer.lr, float)
    assert cfg.phases[1].patch.sizes == [16]
    assert cfg.data.options == {"task": "speakers"}
    assert cfg.phase_compression(0).factor == 2
    assert [p.patch for p in cfg.phase_points(0)] == [(8, 8), (16, 16), (32, 32)]
    assert cfg.feature_config().frames(cfg.phase_compression(0)) == 64


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path, base):
    cfg = load(tmp_path, base + "optimizer: {lr: 1e-4}\n")  # PyYAML reads 1e-4 as a string
    assert cfg.optimizer.lr == 1e-4


@pytest.mark.parametrize("override, key", [
    ("train.lerning_rate=1", "train.lerning_rate"),
    ("phases.0.compresion=fshift:2", "phases[0].compresion"),
    ("bogus=1", "bogus"),
    ("phases.1.optimizer={lr: 1e-3, momentum: 0.9}", "phases[1].optimizer.momentum"),
])
def test_unknown_keys_are_named(tmp_path, base, override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(tmp_path, base, override)


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=many", "data.batch_size"),
    ("phases.0.epochs=1.5", r"phases\[0\].epochs"),
    ("train.weight_averaging=maybe", "train.weight_averaging"),
    ("optimizer.betas=0.9", "optimizer.betas"),
])
def test_wrong_types_are_named(tmp_path, base, override, key):
    with pytest.raises(ConfigError, match=key):
        load(tmp_path, base, override)


@pytest.mark.parametrize("overrides, match", [
    # 128 frames / fshift 2 = 64 frames; a 96-frame patch does not fit.
    (["phases.0.patch.sizes=[8,96]"], r"phases\[0\].patch.sizes: patch 96x96 .* 64 frames"),
    # patch:4 widens a 32-patch to 32 x 128... of a 128-frame input that fits; 48 does not.
    (["phases.0.compression=patch:4", "phases.0.patch.sizes=[48]"], r"phases\[0\].patch.sizes: patch 48x192"),
    (["phases.0.compression=avgpool:256"], r"phases\[0\].compression: .*leaves no frames"),
    (["phases.0.compression=shrink:2"], r"phases\[0\].compression"),
    (["optimizer.lr=-1e-4"], "optimizer.lr: -0.0001 must be non-negative"),
    (["phases.1.optimizer={lr: -1}"], r"phases\[1\].optimizer.lr"),
    (["augment.mixup=1.5"], "augment"),
    (["phases.0.epochs=0"], r"phases\[0\].epochs"),
    (["phases.0.steps=5"], r"phases\[0\]: give exactly one of epochs or steps"),
    (["phases.0.patch.sampler=weighted"], r"phases\[0\].patch.weights"),
    (["phases.0.patch.sampler=fixed"], r"phases\[0\].patch.sizes: a fixed sampler takes one size"),
    (["train.precision=fp64"], "train.precision"),
    (["train.device=cpu", "train.precision=fp16"], "fp16 needs a GPU"),
    (["data.batch_size=10", "train.accum_steps=4"], "data.batch_size: 10 is not divisible"),
    (["train.select=24", "train.eval_patch_sizes=[16,32]"], "train.select: patch size 24"),
    (["loss.kd_weight=2"], "loss.kd_weight"),
    (["loss.teacher=/nonexistent/teacher.pt", "phases.0.compression=patch:2"],
     "loss.teacher: teacher checkpoint /nonexistent/teacher.pt does not exist"),
    (["loss.teacher=/nonexistent/teacher.pt"], r"phases\[0\].compression: distillation .* full-resolution"),
    (["data.kfold=5"], "data.kfold: the fsdd reader has no folds"),
    # The stored 16 kernel does not fit 128 / 16 = 8 frames, whatever the sampler draws.
    (["phases.0.compression=fshift:16", "phases.0.patch.sizes=[8]"], r"phases\[0\].compression: the stored 16x16"),
    (["phases.0.compression=patch:16", "phases.0.patch.sizes=[4]"], r"phases\[0\].compression: the stored 16x256"),
    (["model.stride=0"], "model.stride"),
    (["model.stride=[16,-3]"], "model.stride"),
    (["out=runs/{nme}"], r"out: 'runs/\{nme\}' may only use \{name\}"),
    (["schedule={name: multistep, decay_from: -2}"], "schedule.decay_from"),
    (["schedule={name: cosine, min_lr: 1.0}"], "min_lr=1.0 is above the learning rate"),
    (["features.mean=null"], "features: give target_length, mean and std"),
    (["init.path=/nonexistent/ast.pth"], "init.path"),
    (["data.root=/nonexistent/fsdd"], "data.root: data folder /nonexistent/fsdd does not exist"),
    (["data.format=audioset"], "data.format"),
    (["data.val_fraction=0"], "data: give a val split"),
    (["train.weight_averaging=true", "train.wa_start=3"], "train.wa_start"),
    (["model.preset=huge"], "model.preset"),
    (["train.average_best=-1"], r"train.average_best=-1 must be 0 \(off\)"),
    (["train.average_best=2", "train.weight_averaging=true"],
     "train.average_best=2 cannot be combined with train.weight_averaging"),
    (["train.average_best=99"], "train.average_best=99 is more than the final phase's"),
    (["augment.mixup_on=melspec"], "augment: mixup_on='melspec' is not one of waveform, spectrogram"),
    (["schedule={name: htsat, epoch_rates: [0.1, 0.2]}"], "schedule.epoch_bounds: .* one epoch per rate"),
    (["schedule={name: htsat, epoch_bounds: [20, 10, 30]}"], "schedule.epoch_bounds: .* increasing"),
    (["schedule={name: htsat, epoch_rates: [0.1, 0, 1]}"], "schedule.epoch_rates"),
    (["schedule={name: cosine, epoch_rates: [0.1]}"], "schedule.epoch_rates: only the htsat schedule"),
    (["phases=[]"], "phases: at least one phase"),
])
def test_impossible_values_are_refused_with_the_key(tmp_path, base, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, base, *overrides)


def test_validation_sizes_that_only_fit_the_final_phase_are_skipped_in_coarse_ones(tmp_path, base):
    # 128 frames / fshift 4 = 32 frames: patch 48 cannot run in the coarse phase, but can in the final one.
    cfg = load(tmp_path, base, "phases.0.compression=fshift:4", "phases.0.patch.sizes=[16]",
               "train.eval_patch_sizes=[16,48]")
    assert {k: p.patch for k, p in cfg.eval_points(0).items()} == {"16": (16, 16)}
    assert {k: p.patch for k, p in cfg.eval_points(1).items()} == {"16": (16, 16), "48": (48, 48)}
    with pytest.raises(ConfigError, match="train.eval_patch_sizes: patch 160x160"):
        load(tmp_path, base, "train.eval_patch_sizes=[16,160]")


def test_unwritable_output_directory_is_refused(tmp_path, base):
    # Permission bits do not stop root (CI runs as root), so block the path with a file.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="out: cannot write the output directory"):
        load(tmp_path, base, f"out={blocker}/run")


def test_recipe_errors_name_the_file(tmp_path):
    bad = recipe(tmp_path, "phases: [epochs: 1\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such|No such"):
        load_config(tmp_path / "missing.yaml")


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="not key.path=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides({"phases": [{}]}, ["phases.3.epochs=1"])
    assert apply_overrides({"phases": [{"epochs": 1}]}, ["phases.0.epochs=4"]) == {"phases": [{"epochs": 4}]}


def test_fold_placeholder_needs_kfold_and_every_folds_weights(tmp_path, base):
    with pytest.raises(ConfigError, match=r"init.path: .*names a \{fold\}, but data.kfold is off"):
        load(tmp_path, base, f"init.path={tmp_path}/ast/fold{{fold}}/best.safetensors")
    esc = base.replace("format: fsdd", "format: esc50")
    for k in (1, 2, 3, 4):  # fold 5's weights are missing
        (tmp_path / "ast" / f"fold{k}").mkdir(parents=True)
        (tmp_path / "ast" / f"fold{k}" / "best.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"init.path: initial weights .*fold5/best.safetensors does not exist"):
        load(tmp_path, esc, "data.kfold=5", f"init.path={tmp_path}/ast/fold{{fold}}/best.safetensors")


HTSAT = """
name: h
out: {out}
model: {{arch: htsat, preset: micro, freq_ratio: 2}}
features: {{target_length: 128}}
data: {{format: fsdd, root: {root}}}
phases:
  - {{epochs: 1, compression: "fshift:4"}}
  - {{epochs: 2}}
"""


def test_an_htsat_recipe_takes_its_log_mel_and_refuses_patch_settings(tmp_path, fsdd_dir):
    """A family whose calls take no patch size (HTS-AT) gets its own front end by default,
    its phases change only the input length, and every patch setting is refused, named."""
    text = HTSAT.format(out=tmp_path / "run", root=fsdd_dir.parent)
    cfg = load(tmp_path, text)
    f = cfg.feature_config()
    assert (f.kind, f.sample_rate, f.num_mel_bins, f.fmin, f.fmax, f.normalization) == \
        ("slaney_logmel", 32000, 64, 50.0, 14000.0, "none")
    assert cfg.eval_points(0) == {"stored": OperatingPoint(32)} and cfg.phase_points(0) == [OperatingPoint(32)]
    from flexiast.engine.phases import PhasePlan
    assert PhasePlan(cfg, f).geometry(0) == {"input_tdim": 32}
    assert PhasePlan(cfg, f).geometry(1) == {"input_tdim": 128}
    refusals = {
        "phases.0.compression=patch:2": "phases[0].compression: patch:C widens a patch kernel",
        "phases.1.patch.sizes=[8,16]": "phases[1].patch: a htsat model's calls take no patch size",
        "train.eval_patch_sizes=[16]": "train.eval_patch_sizes: a htsat model's calls take no patch size",
        "train.select=16": "train.select: 16 names a patch size",
        "model.patch_size=16": "unknown key model.patch_size",
        "features.dataset=audioset": "features.dataset: 'audioset' names AST's Kaldi fbank statistics",
        "features.kind=kaldi_fbank features.num_mel_bins=64 features.mean=-4 features.std=4":
            "features: kaldi_fbank features, but a htsat model takes slaney_logmel",
        "features.mean=-4.2": "features.mean: slaney_logmel features take no dataset statistics",
        "features.num_mel_bins=40": "features.num_mel_bins / features.target_length: the htsat model .* cannot take 40 "
                                    "mel bins",
        "features.fmax=20000": "features.fmax=20000 exceeds the Nyquist frequency 16000",
        "features.kind=mfcc": "features.kind: 'mfcc' is not one of kaldi_fbank, slaney_logmel",
    }
    for override, message in refusals.items():
        with pytest.raises(ConfigError, match=" .* ".join(re.escape(part) for part in message.split(" .* "))):
            load(tmp_path, text, *override.split())
