"""A model family brings its own recipe keys; adding one changes nothing in ``flexiast.config``.

A throwaway family (a tiny model, its configuration, its ``model:`` section and a made-up
top-level section ``toy: {wobble}``) is registered for one test at a time: a recipe using its
setting validates and round-trips, a bad value is refused by the family's own check, and the
same setting under another family is refused naming the key and the family. The registered
families' own keys (an AST's ``phases[].patch``, ``init.source_*``, ``loss.teacher_patch_size``,
an SSAST's ``pretrain``) keep the attribute surface the engine reads for every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn as nn

from flexiast.config import ConfigError, build_config, config_to_dict
from flexiast.models import FlexModel, ModelFamily, create_model
from flexiast.models import base
from flexiast.models.base import FamilyConfig
from flexiast.models.points import LengthPoints
from flexiast.models.ssast.recipe import OBJECTIVES
from flexiast.recipe_checks import FamilyKeys
from flexiast.tasks.masked_patch import OBJECTIVES as TASK_OBJECTIVES


@dataclass(frozen=True)
class ToyConfig(FamilyConfig):
    arch: ClassVar[str] = "toy"
    num_classes: int = 2
    input_fdim: int = 8
    input_tdim: int = 16
    labels: tuple | None = None
    width: int = 4


class Toy(FlexModel):
    """Mean over time, then a linear head."""

    config_class = ToyConfig
    feature_kind = "kaldi_fbank"
    num_layers = 0

    def __init__(self, num_classes: int | None = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        config = self.config
        self.head = nn.Linear(config.input_fdim, config.num_classes)

    def forward(self, spec: torch.Tensor, **call) -> torch.Tensor:
        return self.head(spec.mean(dim=1))


@dataclass
class ToySection:
    arch: str = ToyConfig.arch
    width: int = 4


def toy_from_recipe(section: ToySection, *, num_classes: int, input_fdim: int, input_tdim: int, labels=None):
    return ToyConfig(num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim, labels=labels,
                     width=section.width)


@dataclass
class ToySettings:
    """The toy's own section: how much it wobbles, in [0, 1]."""

    wobble: float = 0.0

    def check(self, ctx) -> None:
        if not 0.0 <= self.wobble <= 1.0:
            raise ConfigError(f"{ctx.key}.wobble: {self.wobble} must lie in [0, 1]")


@pytest.fixture
def toy(monkeypatch):
    family = ModelFamily(arch="toy", config_class=ToyConfig, model_class=Toy, feature_kind="kaldi_fbank",
                         recipe_section=ToySection, config_from_recipe=toy_from_recipe, points=LengthPoints(),
                         recipe_keys=(FamilyKeys("", ToySettings, "toy"),))
    monkeypatch.setitem(base._FAMILIES, "toy", family)
    return family


def recipe(arch: str, **sections) -> dict:
    model = {"arch": arch, **({"preset": "tiny"} if arch == "ast" else {})}
    return {"model": model, "features": {"num_mel_bins": 32, "target_length": 64, "mean": 0.0, "std": 1.0},
            "data": {"format": "fsdd", "root": "fsdd"}, "phases": [{"epochs": 1}], **sections}


def test_a_new_familys_own_setting_validates_and_round_trips(toy):
    cfg = build_config(recipe("toy", toy={"wobble": 0.25}), check_files=False)
    assert cfg.toy.wobble == 0.25
    assert config_to_dict(cfg)["toy"] == {"wobble": 0.25}
    assert build_config(config_to_dict(cfg), check_files=False) == cfg
    model = create_model(cfg.model_config(num_classes=3))
    assert model(torch.zeros(2, 64, 32)).shape == (2, 3)
    assert build_config(recipe("toy"), check_files=False).toy.wobble == 0.0  # left out: its default


