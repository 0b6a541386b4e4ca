"""Where studies live: storage URLs, opening an Optuna RDB storage, loading a study.

One study lives in one Optuna storage: a SQLite file by default, any Optuna RDB URL otherwise
(PostgreSQL for several machines). Every reader and writer (search, ``trials``, the dashboard,
``export``) opens storage here, so that each gets the same SQLite set-up: write-ahead log,
``BEGIN IMMEDIATE`` transactions and a lock timeout for writers; SQLite's read-only mode, and no
set-up that writes, for the commands that only read.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from nas.search.deadline import not_answering, postgres_engine_kwargs

DEFAULT_STORAGE = "sqlite:///resnext-nas.db"
STORAGE_ENV = "RESNEXT_NAS_STORAGE"
POSTGRES_EXTRA = "'resnext-nas[postgres]'"  # the extra holding the PostgreSQL driver
# Heartbeat: a running trial writes a beat every HEARTBEAT seconds; one silent for
# GRACE_BEATS beats is failed by the next worker that asks for a trial, and queued again.
HEARTBEAT = 10
GRACE_BEATS = 3
MAX_HEARTBEAT = 86_400  # a day; beyond, Python's thread waits overflow
MAX_RETRY = 2  # a trial killed three times is left failed (it may be what kills the worker)
SQLITE_TIMEOUT = 60  # seconds a SQLite writer waits for the lock before "database is locked"
# Seconds a process opening a fresh storage retries while others create the same schema.
SCHEMA_WAIT = 60
# What the loser of two concurrent schema creations is told, on SQLite and PostgreSQL: a table
# or type the other created between its check and its CREATE, or the version row it inserted.
_SCHEMA_RACE = re.compile(
    r"already exists|UNIQUE constraint failed|duplicate key value|database is locked", re.I
)


def schema_race(e: BaseException) -> bool:
    """Whether ``e`` is what a process meets when another creates the same Optuna schema."""
    import sqlalchemy.exc

    return isinstance(
        e,
        (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.ProgrammingError,
        ),
    ) and bool(_SCHEMA_RACE.search(str(e)))


def check_heartbeat(heartbeat: Any) -> None:
    """Refuse a heartbeat interval that is not 1 to :data:`MAX_HEARTBEAT` whole seconds."""
    if not isinstance(heartbeat, int) or not 1 <= heartbeat <= MAX_HEARTBEAT:
        raise ValueError(
            f"--heartbeat must be 1 to {MAX_HEARTBEAT:,} seconds (a day), got {heartbeat!r}"
        )


class UnknownStudy(ValueError):
    """The storage has no study of that name; ``names`` lists the ones it has."""

    def __init__(self, name: str, shown: str, names: list[str]) -> None:
        self.name, self.shown, self.names = name, shown, names
        have = ", ".join(names) if names else "none"
        super().__init__(f"no study {name!r} in {shown} (studies there: {have})")


def storage_url(url: str | None = None) -> str:
    """``url``, else ``$RESNEXT_NAS_STORAGE``, else a SQLite file in the working directory."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends and in-memory databases)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1].split("?")[0] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def quiet_optuna() -> None:
    """Optuna logs warnings only; a failed trial's traceback is kept in its "error" attribute."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The log would break the progress lines.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def _serialise_sqlite_writes(engine: Any) -> None:
    """Begin every SQLite transaction with BEGIN IMMEDIATE.

    pysqlite's deferred transactions take the write lock only at the first write; when two
    processes both read first, the later upgrade fails at once with "database is locked" instead
    of waiting (SQLite's busy handler cannot resolve that deadlock). Taking the lock up front
    makes every contender wait in the busy handler, for up to SQLITE_TIMEOUT seconds.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" below open it
        # Write-ahead log: readers (``trials``, heartbeats' checks) do not block the writer,
        # and a commit appends instead of rewriting pages. synchronous=NORMAL syncs at
        # checkpoints, not every commit: a power cut may lose the last commits, never the file.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners


# Tables every Optuna RDB storage has (optuna/storages/_rdb/models.py).
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def _table_names(uri: str, timeout: float) -> set[str]:
    """The tables of the SQLite database at ``uri`` (a ``file:`` URI, ``mode=ro`` to only read);
    sqlite3.Error if it cannot be read."""
    import sqlite3

    con = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        con.close()
    return {name for (name,) in rows}


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` and create files beside it (its -wal, -shm)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def check_optuna_file(path: Path, url: str) -> str:
    """ValueError in one line unless ``path`` is a SQLite file holding an Optuna storage;
    returns the SQLite URI that read it (see :func:`read_only_engine`).

    Read in SQLite's read-only mode, before Optuna opens it: Optuna would create its tables in
    any SQLite file (an empty one included) and switch it to write-ahead logging, and a command
    that only reads must leave a file that is not a study database as it found it. A database
    in write-ahead-log mode whose index (-shm) cannot be created, on a read-only medium, is read
    as immutable: nothing can be writing it there.
    """
    import sqlite3

    if path.stat().st_size == 0:
        raise ValueError(f"{path} is an empty file, not a study database (storage {url})")
    uris = [path.resolve().as_uri() + "?mode=ro"]
    if not _writable(path):
        uris.append(uris[0] + "&immutable=1")
    for uri in uris:
        try:
            names = _table_names(uri, SQLITE_TIMEOUT)
            break
        except sqlite3.Error as e:
            if uri == uris[-1]:
                raise ValueError(f"{path} is not a study database (storage {url}): {e}") from None
    missing = OPTUNA_TABLES - names
    if missing:
        raise ValueError(
            f"{path} is a SQLite database but not an Optuna study database (no table "
            f"{', '.join(sorted(missing))}; storage {url}); it is left untouched"
        )
    return uri


def read_only_engine(uri: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments whose connections open SQLite URI ``uri`` (``mode=ro``).

    A creator, not a ``sqlite:///file:...?mode=ro&uri=true`` URL: the file's path reaches
    SQLite percent-encoded whatever characters it holds. Without :func:`_serialise_sqlite_writes`
    no connection sets the journal mode, and SQLite refuses any write, to root too.
    """
    import functools
    import sqlite3

    connect = functools.partial(
        sqlite3.connect, uri, uri=True, timeout=SQLITE_TIMEOUT, check_same_thread=False
    )
    return {"creator": connect}


def check_not_foreign(path: Path, url: str) -> None:
    """ValueError in one line if ``path`` is a non-empty SQLite file whose tables include no
    Optuna table: another application's database, which Optuna would otherwise fill with its
    tables and switch to write-ahead logging. A file being created by another search (some
    Optuna tables already there) or one that cannot be read here is left to Optuna.
    """
    import sqlite3

    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        names = _table_names(path.resolve().as_uri() + "?mode=ro", timeout=1)
    except (OSError, sqlite3.Error):
        return
    if names and not names & OPTUNA_TABLES:
        raise ValueError(
            f"{path} is a SQLite database of another application ({len(names)} tables, none "
            f"of Optuna's), not a study database (storage {url}); it is left untouched: give "
            "another file, or add --create to add the study tables to it"
        )


class _Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose heartbeat outlives a database outage."""

    def record_heartbeat(self, trial_id: int) -> None:
        """Beat; a beat lost to the database going away is skipped, not raised.

        The beats run in a thread of Optuna's: raised there, the error printed a thread's
        traceback beside the worker's own one line and stopped the beats for good,
        so that a trial outliving a short outage would have been failed as stale. The next beat
        tries again; the worker's next write reports the outage.
        """
        try:
            super().record_heartbeat(trial_id)
        except Exception as e:
            if storage_error(e) is None:
                raise


def check_driver(url: str) -> None:
    """ValueError in one line, saying what to install, where the driver of a PostgreSQL ``url``
    is missing (Optuna says only "Failed to import DB access module").

    ``postgresql://`` uses psycopg 3, which the ``postgres`` extra installs; another driver
    (``postgresql+psycopg2://``) is named for the user to install. An unknown driver is left to
    the storage's own error.
    """
    import sqlalchemy.exc

    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError):
        return
    try:
        dialect.import_dbapi()
    except ImportError:
        how = (
            f"pip install {POSTGRES_EXTRA} (in a checkout: pip install -e '.[postgres]')"
            if dialect.driver == "psycopg"
            else f"install {dialect.driver}, or use postgresql:// and pip install {POSTGRES_EXTRA}"
        )
        raise ValueError(
            f"cannot open storage {redact(url)}: its PostgreSQL driver {dialect.driver} is not "
            f"installed; {how}"
        ) from None


def open_storage(
    url: str | None = None,
    *,
    heartbeat: int = HEARTBEAT,
    must_exist: bool = False,
    read_only: bool = False,
    create: bool = False,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; ValueError naming the URL if it cannot be used.

    ``read_only``: an existing study database, opened for reading only (a SQLite file in
    SQLite's read-only mode, without heartbeats or schema set-up): what the commands that only
    read use. ``create``: add Optuna's tables even to another application's SQLite file.
    """
    import sqlalchemy.exc

    url = storage_url(url)
    path = sqlite_path(url)
    must_exist = must_exist or read_only
    if must_exist and url.startswith("sqlite") and path is None:
        raise ValueError(
            f"storage {url} is an in-memory SQLite database, which holds no study; "
            "give the file of one, e.g. sqlite:///resnext-nas.db"
        )
    if must_exist and path is not None and not path.is_file():
        # SQLite would create a missing file: refuse instead.
        raise ValueError(
            f"no study database at {path}: the file does not exist (storage {url}); "
            "run `resnext-nas search`"
        )
    uri = None
    if must_exist and path is not None:
        uri = check_optuna_file(path, url)
    elif path is not None and not create:
        check_not_foreign(path, url)
    if path is not None and not path.parent.is_dir():
        raise ValueError(f"cannot open storage {url}: folder {path.parent} does not exist")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
        if read_only and uri is not None:
            kwargs = read_only_engine(uri)
    elif url.startswith("postgresql"):
        check_driver(url)
        kwargs = postgres_engine_kwargs(url)  # every call bounded: a frozen server ends it
    deadline = time.monotonic() + SCHEMA_WAIT
    for attempt in itertools.count():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats are "experimental" since Optuna 2.9
            try:
                storage = _Storage(
                    url,
                    engine_kwargs=kwargs,
                    # A reader neither beats nor fails stale trials, and creates no table.
                    skip_table_creation=read_only,
                    **({} if read_only else _heartbeats(heartbeat)),
                )
                break
            except (
                sqlalchemy.exc.SQLAlchemyError,
                optuna.exceptions.StorageInternalError,  # a reader's version check, wrapped
                ImportError,
                ValueError,
                RuntimeError,
            ) as raised:
                # Optuna wraps the driver's error of its version check; the cause says why.
                e = raised
                if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__:
                    e = e.__cause__
                if schema_race(e) and time.monotonic() < deadline:
                    # Another process is creating the same schema: once it has, creation finds
                    # the tables and the version row there and does nothing.
                    time.sleep(random.uniform(0.05, 0.2) * min(attempt + 1, 5))
                    continue
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if why := not_answering(e):
                    first = f"the database is not answering ({why})"
                raise ValueError(f"cannot open storage {redact(url)}: {first}") from None
    if url.startswith("sqlite") and not read_only:
        _serialise_sqlite_writes(storage.engine)
    return storage


def _heartbeats(heartbeat: int) -> dict[str, Any]:
    """The heartbeat arguments of a storage that runs trials."""
    return {
        "heartbeat_interval": heartbeat,
        "grace_period": heartbeat * GRACE_BEATS,
        "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRY
        ),
    }


def storage_error(e: BaseException) -> str | None:
    """One line for an error of the database connection (a server stopped, frozen or cut off,
    a file gone), else None. The error may be the context of another: Optuna's clean-up after
    the lost connection raised UnboundLocalError in a 335-line traceback.
    """
    for cur in causes(e):
        # sqlalchemy.exc's connection-level errors; by module name, so that no import is needed.
        if type(cur).__module__.startswith("sqlalchemy") and type(cur).__name__ in (
            "OperationalError",
            "InterfaceError",
            "DBAPIError",
        ):
            orig = getattr(cur, "orig", None) or cur
            if why := not_answering(orig):
                return (
                    f"the study database is not answering ({why}); nothing trained is lost: "
                    "run the same command again once it answers"
                )
            lines = str(orig).strip().splitlines()
            why = lines[0] if lines else type(orig).__name__
            return (
                f"the study database cannot be reached or written ({why}); nothing trained is "
                "lost: run the same command again once it is back"
            )
    return None


def causes(e: BaseException) -> Iterator[BaseException]:
    """``e``, then the error it was raised from or while handling, and so on down the chain."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The names of the storage's studies, oldest first."""
    return [s.study_name for s in storage.get_all_studies()]


def load(
    name: str,
    storage: str | optuna.storages.RDBStorage | None = None,
    *,
    read_only: bool = False,
) -> optuna.Study:
    """An existing study; :class:`UnknownStudy` listing the storage's studies if there is none.

    ``storage`` is a URL (None: :func:`storage_url`'s default), or a storage opened here;
    ``read_only`` opens a URL for reading only (:func:`open_storage`).
    """
    quiet_optuna()
    if isinstance(storage, optuna.storages.RDBStorage):
        st, shown = storage, redact(str(storage.engine.url))
    else:
        st = open_storage(storage, must_exist=True, read_only=read_only)
        shown = redact(storage_url(storage))
    names = study_names(st)
    if name not in names:
        raise UnknownStudy(name, shown, names)
    return optuna.load_study(study_name=name, storage=st)
