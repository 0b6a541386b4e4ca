"""The dashboard page in headless Chromium with the network blocked: renders, hovers, links.

Skipped only where /usr/bin/chromium (or playwright) is missing and $CI is unset; under CI a
missing browser fails the run instead of passing it quietly.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import optuna
import pytest

from nas import dashboard as dash
from tests.browser import open_dashboard, session
from tests.helpers import XSS
from tests.synthetic import synthetic_trials

pytestmark = pytest.mark.browser
PLOTS = ("pareto", "curves", "edf", "cardinality", "size", "importance")


@pytest.fixture(scope="module")
def page_file(stored_study: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dash.write_dashboard(
        "synthetic", stored_study, tmp_path_factory.mktemp("page") / "dash.html"
    )


@pytest.fixture(scope="module")
def records(stored_study: str) -> list[dict]:
    return dash.records_from_study(dash.load_study("synthetic", stored_study))


@pytest.fixture(scope="module")
def loaded(chromium, page_file: Path):
    """One rendered page shared by the tests below (rendering is the slow part)."""
    with session(chromium) as s:
        open_dashboard(s, page_file.as_uri())
        yield s


@pytest.fixture
def fresh(loaded):
    """The shared page with no selection and every control back at its default."""
    loaded.page.evaluate(
        """() => {
        window.dashboardSelect([], false);
        const f = document.getElementById("filter");
        f.value = ""; f.dispatchEvent(new Event("input"));
        const o = document.getElementById("show-others");
        if (!o.checked) o.click();
    }"""
    )
    return loaded


def count(s, selector: str) -> int:
    return s.page.evaluate(f"document.querySelectorAll({selector!r}).length")


def test_every_plot_renders_offline_without_errors(fresh, records: list[dict]) -> None:
    s = fresh
    assert s.errors == [] and s.blocked == [] and s.dialogs == []
    for pid in PLOTS:
        assert s.page.evaluate(
            f"document.getElementById('{pid}').classList.contains('js-plotly-plot')"
        ), pid
    fig = dash.pareto_figure(records)
    want = sum(len(t.x) for t in fig.data)  # every trial, front ring and pruned point
    assert count(s, "#pareto .scatterlayer .point") == want > 20
    configs = sum(len(t.x) for t in fig.data if t.meta["role"] == "trials")
    assert count(s, "#pareto .errorbar path.yerror") == configs  # n=1: a bar of length 0
    edf = dash.edf_figure(records)
    assert count(s, "#edf .scatterlayer path.js-line") == len(edf.data) >= 4
    card = dash.cardinality_figure(records)
    assert count(s, "#cardinality .scatterlayer .point") == sum(len(t.x) for t in card.data)
    assert count(s, "#size .scatterlayer .point") > 5
    assert count(s, "#importance .bars .point path") == 4
    assert count(s, "#importance .errorbar path.xerror") == 4  # each bar's bootstrap interval
    # The one curves trace draws one line per trial with a history.
    n_hist = sum(bool(r["history"]) for r in records)
    path = s.page.evaluate(
        "Array.from(document.querySelectorAll('#curves .scatterlayer .trace:first-child "
        "path.js-line'), p => p.getAttribute('d')).join('')"
    )
    assert path.count("M") == n_hist


def test_the_network_block_catches_requests(chromium) -> None:
    with session(chromium) as s:
        s.page.goto("data:text/html,<p>x</p>")
        failed = s.page.evaluate(
            "fetch('https://cdn.plot.ly/plotly.min.js').then(() => false, () => true)"
        )
        assert failed and s.blocked == ["https://cdn.plot.ly/plotly.min.js"]


def point_xy(s, number: int) -> tuple[float, float]:
    """Where the configuration point holding trial ``number`` is drawn on the Pareto plot."""
    return tuple(
        s.page.evaluate(
            """(n) => {
            const gd = document.getElementById("pareto");
            for (const t of gd._fullData) {
                if (!t.meta || t.meta.role !== "trials") continue;
                const i = Array.from(t.customdata).findIndex((cd) => Array.from(cd).includes(n));
                if (i < 0) continue;
                const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
                const box = gd.getBoundingClientRect();
                return [box.left + xa._offset + xa.l2p(xa.d2l(t.x[i])),
                        box.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))];
            }
        }""",
            number,
        )
    )


def test_hover_shows_the_config_in_the_papers_notation(fresh, records: list[dict]) -> None:
    s = fresh
    s.page.locator("#pareto").scroll_into_view_if_needed()
    x, y = point_xy(s, 7)  # 8x14d, Table 2
    s.page.mouse.move(x, y)
    s.page.wait_for_selector("#pareto .hoverlayer .hovertext")
    label = s.page.evaluate(
        "Array.from(document.querySelectorAll('#pareto .hoverlayer .hovertext tspan.line'),"
        " t => t.textContent).join('\\n')"
    )
    first, second, third = label.split("\n")
    assert first == "#7 ResNeXt 8x14d, depths 3-3-3, width 256"
    assert second == f"acc {100 * records[7]['val_accuracy']:.2f}% (n=1, no interval)"
    assert third.endswith(" ms") and " M params" not in third


def test_clicking_a_point_highlights_its_row_and_curve(fresh, records: list[dict]) -> None:
    s = fresh
    s.page.locator("#pareto").scroll_into_view_if_needed()
    x, y = point_xy(s, 7)
    s.page.mouse.click(x, y)
    s.page.wait_for_selector('#trials tr.sel[data-number="7"]')
    assert s.page.evaluate("Array.from(document.querySelectorAll('#trials tr.sel'), "
                           "r => r.dataset.number)") == ["7"]  # fmt: skip
    assert "#7 ResNeXt 8x14d" in s.page.inner_text("#selection")
    curve = s.page.evaluate(
        "(() => { const gd = document.getElementById('curves');"
        " return Array.from(gd.data[gd.data.length - 1].customdata); })()"
    )
    assert curve == [7] * len(records[7]["history"]) + [None]
    ring = s.page.evaluate(
        "(() => { const gd = document.getElementById('pareto');"
        " return Array.from(gd.data[gd.data.length - 1].customdata); })()"
    )
    assert ring == [[7]]
    # The table shows the row: it is scrolled into its box.
    assert s.page.evaluate(
        """(() => { const box = document.getElementById("table-box").getBoundingClientRect();
        const row = document.querySelector('#trials tr.sel').getBoundingClientRect();
        return row.top >= box.top && row.bottom <= box.bottom; })()"""
    )


def test_clicking_a_configuration_selects_all_its_seeds(fresh, records: list[dict]) -> None:
    s = fresh
    s.page.locator("#pareto").scroll_into_view_if_needed()
    # 1x64d: trials 0, 1 and 11 complete (10 failed) make one point at their mean.
    seeds = [r["number"] for r in records if r["notation"] == records[0]["notation"]]
    done = [n for n in seeds if records[n]["state"] == "COMPLETE"]
    assert len(done) == 3 and len(seeds) == 4
    x, y = point_xy(s, 0)
    # Plotly clicks the point it last hovered: on a loaded machine, wait for that hover first.
    s.page.mouse.move(x, y)
    s.page.wait_for_function(
        "(document.querySelector('#pareto .hoverlayer .hovertext') || {}).textContent"
        "?.startsWith('#0 #1 #11 ')"
    )
    s.page.mouse.click(x, y)
    s.page.wait_for_selector('#trials tr.sel[data-number="11"]', state="attached")
    sel = s.page.evaluate(
        "Array.from(document.querySelectorAll('#trials tr.sel'), r => Number(r.dataset.number))"
    )
    assert sorted(sel) == done
    ring = s.page.evaluate(
        """(() => { const gd = document.getElementById('pareto'); const t = gd.data.at(-1);
        return [Array.from(t.x), Array.from(t.y),
                Array.from(t.customdata, (cd) => Array.from(cd))]; })()"""
    )
    mean = sum(records[n]["val_accuracy"] for n in done) / 3
    assert ring[1] == [pytest.approx(mean)] and ring[2] == [done]  # one ring, at the mean
    assert "selected 3: #0 " in s.page.inner_text("#selection")


def test_box_select_highlights_every_trial_inside(fresh, records: list[dict]) -> None:
    s = fresh
    s.page.locator("#pareto").scroll_into_view_if_needed()
    box = s.page.evaluate(
        """(() => { const gd = document.getElementById("pareto");
        const r = gd.getBoundingClientRect();
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return [r.left + xa._offset + 2, r.top + ya._offset + 2,
                r.left + xa._offset + xa._length - 2, r.top + ya._offset + ya._length - 2]; })()"""
    )
    s.page.mouse.move(box[0], box[1])
    s.page.mouse.down()
    s.page.mouse.move((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, steps=5)
    s.page.mouse.move(box[2], box[3], steps=5)
    s.page.mouse.up()
    placed = {r["number"] for r in records if r["val_accuracy"] is not None}
    s.page.wait_for_function(
        f"document.querySelectorAll('#trials tr.sel').length >= {len(placed) // 2}"
    )
    sel = s.page.evaluate(
        "Array.from(document.querySelectorAll('#trials tr.sel'), r => Number(r.dataset.number))"
    )
    assert set(sel) == placed


def test_table_sorts_filters_and_hides_pruned(fresh, records: list[dict]) -> None:
    s = fresh
    s.page.click("#trials th[data-key=accuracy]")
    shown = s.page.evaluate(
        "Array.from(document.querySelectorAll('#trials tbody tr'), r => Number(r.dataset.number))"
    )
    acc = {r["number"]: r["val_accuracy"] for r in records}
    known = [acc[n] for n in shown if acc[n] is not None]
    assert known == sorted(known) and all(acc[n] is None for n in shown[len(known) :])
    s.page.fill("#filter", "8x14d")
    visible = s.page.evaluate(
        "Array.from(document.querySelectorAll('#trials tbody tr'))"
        ".filter(r => r.style.display !== 'none').map(r => r.textContent)"
    )
    assert len(visible) == 2 and all("8x14d" in v for v in visible)  # trials 6 and 7
    s.page.fill("#filter", "")
    s.page.click("#show-others")
    states = s.page.evaluate(
        "Array.from(document.querySelectorAll('#trials tbody tr'))"
        ".filter(r => r.style.display !== 'none').map(r => r.children[1].textContent)"
    )
    assert set(states) == {"COMPLETE"}
    assert s.page.evaluate(
        "document.getElementById('pareto')._fullData.filter(t => t.meta.role === 'pruned')"
        ".every(t => t.visible === 'legendonly')"
    )


def test_switching_metric_and_grouping_redraws(fresh, stored_study: str) -> None:
    s = fresh
    s.page.select_option("#metric", "params")
    s.page.wait_for_function(
        "document.querySelector('#pareto .gtitle').textContent.includes('parameters')"
    )
    s.page.select_option("#edf-by", "bottleneck_width")
    s.page.wait_for_function(
        "document.querySelector('#edf .gtitle').textContent.includes('error EDF by d')"
    )
    legend = s.page.evaluate("document.querySelector('#edf .legend').textContent")
    assert "d=" in legend and "C=" not in legend
    # Normalised, the groups by d share too few trials: the panel becomes its one line.
    records = dash.records_from_study(dash.load_study("synthetic", stored_study))
    line = dash.waiting_text(dash.edf_figure(records, "bottleneck_width", normalise=True))
    assert line and line.startswith("too few trials for complexity-normalised error EDFs by d")
    s.page.click("#edf-norm")
    s.page.wait_for_function("document.getElementById('edf').classList.contains('waiting')")
    assert s.page.inner_text("#edf") == line
    assert s.page.evaluate("document.querySelectorAll('#edf svg').length") == 0
    s.page.click("#edf-norm")  # and back to the plot
    s.page.wait_for_function("document.querySelector('#edf .legend') !== null")
    assert not s.page.evaluate("document.getElementById('edf').classList.contains('waiting')")
    s.page.select_option("#metric", "flops")
    assert s.errors == []


def test_user_text_stays_text(chromium, stored_study: str, tmp_path: Path) -> None:
    out = dash.write_dashboard(XSS, stored_study, tmp_path / "xss.html")
    with session(chromium) as s:
        open_dashboard(s, out.as_uri())
        assert s.page.inner_text("#study-name") == XSS
        assert s.page.title() == f"resnext-nas · {XSS}"
        assert s.dialogs == [] and s.errors == [] and s.blocked == []


def test_live_page_reloads_when_a_trial_finishes(chromium, stored_study: str) -> None:
    study = optuna.create_study(study_name="browser-live", storage=stored_study)
    study.add_trials(synthetic_trials(2, odd=False))
    server = dash.make_server("browser-live", stored_study, port=0, poll_seconds=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with session(chromium) as s:
            open_dashboard(s, f"http://127.0.0.1:{server.server_address[1]}/")
            assert s.page.inner_text("#summary").startswith("2 trials")
            study.add_trials(synthetic_trials(3, odd=False)[2:])
            s.page.wait_for_function(
                "document.getElementById('summary').textContent.startsWith('3 trials')",
                timeout=60_000,
            )
            s.page.wait_for_function("document.body.dataset.rendered === '1'")
            assert s.errors == [] and s.blocked == []
    finally:
        server.shutdown()
        server.server_close()


def test_screenshot_is_a_rendered_png(chromium, page_file: Path, tmp_path: Path) -> None:
    png = dash.screenshot(page_file, tmp_path / "shot.png", width=1200, height=900)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1200, 900)
    # A blank page of that size compresses to a few kB; plots, text and colours do not.
    assert png.stat().st_size > 40_000
