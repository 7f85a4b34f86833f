"""Partial last patches: dropped (the convolution's floor, AST's code) or zero-padded to whole
patches (FlexiAST Sec. 2.2's ceil grid), checked against grids and convolutions written out here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from flexiast import AST
from flexiast.config import load_config
from flexiast.models import flops
from flexiast.models.ast.config import ASTConfig
from flexiast.resize import grid_shape, resize_patch_weight


@pytest.mark.parametrize("patch,drop,pad", [
    (48, (2, 21), (3, 22)),    # 128 = 2 x 48 + 32 bins left over; 1024 = 21 x 48 + 16 frames
    (16, (8, 64), (8, 64)),    # whole patches: the two agree
    (30, (4, 34), (5, 35)),    # 8 bins and 4 frames left over
    (40, (3, 25), (4, 26)),
])
def test_grid_is_floor_or_ceil_of_the_input_over_the_patch(patch, drop, pad):
    assert grid_shape((128, 1024), patch, partial="drop") == drop
    assert grid_shape((128, 1024), patch, partial="pad") == pad
    assert pad == (math.ceil(128 / patch), math.ceil(1024 / patch))  # FlexiAST Sec. 2.2 without overlap
    assert grid_shape((128, 1024), (48, 48), (40, 40), partial="pad") == (math.ceil(80 / 40) + 1, math.ceil(976 / 40) + 1)


def test_a_patch_larger_than_the_input_is_refused_in_both_modes():
    for partial in ("drop", "pad"):
        with pytest.raises(ValueError, match="larger than the input"):
            grid_shape((128, 32), 48, partial=partial)
    with pytest.raises(ValueError, match="partial_patches='ceil'"):
        ASTConfig(partial_patches="ceil")


def _pair(partial: str) -> AST:
    torch.manual_seed(0)
    return AST(num_classes=3, input_fdim=48, input_tdim=64, embed_dim=32, depth=1, num_heads=2,
               patch_size=16, partial_patches=partial).eval()


def test_padded_tokens_are_the_convolution_of_the_zero_padded_input():
    model = _pair("pad")
    spec = torch.randn(2, 64, 48)
    patch = 20  # 48 bins = 2 x 20 + 8, 64 frames = 3 x 20 + 4: both axes have a partial patch
    got = model.embed(spec, layer=0, patch_size=patch)
    assert got.grid == (3, 4)
    x = F.pad(spec.transpose(1, 2).unsqueeze(1), (0, 4 * 20 - 64, 0, 3 * 20 - 48))  # zeros at the ends
    weight = resize_patch_weight(model.patch_embed.proj.weight, (20, 20), "pi")
    ref = F.conv2d(x, weight, model.patch_embed.proj.bias, stride=20).flatten(2).transpose(1, 2)
    ref = ref + model.pos_embed_for((20, 20), (20, 20), (3, 4), "leading")[:, 2:]
    torch.testing.assert_close(got.tokens, ref, atol=1e-5, rtol=1e-5)
    # the dropped model sees the same whole patches and nothing of the partial ones
    dropped = _pair("drop")
    dropped.load_state_dict(model.state_dict())
    assert dropped.embed(spec, layer=0, patch_size=patch).grid == (2, 3)
    changed = spec.clone()
    changed[:, 60:, :] += 1.0
    changed[:, :, 40:] += 1.0
    torch.testing.assert_close(dropped(changed, patch_size=patch), dropped(spec, patch_size=patch))
    assert not torch.allclose(model(changed, patch_size=patch), model(spec, patch_size=patch))


def test_flops_count_the_padded_grid():
    model = _pair("pad")
    spec = torch.randn(1, 64, 48)
    with FlopCounterMode(display=False) as counter:
        model(spec, patch_size=20)
    count = flops(model, (1, 64, 48), patch_size=20)
    assert count.grid == (3, 4) and count.tokens == 3 * 4 + 2
    assert count.forward == counter.get_total_flops()


def test_fixed_copy_and_save_keep_the_padding(tmp_path):
    model = _pair("pad")
    spec = torch.randn(2, 64, 48)
    fixed = model.at_patch_size(20)
    assert fixed.config.partial_patches == "pad"
    torch.testing.assert_close(fixed(spec), model(spec, patch_size=20), atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "m")
    loaded = AST.from_pretrained(tmp_path / "m")
    assert loaded.config.partial_patches == "pad"
    torch.testing.assert_close(loaded(spec, patch_size=20), model(spec, patch_size=20))


def test_recipe_setting_is_checked_by_name(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nmodel: {preset: tiny, partial_patches: ceil}\n"
                      "data: {format: fsdd, root: ../shared/data/fsdd}\nphases: [{epochs: 1}]\n")
    with pytest.raises(ValueError, match="partial_patches"):
        load_config(recipe)
