"""Phases apart: no view of the dashboard averages a proxy and a confirmation trial of one
configuration; each phase's view shows its own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from nas import dashboard as dash
from nas.search.attrs import CONFIRM, SEARCH
from tests.browser import open_dashboard, session
from tests.helpers import confirmations, trial

# 4x2d: one proxy trial at 64.4% error, one confirmation trial at 55.6%. Their average, 60.0%
# (accuracy 40.0%), must show nowhere. No other configuration's mean is near it: the proxy
# trials lie below 36% accuracy, the confirmation trials above 44%.
PROXY_ERR, CONFIRM_ERR, AVERAGE_ERR = 64.4, 55.6, 60.0
PROXY = [  # (C, d, accuracy): Table 3's 2x4d, 4x2d and 8x1d share FLOPs within 10%
    (4, 2, 1 - PROXY_ERR / 100),
    *((2, 4, a) for a in (0.31, 0.30)),
    *((8, 1, a) for a in (0.33, 0.32)),
    *((2, 2, a) for a in (0.27, 0.28)),
    (4, 1, 0.29),
    *((1, 8, a) for a in (0.22, 0.23)),
    (1, 4, 0.21),
    (8, 2, 0.34),
    (4, 4, 0.35),
]
CONFIRMED = [  # Fig. 7's d=2 series (2x2d, 4x2d) and Table 3's line, in the longer schedule
    (4, 2, (1 - CONFIRM_ERR / 100,)),
    (8, 1, (0.47, 0.49)),
    (2, 4, (0.46, 0.45)),
    (2, 2, (0.47, 0.46)),
]


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    trials = [trial(i, c, d, a) for i, (c, d, a) in enumerate(PROXY)]
    for c, d, accs in CONFIRMED:
        trials += confirmations(len(trials), c, d, accs)
    s = optuna.create_study()
    s.add_trials(trials)
    return s


@pytest.fixture(scope="module")
def figs(study: optuna.Study) -> dict[str, Any]:
    records = dash.records_from_study(study)
    made = dash.figures(records, dash.study_importances(study), dash.study_recommendation(study))
    return {name: fig.to_plotly_json() for name, fig in made.items()}


def _leaves(obj: Any) -> list[Any]:
    """The numbers and strings inside a figure's JSON (lists, arrays and dicts opened)."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def _numbers(obj: Any) -> list[float]:
    return [
        float(v) for v in _leaves(obj) if isinstance(v, int | float) and not isinstance(v, bool)
    ]


# 60.0 (the average error) or 40.0% (its accuracy) as text: "60.0", "60.00%", "40.0%", not
# inside another number ("0.600", "160.0").
AVERAGE_TEXT = re.compile(r"(?<![\d.])(60\.00?(?!\d)|40\.00?%)")


def test_no_figure_shows_the_average_of_the_two_phases(figs: dict[str, Any]) -> None:
    assert "cardinality@confirm" in figs and "importance@confirm" in figs
    for name, fig in figs.items():
        for trace in fig["data"]:
            # Errors (%) are drawn on x (EDFs) or y (Table 3, Fig. 7); accuracies as fractions
            # on y (Pareto) or x (recommendation). Importances and probabilities are < 1.
            values = _numbers({k: trace.get(k) for k in ("x", "y", "error_x", "error_y")})
            assert not any(abs(v - AVERAGE_ERR) < 0.05 for v in values), name
            if name.startswith("pareto") or name == "recommendation":
                assert not any(abs(v - (1 - AVERAGE_ERR / 100)) < 5e-4 for v in values), name
        for text in (v for v in _leaves(fig) if isinstance(v, str)):
            assert not AVERAGE_TEXT.search(text), (name, text)


def _error_of(fig: dict[str, Any], notation: str) -> list[float]:
    """The errors drawn for a spec (a point's text is its notation) in Table 3 or Fig. 7."""
    return [
        y
        for trace in fig["data"]
        for text, y in zip(trace.get("text") or [], trace.get("y") or [], strict=False)
        if text == notation
    ]


