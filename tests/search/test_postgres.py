"""PostgreSQL: one study, two worker processes, one database: every trial runs exactly once;
a server stopped in the middle of a study: one line, then a resume once it is back;
and a frozen server (every process SIGSTOPped: it accepts TCP and answers nothing): a search ends
in one line after RESNEXT_NAS_DB_TIMEOUT, SIGTERM ends it at once, the dashboard answers 503.

Runs when ``RESNEXT_NAS_TEST_POSTGRES`` holds a PostgreSQL URL, e.g. after
``eval "$(scripts/start_postgres.sh)"``, and always under CI. The stop test starts a throwaway
cluster of its own with the same script, so that stopping it leaves the shared server alone; the
freeze tests share another, continued (SIGCONT) whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import deadline
from nas.search.attrs import config_key, is_trained_proxy
from nas.search.records import study_rows
from nas.search.storage import load, open_storage
from nas.search.study import SearchSettings
from nas.search.workers import run_search
from tests.helpers import CLI, ROOT, TRAIN, reap, tiny_space, toy_data
from tests.synthetic import synthetic_trials

URL = os.environ.get("RESNEXT_NAS_TEST_POSTGRES")
pytestmark = [
    pytest.mark.postgres,
    # Off CI a developer without a server may skip; under CI (.ci/run starts one) it must run.
    pytest.mark.skipif(
        not URL and not os.environ.get("CI"), reason="RESNEXT_NAS_TEST_POSTGRES is not set"
    ),
]


def test_two_workers_share_one_postgres_study() -> None:
    assert URL, 'CI must start PostgreSQL: eval "$(scripts/start_postgres.sh)" (see .ci/run)'
    name = f"pg-{uuid.uuid4().hex[:8]}"
    settings = SearchSettings(tiny_space(), study=name, pruner="none", latency=False)
    try:
        reports = run_search(settings, toy_data(), TRAIN, 6, storage=URL, workers=2)
        study = load(name, URL)
        assert [t.state for t in study.trials].count(TrialState.FAIL) == 0
        trained = [t for t in study.trials if is_trained_proxy(t)]
        assert len(trained) == 6  # the study-wide count, not 6 per worker
        assert sum(r.trials for r in reports) == 6
        assert all(r.trials >= 1 for r in reports)
        # Each trained trial ran once: one start, one end, one full curve.
        assert len({t.number for t in trained}) == 6
        assert all(len(t.user_attrs["curve"]) == TRAIN.epochs for t in trained)
        # A third run of the same command is a resume that trains nothing.
        assert run_search(settings, toy_data(), TRAIN, 6, storage=URL)[0].trials == 0
        assert any(r["name"] == name for r in study_rows(URL))
    finally:
        optuna.delete_study(study_name=name, storage=URL)


# ------------------------------------------------------------- the server stops mid-study


@contextmanager
def _cluster() -> Iterator[SimpleNamespace]:
    """A throwaway cluster (scripts/start_postgres.sh in a folder of its own): ``start()`` starts
    it, again after a stop at the same URL, and returns that URL; ``stop()`` is ``pg_ctl stop -m
    fast``; ``folder`` holds it."""
    # Not under pytest's tmp_path: its folders are private to us, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="resnext-nas-pg-"))
    env = {**os.environ, "RESNEXT_NAS_PG_DIR": str(folder)}

    def script(*args: str) -> str:
        cmd = ["bash", str(ROOT / "scripts" / "start_postgres.sh"), *args]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def start() -> str:
        line = script().strip()  # export RESNEXT_NAS_TEST_POSTGRES=<url>
        assert line.startswith("export RESNEXT_NAS_TEST_POSTGRES=postgresql://"), line
        return line.split("=", 1)[1]

    try:
        yield SimpleNamespace(start=start, stop=lambda: script("stop"), folder=folder)
    finally:
        script("stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_server() -> Iterator[SimpleNamespace]:
    """A throwaway cluster of this test's own (see :func:`_cluster`)."""
    with _cluster() as server:
        yield server


N_TRIALS = 10
# Trials of a second or two: 1 epoch of 64 synthetic 8x8 images on the tiny space of test_search.
SEARCH = [
    "search", "--trials", str(N_TRIALS), "--epochs", "1", "--dataset", "synthetic",
    "--train-images", "64", "--resolution", "8", "--depths", "1,1,1", "--depths", "2,1,1",
    "--widths", "16", "--flops", "2.5e5", "--tolerance", "0.2", "--no-latency", "--pruner",
    "none", "--no-save-weights", "--confirm", "0", "--heartbeat", "1", "--quiet",
    "--study", "outage",
]  # fmt: skip


