"""Statistics for comparing design spaces: Pareto fronts, error EDFs, KS distances, ranks.

The EDF tools follow Radosavovic et al. 2019, "On Network Design Spaces for Visual Recognition":
a design space is summarised by the empirical distribution function of its models' errors,
optionally complexity-normalised, and two spaces are compared by the Kolmogorov-Smirnov statistic
between their EDFs. Pure numpy, so that scipy need not be a dependency.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from resnext.budget import pareto_mask


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (lower cost, higher score), by rising cost.

    A point is dominated when another has cost <= and score >=, one of them strictly; exact
    duplicates of a front point are on the front too, since neither dominates the other.
    """
    c = np.asarray(cost, dtype=float)
    s = np.asarray(score, dtype=float)
    on_front = pareto_mask(c, -s)  # minimise cost and minus score
    return [int(i) for i in np.lexsort((-s, c)) if on_front[i]]  # rising cost, then falling score


def edf(values: Sequence[float], weights: Sequence[float] | None = None) -> tuple[list, list]:
    """The (weighted) empirical distribution function as step points ``(x, F(x))``.

    ``x`` holds the distinct values in rising order and ``F(x)`` the weight fraction at or
    below each; models of weight 0 are left out.
    """
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    v, w = v[keep], w[keep]
    if not len(v):
        return [], []
    xs, inv = np.unique(v, return_inverse=True)
    cum = np.cumsum(np.bincount(inv, weights=w)) / w.sum()
    return xs.tolist(), cum.tolist()


def _cdf_at(values: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    idx = np.searchsorted(v, points, side="right")
    return np.where(idx > 0, cw[np.maximum(idx - 1, 0)], 0.0) / cw[-1]


def ks_statistic(
    a: Sequence[float],
    b: Sequence[float],
    weights_a: Sequence[float] | None = None,
    weights_b: Sequence[float] | None = None,
) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup_x |F_a(x) - F_b(x)|`` of (weighted) EDFs."""
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    wa = np.ones_like(va) if weights_a is None else np.asarray(weights_a, dtype=float)
    wb = np.ones_like(vb) if weights_b is None else np.asarray(weights_b, dtype=float)
    va, wa, vb, wb = va[wa > 0], wa[wa > 0], vb[wb > 0], wb[wb > 0]
    if not len(va) or not len(vb):
        raise ValueError("the KS statistic needs two non-empty samples")
    # Both EDFs are right-continuous steps that only jump at sample values, so the supremum is
    # reached at one of them.
    points = np.union1d(va, vb)
    return float(np.max(np.abs(_cdf_at(va, wa, points) - _cdf_at(vb, wb, points))))


def complexity_weights(
    flops: Sequence[float], groups: Sequence[Hashable], bins: int = 8
) -> np.ndarray:
    """Weights that give every group the same complexity distribution (normalised EDFs).

    Radosavovic et al. 2019 compare design spaces after reweighting their models so that each
    space has the same distribution of complexity. Here: log10(FLOPs) is cut into ``bins``
    equal-width bins over the range of all models; the bins that every group populates form the
    shared support; inside a group, a model in shared bin ``b`` gets weight
    ``1 / (n_shared_bins * n_models_of_its_group_in_b)``, so each group's weight is spread
    uniformly over the shared bins (each group's weights sum to 1), and models outside the
    shared support get weight 0. Raises ValueError when the groups share no bin.
    """
    logf = np.log10(np.asarray(flops, dtype=float))
    keys = list(groups)
    lo, hi = float(logf.min()), float(logf.max())
    if hi == lo:
        idx = np.zeros(len(logf), dtype=int)
    else:
        edges = np.linspace(lo, hi, bins + 1)
        idx = np.clip(np.searchsorted(edges, logf, side="right") - 1, 0, bins - 1)
    uniq = list(dict.fromkeys(keys))
    gidx = np.array([uniq.index(k) for k in keys])
    counts = np.zeros((len(uniq), bins), dtype=int)
    np.add.at(counts, (gidx, idx), 1)
    shared = (counts > 0).all(axis=0)
    if not shared.any():
        raise ValueError("the groups share no complexity range, so they cannot be normalised")
    n_shared = int(shared.sum())
    weights = np.zeros(len(logf))
    inside = shared[idx]
    weights[inside] = 1.0 / (n_shared * counts[gidx[inside], idx[inside]])
    return weights
