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
  compression; null is ``features.target_length``), and under ``packed`` at most the frames
  that fit one row at every point (the fewest frames giving the most tokens a row holds, as
  deployment cuts: :func:`flexiast.models.spans.clip_span`), so a clip longer than a row is
  cut, never dropped;
* its **tokens** at the phase's stored point (``FlopCount.tokens``: an AST's prefix and patch
  tokens, HTS-AT's first-stage tokens, CNN14's input positions, frames x mel bins): what
  ``data.batch_tokens`` counts.

Training clips are cut to the longest at a random offset and validation clips keep their
leading frames (:class:`flexiast.data.AudioDataset`); training validates at its eval points,
so the validation set's lengths come from those points and the training set's from the points
the phase draws.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from ..data.lengths import ClipLengths
from ..models.points import OperatingPoint
from ..models.spans import clip_span, fewest_frames, point_tokens
from ..recipe_checks import ConfigError

__all__ = ["PhaseClips", "phase_clips", "check_batching", "phase_batch_tokens"]


class PhaseClips:
    """The clip lengths and token counts of one phase of a variable-length recipe.

    ``config`` is the model configuration of the phase (its geometry applied); ``train_points``
    and ``eval_points`` the operating points the phase trains and validates at; ``longest`` the
    frames ``features.max_length`` leaves after the phase's compression; ``row_tokens`` the row
    budget (None: bucketed, no rows); ``pool`` the pooling factor. Each point's span is
    deployment's (:func:`flexiast.models.spans.clip_span`: the fewest frames it takes, and under
    rows the fewest frames that give the most tokens a row holds); a set of points keeps what
    every one of them takes."""

    def __init__(self, config, train_points: list[OperatingPoint], eval_points: list[OperatingPoint], *,
                 longest: int, row_tokens: int | None, pool: int = 1, where: str = "the phase"):
        self.config, self.row_tokens, self.pool, self.where = config, row_tokens, pool, where
        stored = OperatingPoint(config.input_tdim)
        self._tokens = lru_cache(maxsize=None)(lambda frames: point_tokens(config, frames, stored))
        self.train = self._lengths(train_points, longest)
        self.eval = self._lengths(eval_points, longest)

    def tokens(self, frames: int) -> int | None:
        """Tokens of a clip of ``frames`` frames at the phase's stored point (what
        ``data.batch_tokens`` counts), or None where the model does not take so short a clip."""
        return self._tokens(int(frames))

    def _lengths(self, points: list[OperatingPoint], longest: int) -> ClipLengths:
        points = [replace(p, frames=max(longest, 1), packed=True) for p in points]
        try:
            shortest = max(fewest_frames(self.config, p) for p in points)
        except ValueError as e:
            raise ConfigError(f"features.max_length: {longest} frames (after {self.where}'s compression): {e}; raise "
                              "features.max_length") from None
        try:
            longest = min(clip_span(self.config, p, self.row_tokens)[1] for p in points)
        except ValueError as e:
            raise ConfigError(f"data.row_tokens: {self.where}: {e}") from None
        if longest < shortest:  # each point's shortest fits a row, but not the longest patch's at a smaller one
            worst = max(points, key=lambda p: point_tokens(self.config, shortest, p))
            raise ConfigError(f"data.row_tokens: {self.row_tokens} tokens cannot hold the shortest clip {self.where} "
                              f"takes ({shortest} frames, one column of its longest patch): "
                              f"{point_tokens(self.config, shortest, worst)} tokens with the prefix at {worst.label}; "
                              "raise data.row_tokens")
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
    return PhaseClips(config, cfg.phase_points(i, features), list(cfg.eval_points(i, features).values()),
                      longest=longest, row_tokens=row, pool=pool, where=f"phase {i}")


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
