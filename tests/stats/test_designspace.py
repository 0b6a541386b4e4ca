"""Pareto fronts, EDFs, KS statistics, normalisation weights and ranks against hand-made answers;
pooled axis effects against planted effects and scipy's linregress."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

import resnext
from nas.search.attrs import SEARCH
from nas.stats.designspace import (
    SEARCH_PHASE,
    axis_effect_lines,
    axis_effects,
    complexity_weights,
    edf,
    ks_statistic,
    pareto_front,
)
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


# --------------------------------------------------------------------------- axis effects

# Planted, in accuracy points: +1.5 per doubling of C and +4 per tenfold FLOPs; d and width
# have no effect of their own, depth +0.2 per block.
PLANTED = {"log2 C": 1.5, "log2 d": 0.0, "depth": 0.2, "log2 width": 0.0, "log10 FLOPs": 4.0}


def _specs(n: int, seed: int = 0) -> list[resnext.Spec]:
    rng = random.Random(seed)
    return [
        resnext.Spec(
            "cifar",
            depths=rng.choice([(1, 1, 1), (2, 2, 2), (3, 3, 3), (2, 3, 4)]),
            width=rng.choice([64, 128, 256]),
            cardinality=rng.choice([1, 2, 4, 8, 16]),
            bottleneck_width=rng.choice([4, 8, 16, 32, 64]),
        )
        for _ in range(n)
    ]


def _simulated(specs: list[resnext.Spec], seed: int, phase: str = "search") -> list[dict]:
    """Trial records as trial_record makes them, accuracy = planted effects + N(0, 1) points."""
    rng = np.random.default_rng(seed)
    recs = []
    for s in specs:
        flops = resnext.complexity(s).flops
        points = (
            40
            + PLANTED["log2 C"] * np.log2(s.cardinality)
            + PLANTED["depth"] * sum(s.depths)
            + PLANTED["log10 FLOPs"] * np.log10(flops)
            + rng.normal()
        )
        recs.append(
            {"spec": s.to_dict(), "flops": flops, "val_accuracy": points / 100,
             "state": "COMPLETE", "phase": phase}
        )  # fmt: skip
    return recs


def test_axis_effects_recover_the_planted_effects() -> None:
    specs = _specs(80)
    # One noise draw; that 95% intervals cover 95% of draws is the next test's.
    fit = axis_effects(_simulated(specs, seed=1))
    assert fit.n == 80 and fit.df == 80 - 6 and fit.reason is None
    assert [e.name for e in fit.effects] == [
        "log10 FLOPs", "log2 C", "log2 d", "depth", "log2 width"
    ]  # fmt: skip
    for e in fit.effects:
        assert e.low < PLANTED[e.name] < e.high, e
        assert e.n == 80 and e.low < e.estimate < e.high
    c = fit.effect("log2 C")
    assert c.low > 0 and c.direction == "higher" and c.p < 0.001
    assert fit.effect("log2 d").direction is None  # its interval covers 0
    assert fit.residual_sd == pytest.approx(1.0, abs=0.25)
    # Confirmation trials (another schedule, far higher accuracy) are never pooled in.
    confirm = _simulated(specs[:20], seed=2, phase="confirm")
    for r in confirm:
        r["val_accuracy"] += 0.3
    assert axis_effects(_simulated(specs, seed=1) + confirm) == fit
    assert axis_effects(confirm, phase="confirm").n == 20
    assert SEARCH_PHASE == SEARCH  # the default is the search's own name for the proxy phase


def test_axis_effect_intervals_cover_at_their_level() -> None:
    """Over 60 noise draws every axis's 95% interval, planted effect or null, covers the truth
    at least 51 times (a true 95% interval falls below that with P < 0.1%), and a 50% interval
    about half the time (18..42 of 60), so the intervals are neither too wide nor too narrow."""
    specs = _specs(40, seed=1)
    hits = dict.fromkeys(PLANTED, 0)
    narrow = 0
    for seed in range(60):
        recs = _simulated(specs, seed)
        for e in axis_effects(recs).effects:
            hits[e.name] += e.low < PLANTED[e.name] < e.high
        e = axis_effects(recs, level=0.5).effect("log2 C")
        narrow += e.low < PLANTED["log2 C"] < e.high
    assert min(hits.values()) >= 51, hits
    assert 18 <= narrow <= 42, narrow


def test_one_axis_is_scipys_linregress() -> None:
    # Only C varies (FLOPs stored constant): the fit is a simple regression on log2 C.
    rng = np.random.default_rng(2)
    cs = rng.choice([1, 2, 4, 8, 16, 32], size=25)
    acc = 0.5 + 0.01 * np.log2(cs) + rng.normal(0, 0.02, 25)
    spec = resnext.Spec("cifar").to_dict()
    recs = [
        {"spec": {**spec, "cardinality": int(c)}, "flops": 1e9, "val_accuracy": float(a),
         "state": "COMPLETE", "phase": "search"}
        for c, a in zip(cs, acc, strict=True)
    ]  # fmt: skip
    fit = axis_effects(recs)
    (e,) = fit.effects
    ref = stats.linregress(np.log2(cs), 100 * acc)
    t975 = stats.t.ppf(0.975, 23)
    assert e.name == "log2 C" and fit.df == 23
    assert e.estimate == pytest.approx(ref.slope)
    assert (e.low, e.high) == pytest.approx(
        (ref.slope - t975 * ref.stderr, ref.slope + t975 * ref.stderr)
    )
    assert e.p == pytest.approx(ref.pvalue)
    assert dict(fit.left_out) == {
        "log10 FLOPs": "does not vary", "log2 d": "does not vary",
        "depth": "does not vary", "log2 width": "does not vary",
    }  # fmt: skip
    lines = axis_effect_lines(fit)
    assert lines[0].startswith(f"log2 C effect: {ref.slope:+.2f} points per doubling of C, 95% CI")
    assert "n=25 trials (search phase)" in lines[0]
    assert "log10 FLOPs left out (does not vary)" in lines[-1]


def test_axis_effects_say_why_there_is_no_estimate() -> None:
    recs = _simulated(_specs(6), seed=0)
    fit = axis_effects(recs)  # 5 varying axes need 7 trials
    assert fit.effects == () and fit.n == 6
    assert fit.reason == "too few trials for 5 varying axes: n=6, needs at least 7"
    assert "no estimate, too few trials" in axis_effect_lines(fit)[0]
    assert axis_effects(recs + _simulated(_specs(1, seed=9), seed=1)).reason is None
    assert axis_effects([]).reason == "no complete search-phase trial"
    pruned = [{**r, "state": "PRUNED"} for r in recs]
    assert axis_effects(pruned).n == 0
    same = [recs[0]] * 4
    assert axis_effects(same).reason == "no axis varies"


def test_a_collinear_axis_is_left_out() -> None:
    # width = 16 C exactly: log2 width = log2 C + 4 carries nothing more.
    recs = _simulated(_specs(30), seed=0)
    for r in recs:
        r["spec"] = {**r["spec"], "width": 16 * r["spec"]["cardinality"]}
    fit = axis_effects(recs)
    assert fit.effect("log2 width") is None and fit.effect("log2 C") is not None
    assert dict(fit.left_out)["log2 width"].startswith("100% explained by log10 FLOPs, log2 C")
    assert fit.df == 30 - 5


def test_at_preserved_complexity_d_is_left_out_and_c_is_judged() -> None:
    """Table 3's design: at equal FLOPs d follows from C, so the fit keeps log2 C (the trade of
    C against d at fixed FLOPs) with a usable interval instead of two slopes that cancel."""
    from resnext import Spec, complexity

    rng = np.random.default_rng(3)
    recs = []
    for c, d in ((1, 24), (2, 16), (4, 10), (8, 6), (32, 2)):
        spec = Spec("cifar", (1, 1, 1), 32, c, d, 10, 32)
        for _ in range(3):
            acc = 0.40 + 0.01 * math.log2(c) + rng.normal(0, 0.005)  # +1 point a doubling
            recs.append(
                {"spec": spec.to_dict(), "flops": complexity(spec).flops, "val_accuracy": acc,
                 "state": "COMPLETE", "phase": "search"}
            )  # fmt: skip
    fit = axis_effects(recs)
    assert "log2 d" in dict(fit.left_out) and "explained by" in dict(fit.left_out)["log2 d"]
    c = fit.effect("log2 C")
    assert c.low < 1.0 < c.high and c.high - c.low < 1.0 and c.direction == "higher"
