"""A deadline on every call to a PostgreSQL server, so that a frozen server ends a command.

A server that is stopped (SIGSTOP, a hung host) or cut off by a network partition answers
nothing, and nothing fails: on localhost the kernel still acknowledges its TCP traffic, so that
keepalives never fire, and a server-side ``statement_timeout`` needs a server that runs. psycopg
waits for an answer without a limit, so a search printed nothing for minutes and a dashboard
request never got a reply.

So each connection that :func:`postgres_engine_kwargs` makes is watched: a wait for the server
that lasts longer than :func:`db_timeout` seconds (``RESNEXT_NAS_DB_TIMEOUT``, default
:data:`DB_TIMEOUT`) has its socket shut down by a watchdog thread, and the call raises
:class:`NotAnswering`, which ``storage_error`` turns into one line; for :data:`SILENT_SECONDS`
after that, calls fail at once, so that a command's clean-up does not wait a deadline a call.
Connecting is bounded by libpq's ``connect_timeout``, a partition's unacknowledged writes by
``tcp_user_timeout``.

Interrupts: :func:`interrupt`, called by a signal handler, cuts the waits in progress at once
(psycopg would first spend seconds asking a frozen server to cancel the query), and gives the
clean-up that follows (marking the trial interrupted, queuing it again) :data:`ENDING_SECONDS` in
all; a database call of the main thread that fails within that clean-up raises the interrupt
again, so that no database error takes its place.

psycopg's ``Connection.wait`` is not public API, but every exchange with the server (execute,
commit, rollback, pre-ping) goes through it; ``tests/search/test_postgres.py`` fails if it stops
doing so.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

DB_TIMEOUT = 30.0  # seconds a call may wait for the server; far above any call of a study
DB_TIMEOUT_ENV = "RESNEXT_NAS_DB_TIMEOUT"
CONNECT_TIMEOUT = 10  # seconds to connect (libpq counts whole seconds, at least 2)
# Seconds in all that the database calls after an interrupt (SIGTERM, Ctrl-C) may take: enough
# to mark the trial interrupted and queue it again on a live server.
ENDING_SECONDS = 3.0
# Seconds after a call got no answer during which calls fail at once instead of each waiting
# again: a command's clean-up ends in one deadline, and a server back is used soon after.
SILENT_SECONDS = 5.0


def db_timeout() -> float:
    """Seconds a database call may wait: ``$RESNEXT_NAS_DB_TIMEOUT``, else :data:`DB_TIMEOUT`."""
    raw = os.environ.get(DB_TIMEOUT_ENV, "").strip()
    if not raw:
        return DB_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 86_400:
        raise ValueError(f"{DB_TIMEOUT_ENV} must be a number of seconds, 0 to 86400, got {raw!r}")
    return seconds


def not_answering(e: BaseException) -> str | None:
    """Why, if ``e`` (psycopg's error, or SQLAlchemy's around it) is a server that gave no
    answer in time; else None."""
    e = getattr(e, "orig", None) or e
    # By name, so that no psycopg import is needed: ours, and psycopg's on connecting.
    if type(e).__name__ in ("NotAnswering", "ConnectionTimeout"):
        lines = str(e).strip().splitlines()
        return lines[0] if lines else type(e).__name__
    return None


@dataclass(eq=False)
class _Wait:
    """One wait for the server: its socket, deadline and thread, and how it ended."""

    fd: int
    deadline: float
    seconds: float
    main: bool
    cut: bool = False  # its socket was shut down
    expired: bool = False  # by the watchdog, at its deadline
    interrupt: BaseException | None = None  # raised in place of the wait's result


class _Watch:
    """The waits in progress, and the thread that cuts the ones past their deadline."""

    def __init__(self) -> None:
        # Reentrant: interrupt() runs in a signal handler, maybe while its thread holds it.
        self.cond = threading.Condition(threading.RLock())
        self.waits: dict[int, _Wait] = {}
        self.wake_at: float | None = None  # the watchdog's next look; None: when woken
        self.thread: threading.Thread | None = None
        self.ending: BaseException | None = None  # the interrupt being handled
        self.ending_at = 0.0  # when its clean-up must be over

    def arm(self, fd: int, seconds: float) -> _Wait:
        w = _Wait(fd, time.monotonic() + seconds, seconds, _in_main_thread())
        with self.cond:
            self.waits[id(w)] = w
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="db-deadline", daemon=True)
                self.thread.start()
            if self.wake_at is None or w.deadline < self.wake_at:
                self.cond.notify()
        return w

    def disarm(self, w: _Wait) -> None:
        with self.cond:
            self.waits.pop(id(w), None)

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for w in [w for w in self.waits.values() if w.deadline <= now]:
                    w.expired = True
                    self.cut(w)
                self.wake_at = min((w.deadline for w in self.waits.values()), default=None)
                self.cond.wait(None if self.wake_at is None else self.wake_at - now)

    def cut(self, w: _Wait) -> None:
        """Shut the wait's socket down: the blocked call sees the connection end and returns."""
        self.waits.pop(id(w), None)
        w.cut = True
        try:
            s = socket.socket(fileno=os.dup(w.fd))
        except OSError:
            return
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()

    def left(self) -> float:
        """Seconds left to an interrupt's clean-up; infinite when none runs."""
        if self.ending is None:
            return math.inf
        return max(0.0, self.ending_at - time.monotonic())


