"""The recommendation's statistics against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from nas.stats.recommend import (
    mean_interval,
    p_best,
    paired_difference,
    race,
    recommend,
    t_quantile,
)


# Student t, two-sided 95% (0.975 quantile): any printed t table, e.g. Fisher & Yates.
@pytest.mark.parametrize(
    ("df", "golden"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)]
)
def test_t_quantile_matches_published_table(df: int, golden: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(golden, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-golden, abs=1e-3)


def test_t_quantile_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_mean_interval_by_hand() -> None:
    # values 0.60, 0.62, 0.64: mean 0.62, sd 0.02, se 0.02/sqrt(3), t(0.975, 2) = 4.3027
    iv = mean_interval([0.60, 0.62, 0.64])
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.62)
    assert (iv.low, iv.high) == pytest.approx((0.62 - half, 0.62 + half), abs=1e-6)
    assert iv.n == 3
    one = mean_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.low) and one.to_list() == [None, None]


def test_paired_difference_uses_shared_seeds_only() -> None:
    a = {0: 0.70, 1: 0.72, 2: 0.74, 3: 0.99}
    b = {0: 0.60, 1: 0.66, 2: 0.65}
    # differences 0.10, 0.06, 0.09: mean 0.08333, sd 0.020817
    d = paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(0.25 / 3)
    half = 4.302653 * 0.0208167 / math.sqrt(3)
    assert d.low == pytest.approx(0.25 / 3 - half, abs=1e-5)
    unpaired = paired_difference({0: 0.7}, {1: 0.6, 2: 0.5})
    assert unpaired.mean == pytest.approx(0.15) and math.isnan(unpaired.low)


def test_p_best_of_two_is_students_t_by_hand() -> None:
    # A {0.50, 0.52}, B {0.45, 0.49}: pooled s^2 = (2e-4 + 8e-4) / 2 on 2 df, the difference
    # 0.04 over s * sqrt(1/2 + 1/2) gives t = 1.789; F_2(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    probs = p_best({"A": {0: 0.50, 1: 0.52}, "B": {0: 0.45, 1: 0.49}}, n=40000, seed=3)
    t = 0.04 / math.sqrt(5e-4)
    assert probs["A"] == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=0.01)
    assert probs["A"] + probs["B"] == pytest.approx(1.0)
    # One seed against two: 1 df, so the Cauchy CDF 1/2 + atan(t) / pi; s = sd(0.4, 0.7).
    probs = p_best({"A": {0: 0.5}, "B": {0: 0.4, 1: 0.7}}, n=40000, seed=3)
    t = (0.5 - 0.55) / (math.sqrt(0.045) * math.sqrt(1 + 1 / 2))
    assert probs["A"] == pytest.approx(0.5 + math.atan(t) / math.pi, abs=0.01)


def test_p_best_stays_modest_on_two_noisy_seeds() -> None:
    # The demo's case: +0.9 points on two seeds whose paired difference spans -14 to +16. A plain
    # bootstrap of two values said 0.88; the t posterior says it is a coin toss.
    probs = p_best({"A": {0: 0.45, 1: 0.31}, "B": {0: 0.30, 1: 0.44}})
    assert 0.4 < probs["A"] < 0.65


def test_p_best_edges() -> None:
    assert p_best({}) == {}
    assert p_best({"A": {0: 0.3}}) == {"A": 1.0}
    # no configuration on two seeds: no spread to go on
    assert all(math.isnan(p) for p in p_best({"A": {0: 0.5}, "B": {0: 0.4}}).values())
    # no spread at all: no variance to draw from, so no probability either (not 0.5 or 1.0)
    for same in (
        {"A": {0: 0.5, 1: 0.5}, "B": {0: 0.5, 1: 0.5}},
        {"A": {0: 0.6, 1: 0.6}, "B": {0: 0.5, 1: 0.5}},
    ):
        assert all(math.isnan(p) for p in p_best(same, n=100).values())
    # far apart on two seeds each: nearly certain, and a seeded result
    far = {"A": {0: 0.9, 1: 0.91}, "B": {0: 0.5, 1: 0.52}}
    assert p_best(far)["A"] > 0.99 and p_best(far) == p_best(far)


def test_race_keeps_the_contenders_and_drops_the_clearly_behind() -> None:
    acc = {
        "lead": {0: 0.70, 1: 0.71, 2: 0.72},
        "close": {0: 0.69, 1: 0.71, 2: 0.70},
        "behind": {0: 0.40, 1: 0.41, 2: 0.42},
    }
    assert race(acc, max_seeds=5) == ["lead", "close"]
    assert race(acc, max_seeds=3) == []  # every seed budget spent
    # a configuration with one seed has no interval yet and always races
    assert "new" in race({**acc, "new": {0: 0.1}}, max_seeds=5)
    # the leader alone, clearly ahead: nobody needs another seed
    assert race({"lead": acc["lead"], "behind": acc["behind"]}, max_seeds=9) == []


def test_recommend_names_the_best_mean_and_the_runner_up() -> None:
    rec = recommend(
        {"A": {0: 0.60, 1: 0.62, 2: 0.61}, "B": {0: 0.70, 1: 0.69, 2: 0.71}, "C": {0: 0.3}}
    )
    assert rec is not None
    assert rec.name == "B" and rec.runner_up == "A"
    assert rec.accuracy.mean == pytest.approx(0.70)
    assert rec.difference is not None and rec.difference.mean == pytest.approx(0.09)
    assert rec.p_best > 0.99 and not rec.is_tie
    tie = recommend({"A": {0: 0.60, 1: 0.70}, "B": {0: 0.66, 1: 0.65}})
    assert tie is not None and tie.is_tie
    assert recommend({}) is None
    single = recommend({"A": {0: 0.6}, "B": {0: 0.5}})
    assert single is not None and math.isnan(single.p_best) and single.is_tie


def test_seeds_that_agree_give_no_interval_and_no_p_best() -> None:
    """Equal seeds (quantised accuracies on a small split) measure no spread: no [x, x] interval
    and no P(best) drawn from a zero variance."""
    iv = mean_interval([0.75, 0.75])
    assert iv.mean == 0.75 and not iv.defined and iv.to_list() == [None, None]
    assert "same value" in iv.why_undefined()
    diff = paired_difference({0: 0.5, 1: 0.6}, {0: 0.487, 1: 0.587})
    assert diff.mean == pytest.approx(0.013) and not diff.defined  # +1.3% on both seeds
    probs = p_best({"a": {0: 0.5, 1: 0.5}, "b": {0: 0.4, 1: 0.4}})
    assert all(math.isnan(p) for p in probs.values())
    rec = recommend({"a": {0: 0.5, 1: 0.5}, "b": {0: 0.4, 1: 0.4}})
    assert rec is not None and rec.is_tie  # nothing singles out a winner


def test_p_best_does_not_depend_on_the_order_trials_were_read() -> None:
    acc = {
        "a": {0: 0.61, 1: 0.58, 2: 0.60},
        "b": {0: 0.59, 1: 0.60, 2: 0.57},
        "c": {0: 0.5, 1: 0.52},
    }
    shuffled = {k: dict(reversed(list(acc[k].items()))) for k in reversed(list(acc))}
    assert p_best(acc) == p_best(shuffled)
