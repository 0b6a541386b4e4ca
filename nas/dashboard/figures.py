"""The dashboard's figures: each takes trial records and returns a plotly Figure.

Records are :func:`nas.records.trial_record` dicts. Writing files and serving pages is the
caller's job (:mod:`nas.dashboard.page`, :mod:`nas.dashboard.server`).
"""

from __future__ import annotations

import html
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

import resnext
from nas.confirm import CONFIRM, SEARCH
from nas.dashboard.evidence import (
    MIN_EDF_GROUP,
    MIN_IMPORTANCE,
    dkw_epsilon,
    effect,
    effect_text,
    effective_n,
    ks_critical,
    too_few,
)
from nas.dashboard.importance import Importances
from nas.designspace import complexity_weights, edf, ks_statistic, pareto_front
from nas.recommend import format_p_best, mean_interval
from nas.records import config_groups, spec_key
from resnext.complexity import format_count

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
# Above this many points a scatter is drawn with WebGL (Scattergl): SVG slows down past ~1-2k.
GL_POINTS = 1500

# ---------------------------------------------------------------------------------------------
# Small helpers shared by the plots

_LABELS = {"cardinality": "C", "bottleneck_width": "d", "width": "width", "depth": "depths"}
GROUPINGS = ("cardinality", "bottleneck_width", "width", "depth")


@lru_cache(maxsize=4096)
def _spec_of(key: tuple) -> resnext.Spec:
    return resnext.Spec.from_dict(dict(key))


def spec_of(r: dict[str, Any]) -> resnext.Spec | None:
    """The record's spec; thousands of trials share a few hundred specs, so parse each once."""
    return _spec_of(spec_key(r["spec"])) if r.get("spec") else None


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
    spec = spec_of(r)
    name = spec.describe() if spec else "no spec"
    acc = "n/a" if r.get("val_accuracy") is None else f"{100 * r['val_accuracy']:.2f}%"
    lat = "n/a" if r.get("latency") is None else f"{1e3 * r['latency']:.2f} ms"
    state = "" if r["state"] == "COMPLETE" else f" ({r['state'].lower()})"
    return (
        f"#{r['number']}{state} {html.escape(name)}<br>"
        f"acc {acc} · {_si(r.get('params'))} params · {_si(r.get('flops'))} FLOPs · "
        f"latency {lat}"
    )


def format_params(params: dict[str, Any]) -> str:
    """``k=v`` pairs by name, floats to 4 significant digits: ``lr=0.1, optimizer=sgd``."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def _array(values: list[Any]) -> np.ndarray:
    """A list as an object array: plotly validates it ~10x faster than a list of 5,000, and it
    still ships as a plain JSON list (nulls kept as gaps), which the page's script reads."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # one by one: a list element (trial numbers) stays a list
        out[i] = v
    return out


def _scatter(n_points: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    arrays = {k: _array(v) for k, v in kwargs.items() if isinstance(v, list)}
    return (go.Scattergl if n_points > GL_POINTS else go.Scatter)(**{**kwargs, **arrays})


def _note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font_size=14
    )
    return fig


def waiting(fig: go.Figure, text: str) -> go.Figure:
    """Mark a figure with nothing to show: the page collapses it to the one line ``text``."""
    fig.update_layout(meta={"waiting": text})
    return _note(fig, text)


def waiting_text(fig: go.Figure) -> str | None:
    """The line a collapsed figure shows instead of axes, or None when it has data to draw."""
    meta = fig.layout.meta
    return meta.get("waiting") if isinstance(meta, dict) else None


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


