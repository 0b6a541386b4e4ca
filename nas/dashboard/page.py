"""The dashboard page: a stored study's records and figures in one self-contained HTML file.

plotly.js is inlined, so that the page opens with no network; ``live`` pages poll the server
(:mod:`nas.dashboard.server`) and reload when the study changes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from nas.dashboard.distributions import PHASES, phase_trials
from nas.dashboard.figures import METRICS, figures, hover_key
from nas.dashboard.importance import Importances, param_importances
from nas.dashboard.plot import FINISHED, format_params, spec_of, waiting_text
from nas.fileio import ensure_parent, name_part, write_text
from nas.search.answer import answer_line, answer_of
from nas.search.records import mark_config_means, trial_records
from nas.search.storage import UnknownStudy, load


def study_recommendation(study: optuna.Study) -> dict[str, Any] | None:
    """The recommendation of the study's answer (:func:`nas.search.answer.study_answer`, with
    the study's own ``--prefer``), if it has one."""
    answer = answer_of(study)
    return None if answer is None else answer["recommendation"]


def study_importances(study: optuna.Study) -> dict[str, Importances | None]:
    """:func:`param_importances` of each phase, never of both pooled."""
    return {ph: param_importances(study, ph=ph) for ph in PHASES}


def load_study(study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a study through :mod:`nas.search.storage`, turning failures into one-line
    ValueErrors."""
    try:
        return load(study_name, storage, read_only=True)
    except UnknownStudy as e:
        have = f"available: {', '.join(e.names)}" if e.names else "it has no studies"
        raise ValueError(f"no study named {study_name!r} in {e.shown}; {have}") from None


def records_from_study(study: optuna.Study) -> list[dict[str, Any]]:
    """One :func:`nas.search.records.trial_record` per trial (what ``trials --json`` reads too)."""
    return trial_records(study)


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trial table's rows: display-ready fields of every record, one row per trial, with its
    configuration's mean accuracy over its complete trials (seeds), as ``trials`` shows it."""
    means = [
        dict(
            r,
            spec=r.get("spec"),
            hparams=r.get("hparams") or {},
            val_accuracy=r.get("val_accuracy"),
        )
        for r in records
    ]
    mark_config_means(means)
    rows = []
    for r, m in zip(records, means, strict=True):
        spec = spec_of(r)
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
                "config_mean": m["spec_mean_accuracy"],
                "config_trials": m["spec_trials"],
                "hparams": format_params(r["optuna_params"]),
            }
        )
    return rows


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
    shown = (*FINISHED, "RUNNING", "WAITING", "rejected", "surplus")
    parts = [f"{counts[s]} {s.lower()}" for s in shown if counts[s]]
    return f"{len(records)} trials: " + ", ".join(parts)


def _page_template() -> str:
    return (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")


def build_page(
    records: list[dict[str, Any]],
    study_name: str,
    importances: Importances | dict[str, Importances | None] | None = None,
    live: bool = False,
    poll_seconds: float = 5.0,
    state: dict[str, Any] | None = None,
    recommendation: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
) -> str:
    """One self-contained HTML page (plotly.js inlined) of every figure and the trial table.

    ``live`` makes the page poll ``state.json`` every ``poll_seconds`` and reload when the
    study's ``state`` (see :func:`study_state`) changes. A figure with nothing to show ships as
    its one ``waiting`` line (the page draws no axes for it). ``answer``
    (:func:`nas.search.answer.study_answer`) is the header's line; ``importances`` maps each
    phase to its own (a bare one is the search phase's).
    """
    records = json_safe(records)  # a NaN loss in a history must not break the page's JSON
    made = figures(records, importances, recommendation)
    figs = {name: fig.to_plotly_json() for name, fig in made.items()}
    waits = {name: text for name, fig in made.items() if (text := waiting_text(fig))}
    # One template for every plot, shipped once (the page sets it on each layout).
    for fig in figs.values():
        fig["layout"].pop("template", None)
    # The three Pareto views share their hover texts: ship them once, keyed by the point's
    # trial numbers (a configuration's are the same in every view, its text too).
    hover: dict[str, str] = {}
    for name in (f"pareto-{m}" for m in METRICS):
        for trace in figs[name]["data"]:
            if "text" in trace and trace.get("meta", {}).get("role") != "selected":
                keys = map(hover_key, trace["customdata"])
                hover.update(zip(keys, trace.pop("text"), strict=True))
    data = {
        "template": pio.templates["plotly_white"].to_plotly_json(),
        "figures": figs,
        "waiting": waits,
        "hover": hover,
        "rows": table_rows(records),
        "live": live,
        "poll_ms": int(1000 * poll_seconds),
        "state": state,
        "metrics": {m: any(r.get(m) is not None for r in records) for m in METRICS},
        "phases": {ph: len(phase_trials(records, ph)) for ph in PHASES},
    }
    fills = {
        "title": html.escape(f"resnext-nas · {study_name}"),
        "study": html.escape(study_name),
        "summary": html.escape(_summary(records)),
        "answer": "" if answer is None else html.escape(answer_line(answer)),
        "plotlyjs": get_plotlyjs(),
        "data": script_json(data),
    }
    # One pass over the template, so that no filled-in text is searched for placeholders again.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: fills[m.group(1)], _page_template())


def json_safe(obj: Any) -> Any:
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
    answer = answer_of(study)
    return build_page(
        records,
        study_name,
        study_importances(study),
        recommendation=None if answer is None else answer["recommendation"],
        answer=answer,
    )


def default_out(study_name: str) -> Path:
    """``dashboard-<study>.html`` in the working directory, the name made safe for a file."""
    return Path(f"dashboard-{name_part(study_name, checksum=False)}.html")


def write_dashboard(study_name: str, storage: str | None, out: Path) -> Path:
    """Write the page of a stored study to ``out`` (atomically) and return the path."""
    ensure_parent(out)
    page = dashboard_page(study_name, storage)
    write_text(out, page, "--out")
    return out
