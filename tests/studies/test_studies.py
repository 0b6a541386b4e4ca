"""Study definitions: valid, in band or forming the paper's series, and run as exact grids.

Runs use tiny definitions on `toy_data` (8x8 images, trials of about a second); the registered
definitions are checked by computation against the template generator and `complexity`, and
run once through the CLI at a tiny size.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import studies
from nas import dashboard as dash
from nas.search.attrs import is_trained_proxy
from nas.search.confirm import ConfirmSettings
from nas.search.records import trial_rows
from nas.search.space import SpecGrid
from nas.search.storage import load, open_storage
from nas.search.study import grid_key
from nas.training import loop as ntrain
from resnext.budget import Budget
from resnext.complexity import complexity
from resnext.spec import Spec
from studies import GrowthSeries, PreservedComplexity, StudyDefinition, TrialBudget, run_study
from tests.helpers import RES, run_clis, sqlite, toy_data

TINY = TrialBudget(epochs=1, batch_size=64, train_images=128)


def tiny_table3(seeds: int = 2) -> StudyDefinition:
    """C = 1, 2, 4 at the FLOPs of 1x8d on 1-1-1 w16: 1x8d, 2x5d, 4x3d at 8x8 within 10%."""
    design = PreservedComplexity((1, 8), (1, 2, 4), width=16, tolerance=0.1)
    return StudyDefinition("t3", "t", "Table 3", "m", "d", design, TINY, seeds, sampler="random")


def tiny_fig7(seeds: int = 2) -> StudyDefinition:
    """1x2d, 2x2d, 4x2d against 1x4d, 1x8d."""
    design = GrowthSeries(2, (1, 2, 4), (2, 4), width=16)
    return StudyDefinition("f7", "t", "Fig. 7", "m", "d", design, TINY, seeds, sampler="random")


def points(url: str, name: str) -> list[tuple[str, int]]:
    """(notation, seed) of every counted trial, in trial order."""
    study = load(name, url)
    return [
        (Spec.from_dict(t.user_attrs["spec"]).notation, t.user_attrs["seed"])
        for t in study.get_trials(deepcopy=False)
        if is_trained_proxy(t)
    ]


# ------------------------------------------------------------------------------- definitions


def test_registry_holds_four_valid_definitions() -> None:
    assert studies.names() == [
        "cardinality-vs-width",
        "cardinality-vs-width-imagenet",
        "cardinality-vs-width-growth",
        "budgeted-search",
    ]
    for d in studies.definitions():
        row = d.to_dict()
        assert row["citation"] and row["measures"] and row["description"]
        assert row["trials"] == d.n_trials() > 0
        settings = d.settings()
        assert settings.study == d.name
        if d.is_grid:
            assert isinstance(d.space(), SpecGrid) and d.pruner == "none"
            assert d.n_trials() == len(d.space().specs) * d.seeds
            assert d.n_trials(5) == len(d.space().specs) * 5
        else:
            assert settings.pruner_name == "hyperband" and settings.sampler == "tpe"
            with pytest.raises(ValueError, match="applies to grid studies"):
                d.n_trials(2)
    with pytest.raises(ValueError, match="unknown study 'x'; choose one of cardinality-vs-width"):
        studies.get("x")
    with pytest.raises(ValueError, match="already registered"):
        studies.register(studies.get("budgeted-search"))
    with pytest.raises(ValueError, match="positive integer"):
        studies.get("cardinality-vs-width").n_trials(0)


def closest_d(c: int, flops: float, skeleton: Spec) -> int:
    """The d of C whose FLOPs are closest to ``flops``, by walking d with `complexity`."""
    best, d = None, 1
    while True:
        f = complexity(Spec(**{**skeleton.to_dict(), "cardinality": c, "bottleneck_width": d}))
        if best is None or abs(f.flops - flops) < best[0]:
            best = (abs(f.flops - flops), d)
        if f.flops > flops * 2:
            return best[1]
        d += 1


@pytest.mark.parametrize("res", [32, 8])
def test_cardinality_vs_width_is_table2_at_preserved_complexity(res: int) -> None:
    d = studies.get("cardinality-vs-width")
    grid = d.space(10, res)
    assert d.seeds == 3 and d.n_trials() == 15
    assert [s.cardinality for s in grid.specs] == [1, 2, 4, 8, 32]  # Table 2's C
    reference = Spec("cifar", (1, 1, 1), 32, 1, 24, 10, res)
    budget = complexity(reference).flops
    assert grid.budget == Budget(float(budget), None, 0.05)
    for s in grid.specs:
        assert (s.depths, s.width, s.resolution) == ((1, 1, 1), 32, res)
        # The generator's d is the closest d for its C, counted here one d at a time.
        assert s.bottleneck_width == closest_d(s.cardinality, budget, reference)
        assert abs(complexity(s).flops - budget) <= 0.05 * budget
    if res == 32:
        assert [s.notation for s in grid.specs] == ["1x24d", "2x16d", "4x10d", "8x6d", "32x2d"]
    # As in Table 2, the grouped conv widens (C·d 64..128 there) while params fall.
    widths = [s.group_width for s in grid.specs]
    assert widths == sorted(widths) and len(set(widths)) == 5
    params = [complexity(s).params for s in grid.specs]
    assert params == sorted(params, reverse=True)


def test_imagenet_table3_study_preserves_complexity_on_the_imagenet_template() -> None:
    d = studies.get("cardinality-vs-width-imagenet")
    grid = d.space(10, 64)
    reference = Spec("imagenet", (1, 1, 1, 1), 64, 1, 24, 10, 64)
    budget = complexity(reference).flops
    assert [s.cardinality for s in grid.specs] == [1, 2, 4, 8, 16]
    for s in grid.specs:
        assert (s.template, s.depths, s.width) == ("imagenet", (1, 1, 1, 1), 64)
        assert s.bottleneck_width == closest_d(s.cardinality, budget, reference)
        assert abs(complexity(s).flops - budget) <= 0.05 * budget
    assert d.trial_budget.resolution == 64 and d.n_trials() == 15


def test_growth_study_is_figure7_cardinality_and_width_series() -> None:
    d = studies.get("cardinality-vs-width-growth")
    design = d.design
    assert isinstance(design, GrowthSeries)
    cseries, wseries = design.cardinality_series(10, 32), design.width_series(10, 32)
    assert [s.notation for s in cseries] == ["1x4d", "2x4d", "4x4d", "8x4d", "16x4d"]
    assert [s.notation for s in wseries] == ["1x4d", "1x8d", "1x16d", "1x32d"]
    grid = d.space()
    assert set(grid.specs) == set(cseries) | set(wseries) and len(grid.specs) == 8
    assert grid.budget is None and d.n_trials() == 24
    for series in (cseries, wseries):
        params = [complexity(s).params for s in series]
        assert params == sorted(params) and len(set(params)) == len(params)  # they grow
    # The series span overlapping model sizes, far more than one 5% band (no budget possible).
    cp = [complexity(s).params for s in cseries]
    wp = [complexity(s).params for s in wseries]
    assert max(cp) > 4 * min(cp) and min(wp) <= max(cp) <= max(wp)


def test_spec_grid_refuses_specs_out_of_its_band_and_mixed_skeletons() -> None:
    a = Spec("cifar", (1, 1, 1), 16, 1, 8, 10, RES)
    b = Spec("cifar", (1, 1, 1), 16, 1, 16, 10, RES)
    with pytest.raises(ValueError, match="1x16d lie outside"):
        SpecGrid((a, b), Budget(float(complexity(a).flops), None, 0.05))
    with pytest.raises(ValueError, match="share template"):
        SpecGrid((a, Spec("cifar", (1, 1, 1), 16, 1, 8, 10, 16)))
    with pytest.raises(ValueError, match="no d puts C=64"):
        PreservedComplexity((1, 2), (1, 64), width=16).space(10, RES)


# ------------------------------------------------------------------------------------ runs


def test_run_study_hands_workers_and_trials_per_gpu_to_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    def fake_run_search(*args: object, **kwargs: object) -> list:
        seen.update(kwargs)
        return []

    monkeypatch.setattr(studies.run, "run_search", fake_run_search)
    run_study(tiny_table3(), toy_data(), storage=sqlite(tmp_path), workers=3, trials_per_gpu=2)
    assert (seen["workers"], seen["trials_per_gpu"]) == (3, 2)


def test_grid_trains_every_spec_and_seed_once_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    d = tiny_table3()
    run = run_study(d, toy_data(), storage=url, latency=False)
    assert (run.trials, run.queued, run.missing) == (6, 6, [])
    want = [(n, s) for n in ("1x8d", "2x5d", "4x3d") for s in (0, 1)]
    assert sorted(points(url, "t3")) == sorted(want)
    again = run_study(d, toy_data(), storage=url, latency=False)
    assert (again.queued, again.reports[0].trials, again.missing) == (0, 0, [])
    assert len(load("t3", url).trials) == 6
    # Seeds 0 and 1 of one spec are two measurements, not a replay.
    study = load("t3", url)
    losses = {t.user_attrs["curve"][0]["train_loss"] for t in study.trials}
    assert len(losses) == 6
    # More seeds later: only the new ones are trained.
    more = run_study(d, toy_data(), storage=url, latency=False, seeds=3)
    assert (more.trials, more.queued, more.reports[0].trials) == (9, 3, 3)
    assert sorted(points(url, "t3")) == sorted(want + [(n, 2) for n in ("1x8d", "2x5d", "4x3d")])


def test_failed_and_interrupted_grid_points_are_trained_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite(tmp_path)
    d = tiny_table3()
    real = ntrain.train
    calls = {"n": 0}

    def flaky(spec, data, cfg, **kw):
        calls["n"] += 1
        if spec.cardinality == 2 and cfg.seed == 1:
            raise RuntimeError("out of memory")  # one grid point fails
        if calls["n"] == 5:
            raise KeyboardInterrupt  # then the run is interrupted mid-grid
        return real(spec, data, cfg, **kw)

    monkeypatch.setattr(ntrain, "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(d, toy_data(), storage=url, latency=False)
    first = points(url, "t3")
    assert len(first) == 3 and len(set(first)) == 3  # 2 of 6 failed, 1 never started
    states = [t.state for t in load("t3", url).trials]
    # The point never started is still queued, and the interrupted one is queued again at once.
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.WAITING) == 2
    monkeypatch.setattr(ntrain, "train", real)
    run = run_study(d, toy_data(), storage=url, latency=False)
    assert run.queued == 1 and run.missing == []  # the point that raised, queued again
    final = points(url, "t3")
    assert final[:3] == first and sorted(final) == sorted(
        (n, s) for n in ("1x8d", "2x5d", "4x3d") for s in (0, 1)
    )


def test_a_failing_point_is_reported_missing_not_replaced_by_a_sampled_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite(tmp_path)
    real = ntrain.train

    def flaky(spec, data, cfg, **kw):
        if spec.cardinality == 4:
            raise RuntimeError("out of memory")
        return real(spec, data, cfg, **kw)

    monkeypatch.setattr(ntrain, "train", flaky)
    run = run_study(tiny_table3(), toy_data(), storage=url, latency=False)
    assert run.missing == ["4x3d seed 0", "4x3d seed 1"]
    trials = load("t3", url).trials
    assert len(trials) == 6 and sum(is_trained_proxy(t) for t in trials) == 4  # no sampled extra


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the dead worker's ask()
def test_a_killed_workers_grid_point_is_retried_after_its_heartbeat(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    d = tiny_table3(seeds=1)
    from nas.search.study import enqueue_grid, prepare

    settings = d.settings(classes=10, resolution=RES)
    study, _ = prepare(settings, storage=url)
    assert enqueue_grid(study, settings.space, range(1)) == 3
    # A worker takes the first point and dies: the trial stays RUNNING with a last heartbeat.
    storage = open_storage(url, heartbeat=1)
    dead = optuna.load_study(study_name="t3", storage=storage).ask()
    study_id = storage.get_study_id_from_name("t3")
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, dead.number))
    assert dead.user_attrs["seed"] == 0
    run = run_study(d, toy_data(), storage=url, latency=False, heartbeat=1)
    assert run.missing == [] and run.queued == 0  # the RUNNING point was not queued twice
    trials = load("t3", url).trials
    assert trials[dead.number].state == TrialState.FAIL
    assert sorted(points(url, "t3")) == [("1x8d", 0), ("2x5d", 0), ("4x3d", 0)]


def test_a_duplicate_queued_point_is_surplus(tmp_path: Path) -> None:
    # Two `study run` started together may both queue a missing point: it trains once.
    url = sqlite(tmp_path)
    d = tiny_table3(seeds=1)
    from nas.search.study import ENQUEUED, enqueue_grid, prepare

    settings = d.settings(classes=10, resolution=RES)
    study, _ = prepare(settings, storage=url)
    params = settings.space.params(settings.space.specs[0])
    for _ in range(2):  # as enqueue_grid queues a point
        study.enqueue_trial(params, user_attrs={"seed": 0, ENQUEUED: params})
    assert enqueue_grid(study, settings.space, range(1)) == 2
    run = run_study(d, toy_data(), storage=url, latency=False)
    assert run.missing == []
    rows = trial_rows(load("t3", url))
    assert [r["state"] for r in rows] == ["COMPLETE", "surplus", "COMPLETE", "COMPLETE"]
    assert sorted(points(url, "t3")) == [("1x8d", 0), ("2x5d", 0), ("4x3d", 0)]


# ------------------------------------------------------------------------------- dashboard


def test_dashboard_views_merge_seeds_of_a_real_grid_run(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    run_study(tiny_table3(), toy_data(), storage=url, latency=False)
    run_study(tiny_fig7(), toy_data(), storage=url, latency=False)
    t3 = dash.records_from_study(load("t3", url))
    (line,) = dash.cardinality_figure(t3).data
    # each point is the mean of its 2 seeds, and says so (with its t interval)
    assert list(line.x) == [1, 2, 4]
    assert [c.split(",")[0] for c in line.customdata] == ["n=2"] * 3
    errs = {}
    for r in t3:
        errs.setdefault(Spec.from_dict(r["spec"]).cardinality, []).append(
            100 * (1 - r["val_accuracy"])
        )
    assert list(line.y) == pytest.approx([sum(errs[c]) / 2 for c in (1, 2, 4)])
    f7 = dash.records_from_study(load("f7", url))
    fig = dash.model_size_figure(f7)
    series = {t.name.split(" (")[0]: t for t in fig.data}
    assert set(series) == {"cardinality series, d=2", "width series, C=1"}
    c, w = series["cardinality series, d=2"], series["width series, C=1"]
    assert list(c.text) == ["1x2d", "2x2d", "4x2d"] and list(w.text) == ["1x2d", "1x4d", "1x8d"]
    assert [d.split(",")[0] for d in [*c.customdata, *w.customdata]] == ["n=2"] * 6
    assert list(c.x) == [complexity(Spec.from_dict(r["spec"])).params for r in f7][0:6:2]


# ------------------------------------------------------------------------------------- CLI


def test_study_list_and_unknown_names(tmp_path: Path) -> None:
    listed, unknown, bad_seeds = run_clis(
        [
            ["study", "list", "--json"],
            ["study", "run", "nope"],
            ["study", "run", "budgeted-search", "--seeds", "2"],
        ],
        tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == studies.names()
    assert [r["trials"] for r in rows] == [15, 15, 24, 20]
    assert rows[0]["citation"] == "Table 2 / Table 3" and rows[2]["citation"].startswith("Fig. 7")
    for r, msg in ((unknown, "choose one of cardinality-vs-width"), (bad_seeds, "grid studies")):
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert msg in r.stderr and "Traceback" not in r.stderr


def test_study_run_command_trains_the_grid_and_resumes(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    args = ["study", "run", "cardinality-vs-width", "--storage", url, "--seeds", "1"]
    args += ["--epochs", "1", "--train-images", "64", "--val-fraction", "0.002"]
    args += ["--resolution", "8", "--no-latency", "--json"]
    (first,) = run_clis([args], tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["trials"] == {"COMPLETE": 5} and summary["missing"] == []
    assert summary["dashboard"] == (
        f"see `resnext-nas dashboard --study cardinality-vs-width --storage {url}`"
    )
    assert sorted(points(url, "cardinality-vs-width")) == [
        (n, 0) for n in ("1x24d", "2x16d", "32x2d", "4x10d", "8x6d")
    ]
    (again, table) = run_clis([args, args[:-1] + ["--quiet"]], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["workers"] == []  # nothing left: no data, no worker
    assert table.returncode == 0 and "resnext-nas dashboard --study cardinality-vs-width" in (
        table.stdout
    )
    assert len(load("cardinality-vs-width", url).trials) == 5


def test_a_search_definition_runs_its_trial_count_with_its_baselines(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    # A params budget: the same band at the default 32x32 (checked on definition) and at 8x8.
    design = studies.BudgetedSpace(None, 1e4, 0.2, "cifar", ((1, 1, 1),), (16,), (1, 2, 4))
    d = StudyDefinition(
        "bs", "t", "search", "m", "d", design, TINY, trials=4, pruner="none", enqueue=("family",),
        confirm=ConfirmSettings(k=1, seeds=1, max_seeds=1),
    )  # fmt: skip
    run = run_study(d, toy_data(), storage=url, latency=False)
    assert run.missing == [] and run.queued == 0
    done = [r for r in trial_rows(load("bs", url)) if r["state"] == "COMPLETE"]
    rows = [r for r in done if r["phase"] == "search"]
    assert len(rows) == 4
    # Then its confirmation phase: the top configuration once more, at 3x the epochs.
    (confirmed,) = [r for r in done if r["phase"] == "confirm"]
    assert confirmed["epochs"] == 3 * TINY.epochs
    family = {c.spec.notation for c in d.space(10, RES).family()}
    assert {r["spec"].split()[0] for r in rows if r["baseline"]} == family and len(family) == 3
    with pytest.raises(ValueError, match="applies to grid studies"):
        run_study(d, toy_data(), storage=url, seeds=2)


def test_two_study_runs_started_together_train_each_point_once(tmp_path: Path) -> None:
    """Two `study run` commands on one fresh file: the schema, the study and its grid are shared,
    and every (spec, seed) point is trained by one of them."""
    url = sqlite(tmp_path)
    args = ["study", "run", "cardinality-vs-width", "--storage", url, "--seeds", "1"]
    args += ["--epochs", "1", "--train-images", "64", "--val-fraction", "0.002"]
    args += ["--resolution", "8", "--no-latency", "--quiet"]
    for proc in run_clis([args, args], tmp_path):
        assert proc.returncode == 0, proc.stderr
    trials = load("cardinality-vs-width", url).trials
    trained = [p for t, p in zip(trials, map(grid_key, trials), strict=True) if is_trained_proxy(t)]
    assert len(trained) == len(set(trained)) == 5
