"""What the dashboard may claim from n trials: minimum n per panel, intervals, verdicts.

Every statistic on the page states the n it rests on and an interval where one exists. Below a
panel's minimum n the panel says "too few trials for ...: N more needed" instead of a verdict,
and no direction is stated unless its 95% interval excludes zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.stats.rank import Estimate, bootstrap, spearman

LEVEL = 0.95
# Minimum n per panel. Below these the panel states no verdict, only how many more it needs.
# Importances and directions: PED-ANOVA's top quantile (10%) holds a single trial below 10.
MIN_IMPORTANCE = 10
# An EDF line: with n=5 the 95% DKW band is already +-0.61, wide but no longer the whole axis.
MIN_EDF_GROUP = 5
# Resamples of the bootstrap intervals: enough for 2.5%/97.5% percentiles to two decimals, and
# few enough that a 5,000-trial page still builds in seconds.
RESAMPLES = 400


def too_few(what: str, n: int, need: int) -> str | None:
    """``too few trials for WHAT: N more needed`` when ``n < need``, else None."""
    return f"too few trials for {what}: {need - n} more needed" if n < need else None


def dkw_epsilon(n: float, alpha: float = 1 - LEVEL) -> float:
    """Half-width of the Dvoretzky-Kiefer-Wolfowitz band of an EDF of ``n`` samples.

    ``P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2)``, so ``eps = sqrt(ln(2/alpha) / (2n))``
    (Massart's constant).
    """
    if n <= 0:
        raise ValueError(f"the DKW band needs n > 0, got {n}")
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def effective_n(weights: Sequence[float]) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of weighted samples (n if equal)."""
    w = np.asarray(weights, dtype=float)
    w = w[w > 0]
    return float(w.sum() ** 2 / (w * w).sum()) if len(w) else 0.0


def ks_critical(n: float, m: float, alpha: float = 1 - LEVEL) -> float:
    """The two-sample KS statistic above which the EDFs differ at level ``alpha`` (asymptotic).

    ``c(alpha) sqrt((n + m) / (n m))`` with ``c(alpha) = sqrt(-ln(alpha / 2) / 2)``.
    """
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def _interval(e: Estimate) -> str:
    return f"[{e.low:+.2f}, {e.high:+.2f}]"


def excludes_zero(e: Estimate) -> bool:
    """Whether the interval lies wholly on one side of zero."""
    return e.low > 0 or e.high < 0


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _mean_gap(best: float, other: float) -> Any:
    def stat(x: np.ndarray, y: np.ndarray) -> float:
        a, b = y[x == best], y[x == other]
        return float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")

    return stat


def effect(name: str, values: list[Any], accuracies: list[float]) -> dict[str, Any]:
    """How one param moves accuracy, with its bootstrap interval over trials and its n.

    Below ``MIN_IMPORTANCE`` values there is no estimate and no direction.
    Numeric params: Spearman's rho between the value and the accuracy. Categorical ones: the gap
    in mean accuracy (points) between the best choice and the runner-up. ``direction`` is
    "higher"/"lower" (numeric) or the best choice, and None unless the interval excludes zero.
    """
    n = len(values)
    if n < MIN_IMPORTANCE:  # a bootstrap of three monotone points is "certain": say nothing
        return {"name": name, "n": n, "kind": "too few", "estimate": None, "direction": None}
    if len(set(map(repr, values))) < 2:
        return {"name": name, "n": n, "kind": "constant", "estimate": None, "direction": None}
    if all(_is_number(v) for v in values):
        est = bootstrap(spearman, values, accuracies, n=RESAMPLES)
        direction = ("higher" if est.value > 0 else "lower") if excludes_zero(est) else None
        return {"name": name, "n": n, "kind": "rank", "estimate": est, "direction": direction}
    labels = sorted({str(v) for v in values})
    codes = [float(labels.index(str(v))) for v in values]
    means = {
        k: statistics.fmean(a for c, a in zip(codes, accuracies, strict=True) if c == i)
        for i, k in enumerate(labels)
    }
    best, second = sorted(labels, key=lambda k: -means[k])[:2]
    gap = _mean_gap(float(labels.index(best)), float(labels.index(second)))
    est = bootstrap(gap, codes, [100 * a for a in accuracies], n=RESAMPLES)
    return {
        "name": name,
        "n": n,
        "kind": "best",
        "best": best,
        "runner_up": second,
        "estimate": est,
        "direction": best if excludes_zero(est) else None,
    }


def effect_text(e: dict[str, Any], short: str) -> str:
    """One line for an :func:`effect`: the verdict only where its interval excludes zero."""
    n = e["n"]
    est: Estimate | None = e["estimate"]
    if e["kind"] == "too few":
        return f"{short}: {too_few('a direction', n, MIN_IMPORTANCE)}"
    if est is None:
        return f"{short}: one value only (n={n})"
    if e["kind"] == "rank":
        rho = f"Spearman {est.value:+.2f}, 95% CI {_interval(est)}, n={n}"
        if e["direction"] is None:
            return f"{short}: no direction shown ({rho})"
        return f"higher {short} -> {e['direction']} accuracy ({rho})"
    gap = f"{est.value:+.2f} points over {e['runner_up']}, 95% CI {_interval(est)}, n={n}"
    if e["direction"] is None:
        return f"{short}: no best choice shown ({e['best']} {gap})"
    return f"best {short}: {e['best']} ({gap})"
