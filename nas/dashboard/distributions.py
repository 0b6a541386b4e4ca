"""The design-space figures: error EDFs by group (Radosavovic et al. 2019) and the paper's views,
Table 3 (error against C at preserved complexity) and Fig. 7 (error against model size), each
view with the pooled effect of its axes over every trial of its phase
(:func:`nas.stats.designspace.axis_effects`).

Each takes :func:`nas.search.records.trial_record` dicts and a ``phase`` and returns a plotly
Figure over the complete trials of that phase alone: a 3-epoch proxy trial and a longer
confirmation trial of one configuration measure different things, and are never pooled or
averaged. The search (proxy) phase is the default: it is the design space's sample.
"""

from __future__ import annotations

import html
import math
import statistics
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from nas.dashboard.evidence import (
    MIN_EDF_GROUP,
    dkw_epsilon,
    effective_n,
    ks_critical,
    too_few,
)
from nas.dashboard.plot import (
    GROUPINGS,
    LABELS,
    as_array,
    complete_trials,
    error_pct,
    layout,
    si,
    spec_of,
    waiting,
)
from nas.search.attrs import CONFIRM, SEARCH
from nas.search.records import spec_key
from nas.stats.designspace import (
    axis_effect_lines,
    axis_effects,
    complexity_weights,
    edf,
    ks_statistic,
)
from nas.stats.recommend import mean_interval

# ---------------------------------------------------------------------------------------------
# Design-space EDFs (Radosavovic et al. 2019)


# The phases a view can show, as the page names them.
PHASES = {SEARCH: "proxy trials (search phase)", CONFIRM: "confirmation trials"}


def check_phase(phase: str) -> str:
    """``phase`` if it is one of :data:`PHASES`, else ValueError."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")
    return phase


def phase_trials(records: list[dict[str, Any]], phase: str = SEARCH) -> list[dict[str, Any]]:
    """The complete trials of one phase: a view compares trials of one schedule, so a proxy and
    a confirmation trial (a longer one) are never pooled."""
    check_phase(phase)
    return [r for r in complete_trials(records) if r.get("phase", SEARCH) == phase]


def search_phase(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The complete trials of the search phase (:func:`phase_trials`)."""
    return phase_trials(records, SEARCH)


def phase_words(phase: str) -> str:
    """`` (confirmation trials)`` for a title, nothing for the default search phase."""
    return "" if phase == SEARCH else f" ({PHASES[phase]})"


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
    return f"{LABELS[by]}={value}"


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
        return f"{LABELS[by]}={key[0]}" if key[0] == key[1] else f"{LABELS[by]}={key[0]}..{key[1]}"
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
    records: list[dict[str, Any]],
    by: str = "cardinality",
    normalise: bool = False,
    phase: str = SEARCH,
) -> dict[str, tuple[list[float], list[float]]]:
    """Errors (%) and weights of the complete trials of ``phase`` by group label (see
    :func:`group_keys`).

    With ``normalise``, the weights come from :func:`complexity_weights` (equal log-FLOPs
    distribution in every group), after leaving out the smallest groups, one at a time, while
    the groups share no FLOPs range; otherwise each trial weighs 1.
    """
    done = phase_trials(records, phase)
    keys = group_keys(done, by)
    if normalise:
        done, keys, weights = _normalised(done, keys)
    else:
        weights = np.ones(len(done))
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        groups[_label(by, key)] = (
            [error_pct(done[i]) for i in idx],
            [float(weights[i]) for i in idx],
        )
    return groups


