"""Atomic file writes: a reader sees the old file or the new one, never half of either.

One writer for every file the tool leaves behind: checkpoints and weights (``nas.train``,
``nas.objective``), JSON results, exports, dashboard pages and CSV tables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(f)`` atomically: readers see the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 atomically (:func:`write_atomic`)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (:func:`write_atomic`)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


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
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    return path


def write_csv(path: str | Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as CSV with a header of ``columns`` atomically (keys not in it are left)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
