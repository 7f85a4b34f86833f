"""An AST over packed clips of their own lengths (ElasticAST, Feng et al., Interspeech 2024).

For clips ``x_1 .. x_N`` (``[frames_i, mel_bins]``, each at its own patch size ``p_i`` where
:class:`~flexiast.models.packing.Clips` gives one, else the call's):

1. each clip is embedded as it would be alone: its patch tokens under the kernel resized to
   ``p_i``, its prefix tokens, and its own positional grid (:meth:`AST.pos_embed_for`, so the
   grid follows the clip's length by the call's ``pos_grid`` policy). Clips of one patch size
   and token grid are embedded together, each cut (or, under ``partial_patches="pad"``,
   zero-padded) to the frames that grid reads, which is what the clip alone reads;
2. the clips' ``S_i = P + N_i`` tokens are packed into rows of at most ``row_tokens``
   (:func:`~flexiast.models.packing.pack_rows`, greedy in order), rows zero-padded to the
   longest; within a row the prefix tokens of all its clips come first, then their patch
   tokens (:func:`positions`); every layer runs on ``[rows, longest, D]`` with the
   block-diagonal mask (:func:`~flexiast.models.packing.block_mask`, here over the clip
   each position holds), so a token's attention is a softmax over its own clip's tokens only
   (masked scores are ``-inf``, their weights exactly 0). With the ``"prefix"`` head the last
   layer runs for each row's leading prefix positions only, as an unpacked batch's does
   (``prefix_only``), which saves nearly a layer's work (a quarter of a 4-layer model's);
3. the final norm's output is gathered back per clip (``[N, max S_i, D]`` and a mask of the
   clip's tokens, or only the ``[N, P, D]`` prefix tokens) and read by the head as an
   unpacked batch is (:meth:`AST.forward_head`: prefix tokens, masked mean, or masked
   attention pooling).

Every other operation acts on each token alone, so the logits equal each clip run alone, to
rounding; the cost is one attention over ``longest`` keys per row instead of ``S_i`` per clip
(the FLOP counter, :func:`flexiast.models.ast.flops.packed_flops`, counts what runs).

:func:`embed_packed` stops after any layer and gives each clip's tokens of that layer as its
own :class:`~flexiast.models.base.TokenEmbedding` (what :meth:`AST.embed` gives for that clip
alone): deployment's embeddings of packed clips of their own lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..base import TokenEmbedding
from ..packing import Clips, block_mask, pack_rows

__all__ = ["PackedLayout", "layout", "positions", "packed_features", "forward_packed", "embed_packed"]


@dataclass(frozen=True)
class PackedLayout:
    """Where each clip goes: ``calls[i] = (patch, stride, grid)`` of clip ``i``, ``sizes[i]``
    its tokens (prefix + grid), ``rows`` the clip indices of each row, ``length`` the longest row."""

    calls: tuple
    sizes: tuple[int, ...]
    rows: list[list[int]]
    length: int

    @property
    def groups(self) -> dict:
        """``{(patch, stride, grid): [clips]}``: the clips embedded together."""
        out: dict = {}
        for i, call in enumerate(self.calls):
            out.setdefault(call, []).append(i)
        return out

    @property
    def tokens(self) -> int:
        """Every position the layers compute, padding included: ``rows x length``."""
        return len(self.rows) * self.length


def layout(config, clips: Clips, patch_size=None, stride=None) -> PackedLayout:
    """The packing of ``clips`` for ``config`` (an :class:`ASTConfig`) at the call's ``patch_size``
    (each clip's own where it has one); refuses a patch that does not fit a clip, naming it."""
    calls, sizes = [], []
    for i, n in enumerate(clips.lengths):
        own = clips.patches[i] if clips.patches is not None else patch_size
        patch, st = config.resolve_patch(own, stride)
        try:
            grid = config.grid_at((clips.mel_bins, n), patch, st)
        except ValueError as e:
            raise ValueError(f"clip {i} of the batch ({n} frames): {e}") from None
        calls.append((patch, st, grid))
        sizes.append(config.prefix_tokens + grid[0] * grid[1])
    rows = pack_rows(sizes, clips.row_tokens)
    return PackedLayout(tuple(calls), tuple(sizes), rows, max(sum(sizes[i] for i in r) for r in rows))


def _fit(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """``spec`` cut, or zero-padded at the end, to ``frames`` (what its grid reads)."""
    if spec.shape[0] >= frames:
        return spec[:frames]
    return F.pad(spec, (0, 0, 0, frames - spec.shape[0]))


def positions(lay: PackedLayout, prefix: int) -> list[list[int]]:
    """Where each clip's tokens (its ``prefix`` tokens, then its patch tokens) sit in the flat
    ``[rows x length]`` positions: a row holds the prefix tokens of all its clips first, in
    order, then their patch tokens. Attention is masked per clip and every other operation
    acts on each token alone, so the order within a row changes nothing but lets the last
    layer run for the first ``prefix x (clips in the row)`` positions only."""
    out: list = [None] * len(lay.sizes)
    for r, row in enumerate(lay.rows):
        start = r * lay.length
        at = start + prefix * len(row)
        for j, i in enumerate(row):
            body = lay.sizes[i] - prefix
            out[i] = list(range(start + j * prefix, start + (j + 1) * prefix)) + list(range(at, at + body))
            at += body
    return out


def packed_features(model, clips: Clips, patch_size=None, resize: str = "pi", stride=None,
                    pos_grid: str = "leading", layer: int | None = None, prefix_only: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, PackedLayout]:
    """``(features [N, max S_i, D], mask [N, max S_i], layout)``: each clip's encoder output
    after the final norm, gathered from the packed rows, and which positions are its tokens.
    ``layer`` (``0 .. depth``, as :meth:`AST.embed` numbers them; None: the last) stops after
    that many blocks, the final norm applied only after the last. ``prefix_only``: only the
    prefix tokens, ``[N, prefix, D]`` (all the ``"prefix"`` head reads); the last layer then
    runs its queries, projection and MLP for the first ``prefix x (most clips in a row)``
    positions of each row alone (:func:`positions`), as :meth:`AST.forward_features` does for
    an unpacked batch."""
    lay = layout(model.config, clips, patch_size, stride)
    embedded: list = [None] * len(clips)
    for (patch, st, grid), members in lay.groups.items():
        frames = (grid[1] - 1) * st[1] + patch[1]
        batch = torch.stack([_fit(clips.specs[i], frames) for i in members])
        x, _ = model._embed_patches(batch, patch, resize, st, pos_grid)
        for j, i in enumerate(members):
            embedded[i] = x[j]
    p = model.config.prefix_tokens
    where = positions(lay, p)
    order = [i for row in lay.rows for i in row]
    device = embedded[0].device
    ids = [-1 - r for r in range(len(lay.rows)) for _ in range(lay.length)]  # a row's padding: its own id
    for i in order:
        for at in where[i]:
            ids[at] = i
    dest = torch.tensor([at for i in order for at in where[i]], device=device)
    flat = torch.cat([embedded[i] for i in order])
    x = flat.new_zeros(lay.tokens, flat.shape[-1]).index_copy(0, dest.to(device), flat)
    x = x.view(len(lay.rows), lay.length, -1)
    mask = block_mask(torch.tensor(ids).view(len(lay.rows), lay.length)).to(device)
    depth = len(model.blocks) if layer is None else layer
    queries = p * max(len(r) for r in lay.rows) if prefix_only and depth == len(model.blocks) else None
    for k, block in enumerate(model.blocks[:depth]):
        x = block(x, mask=mask) if k < depth - 1 or queries is None else block(x, queries, mask[:, :, :queries])
    x = model.norm(x) if depth == len(model.blocks) else x
    width = x.shape[1]
    if queries is not None:
        where = [w[:p] for w in where]
    longest = max(len(w) for w in where)
    gather = [[(at // lay.length) * width + at % lay.length for at in w] + [0] * (longest - len(w)) for w in where]
    keep = torch.tensor([[True] * len(w) + [False] * (longest - len(w)) for w in where], device=device)
    features = x.reshape(-1, x.shape[-1])[torch.tensor(gather, device=device)]
    return features, keep, lay


def forward_packed(model, clips: Clips, patch_size=None, resize: str = "pi", stride=None,
                   pos_grid: str = "leading") -> torch.Tensor:
    """Logits ``[N, classes]`` of packed ``clips``, row ``i`` clip ``i``'s (the module docstring)."""
    prefix_only = model.config.pooling == "prefix"
    features, keep, _ = packed_features(model, clips, patch_size, resize, stride, pos_grid, prefix_only=prefix_only)
    return model.forward_head(features, keep)


def embed_packed(model, clips: Clips, layer: int, patch_size=None, resize: str = "pi", stride=None,
                 pos_grid: str = "leading") -> list[TokenEmbedding]:
    """Each clip's tokens of ``layer`` (``0 .. depth``, resolved by the caller) from one packed call:
    clip ``i``'s :class:`TokenEmbedding` (``prefix [1, P, D]``, ``tokens [1, N_i, D]``, its own
    grid), equal to ``model.embed`` of that clip alone, to rounding."""
    features, _, lay = packed_features(model, clips, patch_size, resize, stride, pos_grid, layer)
    p, pooling = model.config.prefix_tokens, model.config.pooling
    pool = getattr(model, "pool", None) if pooling == "attention" else None
    return [TokenEmbedding(prefix=features[i:i + 1, :p], tokens=features[i:i + 1, p:lay.sizes[i]],
                           grid=lay.calls[i][2], pooling=pooling, pool=pool) for i in range(len(clips))]
