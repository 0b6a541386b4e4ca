"""What the dashboard claims at each study size: n, intervals, and no verdict below
each panel's minimum n; the recommendation panel from fabricated confirmation trials."""

from __future__ import annotations

import math
import statistics

import numpy as np
import optuna
import pytest

from nas import dashboard as dash
from nas.dashboard.evidence import (
    MIN_EDF_GROUP,
    MIN_IMPORTANCE,
    dkw_epsilon,
    effect,
    effect_text,
    effective_n,
    ks_critical,
)
from nas.search.attrs import CONFIRM
from nas.search.confirm import recommendation
from nas.stats.designspace import edf, ks_statistic
from tests.helpers import proxy, trial
from tests.synthetic import synthetic_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_of(n: int, **kwargs) -> optuna.Study:
    s = optuna.create_study(direction="minimize")
    s.add_trials(synthetic_trials(n, **kwargs))
    return s


def figs_of(study: optuna.Study) -> dict:
    recs = dash.records_from_study(study)
    return dash.figures(recs, dash.param_importances(study), dash.study_recommendation(study))


def test_dkw_band_covers_the_true_cdf_about_95_percent_of_the_time() -> None:
    # sqrt(ln(2/0.05) / 200): the formula, by hand.
    assert dkw_epsilon(100) == pytest.approx(0.135810, abs=1e-6)  # ln 40 = 3.68888
    # Independently, by simulation: uniform samples, where the true CDF is F(x) = x.
    rng = np.random.default_rng(1)
    n, reps = 40, 3000
    x = np.sort(rng.random((reps, n)), axis=1)
    i = np.arange(1, n + 1)
    sup = np.maximum(i / n - x, x - (i - 1) / n).max(axis=1)
    miss = float((sup > dkw_epsilon(n)).mean())
    assert 0.02 < miss <= 0.06, miss


def test_ks_critical_value_holds_its_level_under_the_null() -> None:
    rng = np.random.default_rng(2)
    n, m, reps = 30, 45, 1500
    crit = ks_critical(n, m)
    rejected = np.mean(
        [ks_statistic(rng.normal(size=n), rng.normal(size=m)) > crit for _ in range(reps)]
    )
    assert 0.01 < rejected <= 0.07, rejected
    assert effective_n([1.0] * 12) == pytest.approx(12)
    assert effective_n([1.0, 1e-6, 1e-6]) == pytest.approx(1.0, abs=1e-4)


def test_no_direction_from_three_points_however_monotone() -> None:
    e = effect("cardinality", [1, 2, 4], [0.2, 0.3, 0.4])
    assert e["n"] == 3 and e["direction"] is None
    assert (
        effect_text(e, "C")
        == f"C: too few trials for a direction: {MIN_IMPORTANCE - 3} more needed"
    )


def test_a_direction_only_when_its_interval_excludes_zero() -> None:
    rng = np.random.default_rng(3)
    x = list(rng.integers(1, 9, size=60))
    up = [0.5 + 0.02 * v + rng.normal(0, 0.01) for v in x]
    noise = list(rng.normal(0.5, 0.05, size=60))
    e = effect("cardinality", [int(v) for v in x], up)
    est = e["estimate"]
    assert e["direction"] == "higher" and est.low > 0 and est.low <= est.value <= est.high
    assert effect_text(e, "C").startswith(
        f"higher C -> higher accuracy (Spearman {est.value:+.2f}, 95% CI [{est.low:+.2f}, "
    )
    e = effect("cardinality", [int(v) for v in x], noise)
    assert e["estimate"].low < 0 < e["estimate"].high and e["direction"] is None
    assert effect_text(e, "C").startswith("C: no direction shown (Spearman ")
    opt = ["sgd" if v % 2 else "adamw" for v in x]
    acc = [0.5 + (0.05 if o == "adamw" else 0) + rng.normal(0, 0.01) for o in opt]
    e = effect("optimizer", opt, acc)
    assert e["direction"] == "adamw" and e["estimate"].value == pytest.approx(
        100
        * (
            statistics.fmean(a for a, o in zip(acc, opt, strict=True) if o == "adamw")
            - statistics.fmean(a for a, o in zip(acc, opt, strict=True) if o == "sgd")
        )
    )


