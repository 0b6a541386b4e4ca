"""The confirmation phase's plan and answer, on hand-made trials."""

from __future__ import annotations

import math

import pytest
from optuna.trial import TrialState

from nas.search.attrs import CONFIRM, config_key
from nas.search.confirm import (
    ConfirmSettings,
    confirmed,
    describe,
    plan,
    recommendation,
    top_configs,
)
from resnext import Spec, complexity
from tests.helpers import proxy, spec, trial


def key(c: int, d: int) -> str:
    return config_key(spec(c, d), None)


def test_top_configs_rank_by_mean_over_seeds() -> None:
    assert top_configs(proxy(), 3) == [key(4, 2), key(2, 4), key(8, 1)]


def test_plan_queues_first_seeds_then_nothing_while_busy() -> None:
    settings = ConfirmSettings(k=2, seeds=2, max_seeds=4)
    points = plan(proxy(), settings)
    assert [(p.key, p.seed) for p in points] == [
        (key(4, 2), 0),
        (key(4, 2), 1),
        (key(2, 4), 0),
        (key(2, 4), 1),
    ]
    assert points[0].params == {"cardinality": 4, "bottleneck_width": 2}
    assert points[0].user_attrs()["phase"] == CONFIRM
    running = [
        *proxy(),
        trial(5, 4, 2, 0.6, phase=CONFIRM, seed=0),
        trial(6, 4, 2, None, phase=CONFIRM, seed=1, state=TrialState.RUNNING),
        trial(7, 2, 4, 0.5, phase=CONFIRM, seed=0),
        trial(8, 2, 4, None, phase=CONFIRM, seed=1, state=TrialState.WAITING),
    ]
    assert plan(running, settings) == []
    assert plan(proxy(), ConfirmSettings(k=0)) == []


def test_racing_adds_seeds_to_the_open_comparison_only() -> None:
    settings = ConfirmSettings(k=3, seeds=2, max_seeds=3)

    def done(a: tuple[float, float], b: tuple[float, float]) -> list:
        return [
            *proxy(),
            trial(5, 4, 2, a[0], phase=CONFIRM, seed=0),
            trial(6, 4, 2, a[1], phase=CONFIRM, seed=1),
            trial(7, 2, 4, b[0], phase=CONFIRM, seed=0),
            trial(8, 2, 4, b[1], phase=CONFIRM, seed=1),
            trial(9, 8, 1, 0.20, phase=CONFIRM, seed=0),
            trial(10, 8, 1, 0.21, phase=CONFIRM, seed=1),
        ]

    # 4x2d leads 2x4d by 4 points, not yet settled but resolvable: both race; 8x1d is behind
    points = plan(done((0.60, 0.64), (0.57, 0.59)), settings)
    assert [(p.key, p.seed) for p in points] == [(key(4, 2), 2), (key(2, 4), 2)]
    # equal means: no number of seeds within the budget would separate them, so racing stops
    assert plan(done((0.60, 0.62), (0.59, 0.63)), settings) == []


def test_a_failing_point_is_retried_then_given_up() -> None:
    settings = ConfirmSettings(k=1, seeds=1, max_seeds=1)
    failed = [trial(9 + i, 4, 2, None, phase=CONFIRM, state=TrialState.FAIL) for i in range(2)]
    assert len(plan([*proxy(), *failed], settings)) == 1
    failed.append(trial(11, 4, 2, None, phase=CONFIRM, state=TrialState.FAIL))
    assert plan([*proxy(), *failed], settings) == []


def test_confirm_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="--confirm-max-seeds"):
        ConfirmSettings(seeds=3, max_seeds=2)
    with pytest.raises(ValueError, match="--confirm must be"):
        ConfirmSettings(k=-1)
    assert ConfirmSettings(factor=4).confirm_epochs(3) == 12
    assert ConfirmSettings(epochs=7).confirm_epochs(3) == 7


