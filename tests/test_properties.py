"""Property-based checks (hypothesis): any sizes and lengths, documented shapes, finite outputs.

Every test draws the sizes, lengths, rates and dtypes the docstrings allow and checks the
shape they document, the dtype, finiteness for finite inputs, and where the docstrings
state one, a defining property (PI-resize's token preservation and least-squares
equations, antialiased grids equal to ``F.interpolate``, AST's centre cut, pooling).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from flexiast import AST, bilinear_resize, fbank, num_frames, pi_resize, pi_resize_matrix, resize_pos_grid
from flexiast.fbank import KALDI_LOG_FLOOR, WINDOWS
from flexiast.features import Compression, FeatureConfig, compress_spec, finish_input, log_mel
from flexiast.resize import ast_adapt_pos_grid, bilinear_matrix, resize_patch_weight

from reference_vit import reference_B

side = st.integers(min_value=1, max_value=40)
small_side = st.integers(min_value=1, max_value=12)
float_dtypes = st.sampled_from([torch.float32, torch.float64])
RATES = (8000, 16000, 22050, 44100, 48000)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_B(old, new) -> torch.Tensor:
    return torch.from_numpy(reference_B(old, new))


# -- patch-kernel resizing ------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(oh=side, ow=side, nh=side, nw=side, out_ch=st.integers(1, 4), in_ch=st.integers(1, 3),
       dtype=float_dtypes, seed=st.integers(0, 2**16))
def test_resizes_any_sizes(oh, ow, nh, nw, out_ch, in_ch, dtype, seed):
    """Both methods, any rectangular sizes (1 included), any channels: shape, dtype, finite."""
    w = torch.randn(out_ch, in_ch, oh, ow, generator=_gen(seed), dtype=dtype)
    outs = {
        "pi": pi_resize(w, (nh, nw)), "bl": bilinear_resize(w, (nh, nw)),
        "pi via resize_patch_weight": resize_patch_weight(w, (nh, nw), "pi"),
        "bl via resize_patch_weight": resize_patch_weight(w, (nh, nw), "bl"),
    }
    for name, out in outs.items():
        assert out.shape == (out_ch, in_ch, nh, nw), name
        assert out.dtype == dtype, name
        assert torch.isfinite(out).all(), name
    torch.testing.assert_close(outs["pi via resize_patch_weight"], outs["pi"], atol=0, rtol=0)
    torch.testing.assert_close(outs["bl via resize_patch_weight"], outs["bl"], atol=0, rtol=0)
    if (oh, ow) == (nh, nw):
        assert outs["pi"] is w and outs["bl"] is w
    # Bilinear weights (antialiased too) sum to one: a constant kernel stays that constant.
    const = bilinear_resize(torch.full((1, 1, oh, ow), 0.75, dtype=dtype), (nh, nw))
    torch.testing.assert_close(const, torch.full_like(const, 0.75), atol=1e-5, rtol=0)
    # The two-factor PI-resize equals the one-matrix form pinv(B^T) = pinv(B_f^T) (x) pinv(B_t^T).
    m = pi_resize_matrix((oh, ow), (nh, nw), dtype=torch.float64)
    assert m.shape == (nh * nw, oh * ow)
    w64 = w.to(torch.float64)
    torch.testing.assert_close(pi_resize(w64, (nh, nw)).flatten(2), w64.flatten(2) @ m.T, atol=1e-9, rtol=1e-9)


@settings(max_examples=150, deadline=None)
@given(oh=side, ow=side, nh=side, nw=side, seed=st.integers(0, 2**16))
@example(oh=1, ow=40, nh=40, nw=1, seed=0)
@example(oh=31, ow=39, nh=39, nw=39, seed=0)  # torch's SVD does not converge on this B
def test_pi_resize_token_preservation_and_least_squares(oh, ow, nh, nw, seed):
    """FlexiAST eq. (2-3): w_hat = pinv(B^T) w solves min ||B^T w_hat - w|| (normal equations
    B (B^T w_hat - w) = 0, any sizes); upsampling on both axes keeps <x, w> = <B x, w_hat>."""
    w = torch.randn(3, 2, oh, ow, generator=_gen(seed), dtype=torch.float64)
    w_hat = pi_resize(w, (nh, nw))
    if nh >= oh and nw >= ow:  # upsampling keeps every token: <x, w> = <B x, w_hat>
        x = torch.randn(5, 1, oh, ow, dtype=torch.float64, generator=_gen(seed + 1))
        x_hat = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        torch.testing.assert_close(x_hat.flatten(1) @ w_hat[:, 0].flatten(1).T, x.flatten(1) @ w[:, 0].flatten(1).T,
                                   atol=1e-8, rtol=1e-8)
    if oh * ow * nh * nw <= 250_000:  # the full B: at most 500 x 500
        B = _reference_B((oh, ow), (nh, nw))
        residual = B.T @ w_hat.flatten(2).reshape(6, -1).T - w.flatten(2).reshape(6, -1).T  # [hw, 6]
        torch.testing.assert_close(B @ residual, torch.zeros(nh * nw, 6, dtype=torch.float64), atol=1e-9, rtol=0)


@settings(max_examples=100, deadline=None)
@given(oh=side, ow=side, nh=side, nw=side)
@example(oh=1, ow=3, nh=4, nw=5)
@example(oh=3, ow=1, nh=4, nw=5)
def test_bilinear_matrix_is_eq_1(oh, ow, nh, nw):
    """``bilinear_matrix`` is B of eq. (1) for any sizes, 1 included (checked by hand)."""
    torch.testing.assert_close(bilinear_matrix((oh, ow), (nh, nw)), _reference_B((oh, ow), (nh, nw)),
                               atol=1e-12, rtol=0)


@settings(max_examples=20, deadline=None)
@given(dims=st.integers(0, 6).filter(lambda d: d != 4), bad_size=st.sampled_from([0, -3, (0, 4), (4, 0), (1, 2, 3)]),
       method=st.text(min_size=0, max_size=4).filter(lambda m: m not in ("pi", "bl")))
def test_resize_refusals(dims, bad_size, method):
    """Documented errors: a non-[out, in, h, w] kernel, a non-positive size, an unknown method."""
    w = torch.zeros([2] * dims)
    for fn in (pi_resize, bilinear_resize):
        with pytest.raises(ValueError, match="patch-embedding kernel"):
            fn(w, (3, 3))
    ok = torch.zeros(2, 1, 3, 3)
    for fn in (pi_resize, bilinear_resize):
        with pytest.raises(ValueError, match="new_size"):
            fn(ok, bad_size)
    with pytest.raises(ValueError, match="resize="):
        resize_patch_weight(ok, (4, 4), method)


# -- positional grids -----------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(gf=side, gt=side, nf=side, nt=side, prefix=st.integers(0, 2), dim=st.integers(1, 6),
       antialias=st.booleans(), dtype=float_dtypes, seed=st.integers(0, 2**16))
def test_pos_grid_any_sizes(gf, gt, nf, nt, prefix, dim, antialias, dtype, seed):
    """Shape [1, prefix + nf * nt, dim], dtype, finite, prefix kept, and F.interpolate's values."""
    pos = torch.randn(1, prefix + gf * gt, dim, generator=_gen(seed), dtype=dtype)
    out = resize_pos_grid(pos, (gf, gt), (nf, nt), num_prefix_tokens=prefix, antialias=antialias)
    assert out.shape == (1, prefix + nf * nt, dim) and out.dtype == dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :prefix], pos[:, :prefix], atol=0, rtol=0)
    if (gf, gt) == (nf, nt):
        assert out is pos
    grid = pos[0, prefix:].to(torch.float64).T.reshape(1, dim, gf, gt)
    if nt > 1:
        ref = F.interpolate(grid, size=(nf, nt), mode="bilinear", align_corners=False, antialias=antialias)
    else:  # torch 2.13's antialiased resize to width 1 only copies the first column; go through rows
        ref = F.interpolate(grid.transpose(-1, -2), size=(nt, nf), mode="bilinear", align_corners=False,
                            antialias=antialias).transpose(-1, -2)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out[0, prefix:].to(torch.float64), ref.flatten(2)[0].T, atol=tol, rtol=0)
    # Weights sum to one: a constant grid stays constant.
    const = torch.full((1, prefix + gf * gt, dim), -1.5, dtype=dtype)
    out = resize_pos_grid(const, (gf, gt), (nf, nt), num_prefix_tokens=prefix, antialias=antialias)
    torch.testing.assert_close(out, torch.full_like(out, -1.5), atol=tol, rtol=0)