def config_points(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Complete trials merged per configuration and phase, as ``trials`` merges them.

    One dict per group of :func:`nas.records.config_groups` with a ``metric``: its ``phase``,
    ``spec``, ``hparams``, trial ``numbers``, ``n``, ``mean`` accuracy with the 95% t interval
    ``low``/``high`` over its seeds (None with one), and ``x``, the mean ``metric`` of the
    trials that measured it (FLOPs and params are the spec's; latency is measured per trial).
    """
    points = []
    for (ph, _), group in config_groups(_complete(records)).items():
        measured = [r[metric] for r in group if r.get(metric) is not None]
        if not measured:
            continue
        iv = mean_interval([r["val_accuracy"] for r in group])
        latencies = [r["latency"] for r in group if r.get("latency") is not None]
        first = group[0]
        points.append(
            {
                "phase": ph,
                "spec": first["spec"],
                "hparams": first.get("hparams") or {},
                "numbers": [r["number"] for r in group],
                "n": iv.n,
                "mean": iv.mean,
                "low": None if iv.n < 2 else iv.low,
                "high": None if iv.n < 2 else iv.high,
                "x": statistics.fmean(measured),
                "flops": first.get("flops"),
                "params": first.get("params"),
                "latency": statistics.fmean(latencies) if latencies else None,
            }
        )
    return points


def config_hover_text(p: dict[str, Any]) -> str:
    """A configuration point in one hover label: its trials, the paper's notation, its mean
    accuracy with n and the 95% t interval, then its complexity and mean latency."""
    spec = _spec_of(spec_key(p["spec"]))
    nums = p["numbers"]
    ids = " ".join(f"#{n}" for n in nums[:6]) + (f" +{len(nums) - 6}" if len(nums) > 6 else "")
    hp = format_params(p["hparams"])
    name = spec.describe() + (f" ({hp})" if hp else "")
    phase = " · confirmation phase" if p["phase"] == CONFIRM else ""
    if p["n"] < 2:
        acc = f"acc {100 * p['mean']:.2f}% (n=1, no interval)"
    else:
        acc = (
            f"mean acc {100 * p['mean']:.2f}% over n={p['n']} seeds, "
            f"95% t interval [{100 * p['low']:.2f}, {100 * p['high']:.2f}]%"
        )
    lat = "n/a" if p["latency"] is None else f"{1e3 * p['latency']:.2f} ms"
    return (
        f"{ids} {html.escape(name)}{phase}<br>{acc}<br>"
        f"{_si(p['params'])} params · {_si(p['flops'])} FLOPs · latency {lat}"
    )


def hover_key(customdata: Any) -> str:
    """The key of a Pareto point's hover text on the page: its trial numbers, comma-joined, as
    JavaScript's ``String()`` writes an array of them (or the one number of a pruned trial)."""
    if isinstance(customdata, list | tuple | np.ndarray):
        return ",".join(str(int(n)) for n in customdata)
    return str(int(customdata))


def pareto_figure(records: list[dict[str, Any]], metric: str = "flops") -> go.Figure:
    """Accuracy against FLOPs, params or latency: one point per configuration and phase.

    Seeds are merged as ``trials`` merges them (:func:`config_points`): each point is the mean
    accuracy of a configuration's complete trials with its 95% t interval as an error bar
    (none with n=1), coloured by C; confirmation-phase configurations (longer schedule) are
    diamonds in a trace of their own, never averaged with their proxy trials. The front is a
    step line over the search-phase configuration means. Every configuration point carries the
    list of its trial numbers as ``customdata`` (``meta.role`` "trials", or "front"), so that
    picking it selects all its trials. Pruned and failed trials with an accuracy stay one point
    per trial (``meta.role`` "pruned"/"failed", customdata the number); an empty last trace
    (``meta.role`` "selected") is there for the page's highlight.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    label, scale = METRICS[metric]
    points = config_points(records, metric)
    others = [
        r
        for r in records
        if r["state"] in ("PRUNED", "FAIL")
        and r.get("spec")
        and r.get("val_accuracy") is not None
        and r.get(metric) is not None
    ]
    search = [p for p in points if p["phase"] != CONFIRM]
    confirm = [p for p in points if p["phase"] == CONFIRM]
    fig = go.Figure()
    colours = _colours(p["spec"]["cardinality"] for p in points)
    n = len(points) + len(others)

    def trace(pts: list[dict[str, Any]], **kwargs: Any) -> go.Scatter | go.Scattergl:
        return _scatter(
            n,
            x=[p["x"] * scale for p in pts],
            y=[p["mean"] for p in pts],
            customdata=[p["numbers"] for p in pts],
            text=[config_hover_text(p) for p in pts],
            hovertemplate="%{text}<extra></extra>",
            **kwargs,
        )

    def bars(pts: list[dict[str, Any]]) -> dict[str, Any]:
        # n=1 has no interval: a zero-length bar, hidden under its marker.
        return {
            "type": "data",
            "symmetric": False,
            "array": [0.0 if p["high"] is None else p["high"] - p["mean"] for p in pts],
            "arrayminus": [0.0 if p["low"] is None else p["mean"] - p["low"] for p in pts],
            "visible": True,
            "thickness": 1,
            "width": 2,
        }

    for c, colour in colours.items():
        pts = [p for p in search if p["spec"]["cardinality"] == c]
        if pts:
            fig.add_trace(
                trace(
                    pts,
                    mode="markers",
                    name=f"C={c}",
                    marker={"color": colour, "size": 7},
                    error_y={**bars(pts), "color": colour},
                    meta={"role": "trials", "phase": SEARCH},
                )
            )
    if confirm:
        fig.add_trace(
            trace(
                confirm,
                mode="markers",
                name=f"confirmation ({len(confirm)} configs)",
                marker={
                    "color": [colours[p["spec"]["cardinality"]] for p in confirm],
                    "symbol": "diamond",
                    "size": 10,
                    "line": {"color": "black", "width": 1},
                },
                error_y={**bars(confirm), "color": "black"},
                meta={"role": "trials", "phase": CONFIRM},
            )
        )
    front = [search[i] for i in pareto_front([p["x"] for p in search], [p["mean"] for p in search])]
    fig.add_trace(
        trace(
            front,
            mode="lines+markers",
            line={"shape": "hv", "color": "black", "width": 1.5},
            marker={"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": "black", "width": 1.5}},
            name=f"Pareto front of config means ({len(front)})",
            meta={"role": "front"},
        )
    )
    for state, symbol in (("PRUNED", "circle-open"), ("FAIL", "x-thin-open")):
        rows = [r for r in others if r["state"] == state]
        if rows:
            fig.add_trace(
                _scatter(
                    n,
                    x=[r[metric] * scale for r in rows],
                    y=[r["val_accuracy"] for r in rows],
                    customdata=[r["number"] for r in rows],
                    text=[hover_text(r) for r in rows],
                    hovertemplate="%{text}<extra></extra>",
                    mode="markers",
                    name=f"{state.lower()} trials ({len(rows)})",
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
    trials = sum(p["n"] for p in points)
    _layout(
        fig,
        f"Accuracy against {label}: {len(points)} configuration means over {trials} complete "
        "trials (bars: 95% t interval over seeds)",
        xaxis={"title": label, "type": "log"},
        yaxis={"title": "validation accuracy, mean over seeds", "tickformat": ".1%"},
        dragmode="select",
        hovermode="closest",
    )
    if not points:
        waiting(fig, f"Pareto front: waiting for a complete trial with a {label}")
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
    """Error EDFs of the groups of ``by`` with at least ``MIN_EDF_GROUP`` trials, each with its
    95% DKW band and n, and the KS statistic of neighbouring groups against its critical value.

    Weighted (normalised) groups use Kish's effective n for the band and the critical value.
    """
    kind = "complexity-normalised " if normalise else ""
    what = f"{kind}error EDFs by {_LABELS.get(by, by)}"
    fig = go.Figure()
    _layout(
        fig,
        f"{kind}error EDF by {_LABELS.get(by, by)} (95% DKW bands)",
        xaxis={"title": "top-1 error (%)"},
        yaxis={"title": "cumulative prob.", "range": [0, 1.02]},
    )
    try:
        groups = edf_groups(records, by, normalise)
    except ValueError as e:
        return waiting(fig, f"{what}: {e}")
    sizes = {label: sum(w > 0 for w in ws) for label, (_, ws) in groups.items()}
    shown = [label for label, n in sizes.items() if n >= MIN_EDF_GROUP]
    if not shown:
        largest = max(sizes.values(), default=0)
        return waiting(
            fig,
            f"{too_few(what, largest, MIN_EDF_GROUP)} "
            f"(each group needs {MIN_EDF_GROUP}; the largest has {largest})",
        )
    palette = qualitative.Plotly + qualitative.D3
    neff = {label: effective_n(groups[label][1]) for label in shown}
    for k, label in enumerate(groups):
        if label not in shown:
            continue
        errs, ws = groups[label]
        xs, fs = edf(errs, ws)
        eps = dkw_epsilon(neff[label])
        # In group order, so C gets the colour it has in the Pareto plot.
        colour = palette[k % len(palette)]
        x = _array([xs[0], *xs])
        f = [0.0, *fs]
        for edge, fill in ((-eps, None), (eps, "tonexty")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=_array([min(1.0, max(0.0, v + edge)) for v in f]),
                    mode="lines",
                    line={"shape": "hv", "width": 0, "color": colour},
                    fill=fill,
                    opacity=0.15,
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=label,
                    meta={"role": "band"},
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=_array(f),
                mode="lines",
                line={"shape": "hv", "color": colour},
                # Reweighted groups: the band rests on Kish's effective n, so say it.
                name=f"{label} (n={sizes[label]}"
                + ("" if abs(neff[label] - sizes[label]) < 0.5 else f", eff. {neff[label]:.0f}")
                + f", ±{eps:.2f})",
                legendgroup=label,
                hovertemplate="error %{x:.2f}%: %{y:.2f}<extra>%{fullData.name}</extra>",
                meta={"role": "edf"},
            )
        )
    lines = []
    for a, b in zip(shown, shown[1:], strict=False):
        ks = ks_statistic(groups[a][0], groups[b][0], groups[a][1], groups[b][1])
        crit = ks_critical(neff[a], neff[b])
        verdict = "differ" if ks > crit else "no difference shown"
        lines.append(f"KS({a}, {b}) = {ks:.3f}, 5% critical {crit:.3f}: {verdict}")
    hidden = [label for label in groups if label not in shown]
    if hidden:
        lines.append(
            f"not drawn (under {MIN_EDF_GROUP} trials): "
            + ", ".join(f"{label} (n={sizes[label]})" for label in hidden[:6])
            + (" ..." if len(hidden) > 6 else "")
        )
    if lines:
        fig.add_annotation(
            text="<br>".join(html.escape(line) for line in lines[:9]),
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
    """Complete trials merged per spec: mean, std and 95% t interval of the error over seeds (%)."""
    by_spec: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in _complete(records):
        by_spec[spec_key(r["spec"])].append(r)
    rows = []
    for trials in by_spec.values():
        errs = [_error(r) for r in trials]
        first = trials[0]
        iv = mean_interval(errs)
        rows.append(
            {
                "spec": first["spec"],
                "flops": first["flops"],
                "params": first["params"],
                "mean": statistics.fmean(errs),
                "std": statistics.stdev(errs) if len(errs) > 1 else 0.0,
                # 95% Student-t interval over seeds; one seed has none (drawn without a bar).
                "low": iv.mean if iv.n < 2 else iv.low,
                "high": iv.mean if iv.n < 2 else iv.high,
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
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [r["high"] - r["mean"] for r in rows],
            "arrayminus": [r["mean"] - r["low"] for r in rows],
            "visible": True,
        },
        text=[spec_of(r).notation for r in rows],
        customdata=[
            f"n={r['n']}, 95% CI [{r['low']:.2f}, {r['high']:.2f}]"
            if r["n"] > 1
            else "n=1, no interval"
            for r in rows
        ],
        mode="lines+markers+text",
        textposition="top center",
        name=name,
        hovertemplate=(
            f"%{{text}}: error %{{y:.2f}}% (%{{customdata}})<extra>{html.escape(name)}</extra>"
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
        if all(r["n"] == 1 for r in pts):  # a line through single seeds is no trend yet
            name += ", one seed each: no intervals"
        fig.add_trace(_error_trace(pts, [r["spec"]["cardinality"] for r in pts], name))
    _layout(
        fig,
        f"Error against cardinality at preserved complexity (FLOPs within {tolerance:.0%})",
        xaxis={"title": "cardinality C", "type": "log", "dtick": math.log10(2)},
        yaxis={"title": "top-1 error (%), mean and 95% interval over seeds"},
    )
    if not fig.data:
        waiting(
            fig,
            f"Table 3 view: needs two cardinalities within {tolerance:.0%} of the same FLOPs "
            "(same depths and width); this study has none",
        )
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
        yaxis={"title": "top-1 error (%), mean and 95% interval over seeds"},
    )
    if not fig.data:
        waiting(
            fig,
            "Fig. 7 view: needs a series of two or more model sizes (one d across C, or C=1 "
            "across widths); this study has none",
        )
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
        waiting(fig, "Learning curves: waiting for a trial to report its first epoch")
    return fig


def importance_effects(
    records: list[dict[str, Any]], names: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """How each param moves accuracy over the complete trials (:func:`evidence.effect`): the
    Spearman rho or best choice with its bootstrap interval, n, and a direction only where the
    interval excludes zero."""
    done = [r for r in records if r["state"] == "COMPLETE" and r.get("val_accuracy") is not None]
    effects = {}
    for name in names:
        pairs = [
            (r["optuna_params"][name], r["val_accuracy"])
            for r in done
            if name in r["optuna_params"]
        ]
        values = [v for v, _ in pairs]
        effects[name] = effect(name, values, [a for _, a in pairs])
    return effects


def completed(records: list[dict[str, Any]]) -> int:
    """The number of complete trials with an accuracy (what importances rest on)."""
    return sum(r["state"] == "COMPLETE" and r.get("val_accuracy") is not None for r in records)


def importance_figure(importances: Importances | None, records: list[dict[str, Any]]) -> go.Figure:
    """Param importances as bars with their 95% bootstrap interval over trials (see
    :mod:`nas.dashboard.importance`), labelled with the direction of each effect and its interval.

    Below ``MIN_IMPORTANCE`` complete trials the panel collapses to how many more it needs.
    """
    n = completed(records)
    fig = go.Figure()
    _layout(
        fig,
        f"Parameter importances for accuracy (PED-ANOVA, n={n} complete trials)",
        xaxis={"title": "importance (share of the total)"},
    )
    short = too_few("parameter importances", n, MIN_IMPORTANCE)
    if short:
        return waiting(fig, short)
    if not importances or not importances.importance:
        return waiting(fig, f"parameter importances: no parameter varies over the {n} trials")
    imp = importances.importance
    names = sorted(imp, key=imp.get)
    effects = importance_effects(records, names)
    texts = {k: effect_text(e, _LABELS.get(k, k)) for k, e in effects.items()}
    colour = {"higher": "#2a9d8f", "lower": "#e76f51"}
    low, high = importances.low, importances.high
    bars = {}
    if low is not None and high is not None:
        of = (
            f"{importances.drawn:,} of the {importances.n:,} trials"
            if importances.drawn < importances.n
            else f"the {importances.n:,} trials"
        )
        how = f"95% bootstrap interval, {importances.resamples} resamples of {of}"
        cis = [f"{how}: [{low[k]:.3f}, {high[k]:.3f}]" for k in names]
        # The percentile interval need not straddle the estimate; the bar spans it either way.
        bars = {
            "error_x": {
                "type": "data",
                "symmetric": False,
                "array": [high[k] - imp[k] for k in names],
                "arrayminus": [imp[k] - low[k] for k in names],
                "visible": True,
                "color": "#333",
            }
        }
        fig.update_layout(
            title=f"Parameter importances for accuracy (PED-ANOVA, n={n} complete trials)"
            f"<br><sub>whiskers: {html.escape(how)}</sub>",
            margin={"t": 70},
        )
    else:
        cis = ["no interval" for _ in names]
    fig.add_trace(
        go.Bar(
            x=[imp[k] for k in names],
            y=[html.escape(_LABELS.get(k, k)) for k in names],
            orientation="h",
            text=[html.escape(texts[k]) for k in names],
            customdata=[html.escape(c) for c in cis],
            textposition="auto",
            marker={"color": [colour.get(effects[k]["direction"], "#8d99ae") for k in names]},
            hovertemplate=(
                f"%{{y}}: %{{x:.3f}} (n={n}, %{{customdata}})<br>%{{text}}<extra></extra>"
            ),
            **bars,
        )
    )
    fig.update_layout(showlegend=False, height=max(250, 60 + 40 * len(names)))
    return fig


# ---------------------------------------------------------------------------------------------
# The confirmed recommendation (nas.confirm.recommendation)


def recommendation_figure(rec: dict[str, Any] | None) -> go.Figure:
    """The confirmed configurations' mean accuracy with 95% t intervals over seeds; the title
    names the recommended one with its P(best), or states the tie."""
    fig = go.Figure()
    if rec is None:
        _layout(fig, "Recommendation")
        return waiting(fig, "Recommendation: waiting for the confirmation phase")
    rows = list(reversed(rec["confirmed"]))  # best on top
    if rec["tie"] and rec.get("runner_up"):
        title = (
            f"tie between {rec['notation']} and {rec['runner_up']['notation']} "
            f"(P(best) {format_p_best(rec['p_best'])} < {rec['tie_below']:.2f})"
        )
    elif rec["tie"]:
        title = f"tie: {rec['notation']} has P(best) {format_p_best(rec['p_best'])} only"
    else:
        title = f"recommended: {rec['notation']} (P(best) {format_p_best(rec['p_best'])})"

    def bound(r: dict[str, Any], i: int) -> float:
        return r["mean_accuracy"] if r["ci95"][i] is None else r["ci95"][i]

    def label(r: dict[str, Any]) -> str:
        ci = (
            "no interval"
            if r["ci95"][0] is None
            else f"95% CI [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]%"
        )
        p = format_p_best(r["p_best"])
        return f"{100 * r['mean_accuracy']:.2f}% ({ci}, {r['seeds']} seeds, P(best) {p})"

    picked = rec["notation"]
    fig.add_trace(
        go.Scatter(
            x=[r["mean_accuracy"] for r in rows],
            y=[html.escape(r["notation"]) for r in rows],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [bound(r, 1) - r["mean_accuracy"] for r in rows],
                "arrayminus": [r["mean_accuracy"] - bound(r, 0) for r in rows],
                "visible": True,
            },
            mode="markers+text",
            text=[html.escape(label(r)) for r in rows],
            textposition="top center",
            marker={
                "size": [16 if r["notation"] == picked and not rec["tie"] else 9 for r in rows],
                "symbol": [
                    "star" if r["notation"] == picked and not rec["tie"] else "circle" for r in rows
                ],
                "color": ["#e76f51" if r["notation"] == picked else "#264653" for r in rows],
            },
            hovertemplate="%{y}: %{text}<extra></extra>",
            showlegend=False,
            meta={"role": "confirmed"},
        )
    )
    _layout(
        fig,
        html.escape(title),
        xaxis={
            "title": "confirmed validation accuracy, mean and 95% t interval over seeds",
            "tickformat": ".1%",
        },
        # Headroom above the top row for its label.
        yaxis={"range": [-0.5, len(rows) - 0.2]},
        height=max(260, 120 + 60 * len(rows)),
    )
    return fig


# ---------------------------------------------------------------------------------------------


def figures(
    records: list[dict[str, Any]],
    importances: Importances | None = None,
    recommendation: dict[str, Any] | None = None,
) -> dict[str, go.Figure]:
    """Every figure of the page, by name; ``recommendation`` is from :mod:`nas.confirm`."""
    figs = {f"pareto-{m}": pareto_figure(records, m) for m in METRICS}
    for by in GROUPINGS:
        for norm in (False, True):
            figs[f"edf-{by}-{'norm' if norm else 'plain'}"] = edf_figure(records, by, norm)
    figs["cardinality"] = cardinality_figure(records)
    figs["size"] = model_size_figure(records)
    figs["curves"] = learning_curves_figure(records)
    figs["importance"] = importance_figure(importances, records)
    figs["recommendation"] = recommendation_figure(recommendation)
    return figs
