"""The study's answer (nas.search.answer): the recommendation, or the best single proxy trial."""

from __future__ import annotations

import statistics

import optuna

from nas.search.answer import (
    PROXY_ANSWER,
    accuracy_text,
    answer_line,
    answer_phase,
    basis_text,
    study_answer,
)
from nas.search.attrs import ATTR, CONFIRM, SEARCH
from nas.search.confirm import recommendation
from tests.helpers import confirmations, proxy, trial

SEARCH_STUDY = {ATTR: {"objectives": ["error"], "space": {"budget": {}}}}
GRID_STUDY = {ATTR: {"objectives": ["error"], "space": {"grid": [], "budget": None}}}


def _curved(t: optuna.trial.FrozenTrial, epochs: int) -> optuna.trial.FrozenTrial:
    t.user_attrs["curve"] = [{"epoch": e + 1, "val_accuracy": 0.1} for e in range(epochs)]
    return t


def test_without_a_recommendation_the_answer_is_the_best_single_proxy_trial() -> None:
    trials = [_curved(t, 3) for t in proxy()]
    a = study_answer(trials, SEARCH_STUDY)
    # proxy(): the single best trial is #1, 4x2d at 0.50 (8x1d's seeds 0.40 and 0.30 do not
    # make it better, nor does a mean decide here).
    assert a["source"] == "proxy" and a["trial"] == 1 and a["notation"] == "4x2d 1-1-1 w32"
    assert a["label"] == "best single proxy trial (3 epochs, 1 seed)"
    assert a["verdict"] is None and a["recommendation"] is None and a["seeds"] == 1
    assert basis_text(a) == a["label"]
    line = answer_line(a)
    assert line.startswith("answer: 4x2d 1-1-1 w32, best single proxy trial (3 epochs, 1 seed)")
    assert "trial #1, val acc 50.0%" in line and "not a recommendation" in line
    # A trial with no curve stored says nothing of its epochs, rather than a wrong number.
    assert study_answer(proxy(), SEARCH_STUDY)["label"] == f"{PROXY_ANSWER} (1 seed)"


def test_a_proxy_trial_whose_spec_was_edited_into_junk_is_passed_over() -> None:
    trials = proxy()
    trials[1].user_attrs["spec"] = {"cardinality": "many"}
    a = study_answer(trials, SEARCH_STUDY)
    assert a["trial"] == 3 and a["notation"] == "2x4d 1-1-1 w32"  # the next best, 0.45


def test_no_complete_trial_no_answer() -> None:
    running = trial(0, 4, 2, None, state=optuna.trial.TrialState.RUNNING)
    assert study_answer([running], SEARCH_STUDY) is None
    assert answer_line(None) == "answer: none, no complete trial with an accuracy"


MEANT = (0.62, 0.60, 0.64)  # 2x4d's confirmation seeds


def _mixed() -> list[optuna.trial.FrozenTrial]:
    """proxy() (the best single proxy trial: 4x2d at 0.50), then 2x4d clearly ahead on three
    confirmation seeds, and 4x2d behind."""
    return [*proxy(), *confirmations(5, 4, 2, (0.40, 0.41, 0.39)), *confirmations(8, 2, 4, MEANT)]


def test_the_recommendation_is_the_answer_with_its_mean_and_a_representative_seed() -> None:
    trials = _mixed()
    a = study_answer(trials, SEARCH_STUDY)
    rec = recommendation(trials)
    assert a["source"] == "recommendation" and a["recommendation"] == rec
    assert a["notation"] == rec["notation"] == "2x4d 1-1-1 w32"  # not the proxy's 4x2d
    assert a["verdict"] == "best" and not a["tie"] and a["phase"] == CONFIRM
    assert a["mean_accuracy"] == statistics.fmean(MEANT) and a["seeds"] == 3
    assert a["ci95"] == rec["ci95"] and None not in a["ci95"]
    # The weights that stand for it: the seed closest to the mean (0.62, #8), not the best
    # of its seeds (0.64, #10).
    assert (a["trial"], a["trial_accuracy"], a["seed"]) == (8, 0.62, 0)
    assert a["trials"] == [8, 9, 10]
    lo, hi = a["ci95"]
    assert accuracy_text(a) == f"62.0% (95% [{lo:.1%}, {hi:.1%}], 3 seeds)"
    assert answer_line(a) == (
        "answer: 2x4d 1-1-1 w32, the recommendation (verdict best): confirmed val acc "
        + accuracy_text(a)
    )


def test_a_tie_is_said_to_be_one() -> None:
    # Close means on noisy seeds: 4x2d and 2x4d cannot be told apart.
    trials = [
        *proxy(),
        *confirmations(5, 4, 2, (0.6, 0.7, 0.62)),
        *confirmations(8, 2, 4, (0.58, 0.65, 0.61)),
    ]
    a = study_answer(trials, SEARCH_STUDY)
    assert a["verdict"] == "equivalent" and a["tie"]
    assert sorted(a["contenders"]) == ["2x4d 1-1-1 w32", "4x2d 1-1-1 w32"]
    other = next(c for c in a["contenders"] if c != a["notation"])
    assert basis_text(a) == "the recommendation (verdict equivalent, a tie of 2 configurations)"
    assert answer_line(a).endswith(f"; tied with {other}")


def test_a_grid_studys_answer_is_its_search_phases_verdict() -> None:
    assert answer_phase(GRID_STUDY) == SEARCH and answer_phase(SEARCH_STUDY) == CONFIRM
    assert answer_phase({}) == CONFIRM  # a study of another app: no grid
    a = study_answer(proxy(), GRID_STUDY)
    rec = recommendation(proxy(), ph=SEARCH)
    assert a["source"] == "recommendation" and a["phase"] == SEARCH
    assert a["notation"] == rec["notation"] and a["verdict"] == rec["verdict"]
    assert "search-phase val acc" in answer_line(a)
