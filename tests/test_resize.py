"""PI-resize, bilinear resize and positional grids against hand-written references.

The reference bilinear matrix is built here in NumPy from the half-pixel rule
(``src = (dst + 0.5) * in / out - 0.5``, clamped at 0, neighbours ``floor(src)`` and
``floor(src) + 1`` capped at the edge), independently of torch's interpolate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexiast import bilinear_resize, grid_shape, pi_resize, pi_resize_matrix, resize_pos_grid
from flexiast.resize import ast_adapt_pos_grid, bilinear_matrix

from reference_vit import reference_B


@pytest.mark.parametrize("old,new", [((16, 16), (24, 24)), ((16, 16), (8, 8)), ((16, 16), (16, 48)), ((5, 7), (3, 11))])
def test_bilinear_matrix_matches_the_hand_written_rule(old, new):
    np.testing.assert_allclose(bilinear_matrix(old, new).numpy(), reference_B(old, new), atol=1e-12)


@pytest.mark.parametrize("new", [(16, 16), (20, 20), (24, 24), (32, 32), (48, 48), (16, 32), (20, 48), (30, 17)])
def test_upsampling_preserves_every_token(new):
    """FlexiAST eq. (2) with zero loss: <x, w> == <resize(x), pi_resize(w)> for any patch x."""
    torch.manual_seed(0)
    w = torch.randn(32, 1, 16, 16, dtype=torch.float64)
    x = torch.randn(50, 1, 16, 16, dtype=torch.float64)
    x_hat = F.interpolate(x, size=new, mode="bilinear", align_corners=False)
    w_hat = pi_resize(w, new)
    assert w_hat.shape == (32, 1, *new)
    before = x.flatten(1) @ w.flatten(1).T
    after = x_hat.flatten(1) @ w_hat.flatten(1).T
    torch.testing.assert_close(after, before, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("new", [(8, 8), (10, 10), (12, 12), (8, 16), (12, 6)])
def test_downsampling_is_the_least_squares_solution(new):
    """For x ~ N(0, I), eq. (2) is min ||B^T w_hat - w||: solved here with NumPy's lstsq."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 2, 16, 16))
    B = reference_B((16, 16), new)
    expected = np.stack([np.linalg.lstsq(B.T, w[o, i].reshape(-1), rcond=None)[0]
                         for o in range(6) for i in range(2)]).reshape(6, 2, *new)
    got = pi_resize(torch.from_numpy(w), new).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-8)


def test_equal_size_is_the_identity():
    w = torch.randn(4, 1, 16, 16)
    assert pi_resize(w, 16) is w
    torch.testing.assert_close(pi_resize_matrix((16, 16), (16, 16)), torch.eye(256), atol=1e-5, rtol=0)


def test_gradient_reaches_the_stored_weight():
    w = torch.randn(3, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pi_resize(t, (24, 12)), (w,))
    g = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    (pi_resize(w, 8) * g).sum().backward()
    M = np.linalg.pinv(reference_B((16, 16), (8, 8)).T)  # the chain rule: dL/dw = M^T g
    expected = (g.reshape(3, 64).numpy() @ M).reshape(3, 1, 16, 16)
    np.testing.assert_allclose(w.grad.numpy(), expected, atol=1e-8)


def test_matrix_is_cached_per_size_device_and_dtype():
    a = pi_resize_matrix((16, 16), (40, 40))
    assert pi_resize_matrix((16, 16), (40, 40)) is a
    assert pi_resize_matrix((16, 16), (40, 40), dtype=torch.float64) is not a
    assert a.shape == (1600, 256)


def test_float32_and_bfloat16_kernels_keep_their_dtype():
    w = torch.randn(8, 1, 16, 16)
    ref = pi_resize(w.double(), 24)
    torch.testing.assert_close(pi_resize(w, 24).double(), ref, atol=1e-5, rtol=1e-5)
    assert pi_resize(w.bfloat16(), 24).dtype == torch.bfloat16


def test_bilinear_kernel_resize_keeps_a_constant_kernel_constant():
    w = torch.full((2, 1, 16, 16), 0.25)
    for new in (8, 24, (16, 40)):
        out = bilinear_resize(w, new)
        torch.testing.assert_close(out, torch.full_like(out, 0.25))


@pytest.mark.parametrize("bad", [0, -3, (16, 0), 2.5, (8, 8, 8)])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="new_size"):
        pi_resize(torch.randn(2, 1, 16, 16), bad)


def test_non_kernel_is_refused():
    with pytest.raises(ValueError, match=r"\[out, in, h, w\]"):
        pi_resize(torch.randn(16, 16), 8)


def test_grid_shapes_by_hand():
    assert grid_shape((128, 1024), 16, 10) == (12, 101)  # AST's released AudioSet model: 1212 patches
    assert grid_shape((128, 1024), 16) == (8, 64)
    assert grid_shape((128, 1024), 48) == (2, 21)
    assert grid_shape((128, 1024), (16, 64)) == (8, 16)  # coarse-to-fine Patch, C = 4
    with pytest.raises(ValueError, match="larger than the input"):
        grid_shape((128, 100), 128)


