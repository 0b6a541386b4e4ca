"""The confirmation phase of a search: which configurations to retrain, and the answer it gives.

After the proxy trials (phase ``search``), the top ``k`` configurations by mean proxy accuracy over
their seeds are retrained with a longer schedule and several seeds (phase ``confirm``). Racing
(:func:`nas.stats.recommend.race`) then gives more seeds to the leader and its closest rival while
the verdict is open and the gap can still be resolved, up to ``max_seeds``. The recommendation is
computed from the confirmed trials alone; the best single proxy trial is never the answer.

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
from nas.stats.rank import spearman, spearman_interval
from nas.stats.recommend import (
    PREFER,
    Criterion,
    Recommendation,
    format_p_best,
    race,
    recommend,
)
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
    prefer: str = "flops"  # the secondary criterion of an ``equivalent`` verdict

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
        if self.prefer not in PREFER:
            raise ValueError(f"--prefer must be one of {', '.join(PREFER)}, got {self.prefer!r}")
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
            "prefer": self.prefer,
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
        for key in race(racing, settings.max_seeds, chance_of(trials)):
            taken = {s for k, s in present if k == key}
            missing.append((key, next(s for s in itertools.count() if s not in taken)))
    return [Point(key, dict(groups[key][0].params), seed) for key, seed in missing]


def chance_of(trials: Iterable[FrozenTrial]) -> float | None:
    """Chance accuracy of the study's task, 1 / classes (None when no trial has a spec)."""
    for t in trials:
        spec = t.user_attrs.get("spec")
        if isinstance(spec, dict) and spec.get("classes"):
            return 1 / int(spec["classes"])
    return None


def criterion(trials: list[FrozenTrial], keys: Iterable[str], prefer: str = "flops") -> Criterion:
    """The secondary criterion ``prefer`` of an ``equivalent`` verdict over configurations
    ``keys``: counted FLOPs and params, or every measured latency and training throughput of
    the configuration's complete trials (both phases: they measure the same network)."""
    counted = {k: complexity(Spec.from_dict(config_of(k)[0])) for k in keys}
    flops = {k: float(cx.flops) for k, cx in counted.items()}
    if prefer in ("flops", "params"):
        counts = {k: [float(getattr(cx, prefer))] for k, cx in counted.items()}
        return Criterion(prefer, counts, flops)
    attr = "latency" if prefer == "latency" else "images_per_second"
    values: dict[str, list[float]] = {k: [] for k in counted}
    for t in trials:
        k = _key(t)
        v = t.user_attrs.get(attr)
        if k in values and t.state == TrialState.COMPLETE and isinstance(v, (int, float)) and v > 0:
            values[k].append(float(v))
    return Criterion(prefer, values, flops)


def phase_accuracies(trials: Iterable[FrozenTrial], ph: str) -> dict[str, dict[int, float]]:
    """Configuration -> seed -> accuracy of the complete trials of phase ``ph``: the confirmed
    ones (:func:`confirmed`), or the search phase's, which a grid study trains on every seed."""
    if ph == CONFIRM:
        return confirmed(trials)
    out: dict[str, dict[int, float]] = {}
    for key, group in proxy_groups(trials).items():
        for i, t in enumerate(group):
            out.setdefault(key, {})[int(t.user_attrs.get("seed", i))] = _accuracy(t)
    return out


def scoring_images(trials: Iterable[FrozenTrial], ph: str) -> list[int]:
    """The distinct numbers of held-out images that scored phase ``ph``'s complete trials
    (empty for trials stored before they recorded it)."""
    return sorted(
        {
            int(t.user_attrs["val_images"])
            for t in trials
            if phase(t) == ph and _accuracy(t) is not None and "val_images" in t.user_attrs
        }
    )


def answer(
    trials: list[FrozenTrial], prefer: str = "flops", seed: int = 0, ph: str = CONFIRM
) -> Recommendation | None:
    """The model, verdict and P(best) of one phase's accuracies, the confirmed ones by default
    (None before any)."""
    acc = phase_accuracies(trials, ph)
    if not acc:
        return None
    return recommend(
        acc,
        chance_of(trials),
        criterion(trials, acc, prefer),
        seed=seed,
        label=lambda key: notation(config_of(key)[0]),
    )


