"""The page in Chromium at 1, 3, 30 and 5,000 trials: no script error, no empty
axes, the small-n lines at small n and the verdicts at large n.

Studies are fabricated (tests/synthetic.py), not trained. Skipped only where Chromium or
playwright is missing and $CI is unset.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas import dashboard as dash
from nas.dashboard.evidence import MIN_IMPORTANCE
from nas.dashboard.importance import MAX_DRAWN, RESAMPLES
from tests.browser import open_dashboard, session
from tests.synthetic import synthetic_trials

pytestmark = pytest.mark.browser
PANELS = ("recommendation", "pareto", "curves", "edf", "cardinality", "size", "importance")

# Per panel: "empty" when it has axes but no point, "waiting" with its line, else "drawn".
PANEL_STATE = """(ids) => ids.map((id) => {
    const el = document.getElementById(id);
    if (el.classList.contains("waiting")) {
        return [id, "waiting", el.textContent, el.querySelectorAll("svg").length];
    }
    const data = el._fullData || [];
    const points = data.some((t) => t.visible !== false &&
        ((t.x && t.x.length) || (t.y && t.y.length)));
    return [id, points ? "drawn" : "empty", el.textContent, 0];
})"""


def page_of(n: int, tmp: Path) -> Path:
    study = optuna.create_study(study_name=f"n{n}", direction="minimize")
    study.add_trials(synthetic_trials(n))
    page = dash.build_page(
        dash.records_from_study(study),
        study.study_name,
        dash.param_importances(study),
        recommendation=dash.study_recommendation(study),
    )
    out = tmp / f"n{n}.html"
    out.write_text(page, encoding="utf-8")
    return out


def panels(chromium, path: Path) -> dict[str, tuple[str, str, int]]:
    with session(chromium) as s:
        s.page.set_default_navigation_timeout(300_000)  # a 10 MB page on a loaded 2-core machine
        open_dashboard(s, path.as_uri(), timeout_ms=300_000)
        states = s.page.evaluate(PANEL_STATE, list(PANELS))
        assert s.errors == [] and s.blocked == [] and s.dialogs == []
    return {pid: (state, text, svgs) for pid, state, text, svgs in states}


def check_no_empty_axes(got: dict[str, tuple[str, str, int]]) -> None:
    for pid, (state, text, svgs) in got.items():
        assert state != "empty", f"{pid} draws empty axes"
        if state == "waiting":
            assert text.strip() and "\n" not in text.strip() and svgs == 0, pid


@pytest.mark.parametrize("n", [1, 3])
def test_small_studies_say_what_they_wait_for(chromium, tmp_path: Path, n: int) -> None:
    got = panels(chromium, page_of(n, tmp_path))
    check_no_empty_axes(got)
    done = sum(1 for i in range(n) if not (i % 11 == 10 or i % 7 == 6))
    assert got["importance"][:2] == (
        "waiting",
        f"too few trials for parameter importances: {MIN_IMPORTANCE - done} more needed",
    )
    assert got["edf"][0] == "waiting" and "too few trials for error EDFs" in got["edf"][1]
    assert got["recommendation"][1] == "Recommendation: waiting for the confirmation phase"
    assert got["size"][0] == "waiting" and got["pareto"][0] == "drawn"
    assert "higher" not in got["importance"][1] and "KS(" not in got["edf"][1]


def test_thirty_trials_show_importances_with_their_n(chromium, tmp_path: Path) -> None:
    got = panels(chromium, page_of(30, tmp_path))
    check_no_empty_axes(got)
    assert got["importance"][0] == "drawn" and "95% CI" in got["importance"][1]
    # Every complete trial is drawn from: no cap below MAX_DRAWN.
    assert f"95% bootstrap interval, {RESAMPLES} resamples of the " in got["importance"][1]
    assert got["edf"][0] == "drawn" and "DKW" in got["edf"][1]
    assert got["cardinality"][0] == "drawn" and got["size"][0] == "drawn"


@pytest.mark.slow
def test_five_thousand_trials_show_verdicts(chromium, tmp_path: Path) -> None:
    got = panels(chromium, page_of(5000, tmp_path))
    check_no_empty_axes(got)
    assert all(got[p][0] == "drawn" for p in PANELS if p != "recommendation")
    assert "-> higher accuracy" in got["importance"][1], got["importance"][1]
    assert f"{RESAMPLES} resamples of {MAX_DRAWN} of the " in got["importance"][1]
    assert ": differ" in got["edf"][1], got["edf"][1]
