"""Packed clips of their own lengths (ElasticAST, Feng et al., Interspeech 2024).

The reference for a packed forward is each clip run alone through the unpacked model (itself
checked against Hugging Face's AST in ``test_model.py``); FLOPs against ``FlopCounterMode``;
the row packing against hand-computed rows.
"""

from __future__ import annotations

import pytest
import torch

from flexiast.models import create_model, flops
from flexiast.models.packing import Clips, PackingError, block_mask, pack_rows

from helpers import measured_flops

TINY = dict(num_classes=5, input_fdim=32, input_tdim=64, embed_dim=32, depth=2, num_heads=2, patch_size=16)
LENGTHS = (20, 64, 37, 100, 16, 50)
PATCHES = ((16, 16), (8, 8), (16, 16), (16, 24), (12, 12), (16, 16))


def _model(**changes):
    torch.manual_seed(0)
    model = create_model("ast", **{**TINY, **changes})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _specs(lengths=LENGTHS, bins: int = 32):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, bins, generator=g) for n in lengths]


# -- packing rows ----------------------------------------------------------------------------
def test_rows_are_filled_greedily_in_arrival_order():
    # sizes 3, 4 fill 7; 2 starts a row (7 + 2 > 7), 5 joins it (2 + 5 = 7); 6 needs its own
    assert pack_rows([3, 4, 2, 5, 6, 1], 7) == [[0, 1], [2, 3], [4, 5]]
    assert pack_rows([7, 7], 7) == [[0], [1]]


def test_a_clip_larger_than_a_row_is_refused_naming_the_setting():
    with pytest.raises(PackingError, match="row_tokens"):
        pack_rows([3, 9], 8)


def test_the_mask_is_block_diagonal_with_padding_on_its_own():
    ids = torch.tensor([[0, 0, 1], [2, 2, -2]])  # row 0: clips 0 and 1; row 1: clip 2, then padding
    mask = block_mask(ids)[:, 0]
    assert mask[0].int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert mask[1].int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_clips_are_checked():
    with pytest.raises(PackingError, match="at least one clip"):
        Clips([])
    with pytest.raises(PackingError, match="same mel bins"):
        Clips([torch.zeros(10, 32), torch.zeros(10, 16)])
    with pytest.raises(PackingError, match="2 patch sizes for 1 clips"):
        Clips([torch.zeros(10, 32)], patches=[(16, 16), (8, 8)])
    spec, lengths = Clips([torch.ones(3, 2), torch.ones(5, 2)]).padded(-1.0)
    assert spec.shape == (2, 5, 2) and lengths.tolist() == [3, 5] and spec[0, 3:].eq(-1).all()


# -- the packed forward ------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["prefix", "mean", "attention"])
@pytest.mark.parametrize("partial", ["drop", "pad"])
def test_packed_forward_and_backward_equal_each_clip_alone(pooling, partial):
    """Mixed lengths (shorter and longer than trained) and mixed patch sizes, packed into rows
    of 60 tokens, against each clip alone: logits and every parameter's gradient, fp32."""
    model = _model(pooling=pooling, partial_patches=partial)
    specs = _specs()
    clips = Clips(specs, PATCHES, row_tokens=60)
    params = [p for p in model.parameters()]
    packed = model(clips)
    grads = torch.autograd.grad(packed.square().sum(), params, allow_unused=True)
    alone = torch.cat([model(s[None], patch_size=p) for s, p in zip(specs, PATCHES)])
    ref = torch.autograd.grad(alone.square().sum(), params, allow_unused=True)
    torch.testing.assert_close(packed, alone, rtol=0, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_several_rows_are_really_packed():
    """The rows of the test above hold several clips each (so the mask is what separates them)."""
    from flexiast.models.ast.packed import layout

    lay = layout(_model().config, Clips(_specs(), PATCHES, row_tokens=60))
    assert len(lay.rows) < len(LENGTHS) and max(len(r) for r in lay.rows) >= 2


def test_a_clip_does_not_see_the_other_clips_of_its_row():
    model = _model().eval()
    specs = _specs((30, 40, 20))
    other = [specs[0], torch.randn(40, 32) * 5, specs[2]]
    with torch.no_grad():
        a, b = model(Clips(specs, row_tokens=200)), model(Clips(other, row_tokens=200))
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=0, atol=1e-6)
    assert not torch.allclose(a[1], b[1])


def test_a_patch_that_does_not_fit_a_clip_names_the_clip():
    with pytest.raises(ValueError, match="clip 1 of the batch"):
        _model()(Clips(_specs((64, 10)), row_tokens=200))


# -- FLOPs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["prefix", "attention"])
@pytest.mark.parametrize("pos_grid", ["leading", "resize"])
@pytest.mark.parametrize("train", [False, True], ids=["forward", "training"])
def test_packed_flops_equal_flop_counter(pooling, pos_grid, train):
    model = _model(pooling=pooling)
    clips = Clips(_specs(), PATCHES, row_tokens=60)
    count = flops(model, clips, pos_grid=pos_grid)
    with torch.set_grad_enabled(train):
        measured = measured_flops(model, clips, train, pos_grid=pos_grid)
    assert (count.training if train else count.forward) == measured
    assert count.batch_size == len(LENGTHS)


@pytest.mark.parametrize("frames", [40, 100])
def test_attention_pooling_and_grid_stretching_are_counted_unpacked_too(frames):
    model = _model(pooling="attention")
    spec = torch.randn(3, frames, 32)
    count = flops(model, tuple(spec.shape), patch_size=8, pos_grid="resize")
    assert count.pool > 0 and count.forward == measured_flops(model, spec, patch_size=8, pos_grid="resize")


def test_weights_of_another_pooling_start_an_attention_pool_afresh(tmp_path):
    """An AST trained with prefix pooling loads as an attention-pooling one: the encoder's weights
    are the file's, the pool and head fresh; and back: the pool is dropped."""
    from flexiast.models import load_model

    prefix = _model()
    prefix.save_pretrained(tmp_path / "prefix")
    with pytest.warns(UserWarning, match="initialised at random"):
        pooled = load_model(tmp_path / "prefix", pooling="attention")
    assert pooled.config.pooling == "attention" and hasattr(pooled, "pool")
    torch.testing.assert_close(pooled.blocks[0].attn.qkv.weight, prefix.blocks[0].attn.qkv.weight)
    pooled.save_pretrained(tmp_path / "pooled")
    back = load_model(tmp_path / "pooled", pooling="prefix")
    assert not hasattr(back, "pool")