def _done(
    storage: optuna.storages.RDBStorage, name: str = "outage"
) -> tuple[list[optuna.trial.FrozenTrial], bool]:
    """The study's trained trials and whether one is training now; ([], False) before it exists."""
    try:
        ts = optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:
        return [], False
    return [t for t in ts if is_trained_proxy(t)], any(t.state == TrialState.RUNNING for t in ts)


def _snapshot(trials: list[optuna.trial.FrozenTrial]) -> dict[int, tuple]:
    return {t.number: (t.state, t.values, t.params, t.user_attrs) for t in trials}


@pytest.mark.slow
def test_server_stopped_mid_study_is_one_line_then_the_same_command_resumes(
    own_server: SimpleNamespace, tmp_path: Path
) -> None:
    url = own_server.start()
    # Our reader makes Optuna's tables before the search starts: two processes creating them at
    # once on PostgreSQL can collide. The search still creates its study itself.
    storage = open_storage(url)
    cmd = [*CLI, *SEARCH, "--storage", url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 600}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        done, running = _done(storage)
        while not (len(done) >= 2 and running):  # mid-study and mid-trial
            assert proc.poll() is None, proc.communicate()  # it ended before the stop
            assert time.time() < deadline, "2 trials never finished while one more trained"
            time.sleep(0.2)
            done, running = _done(storage)
        own_server.stop()
        out, err = proc.communicate(timeout=120)
    finally:
        reap(proc)
    assert len(done) < N_TRIALS
    assert proc.returncode == 2, err
    assert "Traceback" not in out + err, err
    (line,) = [x for x in err.splitlines() if not x.startswith("note: ")]  # data notes first
    assert line.startswith("error: the study database cannot be reached or written ("), line
    assert line.endswith("run the same command again once it is back"), line

    assert own_server.start() == url  # the same server at the same address
    before = _snapshot(_done(storage)[0])  # its pool reconnects (pre-ping)
    assert before.keys() >= {t.number for t in done}
    res = subprocess.run(cmd, **run)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    study = load("outage", url)
    trained = [t for t in study.trials if is_trained_proxy(t)]
    assert len(trained) == N_TRIALS  # exact, study-wide
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    after = _snapshot(trained)
    assert {n: after.get(n) for n in before} == before  # what was done is kept as it was
    runs = Counter(
        (config_key(t.user_attrs["spec"], t.user_attrs.get("hparams")), t.user_attrs["seed"])
        for t in trained
    )
    assert max(runs.values()) == 1, [k for k, v in runs.items() if v > 1]  # nothing twice
    assert all(len(t.user_attrs["curve"]) == 1 for t in trained)


# ------------------------------------------------------------------- a server that is frozen


def test_every_call_goes_through_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # nas.search.deadline bounds psycopg's Connection.wait, which is not public API: this fails if
    # psycopg stops routing a query (and the pool's pre-ping) through it.
    assert URL, 'CI must start PostgreSQL: eval "$(scripts/start_postgres.sh)" (see .ci/run)'
    storage = open_storage(URL)
    conn = storage.engine.raw_connection()
    try:
        assert type(conn.driver_connection).__name__ == "Connection"
        assert hasattr(conn.driver_connection, "server")  # made by nas.search.deadline
    finally:
        conn.close()
    armed: list[float] = []
    arm = deadline.WATCH.arm
    monkeypatch.setattr(deadline.WATCH, "arm", lambda fd, s: armed.append(s) or arm(fd, s))
    storage.get_all_studies()
    assert armed and all(s == deadline.DB_TIMEOUT for s in armed)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "1e9"])
def test_a_bad_db_timeout_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deadline.DB_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=f"^{deadline.DB_TIMEOUT_ENV} must be a number of"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")


@pytest.fixture(scope="module")
def frozen_server() -> Iterator[SimpleNamespace]:
    """A throwaway cluster, started (``url``), for the tests that freeze it with :func:`_frozen`."""
    with _cluster() as server:
        server.url = server.start()
        open_storage(server.url)  # Optuna's tables, before two processes race to make them
        yield server


