"""Learning-rate schedules and the per-step patch sampler, against hand-computed values."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from flexiast.config import ScheduleConfig
from flexiast.engine.optim import lr_factor, milestones
from flexiast.engine.point_sampler import PointSampler


def test_ast_esc50_schedule_is_multisteplr_stepped_after_each_epoch():
    s = ScheduleConfig(name="multistep", decay_from=5, gamma=0.85)
    assert milestones(s, 25) == list(range(5, 26))
    # torch's own MultiStepLR, stepped at the end of each epoch as the AST code does.
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(5, 1000)), gamma=0.85)
    for epoch in range(12):
        ours = lr_factor(s, 1.0, step=0, epoch=epoch, total_steps=0, epochs=25)
        assert ours == pytest.approx(opt.param_groups[0]["lr"]), epoch
        opt.step()
        ref.step()
    # By hand: epochs 1-5 (indices 0-4) undecayed, the 6th at 0.85, the 8th at 0.85^3.
    assert lr_factor(s, 1e-4, step=0, epoch=4, total_steps=0, epochs=25) == 1.0
    assert lr_factor(s, 1e-4, step=0, epoch=5, total_steps=0, epochs=25) == pytest.approx(0.85)
    assert lr_factor(s, 1e-4, step=0, epoch=7, total_steps=0, epochs=25) == pytest.approx(0.85 ** 3)


def test_warmup_is_linear_over_the_first_steps():
    s = ScheduleConfig(warmup_steps=1000)
    assert lr_factor(s, 1e-5, step=0, epoch=0, total_steps=5000, epochs=5) == pytest.approx(1 / 1000)
    assert lr_factor(s, 1e-5, step=499, epoch=0, total_steps=5000, epochs=5) == pytest.approx(0.5)
    assert lr_factor(s, 1e-5, step=4000, epoch=3, total_steps=5000, epochs=5) == 1.0


def test_cosine_reaches_min_lr():
    s = ScheduleConfig(name="cosine", warmup_steps=10, min_lr=1e-5)
    f = lambda step: lr_factor(s, 1e-4, step=step, epoch=0, total_steps=110, epochs=1)  # noqa: E731
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1)
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_patch_draw_depends_only_on_seed_and_step():
    pairs = [(p, p) for p in (8, 10, 12, 16, 20, 24, 30, 32, 40, 48)]
    a, b = PointSampler(pairs, "uniform", seed=3), PointSampler(pairs, "uniform", seed=3)
    steps = [5, 0, 17, 5, 1000, 0]
    assert [a(s) for s in steps] == [b(s) for s in reversed(steps)][::-1]
    draws = [a(s) for s in range(5000)]
    assert draws != [PointSampler(pairs, "uniform", seed=4)(s) for s in range(5000)]
    counts = Counter(draws)
    assert set(counts) == set(pairs)
    assert all(abs(c / 5000 - 0.1) < 0.02 for c in counts.values())


def test_weighted_and_fixed_samplers():
    w = PointSampler([(16, 16), (32, 32)], "weighted", weights=[3, 1], seed=0)
    share = sum(w(s) == (16, 16) for s in range(4000)) / 4000
    assert share == pytest.approx(0.75, abs=0.03)
    f = PointSampler([(16, 64)], "fixed")
    assert {f(s) for s in range(10)} == {(16, 64)}
    with pytest.raises(ValueError, match="weights"):
        PointSampler([(16, 16), (32, 32)], "weighted", weights=[1])


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_built_optimizer_takes_torchs_reference_steps(name):
    """build_optimizer's optimizer takes torch's single-tensor Adam/AdamW steps with the recipe's settings."""
    from flexiast.config import OptimizerConfig
    from flexiast.engine.optim import build_optimizer

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    cfg = OptimizerConfig(name=name, lr=1e-2, weight_decay=0.05)
    opt = build_optimizer(ours, cfg)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ref_opt = cls(ref, lr=1e-2, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=0.05, foreach=False)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ours]
        for params, optimizer in ((ours, opt), (ref, ref_opt)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_htsat_schedule_is_its_lambdalr_table_per_epoch():
    """HTS-AT's ``lr_foo`` with its config.py (``lr_rate = [0.02, 0.05, 0.1]``,
    ``lr_scheduler_epoch = [10, 20, 30]``), written out by hand: three warm-up epochs,
    ``bisect_left`` makes each bound the last epoch of its step, and past epoch 30
    ``max(0.02 * 0.98 ** e, 0.03)`` is the floor 0.03. Lightning steps it per epoch, so
    every step of an epoch has the same factor."""
    by_hand = ([0.02, 0.05, 0.1]          # epochs 0-2: warm-up
               + [0.1] * 8                # epochs 3-10
               + [0.05] * 10              # epochs 11-20
               + [0.02] * 10              # epochs 21-30
               + [0.03] * 10)             # epochs 31-40
    assert len(by_hand) == 41
    s = ScheduleConfig(name="htsat")
    for epoch, factor in enumerate(by_hand):
        for step in (0, 7, 999):
            assert lr_factor(s, 1e-3, step=epoch * 1000 + step, epoch=epoch, total_steps=10**6, epochs=100) \
                == pytest.approx(factor, rel=1e-12), epoch
    explicit = ScheduleConfig(name="htsat", epoch_rates=[0.02, 0.05, 0.1], epoch_bounds=[10, 20, 30])
    assert [lr_factor(explicit, 1e-3, 0, e, 0, 100) for e in range(41)] == [lr_factor(s, 1e-3, 0, e, 0, 100)
                                                                            for e in range(41)]
    # Other tables follow the same rule: rates [a, b, c] warm up, then c, b, a between the bounds.
    other = ScheduleConfig(name="htsat", epoch_rates=[0.5, 0.25, 1.0], epoch_bounds=[4, 6, 8])
    assert [lr_factor(other, 1.0, 0, e, 0, 20) for e in range(10)] == pytest.approx(
        [0.5, 0.25, 1.0, 1.0, 1.0, 0.25, 0.25, 0.5, 0.5, max(0.5 * 0.98 ** 9, 0.03)])
