"""Processes started at the same instant on a fresh storage: each creates or finds the schema.

Optuna creates its tables, then stamps the schema version, on first open; two processes doing
so at once collide (a table or the version row the other just made). Every one must succeed.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from nas.search.attrs import CONFIRM, is_trained_proxy
from nas.search.storage import load, open_storage
from tests.helpers import run_clis

PROCESSES = 4


def _open(url: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        open_storage(url)
        results.put("ok")  # type: ignore[attr-defined]
    except Exception as e:  # reported to the test, which names it
        results.put(f"{type(e).__name__}: {e}")  # type: ignore[attr-defined]


def _open_at_once(url: str) -> list[str]:
    # fork: the children start in milliseconds, so that they meet at the barrier and race.
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("round_", range(5))
def test_processes_opening_a_fresh_sqlite_file_at_once_all_succeed(
    tmp_path: Path, round_: int
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert _open_at_once(url) == ["ok"] * PROCESSES
    assert open_storage(url).get_all_studies() == []  # one usable, empty schema


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("RESNEXT_NAS_TEST_POSTGRES") and not os.environ.get("CI"),
    reason="RESNEXT_NAS_TEST_POSTGRES is not set",
)
@pytest.mark.parametrize("round_", range(5))
def test_processes_opening_a_fresh_postgres_schema_at_once_all_succeed(round_: int) -> None:
    import sqlalchemy

    base = os.environ["RESNEXT_NAS_TEST_POSTGRES"]
    schema = f"race_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(base)
    with engine.begin() as con:
        con.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = f"{base}?options=-csearch_path%3D{schema}"
        assert _open_at_once(url) == ["ok"] * PROCESSES
        assert open_storage(url).get_all_studies() == []
    finally:
        with engine.begin() as con:
            con.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


SEARCH = [
    "search", "--trials", "4", "--train-images", "128", "--epochs", "1", "--no-latency",
    "--pruner", "none", "--resolution", "16", "--widths", "16", "--depths", "1,1,1",
    "--flops", "1e6", "--tolerance", "0.3", "--confirm", "2", "--confirm-seeds", "2",
    "--confirm-max-seeds", "2", "--study", "shared", "--quiet",
]  # fmt: skip


@pytest.mark.slow  # 5 rounds of 4 real searches: about 2 min on 2 cores
@pytest.mark.parametrize("round_", range(5))
def test_four_searches_started_together_on_a_fresh_file(tmp_path: Path, round_: int) -> None:
    """Four `search` commands started at once on one new SQLite file (a study shared from four
    terminals): all succeed, the study holds its 4 trials, and the confirmation trains each
    (configuration, seed) once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = run_clis([[*SEARCH, "--storage", url]] * PROCESSES, tmp_path)
    for p in procs:
        assert p.returncode == 0, p.stderr
    trials = load("shared", url).trials
    assert sum(is_trained_proxy(t) for t in trials) == 4
    trained = Counter(
        (t.user_attrs["confirm_of"], t.user_attrs["seed"])
        for t in trials
        if t.user_attrs.get("phase") == CONFIRM and "curve" in t.user_attrs
    )
    assert len(trained) == 4 and set(trained.values()) == {1}, trained