def test_three_trials_state_no_verdict_and_draw_no_empty_axes() -> None:
    figs = figs_of(study_of(3, odd=False))
    imp = dash.waiting_text(figs["importance"])
    assert imp == f"too few trials for parameter importances: {MIN_IMPORTANCE - 3} more needed"
    recs = dash.records_from_study(study_of(3, odd=False))
    for by in dash.GROUPINGS:
        largest = max(len(e) for e, _ in dash.edf_groups(recs, by).values())
        assert dash.waiting_text(figs[f"edf-{by}-plain"]).startswith(
            "too few trials for error EDFs by "
        )
        assert f": {MIN_EDF_GROUP - largest} more needed" in dash.waiting_text(
            figs[f"edf-{by}-plain"]
        )
        assert not figs[f"edf-{by}-plain"].data and not figs[f"edf-{by}-norm"].data
        assert dash.waiting_text(figs[f"edf-{by}-norm"])
    assert dash.waiting_text(figs["recommendation"]) == (
        "Recommendation: waiting for the confirmation phase"
    )
    for fig in figs.values():  # drawn figures have points; the rest are one line
        assert dash.waiting_text(fig) or any(t.x is not None and len(t.x) for t in fig.data)
    # The first three synthetic specs are Table 2's 1x64d, 2x40d, 4x24d: one line, no bars.
    (t3,) = figs["cardinality"].data
    assert list(t3.customdata) == ["n=1, no interval"] * 3
    assert list(t3.error_y.array) == [0, 0, 0]
    assert t3.name.endswith(", one seed each: no intervals")
    one = figs_of(study_of(1))
    assert dash.waiting_text(one["cardinality"]).startswith("Table 3 view: needs two cardinalit")
    assert dash.waiting_text(one["size"]).startswith("Fig. 7 view: needs a series")
    assert not one["cardinality"].data and not one["size"].data


def test_large_study_shows_verdicts_with_intervals_and_n() -> None:
    study = study_of(300)
    recs = dash.records_from_study(study)
    n_done = sum(r["state"] == "COMPLETE" for r in recs)
    figs = figs_of(study)
    imp = figs["importance"]
    assert dash.waiting_text(imp) is None and f"n={n_done} complete" in imp.layout.title.text
    labels = list(imp.data[0].text)
    assert all(f"n={n_done}" in t and "95% CI" in t for t in labels)
    assert any(t.startswith("higher ") for t in labels), labels
    edf_fig = figs["edf-cardinality-plain"]
    ks_lines = edf_fig.layout.annotations[0].text.split("<br>")
    assert any(line.endswith(": differ") for line in ks_lines), ks_lines


def test_edf_bands_are_dkw_and_small_groups_are_left_out() -> None:
    recs = dash.records_from_study(study_of(60, odd=False))
    fig = dash.edf_figure(recs, "cardinality")
    groups = dash.edf_groups(recs, "cardinality")
    lines = [t for t in fig.data if t.meta["role"] == "edf"]
    bands = [t for t in fig.data if t.meta["role"] == "band"]
    assert len(bands) == 2 * len(lines) >= 4
    drawn = {t.name.split()[0] for t in lines}
    assert drawn == {k for k, (e, _) in groups.items() if len(e) >= MIN_EDF_GROUP}
    for k, line in enumerate(lines):
        label = line.name.split()[0]
        errs = groups[label][0]
        eps = dkw_epsilon(len(errs))
        assert line.name == f"{label} (n={len(errs)}, ±{eps:.2f})"
        xs, fs = edf(errs)
        assert list(line.y) == pytest.approx([0.0, *fs])
        lo, hi = bands[2 * k], bands[2 * k + 1]
        assert list(lo.y) == pytest.approx([max(0.0, f - eps) for f in [0.0, *fs]])
        assert list(hi.y) == pytest.approx([min(1.0, f + eps) for f in [0.0, *fs]])
    note = fig.layout.annotations[0].text.split("<br>")
    a, b = sorted(drawn, key=lambda s: int(s[2:]))[:2]
    ks = ks_statistic(groups[a][0], groups[b][0])
    crit = ks_critical(len(groups[a][0]), len(groups[b][0]))
    verdict = "differ" if ks > crit else "no difference shown"
    assert note[0] == f"KS({a}, {b}) = {ks:.3f}, 5% critical {crit:.3f}: {verdict}"


def confirm_accuracies(tie: bool) -> dict[str, list[float]]:
    """Three seeds each of three confirmed configs, close together if ``tie``."""
    gap = 0.005 if tie else 0.1
    noise = (0.0, 0.02, 0.01)
    return {
        "4x2d": [0.60 + e for e in noise],
        "2x4d": [0.60 - gap + e for e in noise],
        "8x1d": [0.40 + e for e in noise],
    }


