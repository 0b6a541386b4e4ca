"""PostgreSQL: one study, two worker processes, one database: every trial runs exactly once;
and a server stopped in the middle of a study (issue 12): one line, then a resume once it is back.

Runs when ``RESNEXT_NAS_TEST_POSTGRES`` holds a PostgreSQL URL, e.g. after
``eval "$(scripts/start_postgres.sh)"``, and always under CI. The stop test starts a throwaway
cluster of its own with the same script, so that stopping it leaves the shared server alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from nas.records import config_key, counts, study_rows
from nas.storage import load, open_storage
from nas.study import SearchSettings
from nas.workers import run_search
from tests.test_faults import reap
from tests.test_search import ROOT, TRAIN, tiny_space, toy_data

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
        trained = [t for t in study.trials if counts(t)]
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


@pytest.fixture
def own_server() -> Iterator[SimpleNamespace]:
    """A throwaway cluster (scripts/start_postgres.sh in a folder of its own): ``start()`` starts
    it, again after a stop at the same URL, and returns that URL; ``stop()`` is ``pg_ctl stop -m
    fast``."""
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
        yield SimpleNamespace(start=start, stop=lambda: script("stop"))
    finally:
        script("stop")
        shutil.rmtree(folder, ignore_errors=True)


N_TRIALS = 10
# Trials of a second or two: 1 epoch of 64 synthetic 8x8 images on the tiny space of test_search.
SEARCH = [
    "search", "--trials", str(N_TRIALS), "--epochs", "1", "--dataset", "synthetic",
    "--train-images", "64", "--resolution", "8", "--depths", "1,1,1", "--depths", "2,1,1",
    "--widths", "16", "--flops", "2.5e5", "--tolerance", "0.2", "--no-latency", "--pruner",
    "none", "--no-save-weights", "--confirm", "0", "--heartbeat", "1", "--quiet",
    "--study", "outage",
]  # fmt: skip


def _done(storage: optuna.storages.RDBStorage) -> tuple[list[optuna.trial.FrozenTrial], bool]:
    """The study's trained trials and whether one is training now; ([], False) before it exists."""
    try:
        ts = optuna.load_study(study_name="outage", storage=storage).get_trials()
    except KeyError:
        return [], False
    return [t for t in ts if counts(t)], any(t.state == TrialState.RUNNING for t in ts)


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
    cmd = [sys.executable, str(ROOT / "cli.py"), *SEARCH, "--storage", url]
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
    (line,) = err.splitlines()
    assert line.startswith("error: the study database cannot be reached or written ("), line
    assert line.endswith("run the same command again once it is back"), line

    assert own_server.start() == url  # the same server at the same address
    before = _snapshot(_done(storage)[0])  # its pool reconnects (pre-ping)
    assert before.keys() >= {t.number for t in done}
    res = subprocess.run(cmd, **run)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    study = load("outage", url)
    trained = [t for t in study.trials if counts(t)]
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