def recommendation(
    trials: list[FrozenTrial], prefer: str = "flops", seed: int = 0, ph: str = CONFIRM
) -> dict[str, Any] | None:
    """The confirmed answer as a JSON-ready dict (docs/guide.md), or None before any confirmation.

    The verdict (``best``, ``equivalent`` or ``no-signal``), its one-line ``reason`` and the
    model it rests on (``noise_sd``, ``tau``, ``margin``: :mod:`nas.stats.recommend`) come with
    the recommended configuration; ``confirmed`` lists every confirmed configuration, and
    ``proxy_fidelity`` is Spearman's rho between the proxy means and the confirmed means over
    the confirmed configurations (None with fewer than three), ``proxy_fidelity_ci95`` its 95%
    interval (:func:`nas.stats.rank.spearman_interval`) and ``proxy_fidelity_n`` the number of
    configurations it rests on.
    """
    rec = answer(trials, prefer, seed, ph)
    if rec is None:
        return None
    groups = proxy_groups(trials)
    probs = rec.probabilities
    model, verdict = rec.model, rec.verdict
    shrunk = dict(zip(model.names, model.shrunk, strict=True))
    mean = dict(zip(model.names, model.means.tolist(), strict=True))
    seeds = dict(zip(model.names, model.counts.tolist(), strict=True))

    def summary(key: str) -> dict[str, Any]:
        spec, hparams = config_of(key)
        cx = complexity(Spec.from_dict(spec))
        iv = model.interval(key)
        return {
            "spec": spec,
            "hparams": hparams,
            "notation": notation(spec),
            "flops": int(cx.flops),
            "params": int(cx.params),
            "mean_accuracy": mean[key],
            "estimate": float(shrunk[key]),  # shrunken: what the ranking uses
            "ci95": [None, None] if iv is None else list(iv),
            "seeds": seeds[key],
            "p_best": None if math.isnan(probs[key]) else probs[key],
            "contender": key in verdict.contenders,
            "proxy_mean_accuracy": _proxy_mean(groups[key]) if key in groups else None,
            "proxy_trials": len(groups.get(key, [])),
        }

    rows = sorted((summary(k) for k in model.names), key=lambda r: -r["estimate"])
    with_proxy = [k for k in model.names if k in groups]
    fidelity = fidelity_ci = None
    if ph == CONFIRM and len(with_proxy) >= 3:
        rho = spearman(
            np.array([_proxy_mean(groups[k]) for k in with_proxy]),
            np.array([mean[k] for k in with_proxy]),
        )
        if not np.isnan(rho):
            fidelity = float(rho)
            fidelity_ci = list(spearman_interval(fidelity, len(with_proxy)))

    def number(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    out = {
        **summary(rec.name),
        "phase": ph,
        "runs": int(model.counts.sum()),
        "val_images": scoring_images(trials, ph),
        "verdict": verdict.kind,
        "reason": verdict.reason,
        "prefer": prefer,
        "noise_sd": number(model.noise_sd),
        "noise_df": model.noise_df,
        "tau": number(model.tau),
        "margin": number(verdict.margin),
        "lead_low": number(verdict.lead_low),
        "shortfall_high": number(verdict.shortfall_high),
        "seeds_needed": None
        if verdict.seeds_needed is None or not math.isfinite(verdict.seeds_needed)
        else math.ceil(verdict.seeds_needed),
        "chance": verdict.chance,
        "leader": notation(config_of(verdict.leader)[0]),
        "contenders": [notation(config_of(k)[0]) for k in verdict.contenders],
    }
    others = [k for k in model.names if k != rec.name]
    out["runner_up"] = None
    if others and model.measured:
        up = max(others, key=lambda k: (shrunk[k], k))
        d = model.difference(rec.name, up)
        out["runner_up"] = {
            "notation": notation(config_of(up)[0]),
            "mean_accuracy": mean[up],
            "difference": float(d.mean()),
            "difference_ci95": [float(q) for q in np.quantile(d, [0.025, 0.975])],
        }
    out["confirmed"] = rows
    out["proxy_fidelity"] = fidelity
    out["proxy_fidelity_ci95"] = fidelity_ci
    out["proxy_fidelity_n"] = len(with_proxy) if ph == CONFIRM else 0
    return out


def remaining(trials: list[FrozenTrial], settings: ConfirmSettings | None) -> bool:
    """Whether the confirmation phase has work left: points to queue, queued or running."""
    if settings is None or settings.k == 0:
        return False
    live = (TrialState.WAITING, TrialState.RUNNING)
    return bool(plan(trials, settings)) or any(
        phase(t) == CONFIRM and t.state in live for t in trials
    )


def evidence(rec: dict[str, Any]) -> str:
    """What a verdict rests on, for people: ``[9 runs of 3 configurations, each scored on 1,000
    held-out images]``."""
    n = len(rec["confirmed"])
    scored = "/".join(f"{v:,}" for v in rec.get("val_images") or [])
    on = f", each scored on {scored} held-out images" if scored else ""
    return f" [{rec['runs']} runs of {n} configuration{'s' * (n != 1)}{on}]"


def describe(rec: dict[str, Any] | None, confirming: bool = True) -> list[str]:
    """The recommendation as lines for people (``search`` and ``trials`` print them);
    ``confirming`` False says the study has no confirmation phase (``search --confirm 0``)."""
    if rec is None and not confirming:
        return [
            "confirmation is off (search --confirm 0): no configuration is confirmed, so there "
            "is no recommendation; proxy trials are one seed of a short schedule each"
        ]
    if rec is None:
        return ["no confirmed configuration yet: the answer comes from the confirmation phase"]

    judged = "confirmed" if rec.get("phase", CONFIRM) == CONFIRM else "search-phase"

    def accuracy(r: dict[str, Any]) -> str:
        iv, n = r["ci95"], r["seeds"]
        seeds = f"{n} seed{'s' * (n != 1)}"
        if None not in iv:
            return f"{r['mean_accuracy']:.1%} (95% CI [{iv[0]:.1%}, {iv[1]:.1%}], {seeds})"
        if rec["noise_sd"] is not None:
            return f"{r['mean_accuracy']:.1%} ({seeds}; seed SD {100 * rec['noise_sd']:.1f} points)"
        return f"{r['mean_accuracy']:.1%} ({seeds}; seed noise not measured)"

    lines = [
        f"verdict: {rec['verdict']}: {rec['reason']}{evidence(rec)}",
        f"recommended: {rec['notation']} ({rec['flops']:,} FLOPs, {rec['params']:,} params): "
        f"{judged} val acc {accuracy(rec)}; P(best of the {judged}) "
        f"{format_p_best(rec['p_best'])}",
    ]
    up = rec["runner_up"]
    if up is not None:
        lo, hi = up["difference_ci95"]
        lines.append(
            f"next: {up['notation']} at {up['mean_accuracy']:.1%}; difference "
            f"{100 * up['difference']:+.1f} points (95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}])"
        )
    if rec["noise_sd"] is not None:
        lines.append(
            f"model: seed SD {100 * rec['noise_sd']:.2f} points (pooled, {rec['noise_df']} df), "
            f"spread of the configurations tau {100 * rec['tau']:.2f} points (REML)"
        )
    if judged != "confirmed":
        return lines
    lines.append("proxy fidelity: " + fidelity_text(rec))
    return lines


def fidelity_text(rec: dict[str, Any]) -> str:
    """Spearman's rho of the proxy and confirmed means, with its interval and n:
    ``Spearman -1.00 [95% CI -1.00, +1.00], n=3, proxy means against confirmed means``."""
    fid, n = rec.get("proxy_fidelity"), rec.get("proxy_fidelity_n")
    if n is None:  # a recommendation stored before the interval was
        n = len(rec["confirmed"])
    if fid is None:
        return (
            f"needs three confirmed configurations with proxy trials, n={n}"
            if n < 3
            else f"undefined: the proxy or the confirmed means are all equal, n={n}"
        )
    lo, hi = rec.get("proxy_fidelity_ci95") or spearman_interval(fid, n)
    return (
        f"Spearman {fid:+.2f} [95% CI {lo:+.2f}, {hi:+.2f}], n={n}, proxy means against "
        "confirmed means"
    )


def confirmation_off(study: Any) -> bool:
    """Whether the study's search runs no confirmation phase (``search --confirm 0``)."""
    stored = study.user_attrs.get("confirm")
    return isinstance(stored, dict) and stored.get("k") == 0


def store_recommendation(
    study: Any, prefer: str | None = None, ph: str = CONFIRM
) -> dict[str, Any] | None:
    """The study's recommendation; stores its proxy fidelity on the study (``proxy_fidelity``).

    ``prefer`` None reads the study's own (:func:`study_prefer`)."""
    rec = recommendation(study.get_trials(deepcopy=False), prefer or study_prefer(study), ph=ph)
    if ph != CONFIRM:
        return rec
    fidelity = None if rec is None else rec["proxy_fidelity"]
    if study.user_attrs.get("proxy_fidelity", "unset") != fidelity:
        study.set_user_attr("proxy_fidelity", fidelity)
    return rec


def study_prefer(study: Any) -> str:
    """The secondary criterion a study's answer uses: the one its confirmation settings were
    stored with (``search --prefer``), else FLOPs."""
    return prefer_of(study.user_attrs)


def prefer_of(study_attrs: Any) -> str:
    """:func:`study_prefer` from the study's user attributes."""
    stored = study_attrs.get("confirm")
    prefer = stored.get("prefer") if isinstance(stored, dict) else None
    return prefer if prefer in PREFER else "flops"


def phase_groups(trials: Iterable[FrozenTrial], ph: str) -> dict[str, list[FrozenTrial]]:
    """The complete trials behind :func:`phase_accuracies`, grouped by configuration."""
    if ph == SEARCH:
        return proxy_groups(trials)
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if phase(t) == CONFIRM and _accuracy(t) is not None and "seed" in t.user_attrs:
            groups.setdefault(_key(t) or "", []).append(t)
    return groups


def representative(group: list[FrozenTrial], mean: float) -> FrozenTrial:
    """The trial of ``group`` whose accuracy is closest to the configuration's ``mean`` (the
    earliest on a tie): weights that stand for the configuration, not the luckiest seed.

    Distances are compared to 1e-9, so that two seeds, equally far from their mean, tie in
    floating point too."""
    return min(group, key=lambda t: (round(abs(_accuracy(t) - mean), 9), t.number))
