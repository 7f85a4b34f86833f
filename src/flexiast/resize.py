"""Resizing the two patch-size-dependent parts of an AST: patch kernel and positional grid.

FlexiAST (Feng et al., Interspeech 2023, Sec. 2.3), after FlexiViT (Beyer et al., 2023):

* **PI-resize.** Resizing a patch ``x`` (``h x w``) to ``x_hat`` (``h' x w'``) with bilinear
  interpolation is linear, ``vec(x_hat) = B vec(x)`` with ``B`` of shape
  ``(h'w', hw)`` (eq. 1). The kernel ``w_hat`` that best preserves the token,
  ``argmin E_x[(<x, w> - <B x, w_hat>)^2]`` (eq. 2), is for ``x ~ N(0, I)`` the
  least-squares solution of ``B^T w_hat = w``: ``w_hat = pinv(B^T) vec(w)`` (eq. 3). When
  upsampling (``h'w' >= hw``) ``B^T`` has full row rank, so the token is preserved
  exactly: ``<x, w> = <B x, w_hat>`` for every ``x``. ``B`` is built as the official code
  does: each one-hot ``h x w`` basis image resized with bilinear interpolation
  (``align_corners=False``, no antialiasing).
* **BL**, the baseline that fails (FlexiAST Fig. 1, 5): the kernel itself resized with
  bilinear interpolation, antialiased.
* **Positional embeddings**: the learnt grid resized bilinearly (antialiased) to the token
  grid of the new patch size; prefix (cls, distillation) tokens are kept as they are.

Bilinear resizing is separable: ``B = B_f (x) B_t`` (Kronecker product of the 1-D
interpolation matrices of the frequency and time axes, row-major ``vec``). The
pseudo-inverse of a Kronecker product is the Kronecker product of the pseudo-inverses,
so ``pinv(B^T) = pinv(B_f^T) (x) pinv(B_t^T)`` and PI-resize is ``P_f w P_t^T`` per
channel: two small products instead of one with the ``(h'w', hw)`` matrix (12x fewer
FLOPs from 16 to 48, and an SVD of 48 x 16 instead of 2304 x 256 the first time). The
positional grid is resized the same way, with the 1-D matrices of ``F.interpolate``.

The 1-D matrices are cached per (old size, new size, device, dtype) in a module-level
cache, not in any state dict, so checkpoints never carry them and DDP never broadcasts
them.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

from ._caching import tensor_cache
from .constants import RESIZE_METHODS

__all__ = [
    "resize_axis",
    "pi_resize",
    "bilinear_resize",
    "resize_patch_weight",
    "pi_resize_matrix",
    "bilinear_matrix",
    "resize_pos_grid",
    "ast_adapt_pos_grid",
    "grid_shape",
    "to_pair",
]


def to_pair(value, name: str = "size") -> tuple[int, int]:
    """``8 -> (8, 8)``, ``(8, 16) -> (8, 16)``; refuses non-positive or non-integer sizes."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) != 2:
            raise ValueError(f"{name}={value!r}: expected an int or a pair (freq, time)")
        pair = tuple(value)
    else:
        pair = (value, value)
    out = []
    for v in pair:
        try:
            if isinstance(v, bool):
                raise TypeError
            v = operator.index(v)  # int, numpy and torch integers
        except TypeError:
            raise ValueError(f"{name}={value!r}: sizes must be positive integers") from None
        if v < 1:
            raise ValueError(f"{name}={value!r}: sizes must be positive integers")
        out.append(v)
    return tuple(out)  # type: ignore[return-value]


