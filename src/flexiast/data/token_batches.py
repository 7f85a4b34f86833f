"""Micro-batches filled by tokens rather than clips, for clips of their own lengths.

ElasticAST (Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv 2407.08691) packs clips of
their native length into rows, greedily in arrival order. :class:`TokenBatchSampler` makes the
micro-batches those rows come from, and the length buckets of a family that cannot pack:

* **Order.** Epoch ``e``'s clips come in the order :class:`~flexiast.data.ShardedSampler`
  would shuffle them, a permutation from ``(seed, e)``; with ``weights`` (AST's balanced
  sampling, a mixture's weights) they are drawn with replacement in proportion to the weights
  from the same generator, as :class:`~flexiast.data.BalancedSampler` draws them, ``n`` at a
  time for as long as the epoch needs.
* **Packed** (``bucketed=False``): a micro-batch takes clips in that order while their tokens
  (each clip's at the phase's stored point) stay within ``budget``; the next clip starts the
  next micro-batch. No sorting, as ElasticAST packs its rows.
* **Bucketed**: the order is cut into spans of about ``span x budget`` tokens; each span is
  sorted by length (ties in order) and filled greedily so that its micro-batch's *padded*
  tokens, clips x the longest clip's tokens, stay within ``budget``; the span's micro-batches
  then run in an order drawn from the same generator. Clips of similar length share a batch,
  padded only to the longest of it.
* **A fixed number of steps.** Every epoch has ``S = floor(T / (budget x W x A))`` optimizer
  steps, ``T`` the tokens of all ``n`` clips, ``W`` ranks and ``A`` accumulation steps, so the
  learning-rate schedule is known in advance. A micro-batch holds at most ``budget`` real
  tokens, so one pass of the order fills at least ``T / budget >= S W A`` of them: the epoch
  takes the first ``S W A`` and leaves the clips after them out for that epoch (the packing's
  and the buckets' waste, a few per cent; a new order each epoch), as ``drop_last`` leaves out
  a last partial batch.
* **Ranks and resumption.** Micro-batch ``k`` of the epoch goes to rank ``k mod W``, so every
  rank takes ``S A`` of them and optimizer step ``s`` is micro-batches ``s A .. s A + A - 1``
  of each rank's share. ``set_epoch(e, start)`` skips this rank's first ``start``
  micro-batches: a run resumed mid-epoch continues with the micro-batches it would have taken.
"""

from __future__ import annotations

import torch

__all__ = ["TokenBatchSampler", "BUCKET_SPAN"]

#: How many micro-batches' worth of tokens of the epoch's order one bucket span sorts.
BUCKET_SPAN = 16


class TokenBatchSampler(torch.utils.data.Sampler):
    """Lists of clip indices, each at most ``budget`` tokens (padded tokens when ``bucketed``),
    this rank's share of epoch ``epoch`` from micro-batch ``start`` on (module docstring)."""

    def __init__(self, tokens, budget: int, *, accum: int = 1, weights=None, bucketed: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, span: int = BUCKET_SPAN):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.tokens = [int(t) for t in tokens]
        if not self.tokens or min(self.tokens) < 1:
            raise ValueError("a token budget sampler needs clips of at least one token each")
        if max(self.tokens) > budget:
            raise ValueError(f"a clip of {max(self.tokens)} tokens does not fit a micro-batch of {budget} tokens")
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (self.weights.shape != (len(self.tokens),) or not (self.weights >= 0).all()
                                         or not self.weights.sum() > 0):
            raise ValueError("balanced sampling needs one non-negative weight per clip, with a positive sum")
        self.budget, self.accum, self.bucketed, self.span = int(budget), int(accum), bucketed, int(span)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        """``floor(T / (budget x W x A))``: optimizer steps per epoch, the same every epoch."""
        return sum(self.tokens) // (self.budget * self.world_size * self.accum)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch ``epoch``'s order, from this rank's micro-batch ``start`` on."""
        self.epoch, self.start = epoch, start

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _order(self, g: torch.Generator):
        """The epoch's clips: one permutation, or weighted draws ``n`` at a time without end."""
        n = len(self.tokens)
        if self.weights is None:
            yield from torch.randperm(n, generator=g).tolist()
            return
        while True:
            yield from torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()

    def _greedy(self, clips, need: int, padded: bool) -> list[list[int]]:
        """``clips`` in order, a new micro-batch whenever the next would pass the budget."""
        out, current, used, longest = [], [], 0, 0
        for i in clips:
            t = self.tokens[i]
            cost = (len(current) + 1) * max(longest, t) if padded else used + t
            if current and cost > self.budget:
                out.append(current)
                if len(out) == need:
                    return out
                current, used, longest = [], 0, 0
            current.append(i)
            used, longest = used + t, max(longest, t)
        if current:
            out.append(current)
        return out

    def _buckets(self, g: torch.Generator, need: int) -> list[list[int]]:
        out, span, used = [], [], 0
        order = self._order(g)
        while len(out) < need:
            i = next(order, None)
            if i is not None:
                span.append(i)
                used += self.tokens[i]
            if span and (i is None or used >= self.span * self.budget):
                batches = self._greedy(sorted(span, key=lambda k: self.tokens[k]), len(span) + 1, padded=True)
                out += [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
                span, used = [], 0
            if i is None:
                break
        return out

    def batches(self) -> list[list[int]]:
        """Every rank's micro-batches of the epoch, ``S W A`` of them, in order."""
        need = self.steps_per_epoch * self.world_size * self.accum
        if need == 0:
            return []
        g = self._generator()
        out = self._buckets(g, need) if self.bucketed else self._greedy(self._order(g), need, padded=False)
        if len(out) < need:  # impossible: each micro-batch holds at most budget real tokens
            raise RuntimeError(f"{len(out)} micro-batches for {need} steps' worth")
        return out[:need]

    def __iter__(self):
        return iter(self.batches()[self.rank::self.world_size][self.start:])

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch * self.accum - self.start)
