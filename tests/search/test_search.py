"""The search: design space, study runs on SQLite, workers, heartbeat recovery, CLI errors.

Trials are tiny (tests/helpers.py: ``tiny_space``, ``TRAIN``, ``toy_data``): about a second each
on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nas.search.attrs import ATTR, is_trained_proxy, retried_from
from nas.search.objective import Objective, Surplus, set_user_attrs
from nas.search.records import best_config, study_rows, trial_rows
from nas.search.storage import load, open_storage
from nas.search.study import (
    DEFAULT_STUDY,
    ENQUEUED,
    SearchSettings,
    check_study,
    create_or_load,
    enqueue,
)
from nas.search.suggest import OutOfBudget, suggest_spec
from nas.search.workers import run_search, run_worker
from resnext.budget import Budget, pareto_mask
from resnext.complexity import complexity
from resnext.spec import Spec
from tests.helpers import (
    KILL_IMAGES,
    KILL_TRAIN,
    RES,
    ROOT,
    TRAIN,
    WORKER,
    cli_env,
    run_clis,
    sqlite,
    tiny_space,
    toy_data,
)

# ------------------------------------------------------------------------------------ space


def test_space_enumerates_the_band_and_marks_empty_cells() -> None:
    space = tiny_space()
    assert len(space.configs) == 17
    assert space.empty_cells == 1
    assert space.depth_choices == ("1-1-1", "2-1-1")
    assert space.cardinality_choices == (1, 2, 4, 8)
    for c in space.configs:
        assert abs(c.complexity.flops - 2.5e5) <= 0.2 * 2.5e5
        assert space.contains(c.spec)
    assert not space.contains(Spec("cifar", (1, 1, 1), 16, 1, 9, 10, RES))


def test_suggest_spec_is_in_band_or_rejected_before_compute() -> None:
    space = tiny_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen, rejected = set(), 0
    for _ in range(300):
        trial = study.ask()
        try:
            spec = suggest_spec(trial, space)
        except OutOfBudget:
            rejected += 1
            assert (trial.params["depths"], trial.params["cardinality"]) == ("2-1-1", 8)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        assert space.contains(spec), spec
        assert set(trial.params) == {"depths", "width", "cardinality", "bottleneck_width"}
        seen.add(spec)
        study.tell(trial, 0.0)
    assert rejected > 0
    assert len(seen) == len(space.configs)  # every in-band config is reachable


def test_empty_band_and_bad_enqueue_are_value_errors() -> None:
    with pytest.raises(ValueError, match="no configuration lies within"):
        tiny_space(budget=Budget(10.0, None, 0.05))
    space = tiny_space()
    with pytest.raises(ValueError, match="outside the study's band"):
        space.adjust(Spec("cifar", (3, 3, 3), 256, 2, 64), "resnext29_2x64d")
    # (C, d) = (2, 2) is in band on the 1-1-1 skeleton: the preset's depths are replaced.
    adjusted = space.adjust(Spec("cifar", (3, 3, 3), 256, 2, 2), "x")
    assert adjusted == Spec("cifar", (1, 1, 1), 16, 2, 2, 10, RES)


def test_family_is_the_closest_config_per_skeleton_and_cardinality() -> None:
    space = tiny_space()
    fam = space.family()
    assert {(c.spec.depths, c.spec.cardinality) for c in fam} == {
        ((1, 1, 1), 1), ((1, 1, 1), 2), ((1, 1, 1), 4), ((1, 1, 1), 8),
        ((2, 1, 1), 1), ((2, 1, 1), 2), ((2, 1, 1), 4),
    }  # fmt: skip
    for c in fam:
        same = [o for o in space.configs if o.spec.depths == c.spec.depths]
        same = [o for o in same if o.spec.cardinality == c.spec.cardinality]
        assert c.deviation == min(o.deviation for o in same)


def test_settings_refuse_bad_objectives_samplers_and_pruners() -> None:
    space = tiny_space()
    with pytest.raises(ValueError, match="unknown sampler"):
        SearchSettings(space, sampler="cmaes")
    with pytest.raises(ValueError, match="--objectives"):
        SearchSettings(space, objectives=("flops",))
    with pytest.raises(ValueError, match="single objective"):
        SearchSettings(space, objectives=("error", "flops"), pruner="median")


# ------------------------------------------------------------------------------------ study


def test_search_trains_exactly_n_trials_with_attributes_and_resumes(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    data = toy_data()
    settings = SearchSettings(tiny_space(), study="s", enqueue=("family",), pruner="none")
    run_search(settings, data, replace(TRAIN, epochs=2), 2, storage=url)
    study = load("s", url)
    done = [t for t in study.trials if is_trained_proxy(t)]
    assert len(done) == 2
    # The 7 family members were queued first; 2 ran, 5 still wait.
    assert all(t.user_attrs.get("baseline", "").startswith("family") for t in done)
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 5
    for t in done:
        a = t.user_attrs
        spec = Spec.from_dict(a["spec"])
        assert settings.space.contains(spec)
        assert (a["flops"], a["params"]) == (complexity(spec).flops, complexity(spec).params)
        assert len(a["curve"]) == 2 and t.intermediate_values.keys() == {1, 2}
        assert a["images_per_second"] > 0 and a["inference_images_per_second"] > 0
        assert a["latency"] > 0 and a["wall_seconds"] >= a["train_seconds"] > 0
        assert t.values[0] == pytest.approx(1 - a["val_accuracy"])
    before = {t.number: t.values for t in done}
    # Resume to 3 trials: the earlier ones are untouched and the family is not queued twice.
    run_search(settings, data, replace(TRAIN, epochs=2), 3, storage=url)
    study = load("s", url)
    done = [t for t in study.trials if is_trained_proxy(t)]
    assert len(done) == 3
    assert {t.number: t.values for t in done if t.number in before} == before
    baselines = [t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs]
    assert len(baselines) == len(set(baselines)) == 7
    # Resuming a finished study trains nothing.
    reports = run_search(settings, data, replace(TRAIN, epochs=2), 3, storage=url)
    assert reports[0].trials == 0
    assert len(load("s", url).trials) == len(study.trials)


def test_rejected_proposals_are_not_counted(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    space = tiny_space(cardinalities=(4, 8))  # (2-1-1, C=8) is empty: half the cells of C=8
    settings = SearchSettings(
        space, study="r", sampler="random", pruner="none", seed=3, latency=False
    )
    run_search(settings, toy_data(), TRAIN, 3, storage=url)
    rows = trial_rows(load("r", url))
    kinds = [r["state"] for r in rows]
    assert kinds.count("COMPLETE") == 3
    assert all(k in ("COMPLETE", "rejected") for k in kinds)
    for r in rows:
        if r["state"] == "rejected":
            assert r["spec"] is None and "no in-band" in r["note"]


def test_multi_objective_study_returns_error_and_flops(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    settings = SearchSettings(
        tiny_space(), study="mo", objectives=("error", "flops"), sampler="nsga2", latency=False
    )
    run_search(settings, toy_data(), replace(TRAIN, early_stop_patience=1), 2, storage=url)
    study = load("mo", url)
    assert len(study.directions) == 2 and study.metric_names == ["error", "flops"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.values[1] == t.user_attrs["flops"]
    rows = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    front = pareto_mask(
        np.array([r["flops"] for r in rows], float), np.array([r["error"] for r in rows], float)
    )
    assert [r["pareto"] for r in rows] == front.tolist()
    assert any(r["pareto"] for r in rows)
    # The same name with other objectives, or another space, is refused.
    with pytest.raises(ValueError, match="has objectives error,flops"):
        check_study(SearchSettings(tiny_space(), study="mo"), url)
    with pytest.raises(ValueError, match="another search space"):
        create_or_load(
            open_storage(url),
            SearchSettings(tiny_space(widths=(16, 24)), study="mo", objectives=("error", "flops")),
        )


def test_pareto_marks_match_a_brute_force_front(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    storage = open_storage(url)
    settings = SearchSettings(tiny_space(), study="p")
    study = create_or_load(storage, settings)
    rng = np.random.default_rng(1)
    for i in range(12):
        t = study.ask()
        spec = settings.space.configs[i].spec
        t.set_user_attr("spec", spec.to_dict())
        t.set_user_attr("flops", int(rng.integers(1, 6)))
        acc = float(rng.integers(0, 5)) / 10
        t.set_user_attr("val_accuracy", acc)
        study.tell(t, 1 - acc)
    rows = trial_rows(load("p", url), "flops")
    pts = [(r["flops"], r["error"]) for r in rows]
    for r, (f, e) in zip(rows, pts, strict=True):
        dominated = any(f2 <= f and e2 <= e and (f2, e2) != (f, e) for f2, e2 in pts)
        assert r["pareto"] == (not dominated)


def test_two_workers_share_one_sqlite_study_without_lock_errors(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    settings = SearchSettings(tiny_space(), study="w", pruner="none", latency=False)
    reports = run_search(settings, toy_data(), TRAIN, 4, storage=url, workers=2)
    study = load("w", url)
    states = [t.state for t in study.trials]
    assert TrialState.FAIL not in states
    assert sum(is_trained_proxy(t) for t in study.trials) == 4
    assert sum(r.trials for r in reports) == 4
    assert all(r.trials >= 1 for r in reports)  # both really worked


def test_a_trial_asked_past_the_study_wide_count_is_surplus(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    settings = SearchSettings(tiny_space(), "sp")
    study = create_or_load(open_storage(url), settings)
    other = study.ask()  # another worker's running trial claims the only slot
    enqueue(study, settings.space, ["family"])
    trial = study.ask()  # pops the first queued baseline
    objective = Objective(settings.space, toy_data(), TRAIN, ("error",), n_trials=1)
    with pytest.raises(Surplus):
        objective(trial)
    study.tell(trial, state=TrialState.PRUNED)
    study.tell(other, 0.5)
    frozen = study.trials[trial.number]
    assert frozen.user_attrs["surplus"] and "spec" not in frozen.user_attrs
    assert not is_trained_proxy(frozen)
    # The baseline went back to the queue: still 7 waiting.
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 7
    assert frozen.user_attrs[ENQUEUED] in [t.user_attrs[ENQUEUED] for t in waiting]


def _stop_worker_mid_trial(url: str, sig: signal.Signals) -> optuna.trial.FrozenTrial:
    """Start a worker, send it ``sig`` during its second trial; returns that trial as it was."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url], cwd=ROOT, env=cli_env())
    storage = open_storage(url, heartbeat=1)
    victim = None
    sent = False
    try:
        # Minutes, not seconds: on a loaded machine (load 6 on 2 cores) the start and the first
        # trial alone took over 120 s; the wait ends as soon as the second trial is under way.
        deadline = time.time() + 600
        while time.time() < deadline and victim is None:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name="k", storage=storage).get_trials()
            except KeyError:
                continue
            if any(t.state == TrialState.COMPLETE for t in trials):
                running = [t for t in trials if t.state == TrialState.RUNNING]
                curve = running[0].user_attrs.get("curve") if running else None
                if curve and len(curve) <= KILL_TRAIN.epochs // 2:
                    victim = running[0]
        assert victim is not None, "the worker never reached a second trial"
        os.kill(proc.pid, sig)
        sent = True
        proc.wait(timeout=60)
    finally:
        # Never leave the worker behind (an orphan of a failed wait trained for 50 minutes
        # under load): whatever happened above, it is killed here.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent
    return victim


