"""Rank correlations against hand-computed values and scipy; the bootstrap against theory."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from nas.stats.rank import bootstrap, kendall, ranks, spearman, spearman_interval


def test_ranks_average_ties() -> None:
    assert ranks(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_known_values() -> None:
    x = np.array([1, 2, 3, 4, 5])
    assert spearman(x, x * 10) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1, 0): rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman(x, np.array([1, 2, 4, 3, 5])) == pytest.approx(0.9)


def test_kendall_known_values() -> None:
    x = np.array([1, 2, 3, 4])
    # one discordant pair of 6: (5 - 1) / 6
    assert kendall(x, np.array([1, 2, 4, 3])) == pytest.approx(4 / 6)
    # tau-b with a tie in y: pairs 6, concordant 5, discordant 0, ties in y 1 -> 5 / sqrt(6 * 5)
    assert kendall(x, np.array([1, 2, 3, 3])) == pytest.approx(5 / math.sqrt(30))
    # tau-a would be 5 / 6 here: the tie correction is what makes it tau-b.
    assert kendall(x, np.array([1, 2, 3, 3])) != pytest.approx(5 / 6)


def _pearson_of_ranks(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's definition, by hand: Pearson of tie-averaged ranks (argsort twice + means)."""

    def avg_ranks(v: np.ndarray) -> np.ndarray:
        return np.array([(v < a).sum() + ((v == a).sum() + 1) / 2 for a in v])

    return float(np.corrcoef(avg_ranks(x), avg_ranks(y))[0, 1])


