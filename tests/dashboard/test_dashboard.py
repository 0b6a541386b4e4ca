"""The dashboard's records, figures and page, checked on the figures' data (no browser)."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import statistics
import warnings

import numpy as np
import optuna
import plotly.graph_objects as go
import pytest
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs
from scipy import stats

import resnext
from nas import dashboard as dash
from nas.dashboard.evidence import (
    MIN_EDF_GROUP,
    MIN_IMPORTANCE,
    dkw_epsilon,
    effect_text,
    ks_critical,
)
from nas.search.attrs import CONFIRM
from nas.search.records import COUNTED
from nas.search.storage import storage_url
from nas.stats.designspace import ks_statistic
from nas.stats.model import intervals
from tests.helpers import XSS, brute_front, trial
from tests.synthetic import synthetic_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    """In memory: 40 trials, Table 2 and Fig. 7 specs twice each (seeds 0 and 1), then random."""
    s = optuna.create_study(study_name="mem", direction="minimize")
    s.add_trials(synthetic_trials(40, seeds_per_spec=2))
    return s


@pytest.fixture(scope="module")
def records(study: optuna.Study) -> list[dict]:
    return dash.records_from_study(study)


def trace(fig, role: str):
    (t,) = [t for t in fig.data if t.meta and t.meta["role"] == role]
    return t


def test_records_follow_the_contract(study: optuna.Study, records: list[dict]) -> None:
    assert len(records) == 40
    keys = {
        "number", "state", "spec", "notation", "flops", "params", "activations", "latency",
        "val_accuracy", "final_val_accuracy", "error", "values", "history", "epochs",
        "train_images_per_second", "inference_images_per_second", "wall_seconds", "status",
        "baseline", "hparams", "optuna_params", "seed", "repeat", "weights", "weights_error",
        "phase", "host", "note", "class_names", "augment",
        "study",
    }  # fmt: skip
    for r, t in zip(records, study.trials, strict=True):
        assert set(r) == keys
        assert r["number"] == t.number and r["state"] == t.state.name and r["study"] == "mem"
        spec = resnext.Spec.from_dict(r["spec"])
        assert resnext.complexity(spec).to_dict() == {k: r[k] for k in COUNTED}
        assert r["optuna_params"] == t.params and r["hparams"] == {}
        if t.state == TrialState.COMPLETE:
            assert r["val_accuracy"] == pytest.approx(1 - t.value)
    assert {r["state"] for r in records} == {"COMPLETE", "PRUNED", "FAIL"}


def test_record_accuracy_fallbacks_and_counted_complexity() -> None:
    spec = resnext.Spec("cifar", (3, 3, 3), 256, 8, 14)
    hist = [{"epoch": 1, "val_accuracy": 0.4}, {"epoch": 2, "val_accuracy": 0.55}]
    s = optuna.create_study(study_name="fallbacks")
    common = {"params": {}, "distributions": {}}
    s.add_trial(optuna.trial.create_trial(value=0.3, user_attrs={"spec": spec.to_dict()}, **common))
    s.add_trial(optuna.trial.create_trial(value=0.3, user_attrs={"val_accuracy": 0.8}, **common))
    s.add_trial(
        optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={"history": hist}, **common)
    )
    s.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, **common))
    r = dash.records_from_study(s)
    assert [x["val_accuracy"] for x in r] == [pytest.approx(0.7), 0.8, 0.55, None]
    assert r[0]["flops"] == resnext.complexity(spec).flops  # counted from the spec
    assert r[1]["flops"] is None and r[3]["history"] == []


def config_means(records: list[dict], metric: str) -> dict[frozenset, tuple[str, float, float]]:
    """Independently of the dashboard: complete trials by phase, spec and hparams (as JSON),
    each group's (phase, mean metric, mean accuracy), keyed by its trial numbers."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        if r["state"] == "COMPLETE" and r["val_accuracy"] is not None and r["spec"]:
            key = json.dumps([r["phase"], r["spec"], r["hparams"]], sort_keys=True)
            groups.setdefault(key, []).append(r)
    return {
        frozenset(r["number"] for r in g): (
            g[0]["phase"],
            statistics.fmean(r[metric] for r in g),
            statistics.fmean(r["val_accuracy"] for r in g),
        )
        for g in groups.values()
    }


def points(fig, role: str = "trials") -> dict[frozenset, tuple[float, float]]:
    """A Pareto figure's points of ``role``: (x, y) keyed by their trial numbers."""
    return {
        frozenset(cd): (x, y)
        for t in fig.data
        if t.meta["role"] == role
        for cd, x, y in zip(t.customdata, t.x, t.y, strict=True)
    }


