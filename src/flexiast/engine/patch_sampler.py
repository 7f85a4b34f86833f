"""Which patch size a training step uses (FlexiAST, Sec. 2.3; FlexiViT's per-step draw).

The size of optimizer step ``s`` is drawn from a generator seeded by ``(seed, s)`` alone,
so every rank of a distributed run, and a run resumed from a checkpoint, draws the same
size for the same step without any communication or saved state (the official FlexiAST
code draws inside ``forward`` under DataParallel, so its replicas disagree).
"""

from __future__ import annotations

import numpy as np

from ..constants import PATCH_SAMPLERS

__all__ = ["PatchSampler"]


class PatchSampler:
    """Draw one of ``pairs`` (a phase's operating points, :meth:`flexiast.config.RunConfig.phase_points`;
    "fixed": always the first); a family whose calls take no patch size has one point."""

    def __init__(self, pairs: list[tuple[int, int]], kind: str = "fixed", weights=None, seed: int = 0):
        if not pairs:
            raise ValueError("a patch sampler needs at least one size")
        if kind not in PATCH_SAMPLERS:
            raise ValueError(f"patch sampler {kind!r} is not one of {', '.join(PATCH_SAMPLERS)}")
        self.pairs, self.kind, self.seed = list(pairs), kind, seed
        p = np.asarray(weights if kind == "weighted" else np.ones(len(pairs)), dtype=np.float64)
        if p.shape != (len(pairs),) or (p < 0).any() or not p.sum() > 0:
            raise ValueError(f"patch weights {weights} must be {len(pairs)} non-negative numbers with a positive sum")
        self.probs = p / p.sum()

    def __call__(self, step: int):
        if self.kind == "fixed" or len(self.pairs) == 1:
            return self.pairs[0]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x9A7C4, step]))
        return self.pairs[int(rng.choice(len(self.pairs), p=self.probs))]