def edf_figure(
    records: list[dict[str, Any]],
    by: str = "cardinality",
    normalise: bool = False,
    phase: str = SEARCH,
) -> go.Figure:
    """Error EDFs of the groups of ``by`` with at least ``MIN_EDF_GROUP`` trials of ``phase``,
    each with its 95% DKW band and n, and the KS statistic of neighbouring groups against its
    critical value.

    Weighted (normalised) groups use Kish's effective n for the band and the critical value.
    """
    kind = "complexity-normalised " if normalise else ""
    what = f"{kind}error EDFs by {LABELS.get(by, by)}{phase_words(phase)}"
    fig = go.Figure()
    layout(
        fig,
        f"{kind}error EDF by {LABELS.get(by, by)}{phase_words(phase)} (95% DKW bands)",
        xaxis={"title": "top-1 error (%)"},
        yaxis={"title": "cumulative prob.", "range": [0, 1.02]},
    )
    try:
        groups = edf_groups(records, by, normalise, phase)
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
        x = as_array([xs[0], *xs])
        f = [0.0, *fs]
        for edge, fill in ((-eps, None), (eps, "tonexty")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=as_array([min(1.0, max(0.0, v + edge)) for v in f]),
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
                y=as_array(f),
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


def spec_errors(records: list[dict[str, Any]], phase: str = SEARCH) -> list[dict[str, Any]]:
    """Complete trials of ``phase`` merged per spec: mean, std and 95% t interval of the error
    over seeds (%), the interval's bounds clipped to [0, 100]% (a t interval of a few seeds can
    leave it). The other phase trains another schedule and is never averaged in."""
    by_spec: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in phase_trials(records, phase):
        by_spec[spec_key(r["spec"])].append(r)
    rows = []
    for trials in by_spec.values():
        errs = [error_pct(r) for r in trials]
        first = trials[0]
        iv = mean_interval(errs)
        rows.append(
            {
                "spec": first["spec"],
                "flops": first["flops"],
                "params": first["params"],
                "mean": statistics.fmean(errs),
                "std": statistics.stdev(errs) if len(errs) > 1 else 0.0,
                # 95% Student-t interval over seeds; one seed, or seeds that agree, have none
                # (drawn without a bar).
                "low": max(0.0, iv.low) if iv.defined else iv.mean,
                "high": min(100.0, iv.high) if iv.defined else iv.mean,
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


def _pooled(
    fig: go.Figure,
    records: list[dict[str, Any]],
    names: list[str],
    empty: str,
    phase: str = SEARCH,
) -> go.Figure:
    """The pooled effects of ``names`` over every trial of ``phase``: a note in the corner, or,
    on a figure with nothing to draw, after the ``empty`` line the page shows instead."""
    lines = axis_effect_lines(axis_effects(records, phase), names)
    if not fig.data:
        return waiting(fig, f"{empty}; pooled over every trial, " + "; ".join(lines))
    fig.add_annotation(
        text="<br>".join(html.escape(line) for line in lines),
        xref="paper",
        yref="paper",
        x=0.01,
        y=0.99,
        xanchor="left",
        yanchor="top",
        align="left",
        showarrow=False,
        font_size=11,
        bgcolor="rgba(255,255,255,0.8)",
        name="axis effects",
    )
    return fig


def cardinality_figure(
    records: list[dict[str, Any]],
    tolerance: float = 0.1,
    max_lines: int = 6,
    phase: str = SEARCH,
) -> go.Figure:
    """Table 3 style: error against C among specs of one family within ``tolerance`` of FLOPs,
    over the trials of ``phase``.

    Each line is one family (template, depths, width...) and one set of
    :func:`equal_complexity_sets`; the ``max_lines`` sets spanning the most C are drawn. The
    note holds the log2 C effect at fixed FLOPs pooled over every trial of the phase.
    """
    lines = [
        pts
        for fam_rows in _families(spec_errors(records, phase))
        for pts in equal_complexity_sets(fam_rows, tolerance, max_lines)
    ]
    lines.sort(key=lambda pts: (-len(pts), -sum(r["n"] for r in pts), pts[0]["flops"]))
    fig = go.Figure()
    for pts in sorted(lines[:max_lines], key=lambda pts: pts[0]["flops"]):
        mid = statistics.median(r["flops"] for r in pts)
        name = f"{_family_name(pts[0]['spec'])}, ~{si(mid)} FLOPs"
        if all(r["n"] == 1 for r in pts):  # a line through single seeds is no trend yet
            name += ", one seed each: no intervals"
        fig.add_trace(_error_trace(pts, [r["spec"]["cardinality"] for r in pts], name))
    layout(
        fig,
        f"Error against cardinality at preserved complexity (FLOPs within {tolerance:.0%})"
        f"{phase_words(phase)}",
        xaxis={"title": "cardinality C", "type": "log", "dtick": math.log10(2)},
        yaxis={"title": "top-1 error (%), mean and 95% interval over seeds"},
    )
    return _pooled(
        fig,
        records,
        ["log2 C"],
        f"Table 3 view{phase_words(phase)}: needs two cardinalities within {tolerance:.0%} of "
        "the same FLOPs (same depths and width); this study has none",
        phase,
    )


def _families(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    fams: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        fams[_family(r["spec"])].append(r)
    return list(fams.values())


def model_size_figure(
    records: list[dict[str, Any]], max_series: int = 4, phase: str = SEARCH
) -> go.Figure:
    """Fig. 7 style: error against params, cardinality series (d fixed) and width series (C=1),
    over the trials of ``phase``.

    Per family, the ``max_series`` values of d with the most cardinalities make the
    cardinality series; the C=1 specs make the width series. The note holds the log2 C and
    log2 width effects at fixed FLOPs pooled over every trial of the phase.
    """
    fig = go.Figure()
    for fam_rows in _families(spec_errors(records, phase)):
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
    layout(
        fig,
        f"Error against model size: cardinality series vs width series{phase_words(phase)}",
        xaxis={"title": "parameters", "type": "log"},
        yaxis={"title": "top-1 error (%), mean and 95% interval over seeds"},
    )
    return _pooled(
        fig,
        records,
        ["log2 C", "log2 width"],
        f"Fig. 7 view{phase_words(phase)}: needs a series of two or more model sizes (one d "
        "across C, or C=1 across widths); this study has none",
        phase,
    )
