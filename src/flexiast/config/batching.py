"""Variable-length batches (``data.batching: packed | bucketed``): each phase's clip lengths and
token counts, and the recipe checks that need them.

ElasticAST (Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv 2407.08691) trains on clips
of their native length, packed into rows of at most ``L'`` tokens (``data.row_tokens``); a
family that cannot pack trains on length buckets padded to their longest clip. Either way a
phase needs three numbers per clip, all in the model's input frames of that phase (after its
compression: ``fshift:C`` shortens the fbank, pooling divides its frames):

* the **shortest** clip its operating points take: the fewest frames at which the family's
  FLOP counter (:func:`flexiast.models.flops`) accepts a clip at every point (one patch
  column at the largest patch for an AST, 32 frames for CNN14); a shorter clip is padded to
  it, never more;
* the **longest**: ``features.max_length // C`` (``max_length`` counts frames before
  compression; null is ``features.target_length``), and under ``packed`` the most frames
  whose tokens fit one row at every point, so a clip longer than a row is cut, never dropped;
* its **tokens** at the phase's stored point (``FlopCount.tokens``: an AST's prefix and patch
  tokens, HTS-AT's first-stage tokens, CNN14's input positions, frames x mel bins): what
  ``data.batch_tokens`` counts.

Training clips are cut to the longest at a random offset and validation clips keep their
leading frames (:class:`flexiast.data.AudioDataset`); training validates at its eval points,
so the validation set's lengths come from those points and the training set's from the points
the phase draws.
"""

from __future__ import annotations

from functools import lru_cache

from ..data.lengths import ClipLengths
from ..models import flops
from ..models.points import OperatingPoint
from ..recipe_checks import ConfigError

__all__ = ["PhaseClips", "phase_clips", "check_batching", "phase_batch_tokens"]


class PhaseClips:
    """The clip lengths and token counts of one phase of a variable-length recipe.

    ``config`` is the model configuration of the phase (its geometry applied), ``mel_bins``
    the features' bins; ``train_points`` and ``eval_points`` the operating points the phase
    trains and validates at; ``longest`` the frames ``features.max_length`` leaves after the
    phase's compression; ``row_tokens`` the row budget (None: bucketed, no rows); ``pool`` the
    pooling factor."""

    def __init__(self, config, mel_bins: int, train_points: list[OperatingPoint], eval_points: list[OperatingPoint],
                 *, longest: int, row_tokens: int | None, pool: int = 1, where: str = "the phase"):
        self.config, self.mel_bins, self.row_tokens, self.pool = config, mel_bins, row_tokens, pool
        self.where = where
        self._tokens = lru_cache(maxsize=None)(self._count)
        self.train = self._lengths(train_points, longest)
        self.eval = self._lengths(eval_points, longest)

    def _count(self, frames: int, call: tuple) -> int | None:
        try:
            return flops(self.config, (frames, self.mel_bins), **dict(call)).tokens
        except ValueError:  # too short for the model at this call
            return None

    def tokens(self, frames: int, point: OperatingPoint | None = None) -> int | None:
        """Tokens of a clip of ``frames`` frames at ``point`` (None: the stored point), or None
        where the model does not take so short a clip."""
        call = {} if point is None else point.call()
        return self._tokens(int(frames), tuple(sorted(call.items())))

    def shortest(self, points: list[OperatingPoint], upto: int) -> int | None:
        """The fewest frames (at most ``upto``) that every one of ``points`` takes, or None."""
        def takes(n: int) -> bool:
            return all(self.tokens(n, p) is not None for p in points)
        if upto < 1 or not takes(upto):
            return None
        lo, hi = 1, upto
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if takes(mid) else (mid + 1, hi)
        return lo

    def fit(self, points: list[OperatingPoint], lo: int, hi: int) -> int:
        """The most frames in ``[lo, hi]`` whose tokens fit one row at every one of ``points``
        (``lo - 1`` where even ``lo`` does not)."""
        def fits(n: int) -> bool:
            return all(self.tokens(n, p) <= self.row_tokens for p in points)
        if not fits(lo):
            return lo - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    def _lengths(self, points: list[OperatingPoint], longest: int) -> ClipLengths:
        shortest = self.shortest(points, max(longest, 1))
        if shortest is None:
            where = ", ".join(p.label for p in points)
            raise ConfigError(f"features.max_length: {longest} frames (after {self.where}'s compression) are fewer "
                              f"than the model takes at {where}; raise features.max_length")
        if self.row_tokens is not None:
            fitting = self.fit(points, shortest, longest)
            if fitting < shortest:
                worst = max(points, key=lambda p: self.tokens(shortest, p))
                raise ConfigError(f"data.row_tokens: {self.row_tokens} tokens cannot hold the shortest clip "
                                  f"{self.where} takes ({shortest} frames, one column of its longest patch): "
                                  f"{self.tokens(shortest, worst)} tokens with the prefix at {worst.label}; raise "
                                  "data.row_tokens")
            longest = fitting
        return ClipLengths(shortest, longest, self.pool)