def _tau_b_by_pairs(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b from its definition over all pairs."""
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    return float((sx * sy).sum() / math.sqrt((n0 - (sx == 0).sum()) * (n0 - (sy == 0).sum())))


@pytest.mark.parametrize("seed", range(4))
def test_correlations_match_their_definitions_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    x = rng.integers(0, 6, n).astype(float)  # coarse, so ties occur on both sides
    y = x + rng.integers(-3, 4, n)
    assert spearman(x, y) == pytest.approx(_pearson_of_ranks(x, y), abs=1e-12)
    assert kendall(x, y) == pytest.approx(_tau_b_by_pairs(x, y), abs=1e-12)
    assert ranks(x) == pytest.approx([(x < a).sum() + ((x == a).sum() + 1) / 2 for a in x])


def test_constant_side_is_nan_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bootstrap meets constant resamples often: no noise
        assert math.isnan(spearman(np.array([1, 2, 3]), np.array([4, 4, 4])))
        assert math.isnan(kendall(np.array([1, 2, 3]), np.array([4, 4, 4])))
        assert math.isnan(spearman(np.array([1.0]), np.array([2.0])))


def test_bootstrap_interval_contains_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    a = bootstrap(spearman, x, y, n=500, seed=1)
    b = bootstrap(spearman, x, y, n=500, seed=1)
    assert a == b
    assert a != bootstrap(spearman, x, y, n=500, seed=2)
    assert a.low <= a.value <= a.high and 0.5 < a.value < 1.0
    noisy = bootstrap(spearman, x, rng.normal(size=30), n=500, seed=1)
    assert noisy.low < 0.2 < a.low  # an unrelated ranking has an interval reaching to 0


def test_bootstrap_is_scipys_percentile_interval() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    ours = bootstrap(kendall, x, y, n=300, level=0.9, seed=4)
    ref = stats.bootstrap(
        (x, y),
        kendall,
        paired=True,
        vectorized=False,
        n_resamples=300,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high))
    assert ours.value == pytest.approx(stats.kendalltau(x, y).statistic)


def test_bootstrap_of_a_mean_matches_the_normal_interval() -> None:
    """For a mean of n=400 normal draws the percentile interval is mean +- 1.96 s/sqrt(n), to
    within its Monte-Carlo noise (a few % of the width at 4,000 resamples)."""
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 2.0, size=400)
    est = bootstrap(lambda a, b: float(a.mean()), x, x, n=4000, seed=0)
    half = 1.959964 * x.std(ddof=0) / math.sqrt(len(x))
    assert est.low == pytest.approx(x.mean() - half, abs=0.08 * half)
    assert est.high == pytest.approx(x.mean() + half, abs=0.08 * half)


@pytest.mark.filterwarnings("ignore::scipy.stats.DegenerateDataWarning")  # the reference's nan
def test_bootstrap_leaves_out_resamples_without_a_ranking() -> None:
    # One 1 among nine 0s: (9/10)^10, about a third, of the resamples miss it and have no
    # ranking; the interval is the percentiles of the others.
    x = np.array([0.0] * 9 + [1.0])
    y = np.arange(10.0)
    values = stats.bootstrap(
        (x, y),
        spearman,
        paired=True,
        vectorized=False,
        n_resamples=400,
        method="percentile",
        rng=np.random.default_rng(0),
    ).bootstrap_distribution
    assert 0.2 < np.isnan(values).mean() < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = bootstrap(spearman, x, y, n=400, seed=0)
    assert math.isfinite(est.low) and math.isfinite(est.high) and est.low < est.high
    # The percentiles of the same (seeded) resamples' values, nan left out.
    assert (est.low, est.high) == pytest.approx(tuple(np.nanpercentile(values, [2.5, 97.5])))
    none = bootstrap(spearman, np.ones(5), y[:5], n=100)
    assert math.isnan(none.value) and math.isnan(none.low) and math.isnan(none.high)
    one = bootstrap(spearman, x[:1], y[:1], n=100)
    assert math.isnan(one.low) and math.isnan(one.high)


def test_spearman_interval_by_hand() -> None:
    # n = 20, rho = 0.5: z = atanh(0.5) = 0.549306, se = sqrt((1 + 0.125) / 17) = 0.257248,
    # z -+ 1.959964 se = 0.045110, 1.053503 -> tanh: 0.045079, 0.783164.
    low, high = spearman_interval(0.5, 20)
    assert low == pytest.approx(0.045079, abs=1e-5) and high == pytest.approx(0.783164, abs=1e-5)
    # Symmetric in the sign of rho.
    assert spearman_interval(-0.5, 20) == pytest.approx((-high, -low))


def test_spearman_interval_of_few_or_perfect_ranks() -> None:
    # Three configurations (a confirmation's default) say nothing: the whole range.
    assert spearman_interval(-1.0, 3) == (-1.0, 1.0)
    assert spearman_interval(float("nan"), 10) == (-1.0, 1.0)
    # Four perfectly agreeing ranks: the interval of 1 - 12 / 60 = 0.8 below, 1 above. The
    # exact permutation test of n = 4 cannot reject independence at 5% (P(rho = 1) = 1/24
    # one-sided, 1/12 two-sided), so zero must lie inside.
    low, high = spearman_interval(1.0, 4)
    assert high == 1.0 and low < 0 < high
    z, se = math.atanh(0.8), math.sqrt((1 + 0.32) / 1)
    assert low == pytest.approx(math.tanh(z - stats.norm.ppf(0.975) * se))
    # More pairs, tighter: a perfect rho over 30 configurations excludes zero by far.
    assert spearman_interval(1.0, 30)[0] > 0.8


def test_spearman_interval_covers_the_truth() -> None:
    # Bivariate normal with Pearson r = 0.6: the population Spearman is 6/pi asin(r/2).
    truth = 6 / math.pi * math.asin(0.3)
    rng = np.random.default_rng(0)
    cov = [[1.0, 0.6], [0.6, 1.0]]
    n, reps, hits = 25, 400, 0
    for _ in range(reps):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        low, high = spearman_interval(spearman(x, y), n)
        hits += low <= truth <= high
    # 95% nominal; 400 draws put the count within about +-2.2 points of the true coverage.
    assert 0.91 <= hits / reps <= 0.99
