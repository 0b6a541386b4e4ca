"""Under faults and concurrency: nothing computed is lost, mislabelled, or left running.

Weights that cannot be written, a stale queue of another --seeds, two processes picking a seed at
once, SIGTERM to a worker and to a pool, a database that goes away. Processes started here are
killed in a ``finally`` (see :func:`reap`).
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from nas.search.attrs import config_key, display_state, is_trained_proxy, retried_from
from nas.search.objective import claim_seed
from nas.search.records import trial_record
from nas.search.storage import load, open_storage, storage_error
from nas.search.study import (
    STALE,
    SearchSettings,
    create_or_load,
    drop_queue,
    enqueue_grid,
    grid_key,
)
from nas.search.workers import ORPHAN_GRACE, Terminated, _lost_worker, run_worker
from tests.helpers import (
    ROOT,
    TRAIN,
    WORKER,
    cli_env,
    reap,
    run_cli,
    sqlite,
    start_cli,
    tiny_space,
    toy_data,
)

SETTINGS = {"pruner": "none", "latency": False}


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group is left (zombies aside)."""
    try:
        out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    except FileNotFoundError:
        os.killpg(pgid, 0)
        return True
    return any(s and not s.startswith("Z") for s in out.stdout.split())


# ------------------------------------------------------------------ 1. weights are an extra


def _read_only_folder(runs: Path, request: pytest.FixtureRequest) -> Path:
    """``runs`` made a folder that cannot be written, by root too; the path to use for it.

    Mode bits do not stop root (CI runs as root), the immutable attribute does (``chattr +i``,
    removed again at teardown). Where the file system refuses the attribute, ``runs`` lies under
    a regular file, so that creating it fails (ENOTDIR) for anyone.
    """
    runs.mkdir()
    if os.geteuid() != 0:
        runs.chmod(0o555)
        return runs
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(runs)], capture_output=True).returncode == 0:
        request.addfinalizer(lambda: subprocess.run([chattr, "-i", str(runs)], check=True))
        return runs
    runs.rmdir()
    runs.write_text("a file where the runs folder's parent should be")
    return runs / "runs"


