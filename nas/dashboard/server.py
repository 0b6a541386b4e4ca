"""Serving a study's dashboard live: the page, a small polled state, and the records."""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import optuna

from nas.dashboard.page import (
    build_page,
    json_safe,
    load_study,
    records_from_study,
    study_importances,
    study_state,
)
from nas.search.answer import answer_of
from nas.search.storage import storage_error

# ---------------------------------------------------------------------------------------------
# Live server

MAX_CONNECTIONS = 32  # open connections served at once; more are closed at once
IDLE_SECONDS = 30  # a connection silent this long is closed (a slow client holds no thread)
# Seconds a client has to send its whole request line and headers: one that trickles a header
# line every few seconds (never idle for IDLE_SECONDS) would otherwise hold its slot for ever.
REQUEST_SECONDS = 10


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, host: str, port: int) -> bool:
    """Whether a request's Host header names this server: its port, and an address or the name
    it was bound to.

    DNS rebinding points an attacker's name at 127.0.0.1, so that a page of theirs reads this
    server in the visitor's browser; its requests carry that name in Host, and are refused.
    """
    if not header:
        return False
    name, _, given_port = header.rpartition(":")
    if not name or "]" in given_port:  # no port, or a bare IPv6 address
        name, given_port = header, "80"
    if given_port != str(port):
        return False
    name = name.strip("[]").lower()
    if name in ("localhost", host.strip("[]").lower()):
        return True
    try:
        ipaddress.ip_address(name)  # an address literal: no DNS name to rebind
    except ValueError:
        return False
    return True


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server with at most MAX_CONNECTIONS connection threads at once."""

    daemon_threads = True

    def __init__(self, *args: Any, max_connections: int | None = None, **kwargs: Any) -> None:
        self.slots = threading.BoundedSemaphore(max_connections or MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread if a slot is free; close it otherwise."""
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The thread's work; its slot is freed when the connection closes."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or was cut off is no error of the server's: nothing is printed.
        Anything else is one line on stderr, not socketserver's traceback."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError, OSError)):
            return
        sys.stderr.write(f"warning: request from {client_address[0]} failed: {e!r}\n")


class _Live:
    """The study behind a server, and the page of its last seen state (rebuilt on change)."""

    def __init__(self, study: optuna.Study, poll_seconds: float) -> None:
        self.study = study
        self.poll_seconds = poll_seconds
        self.lock = threading.Lock()
        self.key: str | None = None
        self.page = ""

    def current(self) -> tuple[dict[str, Any], str]:
        """The study's state and its page, rebuilt only when the state has changed."""
        state = study_state(self.study)
        key = json.dumps(state, sort_keys=True)
        if key != self.key:
            records = records_from_study(self.study)
            answer = answer_of(self.study)
            self.page = build_page(
                records,
                self.study.study_name,
                study_importances(self.study),
                live=True,
                poll_seconds=self.poll_seconds,
                state=state,
                recommendation=None if answer is None else answer["recommendation"],
                answer=answer,
            )
            self.key = key
        return state, self.page


def make_server(
    study_name: str,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_seconds: float = 5.0,
    *,
    request_seconds: float = REQUEST_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> ThreadingHTTPServer:
    """A server of ``/`` (the page), ``/state.json`` (small, polled) and ``/records.json``.

    A connection that has not sent its whole request within ``request_seconds`` is closed; a
    database that fails or does not answer while a request is served gets a 503 in one line.
    """
    live = _Live(load_study(study_name, storage), poll_seconds)
    routes: dict[str, Callable[[], tuple[str, bytes]]] = {
        "/": lambda: ("text/html; charset=utf-8", live.current()[1].encode()),
        "/state.json": lambda: ("application/json", json.dumps(study_state(live.study)).encode()),
        "/records.json": lambda: (
            "application/json",
            json.dumps(json_safe(records_from_study(live.study))).encode(),
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_SECONDS

        def handle_one_request(self) -> None:
            # The socket timeout bounds each read; this bounds the whole request's reading.
            self.cutoff = threading.Timer(request_seconds, self._cut)
            self.cutoff.daemon = True
            self.cutoff.start()
            try:
                super().handle_one_request()
            finally:
                self.cutoff.cancel()

        def _cut(self) -> None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.cutoff.cancel()  # the request is read; the answer may take its time
            bound_port = self.server.server_address[1]
            if not host_allowed(self.headers.get("Host"), host, bound_port):
                self.send_error(421, "Host header does not name this server")
                return
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            try:
                with live.lock:  # one reader of the study at a time; polls are cheap
                    kind, body = route()
            except Exception as e:
                why = storage_error(e)
                if why is None:
                    raise
                self.send_error(503, "study database not answering", why)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per poll would drown the terminal

    if not 0 <= port <= 65535:
        raise ValueError(f"--port takes 1..65535 (0: any free port), got {port}")
    try:
        return BoundedServer((host, port), Handler, max_connections=max_connections)
    except (OSError, OverflowError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise ValueError(f"cannot listen on {host}:{port}: {reason}") from None


def serve(
    study_name: str,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_seconds: float = 5.0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the study's page until interrupted; ``ready`` gets the URL once listening."""
    server = make_server(study_name, storage, host, port, poll_seconds)
    if ready is not None:
        bound_host, bound_port = server.server_address[:2]
        ready(f"http://{bound_host}:{bound_port}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