WATCH = _Watch()  # the process's waits: a signal handler must find those of every thread


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def interrupt(exc: BaseException) -> bool:
    """Cut every database wait in progress, and give the calls that follow
    :data:`ENDING_SECONDS` in all, until :func:`resume`.

    For a signal handler that raises ``exc``: True says the main thread was waiting for the
    database and raises ``exc`` there itself, so the handler must not; False, raise it.
    """
    with WATCH.cond:
        if WATCH.ending is None:
            WATCH.ending_at = time.monotonic() + ENDING_SECONDS
        WATCH.ending = exc
        waited = False
        for w in list(WATCH.waits.values()):
            if w.main:
                w.interrupt, waited = exc, True
            WATCH.cut(w)
        return waited


def resume() -> None:
    """End the clean-up bound that :func:`interrupt` set: calls get their deadline again."""
    with WATCH.cond:
        WATCH.ending = None


class _Server:
    """SQLAlchemy's ``creator`` for one storage URL: connections whose calls have a deadline.

    After a call that got no answer, calls fail at once for :data:`SILENT_SECONDS`. The
    parameters are the dialect's own (``create_connect_args``), made on first use: the object
    holds only the URL, so that an Optuna storage holding it stays picklable.
    """

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.params: dict[str, Any] | None = None
        self.silent_until = 0.0  # monotonic time until which calls fail at once

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "params": None}  # psycopg's adapters map does not pickle

    def budget(self) -> float:
        """Seconds a call may wait now: 0 while the server is taken as silent."""
        if time.monotonic() < self.silent_until:
            return 0.0
        return min(self.seconds, WATCH.left())

    def no_reply(self) -> Exception:
        """The error of a call that got no answer within its deadline."""
        return _connection_class().NotAnswering(f"no reply in {self.seconds:g} s")

    def silent(self) -> Exception:
        """Note that the server gave no answer; the error that says so."""
        self.silent_until = time.monotonic() + SILENT_SECONDS
        return self.no_reply()

    def failure(self, w: _Wait) -> BaseException:
        """What a wait that was cut, or had no time, raises in place of psycopg's error."""
        if w.interrupt is not None:
            return w.interrupt
        if w.main and WATCH.ending is not None:
            return WATCH.ending  # no database error may take the interrupt's place
        if w.expired:
            return self.silent()
        return self.no_reply()

    def __call__(self) -> Any:
        import sqlalchemy

        cls = _connection_class()
        if self.params is None:
            u = sqlalchemy.engine.make_url(self.url)
            dialect_cls = u.get_dialect()
            _, cparams = dialect_cls(dbapi=dialect_cls.import_dbapi()).create_connect_args(u)
            self.params = {**_tcp_params(self.seconds), **cparams}
        budget = self.budget()
        try:
            if budget <= 0:
                raise self.no_reply()
            conn = cls.connect(**{**self.params, "connect_timeout": _connect_seconds(budget)})
        except Exception as e:
            if budget > 0 and type(e).__name__ == "ConnectionTimeout":
                self.silent()
            if _in_main_thread() and WATCH.ending is not None:
                raise WATCH.ending from None
            raise
        conn.server = self
        return conn


@functools.cache
def _connection_class() -> Any:
    """psycopg's connection, each wait for the server bounded (imported on first use: only
    PostgreSQL storages need psycopg)."""
    import psycopg

    class NotAnswering(psycopg.OperationalError):
        """The server did not answer a call within its deadline."""

    class Connection(psycopg.Connection):  # type: ignore[type-arg]
        """A psycopg connection whose waits for the server end at their deadline."""

        server: _Server

        def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
            w = WATCH.arm(self.pgconn.socket, self.server.budget())
            try:
                if w.seconds > 0:
                    result = super().wait(gen, *args, **kwargs)
                    if w.interrupt is None:
                        return result
            except psycopg.Error:
                if not w.cut:
                    raise
            finally:
                WATCH.disarm(w)
            # Cut mid-exchange, interrupted, or no time: unusable (the pool opens another).
            self.close()
            raise self.server.failure(w) from None

    Connection.NotAnswering = NotAnswering
    return Connection


def _connect_seconds(seconds: float) -> int:
    """libpq's ``connect_timeout`` for a call that may wait ``seconds``: whole seconds, at least
    2 (libpq's least), at most :data:`CONNECT_TIMEOUT`."""
    return max(2, math.ceil(min(CONNECT_TIMEOUT, seconds)))


def _tcp_params(seconds: float) -> dict[str, Any]:
    """libpq's TCP settings: a partitioned server's connection fails instead of hanging."""
    return {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        # Data the server has not acknowledged for this long ends the connection.
        "tcp_user_timeout": math.ceil(seconds * 1000),
    }


def postgres_engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments for a PostgreSQL ``url``: every call has a deadline.

    Another driver than psycopg 3 (``postgresql+psycopg2://``) gets libpq's timeouts only.
    """
    import sqlalchemy

    seconds = db_timeout()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a server back after an outage reconnects
    if sqlalchemy.engine.make_url(url).get_dialect().driver != "psycopg":
        connect = _connect_seconds(seconds)
        return {**kwargs, "connect_args": {**_tcp_params(seconds), "connect_timeout": connect}}
    return {**kwargs, "creator": _Server(url, seconds)}
