"""The verdicts, the secondary criterion and racing, on hand-built accuracies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.stats.model import Fit, fit
from nas.stats.recommend import (
    PREFER,
    Criterion,
    judge,
    mean_interval,
    race,
    recommend,
    seeds_needed,
)


def test_mean_interval_by_hand_and_inside_bounds() -> None:
    # values 0.60, 0.62, 0.64: mean 0.62, sd 0.02, t(0.975, 2) = 4.3027 (any printed t table)
    iv = mean_interval([0.60, 0.62, 0.64])
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert (iv.low, iv.high) == pytest.approx((0.62 - half, 0.62 + half), abs=1e-6)
    wide = mean_interval([0.05, 0.6], bounds=(0.0, 1.0))
    assert wide.low == 0.0 and wide.high == 1.0  # the t interval spans -3.2 to 3.8
    one = mean_interval([0.5])
    assert one.mean == 0.5 and not one.defined and one.to_list() == [None, None]


def test_seeds_needed_closed_form() -> None:
    # 2 (z_0.975 + z_0.8)^2 = 2 (1.95996 + 0.84162)^2 = 15.70 seeds at a 1-SD gap
    assert seeds_needed(1.0, 1.0) == pytest.approx(15.70, abs=0.01)
    assert seeds_needed(0.0, 1.0) == math.inf


FLOPS = {"A": 3e6, "B": 1e6, "C": 2e6}


def crit(name: str = "flops", values: dict | None = None) -> Criterion:
    return Criterion(name, values or {}, FLOPS)


def test_best_when_the_leader_beats_every_rival() -> None:
    acc = {
        "A": {0: 0.70, 1: 0.71, 2: 0.72},
        "B": {0: 0.60, 1: 0.61, 2: 0.59},
        "C": {0: 0.50, 1: 0.52, 2: 0.51},
    }
    rec = recommend(acc, chance=0.1, criterion=crit())
    v = rec.verdict
    assert v.kind == "best" and rec.name == "A" and v.closest == "B"
    assert 0 < v.lead_low < 0.10 and v.margin == v.lead_low  # below the observed +10 points
    assert "Holm-adjusted over 2 rivals" in v.reason and rec.p_best > 0.99


def test_equivalent_picks_the_fewest_flops_and_states_the_bound() -> None:
    acc = {
        "A": {0: 0.50, 1: 0.53, 2: 0.51},
        "B": {0: 0.51, 1: 0.50, 2: 0.52},
        "C": {0: 0.30, 1: 0.31, 2: 0.32},
    }
    v = recommend(acc, chance=0.1, criterion=crit()).verdict
    assert v.kind == "equivalent" and set(v.contenders) == {"A", "B"}
    assert v.pick == "B"  # fewer FLOPs than A; C is clearly behind and no contender
    assert 0 < v.shortfall_high < 0.05 and v.margin == v.shortfall_high
    assert "cannot be told apart" in v.reason and "fewest FLOPs" in v.reason
    by_params = recommend(acc, chance=0.1, criterion=crit("params", {"A": [1], "B": [5]}))
    assert by_params.name == "A"


def test_no_signal_at_chance_and_without_noise() -> None:
    # Two configurations of a 10-class task at 10-12%: chance, whatever the ranking says.
    at_chance = {"a": {0: 0.104, 1: 0.09}, "b": {0: 0.113, 1: 0.12}}
    v = recommend(at_chance, chance=0.1).verdict
    assert v.kind == "no-signal" and "clears chance (10.0%)" in v.reason
    single = recommend({"a": {0: 0.6}, "b": {0: 0.4}}, chance=0.1)
    assert single.verdict.kind == "no-signal" and "noise is unmeasured" in single.verdict.reason
    assert math.isnan(single.p_best) and single.name == "a"


def test_no_signal_when_the_noise_swamps_the_lead_over_chance() -> None:
    # A posterior whose leader is surely above chance (30% +- 2) but whose rival may be anywhere
    # (28% +- 20): the cheaper pick may be further behind than the leader is ahead of chance.
    rng = np.random.default_rng(0)
    draws = np.column_stack([rng.normal(0.30, 0.02, 4000), rng.normal(0.28, 0.20, 4000)])
    model = Fit(("A", "B"), np.array([5, 5]), np.array([0.30, 0.28]), 0.05, 8, 0.1, draws)
    v = judge(model, chance=0.1, criterion=Criterion("flops", {}, {"A": 2.0, "B": 1.0}))
    assert v.kind == "no-signal" and v.pick == "B" and "swamps" in v.reason
    assert v.shortfall_high > 0.30 - 0.1


def test_measured_criteria_respect_their_noise() -> None:
    names = ("A", "B", "C")
    clear = {"A": [3.0, 3.1, 2.9], "B": [1.0, 1.1, 0.9], "C": [2.0, 2.1, 1.9]}
    assert crit("latency", clear).pick(names) == ("B", "lowest latency")
    noisy = {"A": [1.0, 3.0, 2.0], "B": [2.0, 3.5, 1.0], "C": [1.5, 2.5, 2.2]}
    pick, why = crit("latency", noisy).pick(names)
    assert pick == "B" and "within its measurement noise" in why  # tied: fewest FLOPs
    fast = {"A": [900.0, 910.0], "B": [100.0, 110.0], "C": [500.0, 505.0]}
    assert crit("throughput", fast).pick(names)[0] == "A"
    assert "not measured" in crit("latency", {"A": [1.0]}).pick(names)[1]
    with pytest.raises(ValueError, match="--prefer must be one of"):
        Criterion("speed", {}, {})
    assert set(PREFER) == {"flops", "params", "latency", "throughput"}


def test_race_follows_the_verdict() -> None:
    settled = {"lead": {0: 0.70, 1: 0.71, 2: 0.72}, "behind": {0: 0.40, 1: 0.41, 2: 0.42}}
    assert race(settled, max_seeds=9) == []  # best already
    # open, and a gap of ~2 noise SDs resolvable within 9 seeds: the leader and its rival race
    open_ = {
        "lead": {0: 0.70, 1: 0.73, 2: 0.72},
        "close": {0: 0.69, 1: 0.70, 2: 0.71},
        "behind": {0: 0.40, 1: 0.41, 2: 0.42},
    }
    assert race(open_, max_seeds=9) == ["lead", "close"]
    assert race(open_, max_seeds=3) == []  # the seed budget is spent
    # a gap far below the noise cannot be resolved within 5 seeds: racing stops (equivalent)
    flat = {"a": {0: 0.50, 1: 0.53, 2: 0.51}, "b": {0: 0.51, 1: 0.52, 2: 0.508}}
    assert race(flat, max_seeds=5) == []
    # the noise is not measured yet: every configuration gets its second seed
    assert race({"a": {0: 0.5}, "b": {0: 0.4}}, max_seeds=5) == ["a", "b"]
    # at chance more seeds do not help
    assert race({"a": {0: 0.10, 1: 0.09}, "b": {0: 0.08, 1: 0.1}}, 9, chance=0.1) == []


def test_judge_of_nothing_is_none() -> None:
    assert judge(fit({})) is None and recommend({}) is None
