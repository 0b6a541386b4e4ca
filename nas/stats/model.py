"""One model of a phase's accuracies: a configuration effect plus seed noise shared by all.

Every configuration of a study's phase is trained by the same trainer on the same data and
schedule, so the seed-to-seed spread is one quantity, estimated from all of them:

    accuracy[j, s] = mu + a_j + e_js,   a_j ~ N(0, tau^2),   e_js ~ N(0, sigma^2)

- **sigma** (``noise_sd``): the pooled within-configuration SD over every configuration with two
  or more seeds, on ``sum(n_j - 1)`` degrees of freedom (the REML estimate of a balanced design).
- **tau**: the spread of the true configuration accuracies, by REML given sigma. The restricted
  likelihood of tau is also its marginal posterior under flat priors on mu and tau, the very
  function the draws below sample from, so the estimate printed and the uncertainty carried into
  P(best) come from one place. The method of moments (the ANOVA estimator) truncates negative
  estimates to zero and gives no distribution to carry; at three to eight configurations it is
  also the noisier of the two.
- **Posterior draws** of every configuration's true accuracy (Gelman et al., *Bayesian Data
  Analysis*, 3rd ed., section 5.4, with sigma unknown): ``sigma^2 ~ SS / chi2(df)``; tau given
  sigma on a grid, uniform on [0, 0.5] (the configurations of an accuracy cannot spread further);
  mu given tau; each ``theta_j`` shrunk towards mu by ``tau^2 / (tau^2 + sigma^2 / n_j)``. The
  draws carry the uncertainty in sigma and in tau, so two seeds give a usable interval (they
  borrow the pooled variance) and P(best) is calibrated over studies drawn from the model
  (``benchmarks/bench_p_best.py``). sigma's posterior is represented by its 64 quantile
  midpoints, so tau's grid posterior is computed 64 times, not once a draw. An accuracy lies in
  [0, 1]: intervals are quantiles of the draws inside it (the posterior under a prior truncated
  to [0, 1]).

numpy and scipy only; no Optuna, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

# The prior of tau is uniform on [0, TAU_MAX]: accuracies lie in [0, 1], so the configurations'
# true accuracies cannot have an SD above 0.5.
TAU_MAX = 0.5
# tau's grid: log-spaced from TAU_MIN (far below any seed noise an accuracy on a finite validation
# set shows) to TAU_MAX, each point weighted by the width it stands for (a uniform prior).
TAU_MIN = 1e-5
GRID = 160
DRAWS = 4000
# Quantiles of sigma's posterior that stand for it when tau's posterior is computed.
SIGMAS = 64


def _grid() -> tuple[np.ndarray, np.ndarray]:
    edges = np.concatenate([[0.0], np.geomspace(TAU_MIN, TAU_MAX, GRID)])
    mids = (edges[1:] + edges[:-1]) / 2
    return mids, np.log(np.diff(edges))


def _restricted_loglik(
    means: np.ndarray, var: np.ndarray, tau: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log restricted likelihood of tau, mu's mean and variance given tau (BDA3 eq. 5.21).

    ``var`` has shape (..., J), the variance of each configuration's mean; ``tau`` broadcasts
    against its leading axes; the last axis is summed over.
    """
    s = var + tau[..., None] ** 2
    w = 1 / s
    v_mu = 1 / w.sum(-1)
    mu = (w * means).sum(-1) * v_mu
    ll = (
        0.5 * np.log(v_mu)
        - 0.5 * np.log(s).sum(-1)
        - 0.5 * (w * (means - mu[..., None]) ** 2).sum(-1)
    )
    return ll, mu, v_mu


