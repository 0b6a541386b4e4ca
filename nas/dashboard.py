"""The Pareto dashboard of a study: trial records, plots of them, one self-contained page, a server.

Records are plain dicts, one per Optuna trial (the contract `resnext-nas trials --json` prints).
Plot functions take records and return :class:`plotly.graph_objects.Figure`; :func:`build_page`
assembles them into one HTML page with plotly.js inlined, so that it opens with no network;
:func:`serve` serves that page live from the study's storage.
"""

from __future__ import annotations

import html
import json
import math
import re
import statistics
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

import resnext
from nas.designspace import complexity_weights, edf, ks_statistic, pareto_front
from nas.rank import spearman
from nas.study import redact, storage_url
from resnext.complexity import format_count

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
# Above this many points a scatter is drawn with WebGL (Scattergl): SVG slows down past ~1-2k.
GL_POINTS = 1500

# ---------------------------------------------------------------------------------------------
# Storage and records


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def load_study(study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a study, turning storage and lookup failures into one-line ValueErrors."""
    url = storage_url(storage)
    shown = redact(url)
    # sqlite would silently create a missing database file: refuse instead.
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            raise ValueError(f"no study storage at {shown}: {path} does not exist")
    try:
        return optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        pass
    except Exception as e:  # sqlalchemy URL, driver and connection errors, all alike to a user
        raise ValueError(f"cannot open storage {shown}: {_first_line(e)}") from None
    names = optuna.get_all_study_names(url)
    have = f"available: {', '.join(names)}" if names else "it has no studies"
    raise ValueError(f"no study named {study_name!r} in {shown}; {have}")


_NUMBERS = ("flops", "params", "activations")
_OPTIONAL = (
    "latency",
    "train_images_per_second",
    "inference_images_per_second",
    "wall_seconds",
    "seed",
)


def records_from_study(study: optuna.Study) -> list[dict[str, Any]]:
    """One record per trial, read from the trial's state, params, value and user attributes.

    ``val_accuracy`` is the ``val_accuracy`` attribute, else ``1 - value`` of a single-objective
    study (the objective is the error), else the best ``val_accuracy`` of the history (a pruned
    trial's best so far). FLOPs, params and activations missing from the attributes are counted
    from the spec.
    """
    records = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        # The search stores the per-epoch curve as "curve" and training throughput as
        # "images_per_second" (nas.study); "history" and the long name are accepted too.
        history = list(a.get("curve") or a.get("history") or [])
        acc = a.get("val_accuracy")
        if acc is None and t.values is not None and len(t.values) == 1:
            acc = 1.0 - t.values[0]
        if acc is None:
            seen = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None]
            acc = max(seen) if seen else None
        spec = a.get("spec")
        counts = {k: a.get(k) for k in _NUMBERS}
        if spec is not None and None in counts.values():
            counts = {
                **resnext.complexity(resnext.Spec.from_dict(spec)).to_dict(),
                **{k: v for k, v in counts.items() if v is not None},
            }
        records.append(
            {
                "number": t.number,
                "state": t.state.name,
                "spec": spec,
                **counts,
                **{k: a.get(k) for k in _OPTIONAL},
                "train_images_per_second": a.get(
                    "images_per_second", a.get("train_images_per_second")
                ),
                "val_accuracy": acc,
                "history": history,
                "hparams": dict(t.params),
                "study": study.study_name,
            }
        )
    return records


def param_importances(study: optuna.Study) -> dict[str, float] | None:
    """PED-ANOVA importances of the params for accuracy; None with too few or constant trials."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = {
        name
        for name in {n for t in done for n in t.params}
        if len({repr(t.params.get(name)) for t in done}) > 1
    }
    if len(done) < 2 or not varying:
        return None

    def error(t: optuna.trial.FrozenTrial) -> float:
        acc = t.user_attrs.get("val_accuracy")
        if acc is None and t.values is not None and len(t.values) == 1:
            return float(t.values[0])
        return float("nan") if acc is None else 1.0 - float(acc)

    # Optuna 5's default evaluator, PED-ANOVA (no scikit-learn needed), ranks params by how much
    # they matter for reaching the top quantile of a lower-is-better target: the error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.importance.get_param_importances(study, target=error)
        except (ValueError, RuntimeError):  # e.g. no param shared by every complete trial
            return None


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the plots

_LABELS = {"cardinality": "C", "bottleneck_width": "d", "width": "width", "depth": "depths"}
GROUPINGS = ("cardinality", "bottleneck_width", "width", "depth")


def _spec_key(spec: dict[str, Any]) -> tuple:
    """A hashable key of a spec dict (cheaper than JSON for thousands of records)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(spec.items()))


@lru_cache(maxsize=4096)
def _spec_of(key: tuple) -> resnext.Spec:
    return resnext.Spec.from_dict(dict(key))


def _spec(r: dict[str, Any]) -> resnext.Spec | None:
    """The record's spec; thousands of trials share a few hundred specs, so parse each once."""
    return _spec_of(_spec_key(r["spec"])) if r.get("spec") else None


def _error(r: dict[str, Any]) -> float:
    """Top-1 error in percent."""
    return 100.0 * (1.0 - r["val_accuracy"])


def _complete(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["state"] == "COMPLETE" and r.get("val_accuracy") is not None and r.get("spec")
    ]


def _colours(values: Iterable[int]) -> dict[int, str]:
    """A fixed colour per cardinality, the same in every plot."""
    palette = qualitative.Plotly + qualitative.D3
    return {v: palette[i % len(palette)] for i, v in enumerate(sorted(set(values)))}


def _si(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else format_count(x) + unit


def hover_text(r: dict[str, Any]) -> str:
    """A trial in one hover label: the paper's notation, then its numbers."""
    spec = _spec(r)
    name = spec.describe() if spec else "no spec"
    acc = "n/a" if r.get("val_accuracy") is None else f"{100 * r['val_accuracy']:.2f}%"
    lat = "n/a" if r.get("latency") is None else f"{1e3 * r['latency']:.2f} ms"
    state = "" if r["state"] == "COMPLETE" else f" ({r['state'].lower()})"
    return (
        f"#{r['number']}{state} {html.escape(name)}<br>"
        f"acc {acc} · {_si(r.get('params'))} params · {_si(r.get('flops'))} FLOPs · "
        f"latency {lat}"
    )


def _array(values: list[Any]) -> np.ndarray:
    """A list as an object array: plotly validates it ~10x faster than a list of 5,000, and it
    still ships as a plain JSON list (nulls kept as gaps), which the page's script reads."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _scatter(n_points: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    arrays = {k: _array(v) for k, v in kwargs.items() if isinstance(v, list)}
    return (go.Scattergl if n_points > GL_POINTS else go.Scatter)(**{**kwargs, **arrays})


def _note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font_size=14
    )
    return fig


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title=title,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"itemsizing": "constant"},
        **kwargs,
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Pareto front

METRICS = {
    "flops": ("FLOPs (multiply-adds)", 1.0),
    "params": ("parameters", 1.0),
    "latency": ("latency (ms / image)", 1e3),
}


def pareto_figure(records: list[dict[str, Any]], metric: str = "flops") -> go.Figure:
    """Accuracy against FLOPs, params or latency: trials coloured by C, the front as a step line.

    Every point carries its trial number as ``customdata``. Pruned and failed trials that have
    an accuracy are their own traces (``meta.role`` "pruned"/"failed") so the page can hide
    them; an empty last trace (``meta.role`` "selected") is there for the page's highlight.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    label, scale = METRICS[metric]
    placed = [
        r
        for r in records
        if r.get("spec") and r.get("val_accuracy") is not None and r.get(metric) is not None
    ]
    done = [r for r in placed if r["state"] == "COMPLETE"]
    fig = go.Figure()
    colours = _colours(r["spec"]["cardinality"] for r in done)
    n = len(placed)

    def trace(rows: list[dict[str, Any]], **kwargs: Any) -> go.Scatter | go.Scattergl:
        return _scatter(
            n,
            x=[r[metric] * scale for r in rows],
            y=[r["val_accuracy"] for r in rows],
            customdata=[r["number"] for r in rows],
            text=[hover_text(r) for r in rows],
            hovertemplate="%{text}<extra></extra>",
            **kwargs,
        )

    for c, colour in colours.items():
        rows = [r for r in done if r["spec"]["cardinality"] == c]
        fig.add_trace(
            trace(
                rows,
                mode="markers",
                name=f"C={c}",
                marker={"color": colour, "size": 7},
                meta={"role": "trials"},
            )
        )
    front = [
        done[i] for i in pareto_front([r[metric] for r in done], [r["val_accuracy"] for r in done])
    ]
    fig.add_trace(
        trace(
            front,
            mode="lines+markers",
            line={"shape": "hv", "color": "black", "width": 1.5},
            marker={"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": "black", "width": 1.5}},
            name=f"Pareto front ({len(front)})",
            meta={"role": "front"},
        )
    )
    for state, symbol in (("PRUNED", "circle-open"), ("FAIL", "x-thin-open")):
        rows = [r for r in placed if r["state"] == state]
        if rows:
            fig.add_trace(
                trace(
                    rows,
                    mode="markers",
                    name=f"{state.lower()} ({len(rows)})",
                    marker={"color": "grey", "symbol": symbol, "size": 7},
                    meta={"role": "pruned" if state == "PRUNED" else "failed"},
                )
            )
    fig.add_trace(
        _scatter(
            n,
            x=[],
            y=[],
            customdata=[],
            mode="markers",
            name="selected",
            marker={"size": 15, "color": "rgba(0,0,0,0)", "line": {"color": "red", "width": 2.5}},
            hoverinfo="skip",
            showlegend=False,
            meta={"role": "selected"},
        )
    )
    _layout(
        fig,
        f"Accuracy against {label}",
        xaxis={"title": label, "type": "log"},
        yaxis={"title": "validation accuracy", "tickformat": ".1%"},
        dragmode="select",
        hovermode="closest",
    )
    if not done:
        _note(fig, f"no complete trial has a {label}")
    return fig


# ---------------------------------------------------------------------------------------------
# Design-space EDFs (Radosavovic et al. 2019)


def group_key(r: dict[str, Any], by: str) -> Any:
    """The value of ``by`` (cardinality, bottleneck_width, width, depth) for a record."""
    if by == "depth":
        return tuple(r["spec"]["depths"])
    if by in GROUPINGS:
        return r["spec"][by]
    raise ValueError(f"unknown grouping {by!r}; choose one of {', '.join(GROUPINGS)}")


def group_label(by: str, key: Any) -> str:
    """``C=8``, ``d=14``, ``width=256``, ``depths=3-4-6-3``."""
    value = "-".join(map(str, key)) if isinstance(key, tuple) else key
    return f"{_LABELS[by]}={value}"


MAX_GROUPS = 8


def group_keys(done: list[dict[str, Any]], by: str) -> list[Any]:
    """Each record's group under ``by``: its value, or its power-of-two range ``(lo, hi)`` when
    a numeric param takes more than ``MAX_GROUPS`` values (d or width drawn from a range)."""
    keys = [group_key(r, by) for r in done]
    if by == "depth" or len(set(keys)) <= MAX_GROUPS:
        return keys
    lows = [2 ** int(math.log2(k)) for k in keys]
    return [(lo, 2 * lo - 1) for lo in lows]


def _label(by: str, key: Any) -> str:
    if by != "depth" and isinstance(key, tuple):
        return (
            f"{_LABELS[by]}={key[0]}" if key[0] == key[1] else f"{_LABELS[by]}={key[0]}..{key[1]}"
        )
    return group_label(by, key)


def _normalised(
    done: list[dict[str, Any]], keys: list[Any]
) -> tuple[list[dict[str, Any]], list[Any], np.ndarray]:
    """Complexity weights, leaving out the smallest groups until the rest share a FLOPs range."""
    while done:
        try:
            return done, keys, complexity_weights([r["flops"] for r in done], keys)
        except ValueError:
            sizes = Counter(keys)
            smallest = min(sizes, key=lambda k: (sizes[k], str(k)))
            kept = [i for i, k in enumerate(keys) if k != smallest]
            done, keys = [done[i] for i in kept], [keys[i] for i in kept]
    return done, keys, np.ones(0)


def edf_groups(
    records: list[dict[str, Any]], by: str = "cardinality", normalise: bool = False
) -> dict[str, tuple[list[float], list[float]]]:
    """Errors (%) and weights of the complete trials by group label (see :func:`group_keys`).

    With ``normalise``, the weights come from :func:`complexity_weights` (equal log-FLOPs
    distribution in every group), after leaving out the smallest groups, one at a time, while
    the groups share no FLOPs range; otherwise each trial weighs 1.
    """
    done = _complete(records)
    keys = group_keys(done, by)
    if normalise:
        done, keys, weights = _normalised(done, keys)
    else:
        weights = np.ones(len(done))
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        groups[_label(by, key)] = (
            [_error(done[i]) for i in idx],
            [float(weights[i]) for i in idx],
        )
    return groups


def edf_figure(
    records: list[dict[str, Any]], by: str = "cardinality", normalise: bool = False
) -> go.Figure:
    """Error EDFs of the trials grouped by ``by``, with the KS statistic of neighbouring groups."""
    kind = "complexity-normalised " if normalise else ""
    fig = go.Figure()
    _layout(
        fig,
        f"{kind}error EDF by {_LABELS.get(by, by)}",
        xaxis={"title": "top-1 error (%)"},
        yaxis={"title": "cumulative prob.", "range": [0, 1.02]},
    )
    try:
        groups = edf_groups(records, by, normalise)
    except ValueError as e:
        return _note(fig, str(e))
    if not groups:
        return _note(fig, "no complete trials")
    palette = qualitative.Plotly + qualitative.D3
    for k, (label, (errs, ws)) in enumerate(groups.items()):
        xs, fs = edf(errs, ws)
        used = sum(w > 0 for w in ws)
        fig.add_trace(
            go.Scatter(
                x=_array([xs[0], *xs] if xs else []),
                y=_array([0.0, *fs] if xs else []),
                mode="lines",
                # In group order, so C gets the colour it has in the Pareto plot.
                line={"shape": "hv", "color": palette[k % len(palette)]},
                name=f"{label} (n={used})",
                hovertemplate="error %{x:.2f}%: %{y:.2f}<extra>%{fullData.name}</extra>",
            )
        )
    labels = [k for k, (_, ws) in groups.items() if any(w > 0 for w in ws)]
    lines = [
        f"KS({a}, {b}) = {ks_statistic(groups[a][0], groups[b][0], groups[a][1], groups[b][1]):.3f}"
        for a, b in zip(labels, labels[1:], strict=False)
    ]
    if lines:
        fig.add_annotation(
            text="<br>".join(lines[:8]),
            xref="paper",
            yref="paper",
            x=0.99,
            y=0.02,
            xanchor="right",
            yanchor="bottom",
            align="right",
            showarrow=False,
            bgcolor="rgba(255,255,255,0.8)",
        )
    return fig


# ---------------------------------------------------------------------------------------------
# The paper's views: Table 3 (error vs C at preserved complexity) and Fig. 7 (error vs size)


def spec_errors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete trials merged per spec: mean and std (over seeds) of the error, in percent."""
    by_spec: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in _complete(records):
        by_spec[_spec_key(r["spec"])].append(r)
    rows = []
    for trials in by_spec.values():
        errs = [_error(r) for r in trials]
        first = trials[0]
        rows.append(
            {
                "spec": first["spec"],
                "flops": first["flops"],
                "params": first["params"],
                "mean": statistics.fmean(errs),
                "std": statistics.stdev(errs) if len(errs) > 1 else 0.0,
                "n": len(errs),
                "numbers": [r["number"] for r in trials],
            }
        )
    return rows


def _family(spec: dict[str, Any]) -> tuple:
    """What two specs must share to be compared on C and d alone."""
    return (
        spec["template"],
        tuple(spec["depths"]),
        spec["width"],
        spec["classes"],
        spec["resolution"],
        spec["stem_width"],
    )


def _family_name(spec: dict[str, Any]) -> str:
    return f"depths {'-'.join(map(str, spec['depths']))}, width {spec['width']}"


def equal_complexity_sets(
    rows: list[dict[str, Any]], tolerance: float = 0.1, max_sets: int = 6
) -> list[list[dict[str, Any]]]:
    """Sets of specs spanning several C whose FLOPs lie within ``(1 + tolerance)`` of each other.

    Every spec is tried as the cheapest end of a window; the window spanning the most
    cardinalities (then the most trials) wins and its specs leave the pool, up to ``max_sets``
    times. Within a window, the spec with the most seeds, then the closest FLOPs, stands for
    its C. Each set is sorted by C.
    """
    pool = sorted(rows, key=lambda r: r["flops"])
    sets = []
    while pool and len(sets) < max_sets:
        best: list[dict[str, Any]] = []
        for i, anchor in enumerate(pool):
            per_c: dict[int, dict[str, Any]] = {}
            for r in pool[i:]:
                if r["flops"] > anchor["flops"] * (1 + tolerance):
                    break
                c = r["spec"]["cardinality"]
                if c not in per_c or r["n"] > per_c[c]["n"]:
                    per_c[c] = r
            pick = [per_c[c] for c in sorted(per_c)]
            if (len(pick), sum(r["n"] for r in pick)) > (len(best), sum(r["n"] for r in best)):
                best = pick
        if len(best) < 2:
            break
        sets.append(best)
        taken = {id(r) for r in best}
        pool = [r for r in pool if id(r) not in taken]
    return sets


def _error_trace(
    rows: list[dict[str, Any]], x: list[float], name: str, **kwargs: Any
) -> go.Scatter:
    return go.Scatter(
        x=x,
        y=[r["mean"] for r in rows],
        error_y={"type": "data", "array": [r["std"] for r in rows], "visible": True},
        text=[_spec(r).notation for r in rows],
        customdata=[r["n"] for r in rows],
        mode="lines+markers+text",
        textposition="top center",
        name=name,
        hovertemplate=(
            "%{text}: error %{y:.2f}% ± %{error_y.array:.2f} (n=%{customdata})<extra>"
            f"{html.escape(name)}</extra>"
        ),
        **kwargs,
    )


def cardinality_figure(
    records: list[dict[str, Any]], tolerance: float = 0.1, max_lines: int = 6
) -> go.Figure:
    """Table 3 style: error against C among specs of one family within ``tolerance`` of FLOPs.

    Each line is one family (template, depths, width...) and one set of
    :func:`equal_complexity_sets`; the ``max_lines`` sets spanning the most C are drawn.
    """
    lines = [
        pts
        for fam_rows in _families(spec_errors(records))
        for pts in equal_complexity_sets(fam_rows, tolerance, max_lines)
    ]
    lines.sort(key=lambda pts: (-len(pts), -sum(r["n"] for r in pts), pts[0]["flops"]))
    fig = go.Figure()
    for pts in sorted(lines[:max_lines], key=lambda pts: pts[0]["flops"]):
        mid = statistics.median(r["flops"] for r in pts)
        name = f"{_family_name(pts[0]['spec'])}, ~{_si(mid)} FLOPs"
        fig.add_trace(_error_trace(pts, [r["spec"]["cardinality"] for r in pts], name))
    _layout(
        fig,
        f"Error against cardinality at preserved complexity (FLOPs within {tolerance:.0%})",
        xaxis={"title": "cardinality C", "type": "log", "dtick": math.log10(2)},
        yaxis={"title": "top-1 error (%), mean ± std over seeds"},
    )
    if not fig.data:
        _note(fig, "no two cardinalities at the same complexity yet")
    return fig


def _families(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    fams: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        fams[_family(r["spec"])].append(r)
    return list(fams.values())


def model_size_figure(records: list[dict[str, Any]], max_series: int = 4) -> go.Figure:
    """Fig. 7 style: error against params, cardinality series (d fixed) and width series (C=1).

    Per family, the ``max_series`` values of d with the most cardinalities make the
    cardinality series; the C=1 specs make the width series.
    """
    fig = go.Figure()
    for fam_rows in _families(spec_errors(records)):
        fam = _family_name(fam_rows[0]["spec"])
        by_d: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in fam_rows:
            by_d[r["spec"]["bottleneck_width"]].append(r)
        series = sorted(by_d.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:max_series]
        styled = [(f"cardinality series, d={d}", pts, {}) for d, pts in sorted(series)]
        widths = [r for r in fam_rows if r["spec"]["cardinality"] == 1]
        styled.append(("width series, C=1", widths, {"line": {"dash": "dash", "color": "black"}}))
        for name, pts, style in styled:
            if len({r["params"] for r in pts}) < 2:
                continue
            pts = sorted(pts, key=lambda r: r["params"])
            fig.add_trace(_error_trace(pts, [r["params"] for r in pts], f"{name} ({fam})", **style))
    _layout(
        fig,
        "Error against model size: cardinality series vs width series",
        xaxis={"title": "parameters", "type": "log"},
        yaxis={"title": "top-1 error (%), mean ± std over seeds"},
    )
    if not fig.data:
        _note(fig, "no series of two or more sizes yet")
    return fig


# ---------------------------------------------------------------------------------------------
# Learning curves, importances


def learning_curves_figure(records: list[dict[str, Any]]) -> go.Figure:
    """Validation accuracy per epoch of every trial, as one trace with gaps between trials.

    One trace keeps the page fast with thousands of trials; ``customdata`` holds the trial
    number of each point, and an empty last trace (``meta.role`` "selected") is for highlights.
    """
    xs: list[float | None] = []
    ys: list[float | None] = []
    nums: list[int | None] = []
    for r in records:
        pts = [h for h in r.get("history") or [] if h.get("val_accuracy") is not None]
        if not pts:
            continue
        xs += [h["epoch"] for h in pts] + [None]
        ys += [h["val_accuracy"] for h in pts] + [None]
        nums += [r["number"]] * len(pts) + [None]
    n = len(xs)
    fig = go.Figure(
        [
            _scatter(
                n,
                x=xs,
                y=ys,
                customdata=nums,
                mode="lines",
                line={"color": "rgba(100,100,140,0.35)", "width": 1},
                name="trials",
                hovertemplate="#%{customdata} epoch %{x}: %{y:.2%}<extra></extra>",
                meta={"role": "curves"},
            ),
            _scatter(
                n,
                x=[],
                y=[],
                customdata=[],
                mode="lines+markers",
                line={"color": "red", "width": 2.5},
                name="selected",
                hovertemplate="#%{customdata} epoch %{x}: %{y:.2%}<extra>selected</extra>",
                meta={"role": "selected"},
            ),
        ]
    )
    _layout(
        fig,
        "Learning curves",
        xaxis={"title": "epoch"},
        yaxis={"title": "validation accuracy", "tickformat": ".1%"},
        hovermode="closest",
        showlegend=False,
    )
    if not nums:
        _note(fig, "no trial has reported a history yet")
    return fig


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def importance_effects(records: list[dict[str, Any]], names: Iterable[str]) -> dict[str, str]:
    """How each param moves accuracy: the sign of Spearman's rho, or the best category.

    Numeric params (including numeric categorical choices such as C) get "higher C -> higher
    accuracy" (rho > 0) or "... -> lower accuracy"; other categorical params get the choice with
    the best mean accuracy.
    """
    done = [r for r in records if r["state"] == "COMPLETE" and r.get("val_accuracy") is not None]
    effects = {}
    for name in names:
        pairs = [(r["hparams"][name], r["val_accuracy"]) for r in done if name in r["hparams"]]
        short = _LABELS.get(name, name)
        if pairs and all(_is_number(v) for v, _ in pairs):
            rho = spearman(*zip(*pairs, strict=True))
            if math.isnan(rho):
                effects[name] = f"{short}: no effect measurable"
            else:
                way = "higher" if rho > 0 else "lower"
                effects[name] = f"higher {short} -> {way} accuracy (Spearman {rho:+.2f})"
        elif pairs:
            accs: dict[str, list[float]] = defaultdict(list)
            for v, a in pairs:
                accs[str(v)].append(a)
            best = max(accs, key=lambda k: statistics.fmean(accs[k]))
            effects[name] = f"best {short}: {best} ({100 * statistics.fmean(accs[best]):.1f}%)"
        else:
            effects[name] = f"{short}: no complete trial"
    return effects


def importance_figure(
    importances: dict[str, float] | None, records: list[dict[str, Any]]
) -> go.Figure:
    """Param importances as bars, coloured and labelled by the direction of their effect."""
    fig = go.Figure()
    _layout(fig, "Parameter importances for accuracy (PED-ANOVA)", xaxis={"title": "importance"})
    if not importances:
        return _note(fig, "needs 2 or more complete trials with varying parameters")
    names = sorted(importances, key=importances.get)
    effects = importance_effects(records, names)
    colour = {"higher a": "#2a9d8f", "lower a": "#e76f51"}

    def pick(effect: str) -> str:
        for key, c in colour.items():
            if f"-> {key}" in effect:
                return c
        return "#8d99ae"

    fig.add_trace(
        go.Bar(
            x=[importances[n] for n in names],
            y=[html.escape(_LABELS.get(n, n)) for n in names],
            orientation="h",
            text=[html.escape(effects[n]) for n in names],
            textposition="auto",
            marker={"color": [pick(effects[n]) for n in names]},
            hovertemplate="%{y}: %{x:.3f}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(showlegend=False, height=max(250, 60 + 40 * len(names)))
    return fig


# ---------------------------------------------------------------------------------------------
# The page


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trial table's rows: display-ready fields of every record."""
    rows = []
    for r in records:
        spec = _spec(r)
        rows.append(
            {
                "number": r["number"],
                "state": r["state"],
                "config": spec.describe() if spec else "",
                "C": spec.cardinality if spec else None,
                "d": spec.bottleneck_width if spec else None,
                "accuracy": r.get("val_accuracy"),
                "params": r.get("params"),
                "flops": r.get("flops"),
                "latency_ms": None if r.get("latency") is None else 1e3 * r["latency"],
                "epochs": len(r.get("history") or []),
                "seed": r.get("seed"),
                "hparams": ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(r["hparams"].items())
                ),
            }
        )
    return rows


