"""Property-based checks (hypothesis): any sizes and lengths, documented shapes, finite outputs."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flexiast import bilinear_resize, fbank, num_frames, pi_resize, resize_pos_grid

side = st.integers(min_value=1, max_value=40)


@settings(max_examples=60, deadline=None)
@given(oh=side, ow=side, nh=side, nw=side, seed=st.integers(0, 2**16))
def test_resizes_any_sizes(oh, ow, nh, nw, seed):
    w = torch.randn(3, 2, oh, ow, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for out in (pi_resize(w, (nh, nw)), bilinear_resize(w, (nh, nw))):
        assert out.shape == (3, 2, nh, nw) and torch.isfinite(out).all()
    if nh >= oh and nw >= ow:  # upsampling keeps every token: <x, w> = <B x, w_hat>
        x = torch.randn(5, 1, oh, ow, dtype=torch.float64)
        x_hat = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        w_hat = pi_resize(w[:, :1], (nh, nw))
        torch.testing.assert_close(x_hat.flatten(1) @ w_hat.flatten(1).T, x.flatten(1) @ w[:, 0].flatten(1).T,
                                   atol=1e-8, rtol=1e-8)


@settings(max_examples=40, deadline=None)
@given(gf=side, gt=side, nf=side, nt=side, prefix=st.integers(0, 2))
def test_pos_grid_any_sizes(gf, gt, nf, nt, prefix):
    pos = torch.randn(1, prefix + gf * gt, 4)
    out = resize_pos_grid(pos, (gf, gt), (nf, nt), num_prefix_tokens=prefix)
    assert out.shape == (1, prefix + nf * nt, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :prefix], pos[:, :prefix])


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 6000), bins=st.integers(1, 80), shift=st.sampled_from([5.0, 10.0, 20.0, 40.0]),
       snip=st.booleans(), scale=st.floats(0.0, 1e3))
def test_fbank_any_length(length, bins, shift, snip, scale):
    wave = scale * torch.randn(length)
    out = fbank(wave, num_mel_bins=bins, frame_shift_ms=shift, snip_edges=snip) if length >= 200 or snip else None
    if out is None:
        return  # snip_edges=False reflects half a window, so it needs that many samples
    assert out.shape == (num_frames(length, frame_shift_ms=shift, snip_edges=snip), bins)
    assert torch.isfinite(out).all()
