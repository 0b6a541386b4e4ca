"""The dashboard's figures: each takes trial records and returns a plotly Figure.

Records are :func:`nas.search.records.trial_record` dicts. Writing files and serving pages is the
caller's job (:mod:`nas.dashboard.page`, :mod:`nas.dashboard.server`).
"""

from __future__ import annotations

import html
import statistics
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from nas.dashboard.distributions import (
    PHASES,
    cardinality_figure,
    edf_figure,
    model_size_figure,
    phase_words,
)
from nas.dashboard.evidence import (
    MIN_IMPORTANCE,
    effect,
    effect_text,
    too_few,
)
from nas.dashboard.importance import Importances
from nas.dashboard.plot import (
    GROUPINGS,
    LABELS,
    colours,
    complete_trials,
    format_params,
    hover_text,
    layout,
    scatter,
    si,
    spec_of,
    waiting,
)
from nas.search.attrs import CONFIRM, SEARCH
from nas.search.records import config_groups, config_intervals
from nas.stats.designspace import pareto_front
from nas.stats.recommend import format_p_best
from resnext.complexity import imagenet_side_flops

# ---------------------------------------------------------------------------------------------
# Pareto front

METRICS = {
    "flops": ("FLOPs (multiply-adds)", 1.0),
    "params": ("parameters", 1.0),
    "latency": ("latency (ms / image)", 1e3),
}