@settings(max_examples=150, deadline=None)
@given(gf=side, gt=side, nf=side, nt=side, prefix=st.integers(0, 2), dim=st.integers(1, 5),
       dtype=float_dtypes, seed=st.integers(0, 2**16))
def test_ast_adapt_pos_grid_any_sizes(gf, gt, nf, nt, prefix, dim, dtype, seed):
    """AST's rule: shape, finite, prefix kept; a smaller axis is the centre cut
    (start ``old // 2 - new // 2``), a larger one plain bilinear interpolation."""
    pos = torch.randn(1, prefix + gf * gt, dim, generator=_gen(seed), dtype=dtype)
    out = ast_adapt_pos_grid(pos, (gf, gt), (nf, nt), num_prefix_tokens=prefix)
    assert out.shape == (1, prefix + nf * nt, dim) and out.dtype == dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :prefix], pos[:, :prefix], atol=0, rtol=0)
    grid = pos[0, prefix:].T.reshape(1, dim, gf, gt)
    if nt <= gt:
        s = gt // 2 - nt // 2
        grid = grid[..., s:s + nt]
    else:
        grid = F.interpolate(grid, size=(gf, nt), mode="bilinear", align_corners=False)
    if nf <= gf:
        s = gf // 2 - nf // 2
        grid = grid[..., s:s + nf, :]
    else:
        grid = F.interpolate(grid, size=(nf, nt), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[0, prefix:], grid.flatten(2)[0].T, atol=1e-6, rtol=0)


