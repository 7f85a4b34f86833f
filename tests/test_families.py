"""The contract every registered model family meets, run unchanged on each of them.

The training engine, evaluation, deployment and the CLI hold a :class:`flexiast.models.FlexModel`
and never name its family (``tests/test_layering.py``); this module checks that what they
rely on holds for every family in :func:`flexiast.models.families`, on the family's ``tiny``
configuration and its ``example_calls``:

* the forward pass gives finite ``[batch, num_classes]`` logits for every example call (a
  pretraining family, without a classifier, finite predictions per clip: its own tests say what
  they mean, and it refuses a head);
* ``adapt`` moves a model to a quarter of its input length and back, and to a new head,
  carrying every weight the change does not concern;
* a saved model (directory or one safetensors file) loads as the same family, configuration
  and outputs, and the files name the family;
* the analytic FLOPs equal torch's ``FlopCounterMode``, forward and training;
* a fixed-size copy (``fixed``, what export uses) computes the flexible call;
* every preset builds by name, and the configuration class alone validates configurations.

The model's weights are moved off their initialisation before the checks, as training
would, so "equal" means carried over, not initialised alike.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from flexiast import CheckpointError
from flexiast.checkpoints import save_safetensors
from flexiast.models.packing import Clips
from flexiast.models import create_model, families, flops, list_models, load_model

from helpers import measured_flops

FAMILIES = sorted(families())


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return families()[request.param]


@pytest.fixture(scope="module")
def model(family):
    torch.manual_seed(0)
    model = create_model(family.arch, **family.tiny).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _spec(model, frames: int | None = None, batch: int = 2) -> torch.Tensor:
    cfg = model.config
    return torch.randn(batch, cfg.input_tdim if frames is None else frames, cfg.input_fdim,
                       generator=torch.Generator().manual_seed(1))


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _changed_by(family, **changes) -> set[str]:
    """The state-dict keys whose shapes depend on ``changes`` to the tiny configuration:
    those of two freshly built models differ."""
    before = _shapes(create_model(family.arch, **family.tiny))
    after = _shapes(create_model(family.arch, **{**family.tiny, **changes}))
    assert before.keys() == after.keys()
    return {k for k in before if before[k] != after[k]}


def _check_output(model, family, out, batch: int = 2) -> None:
    """Logits ``[batch, num_classes]``; a pretraining family's predictions hold a row per clip."""
    if family.classifier:
        assert out.shape == (batch, model.config.num_classes)
    else:
        assert batch in out.shape[:2]
    assert torch.isfinite(out).all()


def _unequal(a, b, keys) -> list[str]:
    sa, sb = a.state_dict(), b.state_dict()
    return [k for k in keys if not torch.equal(sa[k], sb[k])]


# -- forward --------------------------------------------------------------------------
def test_forward_shape_for_every_example_call(model, family):
    spec = _spec(model)
    with torch.no_grad():
        for call in family.example_calls:
            _check_output(model, family, model(spec, **call))


