"""Drawing a trial's spec and hyper-parameters from a space, define-by-run with Optuna.

:func:`suggest_spec` draws with stable parameter names (:func:`nas.search.space.spec_params`),
so that every proposal is in band by construction; a cell with no in-band d is rejected with
:class:`OutOfBudget` before any model exists.
"""

from __future__ import annotations

import optuna

from nas.search.space import SearchSpace, SpecGrid
from resnext.spec import Spec

# Log-uniform ranges of --tune-lr / --tune-wd around the paper's values (Sec. 5.3: lr 0.1,
# weight decay 5e-4 on CIFAR; Sec. 4: 1e-4 on ImageNet).
LR_RANGE = (1e-3, 1.0)
WD_RANGE = (1e-5, 1e-2)


class OutOfBudget(optuna.TrialPruned):
    """A proposal with no in-band configuration, rejected before any compute."""


def suggest_spec(trial: optuna.Trial, space: SearchSpace | SpecGrid) -> Spec:
    """Draw an in-band spec define-by-run: depths, width, cardinality, then bottleneck_width.

    Raises :class:`OutOfBudget` (a ``TrialPruned``) for a cell with no in-band d, before any
    model is built. A :class:`SpecGrid` gives one of its specs (:func:`suggest_grid_spec`).
    """
    if isinstance(space, SpecGrid):
        return suggest_grid_spec(trial, space)
    depths = trial.suggest_categorical("depths", space.depth_choices)
    width = trial.suggest_categorical("width", space.width_choices)
    cardinality = trial.suggest_categorical("cardinality", space.cardinality_choices)
    ds = space.cells.get((depths, width, cardinality))
    if not ds:
        raise OutOfBudget(
            f"no in-band bottleneck width for C={cardinality} on depths {depths}, width {width}"
        )
    if space.bottleneck_widths is None:
        # Every integer d: the in-band d of a cell form a contiguous range (monotone complexity).
        d = trial.suggest_int("bottleneck_width", ds[0], ds[-1])
    else:
        d = trial.suggest_categorical("bottleneck_width", space.d_choices)
        if d not in ds:
            raise OutOfBudget(
                f"d={d} is out of band for C={cardinality} on depths {depths}, width {width}"
            )
    return space.spec(depths, width, cardinality, d)


def suggest_hparams(trial: optuna.Trial, space: SearchSpace | SpecGrid) -> dict[str, float]:
    """The tuned training hyper-parameters (``lr``, ``weight_decay``), log-uniform, if any."""
    out = {}
    if space.tune_lr:
        out["lr"] = trial.suggest_float("lr", *LR_RANGE, log=True)
    if space.tune_wd:
        out["weight_decay"] = trial.suggest_float("weight_decay", *WD_RANGE, log=True)
    return out


def suggest_grid_spec(trial: optuna.Trial, grid: SpecGrid) -> Spec:
    """One spec of ``grid``, define-by-run with :func:`suggest_spec`'s parameter names.

    The trials of a grid study are enqueued, so the parameters are fixed; a combination that is
    not a grid spec is rejected with :class:`OutOfBudget` before any compute.
    """
    values = {n: trial.suggest_categorical(n, grid.choices(n)) for n in grid.params(grid.specs[0])}
    for s in grid.specs:
        if grid.params(s) == values:
            return s
    raise OutOfBudget(f"{values} is not a spec of the grid")
