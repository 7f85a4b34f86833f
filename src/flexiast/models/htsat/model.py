"""HTS-AT: a hierarchical token-semantic audio transformer whose token count follows the input.

HTS-AT (Chen et al., ICASSP 2022) is a Swin Transformer over a log-mel spectrogram folded into
an image, with a token-semantic head that maps the last stage's tokens to per-time-position
class logits. Here, for ``spec[B, T, F]`` (log-mel in dB, not normalised):

1. ``bn0``: BatchNorm over the ``F`` mel bins, HTS-AT's learned normaliser.
2. Zero-padding of time (after the BatchNorm) to ``T_pad``, the next multiple of
   ``unit = freq_ratio * patch_size * 2**(stages - 1)`` frames (128 for Swin-T). No
   interpolation to a fixed 1024 frames: the number of time tokens follows the input, so a
   256-frame input computes about a quarter of the tokens of a 1024-frame one. (HTS-AT
   stretches every clip bicubically to 1024 frames; a 1024-frame input is the same here.)
3. The fold (HTS-AT's ``reshape_wav2img``): time is cut into ``freq_ratio`` chunks of
   ``T_pad / freq_ratio`` frames, stacked along frequency, chunk-major: an image of height
   ``freq_ratio * F`` and width ``T_pad / freq_ratio`` whose rows ``k F .. (k+1) F - 1`` hold
   chunk ``k``.
4. ``patch_embed``: Conv2d(1, D, p, stride p) and LayerNorm; ``stages`` Swin stages of
   (shifted-)window attention with relative position bias, patch merging between stages,
   drop path; the final LayerNorm ``norm``.
5. The token-semantic head: the last grid ``(H', W')``, ``H' = freq_ratio * c_freq_bin``, is
   unfolded so time runs in order, ``(c_freq_bin, freq_ratio * W')``; ``tscam_conv``,
   Conv2d(C -> classes, kernel ``(c_freq_bin, 3)``, padding ``(0, 1)``), gives class logits per
   time position; each position covers ``patch_size * 2**(stages-1)`` input frames (32).

Outputs (:meth:`HTSAT.sed`): clip logits, the mean over the time positions that cover real
(unpadded) input frames; framewise logits at the input's frame rate, each position's logits
repeated over the frames it covers and cut to ``T`` (HTS-AT repeats the sigmoid of each
position x32; the sigmoid commutes with the repetition, so these are its pre-sigmoid values);
the embedding, the mean of the final normed tokens over the same time positions (HTS-AT's
``latent_output``, which averages all of them: the same where ``T`` is a multiple of
``unit``). Zero-padded frames are not masked out of attention: they are input, as HTS-AT's
interpolation is.

Window rule, for any token grid ``(H, W)`` of a stage with window ``w``:

* if ``min(H, W) <= w``: no shift on either axis, and the window per axis is ``min(w, H)``
  by ``min(w, W)`` (where the grid is square this is Swin's and Hugging Face's rule, which
  take ``min(H, W)`` for both axes; on a non-square grid this rule keeps the longer axis's
  window at ``w``);
* otherwise: ``w x w`` windows, shifted by ``w // 2`` in every second block of a stage
  (blocks 1, 3, ...), with Swin's mask between the regions the cyclic shift brings together.

The relative-bias table of ``(2w - 1)^2`` offsets is indexed for the window in use (a smaller
window uses a subset of the offsets it was trained on). A grid that does not divide into
windows is zero-padded at the bottom and right to whole windows (after ``norm1``), the padded
keys are masked out of attention (a large negative score, like the shift mask: ``MASKED``),
and the padded tokens are dropped after the attention. Masks and relative indices are
built for the current grid and cached per grid and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...checkpoints import CheckpointError
from ..base import FlexModel, TokenEmbedding, UnknownLayout
from ..layers import DropPath, Mlp, check_spectrogram
from .config import HTSATConfig

__all__ = ["HTSAT", "SEDOutput", "WindowPlan", "window_plan", "fold", "unfold", "FIXED_BY_WEIGHTS", "PATCH_SETTINGS"]

#: The score added where attention is masked (across shift regions, to padded keys). Swin uses
#: -100; this one is lower still, and finite, so that a row with every key masked stays finite.
MASKED = -1e4


@dataclass(frozen=True)
class SEDOutput:
    """HTS-AT's outputs for ``spec[B, T, F]``: ``clip [B, C]`` and ``framewise [B, T, C]``
    logits (before the sigmoid), and the pooled ``embedding [B, D]``."""

    clip: torch.Tensor
    framewise: torch.Tensor
    embedding: torch.Tensor


@dataclass(frozen=True)
class WindowPlan:
    """How one block partitions a ``grid``: ``window`` (per axis), ``shift`` (per axis) and the
    ``padded`` grid (whole windows)."""

    grid: tuple[int, int]
    window: tuple[int, int]
    shift: tuple[int, int]
    padded: tuple[int, int]

    @property
    def tokens(self) -> int:
        """Tokens a window holds."""
        return self.window[0] * self.window[1]

    @property
    def needs_mask(self) -> bool:
        return self.padded != self.grid or self.shift != (0, 0)


def window_plan(grid: tuple[int, int], window_size: int, shifted: bool) -> WindowPlan:
    """The window rule (module docstring) for a block of window ``window_size`` on ``grid``;
    ``shifted``: an odd block of its stage."""
    h, w = grid
    if min(h, w) <= window_size:
        win, shift = (min(window_size, h), min(window_size, w)), (0, 0)
    else:
        s = window_size // 2 if shifted else 0
        win, shift = (window_size, window_size), (s, s)
    padded = (math.ceil(h / win[0]) * win[0], math.ceil(w / win[1]) * win[1])
    return WindowPlan(grid=(h, w), window=win, shift=shift, padded=padded)


def fold(x: torch.Tensor, freq_ratio: int) -> torch.Tensor:
    """``[B, F, T]`` (``T`` a multiple of ``freq_ratio``) to the image ``[B, 1, freq_ratio * F,
    T / freq_ratio]``: ``freq_ratio`` chunks of time stacked along frequency, chunk-major."""
    b, f, t = x.shape
    return x.reshape(b, f, freq_ratio, t // freq_ratio).transpose(1, 2).reshape(b, 1, freq_ratio * f,
                                                                                  t // freq_ratio)


def unfold(grid: torch.Tensor, freq_ratio: int) -> torch.Tensor:
    """A folded token grid ``[B, H, W, C]`` (``H = freq_ratio * h``) back in time order:
    ``[B, h, freq_ratio * W, C]``, column ``k W + t`` being chunk ``k``'s column ``t``."""
    b, h, w, c = grid.shape
    return grid.reshape(b, freq_ratio, h // freq_ratio, w, c).transpose(1, 2).reshape(
        b, h // freq_ratio, freq_ratio * w, c)


class PatchEmbed(nn.Module):
    """Conv2d(1, D, p, stride p) over the folded image, then LayerNorm (``patch_norm``)."""

    def __init__(self, cfg: HTSATConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim) if cfg.patch_norm else nn.Identity()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` to the token grid ``[B, H / p, W / p, D]``."""
        return self.norm(self.proj(image).permute(0, 2, 3, 1))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias
    (``relative_position_bias_table``, ``(2w - 1)^2`` offsets x heads) indexed for the window in use."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool, drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self._index: dict = {}

    def relative_index(self, window: tuple[int, int], device) -> torch.Tensor:
        """``[N, N]`` rows of the table for every (query, key) pair of a ``window`` (``N`` tokens)."""
        key = (window, device)
        if key not in self._index:
            wh, ww = window
            coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
            rel = coords[:, :, None] - coords[:, None, :] + (self.window_size - 1)
            self._index[key] = (rel[0] * (2 * self.window_size - 1) + rel[1]).to(device)
        return self._index[key]

    def forward(self, x: torch.Tensor, window: tuple[int, int], mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B * nW, N, C]`` windows; ``mask [nW, N, N]`` scores to add (0 or ``MASKED``)."""
        bw, n, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q * (c // h) ** -0.5, k.transpose(-2, -1))
        bias = self.relative_position_bias_table[self.relative_index(window, x.device)]  # [N, N, heads]
        scores = scores + bias.permute(2, 0, 1).to(scores.dtype)
        if mask is not None:
            nw = mask.shape[0]
            scores = (scores.reshape(bw // nw, nw, h, n, n) + mask[:, None].to(scores.dtype)).reshape(bw, h, n, n)
        weights = scores.softmax(dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out))


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``[B, H, W, C]`` to windows ``[B * nW, wh * ww, C]``, row-major over windows."""
    b, hh, ww_, c = x.shape
    wh, ww = window
    x = x.reshape(b, hh // wh, wh, ww_ // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def _reverse(windows: torch.Tensor, window: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`_partition`: ``[B * nW, wh * ww, C]`` to ``[B, H, W, C]``."""
    wh, ww = window
    hh, w = grid
    c = windows.shape[-1]
    x = windows.reshape(-1, hh // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, hh, w, c)


class SwinBlock(nn.Module):
    """``x + attn(norm1(x))`` over (shifted) windows, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, cfg: HTSATConfig, shifted: bool, drop_path: float):
        super().__init__()
        self.shifted = shifted
        self.window_size = cfg.window_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, cfg.window_size, cfg.qkv_bias, cfg.drop_rate)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        self._masks: dict = {}

    def plan(self, grid: tuple[int, int]) -> WindowPlan:
        return window_plan(grid, self.window_size, self.shifted)

    def mask(self, plan: WindowPlan, device) -> torch.Tensor | None:
        """``[nW, N, N]``: ``MASKED`` between tokens of different shift regions and at padded keys."""
        if not plan.needs_mask:
            return None
        key = (plan, device)
        if key not in self._masks:
            (hp, wp), (sh, sw), (wh, ww) = plan.padded, plan.shift, plan.window

            def regions(n: int, win: int, s: int) -> torch.Tensor:  # the shifted frame's wrap regions
                i = torch.arange(n)
                return (i >= n - win).long() + (i >= n - s).long() if s else torch.zeros(n, dtype=torch.long)

            region = regions(hp, wh, sh)[:, None] * 3 + regions(wp, ww, sw)[None, :]
            real = torch.zeros(hp, wp, dtype=torch.bool)
            real[: plan.grid[0], : plan.grid[1]] = True
            real = torch.roll(real, shifts=(-sh, -sw), dims=(0, 1))  # where the real tokens are after the shift
            region = _partition(region[None, :, :, None], plan.window)[..., 0]  # [nW, N]
            real = _partition(real[None, :, :, None], plan.window)[..., 0]
            blocked = (region[:, :, None] != region[:, None, :]) | ~real[:, None, :]
            self._masks[key] = torch.zeros(blocked.shape).masked_fill(blocked, MASKED).to(device)
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, H, W, C]``, the token grid."""
        b, h, w, c = x.shape
        plan = self.plan((h, w))
        y = self.norm1(x)
        (hp, wp), (sh, sw) = plan.padded, plan.shift
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if sh or sw:
            y = torch.roll(y, shifts=(-sh, -sw), dims=(1, 2))
        y = self.attn(_partition(y, plan.window), plan.window, self.mask(plan, x.device))
        y = _reverse(y, plan.window, plan.padded)
        if sh or sw:
            y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
        if (hp, wp) != (h, w):
            y = y[:, :h, :w]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2 x 2 neighbouring tokens concatenated (``[0::2, 0::2], [1::2, 0::2], [0::2, 1::2],
    [1::2, 1::2]``, Swin's order), LayerNorm, Linear(4C -> 2C, no bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class Stage(nn.Module):
    """``depth`` Swin blocks (every second one shifted), then a patch merging (all but the last stage)."""

    def __init__(self, cfg: HTSATConfig, index: int, drop_path: list[float]):
        super().__init__()
        dim = cfg.embed_dim * 2 ** index
        self.blocks = nn.ModuleList(SwinBlock(dim, cfg.num_heads[index], cfg, shifted=j % 2 == 1, drop_path=p)
                                    for j, p in enumerate(drop_path))
        self.downsample = PatchMerging(dim) if index < cfg.num_stages - 1 else None


#: Configuration fields that weights fix: :meth:`HTSAT.adapt` cannot change them.
FIXED_BY_WEIGHTS = ("input_fdim", "embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio",
                    "freq_ratio", "qkv_bias", "patch_norm")
#: An AST's per-call patch settings, which HTS-AT does not have.
PATCH_SETTINGS = ("patch_size", "stride", "resize", "pos_grid")


def _no_call(call: dict, what: str) -> None:
    if call:
        bad = sorted(call)
        patch = [k for k in bad if k in PATCH_SETTINGS]
        why = (" HTS-AT has no patch-size call: its patches are fixed by its weights and the number of "
               "tokens follows the input length" if patch else "")
        raise ValueError(f"{what}: unexpected {', '.join(bad)}; HTS-AT takes no per-call settings.{why}")


class HTSAT(FlexModel):
    """HTS-AT (Chen et al. 2022) on any input length: see the module docstring.

    ``HTSAT(num_classes, input_fdim=64, input_tdim=1024, embed_dim=96, depths=(2, 2, 6, 2),
    num_heads=(4, 8, 16, 32), window_size=8, ...)`` is the paper's Swin-T model (:class:`HTSATConfig`).
    ``model(spec)`` gives clip logits, :meth:`sed` clip and framewise logits and the
    embedding, :meth:`embed` any layer's tokens.
    """

    config_class = HTSATConfig
    head_prefix = "tscam_conv."
    #: HTS-AT's log-mel: 64 Slaney mel bins in dB, 32 kHz, hop 320.
    feature_kind = "slaney_logmel"

    def __init__(self, num_classes: int | None = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        cfg = self.config
        self.bn0 = nn.BatchNorm2d(cfg.input_fdim)
        self.patch_embed = PatchEmbed(cfg)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        starts = [sum(cfg.depths[:i]) for i in range(cfg.num_stages)]
        self.layers = nn.ModuleList(Stage(cfg, i, rates[s: s + d]) for i, (s, d) in enumerate(zip(starts, cfg.depths)))
        self.norm = nn.LayerNorm(cfg.num_features)
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.num_classes, kernel_size=(cfg.c_freq_bin, 3),
                                    padding=(0, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """HTS-AT's initialisation: truncated normal (std 0.02) for linears and bias tables, zero
        biases, unit LayerNorms; the convolutions and the BatchNorm keep PyTorch's defaults."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    @property
    def num_layers(self) -> int:
        """Swin blocks plus the final norm: :meth:`embed`'s layers are ``0`` (the patch
        embeddings), ``1 .. sum(depths)`` (after each block) and ``sum(depths) + 1`` (after the norm)."""
        return sum(self.config.depths) + 1

    def _stage_of(self, layer: int) -> int:
        """The stage whose grid :meth:`embed`'s ``layer`` is on."""
        if layer == 0:
            return 0
        if layer == self.num_layers:
            return self.config.num_stages - 1
        ends = [sum(self.config.depths[: i + 1]) for i in range(self.config.num_stages)]
        return next(i for i, end in enumerate(ends) if layer <= end)

    def token_frames(self, layer: int | None = None) -> int:
        """Input frames per time column of :meth:`embed`'s ``layer`` grid: ``patch_size`` at the
        first stage (4), doubling at each merging (32 at Swin-T's last)."""
        return self.config.patch_size * 2 ** self._stage_of(self.layer_index(layer))

    # -- the pipeline ------------------------------------------------------------------
    def _check_input(self, spec: torch.Tensor) -> None:
        check_spectrogram(spec, self.config.input_fdim, "HTS-AT", 1, "spectrogram has no frames")

    def image(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec[B, T, F]`` normalised (``bn0``), zero-padded to whole ``unit`` s and folded:
        ``[B, 1, freq_ratio * F, T_pad / freq_ratio]``."""
        self._check_input(spec)
        cfg = self.config
        x = self.bn0(spec.transpose(1, 2).unsqueeze(-1)).squeeze(-1)  # [B, F, T], as HTS-AT's bn0 sees it
        pad = -spec.shape[1] % cfg.unit
        if pad:
            x = F.pad(x, (0, pad))
        return fold(x, cfg.freq_ratio)

    def _layers(self, spec: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The token grid ``[B, H, W, C]`` (folded) after :meth:`embed`'s layer ``upto`` (None: the last)."""
        upto = self.num_layers if upto is None else upto
        x = self.pos_drop(self.patch_embed(self.image(spec)))
        done = 0
        for stage in self.layers:
            for block in stage.blocks:
                if done == upto:
                    return x
                x = block(x)
                done += 1
            if stage.downsample is not None:
                if done == upto:
                    return x
                x = stage.downsample(x)
        return self.norm(x) if upto == self.num_layers else x

    def _real_columns(self, frames: int, token_frames: int) -> int:
        return math.ceil(frames / token_frames)

    def sed(self, spec: torch.Tensor, lengths: torch.Tensor | None = None, **call) -> SEDOutput:
        """Clip and framewise logits and the embedding for ``spec[B, T, F]`` (:class:`SEDOutput`).
        ``lengths [B]``: each clip's own frames of a padded batch; its clip logits and embedding
        are then the means over the time positions that cover them (the padding left out)."""
        _no_call(call, "sed")
        self._check_input(spec)
        cfg = self.config
        frames = spec.shape[1]
        tokens = unfold(self._layers(spec), cfg.freq_ratio)  # [B, c_freq_bin, P, C], time in order
        positions = self.tscam_conv(tokens.permute(0, 3, 1, 2)).flatten(2)  # [B, classes, P]
        framewise = positions.transpose(1, 2).repeat_interleave(cfg.frames_per_position, dim=1)[:, :frames]
        if lengths is None:
            real = self._real_columns(frames, cfg.frames_per_position)
            embedding = tokens[:, :, :real].mean(dim=(1, 2))
            clip = positions[:, :, :real].mean(dim=-1)
        else:
            fpp = cfg.frames_per_position
            real = (torch.as_tensor(lengths, device=spec.device) + fpp - 1).div(fpp, rounding_mode="floor")
            real = real.clamp(1, positions.shape[-1])
            keep = (torch.arange(positions.shape[-1], device=spec.device)[None, :] < real[:, None]).to(tokens.dtype)
            clip = (positions * keep[:, None, :]).sum(dim=-1) / real[:, None]
            embedding = (tokens * keep[:, None, :, None]).sum(dim=(1, 2)) / (real * tokens.shape[1])[:, None]
        return SEDOutput(clip=clip, framewise=framewise, embedding=embedding)

    def forward(self, spec: torch.Tensor, lengths: torch.Tensor | None = None, **call) -> torch.Tensor:
        """Clip logits ``[B, classes]`` (before the sigmoid) for ``spec[B, T, F]`` of any length
        (``lengths``: as :meth:`sed`)."""
        _no_call(call, "forward")
        return self.sed(spec, lengths).clip

    def embed(self, spec: torch.Tensor, *, layer: int | None = None, **call) -> TokenEmbedding:
        """The tokens of ``layer`` (:attr:`num_layers`; None: after the final norm, what the head
        reads) as a ``(freq, time)`` grid in time order (the chunks unfolded), cut to the time
        columns that cover the input's frames (:meth:`token_frames` each); ``prefix`` is their
        mean ``[B, 1, D]`` (HTS-AT has no prefix tokens; its embedding is this mean)."""
        _no_call(call, "embed")
        chosen = self.layer_index(layer)
        grid = unfold(self._layers(spec, chosen), self.config.freq_ratio)
        real = self._real_columns(spec.shape[1], self.token_frames(chosen))
        grid = grid[:, :, :real]
        b, gf, gt, d = grid.shape
        tokens = grid.reshape(b, gf * gt, d)
        return TokenEmbedding(prefix=tokens.mean(dim=1, keepdim=True), tokens=tokens, grid=(gf, gt))

    # -- other geometries ---------------------------------------------------------------
    def adapt(self, *, kernel_resize: str = "pi", **changes) -> "HTSAT":
        """This network for another ``input_tdim`` (no weight changes: the tokens follow the
        input, and the relative-bias tables do not depend on it), ``num_classes`` (a new head,
        ``tscam_conv``), ``labels`` or drop rates. Patch settings are refused: HTS-AT has no
        patch-size call. ``kernel_resize`` is accepted for the engine's sake and unused."""
        if not changes:
            return self
        patch = sorted(k for k in changes if k in PATCH_SETTINGS)
        if patch:
            raise ValueError(f"cannot adapt {', '.join(patch)}: HTS-AT has no patch-size call (its "
                             f"{self.config.patch_size}x{self.config.patch_size} patches are fixed by its weights; "
                             "the number of tokens follows input_tdim)")
        return self._rebuilt(changes, FIXED_BY_WEIGHTS)

    def fixed(self, *, input_tdim: int | None = None, **call) -> "HTSAT":
        """A copy for ``input_tdim`` frames: nothing is resized per call, so it computes what this
        model does (``call`` must be empty: HTS-AT has no per-call settings)."""
        _no_call(call, "fixed")
        return self._rebuilt({} if input_tdim is None else {"input_tdim": input_tdim})

    @classmethod
    def from_pretrained(cls, path, **overrides) -> "HTSAT":
        """Official HTS-AT Lightning checkpoints (``sed_model.*``), ImageNet Swin, Hugging Face CLAP
        audio towers or flexiast files (:mod:`flexiast.models.htsat.weights`); ``overrides``:
        ``num_classes`` (a new head), ``input_tdim``, ``labels``, drop rates
        (:meth:`FlexModel.from_pretrained`). A file no family reads is refused saying what an
        official HTS-AT file holds. Never runs code from the file."""
        try:
            return super().from_pretrained(path, **overrides)
        except UnknownLayout as e:
            raise CheckpointError(f"{path}: not an HTS-AT checkpoint: no sed_model.* keys (an official HTS-AT "
                                  "Lightning file's state_dict has them) and no other layout a model family "
                                  f"reads; found keys such as {', '.join(e.keys[:4])}") from None
