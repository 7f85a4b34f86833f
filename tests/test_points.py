"""Operating points: the one value every consumer iterates over, checked for every family.

For each registered family, every point of its kind's grid runs the same way through the
flexible model and through the copy fixed at it, and survives a trip through a profile row;
the patch kind's phase points are worked out by hand for a ``patch:C`` phase, and the length
kind's pooling against a reshape-and-mean written here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from flexiast.features import Compression
from flexiast.models import create_model, families
from flexiast.models.points import LengthPoints, OperatingPoint, PatchPoints, point_kind

FAMILIES = sorted(families())


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_grid_point_runs_fixed_as_it_runs_flexibly(arch):
    family = families()[arch]
    model = create_model({"arch": arch, **family.tiny}).eval()
    cfg, kind = model.config, family.points
    sizes = [cfg.patch_size[0]] if isinstance(kind, PatchPoints) and not kind.flexible else None
    lengths = [cfg.input_tdim, cfg.input_tdim // 2] if isinstance(kind, LengthPoints) else None
    points, _ = kind.grid(cfg, cfg.input_tdim, arch=arch, patch_sizes=sizes, input_lengths=lengths)
    assert points and point_kind({"row_kind": kind.name}).name == kind.name
    torch.manual_seed(0)
    spec = torch.randn(2, cfg.input_tdim, cfg.input_fdim)
    profile = {"input": {"frames": cfg.input_tdim}, "resize": "pi", "row_kind": kind.name}
    for point in points:
        with torch.no_grad():
            flexible = model(point.feed(spec), **point.call())
            fixed = point.fixed(model).eval()(point.feed(spec))
        torch.testing.assert_close(fixed, flexible, rtol=1e-5, atol=1e-5)
        assert kind.row_point(kind.row_fields(point), profile) == point


def test_patch_phase_points_are_the_sizes_on_their_axes_widened_by_c():
    kind = PatchPoints()
    section = SimpleNamespace(patch_size=16, stride=10)
    phase = SimpleNamespace(patch=SimpleNamespace(sizes=[8, 24], axes="time", resize="bl"))
    c = Compression("patch", 2)
    # patch:2 widens time by 2 (p x Cp); frequency keeps the stored 16 on axes=time; no overlap.
    assert kind.phase_geometry(section, c, 100) == {"input_tdim": 100, "patch_size": (16, 32), "stride": None}
    assert [(p.patch, p.resize, p.frames) for p in kind.phase_points(section, phase, c, 100)] == \
        [((16, 16), "bl", 100), ((16, 48), "bl", 100)]
    # At full resolution the stored kernel keeps the recipe's overlapping stride.
    assert kind.phase_geometry(section, Compression(), 100)["stride"] == (10, 10)
    # Validation points that do not fit the phase's input are left out, and say why.
    both = SimpleNamespace(patch=SimpleNamespace(sizes=None, axes="both", resize="pi"))
    assert list(kind.eval_points(section, both, Compression(), 20, 128, [8, 24], "pi")) == ["8"]
    assert kind.misfit(OperatingPoint(20, (24, 24)), 128) == "patch 24x24 is larger than the input (128 x 20)"


def test_length_points_pool_a_window_to_their_frames_and_refuse_patches():
    kind = LengthPoints()
    config = SimpleNamespace(input_tdim=64, input_fdim=16)
    points, skipped = kind.grid(config, 64, arch="htsat", input_lengths=[16, 64, 32])
    assert [(p.frames, p.pool) for p in points] == [(64, 1), (32, 2), (16, 4)] and skipped == []
    spec = torch.arange(2 * 64 * 3, dtype=torch.float32).reshape(2, 64, 3)
    by_hand = spec.reshape(2, 16, 4, 3).mean(dim=2)  # each run of 4 frames averaged
    torch.testing.assert_close(points[2].feed(spec), by_hand)
    assert points[2].call() == {} and points[2].label == "16 input frames"
    with pytest.raises(ValueError, match="must divide 64"):
        kind.grid(config, 64, arch="htsat", input_lengths=[48])
    with pytest.raises(ValueError, match="htsat model takes no patch size"):
        kind.given(config, arch="htsat", patch_size=16)
    with pytest.raises(ValueError, match="patch:C widens a patch kernel"):
        kind.check_recipe(arch="htsat", compression=Compression("patch", 2), key="phases[0]")


def test_a_fixed_patch_kind_refuses_other_sizes():
    config = SimpleNamespace(patch_size=(16, 16), input_tdim=64, input_fdim=32)
    with pytest.raises(ValueError, match="ssast model runs at its stored 16x16 patch only"):
        PatchPoints(flexible=False).given(config, arch="ssast", patch_size=8)
    assert PatchPoints(flexible=False).given(config, arch="ssast").call() == {"patch_size": (16, 16), "resize": "pi"}
