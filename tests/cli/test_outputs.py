"""Outputs under faults and hostile input. Files written whole or not at all, read
commands that leave a foreign file alone, names printed literally, a server that refuses other
hosts, and one line (exit 2) for every bad input. Commands run in-process through ``cli.main``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch

import cli
import resnext
from nas import dashboard as dash
from nas.commands.options import command
from nas.export import export_trial, state_dict_mismatch
from nas.fileio import OLD_TEMP_AGE, WriteError, remove_stale_temps, write_text
from nas.search.calibrate import CalibrationFile
from nas.search.records import trial_record
from nas.text import literal
from tests.helpers import TINY, refused
from tests.synthetic import synthetic_trials


def no_space(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------------ atomic writes


def test_a_failed_write_is_one_error_leaving_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "page.html"
    write_text(target, "old")
    monkeypatch.setattr("nas.fileio.os.fsync", no_space)
    with pytest.raises(WriteError, match="No space left on device") as err:
        write_text(target, "new", "--out")
    assert isinstance(err.value, OSError) and isinstance(err.value, ValueError)
    assert err.value.errno == errno.ENOSPC and "--out" in str(err.value)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


@pytest.mark.parametrize("kind", ["folder", "read-only", "sqlite", "proc"])
def test_write_refuses_paths_it_must_not_write(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.html"
    if kind == "folder":
        target.mkdir()
    elif kind == "read-only":
        target.write_text("keep")
        target.chmod(0o444)  # refused by its mode bits, to root too
    elif kind == "sqlite":
        sqlite3.connect(target).execute("CREATE TABLE t (x)").connection.close()
    else:
        target = Path("/proc/resnext-nas-test.html")
    before = target.read_bytes() if target.is_file() else None
    with pytest.raises(WriteError, match="out.html|/proc"):
        write_text(target, "new")
    if before is not None:
        assert target.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_temps_orphaned_by_a_kill_are_removed_by_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    orphan = tmp_path / f".page.html.{host}.{dead_pid}.abc123.tmp"
    live = tmp_path / f".page.html.{host}.{os.getppid()}.def456.tmp"  # a running writer's
    other_host = tmp_path / f".page.html.elsewhere.{dead_pid}.ghi789.tmp"
    other_file = tmp_path / f".other.html.{host}.{dead_pid}.jkl012.tmp"
    for p in (orphan, live, other_host, other_file):
        p.write_text("half")
    write_text(tmp_path / "page.html", "whole")
    assert not orphan.exists()
    assert live.exists() and other_host.exists() and other_file.exists()
    assert (tmp_path / "page.html").read_text() == "whole"
    assert remove_stale_temps(tmp_path / "page.html") == []


def test_temps_of_earlier_versions_are_removed_once_an_hour_old(tmp_path: Path) -> None:
    # Before temps named host and pid they were mkstemp's ``.NAME.XXXXXXXX.tmp`` (results,
    # pages) and ``.NAME.XXXXXXXX.part`` (data files, image caches); see git log -p nas/fileio.py.
    two_hours_ago = time.time() - 2 * OLD_TEMP_AGE
    old = [tmp_path / ".page.html.k3_9zq0a.tmp", tmp_path / ".page.html.abcd1234.part"]
    recent = tmp_path / ".page.html.x8y7w6v5.tmp"  # could be a live writer of an old version
    kept = [
        recent,
        tmp_path / ".other.html.k3_9zq0a.tmp",  # another file's
        tmp_path / ".page.html.notes.txt",  # not a temp name
        tmp_path / ".page.html.ABCD1234.tmp",  # mkstemp draws lowercase only
        tmp_path / ".page.html.x.abcd1234.tmp",  # an old temp of page.html.x
    ]
    for p in old + kept:
        p.write_text("half")
        if p is not recent:
            os.utime(p, (two_hours_ago, two_hours_ago))
    folder = tmp_path / ".page.html.dir12345.part"  # a folder is never taken for a temp file
    folder.mkdir()
    os.utime(folder, (two_hours_ago, two_hours_ago))
    write_text(tmp_path / "page.html", "whole")
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in kept) and folder.is_dir()
    os.utime(recent, (two_hours_ago, two_hours_ago))  # an hour on, nobody wrote it
    assert remove_stale_temps(tmp_path / "page.html") == [recent]


def test_download_writes_through_a_temp_of_its_own_and_clears_orphans(tmp_path: Path) -> None:
    from nas.data.cifar import download

    src = tmp_path / "src.bin"
    src.write_bytes(b"archive bytes")
    dest = tmp_path / "data" / "archive.tar.gz"
    dest.parent.mkdir()
    orphan = dest.parent / ".archive.tar.gz.abcd1234.part"  # an earlier version's, killed
    orphan.write_bytes(b"half")
    os.utime(orphan, (time.time() - 2 * OLD_TEMP_AGE,) * 2)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    assert download(src.as_uri(), dest, md5) == dest
    assert dest.read_bytes() == b"archive bytes" and dest.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in dest.parent.iterdir()] == ["archive.tar.gz"]


def test_a_killed_writer_leaves_a_temp_that_the_next_run_removes(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from nas.fileio import write_atomic\n"
        "def slow(f):\n    f.write(b'x' * 1000); f.flush(); print('writing', flush=True); "
        "time.sleep(60)\n"
        "write_atomic(sys.argv[1], slow)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target), str(Path(cli.__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()  # SIGKILL: no finally runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(list(tmp_path.glob(".big.bin.*.tmp"))) == 1
    write_text(target, "done")
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_dashboard_on_a_full_disk_is_one_line_and_writes_nothing(
    stored_study: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    page = tmp_path / "page.html"
    monkeypatch.setattr("nas.fileio.os.fsync", no_space)
    base = ["dashboard", "--study", "synthetic", "--storage", stored_study]
    refused(capsys, [*base, "--out", str(page)], f"--out {page}", "No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_bad_output_paths_are_one_line(
    stored_study: str, tmp_path: Path, capsys: pytest.CaptureFixture, where: str
) -> None:
    target = str(tmp_path) if where == "folder" else "/proc/resnext-nas-test"
    refused(
        capsys,
        ["dashboard", "--study", "synthetic", "--storage", stored_study, "--out", target],
        f"--out {target}",
    )
    refused(
        capsys,
        ["trials", "--study", "synthetic", "--storage", stored_study, "--csv", target],
        f"--csv {target}",
    )


def test_train_and_export_out_that_is_a_file_is_one_line(
    stored_study: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    refused(
        capsys,
        ["train", "--dataset", "synthetic", "--out", str(taken)],
        "--out",
        "is a file, not a folder",
    )
    refused(
        capsys,
        [
            "export",
            "--study",
            "synthetic",
            "--storage",
            stored_study,
            "--best",
            "--no-onnx",
            "--out",
            str(taken),
        ],
        "--out",
        "is a file, not a folder",
    )
    assert taken.read_text() == "mine"


# ------------------------------------------------------------------------- read-only commands


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["empty", "other", "junk"])
def test_read_commands_leave_a_file_that_is_no_study_database_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    db = tmp_path / "x.db"
    if kind == "empty":
        db.touch()
    elif kind == "other":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE notes (text)")
        con.commit()
        con.close()
    else:
        db.write_bytes(b"not a database at all\n" * 40)
    before = sha(db)
    url = f"sqlite:///{db}"
    refused(capsys, ["studies", "--storage", url], str(db))
    refused(capsys, ["trials", "--study", "s", "--storage", url], str(db))
    refused(
        capsys,
        ["dashboard", "--study", "s", "--storage", url, "--out", str(tmp_path / "p.html")],
        str(db),
    )
    assert sha(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]  # no -wal, no -shm, no page


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_read_commands_on_an_in_memory_database_are_one_line(
    url: str, capsys: pytest.CaptureFixture
) -> None:
    refused(capsys, ["studies", "--storage", url], "in-memory")
    refused(capsys, ["trials", "--study", "s", "--storage", url], "in-memory")


# ------------------------------------------------------------------------------ export weights


@pytest.fixture
def weights_study(tmp_path: Path):
    """A study with one complete trial of TINY and a weights file, to be spoilt by each test."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    model = resnext.build(TINY)
    path = tmp_path / "weights.pt"
    state = {
        "format": 1,
        "spec": TINY.to_dict(),
        "model": model.state_dict(),
        "normalization": {"mean": torch.zeros(3), "std": torch.ones(3)},
    }
    study = optuna.create_study(study_name="w", storage=url)
    attrs = {"spec": TINY.to_dict(), "weights": str(path), "host": socket.gethostname()}
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    return url, path, state, tmp_path / "out"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_export_refuses_weights_with_nan_or_inf_naming_the_tensor(weights_study, bad) -> None:
    url, path, state, out = weights_study
    name = "fc.weight"
    state["model"][name][0, 0] = bad
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"tensor {name} holds NaN or inf"):
        export_trial("w", url, 0, out, onnx=False)
    assert not (out / "weights.pt").exists()


