"""scripts/ground_truth.py and benchmarks/bench_search_quality.py on a tiny toy band."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nas.training.config import DEFAULT_TRIAL
from tests.helpers import ROOT, toy_data


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


BAND = [
    "--dataset", "toy", "--flops", "2.5e5", "--tolerance", "0.2", "--depths", "1,1,1",
    "--widths", "16", "--max-configs", "3", "--epochs", "1", "--confirm-epochs", "2",
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
         "val_fraction": DEFAULT_TRIAL.val_fraction, "seed": 0, "resolution": None},
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
    # Each run keeps its per-epoch curve, whose best is the run's accuracy.
    for c in again["configs"]:
        for sched, epochs in (("proxy", 1), ("confirm", 2)):
            for run in c[sched].values():
                assert len(run["curve"]) == epochs
                assert max(run["curve"]) == pytest.approx(run["val_accuracy"])
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
    summary = bench.main([*args, "--confirm-max-seeds", "2"])
    truth = np.array(
        [np.mean([v["val_accuracy"] for v in c["confirm"].values()]) for c in again["configs"]]
    )
    possible = {round(100 * (truth.max() - t), 9) for t in truth}
    for name, r in summary["results"].items():
        assert {round(x, 9) for x in r["regrets"]} <= possible, name
        assert r["mean_epochs_used"] <= summary["budget"]
    # The grid proxies every configuration, and all 3 are confirmed with every cached seed:
    # its answer is the true best, every time.
    grid = summary["results"]["grid+confirm"]
    assert (grid["worst_regret"], grid["top2_rate"], grid["cycled_seeds"]) == (0.0, 1.0, 0)
    assert summary["truth"] == "confirm"
    # The table has curves, so the search's pruners are replayed too. With one-epoch proxy
    # trials nothing can be pruned (the last epoch is never pruned): they match tpe+confirm.
    for name in ("tpe+hyperband+confirm", "tpe+median+confirm"):
        assert summary["results"][name]["pruned_trials"] == 0
        assert summary["results"][name]["regrets"] == summary["results"]["tpe+confirm"]["regrets"]

    # Seed counts may grow: truth seeds of their own become the ground truth.
    grown = gt.run([*BAND, "--out", str(out), "--data-dir", "/some/where", "--truth-seeds", "1"])
    assert all(set(c["truth"]) == {"1000"} for c in grown["configs"])
    summary = bench.main([*args, "--confirm-max-seeds", "2"])
    assert summary["truth"] == "truth"
    truth = np.array([c["truth"]["1000"]["val_accuracy"] for c in grown["configs"]])
    possible = {round(100 * (truth.max() - t), 9) for t in truth}
    for name, r in summary["results"].items():
        assert {round(x, 9) for x in r["regrets"]} <= possible, name


def test_pruned_replay_stops_bad_curves_and_spends_what_it_saves() -> None:
    """The median pruner, fed cached 3-epoch curves, stops the trials whose first epochs lie
    under the median; each costs the epochs it ran, and the saved compute buys more trials."""
    bench = load("benchmarks/bench_search_quality.py", "bench_search_quality")
    rng = np.random.default_rng(0)
    configs = []
    for c in range(12):
        quality = c / 12
        runs = {}
        for seed in range(3):
            curve = [0.2 + 0.1 * quality * e + 0.01 * rng.random() for e in (1, 2, 3)]
            runs[str(seed)] = {"val_accuracy": max(curve), "curve": curve}
        spec = {"cardinality": c + 1}
        configs.append(
            {
                "spec": spec,
                "notation": f"{c + 1}x1d",
                "params": {"depths": "1-1-1", "width": 32, "cardinality": c + 1,
                           "bottleneck_width": 1},
                "proxy": runs,
                "confirm": {s: {"val_accuracy": 0.3 + 0.2 * quality} for s in "012"},
            }
        )  # fmt: skip
    truth = bench.Truth(configs, proxy_epochs=3, confirm_epochs=9, curves=True)
    settings = bench.ConfirmSettings(k=2, epochs=9, seeds=2, max_seeds=3)
    budget = 2 * 3 * 9 + 30 * 3
    plain = bench.evaluate(truth, budget, settings, seeds=3)
    median, tpe = plain["tpe+median+confirm"], plain["tpe+confirm"]
    assert median["pruned_trials"] > 0 and tpe["pruned_trials"] == 0
    for r in plain.values():
        assert r["mean_epochs_used"] <= budget
    # Pruned trials cost less than whole ones: the same proxy compute runs more trials.
    assert median["proxy_trials"] > tpe["proxy_trials"] == 30
    # A replay repeats: Hyperband's brackets hash the study name, which is fixed per seed.
    first, again = (bench.evaluate(truth, budget, settings, seeds=8) for _ in range(2))
    for name in ("tpe+hyperband+confirm", "tpe+median+confirm"):
        for key in ("regrets", "pruned_trials", "proxy_trials"):
            assert again[name][key] == first[name][key], (name, key)


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
