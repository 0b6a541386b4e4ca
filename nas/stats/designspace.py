"""Statistics for comparing design spaces: Pareto fronts, error EDFs, KS distances, and the
pooled effect of each design axis on accuracy.

The EDF tools follow Radosavovic et al. 2019, "On Network Design Spaces for Visual Recognition":
a design space is summarised by the empirical distribution function of its models' errors,
optionally complexity-normalised, and two spaces are compared by the Kolmogorov-Smirnov statistic
between their EDFs. The EDF and KS tools are numpy (weighted EDFs, which scipy.stats.ks_2samp
does not take); the axis effects are one numpy least-squares fit with scipy.stats.t intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

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


# ---------------------------------------------------------------------------------------------
# Pooled axis effects: one least-squares fit over every trial of a phase

# The proxy trials' phase: nas.search.attrs.SEARCH, spelt out since statistics sit below search.
SEARCH_PHASE = "search"
# Each design axis: its name, what one unit of it is, and its value from a trial record. The
# complexity control comes first, so that an axis it already explains is the one left out.
AXES: tuple[tuple[str, str, Callable[[dict[str, Any]], float]], ...] = (
    ("log10 FLOPs", "tenfold FLOPs", lambda r: math.log10(r["flops"])),
    ("log2 C", "doubling of C", lambda r: math.log2(r["spec"]["cardinality"])),
    ("log2 d", "doubling of d", lambda r: math.log2(r["spec"]["bottleneck_width"])),
    ("depth", "block", lambda r: float(sum(r["spec"]["depths"]))),
    ("log2 width", "doubling of width", lambda r: math.log2(r["spec"]["width"])),
)
CONTROL = AXES[0][0]
# An axis whose variation the axes before it explain beyond this share (a variance inflation
# factor of 20) is left out of the fit.
COLLINEAR = 0.95


@dataclass(frozen=True)
class AxisEffect:
    """One axis's least-squares coefficient in accuracy points per ``unit``, the other axes
    held fixed, with its t interval, two-sided p-value and the n trials it rests on."""

    name: str
    estimate: float
    low: float
    high: float
    p: float
    n: int
    unit: str

    @property
    def direction(self) -> str | None:
        """``higher``/``lower`` (accuracy as the axis grows) when the interval excludes zero."""
        if self.low > 0:
            return "higher"
        return "lower" if self.high < 0 else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "direction": self.direction}


@dataclass(frozen=True)
class AxisFit:
    """The pooled fit of accuracy on the design axes over the complete trials of one phase.

    ``effects`` is empty when ``reason`` says why there is no estimate; ``left_out`` names the
    axes not in the model and why (constant, or nearly determined by the others).
    """

    phase: str
    n: int
    effects: tuple[AxisEffect, ...]
    residual_sd: float
    df: int
    level: float
    left_out: tuple[tuple[str, str], ...] = ()
    reason: str | None = None

    def effect(self, name: str) -> AxisEffect | None:
        """The effect of the axis ``name`` (``log2 C``...), None when it is not in the model."""
        return next((e for e in self.effects if e.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "phase": self.phase,
            "n": self.n,
            "effects": [e.to_dict() for e in self.effects],
            "residual_sd": None if math.isnan(self.residual_sd) else self.residual_sd,
            "df": self.df,
            "level": self.level,
            "left_out": dict(self.left_out),
            "reason": self.reason,
        }


def _usable(r: dict[str, Any], phase: str) -> bool:
    return (
        r.get("state") == "COMPLETE"
        and (r.get("phase") or SEARCH_PHASE) == phase
        and r.get("val_accuracy") is not None
        and bool(r.get("flops"))
        and bool(r.get("spec"))
    )


def axis_effects(
    records: Sequence[dict[str, Any]], phase: str = SEARCH_PHASE, level: float = 0.95
) -> AxisFit:
    """Every axis's effect on accuracy from one ordinary least-squares fit over all complete
    trials of ``phase``, log10 FLOPs included as the complexity control.

    ``accuracy (points) = b0 + sum_k b_k axis_k + noise``: each ``b_k`` is the change with one
    unit of axis k (a doubling of C, d or width, one more block, tenfold FLOPs) at fixed values
    of the others; the residual variance is the pooled noise, so the intervals are Student-t
    intervals on ``n - p - 1`` degrees of freedom. Only one phase at a time: a 3-epoch proxy
    and a longer confirmation trial measure different things. Axes that do not vary, or that
    the axes before them nearly determine (R^2 above ``COLLINEAR``), are left out and named;
    with ``n <= p + 1`` trials for ``p`` axes there is no estimate and ``reason`` says so.
    """
    rows = [r for r in records if _usable(r, phase)]
    n = len(rows)
    acc = np.array([100.0 * r["val_accuracy"] for r in rows])
    columns = {name: np.array([f(r) for r in rows], dtype=float) for name, _, f in AXES}
    units = {name: unit for name, unit, _ in AXES}
    left_out = [(name, "does not vary") for name, x in columns.items() if n and np.ptp(x) == 0]
    varying = [name for name in columns if n and name not in dict(left_out)]
    empty = AxisFit(phase, n, (), float("nan"), max(n - len(varying) - 1, 0), level)
    if not n:
        return replace(empty, reason=f"no complete {phase}-phase trial")
    if not varying:
        return replace(empty, left_out=tuple(left_out), reason="no axis varies")
    if n <= len(varying) + 1:
        need = len(varying) + 2
        return replace(
            empty,
            left_out=tuple(left_out),
            reason=f"too few trials for {len(varying)} varying axes: n={n}, needs at least {need}",
        )
    # Centred columns: the slopes are those of the model with an intercept. An axis the ones
    # before it nearly determine (R^2 above COLLINEAR: at fixed FLOPs, d once C is known) is
    # left out: its slope and theirs would trade off, with intervals as wide as the axis.
    kept: list[str] = []
    for name in varying:
        y = columns[name] - columns[name].mean()
        r2 = 0.0
        if kept:
            xk = np.column_stack([columns[k] - columns[k].mean() for k in kept])
            fitted = xk @ np.linalg.lstsq(xk, y, rcond=None)[0]
            r2 = float(fitted @ fitted / (y @ y))
        if r2 <= COLLINEAR:
            kept.append(name)
        else:
            left_out.append((name, f"{r2:.0%} explained by {', '.join(kept)} in these trials"))
    x = np.column_stack([np.ones(n), *(columns[k] - columns[k].mean() for k in kept)])
    beta, *_ = np.linalg.lstsq(x, acc, rcond=None)
    df = n - x.shape[1]
    resid = acc - x @ beta
    s2 = float(resid @ resid) / df
    se = np.sqrt(s2 * np.diag(np.linalg.pinv(x.T @ x)))
    crit = float(stats.t.ppf((1 + level) / 2, df))
    effects = []
    for k, name in enumerate(kept, start=1):
        b, s = float(beta[k]), float(se[k])
        # An exact fit leaves no noise: the p-value of a non-zero slope is then 0.
        p = float(2 * stats.t.sf(abs(b) / s, df)) if s > 0 else float(b == 0)
        effects.append(AxisEffect(name, b, b - crit * s, b + crit * s, p, n, units[name]))
    return AxisFit(phase, n, tuple(effects), math.sqrt(s2), df, level, tuple(left_out))


def _short(name: str) -> str:
    return name.split(" ", 1)[1] if name.startswith("log") else name


def axis_effect_text(e: AxisEffect, fit: AxisFit) -> str:
    """One line for an effect, stating n and the phase; a direction only where the interval
    excludes zero: ``log2 C effect at fixed FLOPs: +0.80 points per doubling of C, ...``."""
    fixed = " at fixed FLOPs" if e.name != CONTROL and fit.effect(CONTROL) else ""
    numbers = (
        f"{e.estimate:+.2f} points per {e.unit}, {fit.level:.0%} CI [{e.low:+.2f}, {e.high:+.2f}]"
        f", p={e.p:.2g}, n={e.n} trials ({fit.phase} phase)"
    )
    verdict = (
        f"higher {_short(e.name)} -> {e.direction} accuracy"
        if e.direction
        else "no direction shown"
    )
    return f"{e.name} effect{fixed}: {numbers}: {verdict}"


def axis_effect_lines(fit: AxisFit, names: Sequence[str] | None = None) -> list[str]:
    """The fit as lines for people: the effects of ``names`` (all by default), then the fit and
    the axes it left out; or the one reason there is no estimate."""
    head = f"axis effects on accuracy, pooled over {fit.n} complete {fit.phase}-phase trials"
    left = "; ".join(f"{name} left out ({why})" for name, why in fit.left_out)
    if fit.reason:
        return [f"{head}: no estimate, {fit.reason}" + (f"; {left}" if left else "")]
    shown = [e for e in fit.effects if names is None or e.name in names]
    lines = [axis_effect_text(e, fit) for e in shown]  # the others are named in ``left``
    tail = f"{head} (least squares, residual SD {fit.residual_sd:.2f} points, df {fit.df})"
    return [*lines, tail + (f"; {left}" if left else "")]