def test_a_new_familys_check_refuses_its_bad_value(toy):
    with pytest.raises(ConfigError, match=r"^toy\.wobble: 2\.0 must lie in \[0, 1\]"):
        build_config(recipe("toy", toy={"wobble": 2.0}), check_files=False)
    with pytest.raises(ConfigError, match=r"unknown key toy\.shake; ToySettings takes wobble"):
        build_config(recipe("toy", toy={"shake": 1}), check_files=False)


def test_a_new_familys_setting_under_another_family_is_refused_naming_key_and_family(toy):
    with pytest.raises(ConfigError, match=r"^toy: a ast model takes no toy \(a setting of toy recipes\)"):
        build_config(recipe("ast", toy={"wobble": 0.25}), check_files=False)
    ast = build_config(recipe("ast"), check_files=False)
    assert "toy" not in config_to_dict(ast) and ast.toy.wobble == 0.0  # the declaring family's default
    assert build_config(recipe("ast", toy={"wobble": 0.0}), check_files=False) == ast  # a default is accepted


def test_other_families_keys_are_refused_for_the_new_family(toy):
    refusals = {"phases": ([{"epochs": 1, "patch": {"sizes": [8]}}], r"phases\[0\]\.patch: a toy model's calls take "
                                                                       r"no patch size.*\(a setting of ast, passt, ssast"),
                "pretrain": ({"masked": 10}, r"pretrain: masked-patch pretraining needs a model without a classifier"),
                "init": ({"source_stride": 10}, r"init\.source_stride: describes an AST file; a toy model's"),
                "loss": ({"teacher_patch_size": 8}, r"loss\.teacher_patch_size: a toy model's calls take no patch")}
    for section, (value, message) in refusals.items():
        with pytest.raises(ConfigError, match=message):
            build_config(recipe("toy", **{section: value}), check_files=False)
    cfg = build_config(recipe("toy"), check_files=False)
    assert cfg.phases[0].patch.sizes is None and cfg.init.source_stride is None  # what the engine reads
    assert cfg.loss.teacher_patch_size is None and cfg.pretrain.masked == 400
    assert set(config_to_dict(cfg)) == {"name", "seed", "out", "model", "init", "features", "data", "augment",
                                        "loss", "optimizer", "schedule", "train", "phases", "toy"}


def test_registered_families_keep_the_attribute_surface_and_their_sections():
    ast = build_config({**recipe("ast"), "init": {"source_stride": 10}, "loss": {"teacher_patch_size": [16, 8]},
                        "phases": [{"epochs": 1, "patch": {"sampler": "uniform", "sizes": [8, 16]}}]},
                       check_files=False)
    assert (ast.init.source_stride, ast.loss.teacher_patch_size, ast.phases[0].patch.sizes) == (10, [16, 8], [8, 16])
    d = config_to_dict(ast)
    assert d["init"]["source_stride"] == 10 and d["phases"][0]["patch"]["sampler"] == "uniform"
    assert "pretrain" not in d and build_config(d, check_files=False) == ast
    with pytest.raises(ConfigError, match=r"init\.source_stride: 0 must be positive"):
        build_config({**recipe("ast"), "init": {"source_stride": 0}}, check_files=False)
    ssast = build_config({**recipe("ssast"), "model": {"arch": "ssast", "preset": "tiny"},
                          "data": {"format": "audio", "root": "x"}, "pretrain": {"masked": 0.5}}, check_files=False)
    assert ssast.pretrain.masked == 0.5 and config_to_dict(ssast)["pretrain"]["masked"] == 0.5
    with pytest.raises(ConfigError, match=r"loss\.teacher_patch_size: a ssast model's calls take no patch size"):
        build_config({**recipe("ssast"), "model": {"arch": "ssast", "preset": "tiny"},
                      "data": {"format": "audio", "root": "x"}, "loss": {"teacher_patch_size": 8}}, check_files=False)


def test_ssast_recipe_objectives_are_the_tasks():
    """The SSAST section lists the task's objectives (the task is a layer above the families)."""
    assert OBJECTIVES == tuple(TASK_OBJECTIVES)
