"""One record per trial: what ``trials --json``, the dashboard and ``export`` read.

:func:`trial_record` is the one reader of a trial's state, attributes and values; a new trial
attribute is added here once. What the attributes mean (phase, configuration, notation, the
state shown to people) is :mod:`nas.search.attrs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.attrs import (
    ATTR,
    SEARCH,
    config_key,
    display_state,
    notation,
    phase,
    retried_from,
)
from nas.search.space import depths_key
from nas.search.storage import load, open_storage, quiet_optuna
from nas.stats.model import intervals
from nas.stats.recommend import mean_interval
from resnext.budget import pareto_mask
from resnext.complexity import complexity
from resnext.spec import Spec

FRONT_METRICS = ("flops", "params", "latency", "activations")
COUNTED = ("flops", "params", "activations")  # counted from the spec when not stored


def spec_key(spec: dict[str, Any] | Spec) -> tuple:
    """A hashable key of a spec, the same for a :class:`Spec`, its dict and its JSON round trip."""
    d = spec.to_dict() if isinstance(spec, Spec) else spec
    return tuple((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in sorted(d.items()))


def objectives_of(study: optuna.Study) -> list[str]:
    """The study's objectives as ``search`` named them (``["error"]`` for a foreign study)."""
    return study.user_attrs.get(ATTR, {}).get("objectives", ["error"])


def _note(t: FrozenTrial, a: dict[str, Any], bad: list[str]) -> str | None:
    if bad:
        return f"attribute{'s' * (len(bad) > 1)} {', '.join(bad)} of the wrong type, left out"
    if a.get("rejected") or a.get("error"):
        return a.get("rejected") or a.get("error")
    retried = retried_from(t)
    if retried is not None:
        return f"retry of #{retried}"
    if t.state == TrialState.FAIL:
        # requeue_interrupted queues it again at once; a lost worker's waits for its heartbeat.
        return "interrupted" if a.get("interrupted") else "worker lost (heartbeat)"
    if a.get("repeat"):
        return f"repeat {a['repeat']} (seed {a.get('seed')})"
    return None


# Attributes a trial of ours holds, with the type each must have. A shared database can be
# edited by hand: a value of another type is coerced (a number written as text) or left out
# with a note, so that one bad trial never stops ``trials``, the dashboard or ``export``.
NUMBER_ATTRS = (
    *COUNTED,
    "latency",
    "val_accuracy",
    "final_val_accuracy",
    "images_per_second",
    "train_images_per_second",
    "inference_images_per_second",
    "wall_seconds",
)
INT_ATTRS = ("seed", "repeat")
TEXT_ATTRS = ("status", "weights", "host", "baseline", "error", "rejected", "augment")


def _number(v: Any) -> float | int | None:
    """``v`` as a finite number (text such as "0.5" read as one); None if it is none."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v if np.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if np.isfinite(f) else None
    return None


def _spec(v: Any) -> dict[str, Any] | None:
    """``v`` as a spec dict that :meth:`Spec.from_dict` accepts, else None."""
    if not isinstance(v, dict):
        return None
    try:
        return Spec.from_dict(v).to_dict()
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def clean_attrs(attrs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The trial attributes with each known one of its type, and the names of those left out.

    A number stored as text is read as the number; anything else of the wrong type is dropped
    (and named), so that readers get None, as for a trial that never stored it.
    """
    a = dict(attrs)
    bad = []

    def drop(key: str) -> None:
        a.pop(key, None)
        bad.append(key)

    for key in NUMBER_ATTRS:
        if a.get(key) is not None:
            v = _number(a[key])
            if v is None:
                drop(key)
            else:
                a[key] = int(v) if key in ("flops", "params", "activations") else v
    for key in INT_ATTRS:
        if a.get(key) is not None:
            v = _number(a[key])
            if v is None or v != int(v):
                drop(key)
            else:
                a[key] = int(v)
    for key in TEXT_ATTRS:
        if a.get(key) is not None and not isinstance(a[key], str | bool):
            a[key] = str(a[key])
    if a.get("spec") is not None:
        spec = _spec(a["spec"])
        if spec is None:
            drop("spec")
        else:
            a["spec"] = spec
    names = a.get("class_names")
    if names is not None and not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        drop("class_names")
    if a.get("hparams") is not None:
        h = a["hparams"]
        ok = isinstance(h, dict) and all(
            isinstance(k, str) and _number(v) is not None for k, v in h.items()
        )
        if ok:
            a["hparams"] = {k: _number(v) for k, v in h.items()}
        else:
            drop("hparams")
    for key in ("curve", "history"):
        if a.get(key) is not None:
            h = a[key]
            ok = isinstance(h, list) and all(isinstance(e, dict) for e in h)
            if ok:
                a[key] = [
                    {**e, "val_accuracy": _number(e.get("val_accuracy"))}
                    if "val_accuracy" in e
                    else e
                    for e in h
                ]
            else:
                drop(key)
    return a, bad


