"""Clips of their own lengths, and how their tokens are packed into rows (ElasticAST).

ElasticAST (Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv 2407.08691) trains one AST
on clips of their native length without padding: each clip's tokens (its prefix tokens,
then its patch tokens with its own positional grid) are laid end to end in rows of at most
``L'`` tokens, filled greedily in arrival order (a new row starts when the next clip would
pass ``L'``); self-attention is masked block-diagonally so that a token attends only to the
tokens of its own clip, and each clip is pooled on its own. Every other operation of a
transformer acts on each token alone, so a packed forward equals each clip run alone.

:class:`Clips` is such a batch as data: a list of spectrograms ``[frames_i, mel_bins]``,
optionally a patch size per clip (FlexiAST's patch size drawn per clip instead of per step),
and the row budget ``row_tokens``. A family that packs (``ModelFamily.packs``) takes it in
place of a ``[batch, frames, mel_bins]`` tensor: ``model(clips, **call)`` gives one output
row per clip, in order. :func:`pack_rows` is the greedy grouping, :func:`block_mask` the
attention mask of a packed row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["Clips", "pack_rows", "block_mask", "PackingError", "DEFAULT_ROW_TOKENS"]

#: ElasticAST's row budget ``L'`` (its training and evaluation scripts).
DEFAULT_ROW_TOKENS = 2048


class PackingError(ValueError):
    """A clip that cannot be packed (longer than a row), or a batch that is not a list of clips."""


@dataclass(frozen=True)
class Clips:
    """A batch of clips of their own lengths: ``specs[i]`` is ``[frames_i, mel_bins]``.

    ``patches[i]`` is clip ``i``'s ``(freq, time)`` patch size where each clip has its own
    (None: the call's ``patch_size``); ``row_tokens`` is the most tokens a packed row holds."""

    specs: tuple[torch.Tensor, ...]
    patches: tuple[tuple[int, int], ...] | None = None
    row_tokens: int = DEFAULT_ROW_TOKENS

    def __post_init__(self):
        specs = tuple(self.specs)
        object.__setattr__(self, "specs", specs)
        if not specs:
            raise PackingError("a batch of clips needs at least one clip")
        bins = {s.shape[-1] for s in specs}
        if any(s.dim() != 2 for s in specs) or len(bins) != 1:
            shapes = ", ".join(str(tuple(s.shape)) for s in specs[:4])
            raise PackingError(f"clips must be [frames, mel_bins] with the same mel bins; got {shapes}")
        if self.patches is not None:
            patches = tuple(tuple(int(v) for v in p) for p in self.patches)
            if len(patches) != len(specs):
                raise PackingError(f"{len(patches)} patch sizes for {len(specs)} clips")
            object.__setattr__(self, "patches", patches)
        if int(self.row_tokens) < 1:
            raise PackingError(f"row_tokens={self.row_tokens}: a row holds at least one token")

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def lengths(self) -> tuple[int, ...]:
        """Each clip's frames."""
        return tuple(int(s.shape[0]) for s in self.specs)

    @property
    def mel_bins(self) -> int:
        return int(self.specs[0].shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.specs[0].dtype

    @property
    def device(self) -> torch.device:
        return self.specs[0].device

    def to(self, *args, **kwargs) -> "Clips":
        """Every clip moved (``Tensor.to``'s arguments)."""
        return replace(self, specs=tuple(s.to(*args, **kwargs) for s in self.specs))

    def with_patches(self, patches) -> "Clips":
        """The same clips, clip ``i`` at ``patches[i]``."""
        return replace(self, patches=None if patches is None else tuple(patches))

    def padded(self, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spec [batch, longest, bins], lengths [batch])``: the clips padded at the end with
        ``value`` to the longest, as a fixed-shape batch (what a family that cannot pack runs)."""
        longest = max(self.lengths)
        spec = self.specs[0].new_full((len(self), longest, self.mel_bins), value)
        for i, s in enumerate(self.specs):
            spec[i, : s.shape[0]] = s
        return spec, torch.tensor(self.lengths)

    @classmethod
    def split(cls, spec: torch.Tensor, lengths, **kwargs) -> "Clips":
        """The clips of a padded batch ``spec [batch, frames, bins]``: clip ``i`` is its first ``lengths[i]`` frames."""
        return cls(tuple(spec[i, : int(n)] for i, n in enumerate(lengths)), **kwargs)


def pack_rows(sizes, budget: int) -> list[list[int]]:
    """Clip indices per row: clips taken in order, a new row started whenever the next clip's
    ``sizes[i]`` tokens would take the row past ``budget`` (ElasticAST's greedy packing, no
    sorting). A clip larger than ``budget`` is refused: the caller cuts or windows it first."""
    rows: list[list[int]] = []
    used = budget + 1
    for i, n in enumerate(sizes):
        if n > budget:
            raise PackingError(f"a clip of {n} tokens does not fit a row of {budget} tokens (row_tokens); "
                               "cut or window it to at most that many tokens first")
        if used + n > budget:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


def block_mask(ids: torch.Tensor) -> torch.Tensor:
    """``[rows, 1, length, length]`` bool from ``ids [rows, length]``, the clip each position of a
    packed row holds (a row's padding holds an id of its own, so padding attends to padding and
    no query's softmax is empty): query ``a`` may attend to key ``b`` of its row when both hold
    the same id, the block-diagonal mask."""
    return (ids[:, :, None] == ids[:, None, :])[:, None]
