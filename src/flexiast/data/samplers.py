"""Samplers that shard across ranks, reshuffle per epoch from a seed, and can resume.

Both give rank ``r`` of ``W`` the indices ``order[r::W]`` of one epoch's order, padded
(by repeating the first indices) to a multiple of ``W`` so every rank takes the same
number of steps, as ``torch.utils.data.DistributedSampler`` does. The order depends only
on ``(seed, epoch)``. ``start`` skips the first indices of this rank's share, to resume
mid-epoch.

:class:`BalancedSampler` draws with replacement in proportion to per-clip weights: for
AudioSet, AST's ``w_i = sum over the clip's labels of 1000 / (count(label) + 0.01)``
(:func:`ast_balanced_weights`); for a mixture of datasets, the manifest's own weights
(:func:`manifest_weights`).
"""

from __future__ import annotations

import math

import torch

from .readers import DataError, Manifest

__all__ = ["ShardedSampler", "BalancedSampler", "ast_balanced_weights", "manifest_weights"]


class _Sharded(torch.utils.data.Sampler):
    def __init__(self, size: int, seed: int, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _order(self) -> list[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.world_size) - self.start)

    def __iter__(self):
        order = self._order()
        total = math.ceil(len(order) / self.world_size) * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]  # tile, as DistributedSampler
        return iter(order[self.rank::self.world_size][self.start:])


class ShardedSampler(_Sharded):
    def __init__(self, num_items: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(num_items, seed, rank, world_size)
        self.shuffle = shuffle

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        return torch.randperm(self.size, generator=self._generator()).tolist()


class BalancedSampler(_Sharded):
    def __init__(self, weights, *, num_samples: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        if self.weights.dim() != 1 or not (self.weights >= 0).all() or not self.weights.sum() > 0:
            raise ValueError("balanced sampling needs non-negative weights with a positive sum")
        super().__init__(num_samples or len(self.weights), seed, rank, world_size)

    def _order(self) -> list[int]:
        return torch.multinomial(self.weights, self.size, replacement=True, generator=self._generator()).tolist()


def ast_balanced_weights(label_lists, num_classes: int) -> torch.Tensor:
    """AST's sample weights: ``sum_l 1000 / (count_l + 0.01)`` over each clip's labels."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for labels in label_lists:
        for label in labels:
            counts[label] += 1
    per_label = 1000.0 / (counts + 0.01)
    return torch.tensor([float(per_label[list(labels)].sum()) for labels in label_lists], dtype=torch.float64)


def manifest_weights(manifest: Manifest, balanced: bool = False) -> torch.Tensor | None:
    """The per-clip weights training draws ``manifest`` by (:class:`BalancedSampler`), or None
    for a plain shuffle: the manifest's own :attr:`~flexiast.data.readers.Manifest.weights`
    where it has them (a ``mixture``: source ``s`` drawn with probability ``w_s / sum_t w_t``),
    else with ``balanced`` (``data.balanced``) AST's label-balanced weights. Both at once, or
    ``balanced`` on unlabeled clips, are refused: there is no label to balance."""
    if balanced and (manifest.weights is not None or not manifest.labelled):
        why = "has its own sampling weights" if manifest.weights is not None else "is unlabeled"
        raise DataError(f"data.balanced: {manifest.name or 'the training split'} {why}; "
                        "label balancing needs labelled data without weights")
    if manifest.weights is not None:
        return torch.tensor(manifest.weights, dtype=torch.float64)
    if balanced:
        return ast_balanced_weights([item.labels for item in manifest.items], len(manifest.classes))
    return None