# -- adapt ----------------------------------------------------------------------------
def test_adapt_to_a_quarter_of_the_length_and_back(model, family):
    """Only the weights whose shapes depend on the input length change; the family's own
    models at both lengths say which those are (none, for a family without any)."""
    T = model.config.input_tdim
    length_dependent = _changed_by(family, input_tdim=T // 4)
    small = model.adapt(input_tdim=T // 4)
    assert small.config.input_tdim == T // 4
    assert small.config.to_dict() == model.config.replace(input_tdim=T // 4).to_dict()
    assert _shapes(small) == _shapes(create_model(small.config))
    with torch.no_grad():
        _check_output(model, family, small(_spec(model, T // 4)))
    carried = set(model.state_dict()) - length_dependent
    assert not _unequal(model, small, carried)

    back = small.adapt(input_tdim=T)
    assert back.config.to_dict() == model.config.to_dict()
    assert _shapes(back) == _shapes(model)
    assert not _unequal(model, back, carried)


def test_adapt_to_a_new_head(model, family):
    """The head is every top-level submodule with a tensor whose shape depends on the
    number of classes; everything else is carried. A pretraining family has none to change."""
    if not family.classifier:
        with pytest.raises(ValueError, match="no classifier"):
            model.adapt(num_classes=3)
        return
    head = {k.split(".")[0] for k in _changed_by(family, num_classes=3)}
    assert head, "no tensor depends on num_classes"
    three = model.adapt(num_classes=3)
    assert three.config.num_classes == 3
    with torch.no_grad():
        assert three(_spec(model)).shape == (2, 3)
    encoder = [k for k in model.state_dict() if k.split(".")[0] not in head]
    assert encoder and not _unequal(model, three, encoder)


# -- saving and loading -----------------------------------------------------------------
def _assert_same_model(loaded, model):
    assert type(loaded) is type(model)
    assert loaded.config.to_dict() == model.config.to_dict()
    spec = _spec(model)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(spec), model(spec))


def test_save_pretrained_round_trip(model, family, tmp_path):
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_config"]["arch"] == family.arch
    _assert_same_model(load_model(tmp_path), model)


def test_safetensors_round_trip(model, family, tmp_path):
    path = save_safetensors(model, tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["flexiast_config"])["arch"] == family.arch
    _assert_same_model(load_model(path), model)


def test_loading_as_another_family_is_refused(model, family, tmp_path):
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_model(tmp_path, arch="not-this-family")
    assert family.arch in str(caught.value) and "not-this-family" in str(caught.value)


# -- FLOPs ------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [False, True], ids=["forward", "training"])
def test_flops_equal_flop_counter(model, family, train):
    """Training counts the backward pass of ``output.sum()``; the input needs no gradient."""
    spec = _spec(model)
    for call in family.example_calls:
        with torch.set_grad_enabled(train):
            measured = measured_flops(model, spec, train, **call)
        model.zero_grad(set_to_none=True)
        count = flops(model, tuple(spec.shape), **call)
        assert (count.training if train else count.forward) == measured, call


# -- packed clips (ElasticAST) ----------------------------------------------------------------
def test_a_packing_family_gives_each_clip_what_it_gives_alone(model, family):
    """Clips of three lengths, packed into rows, against each clip run alone; a family that
    does not pack is refused a batch of clips rather than given something else."""
    T, bins = model.config.input_tdim, model.config.input_fdim
    g = torch.Generator().manual_seed(3)
    specs = [torch.randn(n, bins, generator=g) for n in (T, T // 2, T + T // 4)]
    clips = Clips(specs)
    if not family.packs:
        with pytest.raises(TypeError, match="does not pack clips"):
            model(clips)
        return
    with torch.no_grad():
        packed = model(clips)
        alone = torch.cat([model(s[None]) for s in specs])
    torch.testing.assert_close(packed, alone, rtol=0, atol=1e-5)
    assert flops(model, clips).forward == measured_flops(model, clips)


# -- fixed-size copies ---------------------------------------------------------------------
def test_fixed_copy_equals_the_flexible_call(model, family):
    T = model.config.input_tdim
    for frames in (T, T // 2):
        spec = _spec(model, frames)
        for call in family.example_calls:
            try:
                with torch.no_grad():
                    flexible = model(spec, **call)
            except ValueError:
                if frames == T:
                    raise
                continue  # a call that does not fit T // 2 frames (a patch longer than that) is left out there
            with torch.no_grad():
                fixed = model.fixed(input_tdim=frames, **call)(spec)
            torch.testing.assert_close(fixed, flexible, rtol=0, atol=1e-5, msg=f"{frames} frames, {call}")


# -- names and configurations -----------------------------------------------------------
def test_every_preset_builds_by_name(family):
    """All presets are built: the largest (an AST-base, 86M parameters) takes about 3 s."""
    names = list_models(family.arch)
    assert names == sorted(f"{family.arch}-{p}" for p in family.presets)
    assert set(names) <= set(list_models())
    classes = 2 if family.classifier else 0
    for name in names:
        model = create_model(name, **({"num_classes": classes} if classes else {}))
        assert model.config.arch == family.arch and model.config.num_classes == classes


def test_the_configuration_class_validates(model, family):
    config_class = family.config_class
    assert config_class.from_dict(model.config.to_dict()) == model.config
    other = next((arch for arch in FAMILIES if arch != family.arch), f"not-{family.arch}")
    with pytest.raises(ValueError, match=other):
        config_class.from_dict({**model.config.to_dict(), "arch": other})
