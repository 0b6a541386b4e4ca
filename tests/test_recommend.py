"""The recommendation's statistics against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from nas.recommend import (
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


def test_p_best_by_hand() -> None:
    # B's bootstrap mean over {0.4, 0.7} is 0.4 (1/4), 0.55 (1/2) or 0.7 (1/4); A is always 0.5:
    # A is best only when B draws 0.4 twice, P = 1/4.
    probs = p_best({"A": {0: 0.5}, "B": {0: 0.4, 1: 0.7}}, n=20000, seed=3)
    assert probs["A"] == pytest.approx(0.25, abs=0.015)
    assert probs["A"] + probs["B"] == pytest.approx(1.0)
    tie = p_best({"A": {0: 0.5}, "B": {0: 0.5}}, n=100)
    assert tie == {"A": 0.5, "B": 0.5}
    assert p_best({"A": {0: 0.9, 1: 0.91}, "B": {0: 0.5, 1: 0.52}})["A"] == 1.0


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
    assert rec.p_best == 1.0 and not rec.is_tie
    tie = recommend({"A": {0: 0.60, 1: 0.70}, "B": {0: 0.66, 1: 0.65}})
    assert tie is not None and tie.is_tie
    assert recommend({}) is None
