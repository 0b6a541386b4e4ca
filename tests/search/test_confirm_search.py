"""The confirmation phase of a tiny real search: phases, epochs, counts, resume, answer, export."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import cli
from nas.search.attrs import CONFIRM, SEARCH, is_trained_proxy
from nas.search.confirm import ConfirmSettings, confirmed, plan, recommendation
from nas.search.storage import load
from nas.search.study import SearchSettings
from nas.search.workers import run_search, run_worker
from tests.helpers import RES, TRAIN, sqlite, tiny_space, toy_data

CONFIRM_2 = ConfirmSettings(k=2, seeds=2, max_seeds=2)  # 4 confirmation trials, no racing


def settings(name: str, confirm: ConfirmSettings | None = CONFIRM_2) -> SearchSettings:
    # Hyperband prunes proxy trials of several epochs; a confirmation trial must never be.
    return SearchSettings(
        tiny_space(), study=name, pruner="median", latency=False, confirm=confirm, seed=1
    )


def confirm_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get("phase") == CONFIRM]


def test_search_ends_with_confirmation_trials_apart_from_the_count(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    run_search(settings("s"), toy_data(), TRAIN, 4, storage=url)
    study = load("s", url)
    proxy = [t for t in study.trials if is_trained_proxy(t)]
    assert len(proxy) == 4 and all(t.user_attrs["phase"] == SEARCH for t in proxy)
    done = [t for t in confirm_trials(study) if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # k=2 configurations x 2 seeds
    assert not any(is_trained_proxy(t) for t in done)
    for t in done:
        # 3 x the trial's 1 epoch, all of them trained: never pruned, no pruner reports.
        assert len(t.user_attrs["curve"]) == CONFIRM_2.confirm_epochs(TRAIN.epochs) == 3
        assert t.intermediate_values == {}
    assert {(t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in done} == {
        (k, s) for k in {t.user_attrs["confirm_of"] for t in done} for s in (0, 1)
    }
    assert plan(study.trials, CONFIRM_2) == []
    assert study.user_attrs["confirm"] == CONFIRM_2.to_dict()
    # Resuming a finished study trains nothing in either phase.
    (report,) = run_search(settings("s"), toy_data(), TRAIN, 4, storage=url)
    assert (report.trials, report.confirm_trials) == (0, 0)


def test_interrupted_confirmation_resumes_training_each_point_once(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    s = settings("r")
    data = toy_data()

    def interrupt_second_confirmation(worker: int, ev: dict) -> None:
        finished = [t for t in confirm_trials(load("r", url)) if t.state == TrialState.COMPLETE]
        if finished and ev.get("epochs") == 3:  # an epoch's event, not a trial's end
            raise KeyboardInterrupt  # Ctrl-C in a confirmation trial, after one is complete

    with pytest.raises(KeyboardInterrupt):
        run_worker(s, data, TRAIN, 3, storage=url, progress=interrupt_second_confirmation)
    study = load("r", url)
    assert sum(t.state == TrialState.COMPLETE for t in confirm_trials(study)) == 1
    # The interrupted trial failed and its retry waits, with its point (like a heartbeat retry).
    (failed,) = [t for t in confirm_trials(study) if t.state == TrialState.FAIL]
    run_worker(s, data, TRAIN, 3, storage=url)
    study = load("r", url)
    done = [t for t in confirm_trials(study) if t.state == TrialState.COMPLETE]
    points = [(t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in done]
    assert len(points) == len(set(points)) == 4  # every point trained exactly once
    assert (failed.user_attrs["confirm_of"], failed.user_attrs["seed"]) in points
    assert sum(is_trained_proxy(t) for t in study.trials) == 3


def test_a_duplicate_confirmation_point_is_surplus(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    run_search(settings("d"), toy_data(), TRAIN, 3, storage=url)
    study = load("d", url)
    first = next(t for t in confirm_trials(study) if t.state == TrialState.COMPLETE)
    # A second worker that planned at the same moment queued the same point again.
    point = {k: first.user_attrs[k] for k in ("phase", "seed", "confirm_of", "enqueued")}
    study.enqueue_trial(first.params, user_attrs=point)
    run_worker(settings("d"), toy_data(), TRAIN, 3, storage=url)
    last = load("d", url).trials[-1]
    assert last.user_attrs.get("surplus") is True and "curve" not in last.user_attrs


def _search_args(url: str, study: str, *extra: str) -> list[str]:
    return [
        "search", "--trials", "3", "--epochs", "1", "--resolution", str(RES),
        "--depths", "1,1,1", "--depths", "2,1,1", "--widths", "16", "--flops", "2.5e5",
        "--tolerance", "0.2", "--no-latency", "--pruner", "none", "--study", study,
        "--storage", url, "--json", "--quiet", *extra,
    ]  # fmt: skip


def run_main(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    cli.main(args)
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def toy_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the CLI in ``tmp_path`` on the toy set; returns the storage URL."""
    import nas.data.loader

    # The toy set stands in for the synthetic one: same shape of Dataset, seconds to train.
    monkeypatch.setattr(nas.data.loader, "load_dataset", lambda *a, **k: toy_data())
    monkeypatch.chdir(tmp_path)
    return sqlite(tmp_path)


