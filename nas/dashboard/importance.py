"""PED-ANOVA parameter importances with a bootstrap interval over complete trials.

The point estimate is Optuna's default evaluator (PED-ANOVA, no scikit-learn) on the study's
complete trials of one phase (proxy or confirmation: another schedule, never pooled), with the
error as a lower-is-better target. The interval resamples those
trials with replacement, rebuilds an in-memory study of each resample through Optuna's public
API (``create_study`` and ``add_trials``) and runs the same evaluator again: a seeded 95%
percentile interval over ``RESAMPLES`` replicates. Above ``MAX_DRAWN`` trials each replicate
draws ``MAX_DRAWN`` of them (an m-out-of-n bootstrap): the interval is then that of ``MAX_DRAWN``
trials, wider than the n-trial one, so it errs on the side of doubt.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.dashboard.evidence import LEVEL, MIN_IMPORTANCE
from nas.search.attrs import SEARCH, phase

# Replicates of the bootstrap: a rough 2.5%/97.5% percentile, but a 5,000-trial page must still
# build in seconds (each replicate copies its trials into a new study: ~0.2 ms a trial).
RESAMPLES = 50
# Trials per replicate above which a replicate draws only this many (see the module docstring).
MAX_DRAWN = 500
SEED = 0


@dataclass(frozen=True)
class Importances:
    """Normalised PED-ANOVA importances of the params, with their bootstrap interval.

    ``low``/``high`` are None below ``MIN_IMPORTANCE`` trials (no interval is drawn there);
    ``resamples`` counts the replicates that gave importances, each of ``drawn`` trials.
    """

    importance: dict[str, float]
    low: dict[str, float] | None
    high: dict[str, float] | None
    n: int
    resamples: int
    drawn: int


def error(t: FrozenTrial) -> float:
    """A trial's error: 1 - its ``val_accuracy``, else its single value; nan if it has neither."""
    acc = t.user_attrs.get("val_accuracy")
    if acc is None and t.values is not None and len(t.values) == 1:
        return float(t.values[0])
    return float("nan") if acc is None else 1.0 - float(acc)


@contextmanager
def _silent() -> Iterator[None]:
    """Optuna at WARNING while in-memory studies are made: not a line per study."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _quiet(fn: Callable[[], dict[str, float]]) -> dict[str, float] | None:
    # PED-ANOVA warns about small regimes and its target; the panel states n and the interval.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except (ValueError, RuntimeError):  # e.g. no param shared by every complete trial
            return None


def evaluate(trials: Sequence[FrozenTrial], params: list[str] | None) -> dict[str, float] | None:
    """PED-ANOVA importances (normalised) of ``params`` (None: all) over ``trials`` whose value
    is the error, in a new in-memory study; None when Optuna cannot evaluate them."""
    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    return _quiet(lambda: optuna.importance.get_param_importances(study, params=params))


def phase_done(study: optuna.Study, ph: str = SEARCH) -> list[FrozenTrial]:
    """The study's complete trials of phase ``ph``."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in done if phase(t) == ph]


def error_trials(study: optuna.Study, ph: str = SEARCH) -> list[FrozenTrial]:
    """The complete trials of phase ``ph`` with a finite error, as bare trials whose one value
    is that error."""
    out = []
    for t in phase_done(study, ph):
        e = error(t)
        if math.isfinite(e):
            # Params and the error only: a replicate copies every trial it draws.
            out.append(
                optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=e)
            )
    return out


def bootstrap_importances(
    trials: Sequence[FrozenTrial],
    params: list[str],
    resamples: int = RESAMPLES,
    max_drawn: int = MAX_DRAWN,
    seed: int = SEED,
) -> tuple[np.ndarray, int]:
    """Importances of ``params`` (columns) in each replicate that gave some (rows), and the
    number of trials drawn per replicate: ``min(len(trials), max_drawn)``, with replacement."""
    rng = np.random.default_rng(seed)
    drawn = min(len(trials), max_drawn)
    rows = []
    with _silent():
        for _ in range(resamples):
            picked = rng.integers(0, len(trials), size=drawn)
            got = evaluate([trials[i] for i in picked], params)
            if got is not None:
                rows.append([got.get(p, 0.0) for p in params])
    return np.array(rows, dtype=float).reshape(len(rows), len(params)), drawn


def param_importances(
    study: optuna.Study, resamples: int = RESAMPLES, seed: int = SEED, ph: str = SEARCH
) -> Importances | None:
    """PED-ANOVA importances of the params for accuracy with their 95% percentile bootstrap
    interval over the complete trials of phase ``ph``; None with too few or constant trials."""
    done = phase_done(study, ph)
    varying = {
        name
        for name in {n for t in done for n in t.params}
        if len({repr(t.params.get(name)) for t in done}) > 1
    }
    if len(done) < 2 or not varying:
        return None
    # Optuna 5's default evaluator, PED-ANOVA, ranks params by how much they matter for reaching
    # the top quantile of a lower-is-better target: the error; on a copy of this phase's trials.
    trials = error_trials(study, ph)
    with _silent():
        point = evaluate(trials, None)
    if point is None:
        return None
    n = len(trials)
    if n < MIN_IMPORTANCE:  # the panel shows no importances below this: no interval either
        return Importances(point, None, None, n, 0, 0)
    params = list(point)
    reps, drawn = bootstrap_importances(trials, params, resamples, seed=seed)
    if not len(reps):
        return Importances(point, None, None, n, 0, drawn)
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail], axis=0)
    return Importances(
        point,
        {p: float(v) for p, v in zip(params, lo, strict=True)},
        {p: float(v) for p, v in zip(params, hi, strict=True)},
        n,
        len(reps),
        drawn,
    )