@dataclass(frozen=True)
class Fit:
    """A phase's accuracies under the model: raw means, noise, tau and posterior draws."""

    names: tuple[str, ...]
    counts: np.ndarray  # seeds of each configuration
    means: np.ndarray  # raw mean accuracy of each configuration
    noise_sd: float  # pooled seed-to-seed SD; nan when no spread was measured
    noise_df: int  # its degrees of freedom
    tau: float  # REML spread of the true configuration accuracies; nan without noise
    draws: np.ndarray | None  # (draws, J) posterior draws of the true accuracies

    @property
    def measured(self) -> bool:
        """Whether the seed noise was measured (two seeds of a configuration that differ)."""
        return self.draws is not None

    def index(self, name: str) -> int:
        """Position of configuration ``name``."""
        return self.names.index(name)

    @property
    def shrunk(self) -> np.ndarray:
        """Posterior mean accuracies (the estimates used for ranking); raw means without noise."""
        if self.draws is None:
            return self.means
        return _inside(self.draws).mean(axis=0)

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float] | None:
        """The ``level`` posterior interval of a configuration's true accuracy, inside [0, 1].

        None for a configuration with one seed (it shows its value and the pooled SD) or while
        the noise is unmeasured.
        """
        if self.draws is None or self.counts[self.index(name)] < 2:
            return None
        return self.bounds(name, level)

    def bounds(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """The ``level`` posterior interval of a configuration's accuracy inside [0, 1], even on
        one seed (the verdicts' reading); needs measured noise."""
        if self.draws is None:
            raise ValueError("the noise is not measured: no posterior to draw from")
        x = self.draws[:, self.index(name)]
        x = x[(x >= 0) & (x <= 1)]
        lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def difference(self, a: str, b: str) -> np.ndarray:
        """Posterior draws of ``theta_a - theta_b`` (both inside [0, 1])."""
        if self.draws is None:
            raise ValueError("the noise is not measured: no posterior to draw from")
        da, db = self.draws[:, self.index(a)], self.draws[:, self.index(b)]
        return np.clip(da, 0, 1) - np.clip(db, 0, 1)

    def p_best(self) -> dict[str, float]:
        """P(each configuration has the highest true accuracy); nan without noise (one: 1.0)."""
        if len(self.names) == 1:
            return {self.names[0]: 1.0}
        if self.draws is None:
            return dict.fromkeys(self.names, math.nan)
        top = self.draws.argmax(axis=1)
        share = np.bincount(top, minlength=len(self.names)) / len(top)
        return {n: float(p) for n, p in zip(self.names, share, strict=True)}


def _inside(draws: np.ndarray) -> np.ndarray:
    return np.clip(draws, 0, 1)


def _reml_tau(means: np.ndarray, var: np.ndarray) -> float:
    """The tau that maximises the restricted likelihood given the means' variances."""
    if len(means) < 2:
        return 0.0

    def neg(t: float) -> float:
        return -float(_restricted_loglik(means, var, np.asarray(t))[0])

    found = optimize.minimize_scalar(neg, bounds=(0.0, TAU_MAX), method="bounded")
    best = float(found.x)
    return 0.0 if neg(0.0) <= neg(best) else best


def fit(accuracies: Mapping[str, Mapping[int, float]], draws: int = DRAWS, seed: int = 0) -> Fit:
    """Fit the model to ``configuration -> seed -> accuracy`` (fractions; seeded draws)."""
    names = tuple(sorted(k for k, v in accuracies.items() if v))
    values = [np.asarray([accuracies[k][s] for s in sorted(accuracies[k])], float) for k in names]
    counts = np.array([len(v) for v in values])
    means = np.array([v.mean() for v in values]) if names else np.zeros(0)
    df = int(sum(len(v) - 1 for v in values))
    ss = float(sum(((v - v.mean()) ** 2).sum() for v in values))
    if df == 0 or ss == 0:
        return Fit(names, counts, means, math.nan, df, math.nan, None)
    noise_sd = math.sqrt(ss / df)
    tau = _reml_tau(means, noise_sd**2 / counts)
    rng = np.random.default_rng(seed)
    # sigma^2's posterior is a scaled inverse chi-square; its SIGMAS quantile midpoints stand for
    # it (equal weights), so tau's grid posterior is computed once a quantile, not once a draw.
    q = (np.arange(SIGMAS) + 0.5) / SIGMAS
    sigma2 = ss / stats.chi2.ppf(1 - q, df)
    var = sigma2[:, None, None] / counts  # (Q, 1, J)
    tau_grid, log_prior = _grid()
    ll, mu_hat, v_mu = _restricted_loglik(means, var, tau_grid[None, :])  # (Q, G)
    logp = ll + log_prior
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    which = rng.integers(0, SIGMAS, size=draws)
    pick = (cdf[which] < rng.random((draws, 1))).sum(axis=1)
    t2 = tau_grid[pick] ** 2
    mu = mu_hat[which, pick] + np.sqrt(v_mu[which, pick]) * rng.standard_normal(draws)
    v = var[which, 0, :]  # (draws, J)
    prec = 1 / v + 1 / t2[:, None]
    centre = (means / v + mu[:, None] / t2[:, None]) / prec
    out = centre + rng.standard_normal((draws, len(names))) / np.sqrt(prec)
    return Fit(names, counts, means, noise_sd, df, tau, out)


def intervals(
    values: Mapping[str, list[float]], level: float = 0.95
) -> dict[str, tuple[float, float] | None]:
    """Each group's 95% interval of its true accuracy under one model of all the groups (one
    phase's configurations): None for a group of one value, or while no noise is measured."""
    model = fit({k: dict(enumerate(v)) for k, v in values.items() if v})
    return {k: model.interval(k, level) if k in model.names else None for k in values}
