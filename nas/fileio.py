"""Atomic file writes: a reader sees the old file or the new one, never half of either.

One writer for every file the tool leaves behind: checkpoints and weights (``nas.training.loop``,
``nas.search.objective``), JSON results, exports, dashboard pages and CSV tables.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database


# Characters of a study name kept in a default file or folder name: file systems allow 255
# bytes a name, and the prefix, suffix and checksum around it must fit too.
NAME_PART_CHARS = 100


def name_part(name: str, *, checksum: bool = True) -> str:
    """``name`` as one part of a file name: characters outside ``[A-Za-z0-9_.-]`` become ``_``;
    a name that had to change gets the checksum of the original (unless ``checksum`` is False),
    so that two names never share a file; one longer than :data:`NAME_PART_CHARS` is cut there
    and always gets the checksum."""
    import zlib

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    crc = f"-{zlib.crc32(name.encode()):08x}"
    if len(safe) > NAME_PART_CHARS:
        return safe[:NAME_PART_CHARS] + crc
    if checksum and (safe != name or safe.strip(".") == ""):
        return safe + crc
    return safe


class WriteError(OSError, ValueError):
    """A file could not be written (full disk, bad path): one line naming it, exit code 2.

    An OSError, so that callers catching OSError still do; a ValueError, so that the CLI prints
    it as a user error.
    """


def _temp_prefix(path: Path) -> str:
    """Temp files of ``path`` are ``.NAME.HOST.PID.*.tmp``: a later run knows whose they are."""
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


# Temp files of earlier versions named neither host nor process: ``.NAME.XXXXXXXX.tmp`` (results,
# checkpoints, pages) and ``.NAME.XXXXXXXX.part`` (data files, decoded-image caches), XXXXXXXX
# being tempfile's random part. Whose they are cannot be told, so one is taken for abandoned only
# once untouched for OLD_TEMP_AGE seconds: a live writer of any version writes far more often.
OLD_TEMP_AGE = 3600.0
_OLD_TEMP = re.compile(r"[a-z0-9_]{8}\.(tmp|part)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (``PATH.lock``) between processes on this host."""
    import fcntl

    path = Path(path)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim() -> dict[str, Any]:
    """This process's mark on a job that several processes share out through one file."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def claim_alive(mark: dict[str, Any]) -> bool:
    """Whether the process of a :func:`claim` may still hold its job (another host's: yes)."""
    return mark.get("host") != socket.gethostname() or _alive(int(mark["pid"]))


def _orphan(tmp: Path, rest: str, host: str) -> bool:
    """Whether ``tmp``, named ``.NAME.`` + ``rest``, is a temp file left by a dead writer."""
    if _OLD_TEMP.fullmatch(rest):
        try:
            st = tmp.stat()
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > OLD_TEMP_AGE
    owner = rest.split(".")
    # host may hold dots: the pid is the field before the random part
    if len(owner) < 4 or owner[-1] != "tmp" or ".".join(owner[:-3]) != host:
        return False
    if not owner[-3].isdigit():
        return False
    pid = int(owner[-3])
    return pid != os.getpid() and not _alive(pid)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp files of ``path`` left by killed writers; the removed ones.

    A temp file names its host and process (:func:`_temp_prefix`); one of this host whose
    process is gone is an orphan of a kill (SIGKILL skips every ``finally``). Other hosts' temps
    are left alone. An earlier version's temp (no host, no pid) goes once :data:`OLD_TEMP_AGE`
    old.
    """
    path = Path(path)
    host = socket.gethostname()
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
            if _orphan(tmp, tmp.name[len(path.name) + 2 :], host):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed


def new_temp(path: str | Path) -> tuple[int, Path]:
    """A new temp file beside ``path`` for this host and process (its descriptor and path),
    once the orphans of earlier writers of ``path`` are removed; OSError if it cannot be made.
    """
    path = Path(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, Path(tmp)


def check_target(path: str | Path, option: str = "") -> Path:
    """``path`` if a file may be written there; WriteError naming ``option`` if not.

    Refused: a folder, a file without write permission (its owner protected it: refused to root
    too, whom the mode bits do not stop), and a SQLite database (a study's storage is never
    overwritten by a page or a table).
    """
    path = Path(path)
    what = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise WriteError(f"{what} is a folder; give a file name")
    if path.is_file():
        if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
            raise WriteError(f"{what} is read-only; it is not overwritten")
        head = b""
        with contextlib.suppress(OSError), open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head == SQLITE_MAGIC:
            raise WriteError(f"{what} is a SQLite database; it is not overwritten")
    elif path.exists():
        raise WriteError(f"{what} is not a regular file")
    return path


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], option: str = "") -> None:
    """Write ``path`` through ``write(f)`` atomically: readers see the old file or the new one.

    A failure (full disk, a folder or read-only file in the way, a path in /proc) removes the
    temp file and raises :class:`WriteError` in one line naming the path (and ``option``).
    """
    path = Path(path)
    what = f"{option} {path}" if option else str(path)
    check_target(path, option)
    tmp = None
    try:
        fd, tmp = new_temp(path)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, WriteError) or not isinstance(e, OSError):
            raise
        failed = WriteError(f"cannot write {what}: {e.strerror or e or type(e).__name__}")
        failed.errno = e.errno
        raise failed from None
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: str | Path, text: str, option: str = "") -> None:
    """Write ``text`` as UTF-8 atomically (:func:`write_atomic`)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), option)


def write_json(path: str | Path, obj: Any, option: str = "", *, allow_nan: bool = True) -> None:
    """Write ``obj`` as indented JSON atomically (:func:`write_atomic`).

    ``allow_nan=False`` refuses NaN and infinities (ValueError, nothing written): JSON has no
    such numbers, and a strict reader refuses a file that holds Python's bare ``NaN``.
    """
    write_text(path, json.dumps(obj, indent=2, allow_nan=allow_nan) + "\n", option)


def ensure_parent(path: str | Path, option: str = "--out") -> Path:
    """Create the folder ``path`` will be written into; ValueError naming ``option`` if it can't.

    Called before any work, so that a result is never computed only to find nowhere to put it.
    """
    path = Path(path)
    blocked = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), None)
    if blocked is not None:
        raise ValueError(f"{option} {path}: {blocked} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot create {path.parent} ({e.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise WriteError(f"{option} {path}: folder {path.parent} is not writable")
    return check_target(path, option)


def ensure_folder(path: str | Path, option: str = "--out") -> Path:
    """Create the folder ``path`` (files go inside it); WriteError naming ``option`` if it can't."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{option} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"{option} {path}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK):
        raise WriteError(f"{option} {path}: the folder is not writable")
    return path


def write_csv(
    path: str | Path, columns: list[str], rows: list[dict[str, Any]], option: str = ""
) -> None:
    """Write ``rows`` as CSV with a header of ``columns`` atomically (keys not in it are left)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue(), option)


def load_tensors(path: str | Path, fix: str) -> Any:
    """``torch.load`` of tensors and plain containers only; ValueError in one line if not.

    ``weights_only=True`` refuses a raw pickle (which could run code when loaded); torch's own
    warnings about the pickle protocol are silenced, so that only our line is printed.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path} holds pickled Python objects, not only tensors; it is not loaded (loading "
            f"it could run code); {fix}"
        ) from None
    except Exception as e:
        raise ValueError(f"{path} is unreadable ({type(e).__name__}); {fix}") from None
