"""scripts/ground_truth.py and benchmarks/bench_search_quality.py on a tiny toy band."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nas.data import MIN_VAL_IMAGES
from nas.training.config import DEFAULT_TRIAL
from tests.helpers import ROOT, toy_data


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# C=2 alone: the band's 3 configurations (d = 1, 2, 3), so that the table holds all it has.
BAND = [
    "--dataset", "toy", "--flops", "2.5e5", "--tolerance", "0.2", "--depths", "1,1,1",
    "--widths", "16", "--cardinalities", "2", "--bottleneck-widths", "1,2,3", "--max-configs", "3",
    "--epochs", "1",
    "--confirm-epochs", "2",
    "--proxy-seeds", "2", "--confirm-seeds", "2", "--batch-size", "64", "--device", "cpu",
]  # fmt: skip


def test_ground_truth_resumes_and_the_benchmark_replays_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nas.data

    calls = []

    def toy(name: str, **kw) -> nas.data.Dataset:
        calls.append((name, kw))
        return toy_data()

    monkeypatch.setattr(nas.data, "load_dataset", toy)
    gt = load("scripts/ground_truth.py", "ground_truth")
    out = tmp_path / "gt.json"
    first = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where"])
    # The data options pass through to load_dataset as `search` passes them.
    assert calls[0] == (
        "toy",
        {"data_dir": "/some/where", "train_images": DEFAULT_TRIAL.train_images,
         "val_fraction": DEFAULT_TRIAL.val_fraction, "seed": 0, "resolution": None,
         "val_cap": DEFAULT_TRIAL.val_cap, "min_val": MIN_VAL_IMAGES},
    )  # fmt: skip
    assert len(first["configs"]) == 3
    for c in first["configs"]:
        assert set(c["proxy"]) == set(c["confirm"]) == {"0", "1"}
    # Resume: a run lost from the file is trained again; the others are kept as they were.
    saved = json.loads(out.read_text())
    lost = saved["configs"][1]["confirm"].pop("1")
    out.write_text(json.dumps(saved))
    again = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where"])
    assert again["configs"][0] == first["configs"][0]
    assert set(again["configs"][1]["confirm"]) == {"0", "1"}
    assert again["configs"][1]["confirm"]["1"]["seconds"] != lost["seconds"]
    assert len(again["command"]) == 2 and again["wall_seconds"] > 0
    with pytest.raises(ValueError, match="other settings"):
        gt.run([*BAND, "--out", str(out), "--epochs", "2"])
    # Each run keeps its per-epoch curve, one of whose scores is the run's accuracy (the best,
    # on a split no bigger than the interim sample, as here), and its CPU-seconds.
    for c in again["configs"]:
        for sched, epochs in (("proxy", 1), ("confirm", 2)):
            for run in c[sched].values():
                assert len(run["curve"]) == epochs
                assert max(run["curve"]) == pytest.approx(run["val_accuracy"])
                assert run["cpu_seconds"] > 0
    # An older file's proxy run without a curve is trained again, the old accuracy kept beside
    # the new; a confirmation run without one stays (the pruner replay reads proxy curves only).
    saved = json.loads(out.read_text())
    old = saved["configs"][0]["proxy"]["0"]
    del old["curve"], saved["configs"][0]["confirm"]["0"]["curve"]
    out.write_text(json.dumps(saved))
    again = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where"])
    rerun = again["configs"][0]["proxy"]["0"]
    assert rerun["previous_val_accuracy"] == old["val_accuracy"] and "curve" in rerun
    assert "curve" not in again["configs"][0]["confirm"]["0"]

    # Processes share one file: a run claimed by a live process (pid 1) is left to it, one
    # claimed by a process that died is taken over; the claims go once the runs are in.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    saved = json.loads(out.read_text())
    del saved["configs"][0]["proxy"]["1"], saved["configs"][2]["confirm"]["0"]
    host = socket.gethostname()
    saved["claims"] = {
        "proxy/1/0": {"host": host, "pid": 1},
        "confirm/0/2": {"host": host, "pid": dead.pid},
    }
    out.write_text(json.dumps(saved))
    shared = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where"])
    assert "1" not in shared["configs"][0]["proxy"] and "0" in shared["configs"][2]["confirm"]
    assert shared["claims"] == {"proxy/1/0": {"host": host, "pid": 1}}
    saved = json.loads(out.read_text())
    del saved["claims"]
    out.write_text(json.dumps(saved))
    again = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where"])
    assert "1" in again["configs"][0]["proxy"] and "claims" not in json.loads(out.read_text())

    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    args = [str(out), "--search-seeds", "3", "--confirm", "3", "--confirm-seeds", "2"]
    summary = bench.main([*args, "--confirm-max-seeds", "2", "--bootstrap", "200"])
    truth = np.array(
        [np.mean([v["val_accuracy"] for v in c["confirm"].values()]) for c in again["configs"]]
    )
    possible = {round(100 * (truth.max() - t), 9) for t in truth}
    for name, r in summary["results"].items():
        assert {round(x, 9) for x in r["regrets"] if x == x} <= possible, name
        assert r["mean_epochs_used"] <= summary["budget"]
    # The grid proxies every configuration, and all 3 are confirmed with every cached seed:
    # its answer is the true best, every time.
    grid = summary["results"]["grid+confirm"]
    assert (grid["worst_regret"], grid["top2_rate"], grid["stopped"]) == (0.0, 1.0, 0)
    assert summary["truth"] == "confirm"
    # TPE against random search, paired over the same search seeds.
    tpe, rnd = summary["results"]["tpe+confirm"], summary["results"]["random+confirm"]
    pair = tpe["minus_random+confirm"]
    assert pair["mean"] == pytest.approx(tpe["mean_regret"] - rnd["mean_regret"])
    assert pair["interval"][0] <= pair["interval"][1]
    # The table has curves, so the search's pruners are replayed too. With one-epoch proxy
    # trials nothing can be pruned (the last epoch is never pruned): they match tpe+confirm.
    for name in ("tpe+hyperband+confirm", "tpe+median+confirm"):
        assert summary["results"][name]["pruned_trials"] == 0
        assert summary["results"][name]["regrets"] == summary["results"]["tpe+confirm"]["regrets"]
    # The same budget in the table's measured seconds.
    timed = bench.main([*args, "--confirm-max-seeds", "2", "--compute", "seconds"])
    assert timed["unit"] == "seconds"
    for r in timed["results"].values():
        assert r["mean_seconds_used"] <= timed["budget"]

    # Seed counts may grow: truth seeds of their own become the ground truth.
    grown = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where", "--truth-seeds", "1"])
    assert all(set(c["truth"]) == {"1000"} for c in grown["configs"])
    summary = bench.main([*args, "--confirm-max-seeds", "2", "--bootstrap", "200"])
    assert summary["truth"] == "truth"
    truth = np.array([c["truth"]["1000"]["val_accuracy"] for c in grown["configs"]])
    possible = {round(100 * (truth.max() - t), 9) for t in truth}
    for name, r in summary["results"].items():
        assert {round(x, 9) for x in r["regrets"] if x == x} <= possible, name

    # A truth at a schedule of its own: the long runs of a `calibrate --compare` file, matched
    # by spec; its seed noise is the truth runs' alone (not pooled with the confirmation's).
    rng = np.random.default_rng(5)
    recipes = {
        "candidates": {"long": {"train_images": 120, "epochs": 6}},
        "configs": [
            {
                "spec": c["spec"],
                "runs": {
                    f"long/{seed}": {
                        "status": "completed",
                        "accuracy": {"raw": {"10": 0.1, "64": float(rng.uniform(0.3, 0.6))}},
                        "wall_seconds": 9.0,
                        "cpu_seconds": 8.0,
                        "curve": [0.2, 0.3],
                        "scored_images": 64,
                    }
                    for seed in (1000, 1001)
                }
                | {"base/0": {"status": "completed"}},
            }
            for c in grown["configs"]
        ],
    }
    rfile = tmp_path / "recipes.json"
    rfile.write_text(json.dumps(recipes))
    out2 = tmp_path / "gt-long.json"
    longer = gt.run([*BAND, "--out", str(out2), "--truth-from", str(rfile), "--truth-seeds", "3"])
    assert longer["truth_schedule"]["epochs"] == 6
    for c, r in zip(longer["configs"], recipes["configs"], strict=True):
        assert set(c["truth"]) == {"1000", "1001"}  # none trained here, whatever --truth-seeds
        assert c["truth"]["1001"]["val_accuracy"] == r["runs"]["long/1001"]["accuracy"]["raw"]["64"]
    table = bench.Truth.from_dict(longer)
    assert table.source == "truth" and table.noise_runs == ("truth",)
    long_runs = [
        [100 * r["runs"][f"long/{s}"]["accuracy"]["raw"]["64"] for s in (1000, 1001)]
        for r in recipes["configs"]
    ]
    pooled = np.sqrt(np.mean([np.var(x, ddof=1) for x in long_runs]))
    assert bench.seed_sd(table) == pytest.approx(pooled)
    recipes["configs"].pop()
    rfile.write_text(json.dumps(recipes))
    with pytest.raises(ValueError, match="has no runs of"):
        gt.run([*BAND, "--out", str(tmp_path / "gt-3.json"), "--truth-from", str(rfile)])


# The committed table's band (benchmarks/data/ground-truth-cifar10.json): 14 configurations.
SETTINGS = {"flops": 8e6, "tolerance": 0.15, "depths": ["1,1,1", "2,2,2"], "widths": "32",
            "cardinalities": None, "epochs": 3, "confirm_epochs": 9}  # fmt: skip


def synthetic(
    *,
    proxy: int = 3,
    confirm: int = 3,
    truth: int = 3,
    noise: float = 0.01,
    per_epoch: Callable[[int], float] = lambda j: 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """A ground-truth table of :data:`SETTINGS`'s band with ``proxy``, ``confirm`` and ``truth``
    runs a configuration: the j-th configuration's curves climb to 0.3 + 0.2 j / 14 by their
    last epoch, with Gaussian noise of SD ``noise`` an epoch, at ``per_epoch(j)`` seconds an
    epoch."""
    from nas.search.attrs import notation
    from nas.search.space import spec_params

    gt = load("scripts/ground_truth.py", "ground_truth")
    rng = np.random.default_rng(seed)
    space = gt.band(argparse.Namespace(**SETTINGS), 10, 32)

    def runs(j: int, n: int, epochs: int, first: int) -> dict[str, Any]:
        level = 0.3 + 0.2 * j / len(space.configs)
        out = {}
        for k in range(n):
            curve = [level * e / epochs + noise * rng.standard_normal()
                     for e in range(1, epochs + 1)]  # fmt: skip
            out[str(first + k)] = {
                "val_accuracy": max(curve),
                "curve": curve,
                "seconds": per_epoch(j) * epochs,
            }
        return out

    configs = [
        {
            "spec": c.spec.to_dict(),
            "params": spec_params(c.spec),
            "notation": notation(c.spec),
            "proxy": runs(j, proxy, 3, 0),
            "confirm": runs(j, confirm, 9, 0),
            "truth": runs(j, truth, 9, 1000),
        }
        for j, c in enumerate(space.configs)
    ]
    return {"settings": SETTINGS, "configs": configs}


def test_the_replay_samples_as_the_search_does() -> None:
    """The replay's sampler is the one `search` builds for that many trials (TPE's start-up
    trials, constant liar), its draws are suggest_spec's (an integer bottleneck_width), and a
    configuration proposed again trains, and reads, the next seed."""
    from optuna.distributions import IntDistribution

    from nas.search.study import SearchSettings, create_or_load, make_sampler

    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    truth = bench.Truth.from_dict(synthetic(proxy=10))
    assert len(truth.configs) == len(truth.space.configs) == 14
    settings = bench.ConfirmSettings(k=3, epochs=9, seeds=3, max_seeds=3)
    plan = bench.Plan(settings, bench.default_budget(truth, settings, "epochs"))
    n = bench.proxy_budget(truth, plan)[1]
    assert n == 14
    for shared in (True, False):
        _, replay = bench.STRATEGIES["tpe+confirm"](truth, 7, replace(plan, shared=shared))
        got = replay.study.sampler
        want = make_sampler("tpe", 7, n, shared)
        search = create_or_load(
            optuna.storages.InMemoryStorage(),
            SearchSettings(truth.space, study=f"s{shared}"),
            n_trials=n,
            shared=shared,
        ).sampler
        for s in (got, want, search):
            assert type(s) is optuna.samplers.TPESampler
            # A fifth of 14 trials, at least 3 (the copy this replaced had 5 and no liar).
            assert (s._n_startup_trials, s._constant_liar) == (3, shared)
        proxies = [
            t
            for t in replay.study.trials
            if t.user_attrs.get("phase") == "search" and t.state == TrialState.COMPLETE
        ]
        assert len(proxies) == replay.proxies == 14
        assert all(isinstance(t.distributions["bottleneck_width"], IntDistribution)
                   for t in proxies)  # fmt: skip
        seeds: dict[tuple, list[int]] = {}
        for t in proxies:
            seeds.setdefault(tuple(sorted(t.params.items())), []).append(t.user_attrs["seed"])
        assert all(s == list(range(len(s))) for s in seeds.values())
        assert len(set(replay.reads)) == len(replay.reads)


def test_no_run_is_read_twice_and_a_short_table_stops_the_search() -> None:
    """A search that needs a seed the table lacks stops there (or, --strict, fails), naming
    what it needed; no replay reads a run twice."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    truth = bench.Truth.from_dict(synthetic(proxy=1, confirm=3))
    settings = bench.ConfirmSettings(k=2, epochs=9, seeds=2, max_seeds=2)
    plan = bench.Plan(settings, 2 * 2 * 9 + 30 * 3)  # 30 proxy trials; the table holds 14
    for name in ("tpe+confirm", "grid+confirm", "tpe best-single"):
        for seed in range(2):
            _, replay = bench.STRATEGIES[name](truth, seed, plan)
            assert len(set(replay.reads)) == len(replay.reads), name
            assert replay.proxies <= 14
            assert "the table holds 1 proxy run of it (seeds 0)" in replay.stopped, name
    with pytest.raises(bench.TableExhausted, match="needs proxy seed 1; the table holds 1"):
        bench.STRATEGIES["tpe+confirm"](truth, 0, replace(plan, strict=True))
    # The confirmation phase asks for a third seed of a table that has two.
    short = bench.Truth.from_dict(synthetic(proxy=3, confirm=2))
    settings = bench.ConfirmSettings(k=2, epochs=9, seeds=3, max_seeds=3)
    plan = bench.Plan(settings, bench.default_budget(short, settings, "epochs"))
    i, replay = bench.STRATEGIES["grid+confirm"](short, 0, plan)
    assert "needs confirm seed 2; the table holds 2 confirm runs" in replay.stopped
    assert i is not None  # it answers from the seeds it confirmed
    with pytest.raises(bench.TableExhausted, match="needs confirm seed 2"):
        bench.STRATEGIES["grid+confirm"](short, 0, replace(plan, strict=True))