@settings(max_examples=20, deadline=None)
@given(gf=small_side, gt=small_side, prefix=st.integers(0, 2), extra=st.integers(1, 3))
def test_pos_grid_refuses_a_wrong_token_count(gf, gt, prefix, extra):
    pos = torch.zeros(1, prefix + gf * gt + extra, 3)
    for fn in (resize_pos_grid, ast_adapt_pos_grid):
        with pytest.raises(ValueError, match=f"needs {prefix + gf * gt}"):
            fn(pos, (gf, gt), (2, 2), num_prefix_tokens=prefix)


# -- fbank ----------------------------------------------------------------------------

def _expected_frames(length: int, rate: int, frame_length_ms: float, frame_shift_ms: float, snip: bool) -> int:
    """The docstring's count, from Kaldi's truncated window and shift."""
    w, s = int(rate * 0.001 * frame_length_ms), int(rate * 0.001 * frame_shift_ms)
    if snip:
        return 0 if length < w else 1 + (length - w) // s
    return (length + s // 2) // s


fbank_setting = dict(
    rate=st.sampled_from(RATES),
    frame_length=st.sampled_from([5.0, 10.0, 20.0, 25.0, 32.0, 50.0]),
    shift=st.sampled_from([2.5, 5.0, 10.0, 12.5, 20.0, 40.0, 60.0]),
    bins=st.integers(1, 128),
    window=st.sampled_from(WINDOWS),
    dtype=float_dtypes,
    scale=st.sampled_from([0.0, 1e-6, 1.0, 1e4]) | st.floats(0.0, 1e4),
)


@settings(max_examples=150, deadline=None)
@given(**fbank_setting, data=st.data(), snip=st.booleans(), use_energy=st.booleans(), htk=st.booleans(),
       dither=st.sampled_from([0.0, 1.0]), lead=st.lists(st.integers(1, 2), max_size=2), seed=st.integers(0, 2**16))
def test_fbank_any_length(rate, frame_length, shift, bins, window, dtype, scale, data, snip, use_energy, htk,
                          dither, lead, seed):
    """Any length up to 3 s, any common rate, framing, bins, window, dtype, scale and leading
    dims: shape ``[*lead, num_frames(...), bins (+1)]`` by the documented formula, input dtype,
    finite; silence is Kaldi's log floor; a batch equals its rows. Clips shorter than a
    window are ``test_fbank_short_clips``, empty batches ``test_fbank_empty_batch``."""
    window_len = int(rate * 0.001 * frame_length)
    length = data.draw(st.integers(window_len, 3 * rate), label="length")
    wave = (scale * torch.randn(*lead, length, generator=_gen(seed), dtype=torch.float64)).to(dtype)
    kw = dict(num_mel_bins=bins, frame_length_ms=frame_length, frame_shift_ms=shift, window=window,
              snip_edges=snip, use_energy=use_energy, htk_compat=htk, dither=dither)
    out = fbank(wave, rate, generator=_gen(seed + 1), **kw)
    frames = _expected_frames(length, rate, frame_length, shift, snip)
    assert frames == num_frames(length, rate, frame_length_ms=frame_length, frame_shift_ms=shift, snip_edges=snip)
    assert out.shape == (*lead, frames, bins + use_energy)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    if scale == 0.0 and dither == 0.0:  # nothing but the floor: log(eps) everywhere, energy included
        torch.testing.assert_close(out, torch.full_like(out, math.log(KALDI_LOG_FLOOR)))
    if lead and dither == 0.0:
        first = (0,) * len(lead)
        torch.testing.assert_close(out[first], fbank(wave[first], rate, **kw), atol=1e-4, rtol=1e-4)


@settings(max_examples=150, deadline=None)
@given(**fbank_setting, position=st.floats(0.0, 2.0), snip=st.booleans(), use_energy=st.booleans())
@example(rate=16000, frame_length=25.0, shift=10.0, bins=128, window="hanning", dtype=torch.float32, scale=1.0,
         position=0.25, snip=False, use_energy=False)  # 100 samples: Kaldi gives 1 frame
@example(rate=16000, frame_length=25.0, shift=10.0, bins=128, window="hanning", dtype=torch.float32, scale=1.0,
         position=0.3, snip=False, use_energy=False)  # 120 samples: Kaldi gives 1 frame
def test_fbank_short_clips(rate, frame_length, shift, bins, window, dtype, scale, position, snip, use_energy):
    """Clips from 0 samples to two windows: the documented count (``num_frames``; Kaldi agrees),
    and where that is 0, the documented empty ``[0, bins]`` output in the input's dtype."""
    window_len = int(rate * 0.001 * frame_length)
    length = int(position * window_len)
    wave = (scale * torch.randn(length, generator=_gen(length), dtype=torch.float64)).to(dtype)
    out = fbank(wave, rate, num_mel_bins=bins, frame_length_ms=frame_length, frame_shift_ms=shift,
                window=window, snip_edges=snip, use_energy=use_energy)
    frames = num_frames(length, rate, frame_length_ms=frame_length, frame_shift_ms=shift, snip_edges=snip)
    assert frames == _expected_frames(length, rate, frame_length, shift, snip)
    assert out.shape == (frames, bins + use_energy) and out.dtype == dtype
    assert torch.isfinite(out).all()


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from(RATES), lead=st.lists(st.integers(0, 2), min_size=1, max_size=3).filter(lambda d: 0 in d),
       length=st.integers(0, 4000), bins=st.integers(1, 128), snip=st.booleans(), use_energy=st.booleans(),
       htk=st.booleans(), dtype=float_dtypes)