def confirm_study(tie: bool) -> optuna.Study:
    """The proxy trials of tests/helpers.py, then :func:`confirm_accuracies`."""
    s = optuna.create_study(direction="minimize")
    trials = [*proxy()]
    for name, accs in confirm_accuracies(tie).items():
        c, d = (int(v) for v in name.removesuffix("d").split("x"))
        trials += [trial(0, c, d, a, phase=CONFIRM, seed=i) for i, a in enumerate(accs)]
    for t in trials:
        s.add_trial(t)
    return s


@pytest.mark.parametrize("tie", [False, True])
def test_recommendation_panel_shows_means_intervals_and_p_best(tie: bool) -> None:
    study = confirm_study(tie)
    rec = recommendation(study.get_trials())
    assert rec is not None and rec["verdict"] == ("equivalent" if tie else "best")
    fig = dash.recommendation_figure(dash.study_recommendation(study))
    (t,) = fig.data
    accs = confirm_accuracies(tie)
    names = [y.split()[0] for y in t.y]
    assert names == sorted(accs, key=lambda k: statistics.fmean(accs[k]))  # best on top
    assert list(t.x) == pytest.approx([statistics.fmean(accs[k]) for k in names])
    # Error bars: the study model's intervals (pooled over 6 df), narrower than each
    # configuration's own t interval over 3 seeds (t(0.975, 2) = 4.302653), inside [0, 1].
    by_name = {r["notation"].split()[0]: r for r in rec["confirmed"]}
    for k, plus, minus, x in zip(names, t.error_x.array, t.error_x.arrayminus, t.x, strict=True):
        own = 4.302653 * statistics.stdev(accs[k]) / math.sqrt(3)
        low, high = by_name[k]["ci95"]
        assert x + plus == pytest.approx(high) and x - minus == pytest.approx(low)
        assert 0 <= low and high <= 1 and high - low < 2 * own
    assert all("3 seeds" in x and "P(best)" in x for x in t.text)
    assert 0 <= fig.layout.xaxis.range[0] < fig.layout.xaxis.range[1] <= 1
    title = fig.layout.title.text
    assert title.startswith(f"{rec['verdict']}: {rec['notation']}<br><sup>")
    if tie:
        assert "star" not in list(t.marker.symbol) and "cannot be told apart" in title
        assert list(t.marker.symbol).count("diamond") == 2  # the two contenders
    else:
        assert rec["notation"].startswith("4x2d") and "ahead of every rival" in title
        assert t.marker.symbol[names.index("4x2d")] == "star"
        assert list(t.marker.symbol).count("star") == 1


def test_the_page_carries_the_recommendation_or_its_waiting_line() -> None:
    study = confirm_study(False)
    rec = dash.study_recommendation(study)
    page = dash.build_page(dash.records_from_study(study), "c", recommendation=rec)
    assert "best: 4x2d" in page and "waiting for the confirmation phase" not in page
    page = dash.build_page(dash.records_from_study(study_of(3)), "c")
    assert "Recommendation: waiting for the confirmation phase" in page


def test_table_rows_carry_their_configs_mean_over_seeds() -> None:
    study = study_of(40, seeds_per_spec=2)
    recs = dash.records_from_study(study)
    done: dict[str, list[float]] = {}
    for t in study.trials:  # by hand, from the trials: complete ones grouped by their spec
        if t.state == optuna.trial.TrialState.COMPLETE:
            done.setdefault(repr(sorted(t.user_attrs["spec"].items())), []).append(1 - t.value)
    rows = dash.table_rows(recs)
    assert len(rows) == len(recs)  # one row per trial
    for t, row in zip(study.trials, rows, strict=True):
        # As in `trials`: only a complete trial carries its config's mean.
        complete = t.state == optuna.trial.TrialState.COMPLETE
        accs = done[repr(sorted(t.user_attrs["spec"].items()))] if complete else []
        assert row["config_trials"] == len(accs)
        if accs:
            assert row["config_mean"] == pytest.approx(statistics.fmean(accs))
        else:
            assert row["config_mean"] is None
    assert any(row["config_trials"] == 2 for row in rows)


def test_the_panel_follows_the_studys_own_prefer() -> None:
    """`search --prefer` is stored with the confirmation settings; every reader uses it."""
    study = confirm_study(True)
    assert dash.study_recommendation(study)["prefer"] == "flops"
    study.set_user_attr("confirm", {"k": 3, "prefer": "params"})
    rec = dash.study_recommendation(study)
    assert rec["prefer"] == "params" and rec["verdict"] == "equivalent"
    contenders = [r for r in rec["confirmed"] if r["contender"]]
    assert rec["params"] == min(r["params"] for r in contenders)
    assert "fewest params" in rec["reason"]