def test_a_state_dict_mismatch_names_the_keys(weights_study) -> None:
    url, path, state, out = weights_study
    sd = state["model"]
    missing = next(iter(sd))
    del sd[missing]
    sd["extra.weight"] = torch.zeros(1)
    sd["fc.bias"] = torch.zeros(7)
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        export_trial("w", url, 0, out, onnx=False)
    msg = str(err.value)
    assert f"missing {missing}" in msg and "unexpected extra.weight" in msg
    assert "mis-shaped fc.bias (7,) for (4,)" in msg and "\n" not in msg
    assert state_dict_mismatch(resnext.build(TINY), resnext.build(TINY).state_dict()) == ""


class Payload:
    """A class that torch's weights-only loader will not rebuild."""


def test_a_raw_pickle_is_refused_in_one_line_without_torchs_warning(
    weights_study, capfd: pytest.CaptureFixture
) -> None:
    url, path, state, out = weights_study
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f, protocol=4)
    with _no_warnings():
        with pytest.raises(ValueError, match="pickled Python objects") as err:
            export_trial("w", url, 0, out, onnx=False)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    assert capfd.readouterr().err == ""


class _no_warnings:
    """Fails if a warning is emitted inside the block."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self.log = self._cm.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)
        assert [str(w.message) for w in self.log] == []


# ---------------------------------------------------------------------------- literal names

HOSTILE = ["[/x]", "[link=https://evil.example]click[/link]", "\x1b[31mred\x1b[0m", "my study"]


def test_literal_shows_control_characters_and_keeps_markup_text() -> None:
    assert literal("\x1b[31mred") == "\\x1b[31mred"
    assert literal("a\x9bb\x07c\x7f") == "a\\x9bb\\x07c\\x7f"
    assert literal("[/x] line\nnext\ttab") == "[/x] line\nnext\ttab"
    assert command("trials", "--study", "my study") == "resnext-nas trials --study 'my study'"


def test_an_error_line_is_one_line_whatever_the_names_in_it() -> None:
    from nas.commands.options import error_line

    line = error_line("no study 'a\nb'; studies there: evil\u202etxt.exe, \x1b[31mred")
    assert line == "error: no study 'a\\nb'; studies there: evil\\u202etxt.exe, \\x1b[31mred\n"
    assert line[:-1].isprintable()


def test_hostile_study_names_are_printed_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from nas.commands.search import search_summary

    url = f"sqlite:///{tmp_path / 'h.db'}"
    for name in HOSTILE:
        s = optuna.create_study(study_name=name, storage=url)
        s.add_trials(synthetic_trials(3, odd=False))
        s.set_user_attr("note", name)
    cli.main(["studies", "--storage", url])
    listed = capsys.readouterr().out
    for name in HOSTILE:
        cli.main(["trials", "--study", name, "--storage", url])
        table = capsys.readouterr().out
        assert literal(name) in table and "\x1b" not in table
        search_summary(name, url, [], 0.0, False)
        summary = "".join(capsys.readouterr().out.split())  # rich wraps at 160 columns
        assert "\x1b" not in summary
        assert "".join(literal(f"see `{command('trials', '--study', name)}`").split()) in summary
    assert "\x1b" not in listed
    assert all(literal(n) in listed for n in HOSTILE)
    assert "--study'mystudy'" in summary  # the last name, quoted for the shell


def test_an_unknown_hostile_name_is_one_literal_line(
    stored_study: str, capsys: pytest.CaptureFixture
) -> None:
    line = refused(
        capsys,
        ["trials", "--study", "\x1b]8;;http://x\x07[/x]", "--storage", stored_study],
        "no study",
    )
    assert "\x1b" not in line and "\x07" not in line


# ---------------------------------------------------------------------------------- the server


@pytest.fixture
def server(stored_study: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("nas.dashboard.server.IDLE_SECONDS", 1)
    monkeypatch.setattr("nas.dashboard.server.MAX_CONNECTIONS", 4)
    srv = dash.make_server("synthetic", stored_study, port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def get(port: int, host_header: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("GET", "/state.json", skip_host=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_server_refuses_other_host_names(server) -> None:
    port = server.server_address[1]
    assert get(port, f"127.0.0.1:{port}") == 200
    assert get(port, f"localhost:{port}") == 200
    assert get(port, f"evil.example:{port}") == 421  # DNS rebinding
    assert get(port, f"127.0.0.1:{port + 1}") == 421
    assert get(port, None) == 421


def test_server_bounds_connections_and_closes_idle_ones(server) -> None:
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
    try:
        extra = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert extra.recv(1) == b""  # closed at once: every slot is taken
        extra.close()
        t0 = time.monotonic()
        assert idle[0].recv(1) == b""  # the idle connection is closed by the server
        assert time.monotonic() - t0 < 20
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    assert get(port, f"127.0.0.1:{port}") == 200  # slots are freed


def test_bad_port_and_exposed_host(stored_study: str, capsys: pytest.CaptureFixture) -> None:
    base = ["dashboard", "--study", "synthetic", "--storage", stored_study, "--serve"]
    refused(capsys, [*base, "--port", "70000"], "--port")
    refused(capsys, [*base, "--port", "-1"], "--port")
    with pytest.raises(ValueError, match="--port"):
        dash.make_server("synthetic", stored_study, port=65536)
    assert dash.is_loopback("127.0.0.1") and dash.is_loopback("::1")
    assert dash.is_loopback("localhost")
    assert not dash.is_loopback("0.0.0.0") and not dash.is_loopback("192.168.1.2")


# ------------------------------------------------------------------ hand-edited files and attrs


def test_a_calibration_file_with_a_malformed_body_is_one_line(tmp_path: Path) -> None:
    options = {"epochs": 1}
    path = tmp_path / "cal.json"
    spec = TINY.to_dict()
    for configs, why in (
        ({"a": 1}, "not a list"),
        ([{"spec": "8x14d"}], "no spec object"),
        ([{"spec": {**spec, "cardinality": -1}}], "configs[0].spec"),
        ([{"spec": spec, "long_val_accuracy": "high"}], "long_val_accuracy"),
    ):
        path.write_text(json.dumps({"options": options, "configs": configs}))
        with pytest.raises(ValueError, match="--out") as err:
            CalibrationFile(path, options)
        assert why in str(err.value) and "malformed" in str(err.value)
    path.write_text(json.dumps({"options": options, "configs": [{"spec": spec}]}))
    assert CalibrationFile(path, options).done == [{"spec": spec}]


def test_hand_edited_trial_attributes_are_coerced_or_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    study = optuna.create_study(study_name="edited", storage=url)
    good = synthetic_trials(1, odd=False)[0]
    attrs = {
        **good.user_attrs,
        "flops": "lots",
        "val_accuracy": "0.75",
        "seed": "x",
        "hparams": {"lr": [1]},
        "curve": "none",
    }
    study.add_trial(optuna.trial.create_trial(value=0.25, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(value=0.3, user_attrs={"spec": "garbage"}))
    t0, t1 = study.get_trials()
    r = trial_record(t0, "edited")
    assert r["val_accuracy"] == 0.75 and r["seed"] is None and r["hparams"] == {}
    assert r["flops"] == resnext.complexity(resnext.Spec.from_dict(attrs["spec"])).flops
    assert "flops" in r["note"] and "hparams" in r["note"] and "curve" in r["note"]
    assert trial_record(t1, "edited")["spec"] is None
    cli.main(["trials", "--study", "edited", "--storage", url])  # the table, no crash
    assert "study 'edited': 2 trials" in capsys.readouterr().out
    cli.main(["trials", "--study", "edited", "--storage", url, "--json"])
    notes = [r["note"] for r in json.loads(capsys.readouterr().out)["trials"]]
    assert "wrong type" in notes[0] and "spec" in notes[1]
    cli.main(["studies", "--storage", url])
    page = tmp_path / "p.html"
    dash.write_dashboard("edited", url, page)
    assert page.stat().st_size > 0
    refused(
        capsys,
        [
            "export",
            "--study",
            "edited",
            "--storage",
            url,
            "--trial",
            "1",
            "--no-onnx",
            "--out",
            str(tmp_path / "x"),
        ],
        "no readable spec",
    )


def test_a_failed_load_leaves_no_empty_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train` names its folder runs/train-<time> before the data loads, to fail early on an
    unwritable place; when the load then fails, the empty folder goes again."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--dataset", "folder", "--data-dir", "empty", "--quiet"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list((tmp_path / "runs").iterdir()) == []


# --- default file names from study names --------------------------------------------------

LONG_NAME = "a" * 150 + "é" * 150  # 450 bytes in UTF-8: too long for one file name


def test_default_paths_of_a_long_study_name_fit_a_file_system(tmp_path: Path) -> None:
    from nas.export import default_out as export_out
    from nas.search.study import run_folder

    paths = [
        dash.default_out(LONG_NAME),
        export_out(LONG_NAME, 7),
        run_folder("runs", LONG_NAME, 7),
    ]
    for path in paths:
        assert all(len(part.encode()) <= 255 for part in path.parts), path
        (tmp_path / path).mkdir(parents=True)  # Errno 36 (File name too long) before
    # Two long names that share their first characters still get different files.
    assert dash.default_out(LONG_NAME) != dash.default_out(LONG_NAME + "b")


def test_dashboard_of_a_long_study_name_writes_its_default_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    optuna.create_study(study_name=LONG_NAME, storage=url).add_trials(
        synthetic_trials(3, odd=False)
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(cli.__file__)),
            "dashboard",
            "--study",
            LONG_NAME,
            "--storage",
            url,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p for p in tmp_path.iterdir() if p.suffix == ".html"]
