"""Audio Spectrogram Transformer whose patch size is chosen per call.

AST (Gong et al., Interspeech 2021): a ViT/DeiT encoder over a log-mel spectrogram
``[frames, mel_bins]`` cut into patches; the output is the mean of the prefix tokens
(cls and distillation) after the final norm, fed to LayerNorm + Linear.

FlexiAST (Feng et al., Interspeech 2023, Sec. 2.2-2.3): only the patch kernel and the
positional grid depend on the patch size. Both are stored once, at the base patch size
(16 x 16 by default) and the base token grid, and resized for each call:
``model(spec, patch_size=(pf, pt), resize="pi")`` uses the kernel PI-resized (or
bilinearly resized, ``"bl"``) to ``pf x pt`` and the grid bilinearly resized to the tokens
of that patch size. Gradients flow through both resizes into the stored parameters, so
training with a random size per step (FlexiAST) trains the one underlying kernel.

Patches do not overlap (stride = patch) unless the model was built with another
``stride``: that stride applies at the stored patch size, so AST's released
``fstride = tstride = 10`` weights run unchanged. At any other size the stride is the
patch size, as in FlexiAST, unless ``stride=`` is passed to ``forward``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...constants import POS_GRID_POLICIES, RESIZE_METHODS
from ...resize import ast_adapt_pos_grid, resize_patch_weight, resize_pos_grid, to_pair
from ..base import FlexModel, TokenEmbedding, check_adapt
from ..layers import DropPath, Mlp, check_spectrogram
from ..packing import Clips
from ..patchout import PatchoutDraw, keep
from .attention import Attention, AttentionPool
from .config import ASTConfig
from .packed import embed_packed, forward_packed

__all__ = ["AST"]


class Block(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Every operation but attention acts on each token alone, so the layer's output for
    the first ``n`` tokens needs only their queries, projections and MLPs.
    """

    def __init__(self, cfg: ASTConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads, cfg.qkv_bias, cfg.drop_rate)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.embed_dim, cfg.mlp_dim, cfg.drop_rate)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, queries: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The layer for every token, or with ``queries=n`` for the first ``n`` only; ``mask``:
        which tokens each may attend to (a packed row's clips, :func:`attend`)."""
        out = self.drop_path(self.attn(self.norm1(x), queries, mask))
        x = (x if queries is None else x[:, :queries]) + out
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Patch embedding whose kernel is stored once and resized per call.

    ``proj.weight`` is ``[dim, 1, pf, pt]`` at the stored patch size. A token is
    ``e = <x_patch, w> + b``. Without overlap this is computed as one matrix product over
    the patches (a GEMM that bf16 autocast and AMX accelerate); with overlap, as a strided
    convolution. The caller's ``grid`` decides partial patches: the convolution's floor
    drops trailing bins or frames that do not fill a patch; a larger (ceil) grid zero-pads
    the input at the end first.
    """

    def __init__(self, embed_dim: int, patch_size: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor, patch_size: tuple[int, int], stride: tuple[int, int],
                resize: str, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        weight = resize_patch_weight(self.proj.weight, patch_size, resize)
        need = [(g - 1) * s + p for g, s, p in zip(grid, stride, patch_size)]
        if need[0] > x.shape[2] or need[1] > x.shape[3]:  # partial_patches="pad": zeros to whole patches
            x = F.pad(x, (0, max(0, need[1] - x.shape[3]), 0, max(0, need[0] - x.shape[2])))
        if stride != patch_size:
            out = F.conv2d(x, weight, self.proj.bias, stride=stride)
            return out.flatten(2).transpose(1, 2), tuple(out.shape[-2:])
        b = x.shape[0]
        gf, gt = grid
        x = x[:, 0, : gf * patch_size[0], : gt * patch_size[1]]
        patches = x.reshape(b, gf, patch_size[0], gt, patch_size[1]).permute(0, 1, 3, 2, 4)
        patches = patches.reshape(b, gf * gt, patch_size[0] * patch_size[1])
        return F.linear(patches, weight.flatten(1), self.proj.bias), (gf, gt)


class Head(nn.Module):
    """AST's classifier: LayerNorm then Linear (``mlp_head`` in AST checkpoints)."""

    def __init__(self, dim: int, num_classes: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


#: Configuration fields that weights fix: :func:`adapt_state_dict` cannot change them.
FIXED_BY_WEIGHTS = ("embed_dim", "depth", "mlp_ratio", "qkv_bias", "prefix_tokens")


def adapt_state_dict(config: ASTConfig, sd: dict, changes: dict, kernel_resize: str = "pi",
                     move_positions=None) -> tuple[ASTConfig, dict, bool]:
    """``(new config, state dict, new head?)`` for ``config`` changed by ``changes``.

    The stored kernel moves to a new ``patch_size`` with PI-resize (FlexiAST eq. 3) or
    bilinear interpolation (``kernel_resize="bl"``, coarse-to-fine's Patch-BL, Sec. 2.3);
    the positional grid is resized bilinearly to the new grid (a new input length,
    stride or patch size; coarse-to-fine Sec. 2.2); a new ``num_classes`` (or weights
    without a head, or a new ``pooling="attention"`` without its pool) drops the head and any
    attention pool, which the caller initialises afresh. ``move_positions(sd, old, new)``
    moves the position tensors of another layout (:meth:`AST._move_positions`).
    """
    check_adapt(config, changes, FIXED_BY_WEIGHTS)
    new = config.replace(**changes)
    sd = dict(sd)
    if new.patch_size != config.patch_size:
        sd["patch_embed.proj.weight"] = resize_patch_weight(sd["patch_embed.proj.weight"], new.patch_size,
                                                            kernel_resize)
    if new.grid != config.grid:
        (move_positions or AST._move_positions)(sd, config, new)
    if new.pooling != config.pooling:  # an attention pool belongs to the pooling it was trained with
        sd = {k: v for k, v in sd.items() if not k.startswith("pool.")}
    new_head = config.classifier and (new.num_classes != config.num_classes or "head.fc.weight" not in sd
                                      or (new.pooling == "attention" and "pool.query" not in sd))
    if new_head:
        for k in [k for k in sd if k.startswith(("head.", "pool."))]:
            del sd[k]
    return new, sd, new_head


class AST(FlexModel):
    """Audio Spectrogram Transformer with a patch size chosen at each call.

    ``AST(num_classes, input_fdim=128, input_tdim=1024, embed_dim=768, depth=12,
    num_heads=12, mlp_ratio=4.0, patch_size=16, stride=None, prefix_tokens=2, ...)``
    builds AST-B/16 for 10 s AudioSet clips; ``AST.preset("tiny", num_classes)`` and
    friends give the DeiT widths. See :class:`ASTConfig` for every argument.
    """

    config_class = ASTConfig
    #: AST's Kaldi fbank (:func:`flexiast.features.log_mel`).
    feature_kind = "kaldi_fbank"

    @property
    def num_layers(self) -> int:
        return self.config.depth

    def __init__(self, num_classes: int | None = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        cfg = self.config
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(d, cfg.patch_size, cfg.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.prefix_tokens == 2 else None
        self._build_positions(cfg)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self._build_output(cfg)
        self.reset_parameters()

    def _build_positions(self, cfg: ASTConfig) -> None:
        """The positional embeddings: AST's one table ``pos_embed [1, prefix + gf gt, D]``; a
        subclass may store them otherwise (PaSST: a frequency and a time table) and give
        ``pos_embed`` and :meth:`pos_embed_for` from them."""
        gf, gt = cfg.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.prefix_tokens + gf * gt, cfg.embed_dim))

    def _position_parameters(self) -> tuple:
        """The parameters that hold the positions (initialised as timm's ``pos_embed``)."""
        return (self.pos_embed,)

    def _positions_for(self, patch, stride, grid: tuple[int, int], pos_grid: str) -> dict:
        """The position tensors of a fixed copy for one call's grid (:meth:`at_patch_size`)."""
        return {"pos_embed": self.pos_embed_for(patch, stride, grid, pos_grid)}

    @staticmethod
    def _move_positions(sd: dict, old: ASTConfig, new: ASTConfig) -> None:
        """Move the position tensors of ``sd`` from ``old``'s grid to ``new``'s, in place: AST's
        table resized bilinearly (antialiased; coarse-to-fine Sec. 2.2)."""
        sd["pos_embed"] = resize_pos_grid(sd["pos_embed"], old.grid, new.grid, num_prefix_tokens=new.prefix_tokens)

    def _build_output(self, cfg: ASTConfig) -> None:
        """What reads the encoder: AST's classifier (``head``), after ElasticAST's attention pooling
        (``pool``) with ``pooling="attention"``; a subclass may read it otherwise."""
        if cfg.pooling == "attention":
            self.pool = AttentionPool(cfg.embed_dim, cfg.num_heads, cfg.qkv_bias)
        self.head = Head(cfg.embed_dim, cfg.num_classes, cfg.head_norm_eps)

    def reset_parameters(self) -> None:
        """timm's ViT initialisation: truncated normal (std 0.02) for tokens and linears."""
        for p in (self.cls_token, self.dist_token, *self._position_parameters(),
                  getattr(getattr(self, "pool", None), "query", None)):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        conv = self.patch_embed.proj
        nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
        fan_in = conv.weight[0].numel()
        nn.init.uniform_(conv.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    # -- resolving sizes -------------------------------------------------------------
    def _check_input(self, spec: torch.Tensor) -> None:
        check_spectrogram(spec, self.config.input_fdim)

    def pos_embed_for(self, patch_size, stride, grid: tuple[int, int], pos_grid: str = "leading") -> torch.Tensor:
        """Positional embeddings for a call's token ``grid``.

        The stored grid is first resized bilinearly to the grid this patch size gives on
        the trained input length (FlexiAST Sec. 2.2; a patch longer than the trained input
        gives one position on that axis, as the trained input padded to one patch would).
        An input of another length then
        needs another grid; ``pos_grid`` chooses how it is made from that one:

        * ``"leading"``: a shorter input keeps the leading time positions, the ones a
          clip shorter than the trained length occupied in training (clips are
          zero-padded at the end), so each frame keeps its training position;
        * ``"centre"``: AST's cut (Gong et al. 2021, Sec. 2.2; :func:`ast_adapt_pos_grid`),
          the centre time positions, as AST adapts a grid to a shorter dataset;
        * ``"resize"``: bilinear resize to the input's grid, so the input spans them all.

        A longer input has no trained positions to cut from: every policy stretches the
        time axis bilinearly.
        """
        if pos_grid not in POS_GRID_POLICIES:
            raise ValueError(f"pos_grid={pos_grid!r} is not one of {', '.join(POS_GRID_POLICIES)}")
        cfg = self.config
        patch = to_pair(patch_size, "patch_size")
        ref = cfg.grid_at(tuple(max(n, q) for n, q in zip(cfg.input_size, patch)), patch, stride)
        pos = resize_pos_grid(self.pos_embed, cfg.grid, ref, num_prefix_tokens=cfg.prefix_tokens)
        if grid == ref:
            return pos
        shorter = grid[0] == ref[0] and grid[1] < ref[1]
        if shorter and pos_grid == "leading":
            p, n = cfg.prefix_tokens, pos.shape[-1]
            body = pos[:, p:].reshape(1, ref[0], ref[1], n)[:, :, : grid[1]]
            return torch.cat([pos[:, :p], body.reshape(1, -1, n)], dim=1)
        if shorter and pos_grid == "centre":
            return ast_adapt_pos_grid(pos, ref, grid, num_prefix_tokens=cfg.prefix_tokens)
        return resize_pos_grid(pos, ref, grid, num_prefix_tokens=cfg.prefix_tokens, antialias=False)

    # -- forward ---------------------------------------------------------------------
    def _embed_patches(self, spec: torch.Tensor, patch_size, resize: str, stride, pos_grid: str,
                       mask: torch.Tensor | None = None,
                       patchout: PatchoutDraw | torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Prefix and patch tokens with their positions, before the first layer, and the grid.
        ``mask [B, N]`` (True: hidden) replaces those patch embeddings by the learned
        ``mask_embed`` before the positions are added, as SSAST does (a model that has one).
        ``patchout`` then keeps only the patch tokens it draws (:mod:`flexiast.models.patchout`)."""
        self._check_input(spec)
        if resize not in RESIZE_METHODS:
            raise ValueError(f"resize={resize!r} is not one of {', '.join(RESIZE_METHODS)}")
        patch, stride = self.config.resolve_patch(patch_size, stride)
        grid = self.config.grid_at((spec.shape[2], spec.shape[1]), patch, stride)  # raises if a patch does not fit
        x = spec.unsqueeze(1).transpose(2, 3)  # [B, 1, mel_bins, frames], as AST
        tokens, grid = self.patch_embed(x, patch, stride, resize, grid)
        if mask is not None:
            tokens = torch.where(mask[..., None], self.mask_embed.to(tokens.dtype), tokens)
        prefix = [self.cls_token] + ([self.dist_token] if self.dist_token is not None else [])
        prefix = torch.cat(prefix, dim=1).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([prefix, tokens], dim=1) + self.pos_embed_for(patch, stride, grid, pos_grid)
        if patchout is not None:
            p = self.config.prefix_tokens
            x = torch.cat([x[:, :p], keep(x[:, p:], grid, patchout)], dim=1)
        return self.pos_drop(x), grid

    def forward_features(self, spec: torch.Tensor, patch_size=None, resize: str = "pi",
                         stride=None, pos_grid: str = "leading", prefix_only: bool = False,
                         mask: torch.Tensor | None = None, patchout: PatchoutDraw | torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output for every token, ``[batch, prefix + tokens, dim]``.

        ``prefix_only``: the output for the prefix tokens only, ``[batch, prefix, dim]``,
        all the head reads. The last layer then runs its queries, projection and MLP for
        those tokens alone, which saves ``(S - prefix) / S`` of its work but the key and
        value projections: about 1/L - 1/(6L) of an L-layer model (``flexiast.flops``).
        ``mask``: patches hidden behind the mask embedding; ``patchout``: a training step's
        patch tokens dropped (:meth:`_embed_patches`).
        """
        x, _ = self._embed_patches(spec, patch_size, resize, stride, pos_grid, mask, patchout)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, self.config.prefix_tokens if prefix_only and i == last else None)
        return self.norm(x)

    def embed(self, spec, *, layer: int | None = None, patch_size=None, resize: str = "pi",
              stride=None, pos_grid: str = "leading") -> TokenEmbedding:
        """The tokens of ``layer`` (:class:`TokenEmbedding`): ``0`` the patch embeddings with
        their positions, ``1 .. depth`` the output of that transformer layer, the last after
        the encoder's final LayerNorm (what the head reads); negative counts from the end
        (``-1``, the default, is ``depth``). The other arguments are :meth:`forward`'s. For
        :class:`~flexiast.models.packing.Clips` of their own lengths, a list of one
        :class:`TokenEmbedding` per clip from one packed call (:func:`.packed.embed_packed`)."""
        chosen = self.layer_index(layer)
        if isinstance(spec, Clips):
            return embed_packed(self, spec, chosen, patch_size, resize, stride, pos_grid)
        x, grid = self._embed_patches(spec, patch_size, resize, stride, pos_grid)
        for block in self.blocks[:chosen]:
            x = block(x)
        if chosen == self.num_layers:
            x = self.norm(x)
        p, pooling = self.config.prefix_tokens, self.config.pooling
        pool = getattr(self, "pool", None) if pooling == "attention" else None
        return TokenEmbedding(prefix=x[:, :p], tokens=x[:, p:], grid=grid, pooling=pooling, pool=pool)

    def forward_head(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the mean of the prefix tokens (AST: ``(cls + dist) / 2``), of the patch
        tokens with ``pooling="mean"`` (SSAST's ``ft_avgtok``), or their attention pooling
        (``"attention"``, ElasticAST). ``mask [batch, tokens]`` (True: a token of the clip) leaves
        out the padding of clips gathered from packed rows (:mod:`.packed`)."""
        p, pooling = self.config.prefix_tokens, self.config.pooling
        if pooling == "prefix":
            return self.head(features[:, :p].mean(dim=1))
        tokens, keep = features[:, p:], None if mask is None else mask[:, p:]
        if pooling == "attention":
            return self.head(self.pool(tokens, keep))
        if keep is None:
            return self.head(tokens.mean(dim=1))
        w = keep.to(tokens.dtype)[..., None]
        return self.head((tokens * w).sum(dim=1) / w.sum(dim=1))

    def forward(self, spec, patch_size=None, resize: str = "pi", stride=None,
                pos_grid: str = "leading", patchout: PatchoutDraw | torch.Tensor | None = None) -> torch.Tensor:
        """Logits for ``spec[batch, frames, mel_bins]`` at ``patch_size`` (int or (freq, time)).

        ``frames`` may differ from the trained ``input_tdim``; ``pos_grid`` says how the
        positional grid follows (:meth:`pos_embed_for`). ``spec`` may instead be
        :class:`~flexiast.models.packing.Clips` of their own lengths (each at its own patch size
        where it has one): packed into rows (ElasticAST), one row of logits per clip
        (:func:`flexiast.models.ast.packed.forward_packed`). ``patchout``: the patch tokens each
        clip keeps in a training step (PaSST): a draw, or the ``[batch, K]`` positions it gives
        (:mod:`flexiast.models.patchout`).
        """
        if isinstance(spec, Clips):
            if patchout is not None:
                raise ValueError("patchout takes a batch of one length, not packed clips")
            return forward_packed(self, spec, patch_size, resize, stride, pos_grid)
        prefix_only = self.config.pooling == "prefix"
        return self.forward_head(self.forward_features(spec, patch_size, resize, stride, pos_grid, prefix_only,
                                                       patchout=patchout))

    def at_patch_size(self, patch_size=None, *, resize: str = "pi", input_tdim: int | None = None,
                      stride=None, pos_grid: str = "leading") -> "AST":
        """A fixed-size copy: an AST that stores the kernel and grid of one call.

        ``model.at_patch_size(p, input_tdim=T)(spec)`` equals ``model(spec, patch_size=p)``
        for ``spec`` of ``T`` frames, with the kernel resized (``resize``) and the
        positional grid made (``pos_grid``) once instead of per call: a plain ViT for
        export (ONNX, Hugging Face) or for the fastest inference at one size.
        """
        cfg = self.config
        if resize not in RESIZE_METHODS:
            raise ValueError(f"resize={resize!r} is not one of {', '.join(RESIZE_METHODS)}")
        patch, stride = cfg.resolve_patch(patch_size, stride)
        frames = cfg.input_tdim if input_tdim is None else input_tdim
        grid = cfg.grid_at((cfg.input_fdim, frames), patch, stride)
        new = cfg.replace(patch_size=patch, stride=stride, input_tdim=frames)
        with torch.no_grad():
            sd = dict(self.state_dict())
            sd["patch_embed.proj.weight"] = resize_patch_weight(self.patch_embed.proj.weight, patch, resize)
            sd.update(self._positions_for(patch, stride, grid, pos_grid))
            model = type(self)(config=new).to(device=self.cls_token.device, dtype=self.cls_token.dtype)
            model.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
        return model.train(self.training)

    #: :meth:`FlexModel.fixed`: the same as :meth:`at_patch_size`.
    fixed = at_patch_size

    def adapt(self, *, kernel_resize: str = "pi", **changes) -> "AST":
        """This network for another geometry or head (:func:`adapt_state_dict`): a new
        ``input_tdim`` (a coarse phase's shorter input), ``patch_size`` (moved with
        ``kernel_resize``), ``stride`` or ``num_classes`` (a new head). The new model is on
        this one's device, in its mode; the weights are moved on the CPU, so the result
        does not depend on the device."""
        if not changes:
            return self
        sd = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        config, sd, new_head = adapt_state_dict(self.config, sd, changes, kernel_resize, self._move_positions)
        model = type(self)(config=config)
        model.load_state_dict(sd, strict=not new_head)
        return model.to(self.cls_token.device).train(self.training)
