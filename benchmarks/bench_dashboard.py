"""How the dashboard scales: a 5,000-trial study, its page build, size and first render.

Prints, from one run: the time to make the study (no training: synthetic trials with exact
complexity, bulk-added to in-memory storage), to read its records and importances (with their
bootstrap intervals), to build the page, the page's size (with and without the inlined
plotly.js), and in headless Chromium (network blocked) the time from navigation to every plot
rendered, plus how long a click-selection and a metric switch take on the loaded page. With
--svg-too, the same page with WebGL traces replaced by SVG ones, to show what Scattergl buys.

    python benchmarks/bench_dashboard.py [--trials 5000] [--svg-too] [--keep out.html]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from plotly.offline import get_plotlyjs  # noqa: E402

from nas import dashboard as dash  # noqa: E402
from tests.synthetic import synthetic_trials  # noqa: E402


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def cpu_timed(fn, *args, **kwargs):
    """Wall and CPU seconds: on a shared machine the two differ by the contention."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def render(page: Path) -> dict[str, float]:
    """Milliseconds from navigation to script start and to all plots rendered, and interactions."""
    from tests.browser import browser, missing_reason, open_dashboard, session

    if missing_reason():
        raise SystemExit(f"cannot render: {missing_reason()}")
    with browser() as b, session(b) as s:
        times = open_dashboard(s, page.as_uri(), timeout_ms=600_000)
        click = s.page.evaluate(
            """() => { const t = performance.now(); window.dashboardSelect([7], false);
            return performance.now() - t; }"""
        )
        switch = s.page.evaluate(
            """async () => { const t = performance.now();
            const m = document.getElementById("metric"); m.value = "params";
            m.dispatchEvent(new Event("change"));
            await new Promise(r => document.getElementById("pareto").once("plotly_afterplot", r));
            return performance.now() - t; }"""
        )
        if s.errors or s.blocked:
            raise SystemExit(f"browser errors {s.errors} or requests {s.blocked}")
    return {**times, "select_ms": click, "switch_ms": switch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--svg-too", action="store_true", help="also render an all-SVG page")
    ap.add_argument("--keep", type=Path, help="write the page here")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    trials, t_make = timed(synthetic_trials, args.trials, seeds_per_spec=3)
    study = optuna.create_study(study_name="bench", direction="minimize")
    _, t_add = timed(study.add_trials, trials)
    records, t_rec = timed(dash.records_from_study, study)
    # Each phase's importances, as the page computes them (this study has proxy trials only).
    imps, t_imp, c_imp = cpu_timed(dash.study_importances, study)
    imp = imps["search"]
    page, t_page, c_page = cpu_timed(dash.build_page, records, "bench", imps)
    js = len(get_plotlyjs().encode())
    size = len(page.encode())
    print(f"study: {args.trials} trials made in {t_make:.2f} s, bulk-added in {t_add:.2f} s")
    print(
        f"records_from_study: {t_rec:.2f} s; importances (PED-ANOVA, {imp.resamples} bootstrap "
        f"resamples of {imp.drawn} of {imp.n} trials): {t_imp:.2f} s wall, {c_imp:.2f} s CPU"
    )
    print(f"build_page: {t_page:.2f} s wall, {c_page:.2f} s CPU")
    print(
        f"page: {size / 1e6:.2f} MB ({js / 1e6:.2f} MB of it plotly.js, "
        f"{(size - js) / 1e6:.2f} MB figures and table data)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.html"
        path.write_text(page, encoding="utf-8")
        r = render(path)
        print(
            f"Chromium (WebGL above {dash.GL_POINTS} points): script start "
            f"{r['scriptStart']:.0f} ms, all plots rendered {r['rendered']:.0f} ms after "
            f"navigation ({r['rendered'] - r['plotStart']:.0f} ms of plotting); click-select "
            f"{r['select_ms']:.0f} ms, metric switch {r['switch_ms']:.0f} ms"
        )
        if args.svg_too:
            dash.GL_POINTS = 10**9
            svg = Path(tmp) / "svg.html"
            svg.write_text(dash.build_page(records, "bench", imps), encoding="utf-8")
            r2 = render(svg)
            print(
                f"Chromium (all SVG): all plots rendered {r2['rendered']:.0f} ms after "
                f"navigation ({r2['rendered'] - r2['plotStart']:.0f} ms of plotting); "
                f"click-select {r2['select_ms']:.0f} ms, metric switch {r2['switch_ms']:.0f} ms"
            )


if __name__ == "__main__":
    main()
