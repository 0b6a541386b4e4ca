"""Rank correlations with bootstrap intervals, in numpy (scipy is not a dependency).

Used by ``resnext-nas calibrate`` to say how well a short trial ranks architectures the way a
longer one does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as in Spearman's rho)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the (tie-averaged) ranks; nan if constant."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b, which corrects for ties; nan if either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    n1, n2 = (sx == 0).sum(), (sy == 0).sum()
    den = np.sqrt(float(n0 - n1) * float(n0 - n2))
    return float((sx * sy).sum() / den) if den > 0 else float("nan")


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
    """``stat(x, y)`` with a percentile interval over ``n`` paired resamples (seeded)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n, len(x)))
    samples = np.array([stat(x[k], y[k]) for k in idx])
    samples = samples[np.isfinite(samples)]  # a resample with one distinct value has no rank
    lo, hi = (
        np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
        if len(samples)
        else (float("nan"), float("nan"))
    )
    return Estimate(stat(x, y), float(lo), float(hi))