def _placeholder_config(cfg, i: int, features):
    """Phase ``i``'s model configuration as the recipe gives it (a placeholder head)."""
    family = cfg.family()
    config = cfg.model_config(num_classes=1 if family.classifier else 0, features=features)
    return config.replace(**cfg.phase_geometry(i, features))


def phase_clips(cfg, i: int, features, config=None) -> PhaseClips:
    """Phase ``i``'s :class:`PhaseClips` for recipe ``cfg`` (its model ``config``: the phase's,
    or None for the one the recipe describes)."""
    comp = cfg.phase_compression(i)
    config = config or _placeholder_config(cfg, i, features)
    longest = features.frames(comp) if cfg.features.max_length is None else cfg.features.max_length // comp.input_factor
    pool = comp.factor if comp.method in ("avgpool", "maxpool") else 1
    row = cfg.data.row_tokens if cfg.data.batching == "packed" else None
    return PhaseClips(config, features.num_mel_bins, cfg.phase_points(i, features),
                      list(cfg.eval_points(i, features).values()), longest=longest, row_tokens=row, pool=pool,
                      where=f"phase {i}")


def phase_batch_tokens(cfg, clips: PhaseClips, features, i: int) -> int:
    """Tokens per optimizer step of phase ``i``: ``data.batch_tokens``, or (null) the tokens of
    ``data.batch_size`` clips of the phase's full fixed length at its stored point."""
    if cfg.data.batch_tokens is not None:
        return cfg.data.batch_tokens
    return cfg.data.batch_size * clips.tokens(features.frames(cfg.phase_compression(i)))


def check_batching(cfg, ctx) -> None:
    """Refuse, naming the setting, what variable-length batches cannot run: a family that
    cannot pack asked to, pretraining, settings of another batching, ``torch.compile``, a row
    shorter than one clip's fewest tokens, a micro-batch that cannot hold the longest clip."""
    d, family = cfg.data, ctx.family
    if d.batching == "fixed":
        for key, value, default in (("data.row_tokens", d.row_tokens, type(d).row_tokens),
                                    ("data.batch_tokens", d.batch_tokens, None),
                                    ("features.max_length", cfg.features.max_length, None)):
            if value != default:
                raise ConfigError(f"{key}: applies to variable-length batches (data.batching: packed or bucketed); "
                                  "data.batching is fixed")
        return
    if cfg.pretraining:
        raise ConfigError(f"data.batching: {d.batching}: {family.arch} pretraining masks patches of a fixed grid and "
                          "trains on fixed batches (data.batching: fixed)")
    if d.batching == "packed" and not family.packs:
        raise ConfigError(f"data.batching: packed: a {family.arch} model cannot take packed clips (its family does "
                          "not pack); use data.batching: bucketed (clips of similar length, padded to the longest)")
    if d.batching != "packed" and d.row_tokens != type(d).row_tokens:
        raise ConfigError(f"data.row_tokens: only packed batches have rows; data.batching is {d.batching}")
    if cfg.train.compile:
        raise ConfigError(f"train.compile: compiles a graph per input shape (dynamic=False), and {d.batching} batches "
                          "change shape every step; leave it off")
    accum = cfg.train.accum_steps
    if d.batch_tokens is not None and d.batch_tokens % accum:
        raise ConfigError(f"data.batch_tokens: {d.batch_tokens} is not divisible by train.accum_steps={accum}")
    for i in range(len(cfg.phases)):
        clips = phase_clips(cfg, i, ctx.features)
        budget = phase_batch_tokens(cfg, clips, ctx.features, i) // accum
        most = clips.tokens(clips.train.longest)
        if most > budget:
            key = "data.batch_tokens" + ("" if d.batch_tokens is not None else
                                         " (null: data.batch_size x a full clip's tokens)")
            raise ConfigError(f"{key}: a micro-batch of {budget} tokens (/ train.accum_steps={accum}) cannot hold "
                              f"phase {i}'s longest clip ({clips.train.longest} frames, {most} tokens at its stored "
                              "point); raise it or lower features.max_length")