@pytest.mark.parametrize("metric", list(dash.METRICS))
def test_pareto_front_is_the_brute_force_front_of_config_means(
    records: list[dict], metric: str
) -> None:
    fig = dash.pareto_figure(records, metric)
    want = config_means(records, metric)
    scale = dash.METRICS[metric][1]
    # One point per configuration, at its mean over seeds, and nowhere else.
    got = points(fig)
    assert set(got) == set(want) and len(got) < sum(r["state"] == "COMPLETE" for r in records)
    for nums, (x, y) in got.items():
        assert x == pytest.approx(want[nums][1] * scale) and y == pytest.approx(want[nums][2])
    keys = list(want)
    front_idx = brute_front([want[k][1] for k in keys], [want[k][2] for k in keys])
    front = trace(fig, "front")
    assert set(points(fig, "front")) == {keys[i] for i in front_idx}
    assert list(front.x) == sorted(front.x)
    assert list(front.y) == sorted(front.y)  # along a front, more cost buys more accuracy
    assert front.line.shape == "hv"
    by_num = {r["number"]: r for r in records}
    for t in (t for t in fig.data if t.meta["role"] == "trials"):
        c = int(t.name.removeprefix("C="))
        assert {by_num[n]["spec"]["cardinality"] for cd in t.customdata for n in cd} == {c}
    pruned = trace(fig, "pruned")
    assert set(pruned.customdata) == {r["number"] for r in records if r["state"] == "PRUNED"}
    assert list(trace(fig, "selected").customdata) == []


def test_seeds_merge_into_one_point_with_its_t_interval() -> None:
    s = optuna.create_study(direction="minimize")
    s.add_trials(
        [
            trial(0, 4, 2, 0.70),
            trial(1, 4, 2, 0.74, seed=1),
            trial(2, 4, 2, 0.75, seed=2),
            trial(3, 8, 1, 0.72),
            trial(4, 4, 2, 0.80, phase=CONFIRM),  # a longer schedule: never averaged in
            trial(5, 2, 4, 0.60, state=TrialState.PRUNED),
            trial(6, 1, 8, 0.65),
        ]
    )
    recs = dash.records_from_study(s)
    # Same spec, other tuned hyper-parameters: another configuration.
    recs.append(dict(recs[3], number=7, val_accuracy=0.71, hparams={"lr": 0.5}))
    fig = dash.pareto_figure(recs, "flops")
    (c4,) = [t for t in fig.data if t.name == "C=4"]
    assert [list(cd) for cd in c4.customdata] == [[0, 1, 2]]
    assert c4.y[0] == pytest.approx(0.73)
    # The bar is the search phase's model (the seed noise pooled over its configurations; the
    # confirmation trial is another phase and stays out), narrower than 4x2d's own Student t
    # interval: 2 df, 97.5% 4.302653 (any t table), sd of 0.70, 0.74, 0.75 is sqrt(0.0007).
    groups = {"4x2d": [0.70, 0.74, 0.75], "8x1d": [0.72], "1x8d": [0.65], "8x1d lr": [0.71]}
    low, high = intervals(groups)["4x2d"]  # equal up to the draws' Monte Carlo error
    assert c4.y[0] + c4.error_y.array[0] == pytest.approx(high, abs=2e-3)
    assert c4.y[0] - c4.error_y.arrayminus[0] == pytest.approx(low, abs=2e-3)
    half = 4.302653 * math.sqrt(0.0007) / math.sqrt(3)
    assert 0 < high - low < 2 * half
    assert "n=3 seeds" in c4.text[0] and "95% interval [" in c4.text[0]
    (c8,) = [t for t in fig.data if t.name == "C=8"]
    assert sorted(list(cd) for cd in c8.customdata) == [[3], [7]]
    assert list(c8.error_y.array) == [0.0, 0.0] and all("n=1, no interval" in t for t in c8.text)
    assert "lr=0.5" in c8.text[list(c8.customdata).index([7])]
    (conf,) = [t for t in fig.data if t.meta["role"] == "trials" and t.meta["phase"] == CONFIRM]
    assert [list(cd) for cd in conf.customdata] == [[4]] and list(conf.y) == [0.80]
    assert conf.marker.symbol == "diamond"
    assert conf.text[0].startswith("#4 ResNeXt 4x2d, depths 1-1-1, width 32 · confirmation phase")
    assert list(trace(fig, "pruned").customdata) == [5]
    # The front is over the search-phase means: the confirmed 0.80 does not hide them.
    assert 4 not in {n for cd in trace(fig, "front").customdata for n in cd}
    assert "5 configuration means over 7 complete trials" in fig.layout.title.text