def figures(
    records: list[dict[str, Any]], importances: dict[str, float] | None = None
) -> dict[str, go.Figure]:
    """Every figure of the page, by name."""
    figs = {f"pareto-{m}": pareto_figure(records, m) for m in METRICS}
    for by in GROUPINGS:
        for norm in (False, True):
            figs[f"edf-{by}-{'norm' if norm else 'plain'}"] = edf_figure(records, by, norm)
    figs["cardinality"] = cardinality_figure(records)
    figs["size"] = model_size_figure(records)
    figs["curves"] = learning_curves_figure(records)
    figs["importance"] = importance_figure(importances, records)
    return figs


def script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: ``<``, ``>`` and ``&`` become unicode escapes.

    That rules out ``</script>`` and ``<!--`` in the embedded text whatever the data holds.
    """
    text = json.dumps(obj, cls=PlotlyJSONEncoder, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _summary(records: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts[r["state"]] += 1
    parts = [f"{counts[s]} {s.lower()}" for s in (*FINISHED, "RUNNING", "WAITING") if counts[s]]
    return f"{len(records)} trials: " + ", ".join(parts)


def _page_template() -> str:
    return (Path(__file__).with_name("dashboard_page.html")).read_text(encoding="utf-8")


def build_page(
    records: list[dict[str, Any]],
    study_name: str,
    importances: dict[str, float] | None = None,
    live: bool = False,
    poll_seconds: float = 5.0,
    state: dict[str, Any] | None = None,
) -> str:
    """One self-contained HTML page (plotly.js inlined) of every figure and the trial table.

    ``live`` makes the page poll ``state.json`` every ``poll_seconds`` and reload when the
    study's ``state`` (see :func:`study_state`) changes.
    """
    records = _json_safe(records)  # a NaN loss in a history must not break the page's JSON
    figs = {name: fig.to_plotly_json() for name, fig in figures(records, importances).items()}
    # One template for every plot, shipped once (the page sets it on each layout).
    for fig in figs.values():
        fig["layout"].pop("template", None)
    # The three Pareto views share their hover texts: ship them once, keyed by trial number.
    hover: dict[int, str] = {}
    for name in (f"pareto-{m}" for m in METRICS):
        for trace in figs[name]["data"]:
            if "text" in trace and trace.get("meta", {}).get("role") != "selected":
                hover.update(zip(trace["customdata"], trace.pop("text"), strict=True))
    data = {
        "template": pio.templates["plotly_white"].to_plotly_json(),
        "figures": figs,
        "hover": hover,
        "rows": table_rows(records),
        "live": live,
        "poll_ms": int(1000 * poll_seconds),
        "state": state,
        "metrics": {m: any(r.get(m) is not None for r in records) for m in METRICS},
    }
    fills = {
        "title": html.escape(f"resnext-nas · {study_name}"),
        "study": html.escape(study_name),
        "summary": html.escape(_summary(records)),
        "plotlyjs": get_plotlyjs(),
        "data": script_json(data),
    }
    # One pass over the template, so that no filled-in text is searched for placeholders again.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: fills[m.group(1)], _page_template())


def _json_safe(obj: Any) -> Any:
    """NaN and infinities (not JSON) as None; the object itself when it has none."""
    try:
        json.dumps(obj, allow_nan=False)
        return obj
    except ValueError:
        return _finite(obj)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def study_state(study: optuna.Study) -> dict[str, Any]:
    """What changes when a trial is added or finishes: counts by state, last completion time."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = defaultdict(int)
    for t in trials:
        counts[t.state.name] += 1
    last = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)
    return {
        "trials": len(trials),
        "states": dict(sorted(counts.items())),
        "last": last and last.isoformat(),
    }