def test_pos_grid_keeps_prefix_and_token_order():
    """Frequency-major order: values that depend on the frequency row only survive a time resize."""
    gf, gt, d = 4, 6, 3
    rows = torch.arange(gf, dtype=torch.float32).repeat_interleave(gt)  # token i -> row i // gt
    pos = torch.cat([torch.tensor([[7.0] * d, [9.0] * d]), rows[:, None].expand(-1, d)])[None]
    out = resize_pos_grid(pos, (gf, gt), (gf, 11), num_prefix_tokens=2)
    assert out.shape == (1, 2 + gf * 11, d)
    torch.testing.assert_close(out[0, :2], pos[0, :2])
    torch.testing.assert_close(out[0, 2:, 0], torch.arange(gf, dtype=torch.float32).repeat_interleave(11))
    assert resize_pos_grid(pos, (gf, gt), (gf, gt), num_prefix_tokens=2) is pos


def test_pos_grid_refuses_a_wrong_token_count():
    with pytest.raises(ValueError, match="needs 26"):
        resize_pos_grid(torch.zeros(1, 25, 4), (4, 6), (2, 3), num_prefix_tokens=2)


def test_ast_rule_cuts_the_centre_of_an_imagenet_grid():
    """AST: a 24x24 grid cut to 8x6 keeps rows 8..15 and columns 9..14 (start = 12 - n // 2)."""
    side = 24
    f, t = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    grid = (100 * f + t).float().reshape(-1)
    pos = torch.cat([torch.tensor([-1.0]), grid])[None, :, None]
    out = ast_adapt_pos_grid(pos, (side, side), (8, 6), num_prefix_tokens=1)
    expected = (100 * f[8:16, 9:15] + t[8:16, 9:15]).float().reshape(-1)
    torch.testing.assert_close(out[0, 1:, 0], expected)
    assert out[0, 0, 0] == -1.0
    assert ast_adapt_pos_grid(pos, (side, side), (12, 101), num_prefix_tokens=1).shape == (1, 1 + 1212, 1)


def test_a_size_first_used_in_inference_mode_still_trains():
    """Evaluating (inference_mode) then training at the same size must not reuse inference tensors."""
    with torch.inference_mode():
        pi_resize(torch.randn(2, 1, 16, 16), (22, 26))
    w = torch.randn(2, 1, 16, 16, requires_grad=True)
    pi_resize(w, (22, 26)).sum().backward()
    assert w.grad is not None


def test_ill_conditioned_sizes_still_resize():
    """torch's SVD does not converge on this B; NumPy's does (the official code's choice)."""
    w = torch.randn(2, 1, 31, 39, dtype=torch.float64)
    x = torch.randn(4, 1, 31, 39, dtype=torch.float64)
    x_hat = F.interpolate(x, size=(39, 39), mode="bilinear", align_corners=False)
    w_hat = pi_resize(w, (39, 39))
    torch.testing.assert_close(x_hat.flatten(1) @ w_hat.flatten(1).T, x.flatten(1) @ w.flatten(1).T)


@pytest.mark.parametrize("old,new", [((8, 64), (2, 21)), ((8, 64), (16, 128)), ((12, 101), (12, 40)), ((3, 5), (7, 2))])
@pytest.mark.parametrize("antialias", [True, False])
def test_pos_grid_equals_torch_interpolate(old, new, antialias):
    """The separable matrices carry F.interpolate's weights, antialiasing included, and its gradient."""
    torch.manual_seed(0)
    pos = torch.randn(1, 2 + old[0] * old[1], 5, dtype=torch.float64, requires_grad=True)
    grid = pos[:, 2:].transpose(1, 2).reshape(1, 5, *old)
    ref = F.interpolate(grid, size=new, mode="bilinear", align_corners=False, antialias=antialias)
    ref = torch.cat([pos[:, :2], ref.flatten(2).transpose(1, 2)], dim=1)
    got = resize_pos_grid(pos, old, new, num_prefix_tokens=2, antialias=antialias)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
    g = torch.randn_like(ref)
    (want,) = torch.autograd.grad(ref, pos, g)
    (have,) = torch.autograd.grad(got, pos, g)
    torch.testing.assert_close(have, want, atol=1e-12, rtol=0)


def test_pi_matrix_is_the_pseudo_inverse_of_the_whole_bilinear_matrix():
    """pinv(B_f^T) (x) pinv(B_t^T) against NumPy's pinv of the full hand-written B^T."""
    for old, new in (((16, 16), (48, 48)), ((16, 16), (8, 24)), ((16, 16), (30, 12))):
        # 16 -> 12 leaves B^T rank-deficient: cut singular values at 1e-10 relative (NumPy's default
        # of 1e-15 lets LAPACK round-off of the zero ones through, which depends on the BLAS kernel).
        expected = np.linalg.pinv(reference_B(old, new).T, rcond=1e-10)
        np.testing.assert_allclose(pi_resize_matrix(old, new, dtype=torch.float64).numpy(), expected, atol=1e-10)
