"""Which operating point (patch size) a training step uses (FlexiAST, Sec. 2.3; FlexiViT's per-step draw).

The point of optimizer step ``s`` is drawn from a generator seeded by ``(seed, s)`` alone,
so every rank of a distributed run, and a run resumed from a checkpoint, draws the same
size for the same step without any communication or saved state (the official FlexiAST
code draws inside ``forward`` under DataParallel, so its replicas disagree).

Inside a packed batch each clip may draw its own (``phases[].patch.draw: clip``): clip ``i``
of step ``s`` from a generator seeded by ``(seed, s, i)``, ``i`` its index in the training
set, so the draw does not depend on which rank or micro-batch holds the clip.
"""

from __future__ import annotations

import numpy as np

from ..constants import PATCH_SAMPLERS

__all__ = ["PointSampler"]


class PointSampler:
    """Draw one of ``points`` (a phase's operating points, :meth:`flexiast.config.RunConfig.phase_points`;
    "fixed": always the first); a family whose calls take no patch size has one point."""

    def __init__(self, points: list, kind: str = "fixed", weights=None, seed: int = 0):
        if not points:
            raise ValueError("a point sampler needs at least one point")
        if kind not in PATCH_SAMPLERS:
            raise ValueError(f"patch sampler {kind!r} is not one of {', '.join(PATCH_SAMPLERS)}")
        self.points, self.kind, self.seed = list(points), kind, seed
        p = np.asarray(weights if kind == "weighted" else np.ones(len(points)), dtype=np.float64)
        if p.shape != (len(points),) or (p < 0).any() or not p.sum() > 0:
            raise ValueError(f"patch weights {weights} must be {len(points)} non-negative numbers with a positive sum")
        self.probs = p / p.sum()

    def __call__(self, step: int):
        if self.kind == "fixed" or len(self.points) == 1:
            return self.points[0]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x9A7C4, step]))
        return self.points[int(rng.choice(len(self.points), p=self.probs))]

    def per_clip(self, step: int, indices) -> list:
        """The points of the clips ``indices`` (training-set indices) of step ``step``, each
        from ``(seed, step, index)``."""
        if self.kind == "fixed" or len(self.points) == 1:
            return [self.points[0]] * len(indices)
        return [self.points[int(np.random.default_rng(np.random.SeedSequence([self.seed, 0xC11B, step, int(i)]))
                                .choice(len(self.points), p=self.probs))] for i in indices]