def _children(ppid: int) -> list[int]:
    """The processes whose parent is ``ppid`` (Linux's /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            kids.append(int(stat.parent.name))
    return kids


@contextmanager
def _frozen(server: SimpleNamespace) -> Iterator[None]:
    """Every process of the cluster stopped (SIGSTOP): a server that accepts TCP and answers
    nothing, as a hung host does; continued (SIGCONT) on leaving, whatever happened."""
    postmaster = int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
    stopped: list[int] = []
    try:
        for pid in [postmaster, *_children(postmaster)]:  # the postmaster first: it forks no more
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def test_opening_a_frozen_server_is_one_line(
    frozen_server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(deadline.DB_TIMEOUT_ENV, "3")
    with _frozen(frozen_server):
        t0 = time.monotonic()
        with pytest.raises(ValueError, match="the database is not answering") as e:
            open_storage(frozen_server.url)
        took = time.monotonic() - t0
    assert "\n" not in str(e.value)
    assert took < 3 + 2, took  # libpq's connect_timeout, at the deadline


def _search_mid_study(url: str, name: str, timeout: float, tmp_path: Path) -> subprocess.Popen:
    """``resnext-nas search`` with ``RESNEXT_NAS_DB_TIMEOUT=timeout``, once a trial has been
    trained and another trains."""
    args = [*SEARCH[:-1], name]
    args[args.index("--trials") + 1] = "500"  # far more than it trains before the freeze
    env = {**os.environ, "PYTHONPATH": str(ROOT), deadline.DB_TIMEOUT_ENV: str(timeout)}
    proc = subprocess.Popen(
        [*CLI, *args, "--storage", url], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    storage = open_storage(url)
    end = time.time() + 120
    done, running = _done(storage, name)
    while not (done and running):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "no trial was trained while another trained"
        time.sleep(0.2)
        done, running = _done(storage, name)
    return proc


def _end_frozen(
    server: SimpleNamespace, proc: subprocess.Popen, signum: int | None = None
) -> tuple[str, str, float]:
    """Freeze the server until ``proc`` ends: its stdout, stderr and seconds from the freeze, or
    from ``signum``, sent once the search waits on the database. Without a deadline, ``proc``
    waits for ever: a minute fails the test."""
    try:
        with _frozen(server):
            if signum is not None:
                time.sleep(3)  # the trial in training ends; the search then waits on the database
                assert proc.poll() is None
                proc.send_signal(signum)
            t0 = time.monotonic()
            out, err = proc.communicate(timeout=60)
            return out, err, time.monotonic() - t0
    finally:
        reap(proc)


def _lines(err: str) -> list[str]:
    """stderr without the data set's note."""
    return [line for line in err.splitlines() if not line.startswith("note: ")]


@pytest.mark.slow
def test_a_frozen_server_ends_a_search_in_one_line(
    frozen_server: SimpleNamespace, tmp_path: Path
) -> None:
    proc = _search_mid_study(frozen_server.url, "frozen", 3, tmp_path)
    out, err, took = _end_frozen(frozen_server, proc)
    assert proc.returncode == 2, err
    assert "Traceback" not in out + err, err
    (line,) = _lines(err)
    assert line.startswith("error: the study database is not answering (no reply in 3 s)"), line
    # One deadline for the call that froze (after the trial in training), then the clean-up's
    # calls fail at once.
    assert took < 12, took


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_ends_a_search_waiting_on_a_frozen_server(
    signum: int, frozen_server: SimpleNamespace, tmp_path: Path
) -> None:
    # A deadline far beyond the test: only the signal can end the search in time.
    proc = _search_mid_study(frozen_server.url, f"frozen-{signum}", 120, tmp_path)
    out, err, took = _end_frozen(frozen_server, proc, signum)
    # The shell's code for the signal (128 + its number), and its word.
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in out + err, err
    assert [line for line in _lines(err) if line] == [word], err
    # The clean-up's calls have ENDING_SECONDS in all (psycopg's cancel request to the frozen
    # server alone took 5 s), then the interpreter exits.
    assert took < 15, took


def _get(url: str) -> tuple[int, str, float]:
    """Status, body and seconds of a GET (a client that waits up to a minute)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=60) as res:
            return res.status, res.read().decode(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), time.monotonic() - t0


@pytest.mark.slow
def test_the_dashboard_answers_503_while_the_server_is_frozen(
    frozen_server: SimpleNamespace,
) -> None:
    url, name = frozen_server.url, f"board-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=url).add_trials(synthetic_trials(3, odd=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT), deadline.DB_TIMEOUT_ENV: "3"}
    cmd = [*CLI, "dashboard", "--study", name, "--storage", url]
    proc = subprocess.Popen(
        [*cmd, "--serve", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    requests = 0
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("serving http://127.0.0.1:"), (line, proc.stderr.read())
        page = line.removeprefix("serving ")
        assert json.loads(_get(page + "state.json")[1])["trials"] == 3
        with _frozen(frozen_server):
            for path in ["state.json", "", "records.json", "state.json"]:
                status, body, took = _get(page + path)
                requests += 1
                assert status == 503, (path, status)
                assert "the study database is not answering (no reply in 3 s)" in body
                assert took < 3 + 2, (path, took)  # one deadline at most
        end = time.monotonic() + deadline.SILENT_SECONDS + 10
        while (status := _get(page + "state.json")[0]) != 200 and time.monotonic() < end:
            requests += 1
            time.sleep(0.5)
        assert status == 200  # back, it serves again
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            reap(proc)
    assert "Traceback" not in err, err
    assert len(err.splitlines()) <= requests, err  # at most a line a request
