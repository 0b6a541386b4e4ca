"""The template generator: every config in the band, and only those, correctly marked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import resnext
from resnext.budget import Budget, generate, pareto_mask, scan


def test_default_call_lists_the_table2_pairs() -> None:
    # Table 2: (1,64), (2,40), (4,24), (8,14), (32,4) have about ResNet-50's 4.1 GFLOPs.
    configs = generate(Budget(flops=4.1e9))
    pairs = {(c.spec.cardinality, c.spec.bottleneck_width) for c in configs}
    assert {(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)} <= pairs


def test_band_is_exact_against_brute_force() -> None:
    budget = Budget(flops=1.5e9, params=12e6, tolerance=0.1)
    depths = [(2, 2, 2, 2), (3, 4, 6, 3)]
    configs = generate(budget, "imagenet", depths, (128, 256), (1, 2, 4, 8, 16, 32))
    got = {
        (c.spec.depths, c.spec.width, c.spec.cardinality, c.spec.bottleneck_width) for c in configs
    }
    want = set()
    for dep, w, c in itertools.product(depths, (128, 256), (1, 2, 4, 8, 16, 32)):
        for d in range(1, 300):
            cx = resnext.complexity(resnext.Spec("imagenet", dep, w, c, d))
            if abs(cx.flops - 1.5e9) / 1.5e9 <= 0.1 and abs(cx.params - 12e6) / 12e6 <= 0.1:
                want.add((dep, w, c, d))
    assert got == want and got


def test_counts_in_configs_are_the_specs_complexity() -> None:
    for c in generate(
        Budget(params=5e6, tolerance=0.2), "cifar", [(1, 1, 1), (2, 2, 2)], (64, 128)
    ):
        assert c.complexity == resnext.complexity(c.spec)
        assert abs(c.complexity.params - 5e6) / 5e6 <= 0.2


def test_closest_and_pareto_marks() -> None:
    configs = generate(Budget(flops=4.1e9, tolerance=0.08))
    by_c: dict[int, list] = {}
    for c in configs:
        by_c.setdefault(c.spec.cardinality, []).append(c)
    for group in by_c.values():
        closest = [c for c in group if c.closest]
        assert len(closest) == 1
        assert closest[0].deviation == min(c.deviation for c in group)
    for c in configs:
        dominated = any(
            o.complexity.params <= c.complexity.params
            and o.complexity.flops <= c.complexity.flops
            and (o.complexity.params, o.complexity.flops)
            != (c.complexity.params, c.complexity.flops)
            for o in configs
        )
        assert c.pareto == (not dominated)


def test_pareto_mask_on_known_points() -> None:
    params = np.array([1, 2, 3, 2, 4])
    flops = np.array([5, 3, 1, 4, 0])
    assert pareto_mask(params, flops).tolist() == [True, True, True, False, True]


def test_sorted_by_skeleton_then_c_then_d() -> None:
    configs = generate(Budget(flops=4.1e9), depths=[(3, 4, 23, 3), (3, 4, 6, 3)])
    keys = [
        (c.spec.depths, c.spec.width, c.spec.cardinality, c.spec.bottleneck_width) for c in configs
    ]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "give a budget"),
        ({"flops": 0}, "flops budget must be a positive"),
        ({"params": -5}, "params budget must be a positive"),
        ({"flops": 1e9, "tolerance": 0}, "tolerance must lie strictly between 0 and 1"),
        ({"flops": 1e9, "tolerance": 1.5}, "tolerance must lie strictly between 0 and 1"),
        ({"flops": float("nan")}, "flops budget must be a positive"),
    ],
)
def test_bad_budgets(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_empty_band_names_the_nearest_config() -> None:
    with pytest.raises(
        ValueError, match="no configuration lies within .* the nearest is ResNet 1x1d"
    ):
        generate(Budget(flops=1e3))


def test_huge_budget_is_refused_not_looped() -> None:
    with pytest.raises(ValueError, match="needs a bottleneck width beyond"):
        generate(Budget(flops=1e30), "cifar", [(1, 1, 1)])


def test_a_value_given_twice_counts_once() -> None:
    budget = Budget(flops=4.1e9, tolerance=0.1)
    once = generate(budget, "imagenet", [(3, 4, 6, 3), (3, 4, 23, 3)], (256,), (1, 32))
    twice = generate(
        budget,
        "imagenet",
        [(3, 4, 23, 3), (3, 4, 6, 3), (3, 4, 23, 3), [3, 4, 6, 3]],
        (256, 256),
        (32, 1, 32),
    )
    assert [c.to_dict() for c in twice] == [c.to_dict() for c in once]
    ds = generate(budget, bottleneck_widths=(4, 4, 64), cardinalities=(1, 32))
    assert [(c.spec.cardinality, c.spec.bottleneck_width) for c in ds] == [(1, 64), (32, 4)]


def test_band_columns_are_the_configs_and_nearest_rows_are_closest() -> None:
    budget = Budget(flops=2e9, params=15e6, tolerance=0.4)
    band = scan(budget, "imagenet", [(3, 4, 6, 3), (2, 2, 2, 2)], (128, 256), (1, 2, 4, 8, 32))
    configs = list(band.configs())
    assert len(configs) == len(band) > 50
    assert list(band.dicts(chunk=7)) == [c.to_dict() for c in configs]
    for c in configs:
        assert c.complexity == resnext.complexity(c.spec)
    rows = band.nearest(20)
    assert list(rows) == sorted(rows) and len(rows) == 20
    chosen = {int(i) for i in rows}
    worst_shown = max(configs[i].deviation for i in chosen)
    assert all(c.deviation >= worst_shown for i, c in enumerate(configs) if i not in chosen)
    assert list(band.nearest(10**9)) == list(range(len(band)))


def test_pareto_mask_against_brute_force_with_ties_and_nan() -> None:
    """Ties (a duplicate of a front point is on the front) and NaN costs (on no front)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 25))
        p = rng.integers(0, 5, n).astype(float)
        f = rng.integers(0, 5, n).astype(float)
        f[rng.random(n) < 0.2] = np.nan
        ok = ~np.isnan(f)
        want = [
            bool(ok[i])
            and not any(
                ok[j] and p[j] <= p[i] and f[j] <= f[i] and (p[j], f[j]) != (p[i], f[i])
                for j in range(n)
            )
            for i in range(n)
        ]
        assert pareto_mask(p, f).tolist() == want, (p, f)


@pytest.mark.parametrize(
    "budget",
    [Budget(flops=1.5e9, tolerance=0.2), Budget(flops=1.5e9, params=12e6, tolerance=0.3)],
)
def test_offset_is_the_signed_deviation(budget: Budget) -> None:
    configs = generate(budget, "imagenet", [(2, 2, 2, 2)], (128, 256), (1, 2, 4, 8, 16, 32))
    offsets = [float(budget.offset(c.complexity)) for c in configs]
    assert any(o > 0 for o in offsets) and any(o < 0 for o in offsets)  # both sides shown
    for c, o in zip(configs, offsets, strict=True):
        assert abs(o) == pytest.approx(c.deviation)
        # The sign is that of the metric furthest from its target: over is +, under is -.
        gaps = {m: (getattr(c.complexity, m) - t) / t for m, t in budget.targets().items()}
        assert o == pytest.approx(max(gaps.values(), key=abs))