def test_compute_is_counted_in_measured_seconds() -> None:
    """With --compute seconds a trial costs the seconds its run took: slow configurations use
    up the budget sooner, and what a replay spent is the sum of the runs it read."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    slow = lambda j: 10.0 if j % 2 else 1.0  # noqa: E731
    truth = bench.Truth.from_dict(synthetic(proxy=10, per_epoch=slow))
    settings = bench.ConfirmSettings(k=2, epochs=9, seeds=2, max_seeds=2)
    # The confirmation's worst case: 2 seeds of the 2 slowest configurations' slowest runs.
    assert truth.reserve(settings, "seconds") == 2 * 2 * 90
    plan = bench.Plan(settings, truth.reserve(settings, "seconds") + 200, "seconds")
    _, replay = bench.grid(truth, 0, plan)
    spent, n = 0.0, 0
    for j in itertools.cycle(np.random.default_rng(0).permutation(14).tolist()):
        if spent + 3 * slow(j) > 200:
            break  # the grid stops at the first trial that does not fit whole
        spent, n = spent + 3 * slow(j), n + 1
    assert replay.proxies == n
    read = sum(truth.configs[i][s][str(seed)]["seconds"] for i, s, seed in replay.reads)
    assert replay.seconds == pytest.approx(read) and replay.seconds <= plan.budget
    # The same budget in epochs buys whole trials whatever they cost: more of them here.
    epochs = bench.Plan(settings, 2 * 2 * 9 + 3 * n + 60)
    assert bench.grid(truth, 0, epochs)[1].proxies == n + 20


def test_table_noise_widens_the_intervals() -> None:
    """The regret intervals take the truth means' own noise in: wider on a table with noisy
    truths than the search seeds alone give, and the same on a table without noise."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    picks = {"a": [13, 12, 13, 11, 13, 12, 13, 12], "b": [13] * 8}

    def widths(table: object) -> list[float]:
        out = []
        for noise in (True, False):
            lo, hi = np.quantile(bench.bootstrap(table, picks, 2000, noise)["a"], [0.025, 0.975])
            out.append(hi - lo)
        return out

    noisy = bench.Truth.from_dict(synthetic(noise=0.03))
    assert bench.seed_sd(noisy) > 2  # points
    with_noise, search_only = widths(noisy)
    assert with_noise > 1.3 * search_only
    exact = bench.Truth.from_dict(synthetic(noise=0.0))
    assert bench.seed_sd(exact) == 0
    assert widths(exact)[0] == pytest.approx(widths(exact)[1])
    # A strategy that always answers the same configuration has no search spread at all; the
    # table's noise alone gives it an interval.
    b = bench.bootstrap(noisy, picks, 2000, noise=True)["b"]
    assert np.ptp(bench.bootstrap(noisy, picks, 2000, noise=False)["b"]) == 0 < np.ptp(b)
    # Replicates biased upwards (a drawn truth's best lies above the table's) move the basic
    # interval down from the estimate, and a regret's stops at 0.
    low, high = bench.basic_interval(2.0, np.linspace(2.5, 4.5, 1001), floor=0.0)
    assert low == 0.0 and high == pytest.approx(4 - 2.55)


