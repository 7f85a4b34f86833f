"""flexiast.flops against torch's FlopCounterMode (:func:`helpers.measured_flops`)."""

from __future__ import annotations

import pytest
import torch

from flexiast import AST, flops

from helpers import measured_flops


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AST(num_classes=11, embed_dim=96, depth=2, num_heads=2, input_tdim=1024)


CASES = [dict(patch_size=8), dict(patch_size=16), dict(patch_size=24), dict(patch_size=48),
         dict(patch_size=(8, 32)), dict(patch_size=(16, 48)), dict(patch_size=(32, 12)),
         dict(patch_size=16, stride=10), dict(patch_size=20, resize="bl")]


@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
def test_forward_flops_match_flop_counter(model, kw):
    spec = torch.randn(2, 1024, 128)
    with torch.no_grad():
        measured = measured_flops(model, spec, False, **kw)
    predicted = flops(model, spec.shape, **kw).forward
    assert abs(predicted - measured) <= 0.01 * measured, (predicted, measured)


@pytest.mark.parametrize("kw", CASES[:6], ids=[str(c) for c in CASES[:6]])
def test_training_flops_match_flop_counter(model, kw):
    spec = torch.randn(2, 1024, 128)
    measured = measured_flops(model, spec, True, **kw)
    predicted = flops(model, spec.shape, **kw).training
    assert abs(predicted - measured) <= 0.01 * measured, (predicted, measured)


def test_components_by_hand():
    """AST-B/16 on 1024 x 128: 8 x 64 = 512 patches + 2 prefix tokens.

    Eleven layers for all 514 tokens; the last for the 2 prefix tokens, but its keys and
    values for all 514.
    """
    c = flops(AST.preset("base", num_classes=527).config, (1024, 128))
    s, d = 514, 768
    assert c.tokens == s and c.grid == (8, 64)
    assert c.patch_embed == 2 * 512 * 256 * d
    assert c.qkv == 2 * s * d * 3 * d * 11 + 2 * (2 * s + 2) * d * d
    assert c.attention == 4 * s * s * d * 11 + 4 * 2 * s * d
    assert c.mlp == 4 * s * d * 3072 * 11 + 4 * 2 * d * 3072
    assert c.patch_resize == c.pos_resize == 0 and c.head == 2 * d * 527
    c32 = flops(AST.preset("base").config, (1024, 128), 32)
    assert c32.patch_resize == 2 * d * (16 * 16 * 32 + 32 * 16 * 32)  # columns 16 -> 32, then rows 16 -> 32
    assert c32.pos_resize == 2 * d * (8 * 64 * 32 + 4 * 8 * 32)  # grid 8 x 64: time to 32, then frequency to 4


def test_bad_shapes_are_refused(model):
    with pytest.raises(ValueError, match="input_shape"):
        flops(model, (128,))
    with pytest.raises(ValueError, match="larger than the input"):
        flops(model, (1024, 128), 256)