def config_points(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Complete trials merged per configuration and phase, as ``trials`` merges them.

    One dict per group of :func:`nas.search.records.config_groups` with a ``metric``: its ``phase``,
    ``spec``, ``hparams``, trial ``numbers``, ``n``, ``mean`` accuracy with the 95% interval
    ``low``/``high`` of its phase's model (None with one seed: ``config_intervals``), and ``x``,
    the mean ``metric`` of the trials that measured it (FLOPs and params are the spec's; latency
    is measured per trial).
    """
    points = []
    groups = config_groups(complete_trials(records))
    cis = config_intervals(groups)
    for key, group in groups.items():
        ph = key[0]
        measured = [r[metric] for r in group if r.get(metric) is not None]
        if not measured:
            continue
        accs = [r["val_accuracy"] for r in group]
        ci = cis[key]
        latencies = [r["latency"] for r in group if r.get("latency") is not None]
        first = group[0]
        points.append(
            {
                "phase": ph,
                "spec": first["spec"],
                "hparams": first.get("hparams") or {},
                "numbers": [r["number"] for r in group],
                "n": len(accs),
                "mean": statistics.fmean(accs),
                "low": None if ci is None else ci[0],
                "high": None if ci is None else ci[1],
                "x": statistics.fmean(measured),
                "flops": first.get("flops"),
                "params": first.get("params"),
                "latency": statistics.fmean(latencies) if latencies else None,
            }
        )
    return points


def config_hover_text(p: dict[str, Any]) -> str:
    """A configuration point in one hover label: its trials, the paper's notation, its mean
    accuracy with n and the phase model's 95% interval, then its complexity and mean latency."""
    spec = spec_of(p)
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
            f"95% interval [{100 * p['low']:.2f}, {100 * p['high']:.2f}]%"
        )
    lat = "n/a" if p["latency"] is None else f"{1e3 * p['latency']:.2f} ms"
    # An ImageNet-template trial at a CPU side: its FLOPs at the paper's 224 px too.
    at = imagenet_side_flops(spec)
    full = "" if at is None else f" ({si(at[1])} at {at[0]} px)"
    return (
        f"{ids} {html.escape(name)}{phase}<br>{acc}<br>"
        f"{si(p['params'])} params · {si(p['flops'])} FLOPs{full} · latency {lat}"
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
    accuracy of a configuration's complete trials with its phase model's 95% interval as an
    error bar (none with n=1), coloured by C; confirmation-phase configurations (longer
    schedule) are diamonds in a trace of their own, never averaged with their proxy trials. The
    front is a step line over the search-phase configuration means. Every configuration point
    carries the list of its trial numbers as ``customdata`` (``meta.role`` "trials", or
    "front"), so that picking it selects all its trials. Pruned and failed trials with an
    accuracy stay one point per trial (``meta.role`` "pruned"/"failed", customdata the number);
    an empty last trace (``meta.role`` "selected") is there for the page's highlight.
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
    colour_of = colours(p["spec"]["cardinality"] for p in points)
    n = len(points) + len(others)

    def trace(pts: list[dict[str, Any]], **kwargs: Any) -> go.Scatter | go.Scattergl:
        return scatter(
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

    for c, colour in colour_of.items():
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
                    "color": [colour_of[p["spec"]["cardinality"]] for p in confirm],
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
                scatter(
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
        scatter(
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
    layout(
        fig,
        f"Accuracy against {label}: {len(points)} configuration means over {trials} complete "
        "trials (bars: 95% interval, seed noise pooled over the phase)",
        xaxis={"title": label, "type": "log"},
        yaxis={"title": "validation accuracy, mean over seeds", "tickformat": ".1%"},
        dragmode="select",
        hovermode="closest",
    )
    if not points:
        waiting(fig, f"Pareto front: waiting for a complete trial with a {label}")
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
            scatter(
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
            scatter(
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
    layout(
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
    records: list[dict[str, Any]], names: Iterable[str], phase: str = SEARCH
) -> dict[str, dict[str, Any]]:
    """How each param moves accuracy over the complete trials of ``phase``
    (:func:`evidence.effect`): the Spearman rho or best choice with its bootstrap interval, n,
    and a direction only where the interval excludes zero."""
    done = _phase_done(records, phase)
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


def _phase_done(records: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    """The complete trials of ``phase`` with an accuracy (a spec is not needed here)."""
    return [
        r
        for r in records
        if r["state"] == "COMPLETE"
        and r.get("val_accuracy") is not None
        and r.get("phase", SEARCH) == phase
    ]


def completed(records: list[dict[str, Any]], phase: str = SEARCH) -> int:
    """The number of complete trials of ``phase`` with an accuracy (what importances rest on)."""
    return len(_phase_done(records, phase))


def importance_figure(
    importances: Importances | None, records: list[dict[str, Any]], phase: str = SEARCH
) -> go.Figure:
    """Param importances over the trials of ``phase`` as bars with their 95% bootstrap interval
    over trials (see :mod:`nas.dashboard.importance`), labelled with the direction of each effect
    and its interval; ``importances`` must be of the same phase.

    Below ``MIN_IMPORTANCE`` complete trials the panel collapses to how many more it needs.
    """
    n = completed(records, phase)
    fig = go.Figure()
    head = (
        f"Parameter importances for accuracy{phase_words(phase)} (PED-ANOVA, n={n} complete trials)"
    )
    layout(fig, head, xaxis={"title": "importance (share of the total)"})
    short = too_few(f"parameter importances{phase_words(phase)}", n, MIN_IMPORTANCE)
    if short:
        return waiting(fig, short)
    if not importances or not importances.importance:
        return waiting(fig, f"parameter importances: no parameter varies over the {n} trials")
    imp = importances.importance
    names = sorted(imp, key=imp.get)
    effects = importance_effects(records, names, phase)
    texts = {k: effect_text(e, LABELS.get(k, k)) for k, e in effects.items()}
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
            title=f"{head}<br><sub>whiskers: {html.escape(how)}</sub>",
            margin={"t": 70},
        )
    else:
        cis = ["no interval" for _ in names]
    fig.add_trace(
        go.Bar(
            x=[imp[k] for k in names],
            y=[html.escape(LABELS.get(k, k)) for k in names],
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
# The confirmed recommendation (nas.search.confirm.recommendation)


def recommendation_figure(rec: dict[str, Any] | None) -> go.Figure:
    """The confirmed configurations' accuracy with the study model's 95% intervals (inside
    [0, 100]%); the title gives the verdict, the recommended configuration and the reason.

    Only a ``best`` verdict is starred; under ``equivalent`` the contenders are diamonds and the
    pick (by the secondary criterion) is coloured; under ``no-signal`` nothing is marked as won.
    """
    fig = go.Figure()
    if rec is None:
        layout(fig, "Recommendation")
        return waiting(fig, "Recommendation: waiting for the confirmation phase")
    rows = list(reversed(rec["confirmed"]))  # best on top
    verdict = rec["verdict"]
    reason = "<br>".join(html.escape(x) for x in textwrap.wrap(rec["reason"], 110))
    title = f"{verdict}: {html.escape(rec['notation'])}<br><sup>{reason}</sup>"

    def bound(r: dict[str, Any], i: int) -> float:
        return r["mean_accuracy"] if r["ci95"][i] is None else r["ci95"][i]

    def label(r: dict[str, Any]) -> str:
        ci = (
            "one seed: no interval of its own"
            if r["ci95"][0] is None
            else f"95% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]%"
        )
        p = format_p_best(r["p_best"])
        return f"{100 * r['mean_accuracy']:.1f}% ({ci}, {r['seeds']} seeds, P(best) {p})"

    def symbol(r: dict[str, Any]) -> str:
        if r["notation"] == picked and verdict == "best":
            return "star"
        return "diamond" if verdict == "equivalent" and r.get("contender") else "circle"

    picked = rec["notation"]
    # A grid study's answer is its search phase's verdict: every spec on every seed.
    judged = "confirmed" if rec.get("phase", CONFIRM) == CONFIRM else "search-phase"
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
                "size": [16 if symbol(r) == "star" else 11 for r in rows],
                "symbol": [symbol(r) for r in rows],
                "color": [
                    "#e76f51" if r["notation"] == picked and verdict != "no-signal" else "#264653"
                    for r in rows
                ],
            },
            hovertemplate="%{y}: %{text}<extra></extra>",
            showlegend=False,
            meta={"role": "confirmed"},
        )
    )
    low = min(bound(r, 0) for r in rows)
    high = max(bound(r, 1) for r in rows)
    pad = max(0.01, (high - low) * 0.15)
    layout(
        fig,
        title,
        xaxis={
            "title": f"{judged} validation accuracy: mean, 95% interval of the study model",
            "tickformat": ".1%",
            # An accuracy lives in [0, 100]%; so does the axis.
            "range": [max(0.0, low - pad), min(1.0, high + pad)],
        },
        # Headroom above the top row for its label.
        yaxis={"range": [-0.5, len(rows) - 0.2]},
        height=max(260, 120 + 60 * len(rows)),
    )
    return fig


# ---------------------------------------------------------------------------------------------


def phase_name(name: str, phase: str) -> str:
    """A phase's figure name: the bare ``name`` for the search phase (the page's default),
    ``name@confirm`` for the confirmation phase."""
    return name if phase == SEARCH else f"{name}@{phase}"


# The figures that summarise accuracy over a phase: one of each per phase, chosen on the page.
PHASE_FIGURES = (
    *(f"edf-{by}-{norm}" for by in GROUPINGS for norm in ("plain", "norm")),
    "cardinality",
    "size",
    "importance",
)


def figures(
    records: list[dict[str, Any]],
    importances: Importances | Mapping[str, Importances | None] | None = None,
    recommendation: dict[str, Any] | None = None,
) -> dict[str, go.Figure]:
    """Every figure of the page, by name; ``recommendation`` is from :mod:`nas.search.confirm`.

    The views that summarise accuracy (EDFs, Table 3, Fig. 7, importances) come once per phase
    (:func:`phase_name`), each over its own phase's trials; ``importances`` maps a phase to its
    :class:`Importances` (a bare one is the search phase's).
    """
    if not isinstance(importances, Mapping):
        importances = {SEARCH: importances}
    figs = {f"pareto-{m}": pareto_figure(records, m) for m in METRICS}
    for ph in PHASES:
        for by in GROUPINGS:
            for norm in (False, True):
                name = f"edf-{by}-{'norm' if norm else 'plain'}"
                figs[phase_name(name, ph)] = edf_figure(records, by, norm, ph)
        figs[phase_name("cardinality", ph)] = cardinality_figure(records, phase=ph)
        figs[phase_name("size", ph)] = model_size_figure(records, phase=ph)
        figs[phase_name("importance", ph)] = importance_figure(importances.get(ph), records, ph)
    figs["curves"] = learning_curves_figure(records)
    figs["recommendation"] = recommendation_figure(recommendation)
    return figs