def test_each_phase_shows_its_own_errors(figs: dict[str, Any], study: optuna.Study) -> None:
    # Table 3 and Fig. 7: the 4x2d point is the proxy trial's in the search view, the
    # confirmation trial's in the confirmation view.
    for view in ("cardinality", "size"):
        assert _error_of(figs[view], "4x2d") == [pytest.approx(PROXY_ERR)], view
        assert _error_of(figs[f"{view}@confirm"], "4x2d") == [pytest.approx(CONFIRM_ERR)], view
    records = dash.records_from_study(study)
    # The EDFs hold each phase's trials alone: the proxy one in C=4 of the search phase.
    groups = dash.edf_groups(records, "cardinality")
    assert sorted(groups["C=4"][0]) == pytest.approx(sorted([PROXY_ERR, 71.0, 65.0]))
    confirm = dash.edf_groups(records, "cardinality", phase=CONFIRM)
    assert confirm["C=4"][0] == [pytest.approx(CONFIRM_ERR)]
    assert sum(len(e) for e, _ in confirm.values()) == 7  # the seven confirmation trials
    # Importances: the 13 proxy trials; the 7 confirmation trials are too few on their own.
    assert "n=13 complete trials" in figs["importance"]["layout"]["title"]["text"]
    assert dash.waiting_text(dash.figures(records)["importance@confirm"]) == (
        "too few trials for parameter importances (confirmation trials): 3 more needed"
    )
    assert dash.study_importances(study)[SEARCH].n == 13


def test_the_page_chooses_the_phase_and_ships_both(study: optuna.Study) -> None:
    records = dash.records_from_study(study)
    page = dash.build_page(records, "mixed", dash.study_importances(study))
    data = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page, re.S).group(1))
    assert data["phases"] == {SEARCH: len(PROXY), CONFIRM: 7}
    for name in ("cardinality", "size", "importance", "edf-cardinality-plain"):
        assert name in data["figures"] and f"{name}@confirm" in data["figures"]
    assert '<select id="phase">' in page and '<option value="search">' in page


@pytest.mark.browser
def test_the_phase_selector_redraws_every_phased_view(
    chromium, study: optuna.Study, tmp_path: Path
) -> None:
    """In Chromium: choosing the confirmation trials redraws Table 3, Fig. 7, the EDFs and the
    importances from that phase's figures; the proxy trials again bring the default back."""
    page = tmp_path / "mixed.html"
    records = dash.records_from_study(study)
    page.write_text(dash.build_page(records, "mixed", dash.study_importances(study)))

    def drawn_4x2d(s: Any, view: str) -> list[float]:
        return s.page.evaluate(
            f"""() => document.getElementById({view!r}).data.flatMap(
                t => (t.text || []).flatMap((x, i) => x === "4x2d" ? [t.y[i]] : []))"""
        )

    with session(chromium) as s:
        open_dashboard(s, page.as_uri())
        assert drawn_4x2d(s, "cardinality") == [pytest.approx(PROXY_ERR)]
        s.page.select_option("#phase", CONFIRM)
        s.page.wait_for_function(
            "document.querySelector('#cardinality .gtitle').textContent"
            ".includes('(confirmation trials)')"
        )
        for view in ("cardinality", "size"):
            assert drawn_4x2d(s, view) == [pytest.approx(CONFIRM_ERR)], view
        # Seven confirmation trials: too few for importances, and for any EDF group of five.
        assert s.page.evaluate(
            "document.getElementById('importance').classList.contains('waiting')"
        )
        assert "(confirmation trials)" in s.page.inner_text("#edf")
        s.page.select_option("#phase", SEARCH)
        s.page.wait_for_function(
            "!document.querySelector('#cardinality .gtitle').textContent.includes('(confirm')"
        )
        assert drawn_4x2d(s, "cardinality") == [pytest.approx(PROXY_ERR)]
        assert s.errors == [] and s.blocked == []