def test_fbank_empty_batch(rate, lead, length, bins, snip, use_energy, htk, dtype):
    """``waveform[..., samples]`` with a leading dimension of 0: an empty ``[*lead, frames, width]``."""
    out = fbank(torch.zeros(*lead, length, dtype=dtype), rate, num_mel_bins=bins, snip_edges=snip,
                use_energy=use_energy, htk_compat=htk)
    assert out.shape == (*lead, num_frames(length, rate, snip_edges=snip), bins + use_energy)
    assert out.dtype == dtype


@settings(max_examples=20, deadline=None)
@given(rate=st.sampled_from(RATES), length=st.integers(0, 2000))
def test_fbank_refuses_windows_and_shifts_under_a_sample(rate, length):
    """A window under 2 samples or a shift under 1 is a ValueError naming the option."""
    wave = torch.zeros(length)
    tiny = 0.9 / rate * 1000  # 0.9 samples, in ms
    with pytest.raises(ValueError, match="frame_length_ms"):
        fbank(wave, rate, frame_length_ms=2 * tiny)
    with pytest.raises(ValueError, match="frame_shift_ms"):
        fbank(wave, rate, frame_shift_ms=tiny)
    with pytest.raises(ValueError, match="num_mel_bins"):
        fbank(wave, rate, num_mel_bins=0)


