"""The answer a phase's accuracies support: a verdict (best, equivalent, no-signal) with its reason.

The accuracies (configuration -> seed -> accuracy) are fitted by one model of the phase
(:mod:`nas.stats.model`: configuration effect plus pooled seed noise, shrunk by REML's tau), and
judged on its posterior draws:

- ``best``: the leader (highest shrunken estimate) beats every rival. For each rival the
  posterior probability that the leader is not ahead acts as a one-sided p-value, and Holm's
  step-down method keeps the family-wise error at ``ALPHA`` / 2 over the rivals; every rival must
  be rejected, i.e. every Holm-adjusted lower bound of leader-minus-rival lies above zero. The
  smallest of those bounds is the verdict's margin.
- ``equivalent``: the leader and the rivals it cannot be told from (the contenders) are picked
  among by an explicit secondary criterion (fewest FLOPs by default; params, latency or
  throughput on request). The margin is the 95% upper bound of the pick's shortfall: how far
  behind the best of the contenders it may be.
- ``no-signal``: the seed noise is unmeasured, or the leader does not clear chance (1 / classes)
  at 95%, or the pick's possible shortfall is larger than the leader's lead over chance (the
  noise swamps what was learnt). The reason says what to change, with an estimate of the seeds
  that would separate the top two at their current gap.

Racing (:func:`race`) uses the same verdict: the next seeds go to the leader and its closest
rival (the comparison that decides ``best``), and racing stops once the verdict is ``best``, the
leader sits at chance, or the current gap could not be resolved within the seed budget.

numpy and scipy only; no Optuna, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from nas.stats.model import DRAWS, Fit, fit

# Two-sided error of the verdicts: a ``best`` verdict claims the leader's lead at 95%.
ALPHA = 0.05
LEVEL = 1 - ALPHA
# The power the "seeds needed" estimate is quoted at (the usual 80%).
POWER = 0.8
# The secondary criteria of an ``equivalent`` verdict and whether more is better.
PREFER = {"flops": False, "params": False, "latency": False, "throughput": True}
VERDICTS = ("best", "equivalent", "no-signal")


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with a two-sided Student-t interval.

    The bounds are nan when the values measure no spread: one value, or values that are all
    equal (a zero-width interval would claim certainty that a handful of seeds cannot give).
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def defined(self) -> bool:
        """Whether there is an interval (two or more values that differ)."""
        return not math.isnan(self.low)

    def why_undefined(self) -> str:
        """Why there is no interval, for people."""
        if self.n < 2:
            return "one seed" if self.n == 1 else "no paired seeds"
        return f"all {self.n} seeds gave the same value: no spread measured"

    def to_list(self) -> list[float | None]:
        """``[low, high]`` for JSON, ``None`` where the interval is undefined."""
        return [None if math.isnan(v) else v for v in (self.low, self.high)]


def mean_interval(
    values: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    bounds: tuple[float, float] | None = None,
) -> Interval:
    """The mean of ``values`` with its t interval, cut to ``bounds`` (an accuracy: (0, 1));
    one value, or equal values, have none."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    if len(v) < 2 or sd == 0:
        return Interval(mean, math.nan, math.nan, len(v))
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, len(v))


def format_p_best(p: float | None) -> str:
    """P(best) for people: two decimals, or why there is none (no spread between seeds yet)."""
    return "unknown (needs seeds that differ: no spread measured yet)" if p is None else f"{p:.2f}"


