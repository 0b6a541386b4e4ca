"""Commands that only read a study database (``studies``, ``trials``, ``export``, ``dashboard``
with and without ``--serve``) open it read-only: a rollback-journal file keeps its checksum and
its journal mode, and a database on a read-only medium is read, in either journal mode.

One tiny real search (the trials of tests/helpers.py) makes the database; each test works on
a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy.exc

import cli
from nas import dashboard as dash
from nas.search.storage import load, open_storage
from nas.search.study import SearchSettings
from nas.search.workers import run_search
from tests.browser import in_ci
from tests.helpers import CLI, ROOT, TRAIN, tiny_space, toy_data

STUDY = "ro"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite study database of a 2-trial search with saved weights (kept elsewhere)."""
    where = tmp_path_factory.mktemp("searched")
    db = where / "study.db"
    settings = SearchSettings(
        tiny_space(), study=STUDY, pruner="none", latency=False, runs_dir=where / "runs"
    )
    run_search(settings, toy_data(), replace(TRAIN, epochs=1), 2, storage=f"sqlite:///{db}")
    return db


def copy_in(searched: Path, folder: Path, journal: str) -> Path:
    """A copy of the searched database alone in ``folder``, in journal mode ``journal``."""
    folder.mkdir()
    db = folder / "study.db"
    src, con = sqlite3.connect(searched), sqlite3.connect(db)
    src.backup(con)  # the search's log too: its storage is still open in this process
    src.close()
    assert con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0] == journal
    con.close()
    assert [p.name for p in folder.iterdir()] == ["study.db"]  # the last close removed the log
    return db


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_mode(db: Path) -> str:
    """From the file's header, without opening it (bytes 18-19: 1 rollback journal, 2 WAL)."""
    return {b"\x01\x01": "delete", b"\x02\x02": "wal"}[db.read_bytes()[18:20]]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as res:
        assert res.status == 200
        return res.read().decode()


def test_read_commands_leave_a_rollback_journal_database_as_it_was(
    searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = copy_in(searched, tmp_path / "db", "delete")
    before, url, out = sha(db), f"sqlite:///{db}", tmp_path / "out"
    for args in (
        ["studies", "--storage", url, "--json"],
        ["trials", "--study", STUDY, "--storage", url, "--json"],
        ["export", "--study", STUDY, "--storage", url, "--best", "--no-onnx", "--out", str(out)],
        ["dashboard", "--study", STUDY, "--storage", url, "--out", str(tmp_path / "page.html")],
    ):
        cli.main(args)
    printed = capsys.readouterr().out
    assert f'"name": "{STUDY}"' in printed and (out / "weights.pt").is_file()
    server = dash.make_server(STUDY, url, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        assert json.loads(fetch(base + "state.json"))["trials"] == 2
        assert f"resnext-nas · {STUDY}" in fetch(base)
    finally:
        server.shutdown()
        server.server_close()
    assert sha(db) == before and journal_mode(db) == "delete"
    assert [p.name for p in db.parent.iterdir()] == ["study.db"]  # no -wal, -shm or -journal


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_storage_opened_read_only_refuses_writes(
    searched: Path, tmp_path: Path, journal: str
) -> None:
    """SQLite itself refuses: this holds for root too, whom a file's mode bits do not stop."""
    db = copy_in(searched, tmp_path / "db", journal)
    before = sha(db)
    st = open_storage(f"sqlite:///{db}", read_only=True)
    assert len(load(STUDY, st).trials) == 2
    with pytest.raises(sqlalchemy.exc.OperationalError, match="readonly"):
        with st.engine.begin() as con:
            con.exec_driver_sql("CREATE TABLE probe (a)")
    st.engine.dispose()
    assert sha(db) == before and journal_mode(db) == journal


def read_only_medium(folder: Path) -> list[str]:
    """The command prefix that runs a command with ``folder`` on a read-only medium.

    A user is stopped by the mode bits (folder 0o555, files 0o444); root is not, so root runs
    the command in a private mount namespace where ``folder`` is bind-mounted read-only. A test
    that cannot make the medium fails under $CI and skips elsewhere, never passes.
    """
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        prefix = ["unshare", "--mount", "--", "sh", "-c", mount, str(folder)]
    probe = 'touch "$0/probe" 2>/dev/null && echo writable || echo read-only'
    res = subprocess.run([*prefix, "sh", "-c", probe, str(folder)], capture_output=True, text=True)
    if res.stdout.strip() != "read-only":
        why = f"cannot make {folder} a read-only medium: {res.stdout.strip()} {res.stderr.strip()}"
        if in_ci():
            pytest.fail(why)
        pytest.skip(why)
    return prefix


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_read_commands_read_a_database_on_a_read_only_medium(
    searched: Path, tmp_path: Path, journal: str
) -> None:
    db = copy_in(searched, tmp_path / "db", journal)
    before, url = sha(db), f"sqlite:///{db}"
    try:
        prefix = read_only_medium(db.parent)
        cmd = [*prefix, *CLI]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        calls = {
            "studies": ["studies", "--storage", url, "--json"],
            "trials": ["trials", "--study", STUDY, "--storage", url, "--json"],
            "export": ["export", "--study", STUDY, "--storage", url, "--best", "--no-onnx"],
            "dashboard": ["dashboard", "--study", STUDY, "--storage", url, "--out", "page.html"],
        }
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs = {
            k: subprocess.Popen([*cmd, *args], cwd=tmp_path, env=env, **pipes)
            for k, args in calls.items()
        }
        serve = [*cmd, "dashboard", "--study", STUDY, "--storage", url, "--serve", "--port", "0"]
        server = subprocess.Popen(serve, env=env, **pipes)
        try:
            line = server.stdout.readline().strip()
            assert line.startswith("serving http://127.0.0.1:"), (line, server.stderr.read())
            assert json.loads(fetch(line.removeprefix("serving ") + "state.json"))["trials"] == 2
        finally:
            server.terminate()
            server.wait(timeout=30)
        done = {k: (p.communicate(timeout=180), p.returncode) for k, p in procs.items()}
    finally:
        db.parent.chmod(0o755)  # so that pytest can remove it
        db.chmod(0o644)
    for k, ((_out, err), rc) in done.items():
        assert rc == 0 and "Traceback" not in err, (k, err)
    (row,) = json.loads(done["studies"][0][0])
    assert row["name"] == STUDY and row["trials"] == {"COMPLETE": 2}
    assert len(json.loads(done["trials"][0][0])["trials"]) == 2
    assert (tmp_path / "page.html").is_file()
    assert any((tmp_path / "runs").glob("export-*/weights.pt"))
    assert sha(db) == before and journal_mode(db) == journal
    assert [p.name for p in db.parent.iterdir()] == ["study.db"]
