"""The PaSST family against PaSST's own module (``hear21passt``, installed without its declared
timm and torchaudio: its model code is plain torch; the one timm function it imports, a weights
download, is stood in for here), in float64, on random weights: nothing is downloaded."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from flexiast import ASTConfig
from flexiast.models import create_model, flops, load_model
from flexiast.models.passt import PaSST, PaSSTConfig
from flexiast.models.passt.weights import init_from, to_passt

from helpers import measured_flops, tiny_deit


@pytest.fixture(scope="module")
def passt_module():
    """``hear21passt.models.passt`` with ``timm.models._hub.download_cached_file`` stood in for
    (it would fetch weights; called here, it fails the test)."""
    def no_download(*args, **kwargs):
        raise AssertionError("hear21passt tried to download weights")

    hub = types.ModuleType("timm.models._hub")
    hub.download_cached_file = no_download
    stand_ins = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                 "timm.models._hub": hub}
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        module = importlib.import_module("hear21passt.models.passt")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    module.first_RUN = False  # its first forward prints every shape
    return module


def _theirs(passt_module, fdim=36, tdim=96, classes=5, dim=32, depth=2, heads=2):
    torch.manual_seed(0)
    model = passt_module.PaSST(img_size=(fdim, tdim), patch_size=16, stride=10, in_chans=1, num_classes=classes,
                               embed_dim=dim, depth=depth, num_heads=heads, distilled=True).eval()
    with torch.no_grad():  # off PaSST's initialisation (zero biases, ones in the norms); float32 values,
        for p in model.parameters():  # so that a float32 load holds them exactly
            p.add_(torch.randn_like(p) * 0.1)
    return model.double()


@pytest.mark.filterwarnings("ignore:Input image size")  # hear21passt warns of any input but its own length
@pytest.mark.parametrize("frames", [96, 76, 40], ids=["trained length", "shorter", "one column left of 9"])
def test_a_released_layout_gives_passts_outputs(passt_module, tmp_path, frames):
    """A state dict of hear21passt's module, written as a release is (``torch.save``), loads as a
    PaSST that gives the module's logits and features, also on a shorter input (the time table's
    first columns, as PaSST's inference cuts it)."""
    theirs = _theirs(passt_module)
    torch.save(theirs.state_dict(), tmp_path / "passt.pt")
    ours = load_model(tmp_path / "passt.pt", num_heads=2).double().eval()  # the file fixes all but the heads
    assert isinstance(ours, PaSST)
    cfg = ours.config
    assert (cfg.input_fdim, cfg.input_tdim, cfg.stride, cfg.patch_size, cfg.grid) == (36, 96, (10, 10), (16, 16), (3, 9))
    spec = torch.randn(3, frames, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, features = theirs(spec.transpose(1, 2)[:, None])
        torch.testing.assert_close(ours(spec), logits, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.embed(spec).pooled(), features, rtol=1e-12, atol=1e-12)


def test_passt_s_release_shapes_read_as_passt_s(passt_module, tmp_path):
    """The grid of PaSST-S (12 x 99 at stride 10) is read as its 128 bins x 998 frames."""
    theirs = _theirs(passt_module, fdim=128, tdim=998, classes=527, dim=32, depth=1, heads=1)
    assert theirs.freq_new_pos_embed.shape[2:] == (12, 1) and theirs.time_new_pos_embed.shape[2:] == (1, 99)
    torch.save(theirs.state_dict(), tmp_path / "passt-s.pt")
    ours = load_model(tmp_path / "passt-s.pt")
    assert ours.config == PaSSTConfig(num_classes=527, embed_dim=32, depth=1, num_heads=1, norm_eps=1e-6)
    assert ours.config.grid == (12, 99)


def test_the_layout_round_trips_into_passts_module(passt_module):
    """Our model written in the release layout (:func:`to_passt`) loads into hear21passt's module
    with ``strict=True`` and computes the same logits."""
    torch.manual_seed(2)
    ours = create_model("passt", num_classes=5, input_fdim=36, input_tdim=96, embed_dim=32, depth=2,
                        num_heads=2).double().eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    theirs = _theirs(passt_module)
    theirs.load_state_dict(to_passt(ours), strict=True)
    spec = torch.randn(2, 96, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(spec), theirs(spec.transpose(1, 2)[:, None])[0], rtol=1e-12, atol=1e-12)


def test_per_axis_positions_are_the_ast_grid_of_their_sum():
    """Another patch size, a shorter and a longer input: a PaSST's positions are an AST's grid
    (its one table resized as AST resizes it) made of the sum of the two tables, and the FLOP
    count of the per-axis resizes is what torch counts."""
    torch.manual_seed(4)
    passt = create_model("passt", num_classes=3, input_fdim=64, input_tdim=128, embed_dim=16, depth=1, num_heads=1)
    ast = create_model(ASTConfig.from_dict({**passt.config.to_dict(), "arch": "ast"}))
    ast.load_state_dict({**{k: v for k, v in passt.state_dict().items() if "pos_embed" not in k},
                         "pos_embed": passt.pos_embed.detach()})
    for frames, call in ((128, {"patch_size": 8}), (96, {}), (96, {"pos_grid": "centre"}), (200, {}),
                         (128, {"patch_size": (16, 24)})):
        spec = torch.randn(2, frames, 64)
        with torch.no_grad():
            torch.testing.assert_close(passt(spec, **call), ast(spec, **call), rtol=1e-5, atol=1e-6)
        assert flops(passt, spec.shape, **call).forward == measured_flops(passt, spec, **call)


def test_a_recipe_starts_a_passt_from_deit_by_splitting_the_grid(tmp_path):
    """From an ImageNet DeiT (timm layout): the AST the file gives at the target's geometry, its
    grid's mean over time as the frequency table and over frequency as the time table (PaSST's
    split of DeiT's grid), every other tensor that AST's."""
    torch.save(tiny_deit(width=32, depth=2), tmp_path / "deit.pth")
    target = PaSSTConfig(num_classes=4, input_fdim=64, input_tdim=96, embed_dim=32, depth=2, num_heads=2)
    model = init_from(tmp_path / "deit.pth", target)
    assert isinstance(model, PaSST) and model.config == target
    ast = load_model(tmp_path / "deit.pth", num_classes=4, input_fdim=64, input_tdim=96, stride=10)
    grid = ast.pos_embed[0, 2:].reshape(*target.grid, 32).detach()
    torch.testing.assert_close(model.freq_new_pos_embed[0, :, :, 0].detach(), grid.mean(dim=1).T)
    torch.testing.assert_close(model.time_new_pos_embed[0, :, 0, :].detach(), grid.mean(dim=0).T)
    for k in ("patch_embed.proj.weight", "blocks.1.mlp.fc2.weight", "cls_token"):
        assert torch.equal(model.state_dict()[k], ast.state_dict()[k]), k


@pytest.mark.filterwarnings("ignore:Input image size")
def test_a_passt_file_starts_a_shorter_recipe_from_the_first_time_columns(passt_module, tmp_path):
    """ESC-50's 5 s clips from an AudioSet PaSST: the time table's first columns (PaSST's cut), a
    new head; the logits of the start are the file's model on the same short input, but the head."""
    theirs = _theirs(passt_module)
    torch.save(theirs.state_dict(), tmp_path / "passt.pt")
    target = PaSSTConfig(num_classes=7, input_fdim=36, input_tdim=56, embed_dim=32, depth=2, num_heads=2)
    model = init_from(tmp_path / "passt.pt", target)
    assert model.config == target and model.config.grid == (3, 5)
    torch.testing.assert_close(model.time_new_pos_embed.double(), theirs.time_new_pos_embed[..., :5].float().double())
    spec = torch.randn(2, 56, 36, dtype=torch.float64)
    with torch.no_grad():
        _, features = theirs(spec.transpose(1, 2)[:, None])
        torch.testing.assert_close(model.double().embed(spec).pooled(), features, rtol=1e-12, atol=1e-12)


def test_patchout_on_a_passt_counts_what_torch_counts():
    """PaSST's own training setting on its own grid (40 of 99 columns, 4 of 12 rows, PaSST-S on
    AudioSet), forward and backward, at the stored patch and at FlexiAST's 8."""
    from flexiast.models.patchout import Patchout

    torch.manual_seed(5)
    model = create_model("passt", num_classes=3, embed_dim=16, depth=1, num_heads=1)  # 128 x 998: 12 x 99
    spec = torch.randn(2, 998, 128)
    for call, patchout in (({}, Patchout(time=40, freq=4)), ({"patch_size": 8}, Patchout(time=0.4, freq=0.33))):
        draw = patchout.draw([(0, 7, 1), (0, 7, 2)])
        measured = measured_flops(model, spec, True, patchout=draw, **call)
        model.zero_grad(set_to_none=True)
        count = flops(model, spec.shape, patchout=draw, **call)
        assert count.training == measured, call
    assert flops(model, spec.shape, patchout=Patchout(time=40, freq=4)).tokens == 8 * 59 + 2


def test_a_stride_larger_than_the_patch_is_refused():
    """PaSST's stride 10 belongs to its 16 x 16 patches: with 8 x 8 patches it would skip input."""
    with pytest.raises(ValueError, match=r"stride=\(10, 10\) is larger than patch_size=\(8, 8\)"):
        create_model("passt-base", patch_size=8)
    assert create_model("passt-tiny", num_classes=2, patch_size=8, stride=8).config.grid == (16, 124)
