"""Patchout (PaSST, Koutini et al. 2022) as a training option: which tokens a step keeps, what
the model computes on them, what they cost, and what a recipe may ask for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flexiast import AST, ASTConfig, flops
from flexiast.config import ConfigError, build_config
from flexiast.engine import train
from flexiast.models.patchout import Patchout

from helpers import killed_and_resumed_match, measured_flops, one_and_two_ranks, read_csv, tiny_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "fsdd"


def _expected_kept(key, grid, time, freq, tokens):
    """The tokens of the rule the docs state, written out: ``(seed, step, clip)`` (then the
    patchout stream's constant) seeds one numpy generator, which permutes the time columns, then
    the frequency rows, keeping the first of each, sorted; then permutes the ``kf kt`` tokens
    left in grid order and keeps the first ``K``, sorted. Counts as given, fractions floored."""
    gf, gt = grid
    drop = lambda n, a: math.floor(a * n) if isinstance(a, float) else a  # noqa: E731
    kt, kf = gt - drop(gt, time), gf - drop(gf, freq)
    k = kf * kt - drop(kf * kt, tokens)
    rng = np.random.default_rng(np.random.SeedSequence([*key, 0x9A7C0]))
    cols = sorted(rng.permutation(gt)[:kt].tolist())
    rows = sorted(rng.permutation(gf)[:kf].tolist())
    left = [f * gt + t for f in rows for t in cols]
    return [left[j] for j in sorted(rng.permutation(kf * kt)[:k].tolist())], rows, cols


def _by_hand(model: AST, spec: torch.Tensor, kept: list[list[int]], **call) -> torch.Tensor:
    """The logits of ``model`` run on the tokens ``kept`` of each clip, with every layer applied
    here: the input tokens with their positions (``embed(layer=0)``), the kept ones gathered,
    every block on all of them, the final norm and the head on the mean of the prefix tokens."""
    e = model.embed(spec, layer=0, **call)
    x = torch.cat([e.prefix, torch.stack([e.tokens[b, idx] for b, idx in enumerate(kept)])], dim=1)
    for block in model.blocks:
        x = block(x)
    x = model.norm(x)
    return model.head(x[:, : model.config.prefix_tokens].mean(dim=1))


@pytest.mark.parametrize("amounts, patch", [
    (dict(time=1, freq=2), None),                    # counts, structured
    (dict(time=0.5, freq=0.25, tokens=3), None),     # fractions, then unstructured
    (dict(tokens=0.5), 8),                           # unstructured alone, at another patch size
    (dict(time=2), (16, 24)),                        # a rectangular patch
])
def test_a_step_keeps_the_tokens_its_seed_draws_and_the_model_runs_on_those(amounts, patch):
    torch.manual_seed(0)
    model = AST(7, input_fdim=64, input_tdim=96, embed_dim=32, depth=2, num_heads=2).eval()
    spec = torch.randn(3, 96, 64)
    call = {} if patch is None else {"patch_size": patch}
    keys = [(5, 11, i) for i in (4, 17, 30)]
    draw = Patchout(**amounts).draw(keys)
    grid = model.embed(spec[:1], layer=0, **call).grid
    expected = [_expected_kept(k, grid, amounts.get("time", 0), amounts.get("freq", 0), amounts.get("tokens", 0))
                for k in keys]
    kept = [e[0] for e in expected]
    assert draw.kept_positions(grid).tolist() == kept
    for positions, rows, cols in expected:  # structured: whole rows and columns gone
        assert {(p // grid[1], p % grid[1]) for p in positions} <= {(f, t) for f in rows for t in cols}
    assert len({tuple(k) for k in kept}) == 3  # three clips, three draws
    with torch.no_grad():
        got = model(spec, patchout=draw, **call)
        torch.testing.assert_close(got, _by_hand(model, spec, kept, **call), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got, model(spec, **call))  # evaluation (no draw) sees every token
        other = Patchout(**amounts).draw([(5, 12, i) for i in (4, 17, 30)])  # the next step draws anew
        assert other.kept_positions(grid).tolist() != kept


def test_a_clip_keeps_the_same_tokens_in_any_batch_on_any_rank():
    """The draw is the clip's, from (seed, step, clip): alone (as one rank of two holds it) or
    beside others (one process), clip 9 of step 3 keeps the same tokens and gets the same logits."""
    torch.manual_seed(1)
    model = AST(4, input_fdim=64, input_tdim=64, embed_dim=32, depth=2, num_heads=2).eval()
    spec = torch.randn(2, 64, 64)
    patchout = Patchout(time=0.25, freq=1, tokens=0.2)
    both, alone = patchout.draw([(0, 3, 5), (0, 3, 9)]), patchout.draw([(0, 3, 9)])
    assert both.kept_positions((4, 4))[1].tolist() == alone.kept_positions((4, 4))[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(spec, patchout=both)[1:], model(spec[1:], patchout=alone))


@pytest.mark.parametrize("amounts, call, pooling", [
    (dict(time=40, freq=4), {}, "prefix"),              # PaSST's AudioSet setting on a 12 x 99 grid
    (dict(time=0.5, freq=0.25, tokens=0.3), {"patch_size": 8}, "prefix"),
    (dict(tokens=100), {"patch_size": (16, 24)}, "mean"),
])
def test_training_flops_with_patchout_equal_flop_counter_mode(amounts, call, pooling):
    """Forward and backward as torch counts them, against the analytic count of the tokens kept
    (the patch embedding still covers every patch: patchout comes after it)."""
    torch.manual_seed(0)
    model = AST(11, input_fdim=128, input_tdim=998, embed_dim=48, depth=2, num_heads=2, stride=10,
                pooling=pooling)
    spec = torch.randn(2, 998, 128)
    draw = Patchout(**amounts).draw([(0, 0, 0), (0, 0, 1)])
    measured = measured_flops(model, spec, True, patchout=draw, **call)
    predicted = flops(model, spec.shape, patchout=draw, **call)
    assert predicted.training == measured
    full = flops(model, spec.shape, **call)
    assert predicted.patch_embed == full.patch_embed and predicted.tokens < full.tokens
    if not call:
        assert full.grid == (12, 99) and predicted.tokens == 8 * 59 + 2  # PaSST's 472 patches + 2 tokens


def test_a_recipe_is_refused_a_patchout_that_cannot_run(fsdd_small, tmp_path):
    """Before any data is read: a family without a token grid, a patchout that leaves no column
    of a phase's grid (64 bins x 48 frames at 16: 4 x 3; a coarse Fshift 2 phase's 24 frames: 4 x 1),
    a fraction of 1, and packed batches; each error names the setting and the phase."""
    def refused(model=None, **sections) -> str:
        raw = tiny_recipe(fsdd_small, tmp_path / "r", **sections)
        if model is not None:
            raw["model"] = model
        with pytest.raises(ConfigError) as e:
            build_config(raw)
        return str(e.value)

    msg = refused(phases=[{"epochs": 1}, {"epochs": 1, "patchout": {"time": 3}}])
    assert "phases[1].patchout" in msg and "time=3" in msg and "3 time columns" in msg
    msg = refused(phases=[{"epochs": 1, "compression": "fshift:2", "patchout": {"time": 1}}, {"epochs": 1}])
    assert "phases[0].patchout" in msg and "24 frames" in msg and "fshift:2" in msg
    assert "fraction must lie in [0, 1)" in refused(phases=[{"epochs": 1, "patchout": {"freq": 1.0}}])
    assert "a count must not be negative" in refused(phases=[{"epochs": 1, "patchout": {"tokens": -1}}])
    msg = refused(phases=[{"epochs": 1, "patchout": {"tokens": 0.5}}], data={"batching": "packed",
                                                                             "batch_tokens": 200})
    assert "phases[0].patchout" in msg and "packed" in msg
    for recipe in ("digits_cnn14", "digits_htsat"):  # no grid of patch tokens
        raw = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
        raw["data"]["root"], raw["phases"][0]["patchout"] = str(fsdd_small), {"time": 0.5}
        with pytest.raises(ConfigError) as e:
            build_config(raw)
        assert "phases[0].patchout" in str(e.value) and raw["model"]["arch"] in str(e.value)
    # a fraction follows each phase's grid: half of a coarse phase's 1 column drops none
    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "ok", phases=[
        {"epochs": 1, "compression": "fshift:2", "patchout": {"time": 0.5, "freq": 0.5}},
        {"epochs": 1, "patchout": {"time": 0.5, "freq": 0.5}}]))
    assert cfg.phases[1].patchout.patchout() == Patchout(time=0.5, freq=0.5)


def _patchout_recipe(root, out, **train_keys) -> dict:
    return tiny_recipe(root, out, train={"threads": 1, **train_keys},
                       phases=[{"epochs": 1, "compression": "fshift:2", "patchout": {"freq": 0.25}},
                               {"epochs": 2, "patchout": {"time": 1, "freq": 0.25, "tokens": 1}}])


def test_a_patchout_run_counts_the_tokens_it_kept_and_validates_on_every_token(fsdd_small, tmp_path):
    raw = _patchout_recipe(fsdd_small, tmp_path / "run")
    raw["data"]["test"] = None
    summary = train(build_config(raw))
    mc = ASTConfig.from_dict(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model_config"])
    coarse, fine = summary["phases"]
    # 64 bins x 24 frames at 16: a 4 x 1 grid, 3 rows kept; 64 x 48: 4 x 3, 3 x 2 kept, then 5 tokens
    assert coarse["train_flops"] == coarse["steps"] * flops(
        mc.replace(input_tdim=24), (8, 24, 64), patchout=Patchout(freq=0.25)).training
    fine_step = flops(mc, (8, 48, 64), patchout=Patchout(time=1, freq=0.25, tokens=1))
    assert fine_step.tokens == 5 + 2
    assert fine["train_flops"] == fine["steps"] * fine_step.training
    assert summary["final_val"]["_clips"] == 20


def test_patchout_is_off_at_validation(fsdd_small, tmp_path, monkeypatch):
    """Every training call gets its batch's kept positions (one time column of the 4 x 3 grid
    dropped: 8 tokens per clip); no validation or test call gets any."""
    calls = []
    forward = AST.forward

    def spy(self, spec, *args, patchout=None, **kw):
        calls.append((self.training, patchout is not None and tuple(patchout.shape) == (len(spec), 8)))
        return forward(self, spec, *args, patchout=patchout, **kw)

    monkeypatch.setattr(AST, "forward", spy)
    raw = tiny_recipe(fsdd_small, tmp_path / "run", train={"threads": 1, "test_every_epoch": True},
                      phases=[{"epochs": 1, "patchout": {"time": 1}}])
    train(build_config(raw))
    assert {c for c in calls if c[0]} == {(True, True)}
    assert {c for c in calls if not c[0]} == {(False, False)}


def test_a_patchout_run_killed_mid_phase_resumes_to_the_same_weights(fsdd_small, tmp_path, monkeypatch):
    def recipe(out):
        raw = _patchout_recipe(fsdd_small, out, checkpoint_every=1)
        raw["data"]["test"] = None
        return raw

    killed_and_resumed_match(recipe, tmp_path, monkeypatch, 15)  # 10 coarse steps, then inside the fine phase


@pytest.mark.slow
def test_two_ranks_drop_the_tokens_one_process_drops(fsdd_small, tmp_path):
    """Each rank draws its clips' tokens from (seed, step, clip): the first step's loss over the
    same clips and tokens is the one process's, and the runs stay together after (another draw
    per rank would give other losses at once)."""
    raw = _patchout_recipe(fsdd_small, tmp_path / "unused")
    one_and_two_ranks(raw, tmp_path)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    single, ranked = (read_csv(tmp_path / run / "steps.csv") for run in ("one", "two"))
    assert len(single) == len(ranked)
    for i, (x, y) in enumerate(zip(single, ranked)):
        assert float(y["loss"]) == pytest.approx(float(x["loss"]), rel=1e-5 if i == 0 else 1e-3), i


def test_a_compiled_model_takes_every_steps_positions_in_one_graph():
    """A training step passes the kept positions as a tensor (``step_positions``): a model
    compiled with ``dynamic=False`` (``train.compile``) traces once and gives the eager logits at
    every step's draw (a Python draw object in the call would be guarded on, step by step)."""
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    from flexiast.models.patchout import step_positions

    torch.manual_seed(0)
    model = AST(4, input_fdim=64, input_tdim=64, embed_dim=32, depth=2, num_heads=2).eval()
    spec = torch.randn(2, 64, 64)
    dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager", dynamic=False)
    with torch.no_grad():
        for step in range(4):
            kept = step_positions(model.config, spec.shape, None, Patchout(time=1, freq=0.25).draw(
                [(0, step, 3), (0, step, 8)]))
            torch.testing.assert_close(compiled(spec, patchout=kept), model(spec, patchout=kept))
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    dynamo.reset()


def test_bucketed_batches_take_fractions_not_counts(fsdd_small, tmp_path):
    """A length bucket may be one patch long: a count could leave nothing of it, a fraction cannot."""
    data = {"batching": "bucketed", "batch_tokens": 200}
    with pytest.raises(ConfigError, match=r"phases\[0\]\.patchout\.time: a count of 1 .* bucketed"):
        build_config(tiny_recipe(fsdd_small, tmp_path / "r", data=data, phases=[{"epochs": 1, "patchout": {"time": 1}}]))
    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "r", data=data,
                                   phases=[{"epochs": 1, "patchout": {"time": 0.5, "tokens": 0.25}}]))
    assert cfg.phases[0].patchout.patchout() == Patchout(time=0.5, tokens=0.25)