def dashboard_page(study_name: str, storage: str | None = None) -> str:
    """The page of a stored study; ValueError when it is unknown, unreachable or still empty."""
    study = load_study(study_name, storage)
    records = records_from_study(study)
    if not any(r["state"] in FINISHED for r in records):
        raise ValueError(f"study {study_name} has no finished trials yet")
    return build_page(records, study_name, param_importances(study))


def write_dashboard(study_name: str, storage: str | None, out: Path) -> Path:
    """Write the page of a stored study to ``out`` and return the path."""
    page = dashboard_page(study_name, storage)
    out.write_text(page, encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# Live server


class _Live:
    """The study behind a server, and the page of its last seen state (rebuilt on change)."""

    def __init__(self, study: optuna.Study, poll_seconds: float) -> None:
        self.study = study
        self.poll_seconds = poll_seconds
        self.lock = threading.Lock()
        self.key: str | None = None
        self.page = ""

    def current(self) -> tuple[dict[str, Any], str]:
        """The study's state and its page, rebuilt only when the state has changed."""
        state = study_state(self.study)
        key = json.dumps(state, sort_keys=True)
        if key != self.key:
            records = records_from_study(self.study)
            self.page = build_page(
                records,
                self.study.study_name,
                param_importances(self.study),
                live=True,
                poll_seconds=self.poll_seconds,
                state=state,
            )
            self.key = key
        return state, self.page


def make_server(
    study_name: str,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_seconds: float = 5.0,
) -> ThreadingHTTPServer:
    """A server of ``/`` (the page), ``/state.json`` (small, polled) and ``/records.json``."""
    live = _Live(load_study(study_name, storage), poll_seconds)
    routes: dict[str, Callable[[], tuple[str, bytes]]] = {
        "/": lambda: ("text/html; charset=utf-8", live.current()[1].encode()),
        "/state.json": lambda: ("application/json", json.dumps(study_state(live.study)).encode()),
        "/records.json": lambda: (
            "application/json",
            json.dumps(_json_safe(records_from_study(live.study))).encode(),
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            with live.lock:  # one reader of the study at a time; polls are cheap
                kind, body = route()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per poll would drown the terminal

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(
    study_name: str,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_seconds: float = 5.0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the study's page until interrupted; ``ready`` gets the URL once listening."""
    server = make_server(study_name, storage, host, port, poll_seconds)
    if ready is not None:
        bound_host, bound_port = server.server_address[:2]
        ready(f"http://{bound_host}:{bound_port}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ---------------------------------------------------------------------------------------------
# Screenshot


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install_chromium.sh)
# As root in a container: no sandbox, no GPU, no QUIC, no background traffic (updates, sync...).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def screenshot(
    page: Path,
    png: Path,
    width: int = 1400,
    height: int = 2600,
    chromium: str = CHROMIUM,
    wait_ms: int = 8000,
) -> Path:
    """Save a PNG of an HTML file as headless Chromium renders it (for the README)."""
    import subprocess
    import tempfile

    if not Path(chromium).exists():
        raise ValueError(f"no Chromium at {chromium}; run scripts/install_chromium.sh")
    png = png.resolve()
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [
                chromium,
                "--headless",
                *CHROMIUM_FLAGS,
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if res.returncode != 0 or not png.is_file():
        raise ValueError(
            f"Chromium could not take the screenshot: {_first_line(Exception(res.stderr))}"
        )
    return png
