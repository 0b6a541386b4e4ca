"""The study model against closed forms, scipy's distributions and its own promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nas.stats.model import fit, intervals


def test_noise_is_pooled_within_configurations_by_hand() -> None:
    # within sums of squares: a 2e-4 (0.50, 0.52), b 8e-4 (0.45, 0.49), c 0 (one seed): 2 df
    model = fit({"a": {0: 0.50, 1: 0.52}, "b": {0: 0.45, 1: 0.49}, "c": {0: 0.3}})
    assert model.noise_df == 2
    assert model.noise_sd == pytest.approx(math.sqrt(1e-3 / 2))
    assert model.interval("c") is None  # one seed: its value and the pooled SD only


def test_tau_is_reml_given_the_noise_balanced_closed_form() -> None:
    # Balanced, sigma fixed: the means are N(mu, sigma^2/n + tau^2), whose REML variance is their
    # sample variance (ddof 1), so tau^2 = max(0, var(means) - sigma^2 / n).
    rng = np.random.default_rng(4)
    acc = {
        f"c{j}": {s: float(rng.normal(0.5 + 0.03 * j, 0.01)) for s in range(3)} for j in range(6)
    }
    model = fit(acc)
    means = np.array([np.mean(list(v.values())) for v in acc.values()])
    want = math.sqrt(max(0.0, means.var(ddof=1) - model.noise_sd**2 / 3))
    assert model.tau == pytest.approx(want, rel=1e-3)
    equal = {f"c{j}": {s: 0.5 + 0.01 * ((s + j) % 3) for s in range(3)} for j in range(3)}
    assert fit(equal).tau == 0.0  # the means agree more than the noise allows: no spread


def test_far_apart_pair_matches_students_t() -> None:
    # Two configurations far apart: tau's posterior sits far above the noise, nothing is shrunk,
    # and P(A best) is the Student t probability of the difference on the pooled df.
    acc = {"A": {0: 0.60, 1: 0.64, 2: 0.61}, "B": {0: 0.30, 1: 0.36, 2: 0.33}}
    model = fit(acc, draws=40000)
    d = model.difference("A", "B")
    s = model.noise_sd * math.sqrt(2 / 3)
    t_low = (0.6167 - 0.33) + stats.t.ppf(0.025, model.noise_df) * s
    assert np.quantile(d, 0.025) == pytest.approx(t_low, abs=0.01)
    close = {"A": {0: 0.50, 1: 0.52}, "B": {0: 0.45, 1: 0.49}}
    p = fit(close, draws=40000).p_best()
    t = 0.04 / math.sqrt(5e-4)
    flat = float(stats.t.cdf(t, 2))  # the flat-prior answer; shrinkage can only pull it to 1/2
    assert 0.5 < p["A"] <= flat + 0.01
    assert p["A"] + p["B"] == pytest.approx(1.0)


def test_two_seeds_borrow_the_pooled_noise() -> None:
    # A configuration on two seeds next to others on five: its interval uses the pooled SD on
    # 2 + 4 + 4 df, far narrower than its own two-seed t interval (t(0.975, 1) = 12.7).
    rng = np.random.default_rng(1)
    acc = {f"c{j}": {s: float(rng.normal(0.6, 0.01)) for s in range(5)} for j in range(2)}
    acc["two"] = {0: 0.58, 1: 0.61}
    lo, hi = fit(acc).interval("two")
    own = stats.t.ppf(0.975, 1) * np.std([0.58, 0.61], ddof=1) / math.sqrt(2) * 2
    assert 0 < hi - lo < own / 3


@pytest.mark.parametrize("centre", [0.02, 0.5, 0.97])
def test_intervals_never_leave_zero_to_one(centre: float) -> None:
    acc = {"a": {0: centre, 1: min(1, centre + 0.02)}, "b": {0: centre, 1: max(0, centre - 0.3)}}
    model = fit(acc)
    for name in model.names:
        lo, hi = model.interval(name)
        assert 0 <= lo <= hi <= 1
    assert all(0 <= x <= 1 for x in model.shrunk)


def test_shrinkage_pulls_equal_configurations_together() -> None:
    acc = {
        "a": {0: 0.52, 1: 0.50, 2: 0.51},
        "b": {0: 0.49, 1: 0.50, 2: 0.48},
        "c": {0: 0.5, 1: 0.51},
    }
    model = fit(acc)
    raw = np.ptp(model.means)
    assert np.ptp(model.shrunk) < raw * 0.8


def test_unmeasured_noise_gives_no_intervals_and_no_p_best() -> None:
    for acc in ({"a": {0: 0.5}, "b": {0: 0.4}}, {"a": {0: 0.5, 1: 0.5}, "b": {0: 0.4, 1: 0.4}}):
        model = fit(acc)
        assert not model.measured and model.interval("a") is None
        assert all(math.isnan(p) for p in model.p_best().values())
    assert fit({"a": {0: 0.3}}).p_best() == {"a": 1.0}


def test_fit_is_seeded_and_order_free() -> None:
    acc = {"a": {0: 0.61, 1: 0.58, 2: 0.60}, "b": {0: 0.59, 1: 0.60}, "c": {0: 0.5, 1: 0.52}}
    shuffled = {k: dict(reversed(list(acc[k].items()))) for k in reversed(list(acc))}
    assert fit(acc).p_best() == fit(shuffled).p_best()


def test_intervals_of_groups_share_one_model() -> None:
    out = intervals({"a": [0.5, 0.52, 0.51], "b": [0.6, 0.58], "c": [0.4]})
    assert out["c"] is None and out["a"][0] < 0.51 < out["a"][1]
    assert intervals({"a": [0.5], "b": [0.4]}) == {"a": None, "b": None}
