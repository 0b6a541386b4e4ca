"""The statistics of a confirmed recommendation: intervals over seeds, racing, P(best).

A search's proxy trials rank configurations cheaply but noisily; the confirmation phase retrains
the top few with a longer schedule and several seeds. This module turns those confirmed
accuracies (one per configuration and seed) into the answer a user can act on:

- each configuration's mean accuracy with a 95% Student-t interval over its seeds;
- the paired difference between the recommended configuration and the runner-up, over the seeds
  both were trained with (a seed fixes the data split, order and augmentation draws, so pairing
  removes that share of the noise), with its own t interval;
- the probability that each configuration is the best of the confirmed set: the share of
  parametric-bootstrap replicates (Student-t posterior of each mean, one pooled seed-to-seed
  variance) in which its mean is the highest (ties split evenly);
- the racing rule that decides which configuration gets another seed.

Pure numpy and the standard library: no Optuna, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Below this probability of being best, the answer is reported as a tie.
TIE_BELOW = 0.8


def _t_cdf(t: float, df: int) -> float:
    """Student t CDF, by the regularised incomplete beta function's continued fraction."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Numerical Recipes' Lentz continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * f / a


@lru_cache(maxsize=1024)  # a bisection of 200 steps; the dashboard asks for the same few df
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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


def mean_interval(values: list[float] | np.ndarray, level: float = 0.95) -> Interval:
    """The mean of ``values`` with its t interval; one value, or equal values, have none."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    if len(v) < 2 or sd == 0:
        return Interval(mean, math.nan, math.nan, len(v))
    half = t_quantile((1 + level) / 2, len(v) - 1) * sd / math.sqrt(len(v))
    return Interval(mean, mean - half, mean + half, len(v))


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95
) -> Interval:
    """Mean of ``a[s] - b[s]`` over the seeds both have, with its t interval.

    Without two shared seeds the difference of the two means is returned with no interval.
    """
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        return mean_interval([a[s] - b[s] for s in shared], level)
    diff = float(np.mean(list(a.values())) - np.mean(list(b.values())))
    return Interval(diff, math.nan, math.nan, len(shared))


def p_best(
    accuracies: Mapping[str, Mapping[int, float]], n: int = 4000, seed: int = 0
) -> dict[str, float]:
    """P(each configuration has the highest true mean), by a parametric bootstrap (seeded).

    The model is the one-way normal model with one seed-to-seed variance shared by the
    configurations (they train on the same schedule), and its standard posterior: each replicate
    draws the common standard deviation ``sigma = s_p * sqrt(df / chi2_df)`` from the pooled
    within-configuration SD ``s_p`` (``df`` = the sum of seeds - 1), then every configuration's
    mean as ``mean_j + sigma * z_j / sqrt(n_j)``, and credits the highest (a tie shares the
    credit). For two configurations this is exactly Student's t: P(A best) = F_df((mean_A -
    mean_B) / (s_p sqrt(1/n_A + 1/n_B))).

    A plain bootstrap of the seeds claims too much at few seeds (two seeds give three possible
    means, never anything outside them); the t posterior widens as the seeds get fewer. With no
    configuration trained on two seeds there is no spread to go on: every value is NaN (a single
    configuration is the best of its set, 1.0). Seeds that all agree measure no spread either:
    NaN too, rather than a certainty drawn from a zero variance.
    """
    names = sorted(accuracies)
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: 1.0}
    values = [
        np.asarray([accuracies[k][s] for s in sorted(accuracies[k])], dtype=float) for k in names
    ]
    df = sum(len(v) - 1 for v in values)
    if df == 0:
        return dict.fromkeys(names, math.nan)
    pooled = math.sqrt(sum(float(((v - v.mean()) ** 2).sum()) for v in values) / df)
    if pooled == 0:
        return dict.fromkeys(names, math.nan)
    rng = np.random.default_rng(seed)
    sigma = pooled * np.sqrt(df / rng.chisquare(df, size=(n, 1)))
    centre = np.array([v.mean() for v in values])
    scale = np.array([1 / math.sqrt(len(v)) for v in values])
    means = centre + sigma * rng.standard_normal((n, len(names))) * scale
    top = means == means.max(axis=1, keepdims=True)
    credit = (top / top.sum(axis=1, keepdims=True)).sum(axis=0) / n
    return {name: float(c) for name, c in zip(names, credit, strict=True)}


def format_p_best(p: float | None) -> str:
    """P(best) for people: two decimals, or why there is none (no spread between seeds yet)."""
    return "unknown (needs seeds that differ: no spread measured yet)" if p is None else f"{p:.2f}"


def leader(accuracies: Mapping[str, Mapping[int, float]]) -> str:
    """The configuration with the highest mean accuracy (first in order on a tie)."""
    return max(accuracies, key=lambda k: float(np.mean(list(accuracies[k].values()))))


def race(
    accuracies: Mapping[str, Mapping[int, float]], max_seeds: int, level: float = 0.95
) -> list[str]:
    """The configurations that should get another seed, racing against the leader.

    A configuration keeps racing while it has fewer than ``max_seeds`` seeds and its interval
    overlaps the leader's (the leader races too while anyone is still in contention). One whose
    upper bound lies below the leader's lower bound is clearly behind and stops. With fewer than
    two seeds there is no interval yet, so such a configuration always gets another.
    """
    if not accuracies:
        return []
    best = leader(accuracies)
    ivs = {k: mean_interval(list(v.values()), level) for k, v in accuracies.items()}
    lead = ivs[best]

    def in_contention(k: str) -> bool:
        iv = ivs[k]
        if iv.n < 2 or lead.n < 2:
            return True
        return iv.high >= lead.low

    rivals = [k for k in accuracies if k != best and in_contention(k)]
    chosen = [k for k in rivals if ivs[k].n < max_seeds]
    if (rivals or lead.n < 2) and lead.n < max_seeds:
        chosen.insert(0, best)
    return chosen


@dataclass(frozen=True)
class Recommendation:
    """The confirmed answer: the best configuration, its interval, the runner-up and P(best)."""

    name: str
    accuracy: Interval
    probabilities: Mapping[str, float]  # P(best) of every configuration (:func:`p_best`)
    runner_up: str | None
    runner_up_accuracy: Interval | None
    difference: Interval | None

    @property
    def p_best(self) -> float:
        """P(best) of the recommended configuration."""
        return self.probabilities[self.name]

    @property
    def is_tie(self) -> bool:
        """True when the evidence does not single out the recommended configuration (or, with
        no configuration on two seeds, cannot: P(best) is NaN then)."""
        return not self.p_best >= TIE_BELOW


def recommend(
    accuracies: Mapping[str, Mapping[int, float]], n_boot: int = 4000, seed: int = 0
) -> Recommendation | None:
    """The recommendation from confirmed accuracies (configuration -> seed -> accuracy)."""
    accuracies = {k: v for k, v in accuracies.items() if v}
    if not accuracies:
        return None
    probs = p_best(accuracies, n_boot, seed)
    ranked = sorted(accuracies, key=lambda k: -float(np.mean(list(accuracies[k].values()))))
    best = ranked[0]
    second = ranked[1] if len(ranked) > 1 else None
    return Recommendation(
        name=best,
        accuracy=mean_interval(list(accuracies[best].values())),
        probabilities=probs,
        runner_up=second,
        runner_up_accuracy=None
        if second is None
        else mean_interval(list(accuracies[second].values())),
        difference=None
        if second is None
        else paired_difference(accuracies[best], accuracies[second]),
    )
