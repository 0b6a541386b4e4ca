"""Trial recipes compared: the runs file, the statistics, the configurations' spread."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from nas.search import recipes
from nas.search.calibrate import spread
from nas.search.recipes import Candidate, compare, icc1, run_file
from nas.search.space import SearchSpace
from nas.stats.rank import spearman
from resnext.budget import Budget
from tests.helpers import calibration_configs, refused, toy_data


def test_icc_matches_the_one_way_anova_and_its_interval_holds_the_truth() -> None:
    rng = np.random.default_rng(0)
    # 12 configurations x 3 seeds; between SD 2, within SD 1: ICC = 4 / 5
    table = rng.normal(0, 2, (12, 1)) + rng.normal(0, 1, (12, 3))
    f = stats.f_oneway(*table).statistic  # the rows as groups: scipy's own one-way ANOVA
    k = table.shape[1]
    est = icc1(table)
    assert est.value == pytest.approx((f - 1) / (f + k - 1))
    assert est.low < est.value < est.high
    # Over many tables, the 95% interval covers the true 0.8 about 95% of the time.
    covered = 0
    for s in range(300):
        r = np.random.default_rng(s)
        t = r.normal(0, 2, (12, 1)) + r.normal(0, 1, (12, 3))
        e = icc1(t)
        covered += e.low <= 0.8 <= e.high
    assert 0.9 <= covered / 300 <= 0.99
    # Pure seed noise: the ICC is near 0, its interval reaches below 0.
    noise = rng.normal(0, 1, (12, 3))
    assert icc1(noise).low < 0


def test_spread_takes_every_skeleton_and_width_in_turn() -> None:
    space = SearchSpace(
        Budget(5e6, None, 0.6),
        "cifar",
        ((1, 1, 1), (2, 2, 2), (3, 3, 3)),
        (16, 32, 64),
        classes=10,
        resolution=32,
    )
    configs = list(space.configs)
    chosen = spread(configs, 24)
    assert len({c.spec for c in chosen}) == 24
    groups = Counter((c.spec.depths, c.spec.width) for c in chosen)
    assert len(groups) == 9  # every skeleton x width of the grid
    assert max(groups.values()) - min(groups.values()) <= 2
    assert len({c.spec.cardinality for c in chosen}) >= 4
    flops = [c.complexity.flops for c in chosen]
    assert flops == sorted(flops)
    with pytest.raises(ValueError, match="fewer than --k"):
        spread(configs, len(configs) + 1)


TINY = {
    "a": Candidate("a", 64, 1, batch_size=16, ema=0.9),
    "b": Candidate("b", 64, 2, batch_size=16, label_smoothing=0.1, schedule="linear"),
}


def test_the_runs_file_holds_every_run_scored_every_way_and_resumes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(recipes, "CANDIDATES", TINY)
    monkeypatch.setattr(recipes, "LONG", Candidate("long", 96, 2, batch_size=16))
    monkeypatch.setattr(recipes, "SCORING_SIZES", (16, 32, 64))
    data = toy_data(128)
    specs = [replace(c.spec, classes=10) for c in calibration_configs()[:3]]
    path = tmp_path / "runs.json"
    seen = []
    result = run_file(
        path,
        {"k": 3},
        specs,
        data,
        ["a", "b"],
        2,
        2,
        device="cpu",
        on_run=lambda *a: seen.append(a[:3]),
    )
    assert len(seen) == 3 * (2 * 2 + 2)  # 3 configs x (2 recipes x 2 seeds + 2 long seeds)
    assert {s[1] for s in seen if s[0] == "long"} == {1000, 1001}  # seeds of its own
    run = result["configs"][0]["runs"]["a/0"]
    assert set(run["accuracy"]) == set(recipes.SCORINGS)
    assert set(run["accuracy"]["raw"]) == {"16", "32", "64"}  # 64 held-out images
    assert run["cpu_seconds"] > 0 and run["score_cpu_seconds"] > 0
    assert json.loads(path.read_text())["configs"] == result["configs"]
    # A second call trains nothing; other settings are refused.
    again = run_file(
        path,
        {"k": 3},
        specs,
        data,
        ["a", "b"],
        2,
        2,
        device="cpu",
        on_run=lambda *a: seen.append(a),
    )
    assert len(seen) == 18 and again["configs"] == result["configs"]
    with pytest.raises(ValueError, match="other settings"):
        run_file(path, {"k": 4}, specs, data, ["a"], 2, 2, device="cpu")

    rows = compare(result)
    row_key = ("b", "raw", 64)
    row = next(r for r in rows if (r.recipe, r.scoring, r.images) == row_key)
    acc = np.array(
        [[c["runs"][f"b/{s}"]["accuracy"]["raw"]["64"] for s in (0, 1)] for c in result["configs"]]
    )
    long = np.array(
        [
            [c["runs"][f"long/{s}"]["accuracy"]["raw"]["64"] for s in (1000, 1001)]
            for c in result["configs"]
        ]
    )
    assert (row.configs, row.seeds) == (3, 2)
    assert row.mean_accuracy == pytest.approx(acc.mean())
    assert row.spearman.value == pytest.approx(spearman(acc.mean(1), long.mean(1)), nan_ok=True)
    within = np.sqrt(((acc - acc.mean(1, keepdims=True)) ** 2).sum() / 3)
    assert row.seed_sd == pytest.approx(within)
    # TTA scores twice as many images as the plain scoring: its CPU-seconds are larger.
    tta = next(r for r in rows if (r.recipe, r.scoring, r.images) == ("b", "tta", 64))
    assert tta.cpu_seconds > row.cpu_seconds
    assert {r.recipe for r in rows} == {"a", "b"}
    # One trial's agreement: the first seed of every configuration, no seed statistics.
    one = next(r for r in compare(result, runs=1) if (r.recipe, r.scoring, r.images) == row_key)
    assert one.seeds == 1 and np.isnan(one.seed_sd) and np.isnan(one.icc.value)
    assert one.spearman.value == pytest.approx(spearman(acc[:, 0], long.mean(1)), nan_ok=True)


def test_separability_takes_configurations_with_one_run() -> None:
    from nas.stats.rank import separability

    rng = np.random.default_rng(0)
    apart = [rng.normal(10 * i, 1, 2 if i % 2 else 1) for i in range(6)]
    sep = separability(apart, permutations=300)
    assert sep["p"] < 0.05 and sep["runs"] == 9 and sep["configs"] == 6
    same = [rng.normal(0, 1, 2 if i % 2 else 1) for i in range(6)]
    assert separability(same, permutations=300)["p"] > 0.05
    with pytest.raises(ValueError, match="repeated run"):
        separability([np.array([1.0]), np.array([2.0])])


def test_compare_refuses_unknown_recipes_and_single_seeds(capsys) -> None:
    refused(capsys, ["calibrate", "--compare", "base,nope"], "unknown trial recipe 'nope'")
    refused(
        capsys, ["calibrate", "--compare", "base", "--seeds", "1"], "--seeds must be at least 2"
    )