def trial_record(t: FrozenTrial, study_name: str) -> dict[str, Any]:
    """One JSON-ready dict of a trial: identity, spec, complexity, accuracy, speed, history.

    ``val_accuracy`` is the ``val_accuracy`` attribute (the best epoch's), else ``1 - value`` of
    a single-objective study (the objective is the error), else the best of the history (a pruned
    trial's best so far). FLOPs, params and activations missing from the attributes are counted
    from the spec. ``hparams`` are the tuned hyper-parameters the trial trained with;
    ``optuna_params`` are all its Optuna parameters, architecture included. Attributes of the
    wrong type are left out and named in the note (:func:`clean_attrs`).
    """
    a, bad = clean_attrs(t.user_attrs)
    # The search stores the per-epoch curve as "curve"; "history" is accepted too.
    history = list(a.get("curve") or a.get("history") or [])
    acc = a.get("val_accuracy")
    if acc is None and t.values is not None and len(t.values) == 1:
        acc = 1.0 - t.values[0]
    if acc is None:
        seen = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None]
        acc = max(seen) if seen else None
    spec = a.get("spec")
    counted = {k: a.get(k) for k in COUNTED}
    if spec is not None and None in counted.values():
        counted = {
            **complexity(Spec.from_dict(spec)).to_dict(),
            **{k: v for k, v in counted.items() if v is not None},
        }
    return {
        "number": t.number,
        "state": display_state(t),
        "spec": spec,
        "notation": notation(spec) if spec else None,
        **counted,
        "latency": a.get("latency"),
        "val_accuracy": acc,
        "final_val_accuracy": a.get("final_val_accuracy"),  # of the saved final weights
        "error": None if acc is None else 1 - acc,
        "values": t.values,
        "history": history,
        "epochs": len(history),
        "train_images_per_second": a.get("images_per_second", a.get("train_images_per_second")),
        "inference_images_per_second": a.get("inference_images_per_second"),
        "wall_seconds": a.get("wall_seconds"),
        "status": a.get("status"),
        "baseline": a.get("baseline"),
        "hparams": a.get("hparams", {}),
        "optuna_params": dict(t.params),
        "seed": a.get("seed"),
        "repeat": a.get("repeat"),
        "phase": phase(t),  # search (proxy) or confirm (nas.search.confirm)
        "class_names": a.get("class_names"),  # the data's, in label order; None: not recorded
        "augment": a.get("augment"),  # the data's augmentation family (scoring view)
        "weights": a.get("weights"),
        "weights_error": a.get("weights_error"),  # why they were not saved
        "host": a.get("host"),
        "note": _note(t, a, bad),
        "study": study_name,
    }


def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """:func:`trial_record` of every trial of the study, in order."""
    return [trial_record(t, study.study_name) for t in study.get_trials(deepcopy=False)]


def mark_front(records: list[dict[str, Any]], front: str) -> None:
    """Set ``pareto`` on each record: on the (error, ``front``) front of the complete trials."""
    if front not in FRONT_METRICS:
        raise ValueError(f"--front takes one of {', '.join(FRONT_METRICS)}, got {front!r}")
    for r in records:
        r["pareto"] = False
    done = [r for r in records if r["state"] == "COMPLETE" and r[front] is not None]
    if done:
        mask = pareto_mask(
            np.array([r[front] for r in done], dtype=float),
            np.array([r["error"] for r in done], dtype=float),
        )
        for r, m in zip(done, mask, strict=True):
            r["pareto"] = bool(m)


