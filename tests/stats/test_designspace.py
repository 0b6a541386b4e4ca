"""Pareto fronts, EDFs, KS statistics, normalisation weights and ranks against hand-made answers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nas.stats.designspace import complexity_weights, edf, ks_statistic, pareto_front
from nas.stats.rank import spearman
from tests.helpers import brute_front


@pytest.mark.parametrize("seed", range(6))
def test_pareto_front_matches_brute_force_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    # Coarse values, so that equal costs, equal scores and exact duplicates all occur.
    cost = [rng.randint(1, 12) for _ in range(n)]
    score = [rng.randint(1, 12) / 12 for _ in range(n)]
    front = pareto_front(cost, score)
    assert set(front) == brute_front(cost, score)
    assert [cost[i] for i in front] == sorted(cost[i] for i in front)


def test_pareto_front_by_hand() -> None:
    cost = [4, 1, 2, 3, 2, 5]
    score = [0.9, 0.5, 0.7, 0.6, 0.7, 0.9]
    # 1 (cheapest), 2 and its duplicate 4, 0 (best score first reached at cost 4); 3 loses to 2
    # and 5 to 0.
    assert pareto_front(cost, score) == [1, 2, 4, 0]


def test_edf_by_hand() -> None:
    assert edf([3.0, 1.0, 2.0, 2.0]) == ([1.0, 2.0, 3.0], [0.25, 0.75, 1.0])
    xs, fs = edf([1.0, 2.0, 3.0], weights=[1.0, 0.0, 3.0])
    assert xs == [1.0, 3.0]
    assert fs == pytest.approx([0.25, 1.0])
    assert edf([]) == ([], [])


def test_ks_statistic_by_hand() -> None:
    # F_a steps 1/3 at 1, 2, 3; F_b steps 1/2 at 2.5, 4. At x=2: F_a = 2/3, F_b = 0.
    assert ks_statistic([1, 2, 3], [2.5, 4]) == pytest.approx(2 / 3)
    assert ks_statistic([2.5, 4], [1, 2, 3]) == pytest.approx(2 / 3)
    assert ks_statistic([1, 2], [1, 2]) == 0.0
    assert ks_statistic([1], [5]) == 1.0
    # Weighted: a puts 3/4 of its weight on 1, b all on 2: at x=1 the gap is 3/4.
    assert ks_statistic([1, 3], [2], weights_a=[3, 1]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="non-empty"):
        ks_statistic([], [1])


def test_ks_statistic_is_the_sup_on_a_fine_grid() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40), rng.normal(0.5, 1.5, 25)
    grid = np.linspace(-6, 8, 20001)
    fa = (a[None, :] <= grid[:, None]).mean(axis=1)
    fb = (b[None, :] <= grid[:, None]).mean(axis=1)
    assert ks_statistic(a, b) == pytest.approx(np.abs(fa - fb).max())


def test_complexity_weights_equalise_the_groups() -> None:
    # log10 FLOPs 8 .. 9.204 in 4 bins of 0.301: 1e8 | 2e8 | 4e8, 6e8 | 1.6e9.
    # Group "a" has the lowest bin alone, "b" the highest: the shared bins are the middle two.
    flops = [1e8, 1e8, 2e8, 4e8, 4e8, 6e8, 2e8, 4e8, 6e8, 6e8, 1.6e9]
    groups = ["a"] * 6 + ["b"] * 5
    w = complexity_weights(flops, groups, bins=4)
    # Half of each group's weight per shared bin, split among its models in that bin.
    assert w == pytest.approx([0, 0, 1 / 2, 1 / 6, 1 / 6, 1 / 6, 1 / 2, 1 / 6, 1 / 6, 1 / 6, 0])
    edges = np.linspace(8, np.log10(1.6e9), 5)
    bins = np.clip(np.searchsorted(edges, np.log10(flops), side="right") - 1, 0, 3)
    hist = {}
    for g in "ab":
        idx = [i for i, k in enumerate(groups) if k == g]
        assert w[idx].sum() == pytest.approx(1.0)
        hist[g] = np.bincount(bins[idx], weights=w[idx], minlength=4)
    assert hist["a"] == pytest.approx(hist["b"])
    with pytest.raises(ValueError, match="share no complexity"):
        complexity_weights([1e8, 1e10], ["a", "b"], bins=4)


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties: ranks of x are 0.5, 0.5, 2, 3 and of y 0, 1, 2, 3; Pearson of those is 0.9487.
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