def test_search_json_trials_json_and_export_recommended(
    tmp_path: Path, toy_cli: str, capsys: pytest.CaptureFixture
) -> None:
    url = toy_cli
    args = _search_args(url, "c", "--confirm", "2", "--confirm-seeds", "2")
    summary = run_main(args + ["--confirm-max-seeds", "2"], capsys)
    rec = summary["recommendation"]
    study = load("c", url)
    assert rec == recommendation(study.trials)  # the same answer `trials` and the dashboard read
    acc = confirmed(study.trials)
    assert len(acc) == 2 and all(len(v) == 2 for v in acc.values())
    means = {k: sum(v.values()) / 2 for k, v in acc.items()}
    assert sorted([rec["mean_accuracy"], rec["runner_up"]["mean_accuracy"]]) == pytest.approx(
        sorted(means.values())
    )
    # The pooled seed SD by hand: each pair's within SS is (a - b)^2 / 2, one df a pair.
    ss = sum((v[0] - v[1]) ** 2 / 2 for v in acc.values())
    if ss > 0:
        assert rec["noise_sd"] == pytest.approx((ss / 2) ** 0.5) and rec["noise_df"] == 2
    assert rec["verdict"] in ("best", "equivalent", "no-signal") and rec["reason"]
    assert rec["chance"] == pytest.approx(1 / 10)
    low, high = rec["ci95"]
    assert low is None or 0 <= low <= high <= 1
    if rec["verdict"] == "best":
        assert rec["lead_low"] > 0 and rec["p_best"] > 0.5
    elif rec["verdict"] == "equivalent":  # the cheaper of the contenders
        assert rec["flops"] == min(r["flops"] for r in rec["confirmed"] if r["contender"])
    assert rec["seeds"] == 2
    # Every trial records the held-out images that scored it; the answer says them.
    scored = {
        t.user_attrs["val_images"] for t in study.trials if t.user_attrs.get("phase") == CONFIRM
    }
    assert len(scored) == 1 and rec["val_images"] == sorted(scored) and min(scored) > 0
    assert rec["runs"] == 4
    assert {"spec", "notation", "flops", "params"} <= rec.keys()
    assert summary["phases"] == {SEARCH: 3, CONFIRM: 4}
    cli.main(["trials", "--study", "c", "--storage", url, "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert listed["recommendation"] == rec
    assert sorted(r["phase"] for r in listed["trials"]).count(CONFIRM) == 4
    cli.main(["trials", "--study", "c", "--storage", url])
    table = capsys.readouterr().out
    assert "recommended: " + rec["notation"] in table and CONFIRM in table
    cli.main(["export", "--study", "c", "--storage", url, "--recommended", "--no-onnx"])
    capsys.readouterr()
    (folder,) = (tmp_path / "runs").glob("export-c-trial-*")
    exported = json.loads((folder / "spec.json").read_text())
    # The seed closest to the configuration's mean stands for it: of two seeds both are, and
    # the earlier is taken (not the better of the two).
    picked = min(
        (t for t in confirm_trials(study) if t.user_attrs["spec"] == rec["spec"]),
        key=lambda t: t.number,
    )
    assert exported["trial"] == picked.number and exported["spec"] == rec["spec"]


def test_confirm_0_gives_no_confirmation_and_no_answer(
    toy_cli: str, capsys: pytest.CaptureFixture
) -> None:
    url = toy_cli
    summary = run_main(_search_args(url, "z", "--confirm", "0"), capsys)
    assert summary["recommendation"] is None and summary["phases"] == {SEARCH: 3}
    assert confirm_trials(load("z", url)) == []
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--study", "z", "--storage", url, "--recommended", "--no-onnx"])
    assert e.value.code == 2
    assert "no confirmed configuration" in capsys.readouterr().err
    # Confirmation is off, not pending: no "yet".
    cli.main(["trials", "--study", "z", "--storage", url])
    listed = capsys.readouterr().out
    assert "confirmation is off (search --confirm 0)" in listed and " yet" not in listed


def test_search_progress_is_a_line_a_trial_when_piped_and_none_when_quiet(
    toy_cli: str, capsys: pytest.CaptureFixture
) -> None:
    url = toy_cli
    args = [a for a in _search_args(url, "p", "--confirm", "0") if a not in ("--json", "--quiet")]
    cli.main(args)
    err = capsys.readouterr().err.splitlines()
    status = [ln for ln in err if ln.startswith("search ")]
    # A first line, then one a finished trial (capsys is no terminal: no bars, no epochs).
    assert [ln.split(";")[0] for ln in status] == [f"search {i}/3 trials" for i in range(4)]
    assert "ETA after the first epoch" in status[0] and "ETA 0s" in status[-1]
    assert "best single proxy trial so far: #" in status[-1]
    assert not any(ln.startswith("worker ") for ln in err)
    quiet = [a for a in _search_args(url, "q", "--confirm", "0") if a != "--json"]
    cli.main(quiet)  # --quiet: no progress at all
    assert not any(ln.startswith("search ") for ln in capsys.readouterr().err.splitlines())


def test_bad_confirm_options_are_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["search", "--confirm-seeds", "4", "--confirm-max-seeds", "2", "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--confirm-max-seeds" in err


def test_confirmation_epochs_follow_the_option(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    s = settings("e", ConfirmSettings(k=1, epochs=2, seeds=1, max_seeds=1))
    run_search(s, toy_data(), replace(TRAIN, epochs=1), 2, storage=url)
    (t,) = confirm_trials(load("e", url))
    assert len(t.user_attrs["curve"]) == 2 and t.state == TrialState.COMPLETE


def _worker_process(name: str, url: str, barrier: object, poll: float) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    run_worker(settings(name), toy_data(), TRAIN, 3, storage=url, poll=poll)


# One round in the default suite; five in a row with the slow tier (each spawns two workers).
@pytest.mark.parametrize(
    "round_", [0, *(pytest.param(r, marks=pytest.mark.slow) for r in range(1, 5))]
)
def test_two_processes_share_one_confirmation(tmp_path: Path, round_: int) -> None:
    """Two processes reach the confirmation together: each point is trained once, by one."""
    import multiprocessing

    url = sqlite(tmp_path)
    # The proxy trials first, without confirmation; then two workers confirm at once.
    run_search(settings("two", ConfirmSettings(k=0)), toy_data(), TRAIN, 3, storage=url)
    # spawn, not fork: a forked child of a process whose OpenMP pool is running hangs in torch.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker_process, args=("two", url, barrier, 0.01)) for _ in "ab"]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    trials = confirm_trials(load("two", url))
    trained = [
        (t.user_attrs["confirm_of"], t.user_attrs["seed"])
        for t in trials
        if "curve" in t.user_attrs
    ]
    assert len(trained) == len(set(trained)) == 4, trained
    assert len(confirmed(trials)) == 2
