"""The confirmation phase of a search: which configurations to retrain, and the answer it gives.

After the proxy trials (phase ``search``), the top ``k`` configurations by mean proxy accuracy over
their seeds are retrained with a longer schedule and several seeds (phase ``confirm``). Racing
(:func:`nas.stats.recommend.race`) then gives another seed to every configuration whose interval
still overlaps the leader's, up to ``max_seeds``. The recommendation is computed from the
confirmed trials alone; the best single proxy trial is never the answer.

Everything here reads a list of Optuna ``FrozenTrial`` and their user attributes (``phase``,
``spec``, ``hparams``, ``seed``, ``val_accuracy``, ``confirm_of``: see :mod:`nas.search.attrs`),
so that the worker loop, ``trials`` and the dashboard compute the same plan and the same answer
from the storage.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from nas.search.attrs import CONFIRM, SEARCH, config_key, config_of, notation, phase
from nas.stats.rank import spearman
from nas.stats.recommend import TIE_BELOW, format_p_best, mean_interval, race, recommend
from resnext import Spec, complexity

# A confirmation point whose trial failed this many times is given up (it may be what fails).
GIVE_UP_AFTER = 3


# Upper bounds of the confirmation counts: each unit is at least one more trained model, and a
# mistyped count (--confirm 99999999999) would queue work no machine finishes.
MAX_CONFIRM = 1_000  # configurations confirmed
MAX_CONFIRM_FACTOR = 100  # times the proxy trial's epochs
MAX_CONFIRM_SEEDS = 100  # seeds a configuration
MAX_CONFIRM_EPOCHS = 10_000  # epochs of one confirmation trial


@dataclass(frozen=True)
class ConfirmSettings:
    """How the top proxy configurations are confirmed: how many, how long, how many seeds."""

    k: int = 3  # configurations retrained (0: no confirmation phase)
    factor: int = 3  # the confirmation trains ``factor`` times the proxy trial's epochs
    epochs: int | None = None  # explicit confirmation epochs; None: ``factor`` x trial epochs
    seeds: int = 3  # seeds every confirmed configuration starts with
    max_seeds: int = 5  # racing gives a contender more seeds, up to this many

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("--confirm", self.k, 0, MAX_CONFIRM),
            ("--confirm-factor", self.factor, 1, MAX_CONFIRM_FACTOR),
            ("--confirm-seeds", self.seeds, 1, MAX_CONFIRM_SEEDS),
            ("--confirm-max-seeds", self.max_seeds, 1, MAX_CONFIRM_SEEDS),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
            if value > high:
                raise ValueError(f"{name} must be at most {high:,}, got {value:,}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"--confirm-epochs must be a positive integer, got {self.epochs!r}")
        if self.epochs is not None and self.epochs > MAX_CONFIRM_EPOCHS:
            raise ValueError(
                f"--confirm-epochs must be at most {MAX_CONFIRM_EPOCHS:,}, got {self.epochs:,}"
            )
        if self.max_seeds < self.seeds:
            raise ValueError(
                f"--confirm-max-seeds ({self.max_seeds}) must be at least --confirm-seeds "
                f"({self.seeds})"
            )

    def confirm_epochs(self, trial_epochs: int) -> int:
        """Epochs of a confirmation trial, given the proxy trial's."""
        return self.epochs if self.epochs is not None else self.factor * trial_epochs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "k": self.k,
            "factor": self.factor,
            "epochs": self.epochs,
            "seeds": self.seeds,
            "max_seeds": self.max_seeds,
        }


def _key(t: FrozenTrial) -> str | None:
    if "confirm_of" in t.user_attrs:
        return t.user_attrs["confirm_of"]
    spec = t.user_attrs.get("spec")
    return None if spec is None else config_key(spec, t.user_attrs.get("hparams"))


def _accuracy(t: FrozenTrial) -> float | None:
    if t.state != TrialState.COMPLETE or "surplus" in t.user_attrs:
        return None
    acc = t.user_attrs.get("val_accuracy")
    return None if acc is None else float(acc)