# -- features and temporal compression ------------------------------------------------

compressions = st.just(Compression()) | st.builds(
    Compression, st.sampled_from(["fshift", "avgpool", "maxpool", "patch"]), st.integers(1, 4))


@settings(max_examples=150, deadline=None)
@given(rate=st.sampled_from(RATES), bins=st.integers(1, 128), target=st.integers(1, 200), comp=compressions,
       seconds=st.floats(0.0, 2.0), scale=st.sampled_from([0.0, 1.0, 1e4]), dtype=float_dtypes,
       seed=st.integers(0, 2**16))
def test_features_any_length_and_compression(rate, bins, target, comp, seconds, scale, dtype, seed):
    """log_mel is ``[num_frames, bins]`` (shift times C under fshift); finish_input is
    ``[cfg.frames(C), bins]``, finite; avg/max pooling pools groups of C finished frames."""
    cfg = FeatureConfig(num_mel_bins=bins, target_length=target, sample_rate=rate)
    if target // comp.input_factor < 1:
        with pytest.raises(ValueError, match="leaves no frames"):
            cfg.frames(comp)
        return
    length = int(seconds * rate)
    wave = (scale * torch.randn(length, generator=_gen(seed), dtype=torch.float64)).to(dtype)
    spec = log_mel(wave, cfg, comp)
    shift = cfg.frame_shift_ms * (comp.factor if comp.method == "fshift" else 1)
    assert spec.shape == (num_frames(length, rate, frame_length_ms=cfg.frame_length_ms, frame_shift_ms=shift), bins)
    assert spec.dtype == dtype and torch.isfinite(spec).all()
    x = finish_input(spec, cfg, comp)
    assert x.shape == (cfg.frames(comp), bins)
    assert x.dtype == dtype and torch.isfinite(x).all()
    if comp.method in ("avgpool", "maxpool"):
        plain = finish_input(spec, cfg)  # [target, bins]: padded or cut, normalised, not pooled
        c, n = comp.factor, target // comp.factor
        groups = plain[: n * c].reshape(n, c, bins)
        ref = groups.mean(1) if comp.method == "avgpool" else groups.amax(1)
        torch.testing.assert_close(x, ref)
        torch.testing.assert_close(compress_spec(plain, comp), ref)


@settings(max_examples=200, deadline=None)
@given(rate=st.sampled_from(RATES), target=st.integers(1, 2000), comp=compressions)
def test_clip_samples_fill_the_fbank_frames_exactly(rate, target, comp):
    """``clip_samples`` gives ``fbank_frames`` frames, and one sample fewer gives one frame fewer."""
    cfg = FeatureConfig(target_length=target, sample_rate=rate)
    frames = cfg.fbank_frames(comp)
    assume(frames >= 1)
    kw = cfg.fbank_kwargs(comp)
    count = lambda n: num_frames(n, rate, frame_length_ms=kw["frame_length_ms"],  # noqa: E731
                                 frame_shift_ms=kw["frame_shift_ms"])
    samples = cfg.clip_samples(comp)
    assert count(samples) == frames and count(samples - 1) == frames - 1


# -- the model ------------------------------------------------------------------------