def test_recommendation_record_by_hand() -> None:
    trials = [
        *proxy(),
        trial(5, 4, 2, 0.60, phase=CONFIRM, seed=0),
        trial(6, 4, 2, 0.64, phase=CONFIRM, seed=1),
        trial(7, 4, 2, 0.62, phase=CONFIRM, seed=2),
        trial(8, 2, 4, 0.50, phase=CONFIRM, seed=0),
        trial(9, 2, 4, 0.55, phase=CONFIRM, seed=1),
        trial(10, 2, 4, 0.51, phase=CONFIRM, seed=2),
        trial(11, 8, 1, 0.40, phase=CONFIRM, seed=0),
    ]
    assert confirmed(trials)[key(2, 4)] == {0: 0.50, 1: 0.55, 2: 0.51}
    rec = recommendation(trials)
    assert rec is not None
    assert rec["notation"] == "4x2d 1-1-1 w32" and rec["seeds"] == 3
    cx = complexity(Spec.from_dict(spec(4, 2)))
    assert (rec["flops"], rec["params"]) == (cx.flops, cx.params)
    assert rec["mean_accuracy"] == pytest.approx(0.62)
    # within SS 8e-4 + 1.4e-3 on 4 df (8x1d has one seed): pooled sd sqrt(5.5e-4) = 2.35 points
    assert rec["noise_sd"] == pytest.approx(math.sqrt(2.2e-3 / 4)) and rec["noise_df"] == 4
    # its own t interval would be +-4.97 points; the pooled noise (4 df) narrows it
    low, high = rec["ci95"]
    assert low < 0.62 < high and 0 < high - low < 2 * 4.302653 * 0.02 / math.sqrt(3)
    assert rec["verdict"] == "best" and 0 < rec["margin"] < 0.10 and rec["p_best"] > 0.99
    # The reason names the closest rival as every other line names a configuration.
    assert "closest, 2x4d 1-1-1 w32 (95%" in rec["reason"] and "{" not in rec["reason"]
    assert rec["chance"] == pytest.approx(0.1) and rec["tau"] > 0.05
    ru = rec["runner_up"]
    assert ru["notation"] == "2x4d 1-1-1 w32" and ru["mean_accuracy"] == pytest.approx(0.52)
    assert 0 < ru["difference_ci95"][0] < ru["difference"] < ru["difference_ci95"][1]
    # proxy means 0.50, 0.45, 0.35 and confirmed means 0.62, 0.52, 0.40: the same order
    assert rec["proxy_fidelity"] == pytest.approx(1.0)
    assert [r["notation"][:4] for r in rec["confirmed"]] == ["4x2d", "2x4d", "8x1d"]
    assert recommendation(proxy()) is None


def test_one_seed_each_has_no_p_best_and_says_why() -> None:
    trials = [
        *proxy(),
        trial(5, 4, 2, 0.60, phase=CONFIRM, seed=0),
        trial(6, 2, 4, 0.50, phase=CONFIRM, seed=0),
    ]
    rec = recommendation(trials)
    assert rec is not None and rec["p_best"] is None and rec["verdict"] == "no-signal"
    assert rec["noise_sd"] is None and rec["tau"] is None and rec["runner_up"] is None
    assert all(r["p_best"] is None for r in rec["confirmed"])
    text = "\n".join(describe(rec))
    assert (
        "P(best of the confirmed) unknown (needs seeds that differ: no spread measured yet)" in text
    )
    assert "verdict: no-signal: the seed noise is unmeasured" in text


def _confirmed(a: tuple[float, ...], b: tuple[float, ...]) -> list:
    """The proxy trials, then 4x2d and 2x4d confirmed on seeds 0, 1, 2 with these accuracies."""
    return [
        *proxy(),
        *(trial(5 + s, 4, 2, acc, phase=CONFIRM, seed=s) for s, acc in enumerate(a)),
        *(trial(8 + s, 2, 4, acc, phase=CONFIRM, seed=s) for s, acc in enumerate(b)),
    ]


def test_close_configurations_are_equivalent_and_the_cheaper_is_picked() -> None:
    """Close means on noisy seeds: the verdict is equivalent, the pick has the fewer FLOPs (or
    the lower params/latency asked for), and every line says so."""
    trials = _confirmed((0.60, 0.70, 0.62), (0.58, 0.65, 0.61))
    rec = recommendation(trials)
    assert rec is not None and rec["verdict"] == "equivalent"
    flops = {r["notation"]: r["flops"] for r in rec["confirmed"]}
    assert rec["flops"] == min(flops.values()) and set(rec["contenders"]) == set(flops)
    assert rec["leader"] == "4x2d 1-1-1 w32" and rec["prefer"] == "flops"
    assert rec["margin"] == rec["shortfall_high"] and 0 < rec["margin"] < 1
    assert rec["seeds_needed"] > 3
    lines = describe(rec)
    assert lines[0].startswith("verdict: equivalent: 2 configurations cannot be told apart")
    assert any(line.startswith("model: seed SD ") for line in lines)
    by_params = recommendation(trials, prefer="params")
    params = {r["notation"]: r["params"] for r in rec["confirmed"]}
    assert by_params["params"] == min(params.values())
    settled = recommendation(_confirmed((0.60, 0.64, 0.62), (0.50, 0.55, 0.51)))
    assert settled["verdict"] == "best" and settled["notation"] == "4x2d 1-1-1 w32"


def test_the_verdict_says_the_runs_and_scoring_images_it_rests_on() -> None:
    trials = _confirmed((0.60, 0.64, 0.62), (0.50, 0.55, 0.51))
    for t in trials:
        if t.user_attrs.get("phase") == CONFIRM:
            t.user_attrs["val_images"] = 1000
    rec = recommendation(trials)
    assert rec["runs"] == 6 and rec["val_images"] == [1000]
    assert describe(rec)[0].endswith(
        "[6 runs of 2 configurations, each scored on 1,000 held-out images]"
    )
    # Trials stored before they recorded their scoring images: the runs alone.
    older = recommendation(_confirmed((0.60, 0.64, 0.62), (0.50, 0.55, 0.51)))
    assert older["val_images"] == [] and describe(older)[0].endswith("[6 runs of 2 configurations]")