def test_killed_worker_trial_is_failed_by_heartbeat_and_retried(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    storage = open_storage(url, heartbeat=1)
    victim = _stop_worker_mid_trial(url, signal.SIGKILL)
    before = {
        t.number: t.values
        for t in optuna.load_study(study_name="k", storage=storage).trials
        if t.state == TrialState.COMPLETE
    }
    settings = SearchSettings(tiny_space(), study="k", pruner="none", latency=False)
    run_worker(settings, toy_data(KILL_IMAGES), KILL_TRAIN, 2, storage=url, heartbeat=1)
    study = load("k", url)
    by_number = {t.number: t for t in study.trials}
    assert by_number[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if retried_from(t) == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == victim.params
    assert {n: by_number[n].values for n in before} == before
    assert sum(is_trained_proxy(t) for t in study.trials) == 2


def test_interrupted_trial_is_queued_again_at_once(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    victim = _stop_worker_mid_trial(url, signal.SIGINT)  # Ctrl-C
    # No heartbeat has to go stale: the interrupted trial is failed and its retry queued.
    study = load("k", url)
    by_number = {t.number: t for t in study.trials}
    assert by_number[victim.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if retried_from(t) == victim.number]
    assert retry.state == TrialState.WAITING
    assert retry.params == victim.params
    # Its note says what happened: not "worker lost (heartbeat)".
    assert trial_rows(study)[victim.number]["note"] == "interrupted"
    assert retry.user_attrs["seed"] == victim.user_attrs["seed"]
    settings = SearchSettings(tiny_space(), study="k", pruner="none", latency=False)
    run_worker(settings, toy_data(KILL_IMAGES), KILL_TRAIN, 2, storage=url, heartbeat=1)
    study = load("k", url)
    assert {t.number: t.state for t in study.trials}[retry.number] == TrialState.COMPLETE
    assert sum(is_trained_proxy(t) for t in study.trials) == 2


# -------------------------------------------------------------------------------------- CLI


def _make_study(url: str, name: str, objectives: tuple[str, ...]) -> None:
    create_or_load(open_storage(url), SearchSettings(tiny_space(), name, objectives))


BAD_INPUTS = [
    (["--storage", "notaurl"], "cannot open storage"),
    (["--storage", "sqlite:////no/such/folder/x.db"], "does not exist"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open storage"),
    (["--flops", "1e3"], "no configuration lies within"),
    (["--enqueue", "resnext29_9x9d"], "unknown preset"),
    (["--enqueue", "resnext29_2x64d"], "outside the study's band"),
    (["--sampler", "cmaes"], "Invalid value for '--sampler'"),
    (["--pruner", "asha"], "Invalid value for '--pruner'"),
    (["--objectives", "error,flops", "--pruner", "median"], "single objective"),
    (["--objectives", "error,flops", "--study", "taken"], "has objectives error"),
]


def test_search_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    _make_study(url, "taken", ("error",))
    results = run_clis(
        [["search", "--trials", "1", "--storage", url, *args] for args, _ in BAD_INPUTS], tmp_path
    )
    for r, (args, message) in zip(results, BAD_INPUTS, strict=True):
        err = r.stderr
        assert r.returncode == 2, (args, err)
        assert "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert message in err, (args, err)
        assert "secret" not in err
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["taken"]


def test_a_postgres_url_without_its_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tomllib

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(ValueError) as info:
        open_storage("postgresql://u:secret@127.0.0.1:1/db")
    message = str(info.value)
    assert "driver psycopg is not installed" in message and "secret" not in message
    assert "pip install 'resnext-nas[postgres]'" in message
    with pytest.raises(ValueError, match="driver psycopg2 is not installed; install psycopg2"):
        open_storage("postgresql+psycopg2://u@127.0.0.1:1/db")
    # The extra the message names holds the driver that postgresql:// URLs use.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert [r.split("[")[0] for r in extras["postgres"]] == ["psycopg"]
    assert set(extras["postgres"]) <= set(extras["test"])


def test_trials_and_studies_commands(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    settings = SearchSettings(tiny_space(), study="t", pruner="none", latency=False)
    run_search(settings, toy_data(), TRAIN, 2, storage=url)
    calls = {
        "absent": ["trials", "--study", "t", "--json"],  # the default file is not there
        "json": ["trials", "--study", "t", "--storage", url, "--json", "--csv", "t.csv"],
        "table": ["trials", "--study", "t", "--storage", url],
        "unknown": ["trials", "--study", "nope", "--storage", url],
        "studies": ["studies", "--storage", url, "--json"],
    }
    r = dict(zip(calls, run_clis(list(calls.values()), tmp_path), strict=True))
    assert r["absent"].returncode == 2 and "no study database" in r["absent"].stderr
    assert r["json"].returncode == 0, r["json"].stderr
    listed = json.loads(r["json"].stdout)
    assert listed["recommendation"] is None  # no confirmation phase: no answer
    rows = listed["trials"]
    assert len(rows) == 2
    for row in rows:
        assert {"number", "state", "spec", "flops", "params", "val_accuracy"} <= row.keys()
        assert row["state"] == "COMPLETE" and row["spec"].endswith("w16")
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("number,state,spec")
    assert r["table"].returncode == 0 and "◆" in r["table"].stdout
    assert r["unknown"].returncode == 2
    assert "no study 'nope'" in r["unknown"].stderr
    assert "studies there: t" in r["unknown"].stderr
    (row,) = json.loads(r["studies"].stdout)
    assert row["name"] == "t" and row["trials"] == {"COMPLETE": 2}
    # No confirmation phase: the answer is the best single proxy trial, and says so.
    best = max(rows, key=lambda x: (x["val_accuracy"], -x["number"]))
    answer = row["answer"]
    assert answer["source"] == "proxy" and answer["trial"] == best["number"]
    assert answer["mean_accuracy"] == best["val_accuracy"] and answer["notation"] == best["spec"]
    assert answer["label"] == f"best single proxy trial ({best['epochs']} epoch, 1 seed)"
    assert study_rows(url)[0]["objectives"] == ["error"]


@pytest.mark.slow  # two CLI runs, each generating the synthetic set: about a minute
def test_search_command_runs_and_resumes(tmp_path: Path) -> None:
    args = ["search", "--trials", "2", "--epochs", "1", "--train-images", "100"]
    args += ["--val-fraction", "0.01", "--resolution", "16", "--depths", "1,1,1"]
    args += ["--widths", "16", "--flops", "1e6", "--tolerance", "0.2", "--no-latency"]
    args += ["--enqueue", "family", "--json", "--study", "c", "--confirm", "0"]
    (first,) = run_clis([args], tmp_path)  # the default storage: ./resnext-nas.db
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["trials"].get("COMPLETE", 0) + summary["trials"].get("PRUNED", 0) == 2
    assert (tmp_path / "resnext-nas.db").exists()
    (again,) = run_clis([args], tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)  # nothing left to do: no data loaded, no worker started
    assert resumed["workers"] == [] and resumed["trials"] == summary["trials"]


def test_existing_foreign_study_is_refused(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    study = optuna.create_study(storage=url, study_name="foreign")
    study.tell(study.ask(), 1.0)
    with pytest.raises(ValueError, match="not made by"):
        create_or_load(open_storage(url), SearchSettings(tiny_space(), "foreign"))
    assert ATTR not in optuna.load_study(study_name="foreign", storage=url).user_attrs


def test_enqueue_once(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    settings = SearchSettings(tiny_space(), "e")
    study = create_or_load(open_storage(url), settings)
    assert enqueue(study, settings.space, ["family"]) == 7
    assert enqueue(study, settings.space, ["family"]) == 0
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 7


def test_a_config_proposed_again_trains_with_the_next_seed(tmp_path: Path) -> None:
    # A one-config space: every trial after the first is a repeat of it.
    flops = complexity(Spec("cifar", (1, 1, 1), 16, 1, 4, 10, RES)).flops
    space = tiny_space(
        depths=((1, 1, 1),), cardinalities=(1,), bottleneck_widths=(4,), budget=Budget(flops)
    )
    assert len(space.configs) == 1
    url = sqlite(tmp_path)
    run_search(SearchSettings(space, pruner="none"), toy_data(), TRAIN, 3, storage=url)
    rows = [r for r in trial_rows(load(DEFAULT_STUDY, url)) if r["state"] == "COMPLETE"]
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert [r["repeat"] for r in rows] == [None, 1, 2]
    assert rows[1]["note"] == "repeat 1 (seed 1)"
    # The three seeds of the one config: the mean is shown with every row, and is the best config.
    mean = sum(r["val_accuracy"] for r in rows) / 3
    assert all(r["spec_trials"] == 3 for r in rows)
    assert all(r["spec_mean_accuracy"] == pytest.approx(mean) for r in rows)
    best = best_config(rows)
    assert best["trials"] == [r["number"] for r in rows]
    assert best["mean_accuracy"] == pytest.approx(mean)
    assert best_config(rows[:1]) is None  # no repeats: the best trial says it all
    res = run_clis([["trials", "--study", DEFAULT_STUDY, "--storage", url]], tmp_path)[0]
    # the mean over the 3 seeds, with its 95% t interval, as `mean [lo, hi] n`
    assert res.returncode == 0 and f"{mean:.1%} [" in res.stdout, res.stdout + res.stderr
    assert "] 3" in res.stdout
    # A new seed is a new measurement: the curves differ (the same seed would replay exactly).
    study = load(DEFAULT_STUDY, url)
    curves = [t.user_attrs["curve"][0]["train_loss"] for t in study.trials]
    assert len(set(curves)) == 3


@pytest.mark.parametrize("rdb", [True, False])
def test_set_user_attrs_writes_every_attribute_at_once(tmp_path: Path, rdb: bool) -> None:
    storage = open_storage(sqlite(tmp_path)) if rdb else optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    attrs = {"spec": {"depths": [1, 1, 1]}, "flops": 123, "curve": [{"epoch": 1}], "x": None}
    set_user_attrs(trial, {"flops": 1})
    set_user_attrs(trial, attrs)  # overwrites "flops"
    assert trial.user_attrs == attrs
    assert study.get_trials()[0].user_attrs == attrs  # read back from the storage
    study.tell(trial, 0.5)
    with pytest.raises(RuntimeError):  # a finished trial refuses writes, as set_user_attr does
        set_user_attrs(trial, {"late": 1})