def grid_shape(input_size: tuple[int, int], patch_size, stride=None, partial: str = "drop") -> tuple[int, int]:
    """Token grid of a ``(freq, time)`` input, per axis of ``n`` bins or frames:

    * ``partial="drop"``: ``floor((n - p) / s) + 1``, the patch-embedding convolution's
      output size (AST's and the FlexiAST authors' code): bins or frames that do not fill a
      last patch are never seen;
    * ``partial="pad"``: ``ceil((n - p) / s) + 1``, the input zero-padded at the end to
      whole patches, FlexiAST Sec. 2.2's ``ceil(h/2) x ceil(w/2)`` grid at patch ``2p``.

    ``stride`` defaults to the patch size (no overlap). Raises if a patch does not fit in
    the input, in both modes.
    """
    p = to_pair(patch_size, "patch_size")
    s = to_pair(stride if stride is not None else p, "stride")
    fdim, tdim = input_size
    if p[0] > fdim or p[1] > tdim:
        raise ValueError(f"patch size {p} (freq, time) is larger than the input "
                         f"({fdim} mel bins, {tdim} frames)")
    if partial == "pad":
        return -(-(fdim - p[0]) // s[0]) + 1, -(-(tdim - p[1]) // s[1]) + 1
    if partial != "drop":
        raise ValueError(f"partial={partial!r} is not one of drop, pad")
    return (fdim - p[0]) // s[0] + 1, (tdim - p[1]) // s[1] + 1


@tensor_cache(1024)
def _axis_matrix64(old: int, new: int, antialias: bool) -> torch.Tensor:
    """1-D bilinear resize from ``old`` to ``new`` samples as a ``(new, old)`` float64 matrix.

    Read off ``F.interpolate`` itself (each one-hot row resized along its width), so it
    carries exactly its weights: half-pixel centres (``align_corners=False``) and, with
    ``antialias``, its widened triangle when shrinking. Along the width: torch 2.13's
    antialiased resize of an ``(n, 1)`` column gives other weights than either axis of a
    2-D resize, while a ``(1, n)`` row gives those of both (``tests/test_resize.py``).
    """
    eye = torch.eye(old, dtype=torch.float64).reshape(old, 1, 1, old)
    out = F.interpolate(eye, size=(1, new), mode="bilinear", align_corners=False, antialias=antialias)
    # clone, not contiguous(): an (n, 1) result would keep strides torch.kron cannot view
    return out.reshape(old, new).T.clone(memory_format=torch.contiguous_format)


def bilinear_matrix(old_size, new_size, *, antialias: bool = False) -> torch.Tensor:
    """``B`` of FlexiAST eq. (1): ``vec(resize(x)) = B @ vec(x)``, shape ``(h'w', hw)``, float64.

    ``B = B_f (x) B_t``, the Kronecker product of the two axes' 1-D matrices.
    """
    old, new = to_pair(old_size), to_pair(new_size)
    return torch.kron(_axis_matrix64(old[0], new[0], antialias), _axis_matrix64(old[1], new[1], antialias))


@tensor_cache(1024)
def _pinv64(old: int, new: int) -> torch.Tensor:
    """``pinv(B_a^T)`` of one axis, ``(new, old)``, float64, with NumPy's SVD as the official code.

    LAPACK's divide-and-conquer SVD in torch fails to converge on some ill-conditioned
    matrices; NumPy's converges, and an SVD-based least-squares solve is the fallback.
    """
    bt = _axis_matrix64(old, new, False).T
    try:
        return torch.from_numpy(np.linalg.pinv(bt.numpy()))
    except np.linalg.LinAlgError:
        eye = torch.eye(bt.shape[0], dtype=torch.float64)
        return torch.linalg.lstsq(bt, eye, driver="gelsd").solution


@tensor_cache(1024)
def _axis_cached(kind: str, old: int, new: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``pinv(B_a^T)`` (``"pi"``) or the antialiased (``"aa"``) / plain (``"bl"``) 1-D resize."""
    m = _pinv64(old, new) if kind == "pi" else _axis_matrix64(old, new, kind == "aa")
    return m.to(device=device, dtype=dtype)


def pi_resize_matrix(old_size, new_size, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``pinv(B^T)``, shape ``(h'w', hw)``: PI-resize as one matrix (FlexiAST eq. 3).

    Built as ``pinv(B_f^T) (x) pinv(B_t^T)`` and cached per (old size, new size, device,
    dtype); :func:`pi_resize` applies the two factors instead. The returned tensor is
    shared by every caller: do not modify it in place.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _pi_kron(to_pair(old_size), to_pair(new_size), device, dtype)


@tensor_cache(64)
def _pi_kron(old: tuple[int, int], new: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.kron(_pinv64(old[0], new[0]), _pinv64(old[1], new[1])).to(device=device, dtype=dtype)


def _two_axes(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x[k] @ cols^T`` for every ``k`` of ``x[k, h, w]``, as two plain matrix products.

    A broadcast ``torch.matmul`` would run one small product per ``k`` (a loop on CPU);
    moving the axis being resized to the front makes each step one GEMM.
    """
    k, h, w = x.shape
    y = x.reshape(k * h, w) @ cols.T  # [k * h, w']
    y = rows @ y.reshape(k, h, -1).transpose(0, 1).reshape(h, -1)  # [h', k * w']
    return y.reshape(rows.shape[0], k, -1).transpose(0, 1)  # [k, h', w']


def _check_kernel(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"expected a patch-embedding kernel [out, in, h, w], got {shape}")


def pi_resize(weight: torch.Tensor, new_size) -> torch.Tensor:
    """PI-resize a kernel ``[out, in, h, w]`` to ``[out, in, h', w']`` (FlexiAST eq. 2-3).

    Up or down, square or rectangular. Differentiable: the gradient reaches ``weight``
    through one matrix product. Computed in float32 (or float64 for float64 weights)
    outside autocast, since a pseudo-inverse is not a bf16 operation, then cast back.
    """
    _check_kernel(weight)
    new = to_pair(new_size, "new_size")
    old = tuple(weight.shape[-2:])
    if old == new:
        return weight
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    pf = _axis_cached("pi", old[0], new[0], weight.device, dtype)
    pt = _axis_cached("pi", old[1], new[1], weight.device, dtype)
    with torch.autocast(device_type=weight.device.type, enabled=False):
        resized = _two_axes(weight.to(dtype).flatten(0, 1), pf, pt)
    return resized.reshape(*weight.shape[:2], *new).to(weight.dtype)


def bilinear_resize(weight: torch.Tensor, new_size, *, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of a kernel ``[out, in, h, w]``: FlexiAST's "BL" baseline.

    Antialiased as in the official code; values are not rescaled, so a kernel upsampled
    by 2 per axis sums over 4x as many inputs (one reason BL collapses, FlexiAST Fig. 5).
    """
    _check_kernel(weight)
    new = to_pair(new_size, "new_size")
    if tuple(weight.shape[-2:]) == new:
        return weight
    with torch.autocast(device_type=weight.device.type, enabled=False):
        out = F.interpolate(weight.float(), size=new, mode="bilinear", align_corners=False,
                            antialias=antialias)
    return out.to(weight.dtype)


def resize_patch_weight(weight: torch.Tensor, new_size, method: str = "pi") -> torch.Tensor:
    """Resize a kernel with ``method`` ``"pi"`` (PI-resize) or ``"bl"`` (bilinear)."""
    if method == "pi":
        return pi_resize(weight, new_size)
    if method == "bl":
        return bilinear_resize(weight, new_size)
    raise ValueError(f"resize={method!r} is not one of {', '.join(RESIZE_METHODS)}")


def _check_tokens(pos_embed: torch.Tensor, old_grid: tuple[int, int], num_prefix_tokens: int) -> None:
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"expected positional embeddings [1, tokens, dim], got {tuple(pos_embed.shape)}")
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if pos_embed.shape[1] != expected:
        raise ValueError(f"positional embeddings have {pos_embed.shape[1]} tokens; a "
                         f"{old_grid[0]}x{old_grid[1]} grid with {num_prefix_tokens} prefix "
                         f"tokens needs {expected}")


def _split(pos_embed: torch.Tensor, old_grid: tuple[int, int], num_prefix_tokens: int):
    _check_tokens(pos_embed, old_grid, num_prefix_tokens)
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:].transpose(1, 2).reshape(1, -1, *old_grid)
    return prefix, grid


def _join(prefix: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], dim=1)


def resize_pos_grid(pos_embed: torch.Tensor, old_grid, new_grid, *, num_prefix_tokens: int = 2,
                    antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of a positional-embedding grid, prefix tokens kept.

    ``pos_embed`` is ``[1, prefix + gf * gt, dim]`` with the grid flattened frequency-major
    (AST's token order); returns ``[1, prefix + gf' * gt', dim]``. Antialiased, as in the
    official FlexiAST code (and big_vision): ``F.interpolate(..., antialias=True)``,
    applied as its two 1-D matrices (the same weights; a fraction of the time, backward
    included).
    """
    old, new = to_pair(old_grid, "old_grid"), to_pair(new_grid, "new_grid")
    _check_tokens(pos_embed, old, num_prefix_tokens)
    if old == new:
        return pos_embed
    kind = "aa" if antialias else "bl"
    dtype = torch.float64 if pos_embed.dtype == torch.float64 else torch.float32
    rows = _axis_cached(kind, old[0], new[0], pos_embed.device, dtype)
    cols = _axis_cached(kind, old[1], new[1], pos_embed.device, dtype)
    p, d = num_prefix_tokens, pos_embed.shape[-1]
    with torch.autocast(device_type=pos_embed.device.type, enabled=False):
        grid = pos_embed[0, p:].to(dtype).reshape(old[0], old[1], d).permute(2, 0, 1)  # [d, f, t]
        grid = _two_axes(grid, rows, cols)  # [d, f', t']
    body = grid.permute(1, 2, 0).reshape(1, new[0] * new[1], d).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :p], body], dim=1)