def test_hover_text_names_the_config_in_the_papers_notation(records: list[dict]) -> None:
    fig = dash.pareto_figure(records, "flops")
    t = [t for t in fig.data if t.name == "C=8"][0]
    i = [list(cd) for cd in t.customdata].index([7])  # 8x14d, Table 2: trials 6 (pruned), 7
    r = records[7]
    assert r["spec"]["cardinality"] == 8 and r["spec"]["bottleneck_width"] == 14
    cx = resnext.complexity(resnext.Spec.from_dict(r["spec"]))
    assert t.text[i] == (
        f"#7 ResNeXt 8x14d, depths 3-3-3, width 256<br>acc {100 * r['val_accuracy']:.2f}% "
        f"(n=1, no interval)<br>{cx.params / 1e6:.2f}M params · {cx.flops / 1e6:.2f}M FLOPs · "
        f"latency {1e3 * r['latency']:.2f} ms"
    )
    assert t.hovertemplate == "%{text}<extra></extra>"
    # 1x64d is in Table 2 and in Fig. 7, two seeds each: trials 0, 1, 10 (failed) and 11.
    c1 = [t for t in fig.data if t.name == "C=1"][0]
    j = [list(cd) for cd in c1.customdata].index([0, 1, 11])
    mean = statistics.fmean(records[k]["val_accuracy"] for k in (0, 1, 11))
    assert c1.text[j].startswith(
        f"#0 #1 #11 ResNet 1x64d, depths 3-3-3, width 256<br>mean acc {100 * mean:.2f}% over n=3"
    )


def test_many_points_switch_to_webgl(records: list[dict]) -> None:
    assert type(dash.pareto_figure(records).data[0]) is go.Scatter
    copies = 2 * dash.GL_POINTS // len(records)
    # Distinct hyper-parameters, so that every copy is a configuration of its own.
    many = [
        dict(r, number=i * len(records) + r["number"], hparams={"copy": i})
        for i in range(copies)
        for r in records
    ]
    assert type(dash.pareto_figure(many).data[0]) is go.Scattergl


def test_edf_figure_values(records: list[dict]) -> None:
    fig = dash.edf_figure(records, "cardinality")
    done = [r for r in records if r["state"] == "COMPLETE"]
    for t in (t for t in fig.data if t.meta["role"] == "edf"):
        c = int(t.name.split()[0].removeprefix("C="))
        errs = sorted(100 * (1 - r["val_accuracy"]) for r in done if r["spec"]["cardinality"] == c)
        assert t.name == f"C={c} (n={len(errs)}, ±{dkw_epsilon(len(errs)):.2f})"
        assert len(errs) >= MIN_EDF_GROUP
        assert list(t.x[1:]) == pytest.approx(sorted(set(errs)))
        assert t.y[0] == 0 and t.y[-1] == pytest.approx(1.0)
        # F at each distinct error is the share of the group at or below it.
        for x, f in zip(t.x[1:], t.y[1:], strict=True):
            assert f == pytest.approx(sum(e <= x + 1e-9 for e in errs) / len(errs))
    ks = fig.layout.annotations[0].text.split("<br>")
    e1 = [_err(r) for r in done if r["spec"]["cardinality"] == 1]
    e2 = [_err(r) for r in done if r["spec"]["cardinality"] == 2]
    assert ks[0].startswith(f"KS(C=1, C=2) = {ks_statistic(e1, e2):.3f}, 5% critical ")


def _err(r: dict) -> float:
    return 100 * (1 - r["val_accuracy"])


def test_normalised_edf_uses_complexity_weights(records: list[dict]) -> None:
    groups = dash.edf_groups(records, "cardinality", normalise=True)
    for _errs, ws in groups.values():
        assert sum(ws) == pytest.approx(1.0) and min(ws) >= 0
    plain = dash.edf_figure(records, "depth", normalise=False)
    n_done = sum(r["state"] == "COMPLETE" for r in records)
    eps = dkw_epsilon(n_done)
    names = [t.name for t in plain.data if t.meta["role"] == "edf"]
    assert names == [f"depths=3-3-3 (n={n_done}, ±{eps:.2f})"]
    with pytest.raises(ValueError, match="unknown grouping"):
        dash.group_key(records[0], "colour")


def _done_of(records: list[dict], notation: str) -> list[dict]:
    return [
        r
        for r in records
        if r["state"] == "COMPLETE" and resnext.Spec.from_dict(r["spec"]).notation == notation
    ]