def _unwritable(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Path:
    if how == "disk full":
        import torch

        def full(*_a, **_k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(torch, "save", full)
        return tmp_path / "runs"
    if how == "name too long":
        return tmp_path / ("r" * 300)
    runs = _read_only_folder(tmp_path / "runs", request)
    with pytest.raises(OSError):  # the premise: nothing can be made in it
        (runs / "probe").mkdir(parents=True)
    return runs


@pytest.mark.parametrize("how", ["disk full", "name too long", "read-only runs"])
def test_unwritable_weights_keep_the_trained_trial(
    tmp_path: Path,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    runs = _unwritable(tmp_path, how, monkeypatch, request)
    settings = SearchSettings(tiny_space(), study="w", runs_dir=runs, **SETTINGS)
    report = run_worker(settings, toy_data(), TRAIN, 3, storage=sqlite(tmp_path))
    study = load("w", sqlite(tmp_path))
    assert report.trials == 3
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        rec = trial_record(t, "w")
        assert rec["weights"] is None and rec["val_accuracy"] is not None
        assert rec["weights_error"] and ("Error" in rec["weights_error"])
    assert capsys.readouterr().err.count("weights were not saved") == 1  # warned once


# ---------------------------------------------------------- 2. a stale queue of other --seeds


def test_stale_queue_of_other_seeds_is_dropped_not_trained(tmp_path: Path) -> None:
    from nas.search.space import SpecGrid

    url = sqlite(tmp_path)
    space = tiny_space()
    grid = SpecGrid(tuple(c.spec for c in space.family())[:2])
    study = create_or_load(open_storage(url), SearchSettings(grid, study="g", **SETTINGS))
    assert enqueue_grid(study, grid, range(50)) == 100  # an interrupted `--seeds 50`
    wanted = {grid_key(t) for t in study.trials if t.user_attrs["seed"] == 0}
    assert drop_queue(open_storage(url), "g", lambda t: grid_key(t) in wanted, STALE) == 98
    ts = load("g", url).trials
    assert [t.state for t in ts].count(TrialState.WAITING) == 2
    stale = [t for t in ts if t.state != TrialState.WAITING]
    assert all(display_state(t) == "surplus" and not is_trained_proxy(t) for t in stale)
    # The next worker trains the current grid only: seed 0 of each spec.
    report = run_worker(
        SearchSettings(grid, study="g", **SETTINGS), toy_data(), TRAIN, 2, storage=url
    )
    trained = [t for t in load("g", url).trials if is_trained_proxy(t)]
    assert report.trials == 2 and sorted(t.user_attrs["seed"] for t in trained) == [0, 0]


def test_study_drop_cli(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    study = optuna.create_study(study_name="old", storage=url)
    for i in range(3):
        study.enqueue_trial({"x": i})

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_cli("study", "drop", *args, "--storage", url, timeout=120)

    res = cli("old")
    assert res.returncode == 2 and "--yes" in res.stderr and len(res.stderr.splitlines()) == 1
    res = cli("old", "--queue-only")
    assert res.returncode == 0 and "withdrew 3 queued trials" in res.stdout
    assert [display_state(t) for t in load("old", url).trials] == ["surplus"] * 3
    res = cli("old", "--yes")
    assert res.returncode == 0 and "deleted study 'old' and its 3 trials" in res.stdout
    for args in (("old", "--yes"), ("old",)):  # gone: said so, with or without --yes
        res = cli(*args)
        assert res.returncode == 2 and "no study 'old' in" in res.stderr, res.stderr
        assert len(res.stderr.splitlines()) == 1, res.stderr


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--seeds", "1000000"], "--seeds must be a positive integer up to 1,000"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_seeds_are_bounded(args: list[str], expect: str, tmp_path: Path) -> None:
    import studies

    grid = next(d for d in studies.definitions() if d.is_grid)
    cmd = ["study", "run", grid.name, *args, "--storage", sqlite(tmp_path)]
    res = run_cli(*cmd, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and expect in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "study.db").exists() or not load_names(sqlite(tmp_path))


def load_names(url: str) -> list[str]:
    return [s.study_name for s in open_storage(url).get_all_studies()]


# ------------------------------------------------------ 3. one seed per (config, seed), atomically

SPEC = tiny_space().family()[0].spec


def _claimer(url: str, name: str, rounds: int, barrier: object) -> None:
    """Ask and claim ``rounds`` seeds of one config, in step with the other processes."""
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    for _ in range(rounds):
        barrier.wait(timeout=120)  # type: ignore[attr-defined]
        claim_seed(study.ask(), SPEC, {}, 0)  # the trials stay running: every one holds a seed


def race(url: str, procs: int, rounds: int, name: str = "race") -> list[int]:
    """The seeds that ``procs`` processes claimed for one config in ``rounds`` rounds."""
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    ps = [ctx.Process(target=_claimer, args=(url, name, rounds, barrier)) for _ in range(procs)]
    try:
        for p in ps:
            p.start()
        for p in ps:
            p.join(timeout=300)
        assert [p.exitcode for p in ps] == [0] * procs
    finally:
        for p in ps:
            if p.is_alive():
                p.kill()
                p.join()
    ts = load(name, url).trials
    me = config_key(SPEC, {})
    assert all(config_key(t.user_attrs["spec"], t.user_attrs.get("hparams")) == me for t in ts)
    return sorted(t.user_attrs["seed"] for t in ts)


def test_two_processes_never_pick_the_same_seed(tmp_path: Path) -> None:
    seeds = race(sqlite(tmp_path), procs=2, rounds=12)
    assert seeds == list(range(24))  # each seed once, none skipped for good


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("RESNEXT_NAS_TEST_POSTGRES") and not os.environ.get("CI"),
    reason="RESNEXT_NAS_TEST_POSTGRES unset",
)
def test_processes_never_pick_the_same_seed_on_postgres() -> None:
    import uuid

    url = os.environ.get("RESNEXT_NAS_TEST_POSTGRES")
    assert url, 'CI must start PostgreSQL: eval "$(scripts/start_postgres.sh)"'
    name = f"race-{uuid.uuid4().hex[:8]}"  # one database holds many studies
    try:
        assert race(url, procs=4, rounds=6, name=name) == list(range(24))
    finally:
        optuna.delete_study(study_name=name, storage=url)


# -------------------------------------------------------------------- 4. SIGTERM and Ctrl-C

POOL = """
import sys
from tests.helpers import toy_data, tiny_space, KILL_IMAGES, KILL_TRAIN
from nas.search.study import SearchSettings
from nas.search.workers import run_search
settings = SearchSettings(tiny_space(), study="t", pruner="none", latency=False)
run_search(settings, toy_data(KILL_IMAGES), KILL_TRAIN, 20, storage=sys.argv[1], workers=2,
           heartbeat=1)
"""


def _wait_running(
    url: str, n: int, name: str = "t", timeout: float = 300
) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, heartbeat=1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            ts = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:
            continue
        running = [t for t in ts if t.state == TrialState.RUNNING and t.user_attrs.get("curve")]
        if len(running) >= n:
            return running
    raise AssertionError(f"{n} trials never ran at once")


def _start(script: str, url: str) -> subprocess.Popen:
    """Run ``script`` with ``url`` in a new session (so that :func:`reap` finds its children)."""
    cmd = [sys.executable, "-c", script, url]
    return subprocess.Popen(cmd, cwd=ROOT, env=cli_env(), start_new_session=True)


def test_sigterm_stops_a_pool_and_requeues_its_trials(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    proc = _start(POOL, url)
    try:
        running = _wait_running(url, 2)
        os.kill(proc.pid, signal.SIGTERM)  # the parent only, as `kill PID` does
        proc.wait(timeout=90)
        time.sleep(1)
        assert not group_alive(proc.pid), "a worker outlived its pool"
    finally:
        reap(proc)
    ts = {t.number: t for t in load("t", url).trials}
    assert not [t for t in ts.values() if t.state == TrialState.RUNNING]
    assert sum(is_trained_proxy(t) for t in ts.values()) < 20  # stopped, not finished on their own
    for victim in running:
        t = ts[victim.number]
        assert t.state == TrialState.FAIL and trial_record(t, "t")["note"] == "interrupted"
        retries = [r for r in ts.values() if retried_from(r) == t.number]
        assert [r.state for r in retries] == [TrialState.WAITING]


def test_sigterm_to_one_worker_requeues_its_trial(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    proc = _start(WORKER, url)
    try:
        (victim,) = _wait_running(url, 1, name="k")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=90) != 0
    finally:
        reap(proc)
    ts = {t.number: t for t in load("k", url).trials}
    assert ts[victim.number].state == TrialState.FAIL
    assert trial_record(ts[victim.number], "k")["note"] == "interrupted"
    (retry,) = [t for t in ts.values() if retried_from(t) == victim.number]
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs["seed"] == victim.user_attrs["seed"]


# ------------------------------------------------- 4b. a search's processes end together

# 512 images of 16x16, epochs of about 0.3 s a worker on 2 cores, and 1 s heartbeats: a killed
# worker's trial goes stale 3 s later and is retried.
CLI_SEARCH = ["search", "--workers", "2", "--train-images", "512", "--resolution", "16"]
CLI_SEARCH += ["--depths", "1,1,1", "--widths", "16", "--flops", "1e6", "--tolerance", "0.2"]
CLI_SEARCH += ["--no-latency", "--confirm", "0", "--pruner", "none", "--heartbeat", "1"]
CLI_SEARCH += ["--no-save-weights", "--quiet", "--study", "t"]


def _search(tmp_path: Path, trials: int, epochs: int) -> tuple[subprocess.Popen, str]:
    """``resnext-nas search`` in a new session (its process group is its own); its storage."""
    url = sqlite(tmp_path)
    args = [*CLI_SEARCH, "--storage", url, "--trials", str(trials), "--epochs", str(epochs)]
    with open(tmp_path / "stderr", "wb") as err:
        proc = start_cli(*args, cwd=tmp_path, stderr=err, start_new_session=True)
    return proc, url


def _workers(pid: int) -> list[int]:
    """The pids of the worker processes ``pid`` spawned (its resource tracker left out)."""
    out = subprocess.run(
        ["ps", "-A", "-ww", "-o", "pid=,ppid=,args="], capture_output=True, text=True
    )
    rows = [line.split(None, 2) for line in out.stdout.splitlines()]
    return [int(r[0]) for r in rows if len(r) == 3 and int(r[1]) == pid and "spawn_main" in r[2]]


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while group_alive(pgid):
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_workers_end_with_their_search(sig: signal.Signals, tmp_path: Path) -> None:
    # kill -9 of the parent, or SIGHUP (a closed terminal) to it alone: no worker trains on.
    proc, url = _search(tmp_path, trials=40, epochs=400)  # long trials: none ends on its own
    try:
        running = _wait_running(url, 2)
        assert len(_workers(proc.pid)) == 2
        os.kill(proc.pid, sig)
        assert _gone_within(proc.pid, 20), "a worker outlived its search"
        rc = proc.wait(timeout=10)
    finally:
        reap(proc)
    err = (tmp_path / "stderr").read_text()
    if sig == signal.SIGHUP:
        assert rc == 128 + signal.SIGHUP and err.split() == ["hung", "up"], err
    ts = {t.number: t for t in load("t", url).trials}
    assert not [t for t in ts.values() if t.state == TrialState.RUNNING]
    assert sum(is_trained_proxy(t) for t in ts.values()) < 40  # stopped, not finished on their own
    for victim in running:  # each worker failed its trial and queued it again
        t = ts[victim.number]
        assert t.state == TrialState.FAIL and trial_record(t, "t")["note"] == "interrupted"
        retries = [r for r in ts.values() if retried_from(r) == t.number]
        assert [r.state for r in retries] == [TrialState.WAITING]


ORPHAN = """
import multiprocessing as mp
import signal
import time

from nas.search.workers import _die_with_parent


def child():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker stuck on its way out
    _die_with_parent()
    time.sleep(600)


if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child)
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
"""


def test_an_orphan_that_ignores_sigterm_exits_all_the_same(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    cmd = [sys.executable, str(script)]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout and int(proc.stdout.readline())  # the child is started
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert group_alive(proc.pid)  # the premise: the orphan is still there
        assert _gone_within(proc.pid, ORPHAN_GRACE + 10), "the orphan never exited"
    finally:
        reap(proc)


def test_a_killed_worker_is_one_line_and_its_trial_retried(tmp_path: Path) -> None:
    proc, url = _search(tmp_path, trials=2, epochs=12)
    try:
        running = _wait_running(url, 2)
        assert all(len(t.user_attrs["curve"]) <= 6 for t in running)  # the kill lands mid-trial
        victim_pid = min(_workers(proc.pid))
        os.kill(victim_pid, signal.SIGKILL)
        rc = proc.wait(timeout=120)
    finally:
        reap(proc)
    err = (tmp_path / "stderr").read_text()
    ts = load("t", url).trials
    (lost,) = [t for t in ts if t.state == TrialState.FAIL]
    (retry,) = [t for t in ts if retried_from(t) == lost.number]
    assert rc == 0, err  # the other worker finished the study: a warning, not an error
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    said = re.match(
        rf"warning: worker ([01]) \(pid {victim_pid}\) died \(killed by SIGKILL\) ", err
    )
    assert said, err
    assert f"during trial {lost.number}: its heartbeat stopped" in err
    other = 1 - int(said[1])
    assert f"retried as trial {retry.number}, which completed; worker {other} finished" in err
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert sum(is_trained_proxy(t) for t in ts) == 2 and len(ts) == 3  # every trial accounted for


def _frozen(number: int, state: TrialState, retry_of: int | None = None) -> FrozenTrial:
    t = optuna.trial.create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        system_attrs=None if retry_of is None else {"failed_trial": retry_of},
    )
    t.number = number
    return t


F, R, C, W = TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE, TrialState.WAITING


@pytest.mark.parametrize(
    ("number", "trials", "says"),
    [
        (None, [], "before its first trial"),
        (3, [_frozen(3, R)], "during trial 3, still marked running: the next run fails it once"),
        (3, [_frozen(3, C)], "after its trial 3 ended; no trial was lost"),
        (3, [_frozen(3, F), _frozen(5, W, 3)], "retried as trial 5, which waits in the queue"),
        (3, [_frozen(3, F), _frozen(4, F, 2)], "during trial 3, which failed and is not retried"),
    ],
)
def test_a_lost_worker_is_described_by_its_trial_as_stored(
    number: int | None, trials: list[FrozenTrial], says: str
) -> None:
    line = _lost_worker(1, 42, -signal.SIGKILL, number, trials)
    assert line.startswith("worker 1 (pid 42) died (killed by SIGKILL) ") and says in line
    assert "(exit code 1)" in _lost_worker(0, 7, 1, None, [])


def test_an_interrupt_in_optunas_bookkeeping_stops_the_worker_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM during Optuna's tell, after the trial: Optuna's clean-up then fails on a variable
    # never set, and the worker died of that UnboundLocalError with a traceback.
    import optuna.study._optimize as optimize

    def tell(**_kw: object) -> None:
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(optimize, "_tell_with_warning", tell)
    settings = SearchSettings(tiny_space(), study="b", **SETTINGS)
    with pytest.raises(Terminated):
        run_worker(settings, toy_data(), TRAIN, 1, storage=sqlite(tmp_path))


# ---------------------------------------------------------------- 5. the database goes away


def _lost_connection() -> Exception:
    """An OperationalError as psycopg2 raises it, then Optuna's clean-up failing on top."""
    orig = Exception("server closed the connection unexpectedly\n\tThis probably means ...")
    try:
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE trials ...", {}, orig)
        except sqlalchemy.exc.OperationalError:
            raise UnboundLocalError("cannot access local variable 'frozen_trial'")  # noqa: B904
    except UnboundLocalError as e:
        return e


def test_storage_error_is_one_line() -> None:
    msg = storage_error(_lost_connection())
    assert msg is not None and "\n" not in msg
    assert "server closed the connection unexpectedly" in msg and "run the same command" in msg
    assert storage_error(UnboundLocalError("x")) is None
    assert storage_error(KeyError("spec")) is None


def test_a_heartbeat_lost_to_an_outage_is_skipped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Raised in Optuna's heartbeat thread, the error printed a thread's traceback beside the
    # worker's one line, and no beat followed even once the server was back.
    storage = open_storage(sqlite(tmp_path), heartbeat=1)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "hb")
    trial_id = storage.create_new_trial(study_id)
    storage.record_heartbeat(trial_id)  # a real beat first
    errors = iter([_lost_connection(), KeyError("a bug, not an outage")])

    def beat(self, _trial_id: int) -> None:
        raise next(errors)

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", beat)
    storage.record_heartbeat(trial_id)  # the outage: skipped
    with pytest.raises(KeyError):
        storage.record_heartbeat(trial_id)  # anything else still raises


def test_database_lost_mid_search_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import cli
    from nas.search import workers

    def gone(*_a, **_k):
        raise _lost_connection()

    monkeypatch.setattr(workers, "run_search", gone)
    monkeypatch.chdir(tmp_path)
    args = ["search", "--trials", "1", "--train-images", "64", "--storage", sqlite(tmp_path)]
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--quiet", "--no-save-weights"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    # Notes about the data (a raised validation split) may come first; the failure is one line.
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: the study database cannot be reached or written"), err
