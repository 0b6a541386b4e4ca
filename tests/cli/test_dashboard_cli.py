"""`resnext-nas dashboard` as a user runs it: the page written, one-line errors, the live server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from nas import dashboard as dash
from tests.helpers import CLI, ROOT, run_cli
from tests.synthetic import synthetic_trials


def test_writes_one_page(stored_study: str, tmp_path) -> None:
    out = tmp_path / "dash.html"
    res = run_cli("dashboard", "--study", "synthetic", "--storage", stored_study, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "resnext-nas · synthetic" in page
    assert "36 trials: " in page


def test_default_storage_comes_from_the_environment(stored_study: str, tmp_path) -> None:
    env = {"RESNEXT_NAS_STORAGE": stored_study, "PATH": "/usr/bin:/bin"}
    res = run_cli("dashboard", "--study", "synthetic", cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "dashboard-synthetic.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--study", "nope"), "no study named 'nope' in sqlite:"),  # and the ones there are:
        (("--study", "empty"), "study empty has no finished trials yet"),
        (("--study", "x", "--storage", "sqlite:///no/such.db"), "does not exist"),
        (("--study", "x", "--storage", "nonsense"), "cannot open storage nonsense"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(stored_study: str, args, message: str, tmp_path) -> None:
    args = args if "--storage" in args else (*args, "--storage", stored_study)
    res = run_cli("dashboard", *args, cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    if "nope" in args:
        assert "available: synthetic, empty, <script>alert(1)</script>" in lines[0]
    assert not list(tmp_path.iterdir())  # neither a page nor a stray sqlite file


def test_dashboard_path_imports_no_torch() -> None:
    code = "import sys, cli; from nas import dashboard; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.strip() == "False", res.stderr


def test_server_binds_localhost_by_default(stored_study: str) -> None:
    import inspect

    assert inspect.signature(dash.serve).parameters["host"].default == "127.0.0.1"
    server = dash.make_server("synthetic", stored_study, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    with pytest.raises(ValueError, match="cannot listen on"):
        dash.make_server("synthetic", stored_study, host="192.0.2.1", port=0)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as res:
        assert res.status == 200
        return res.read().decode()


def test_serve_shows_new_trials(stored_study: str) -> None:
    study = optuna.create_study(study_name="live", storage=stored_study)
    study.add_trials(synthetic_trials(3, odd=False))
    proc = subprocess.Popen(
        [*CLI, "dashboard", "--study", "live", "--storage", stored_study]
        + ["--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("serving http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.removeprefix("serving ")
        page = fetch(url)
        assert "resnext-nas · live" in page and '"live":true' in page
        assert [r["number"] for r in json.loads(fetch(url + "records.json"))] == [0, 1, 2]
        before = json.loads(fetch(url + "state.json"))
        assert before["trials"] == 3 and before["states"] == {"COMPLETE": 3}

        study.add_trials(synthetic_trials(4, odd=False)[3:])
        records = json.loads(fetch(url + "records.json"))
        assert [r["number"] for r in records] == [0, 1, 2, 3]
        assert records[3]["spec"]["cardinality"] == 8  # trial 3 is 8x14d (Table 2)
        assert json.loads(fetch(url + "state.json"))["trials"] == 4
        page = fetch(url + "?again")
        assert "4 trials: 4 complete" in page and "#3 ResNeXt 8x14d" in page
        time.sleep(0)  # the server keeps running until stopped
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # never left behind
            proc.wait()


def _slow_loris(port: int, stop, socks: list) -> None:
    """Connections that send a header line now and then and never finish their request."""
    import socket

    for _ in range(dash.server.MAX_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    while not stop.wait(0.3):
        for s in socks:
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                pass


def test_slow_clients_do_not_hold_every_slot(stored_study: str) -> None:
    """32 connections trickling header lines are cut off after request_seconds; a real GET
    started while they hold every slot is answered within a few seconds."""
    import threading

    server = dash.make_server("synthetic", stored_study, port=0, request_seconds=1.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    stop, socks = threading.Event(), []
    loris = threading.Thread(target=_slow_loris, args=(port, stop, socks), daemon=True)
    loris.start()
    try:
        time.sleep(0.5)
        t0, answered = time.monotonic(), None
        while time.monotonic() - t0 < 5 and answered is None:
            try:
                answered = fetch(f"http://127.0.0.1:{port}/state.json")
            except OSError:
                time.sleep(0.2)
        assert answered is not None and json.loads(answered)["trials"] >= 1
    finally:
        stop.set()
        loris.join()
        for s in socks:
            s.close()
        server.shutdown()
        server.server_close()


def test_early_disconnect_prints_nothing(stored_study: str, capfd) -> None:
    """A client that hangs up before reading its answer leaves nothing on stderr."""
    import socket
    import struct
    import threading

    server = dash.make_server("synthetic", stored_study, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            # Close with a reset (linger 0) at once, before the page is written.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        assert fetch(f"http://127.0.0.1:{port}/state.json")
        time.sleep(1.0)
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err