def _subsequence(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(x in it for x in part)


def _rec(c: int, d: int, flops: float, acc: float) -> dict:
    spec = {"cardinality": c, "bottleneck_width": d, "depths": [3, 3, 3], "width": 256}
    return {"state": "COMPLETE", "val_accuracy": acc, "spec": spec, "flops": flops}


def test_many_values_of_d_group_into_power_of_two_ranges() -> None:
    recs = [_rec(1, d, 1e9, 0.5 + d / 100) for d in range(1, 21)]
    groups = dash.edf_groups(recs, "bottleneck_width")
    assert list(groups) == ["d=1", "d=2..3", "d=4..7", "d=8..15", "d=16..31"]
    assert [len(e) for e, _ in groups.values()] == [1, 2, 4, 8, 5]
    assert dash.edf_groups(recs[:8], "bottleneck_width").keys() == {f"d={d}" for d in range(1, 9)}


def test_normalising_leaves_out_the_groups_that_share_no_flops_range() -> None:
    # C=1 and C=2 overlap between 1e8 and 1e9; the one C=4 model sits far above both.
    recs = [_rec(1, 64, f, 0.7) for f in (1e8, 1e9) * 3]
    recs += [_rec(2, 40, f, 0.75) for f in (1e8, 1e9) * 3]
    recs.append(_rec(4, 24, 1e11, 0.9))
    groups = dash.edf_groups(recs, "cardinality", normalise=True)
    assert list(groups) == ["C=1", "C=2"]
    assert groups["C=1"][1] == pytest.approx([1 / 6] * 6)
    fig = dash.edf_figure(recs, "cardinality", normalise=True)
    eps = dkw_epsilon(6)
    assert [t.name for t in fig.data if t.meta["role"] == "edf"] == [
        f"C=1 (n=6, ±{eps:.2f})",
        f"C=2 (n=6, ±{eps:.2f})",
    ]
    crit = ks_critical(6, 6)
    assert fig.layout.annotations[0].text == f"KS(C=1, C=2) = 1.000, 5% critical {crit:.3f}: differ"
    # Two trials a group: no EDF, the panel says how many more it needs.
    few = dash.edf_figure(recs[:2] + recs[6:8], "cardinality", normalise=True)
    assert not few.data
    assert dash.waiting_text(few) == (
        f"too few trials for complexity-normalised error EDFs by C: {MIN_EDF_GROUP - 2} more "
        f"needed (each group needs {MIN_EDF_GROUP}; the largest has 2)"
    )


def test_cardinality_figure_is_table3_with_seed_error_bars(records: list[dict]) -> None:
    fig = dash.cardinality_figure(records)
    (t,) = [t for t in fig.data if "8x14d" in t.text]
    assert list(t.x) == sorted(t.x)
    table2 = ["1x64d", "2x40d", "4x24d", "8x14d", "32x4d"]
    assert _subsequence(table2, list(t.text)), list(t.text)
    flops = [resnext.complexity(resnext.Spec.from_dict(r["spec"])).flops for r in records[:10:2]]
    assert max(flops) / min(flops) < 1.1
    # Table 2 pairs are trials 0..9, two seeds each (1x64d returns in Fig. 7's series).
    texts = list(t.text)
    for name in table2:
        i = texts.index(name)
        errs = [_err(r) for r in _done_of(records, name)]
        assert t.y[i] == pytest.approx(statistics.fmean(errs))
        # 95% t interval over the seeds: t(0.975, df) from t tables; none for one seed.
        t975 = {2: 12.7062, 3: 4.302653}
        n = len(errs)
        half = t975[n] * statistics.stdev(errs) / n**0.5 if n > 1 else 0
        assert t.error_y.array[i] == pytest.approx(half, rel=1e-5)
        assert t.error_y.arrayminus[i] == pytest.approx(half, rel=1e-5)
        assert t.customdata[i].startswith(f"n={len(errs)}")
    assert t.customdata[texts.index("8x14d")] == "n=1, no interval"  # trial 6 was pruned
    assert "depths 3-3-3, width 256" in t.name


def test_equal_complexity_sets_pick_the_widest_window() -> None:
    def row(c: int, flops: float, n: int = 1) -> dict:
        return {"spec": {"cardinality": c}, "flops": flops, "n": n}

    rows = [row(1, 100), row(2, 104), row(4, 109), row(8, 112), row(1, 95), row(16, 300)]
    rows.append(row(8, 310))
    sets = dash.equal_complexity_sets(rows, tolerance=0.1)
    # [100, 110] holds C 1, 2, 4 and [104, 114.4] C 2, 4, 8: a tie, the cheaper wins; of the
    # rest, 95 and 112 are too far apart, [300, 330] holds C 8 and 16.
    assert [[r["flops"] for r in s] for s in sets] == [[100, 104, 109], [310, 300]]
    rows[2]["n"] = 3  # more seeds now favour a window holding C=4 at 109...
    rows[3]["n"] = 3  # ... and C=8 at 112: [104, 114.4]
    sets = dash.equal_complexity_sets(rows, tolerance=0.1, max_sets=1)
    assert [[r["flops"] for r in s] for s in sets] == [[104, 109, 112]]


def test_model_size_figure_has_figure7_series(records: list[dict]) -> None:
    fig = dash.model_size_figure(records)
    names = {t.name: t for t in fig.data}
    width = names["width series, C=1 (depths 3-3-3, width 256)"]
    c1 = {resnext.Spec.from_dict(r["spec"]).notation: r["params"] for r in records
          if r["state"] == "COMPLETE" and r["spec"]["cardinality"] == 1}  # fmt: skip
    assert len(c1) >= 4  # 1x128d lost both seeds (pruned, failed); 1x64d, 1x256d... are there
    assert list(width.text) == sorted(c1, key=c1.get)
    assert list(width.x) == sorted(c1.values())
    card = names["cardinality series, d=64 (depths 3-3-3, width 256)"]
    assert list(card.text) == ["1x64d", "2x64d", "4x64d", "8x64d", "16x64d"]
    params = [resnext.complexity(resnext.preset(f"resnext29_{c}x64d")).params for c in (1, 2)]
    assert list(card.x[:2]) == params


def _axis_note(fig: go.Figure) -> str:
    (note,) = [a for a in fig.layout.annotations if a.name == "axis effects"]
    return html.unescape(note.text)


def test_table3_and_fig7_views_state_the_pooled_axis_effects(records: list[dict]) -> None:
    done = [r for r in records if r["state"] == "COMPLETE" and r["phase"] == "search"]
    n = len(done)
    # By hand: least squares of accuracy (points) on log10 FLOPs and log2 C, the residual
    # variance as the noise. The fixture's depths and width never vary, and in its FLOP band d
    # follows from C and FLOPs (R^2 0.97), so log2 d is left out.
    x = np.column_stack(
        [
            np.ones(n),
            [math.log10(r["flops"]) for r in done],
            [math.log2(r["spec"]["cardinality"]) for r in done],
        ]
    )
    y = np.array([100 * r["val_accuracy"] for r in done])
    beta = np.linalg.solve(x.T @ x, x.T @ y)
    df = n - 3
    s2 = float(((y - x @ beta) ** 2).sum()) / df
    half = stats.t.ppf(0.975, df) * math.sqrt(s2 * np.linalg.inv(x.T @ x)[2, 2])
    b = beta[2]
    text = _axis_note(dash.cardinality_figure(records))
    assert text.startswith(
        f"log2 C effect at fixed FLOPs: {b:+.2f} points per doubling of C, "
        f"95% CI [{b - half:+.2f}, {b + half:+.2f}], p="
    ), text
    assert f"n={n} trials (search phase)" in text
    # A direction only where the interval excludes zero.
    verdict = "higher C -> higher accuracy" if b - half > 0 else "no direction shown"
    assert verdict in text and (b - half > 0 or b + half < 0) == ("no direction" not in text)
    assert f"residual SD {math.sqrt(s2):.2f} points, df {df}" in text
    size = _axis_note(dash.model_size_figure(records))
    assert size.split("<br>")[0] == text.split("<br>")[0]  # the same C line, from the same fit
    assert "log2 width left out (does not vary)" in size
    # Confirmation trials train longer: they never join the pooled fit.
    confirm = [{**r, "phase": CONFIRM, "val_accuracy": 0.99} for r in done[:6]]
    assert _axis_note(dash.cardinality_figure(records + confirm)) == text


def _spec_rec(c: int, d: int, flops: float, acc: float, number: int = 0) -> dict:
    """A complete trial record with a whole spec, as spec_errors needs."""
    spec = resnext.Spec("cifar", cardinality=c, bottleneck_width=d).to_dict()
    return {**_rec(c, d, flops, acc), "spec": spec, "params": 10**6, "number": number}


def test_table3_view_without_equal_flops_sets_still_says_what_the_fit_can() -> None:
    recs = [_spec_rec(1, 64, 1e9, 0.5), _spec_rec(2, 4, 5e9, 0.6, number=1)]
    fig = dash.cardinality_figure(recs)
    assert not fig.data
    assert dash.waiting_text(fig) == (
        "Table 3 view: needs two cardinalities within 10% of the same FLOPs (same depths and "
        "width); this study has none; pooled over every trial, axis effects on accuracy, pooled "
        "over 2 complete search-phase trials: no estimate, too few trials for 3 varying axes: "
        "n=2, needs at least 5; depth left out (does not vary); log2 width left out (does not "
        "vary)"
    )


def test_spec_errors_keep_the_interval_of_a_mean_error_within_0_and_100() -> None:
    def seeds(c: int, accs: tuple[float, ...]) -> list[dict]:
        return [{**_rec(c, 4, 1e9, a), "params": 10**6, "number": i} for i, a in enumerate(accs)]

    # Errors 0.5% and 5%: mean 2.75, t(0.975, 1) = 12.7062 times sd / sqrt(2) reaches -25.8.
    low_side, high_side = dash.spec_errors(seeds(4, (0.995, 0.95)) + seeds(8, (0.01, 0.2)))
    half = 12.7062 * statistics.stdev([0.5, 5.0]) / math.sqrt(2)
    assert low_side["mean"] == pytest.approx(2.75)
    assert low_side["low"] == 0.0 and low_side["high"] == pytest.approx(2.75 + half, rel=1e-5)
    # Errors 99% and 80%: the upper bound would be 209%.
    assert high_side["high"] == 100.0 and high_side["low"] == 0.0
    assert high_side["mean"] == pytest.approx(89.5)


def test_learning_curves_are_one_trace_with_gaps(records: list[dict]) -> None:
    fig = dash.learning_curves_figure(records)
    curves = trace(fig, "curves")
    with_history = [r for r in records if r["history"]]
    assert list(curves.x).count(None) == len(with_history)
    assert sum(len(r["history"]) for r in with_history) + len(with_history) == len(curves.x)
    first = with_history[0]
    n = len(first["history"])
    assert list(curves.y[:n]) == [h["val_accuracy"] for h in first["history"]]
    assert list(curves.customdata[:n]) == [first["number"]] * n


def _importance_records() -> list[dict]:
    """A full factorial, so the params are uncorrelated: C helps, lr hurts, adamw is best."""
    recs = []
    for c in (1, 2, 4):
        for lr in (0.01, 0.1, 1.0):
            for opt, bonus in (("sgd", 0.0), ("adamw", 0.01)):
                acc = 0.5 + 0.05 * c - 0.03 * (lr * 10) ** 0.5 + bonus
                hp = {"cardinality": c, "lr": lr, "optimizer": opt}
                recs.append({"state": "COMPLETE", "val_accuracy": acc, "optuna_params": hp})
    return recs


def test_importance_effects_show_the_sign_and_the_best_category() -> None:
    eff = dash.importance_effects(_importance_records(), ["cardinality", "lr", "optimizer"])
    assert eff["cardinality"]["direction"] == "higher" and eff["cardinality"]["n"] == 18
    lr = eff["lr"]["estimate"]  # lr hurts, but against C's larger effect 18 trials may not show it
    assert lr.value < 0 and eff["lr"]["direction"] == ("lower" if lr.high < 0 else None)
    opt = eff["optimizer"]  # +1 point for adamw: real, but within the spread C and lr make
    assert opt["best"] == "adamw" and opt["estimate"].value == pytest.approx(1.0)
    assert opt["direction"] == ("adamw" if opt["estimate"].low > 0 else None)
    assert effect_text(opt, "optimizer").startswith(
        "best optimizer: adamw (+1.00" if opt["direction"] else "optimizer: no best choice shown"
    )


def test_importance_figure_bars(study: optuna.Study, records: list[dict]) -> None:
    imp = dash.param_importances(study)
    assert set(imp.importance) == {"cardinality", "bottleneck_width", "lr", "optimizer"}
    assert sum(imp.importance.values()) == pytest.approx(1.0)
    fig = dash.importance_figure(imp, records)
    bar = fig.data[0]
    assert set(bar.y) == {"C", "d", "lr", "optimizer"}
    assert list(bar.x) == sorted(imp.importance.values())
    for label, colour in zip(bar.text, bar.marker.color, strict=True):
        if "-> higher" in label:
            assert colour == "#2a9d8f"
        elif "-> lower" in label:
            assert colour == "#e76f51"
    # The whiskers span each bootstrap interval; title and hover say what it is, and n.
    names = sorted(imp.importance, key=imp.importance.get)
    n = sum(r["state"] == "COMPLETE" for r in records)
    for k, x, plus, minus, cd in zip(
        names, bar.x, bar.error_x.array, bar.error_x.arrayminus, bar.customdata, strict=True
    ):
        assert x + plus == pytest.approx(imp.high[k]) and x - minus == pytest.approx(imp.low[k])
        assert cd.endswith(f": [{imp.low[k]:.3f}, {imp.high[k]:.3f}]")
    how = f"95% bootstrap interval, {dash.importance.RESAMPLES} resamples of the {n} trials"
    assert how in fig.layout.title.text and f"n={n} complete" in fig.layout.title.text
    assert bar.hovertemplate.startswith(f"%{{y}}: %{{x:.3f}} (n={n}, %{{customdata}})")
    capped = dataclasses.replace(imp, n=3896, drawn=500)
    assert "resamples of 500 of the 3,896 trials" in (
        dash.importance_figure(capped, records).layout.title.text
    )
    empty = dash.importance_figure(None, records)
    assert not empty.data and "no parameter varies" in dash.waiting_text(empty)
    few = dash.importance_figure(imp, records[:5])
    n = sum(r["state"] == "COMPLETE" for r in records[:5])
    assert not few.data and dash.waiting_text(few) == (
        f"too few trials for parameter importances: {MIN_IMPORTANCE - n} more needed"
    )


def _accuracy_error(t: optuna.trial.FrozenTrial) -> float:
    return 1 - t.user_attrs["val_accuracy"]


def test_importance_intervals_are_the_bootstrap_of_optunas_own_evaluator(
    study: optuna.Study,
) -> None:
    imp = dash.param_importances(study, resamples=8, seed=3)
    assert imp == dash.param_importances(study, resamples=8, seed=3)  # seeded
    assert imp.low != dash.param_importances(study, resamples=8, seed=4).low
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert imp.n == imp.drawn == len(done) and imp.resamples == 8
    names = list(imp.importance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA's notes on small regimes and on targets
        # The estimate: Optuna's default evaluator on the study itself.
        assert imp.importance == optuna.importance.get_param_importances(
            study, target=_accuracy_error
        )
        # The interval, independently: the same draws, whole trials, a study each, one call.
        rng = np.random.default_rng(3)
        reps = []
        for _ in range(8):
            s = optuna.create_study(direction="maximize")  # the target says lower is better
            s.add_trials([done[i] for i in rng.integers(0, len(done), size=len(done))])
            got = optuna.importance.get_param_importances(s, params=names, target=_accuracy_error)
            reps.append([got[k] for k in names])
    low, high = np.percentile(np.array(reps), [2.5, 97.5], axis=0)
    assert [imp.low[k] for k in names] == pytest.approx(list(low))
    assert [imp.high[k] for k in names] == pytest.approx(list(high))
    # With the default 50 resamples, each interval holds its estimate.
    full = dash.param_importances(study)
    assert full.resamples == dash.importance.RESAMPLES
    for k in names:
        assert full.low[k] <= full.importance[k] <= full.high[k], k
        assert full.high[k] > full.low[k] or full.importance[k] == 0, k


def test_large_studies_draw_at_most_max_drawn_trials_per_resample(study: optuna.Study) -> None:
    trials = dash.importance.error_trials(study)
    names = ["cardinality", "lr"]
    reps, drawn = dash.importance.bootstrap_importances(trials, names, resamples=3, max_drawn=10)
    assert drawn == 10 and reps.shape == (3, 2)
    assert np.allclose(reps.sum(axis=1), 1.0)  # each replicate normalised over its params
    # The bare trials carry what PED-ANOVA reads: the params and the error as the value.
    assert [t.value for t in trials] == [
        pytest.approx(_accuracy_error(t)) for t in study.get_trials(states=(TrialState.COMPLETE,))
    ]


def test_resamples_log_nothing_and_leave_optunas_verbosity(
    study: optuna.Study, caplog: pytest.LogCaptureFixture
) -> None:
    trials = dash.importance.error_trials(study)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()  # to caplog
    try:
        optuna.create_study()
        assert "A new study created" in caplog.text  # the line each replicate would log
        caplog.clear()
        dash.importance.bootstrap_importances(trials, ["lr"], resamples=3)
        assert caplog.text == ""
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_importances_need_two_complete_trials() -> None:
    s = optuna.create_study()
    s.add_trials(synthetic_trials(1, odd=False))
    assert dash.param_importances(s) is None


def test_page_is_self_contained_and_escapes_user_text(records: list[dict]) -> None:
    evil = dict(records[0], optuna_params={"optimizer": "</script><script>alert(2)</script><!--"})
    page = dash.build_page([evil, *records[1:]], XSS)
    assert XSS not in page and html.escape(XSS) in page
    assert "alert(2)" in page and "</script><script>alert(2)" not in page
    assert "<!--" not in page.split('id="dashboard-data">')[1].split("</script>")[0]
    # No network: plotly.js is inlined, no script or stylesheet is fetched from anywhere.
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)
    js = get_plotlyjs()
    assert page.count(js) == 1
    ours = page.replace(js, "")
    assert "http://" not in ours and "https://" not in ours
    blob = page.split('id="dashboard-data">')[1].split("</script>")[0]
    data = json.loads(blob)
    assert set(data["figures"]) >= {"pareto-flops", "pareto-params", "pareto-latency", "curves"}
    assert data["rows"][0]["hparams"] == "optimizer=</script><script>alert(2)</script><!--"
    # Hover texts travel once, keyed by the point's trial numbers as JavaScript joins them.
    c1 = [t for t in dash.pareto_figure(records).data if t.name == "C=1"][0]
    j = [list(cd) for cd in c1.customdata].index([0, 1, 11])
    assert data["hover"]["0,1,11"] == c1.text[j]
    assert data["hover"]["6"] == dash.hover_text(records[6])  # pruned: one point per trial
    assert all("text" not in t for t in data["figures"]["pareto-flops"]["data"])
    assert data["metrics"] == {"flops": True, "params": True, "latency": True}
    assert data["live"] is False
    no_latency = [dict(r, latency=None) for r in records]
    page = dash.build_page(no_latency, "s", live=True, state={"trials": 40})
    data = json.loads(page.split('id="dashboard-data">')[1].split("</script>")[0])
    assert data["metrics"]["latency"] is False and data["live"] is True
    assert data["state"] == {"trials": 40}


def test_page_survives_nan_and_trials_without_a_spec() -> None:
    running = {
        "number": 0, "state": "RUNNING", "spec": None, "flops": None, "params": None,
        "activations": None, "latency": None, "val_accuracy": None, "optuna_params": {"lr": 0.1},
        "history": [{"epoch": 1, "val_accuracy": float("nan"), "val_loss": float("inf")}],
        "seed": None, "wall_seconds": None, "study": "s", "train_images_per_second": None,
        "inference_images_per_second": None,
    }  # fmt: skip
    page = dash.build_page([running], "s")
    data = json.loads(page.split('id="dashboard-data">')[1].split("</script>")[0])
    assert data["rows"] == [dict(dash.table_rows([running])[0])]
    assert "NaN" not in page.split('id="dashboard-data">')[1].split("</script>")[0]
    assert "1 trials: 1 running" in page


def test_load_study_errors_are_one_clear_line(stored_study: str, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no study named 'nope' in sqlite:.*available: "):
        dash.load_study("nope", stored_study)
    with pytest.raises(ValueError, match="does not exist"):
        dash.load_study("x", f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ValueError, match=r"cannot open storage postgresql://u:\*\*\*@"):
        dash.load_study("x", "postgresql://u:secret@127.0.0.1:1/db")
    with pytest.raises(ValueError, match="has no finished trials yet"):
        dash.dashboard_page("empty", stored_study)


def test_default_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNEXT_NAS_STORAGE", raising=False)
    assert storage_url(None) == "sqlite:///resnext-nas.db"
    monkeypatch.setenv("RESNEXT_NAS_STORAGE", "sqlite:///other.db")
    assert storage_url(None) == "sqlite:///other.db"
    assert storage_url("sqlite:///given.db") == "sqlite:///given.db"


def test_hover_of_a_small_imagenet_trial_gives_its_flops_at_224() -> None:
    """An ImageNet-template trial at 64 px also shows its FLOPs at the paper's 224 px, counted
    by building the 224-px spec's complexity here."""
    spec = resnext.Spec("imagenet", (1, 1, 1, 1), 64, 8, 4, 10, 64)
    at64 = resnext.complexity(spec).flops
    at224 = resnext.complexity(dataclasses.replace(spec, resolution=224)).flops
    point = {
        "spec": spec.to_dict(), "numbers": [3], "hparams": {}, "phase": "search", "n": 1,
        "mean": 0.6, "low": None, "high": None, "params": 1, "flops": at64, "latency": None,
    }  # fmt: skip
    text = dash.config_hover_text(point)
    assert f"{at64 / 1e6:.2f}M FLOPs ({at224 / 1e6:.2f}M at 224 px)" in text
    cifar = {**point, "spec": resnext.Spec("cifar", (1, 1, 1), 32, 8, 4, 10, 32).to_dict()}
    assert "at 224 px" not in dash.config_hover_text(cifar)


def test_design_space_views_never_pool_the_confirmation_phase() -> None:
    """Table 3, Fig. 7 and the EDFs compare trials of one schedule: a confirmation trial of a
    spec (a longer schedule) is not averaged with its proxy trials."""
    from nas.dashboard.distributions import edf_groups, spec_errors

    s = optuna.create_study(direction="minimize")
    s.add_trials(
        [
            trial(0, 4, 2, 0.70),
            trial(1, 4, 2, 0.74, seed=1),
            trial(2, 4, 2, 0.90, phase=CONFIRM),
            trial(3, 8, 1, 0.60),
        ]
    )
    recs = dash.records_from_study(s)
    (row,) = [r for r in spec_errors(recs) if r["spec"]["cardinality"] == 4]
    assert row["n"] == 2 and row["numbers"] == [0, 1]
    assert row["mean"] == pytest.approx(100 * (1 - 0.72))
    errors = {k: sorted(v[0]) for k, v in edf_groups(recs).items()}
    assert sum(len(v) for v in errors.values()) == 3  # the confirmation trial is left out
    assert not any(e == pytest.approx(10.0) for v in errors.values() for e in v)
