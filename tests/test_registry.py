"""The model registry around the families: names, files of earlier versions, foreign files,
and features of the right kind (``flexiast.models``; the per-family contract is in
``test_families.py``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from flexiast import AST, CheckpointError, create_model, list_models, load_model
from flexiast.config import ConfigError, build_config
from flexiast.features import FeatureConfig
from flexiast.inference import load_inference_model
from flexiast.models import FamilyError
from helpers import tiny_recipe

SMALL = dict(num_classes=4, input_fdim=32, input_tdim=32, embed_dim=32, depth=1, num_heads=2)


def test_names_build_the_preset_with_overrides():
    assert list_models() == ["ast-base", "ast-small", "ast-tiny", "cnn14-base", "cnn14-micro", "htsat-micro",
                             "htsat-mini", "htsat-tiny", "passt-base", "passt-small", "passt-tiny", "ssast-base",
                             "ssast-small", "ssast-tiny"]
    assert list_models("ast") == ["ast-base", "ast-small", "ast-tiny"]
    model = create_model("ast-tiny", num_classes=3, depth=1, input_tdim=64)
    cfg = model.config
    assert isinstance(model, AST) and (cfg.embed_dim, cfg.num_heads, cfg.depth, cfg.num_classes) == (192, 3, 1, 3)
    assert create_model(cfg.to_dict()).config == cfg
    assert create_model(cfg, num_classes=7).config.num_classes == 7
    with pytest.raises(FamilyError, match="unknown model family 'wavegram'"):
        create_model("wavegram-tiny")
    with pytest.raises(FamilyError, match="unknown ast size 'huge'.*ast-base, ast-small, ast-tiny"):
        create_model("ast-huge")


def test_a_file_written_before_families_had_names_loads_as_an_ast(tmp_path):
    torch.manual_seed(0)
    model = AST(**SMALL).eval()
    legacy = {k: v for k, v in model.config.to_dict().items() if k != "arch"}
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "flexiast", "flexiast_config": json.dumps(legacy)})
    loaded = load_model(path).eval()
    spec = torch.randn(2, 32, 32)
    assert isinstance(loaded, AST) and loaded.config == model.config
    torch.testing.assert_close(loaded(spec), model(spec), rtol=0, atol=0)


def test_a_file_names_its_family_and_another_family_is_refused(tmp_path):
    model = AST(**SMALL)
    directory = model.save_pretrained(tmp_path / "m")
    assert json.loads((directory / "config.json").read_text())["model_config"]["arch"] == "ast"
    foreign = dict(model.config.to_dict(), arch="wavegram")
    (directory / "config.json").write_text(json.dumps({"format": "flexiast", "model_config": foreign}))
    with pytest.raises(CheckpointError, match="unknown model family 'wavegram'"):
        load_model(directory)
    with pytest.raises(CheckpointError, match="model of the ast family .*one of the htsat family is expected"):
        load_model(model.save_pretrained(tmp_path / "n"), arch="htsat")


def test_a_recipe_names_an_unknown_family_or_a_field_its_family_lacks(tmp_path, fsdd_small):
    with pytest.raises(ConfigError, match="model.arch: unknown model family 'swin'"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", model={"arch": "swin"}))
    with pytest.raises(ConfigError, match=r"model.arch: expected a model family's name, got \['ast'\]"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", model={"arch": ["ast"]}))
    with pytest.raises(ConfigError, match="unknown key model.window_size; ASTSection takes arch, preset"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", model={"window_size": 8}))
    with pytest.raises(ConfigError, match=r"model\.prefix_tokens=3 must be 1 \(cls\) or 2"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", model={"prefix_tokens": 3}))
    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "r"))
    assert cfg.model.arch == "ast"


def test_a_model_is_never_fed_features_of_another_kind(tmp_path):
    model = AST(**SMALL)
    features = FeatureConfig(num_mel_bins=32, target_length=32).to_dict()
    assert features["kind"] == "kaldi_fbank"
    slaney = FeatureConfig.htsat(num_mel_bins=32, target_length=32).to_dict()
    path = model.save_pretrained(tmp_path / "m", inference={"features": slaney, "multilabel": False})
    with pytest.raises(ValueError, match="a ast model takes kaldi_fbank features; the files give slaney_logmel"):
        load_inference_model(path)
    with pytest.raises(ValueError, match="features kind 'mfcc' is not one of kaldi_fbank, slaney_logmel"):
        FeatureConfig(**dict(features, kind="mfcc"))
    ok = model.save_pretrained(tmp_path / "ok", inference={"features": features, "multilabel": False})
    assert load_inference_model(ok).features.kind == "kaldi_fbank"
