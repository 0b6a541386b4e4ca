"""Rank correlations with their intervals, from scipy.stats.

Used by ``resnext-nas calibrate`` to say how well a short trial ranks architectures the way a
longer one does, by the dashboard's evidence lines, and by a search's proxy fidelity. The names
and signatures are this project's; the statistics are scipy's (``rankdata``, ``spearmanr``,
``kendalltau`` as tau-b, ``bootstrap`` with the percentile method) or Fisher's z
(:func:`spearman_interval`, for the few configurations a confirmation phase has).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as in Spearman's rho)."""
    return stats.rankdata(np.asarray(x, dtype=float), method="average")


def _constant(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether either side has fewer than two distinct values (no ranking to correlate)."""
    return len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the (tie-averaged) ranks; nan if constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    # Checked here, not left to scipy: a bootstrap meets constant resamples often, and scipy
    # warns on each of them.
    if _constant(x, y):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """A ``level`` interval of Spearman's rho from ``n`` pairs: Fisher's z with Bonett and
    Wright's variance ``(1 + rho^2 / 2) / (n - 3)`` (Psychometrika 65:23-28, 2000).

    A bootstrap of a few monotone pairs resamples only monotone pairs and calls +-1 certain; this
    interval widens as n shrinks instead, and with fewer than four pairs (or no rho) it is the
    whole [-1, 1]. A perfect rho of +-1 has no finite z: its interval is that of the largest
    |rho| below 1 that n untied ranks can give (one swap of neighbours, ``1 - 12 / (n^3 - n)``),
    reaching +-1 on rho's side.
    """
    if n < 4 or not math.isfinite(rho):
        return -1.0, 1.0
    cap = 1 - 12 / (n**3 - n)
    r = max(-cap, min(cap, rho))
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt((1 + r * r / 2) / (n - 3))
    low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    if rho >= 1:
        high = 1.0
    if rho <= -1:
        low = -1.0
    return low, high


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b, which corrects for ties; nan if either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if _constant(x, y):
        return float("nan")
    return float(stats.kendalltau(x, y, variant="b").statistic)


@dataclass(frozen=True)
class Estimate:
    """A statistic with a percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready dict."""
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap(
    stat: Callable[[np.ndarray, np.ndarray], float],
    x: np.ndarray,
    y: np.ndarray,
    n: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``stat(x, y)`` with a percentile interval over ``n`` paired resamples (seeded).

    Resamples whose statistic is not finite (one distinct value: no ranking) are left out of
    the percentiles; with none left, or under two pairs, the bounds are nan.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    value = stat(x, y)
    if len(x) < 2:
        return Estimate(value, float("nan"), float("nan"))
    with warnings.catch_warnings():
        # scipy warns when a bound is nan, which a resample without a ranking makes it; those
        # resamples are left out below instead.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (x, y),
            stat,
            paired=True,
            vectorized=False,
            n_resamples=n,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    samples = np.asarray(res.bootstrap_distribution, dtype=float)
    samples = samples[np.isfinite(samples)]
    if len(samples) == n:
        lo, hi = res.confidence_interval
    elif len(samples):
        # scipy's percentile method would give nan for all of them; this is the same
        # percentile (numpy's linear interpolation) over the resamples that have a value.
        lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    else:
        lo = hi = float("nan")
    return Estimate(value, float(lo), float(hi))


def separability(
    groups: list[np.ndarray], permutations: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Can runs tell their configurations apart? One-way analysis of variance over ``groups``
    (one array of runs a configuration): scipy's F, its p-value by permuting runs across
    configurations, the pooled within-configuration SD and the
    estimated SD of the configurations' true means (0 when F <= 1), in the runs' units."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    sizes = np.array([len(g) for g in groups])
    if len(groups) < 2 or sizes.min() < 1 or sizes.sum() <= len(groups):
        raise ValueError("separability needs two configurations and a repeated run")

    def f(*samples: np.ndarray) -> float:
        return float(stats.f_oneway(*samples).statistic)

    value = f(*groups)
    # Runs shuffled across configurations, group sizes kept (scipy's permutation_test wants two
    # runs in every group; a band whose later seeds stopped part-way has groups of one).
    flat = np.concatenate(groups)
    cuts = np.cumsum(sizes)[:-1]
    rng = np.random.default_rng(seed)
    exceed = sum(f(*np.split(rng.permutation(flat), cuts)) >= value for _ in range(permutations))
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (len(flat) - len(groups))
    between = within * value
    n0 = float(np.mean(sizes))
    return {
        "f": value,
        "p": (exceed + 1) / (permutations + 1),
        "runs": int(len(flat)),
        "configs": len(groups),
        "seed_sd": within**0.5,
        "config_sd": max(0.0, (between - within) / n0) ** 0.5,
    }
