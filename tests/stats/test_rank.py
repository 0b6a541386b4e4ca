"""Rank correlations against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.stats.rank import bootstrap, kendall, ranks, spearman


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


def test_constant_side_is_nan() -> None:
    assert math.isnan(spearman(np.array([1, 2, 3]), np.array([4, 4, 4])))
    assert math.isnan(kendall(np.array([1, 2, 3]), np.array([4, 4, 4])))


def test_bootstrap_interval_contains_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    a = bootstrap(spearman, x, y, n=500, seed=1)
    b = bootstrap(spearman, x, y, n=500, seed=1)
    assert a == b
    assert a.low <= a.value <= a.high and 0.5 < a.value < 1.0
    noisy = bootstrap(spearman, x, rng.normal(size=30), n=500, seed=1)
    assert noisy.low < 0.2 < a.low  # an unrelated ranking has an interval reaching to 0
