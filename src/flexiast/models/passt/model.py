"""PaSST: the Patchout faSt Spectrogram Transformer (Koutini, Schlüter, Eghbal-zadeh, Widmer,
"Efficient training of audio transformers with patchout", Interspeech 2022).

An AST (:class:`flexiast.models.ast.AST`: DeiT's encoder over overlapping 16 x 16 patches, cls
and distillation tokens, a LayerNorm + Linear head on their mean) whose positions are
factorised (Sec. 2.1): a frequency table ``f [D, gf]`` and a time table ``t [D, gt]``, so the
token at row ``i`` and column ``j`` gets ``f_i + t_j``, and a table ``c [P, D]`` for the prefix
tokens. The time table is what lets PaSST take any input up to its trained length: a shorter
input uses its first columns (PaSST's inference, and ``pos_grid="leading"``, the default here).
Training drops tokens with patchout (:mod:`flexiast.models.patchout`, ``phases[].patchout``).

Everything an AST does with its one ``[gf, gt]`` table it does here per axis, with the same 1-D
weights (:func:`flexiast.resize.resize_axis`): another patch size (FlexiAST: the kernel
PI-resized, each table resized to that size's grid), another input length (cut, centre or
resize), a coarse phase. Since each 1-D resize keeps constants, resizing the two tables equals
resizing their sum as an AST resizes its grid, so a PaSST is the AST whose grid is that sum
(``pos_embed``), at every call. The parameter names are PaSST's (``new_pos_embed``,
``freq_new_pos_embed [1, D, gf, 1]``, ``time_new_pos_embed [1, D, 1, gt]``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...constants import POS_GRID_POLICIES
from ...resize import resize_axis, to_pair
from ..ast.model import AST
from ..layers import check_spectrogram
from ..packing import Clips
from .config import PaSSTConfig

__all__ = ["PaSST"]


def _table(freq: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """``[1, gf gt, D]``: ``f_i + t_j`` for the grid in row-major order, from ``freq [D, gf]`` and
    ``time [D, gt]``."""
    d = freq.shape[0]
    return (freq[:, :, None] + time[:, None, :]).reshape(d, -1).T[None]


class PaSST(AST):
    """PaSST's network: ``PaSST.preset("base", 527)`` is PaSST-S; ``model(spec, patch_size=...)``
    as an AST's (:meth:`AST.forward`)."""

    config_class = PaSSTConfig

    def _build_positions(self, cfg: PaSSTConfig) -> None:
        gf, gt = cfg.grid
        d = cfg.embed_dim
        self.new_pos_embed = nn.Parameter(torch.zeros(1, cfg.prefix_tokens, d))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, gf, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, gt))

    def _position_parameters(self) -> tuple:
        return (self.new_pos_embed, self.freq_new_pos_embed, self.time_new_pos_embed)

    @property
    def pos_embed(self) -> torch.Tensor:
        """The AST table this PaSST's positions give at its stored grid, ``[1, P + gf gt, D]``."""
        return torch.cat([self.new_pos_embed, _table(self.freq_new_pos_embed[0, :, :, 0],
                                                     self.time_new_pos_embed[0, :, 0, :])], dim=1)

    def pos_axes_for(self, patch_size, stride, grid: tuple[int, int],
                     pos_grid: str = "leading") -> tuple[torch.Tensor, torch.Tensor]:
        """``(freq [D, gf], time [D, gt])`` for a call's token ``grid``: each table resized
        (antialiased) to the grid this patch size gives on the trained input, then, for an input
        of another length, the time table cut to its first columns (``leading``) or its centre
        (``centre``), or both resized (``resize``, and any longer input): the axes of
        :meth:`AST.pos_embed_for`."""
        if pos_grid not in POS_GRID_POLICIES:
            raise ValueError(f"pos_grid={pos_grid!r} is not one of {', '.join(POS_GRID_POLICIES)}")
        cfg = self.config
        patch = to_pair(patch_size, "patch_size")
        ref = cfg.grid_at(tuple(max(n, q) for n, q in zip(cfg.input_size, patch)), patch, stride)
        freq = resize_axis(self.freq_new_pos_embed[0, :, :, 0], ref[0])
        time = resize_axis(self.time_new_pos_embed[0, :, 0, :], ref[1])
        if grid == ref:
            return freq, time
        if grid[0] == ref[0] and grid[1] < ref[1] and pos_grid != "resize":
            start = 0 if pos_grid == "leading" else ref[1] // 2 - grid[1] // 2
            return freq, time[:, start:start + grid[1]]
        return resize_axis(freq, grid[0], antialias=False), resize_axis(time, grid[1], antialias=False)

    def pos_embed_for(self, patch_size, stride, grid: tuple[int, int], pos_grid: str = "leading") -> torch.Tensor:
        """The positions of a call, ``[1, P + gf gt, D]``, from :meth:`pos_axes_for`."""
        freq, time = self.pos_axes_for(patch_size, stride, grid, pos_grid)
        return torch.cat([self.new_pos_embed, _table(freq, time)], dim=1)

    def _positions_for(self, patch, stride, grid, pos_grid) -> dict:
        freq, time = self.pos_axes_for(patch, stride, grid, pos_grid)
        return {"new_pos_embed": self.new_pos_embed, "freq_new_pos_embed": freq[None, :, :, None],
                "time_new_pos_embed": time[None, :, None, :]}

    @staticmethod
    def _move_positions(sd: dict, old: PaSSTConfig, new: PaSSTConfig) -> None:
        """Each table resized (antialiased) to ``new``'s grid, as an AST's grid is."""
        freq, time = sd["freq_new_pos_embed"][0, :, :, 0], sd["time_new_pos_embed"][0, :, 0, :]
        sd["freq_new_pos_embed"] = resize_axis(freq, new.grid[0])[None, :, :, None]
        sd["time_new_pos_embed"] = resize_axis(time, new.grid[1])[None, :, None, :]

    def forward(self, spec, *args, **kwargs) -> torch.Tensor:
        """:meth:`AST.forward`, for a spectrogram batch (PaSST does not pack clips)."""
        if isinstance(spec, Clips):
            check_spectrogram(spec, self.config.input_fdim, "PaSST")
        return super().forward(spec, *args, **kwargs)

    def embed(self, spec, **kwargs):
        """:meth:`AST.embed`, for a spectrogram batch."""
        if isinstance(spec, Clips):
            check_spectrogram(spec, self.config.input_fdim, "PaSST")
        return super().embed(spec, **kwargs)
