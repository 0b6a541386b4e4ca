"""What a stored trial's attributes mean: its phase, its configuration, its notation, its state.

Every reader of a trial (the worker loop, ``trials``, the dashboard, ``export``) asks these
questions through here, so that they read a study the same way. Trial states as shown to people:
``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``, and ``rejected`` or ``surplus`` for
trials that Optuna records as pruned but that never trained.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from resnext.spec import Spec

ATTR = "resnext_nas"  # the study user attribute holding the space and objectives

# A trial's ``phase`` attribute: a proxy trial of the search, or a confirmation trial that
# retrains a top configuration with a longer schedule (nas.search.confirm).
SEARCH, CONFIRM = "search", "confirm"


def phase(t: FrozenTrial) -> str:
    """A trial's phase: ``confirm`` for a confirmation trial, else ``search``."""
    return t.user_attrs.get("phase", SEARCH)


def config_key(spec: dict[str, Any] | Spec | None, hparams: dict[str, Any] | None) -> str:
    """One configuration's identity: its spec and tuned hyper-parameters, as JSON.

    A confirmation trial stores the key of the configuration it confirms (``confirm_of``), so
    this text must not change: studies written before must still match their trials.
    """
    d = spec.to_dict() if isinstance(spec, Spec) else spec
    return json.dumps([d, hparams or {}], sort_keys=True)


def config_of(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec and hyper-parameters of a :func:`config_key`."""
    spec, hparams = json.loads(key)
    return spec, hparams


def notation(spec: Spec | dict[str, Any]) -> str:
    """The paper's notation with the skeleton, e.g. ``8x14d 3-4-6-3 w256``."""
    s = spec if isinstance(spec, Spec) else Spec.from_dict(spec)
    return f"{s.notation} {'-'.join(map(str, s.depths))} w{s.width}"


def display_state(t: FrozenTrial) -> str:
    """The state shown to people (see the module docstring)."""
    if "surplus" in t.user_attrs:
        return "surplus"
    if "rejected" in t.user_attrs:
        return "rejected"
    return t.state.name


def is_trained(t: FrozenTrial) -> bool:
    """Whether a finished trial trained, completely or pruned, in either phase."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) and display_state(t) == t.state.name


def is_trained_proxy(t: FrozenTrial) -> bool:
    """Whether a trial is a trained proxy (search-phase) trial: one of the ``--trials``.

    Confirmation trials (phase ``confirm``) are counted apart.
    """
    return is_trained(t) and phase(t) != CONFIRM


def retried_from(t: FrozenTrial) -> int | None:
    """The number of the trial that ``t`` retries (a heartbeat or interrupt retry), if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" since Optuna 2.8
        return optuna.storages.RetryFailedTrialCallback.retried_trial_number(t)
