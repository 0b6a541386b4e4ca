"""The study's answer: the one configuration that every reader names as the study's best.

``studies``, ``trials``, ``search``, ``export --best``/``--recommended`` and the dashboard's header
all ask :func:`study_answer`, so that no two of them can name different bests. The answer is the
recommendation of the study's answer phase (:func:`nas.search.confirm.recommendation`): its
verdict, the configuration's mean accuracy over its seeds with the model's 95% interval, and the
trial whose weights stand for it, the seed closest to that mean. The answer phase is the
confirmation phase, or the search phase of a grid study (which trains every spec on every seed
and confirms nothing). While there is no recommendation, the answer is the best single proxy
trial, named as such: one seed of a short schedule, picked as the maximum over trials, which
flatters it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from nas.search.attrs import ATTR, CONFIRM, SEARCH, config_key, notation, phase
from nas.search.confirm import phase_groups, prefer_of, recommendation, representative

# What the fallback answer is called wherever it is shown.
PROXY_ANSWER = "best single proxy trial"


def answer_phase(study_attrs: Mapping[str, Any]) -> str:
    """The phase whose verdict is a study's answer: ``search`` for a grid study (its space holds
    the grid), else ``confirm``."""
    space = (study_attrs.get(ATTR) or {}).get("space")
    return SEARCH if isinstance(space, dict) and "grid" in space else CONFIRM


def _epochs(t: FrozenTrial) -> int | None:
    curve = t.user_attrs.get("curve")
    return len(curve) if isinstance(curve, list) and curve else None


def _trial_accuracy(t: FrozenTrial) -> float | None:
    """A complete trial's accuracy: its ``val_accuracy``, else ``1 - value`` of a
    single-objective trial (as :func:`nas.search.records.trial_record` reads it)."""
    if t.state != TrialState.COMPLETE or "surplus" in t.user_attrs or "rejected" in t.user_attrs:
        return None
    acc = t.user_attrs.get("val_accuracy")
    if isinstance(acc, int | float) and not isinstance(acc, bool) and math.isfinite(acc):
        return float(acc)
    if t.values is not None and len(t.values) == 1 and math.isfinite(t.values[0]):
        return 1.0 - float(t.values[0])
    return None


def proxy_label(epochs: int | None) -> str:
    """``best single proxy trial (3 epochs, 1 seed)``."""
    trained = "" if epochs is None else f"{epochs} epoch{'s' * (epochs != 1)}, "
    return f"{PROXY_ANSWER} ({trained}1 seed)"


def study_answer(
    trials: list[FrozenTrial], study_attrs: Mapping[str, Any], prefer: str | None = None
) -> dict[str, Any] | None:
    """The study's answer as a JSON-ready dict, or None before any complete trial.

    ``source`` is ``recommendation`` (with ``verdict``, ``reason``, ``tie``, ``contenders`` and the
    whole ``recommendation``) or ``proxy`` (the best single proxy trial, ``verdict`` None).
    Both give ``notation``, ``spec``, ``hparams``, ``phase``, ``mean_accuracy`` and ``ci95``
    over ``seeds`` seeds, ``trials`` (the configuration's trials of that phase), and ``trial``,
    the one whose weights stand for it, with its ``trial_accuracy``, ``seed`` and ``epochs``.
    ``prefer`` None uses the study's own secondary criterion (``search --prefer``).
    """
    ph = answer_phase(study_attrs)
    rec = recommendation(trials, prefer or prefer_of(study_attrs), ph=ph)
    if rec is not None:
        group = phase_groups(trials, ph)[config_key(rec["spec"], rec["hparams"])]
        rep = representative(group, rec["mean_accuracy"])
        contenders = rec["contenders"]
        return {
            "source": "recommendation",
            "label": "the recommendation",
            "phase": ph,
            "notation": rec["notation"],
            "spec": rec["spec"],
            "hparams": rec["hparams"],
            "verdict": rec["verdict"],
            "reason": rec["reason"],
            # Equivalent or no-signal among several: the pick is one of a tie, by --prefer.
            "tie": rec["verdict"] != "best" and len(contenders) > 1,
            "contenders": contenders,
            "mean_accuracy": rec["mean_accuracy"],
            "ci95": rec["ci95"],
            "seeds": rec["seeds"],
            "trials": sorted(t.number for t in group),
            "trial": rep.number,
            "trial_accuracy": float(rep.user_attrs["val_accuracy"]),
            "seed": rep.user_attrs.get("seed"),
            "epochs": _epochs(rep),
            "recommendation": rec,
        }
    done = [
        (acc, t)
        for t in trials
        if phase(t) == SEARCH and (acc := _trial_accuracy(t)) is not None and "spec" in t.user_attrs
    ]
    for acc, best in sorted(done, key=lambda p: (-p[0], p[1].number)):
        try:  # a spec edited by hand into something else names nothing: the next one does
            named = notation(best.user_attrs["spec"])
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
        return _proxy_answer(best, acc, named)
    return None


def _proxy_answer(best: FrozenTrial, acc: float, named: str) -> dict[str, Any]:
    """The fallback answer: the best single proxy trial ``best``, of accuracy ``acc``."""
    epochs = _epochs(best)
    return {
        "source": "proxy",
        "label": proxy_label(epochs),
        "phase": SEARCH,
        "notation": named,
        "spec": best.user_attrs["spec"],
        "hparams": best.user_attrs.get("hparams") or {},
        "verdict": None,
        "reason": None,
        "tie": False,
        "contenders": [],
        "mean_accuracy": acc,
        "ci95": [None, None],
        "seeds": 1,
        "trials": [best.number],
        "trial": best.number,
        "trial_accuracy": acc,
        "seed": best.user_attrs.get("seed"),
        "epochs": epochs,
        "recommendation": None,
    }


def accuracy_text(a: Mapping[str, Any]) -> str:
    """The answer's accuracy for people: ``44.4% (95% [40.1%, 48.7%], 3 seeds)``."""
    n = a["seeds"]
    seeds = f"{n} seed{'s' * (n != 1)}"
    lo, hi = a["ci95"]
    if lo is None or hi is None:
        return f"{a['mean_accuracy']:.1%} ({seeds}, no interval)"
    return f"{a['mean_accuracy']:.1%} (95% [{lo:.1%}, {hi:.1%}], {seeds})"


def basis_text(a: Mapping[str, Any]) -> str:
    """What the answer rests on, in a few words: ``the recommendation (verdict equivalent, a tie
    of 3 configurations)`` or ``best single proxy trial (3 epochs, 1 seed)``."""
    if a["source"] != "recommendation":
        return a["label"]
    tie = f", a tie of {len(a['contenders'])} configurations" if a["tie"] else ""
    return f"the recommendation (verdict {a['verdict']}{tie})"


def answer_line(a: Mapping[str, Any] | None) -> str:
    """The answer in one line for people (``trials``, ``search``, ``export``, the dashboard)."""
    if a is None:
        return "answer: none, no complete trial with an accuracy"
    if a["source"] != "recommendation":
        return (
            f"answer: {a['notation']}, {a['label']}: trial #{a['trial']}, val acc "
            f"{a['mean_accuracy']:.1%}; not a recommendation: no configuration has been confirmed"
        )
    judged = "confirmed" if a["phase"] == CONFIRM else "search-phase"
    line = f"answer: {a['notation']}, {basis_text(a)}: {judged} val acc {accuracy_text(a)}"
    if a["tie"]:
        others = [c for c in a["contenders"] if c != a["notation"]]
        line += f"; tied with {', '.join(others)}"
    return line


def answer_of(study: Any, prefer: str | None = None) -> dict[str, Any] | None:
    """:func:`study_answer` of an Optuna study."""
    return study_answer(study.get_trials(deepcopy=False), study.user_attrs, prefer)