def test_pruned_replay_stops_bad_curves_and_spends_what_it_saves() -> None:
    """The median pruner, fed cached 3-epoch curves, stops the trials whose first epochs lie
    under the median; each costs the epochs it ran (and that share of its seconds), and the
    saved compute buys more trials."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    truth = bench.Truth.from_dict(synthetic(proxy=40))
    settings = bench.ConfirmSettings(k=2, epochs=9, seeds=2, max_seeds=3)
    budget = 2 * 3 * 9 + 30 * 3
    plan = bench.Plan(settings, budget)
    plain = bench.evaluate(truth, plan, seeds=3, draws=200)
    median, tpe = plain["tpe+median+confirm"], plain["tpe+confirm"]
    assert median["pruned_trials"] > 0 and tpe["pruned_trials"] == 0
    for r in plain.values():
        assert r["mean_epochs_used"] <= budget and r["stopped"] == 0
        # A second an epoch in this table: seconds, pruned shares included, match epochs.
        assert r["mean_seconds_used"] == pytest.approx(r["mean_epochs_used"])
    # Pruned trials cost less than whole ones: the same proxy compute runs more trials.
    assert median["proxy_trials"] > tpe["proxy_trials"] == 30
    # A replay repeats: Hyperband's brackets hash the study name, which is fixed per seed.
    for name in ("tpe+hyperband+confirm", "tpe+median+confirm"):
        for seed in range(3):
            (i, a), (j, b) = (bench.STRATEGIES[name](truth, seed, plan) for _ in range(2))
            assert (i, a.reads, a.pruned) == (j, b.reads, b.pruned), (name, seed)


def test_separability_tells_a_flat_band_from_a_graded_one() -> None:
    """The one-way F of the confirmation-schedule runs, with its permutation p-value: clear
    differences between configurations give a small p, runs from one distribution a large one,
    and the estimated SD of the true means follows."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    rng = np.random.default_rng(1)

    def table(step: float) -> object:
        configs = [
            {
                s: {str(k): {"val_accuracy": 0.4 + step * c + 0.01 * rng.standard_normal()}
                    for k in range(3)}
                for s in ("confirm", "truth")
            }
            for c in range(8)
        ]  # fmt: skip
        return bench.Truth(configs, proxy_epochs=3, confirm_epochs=9)

    graded = bench.separability(table(0.02), permutations=500)
    flat = bench.separability(table(0.0), permutations=500)
    assert graded["p"] < 0.01 and graded["f"] > 10 and graded["config_sd"] > 1.0
    assert flat["p"] > 0.01 and flat["config_sd"] < graded["config_sd"] / 5
    assert graded["runs"] == flat["runs"] == 48
    assert 0.5 < flat["seed_sd"] < 1.5  # the 1-point noise, in points


def test_fidelity_ranks_each_schedule_against_the_truth() -> None:
    """The proxy and confirmation means ranked against the truth: 1 where every schedule keeps
    the configurations' order, lower where the proxy reverses it; none for the truth itself."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    table = synthetic(noise=0.0)
    truth = bench.Truth.from_dict(table)
    e, n = bench.fidelity(truth, "proxy")
    assert (e.value, n) == (1.0, 3) and e.low <= 1.0
    assert bench.fidelity(truth, "truth") is None
    for c in table["configs"]:  # the proxy ranks the band backwards
        for run in c["proxy"].values():
            run["val_accuracy"] = 1 - run["val_accuracy"]
    e, _ = bench.fidelity(bench.Truth.from_dict(table), "proxy")
    assert e.value == -1.0
    assert bench.fidelity(bench.Truth.from_dict(table), "confirm")[0].value == 1.0