def proxy_groups(trials: Iterable[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    """Complete proxy (search-phase) trials with an accuracy, grouped by configuration."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        key = _key(t)
        if phase(t) == SEARCH and key is not None and _accuracy(t) is not None:
            groups.setdefault(key, []).append(t)
    return groups


def _proxy_mean(group: list[FrozenTrial]) -> float:
    return float(np.mean([_accuracy(t) for t in group]))


def top_configs(trials: Iterable[FrozenTrial], k: int) -> list[str]:
    """The ``k`` configurations with the highest mean proxy accuracy (earliest trial on a tie)."""
    groups = proxy_groups(trials)
    order = sorted(groups, key=lambda g: (-_proxy_mean(groups[g]), groups[g][0].number))
    return order[:k]


def confirmed(trials: Iterable[FrozenTrial]) -> dict[str, dict[int, float]]:
    """Confirmed accuracies: configuration -> seed -> accuracy of its complete confirm trial."""
    out: dict[str, dict[int, float]] = {}
    for t in trials:
        acc = _accuracy(t)
        if phase(t) == CONFIRM and acc is not None and "seed" in t.user_attrs:
            out.setdefault(_key(t) or "", {})[int(t.user_attrs["seed"])] = acc
    return out


@dataclass(frozen=True)
class Point:
    """One confirmation trial to queue: the configuration, its Optuna params and its seed."""

    key: str
    params: dict[str, Any]
    seed: int

    def user_attrs(self) -> dict[str, Any]:
        """The attributes it is queued with."""
        return {"phase": CONFIRM, "seed": self.seed, "confirm_of": self.key}


def plan(trials: list[FrozenTrial], settings: ConfirmSettings) -> list[Point]:
    """The confirmation trials to queue now: the missing first seeds, then racing's extra seeds.

    A point already complete, running, queued, or failed ``GIVE_UP_AFTER`` times is not queued
    again. Racing starts once every queued confirmation trial of the top configurations is done.
    """
    if settings.k == 0:
        return []
    groups = proxy_groups(trials)
    top = top_configs(trials, settings.k)
    present: set[tuple[str, int]] = set()
    failures: dict[tuple[str, int], int] = {}
    busy = False
    for t in trials:
        if phase(t) != CONFIRM or "seed" not in t.user_attrs or "surplus" in t.user_attrs:
            continue
        point = (_key(t) or "", int(t.user_attrs["seed"]))
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            present.add(point)
            busy = busy or t.state != TrialState.COMPLETE
        elif t.state == TrialState.FAIL:
            failures[point] = failures.get(point, 0) + 1
    present |= {p for p, n in failures.items() if n >= GIVE_UP_AFTER}
    wanted = [(key, s) for key in top for s in range(settings.seeds)]
    missing = [p for p in wanted if p not in present]
    if not missing and not busy:
        done = confirmed(trials)
        racing = {k: done[k] for k in top if k in done}
        for key in race(racing, settings.max_seeds):
            taken = {s for k, s in present if k == key}
            missing.append((key, next(s for s in itertools.count() if s not in taken)))
    return [Point(key, dict(groups[key][0].params), seed) for key, seed in missing]


def recommendation(trials: list[FrozenTrial], seed: int = 0) -> dict[str, Any] | None:
    """The confirmed answer as a JSON-ready dict (see the README), or None before any confirmation.

    Besides the recommended configuration it lists every confirmed configuration (``confirmed``)
    and the proxy's fidelity: Spearman's rho between the proxy means and the confirmed means over
    the confirmed configurations (None with fewer than three).
    """
    acc = confirmed(trials)
    rec = recommend(acc, seed=seed)
    if rec is None:
        return None
    groups = proxy_groups(trials)
    probs = rec.probabilities

    def summary(key: str) -> dict[str, Any]:
        spec, hparams = config_of(key)
        cx = complexity(Spec.from_dict(spec))
        iv = mean_interval(list(acc[key].values()))
        return {
            "spec": spec,
            "hparams": hparams,
            "notation": notation(spec),
            "flops": int(cx.flops),
            "params": int(cx.params),
            "mean_accuracy": iv.mean,
            "ci95": iv.to_list(),
            "seeds": iv.n,
            "p_best": None if math.isnan(probs[key]) else probs[key],
            "proxy_mean_accuracy": _proxy_mean(groups[key]) if key in groups else None,
            "proxy_trials": len(groups.get(key, [])),
        }

    rows = sorted((summary(k) for k in acc), key=lambda r: -r["mean_accuracy"])
    with_proxy = [k for k in acc if k in groups]
    fidelity = None
    if len(with_proxy) >= 3:
        rho = spearman(
            np.array([_proxy_mean(groups[k]) for k in with_proxy]),
            np.array([np.mean(list(acc[k].values())) for k in with_proxy]),
        )
        fidelity = None if np.isnan(rho) else float(rho)
    out = {**summary(rec.name), "tie": rec.is_tie, "tie_below": TIE_BELOW}
    out["runner_up"] = None
    if rec.runner_up is not None and rec.difference is not None:
        out["runner_up"] = {
            "notation": notation(config_of(rec.runner_up)[0]),
            "mean_accuracy": rec.runner_up_accuracy.mean if rec.runner_up_accuracy else None,
            "difference": rec.difference.mean,
            "difference_ci95": rec.difference.to_list(),
            "paired_seeds": rec.difference.n,
        }
    out["confirmed"] = rows
    out["proxy_fidelity"] = fidelity
    return out


def remaining(trials: list[FrozenTrial], settings: ConfirmSettings | None) -> bool:
    """Whether the confirmation phase has work left: points to queue, queued or running."""
    if settings is None or settings.k == 0:
        return False
    live = (TrialState.WAITING, TrialState.RUNNING)
    return bool(plan(trials, settings)) or any(
        phase(t) == CONFIRM and t.state in live for t in trials
    )


def describe(rec: dict[str, Any] | None) -> list[str]:
    """The recommendation as lines for people (``search`` and ``trials`` print them)."""
    if rec is None:
        return ["no confirmed configuration yet: the answer comes from the confirmation phase"]

    def interval(iv: list[float | None], n: int) -> str:
        if None not in iv:
            return f"95% CI [{iv[0]:.1%}, {iv[1]:.1%}]"
        return "no interval (one seed)" if n < 2 else f"no interval (the {n} seeds agree exactly)"

    lines = [
        f"recommended: {rec['notation']} ({rec['flops']:,} FLOPs, {rec['params']:,} params): "
        f"confirmed val acc {rec['mean_accuracy']:.1%}, {interval(rec['ci95'], rec['seeds'])} over "
        f"{rec['seeds']} seed{'s' * (rec['seeds'] != 1)}; P(best of the confirmed) "
        f"{format_p_best(rec['p_best'])}"
    ]
    up = rec["runner_up"]
    if up is not None:
        d = up["difference_ci95"]
        if None not in d:
            diff = f"{up['difference']:+.1%} (paired, {interval(d, up['paired_seeds'])})"
        elif up["paired_seeds"] >= 2:
            diff = (
                f"{up['difference']:+.1%} (paired, the same on all {up['paired_seeds']} seeds: "
                "no spread measured, no interval)"
            )
        else:
            diff = f"{up['difference']:+.1%} (difference of means, no paired interval)"
        lines.append(f"runner-up: {up['notation']} at {up['mean_accuracy']:.1%}; difference {diff}")
        if rec["tie"]:
            lines.append(
                f"a tie between {rec['notation']} and {up['notation']} at this budget "
                f"(P(best) {format_p_best(rec['p_best'])} < {rec['tie_below']})"
            )
        elif None not in d and d[0] <= 0 <= d[1]:
            # P(best) under a flat prior names a winner often when there is none
            # (benchmarks/bench_p_best.py); the paired interval is the stricter reading.
            lines.append(
                f"not settled: the paired difference to {up['notation']} is within its 95% "
                "interval of zero; more --confirm-seeds narrow it"
            )
    fid = rec.get("proxy_fidelity")
    lines.append(
        "proxy fidelity: "
        + (
            f"Spearman {fid:.2f} between proxy and confirmed means over "
            f"{len(rec['confirmed'])} confirmed configurations"
            if fid is not None
            else "needs three confirmed configurations"
        )
    )
    return lines


def store_recommendation(study: Any) -> dict[str, Any] | None:
    """The study's recommendation; stores its proxy fidelity on the study (``proxy_fidelity``)."""
    rec = recommendation(study.get_trials(deepcopy=False))
    fidelity = None if rec is None else rec["proxy_fidelity"]
    if study.user_attrs.get("proxy_fidelity", "unset") != fidelity:
        study.set_user_attr("proxy_fidelity", fidelity)
    return rec


def recommended_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The recommended configuration's best complete confirmation trial (what ``export
    --recommended`` writes), or None while there is no confirmed configuration."""
    acc = confirmed(trials)
    rec = recommend(acc)
    if rec is None:
        return None
    mine = [
        t
        for t in trials
        if phase(t) == CONFIRM and _key(t) == rec.name and _accuracy(t) is not None
    ]
    return max(mine, key=lambda t: (_accuracy(t), -t.number))
