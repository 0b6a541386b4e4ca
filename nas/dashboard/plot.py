"""What the dashboard's figures share: trial filters, labels, hover text, traces and layout."""

from __future__ import annotations

import html
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

import resnext
from nas.search.records import spec_key
from resnext.complexity import format_count

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
# Above this many points a scatter is drawn with WebGL (Scattergl): SVG slows down past ~1-2k.
GL_POINTS = 1500

LABELS = {"cardinality": "C", "bottleneck_width": "d", "width": "width", "depth": "depths"}
GROUPINGS = ("cardinality", "bottleneck_width", "width", "depth")


@lru_cache(maxsize=4096)
def _spec_of(key: tuple) -> resnext.Spec:
    return resnext.Spec.from_dict(dict(key))


def spec_of(r: dict[str, Any]) -> resnext.Spec | None:
    """The record's spec; thousands of trials share a few hundred specs, so parse each once."""
    return _spec_of(spec_key(r["spec"])) if r.get("spec") else None


def error_pct(r: dict[str, Any]) -> float:
    """Top-1 error in percent."""
    return 100.0 * (1.0 - r["val_accuracy"])


def complete_trials(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["state"] == "COMPLETE" and r.get("val_accuracy") is not None and r.get("spec")
    ]


def colours(values: Iterable[int]) -> dict[int, str]:
    """A fixed colour per cardinality, the same in every plot."""
    palette = qualitative.Plotly + qualitative.D3
    return {v: palette[i % len(palette)] for i, v in enumerate(sorted(set(values)))}


def si(x: float | None, unit: str = "") -> str:
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
        f"acc {acc} · {si(r.get('params'))} params · {si(r.get('flops'))} FLOPs · "
        f"latency {lat}"
    )


def format_params(params: dict[str, Any]) -> str:
    """``k=v`` pairs by name, floats to 4 significant digits: ``lr=0.1, optimizer=sgd``."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def as_array(values: list[Any]) -> np.ndarray:
    """A list as an object array: plotly validates it ~10x faster than a list of 5,000, and it
    still ships as a plain JSON list (nulls kept as gaps), which the page's script reads."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # one by one: a list element (trial numbers) stays a list
        out[i] = v
    return out


def scatter(n_points: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    arrays = {k: as_array(v) for k, v in kwargs.items() if isinstance(v, list)}
    return (go.Scattergl if n_points > GL_POINTS else go.Scatter)(**{**kwargs, **arrays})


def note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font_size=14
    )
    return fig


def waiting(fig: go.Figure, text: str) -> go.Figure:
    """Mark a figure with nothing to show: the page collapses it to the one line ``text``."""
    fig.update_layout(meta={"waiting": text})
    return note(fig, text)


def waiting_text(fig: go.Figure) -> str | None:
    """The line a collapsed figure shows instead of axes, or None when it has data to draw."""
    meta = fig.layout.meta
    return meta.get("waiting") if isinstance(meta, dict) else None


def layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title=title,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"itemsizing": "constant"},
        **kwargs,
    )
    return fig