def config_groups(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records with an accuracy grouped by phase, spec and hyper-parameters (repeats and seeds).

    The phases train with different schedules, so a proxy and a confirmation trial of one
    config are two measurements of different things.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["spec"] is not None and r["val_accuracy"] is not None:
            key = (r.get("phase"), config_key(r["spec"], r["hparams"]))
            groups.setdefault(key, []).append(r)
    return groups


def config_intervals(
    groups: dict[tuple[str, str], list[dict[str, Any]]],
) -> dict[tuple[str, str], tuple[float, float] | None]:
    """Each group's 95% interval of its true accuracy, from one model of its phase
    (:func:`nas.stats.model.intervals`: the seed noise pooled over the phase's configurations,
    inside [0, 1]); None for a group of one trial or a phase without measured noise."""
    out: dict[tuple[str, str], tuple[float, float] | None] = {}
    for ph in {key[0] for key in groups}:
        mine = {key: [r["val_accuracy"] for r in g] for key, g in groups.items() if key[0] == ph}
        named = intervals({key[1]: v for key, v in mine.items()})
        out.update({key: named[key[1]] for key in mine})
    return out


def mark_config_means(records: list[dict[str, Any]]) -> None:
    """Set ``spec_trials``, ``spec_mean_accuracy`` and ``spec_ci95`` over the complete trials of
    the same config and phase; the interval is the phase model's (:func:`config_intervals`)."""
    for r in records:
        r["spec_trials"], r["spec_mean_accuracy"], r["spec_ci95"] = 0, None, None
    groups = config_groups(r for r in records if r["state"] == "COMPLETE")
    cis = config_intervals(groups)
    for key, group in groups.items():
        accs = [r["val_accuracy"] for r in group]
        ci = None if cis[key] is None else list(cis[key])
        for r in group:
            r["spec_trials"], r["spec_mean_accuracy"], r["spec_ci95"] = (
                len(accs),
                sum(accs) / len(accs),
                ci,
            )


def trial_rows(study: optuna.Study, front: str | None = None) -> list[dict[str, Any]]:
    """The records of ``trials``: each with ``pareto`` on the (error, ``front``) front and its
    config's mean accuracy; ``spec`` is the notation there and ``spec_dict`` the spec.

    ``front`` defaults to the study's second objective, or FLOPs for a single-objective study.
    """
    objectives = objectives_of(study)
    front = front or (objectives[1] if len(objectives) > 1 else "flops")
    rows = trial_records(study)
    mark_front(rows, front)
    mark_config_means(rows)
    # The `trials --json` contract: the notation under "spec", the dict under "spec_dict".
    return [{**r, "spec": r["notation"], "spec_dict": r["spec"]} for r in rows]


def best_config(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The proxy config with the best mean accuracy over its complete search-phase trials, if
    any has several.

    A sampler that returns to a config trains it with the next seed; the best single trial is
    then a maximum over seeds, biased upwards, and the mean is the fairer pick. The answer of a
    search is the confirmed recommendation (:func:`nas.search.confirm.recommendation`), not this.
    """
    records = [{**r, "spec": r.get("spec_dict", r["spec"])} for r in rows]
    groups = config_groups(
        r for r in records if r["state"] == "COMPLETE" and r.get("phase", SEARCH) == SEARCH
    )
    if not any(len(g) > 1 for g in groups.values()):
        return None
    g = max(groups.values(), key=lambda g: sum(r["val_accuracy"] for r in g) / len(g))
    accs = [r["val_accuracy"] for r in g]
    return {
        "spec": g[0]["notation"],
        "hparams": g[0]["hparams"],
        "trials": [r["number"] for r in g],
        "mean_accuracy": sum(accs) / len(accs),
        "std_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
        "ci95": mean_interval(accs, bounds=(0.0, 1.0)).to_list(),
    }


def study_rows(storage: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per study of the storage: name, directions, trials by state, and the
    study's ``answer`` (:func:`nas.search.answer.study_answer`: the recommendation, or the best
    single proxy trial while there is none; None before any complete trial)."""
    from nas.search.answer import study_answer

    quiet_optuna()
    st = open_storage(storage, read_only=True)
    rows = []
    for s in st.get_all_studies():
        trials = st.get_all_trials(st.get_study_id_from_name(s.study_name), deepcopy=False)
        by_state: dict[str, int] = {}
        for t in trials:
            by_state[display_state(t)] = by_state.get(display_state(t), 0) + 1
        rows.append(
            {
                "name": s.study_name,
                "objectives": s.user_attrs.get(ATTR, {}).get("objectives"),
                "directions": [d.name.lower() for d in s.directions],
                "trials": by_state,
                "answer": study_answer(list(trials), s.user_attrs),
            }
        )
    return rows


def load_records(name: str, storage: str | None = None) -> list[dict[str, Any]]:
    """The records of an existing study (see :func:`nas.search.storage.load`)."""
    return trial_records(load(name, storage, read_only=True))


# Columns of `trials --csv`: the scalar fields of trial_rows, the spec's fields spelt out.
_NOT_CSV = ("spec_dict", "values", "hparams", "optuna_params", "history", "spec_ci95")
SPEC_COLUMNS = ("cardinality", "bottleneck_width", "depths", "width")


def csv_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of :func:`trial_rows` as a CSV table: scalars only, with the spec's
    cardinality, bottleneck width, depths (``3-4-6-3``) and width as columns of their own."""
    if not rows:
        return [], []
    cols = [k for k in rows[0] if k not in _NOT_CSV]
    cols[cols.index("spec") + 1 : cols.index("spec") + 1] = list(SPEC_COLUMNS)
    table = []
    for r in rows:
        spec = r["spec_dict"] or {}
        fields = {k: spec.get(k) for k in SPEC_COLUMNS}
        if spec:
            fields["depths"] = depths_key(tuple(spec["depths"]))
        table.append({**r, **fields})
    return cols, table