def seeds_needed(gap: float, noise_sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per configuration for a two-sided ``alpha`` test of a ``gap`` to have ``power``:
    ``2 (z_{1-alpha/2} + z_power)^2 sigma^2 / gap^2`` (inf at no gap)."""
    if gap <= 0 or not math.isfinite(noise_sd):
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(2 * (z * noise_sd / gap) ** 2)


@dataclass(frozen=True)
class Criterion:
    """The secondary criterion of an ``equivalent`` verdict: measurements per configuration.

    ``values`` holds one number per configuration for counted quantities (FLOPs, params) and one
    per trial for measured ones (latency, throughput), whose noise is then taken into account:
    configurations within it of the best are tied and broken by ``flops``.
    """

    name: str
    values: Mapping[str, Sequence[float]]
    flops: Mapping[str, float]

    def __post_init__(self) -> None:
        if self.name not in PREFER:
            raise ValueError(f"--prefer must be one of {', '.join(PREFER)}, got {self.name!r}")

    def pick(self, names: Sequence[str]) -> tuple[str, str]:
        """The preferred configuration of ``names`` and why, in a few words."""
        flops_first = sorted(names, key=lambda k: (self.flops.get(k, math.inf), k))
        have = [k for k in names if self.values.get(k)]
        if self.name == "flops" or len(have) < len(names):
            why = "fewest FLOPs"
            if self.name != "flops":
                why += f" ({self.name} not measured for every contender)"
            return flops_first[0], why
        sign = -1 if PREFER[self.name] else 1
        mean = {k: float(np.mean(self.values[k])) for k in names}
        order = sorted(names, key=lambda k: (sign * mean[k], self.flops.get(k, math.inf), k))
        top = order[0]
        word = {"params": "fewest params", "latency": "lowest latency"}.get(
            self.name, "highest throughput"
        )
        if self.name == "params":
            return top, word
        # Measured: the rivals the top one is not clearly better than (one-sided Welch test at
        # 5%) share the place, and the fewest FLOPs among them wins.
        tied = [top]
        for k in order[1:]:
            a, b = self.values[top], self.values[k]
            if len(a) < 2 or len(b) < 2:
                tied.append(k)
                continue
            test = stats.ttest_ind(
                a, b, equal_var=False, alternative="less" if sign > 0 else "greater"
            )
            if not test.pvalue < 0.05:
                tied.append(k)
        if len(tied) == 1:
            return top, word
        pick = min(tied, key=lambda k: (self.flops.get(k, math.inf), k))
        return pick, f"{word} within its measurement noise, then fewest FLOPs"


@dataclass(frozen=True)
class Verdict:
    """What the accuracies support, the configuration to use, and why in one line."""

    kind: str  # best | equivalent | no-signal
    pick: str  # the recommended configuration
    leader: str  # highest shrunken estimate
    contenders: tuple[str, ...]  # the leader and the rivals it cannot be told from
    reason: str
    lead_low: float | None  # best: smallest Holm-adjusted lower bound of leader - rival
    shortfall_high: float | None  # 95% upper bound of (best contender - pick)
    seeds_needed: float | None  # seeds a configuration to separate the top two at their gap
    chance: float | None
    closest: str | None = None  # the rival whose comparison decides ``best``

    @property
    def margin(self) -> float | None:
        """The margin the verdict used: the lead's lower bound (best) or the shortfall's
        upper bound (equivalent, no-signal)."""
        return self.lead_low if self.kind == "best" else self.shortfall_high


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _pts(x: float) -> str:
    return f"{100 * x:.1f} points"


def _holm(model: Fit, leader: str) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Per rival: posterior P(leader not ahead), Holm-adjusted lower bound; unrejected rivals."""
    rivals = [k for k in model.names if k != leader]
    diff = {k: model.difference(leader, k) for k in rivals}
    p = {k: float(np.mean(diff[k] <= 0)) for k in rivals}
    order = sorted(rivals, key=lambda k: (p[k], k))
    m = len(order)
    low: dict[str, float] = {}
    kept: list[str] = []
    rejecting = True
    for i, k in enumerate(order):
        level = (ALPHA / 2) / (m - i)
        low[k] = float(np.quantile(diff[k], level))
        rejecting = rejecting and p[k] < level
        if not rejecting:
            kept.append(k)
    return p, low, kept


def judge(
    model: Fit,
    chance: float | None = None,
    criterion: Criterion | None = None,
    label: Callable[[str], str] = str,
) -> Verdict | None:
    """The verdict on a fitted phase; None with no configuration. ``label`` names a
    configuration in the reason (its key, unless told)."""
    if not model.names:
        return None
    shrunk = model.shrunk
    order = sorted(model.names, key=lambda k: (-shrunk[model.index(k)], k))
    leader = order[0]
    runner = order[1] if len(order) > 1 else None
    gap = (
        None
        if runner is None
        else float(model.means[model.index(leader)] - model.means[model.index(runner)])
    )
    need = None if gap is None or not model.measured else seeds_needed(gap, model.noise_sd)
    base = {"leader": leader, "chance": chance, "seeds_needed": need}
    if not model.measured:
        why = (
            "no configuration has two seeds"
            if model.noise_df == 0
            else "every configuration's seeds gave the same accuracy"
        )
        return Verdict(
            "no-signal",
            leader,
            contenders=tuple(order),
            reason=(
                f"the seed noise is unmeasured ({why}): train configurations on 2 or more seeds "
                "(search --confirm-seeds, or --seeds of a grid study)"
            ),
            lead_low=None,
            shortfall_high=None,
            **base,
        )
    low_l, hi_l = model.bounds(leader, LEVEL)
    if chance is not None and not low_l > chance:
        return Verdict(
            "no-signal",
            leader,
            contenders=tuple(order),
            reason=(
                f"no configuration clears chance ({_pct(chance)}): the leader's estimate is "
                f"{_pct(float(shrunk[model.index(leader)]))} (95% [{_pct(low_l)}, {_pct(hi_l)}]); "
                "train on more images or for more epochs"
            ),
            lead_low=None,
            shortfall_high=None,
            **base,
        )
    if runner is None:
        return Verdict(
            "best",
            leader,
            contenders=(leader,),
            reason="the only configuration confirmed",
            lead_low=None,
            shortfall_high=0.0,
            **base,
        )
    p, low, kept = _holm(model, leader)
    closest = max(p, key=lambda k: (p[k], shrunk[model.index(k)]))  # ties: the nearest
    m = len(p)
    if not kept:
        lead_low = min(low.values())
        return Verdict(
            "best",
            leader,
            contenders=(leader,),
            reason=(
                f"ahead of every rival: at least {_pts(lead_low)} ahead of the closest, "
                f"{label(closest)} (95%, Holm-adjusted over {m} rival{'s' * (m != 1)})"
            ),
            lead_low=lead_low,
            shortfall_high=0.0,
            closest=closest,
            **base,
        )
    contenders = tuple(k for k in order if k == leader or k in kept)
    crit = criterion or Criterion("flops", {}, {})
    pick, why = crit.pick(contenders)
    idx = [model.index(k) for k in contenders]
    inside = np.clip(model.draws, 0, 1)
    short = inside[:, idx].max(axis=1) - inside[:, model.index(pick)]
    shortfall = float(np.quantile(short, LEVEL))
    lift = float(shrunk[model.index(leader)]) - (chance or 0.0)
    n_more = (
        "more seeds than can be estimated"
        if need is None or not math.isfinite(need)
        else f"about {math.ceil(need)} seeds a configuration"
    )
    if chance is not None and shortfall >= lift:
        return Verdict(
            "no-signal",
            pick,
            contenders=contenders,
            reason=(
                f"the noise swamps the signal: the pick may be {_pts(shortfall)} behind the best "
                f"of {len(contenders)} contenders, more than the leader's lead over chance "
                f"({_pts(lift)}); {n_more} would separate the top two at their current gap"
            ),
            lead_low=None,
            shortfall_high=shortfall,
            closest=closest,
            **base,
        )
    return Verdict(
        "equivalent",
        pick,
        contenders=contenders,
        reason=(
            f"{len(contenders)} configurations cannot be told apart; the pick is within "
            f"{_pts(shortfall)} of the best of them (95% upper bound), chosen by {why}; "
            f"{n_more} would separate the top two at their current gap"
        ),
        lead_low=None,
        shortfall_high=shortfall,
        closest=closest,
        **base,
    )


def race(
    accuracies: Mapping[str, Mapping[int, float]],
    max_seeds: int,
    chance: float | None = None,
    draws: int = DRAWS,
) -> list[str]:
    """The configurations that should get another seed now, by the verdict's model.

    Until the noise is measured every configuration below two seeds gets one. Then racing stops
    when the verdict is ``best``, when the leader sits at chance (seeds cannot lift it), or when
    the gap between the leader and its closest rival could not be resolved within ``max_seeds``
    (the seeds at which, if the gap held, the one-sided test would just pass); otherwise the
    leader and its closest rival, the comparison that decides ``best``, each get one below
    ``max_seeds``.
    """
    accuracies = {k: v for k, v in accuracies.items() if v}
    if not accuracies:
        return []
    model = fit(accuracies, draws=draws)
    if not model.measured:
        return [k for k in sorted(accuracies) if len(accuracies[k]) < min(2, max_seeds)]
    verdict = judge(model, chance)
    if verdict is None or verdict.kind == "best" or verdict.closest is None:
        return []
    leader, rival = verdict.leader, verdict.closest
    mean = dict(zip(model.names, model.means, strict=True))
    if chance is not None and mean[leader] <= chance:
        return []
    gap = mean[leader] - mean[rival]
    if seeds_needed(gap, model.noise_sd, alpha=ALPHA, power=0.5) > max_seeds:
        return []
    return [k for k in (leader, rival) if len(accuracies[k]) < max_seeds]


@dataclass(frozen=True)
class Recommendation:
    """The answer of a phase: the model, its verdict and P(best) of every configuration."""

    model: Fit
    verdict: Verdict
    probabilities: Mapping[str, float]

    @property
    def name(self) -> str:
        """The recommended configuration."""
        return self.verdict.pick

    @property
    def p_best(self) -> float:
        """P(best) of the recommended configuration."""
        return self.probabilities[self.name]


def recommend(
    accuracies: Mapping[str, Mapping[int, float]],
    chance: float | None = None,
    criterion: Criterion | None = None,
    draws: int = DRAWS,
    seed: int = 0,
    label: Callable[[str], str] = str,
) -> Recommendation | None:
    """The recommendation from accuracies (configuration -> seed -> accuracy); None if empty.
    ``label`` names a configuration in the verdict's reason."""
    model = fit(accuracies, draws=draws, seed=seed)
    verdict = judge(model, chance, criterion, label)
    if verdict is None:
        return None
    return Recommendation(model, verdict, model.p_best())
