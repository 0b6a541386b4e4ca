"""Serving a study's dashboard live: the page, a small polled state, and the records."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import optuna

from nas.dashboard.page import (
    build_page,
    json_safe,
    load_study,
    param_importances,
    records_from_study,
    study_recommendation,
    study_state,
)

# ---------------------------------------------------------------------------------------------
# Live server


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
            self.page = build_page(
                records,
                self.study.study_name,
                param_importances(self.study),
                live=True,
                poll_seconds=self.poll_seconds,
                state=state,
                recommendation=study_recommendation(self.study),
            )
            self.key = key
        return state, self.page


def make_server(
    study_name: str,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_seconds: float = 5.0,
) -> ThreadingHTTPServer:
    """A server of ``/`` (the page), ``/state.json`` (small, polled) and ``/records.json``."""
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
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            with live.lock:  # one reader of the study at a time; polls are cheap
                kind, body = route()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per poll would drown the terminal

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


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