def resize_axis(x: torch.Tensor, new: int, *, antialias: bool = True) -> torch.Tensor:
    """``x [dim, n]`` (a table of ``n`` positions along one axis) resized bilinearly to ``[dim,
    new]``: the one axis of :func:`resize_pos_grid` (the same weights, antialiased unless asked
    not to), one matrix product ``x M^T`` with ``M`` the ``(new, n)`` 1-D resize. A sum of a
    frequency and a time table (PaSST's positions) resized per axis equals the 2-D resize of the
    sum, since each 1-D resize keeps constants (its rows sum to 1)."""
    n = x.shape[-1]
    if n == new:
        return x
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    m = _axis_cached("aa" if antialias else "bl", n, new, x.device, dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return (x.to(dtype) @ m.T).to(x.dtype)


def ast_adapt_pos_grid(pos_embed: torch.Tensor, old_grid, new_grid, *,
                       num_prefix_tokens: int = 2) -> torch.Tensor:
    """AST's rule for moving a grid to another shape (Gong et al. 2021, Sec. 2.2).

    Per axis, time first then frequency: where the new grid is smaller, keep the centre
    ``n`` rows (start ``old // 2 - n // 2``); where it is larger, bilinear interpolation
    without antialiasing. Used when starting from ImageNet ViT/DeiT weights.
    """
    old, new = to_pair(old_grid, "old_grid"), to_pair(new_grid, "new_grid")
    prefix, grid = _split(pos_embed, old, num_prefix_tokens)
    if new[1] <= old[1]:
        start = old[1] // 2 - new[1] // 2
        grid = grid[:, :, :, start:start + new[1]]
    else:
        grid = F.interpolate(grid, size=(old[0], new[1]), mode="bilinear", align_corners=False)
    if new[0] <= old[0]:
        start = old[0] // 2 - new[0] // 2
        grid = grid[:, :, start:start + new[0], :]
    else:
        grid = F.interpolate(grid, size=new, mode="bilinear", align_corners=False)
    return _join(prefix, grid)