@st.composite
def tiny_models(draw):
    fdim, tdim = draw(st.integers(1, 16)), draw(st.integers(1, 24))
    patch = (draw(st.integers(1, fdim)), draw(st.integers(1, tdim)))
    stride = draw(st.none() | st.tuples(st.integers(1, patch[0]), st.integers(1, patch[1])))
    classes, prefix = draw(st.integers(1, 5)), draw(st.integers(1, 2))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = AST(classes, input_fdim=fdim, input_tdim=tdim, embed_dim=16, depth=1, num_heads=2,
                patch_size=patch, stride=stride, prefix_tokens=prefix).eval()
    return model.to(draw(float_dtypes))


def _spec(model, batch, frames, seed):
    return torch.randn(batch, frames, model.config.input_fdim, generator=_gen(seed)).to(model.pos_embed.dtype)


@settings(max_examples=120, deadline=None)
@given(model=tiny_models(), batch=st.integers(1, 3), frames=st.integers(1, 40), data=st.data(),
       resize=st.sampled_from(["pi", "bl"]), pos_grid=st.sampled_from(["leading", "centre", "resize"]),
       seed=st.integers(0, 2**16))
def test_model_any_patch_size(model, batch, frames, data, resize, pos_grid, seed):
    """Any rectangular patch that fits the input and the trained grid, any input length:
    logits ``[batch, classes]``, the model's dtype, finite (also at the stored patch and stride);
    ``at_patch_size(p, input_tdim=frames)`` gives the same logits."""
    cfg = model.config
    fitting = st.tuples(st.integers(1, cfg.input_fdim), st.integers(1, min(frames, cfg.input_tdim)))
    patch = data.draw(st.none() | fitting, label="patch")
    spec = _spec(model, batch, frames, seed)
    used, _ = cfg.resolve_patch(patch)
    if used[1] > frames:  # the stored patch (patch=None) on a too-short input
        with pytest.raises(ValueError, match=r"patch size \(.*larger than the input"):
            model(spec, patch_size=patch)
        return
    with torch.no_grad():
        logits = model(spec, patch_size=patch, resize=resize, pos_grid=pos_grid)
    assert logits.shape == (batch, cfg.num_classes)
    assert logits.dtype == model.pos_embed.dtype
    assert torch.isfinite(logits).all()
    fixed = model.at_patch_size(patch, resize=resize, input_tdim=frames, pos_grid=pos_grid)
    with torch.no_grad():
        torch.testing.assert_close(fixed(spec), logits)


@settings(max_examples=20, deadline=None)
@given(model=tiny_models(), batch=st.integers(1, 2), extra=st.integers(1, 16), data=st.data(),
       resize=st.sampled_from(["pi", "bl"]), seed=st.integers(0, 2**16))
def test_model_patch_longer_than_the_trained_input(model, batch, extra, data, resize, seed):
    """A patch longer than the trained input that fits a longer input gives finite logits
    ``[batch, classes]``: ``forward`` lets ``frames`` differ from ``input_tdim``, and the patch fits."""
    cfg = model.config
    frames = cfg.input_tdim + extra
    patch = (data.draw(st.integers(1, cfg.input_fdim)), data.draw(st.integers(cfg.input_tdim + 1, frames)))
    with torch.no_grad():
        logits = model(_spec(model, batch, frames, seed), patch_size=patch, resize=resize)
    assert logits.shape == (batch, cfg.num_classes) and torch.isfinite(logits).all()


@settings(max_examples=60, deadline=None)
@given(model=tiny_models(), frames=st.integers(1, 30), data=st.data())
def test_model_patch_larger_than_the_input_is_refused(model, frames, data):
    """A patch longer than the input's frames or wider than its bins: ValueError naming the patch
    size and the input's shape."""
    cfg = model.config
    pf = data.draw(st.integers(1, cfg.input_fdim + 4), label="pf")
    pt = data.draw(st.integers(frames + 1, frames + 8) if pf <= cfg.input_fdim else st.integers(1, frames + 8),
                   label="pt")
    message = (rf"patch size \({pf}, {pt}\) \(freq, time\) is larger than the input "
               rf"\({cfg.input_fdim} mel bins, {frames} frames\)")
    with pytest.raises(ValueError, match=message):
        model(_spec(model, 1, frames, 0), patch_size=(pf, pt))
