"""Archives of image folders (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``), extracted safely once.

An archive is extracted into a folder of the cache named after it and keyed by its path, size
and modification time, so a second load reuses the extraction and a changed archive gets a
fresh one. Extraction is

* safe: every member is checked before it is written; an absolute name, a ``..`` component, a
  link or a device is refused (:class:`~nas.data.errors.DataError`), and files are written to paths
  built here, never where a member says;
* atomic: members go to a temporary folder that is renamed into place only once all of them
  are written, so an interrupted extraction is never taken for a finished one (a killed one
  leaves a ``.part`` folder that is never read, and is removed by the next extraction).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from nas.data.errors import DataError, one_line
from nas.data.progress import SILENT, Advance, LoadProgress, size_text

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
# Caps on what one archive may extract to, against zip and tar bombs (a 455 KB zip held 200 MB):
# image files hardly compress (JPEG, PNG, WebP), so a real dataset extracts to about its own
# size; the total admits ImageNet-1k's training set (about 140 GB).
MAX_EXTRACTED_BYTES = 200 * 10**9
MAX_RATIO = 100  # extracted bytes per archive byte; BMPs of flat colour deflate about 10-50x
RATIO_FREE_BYTES = 64 << 20  # below this much extracted, the ratio is not held against it
BYTES_ENV = "RESNEXT_NAS_MAX_EXTRACTED_BYTES"
RATIO_ENV = "RESNEXT_NAS_MAX_ARCHIVE_RATIO"
_PART = ".part-"


def is_archive(path: Path) -> bool:
    """Whether ``path``'s name ends in one of :data:`SUFFIXES` (its contents are not read)."""
    return path.name.lower().endswith(SUFFIXES)


def stem(path: Path) -> str:
    """The archive's name without its suffix: ``cifar10-jpg`` for ``cifar10-jpg.tar.gz``."""
    name = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The relative path a member may be written to; DataError if it would leave the folder.

    None for the archive's root entry (``.`` or ``./``), which holds nothing to write.
    """
    if "\\" in name or "\x00" in name:  # Windows separators could climb out on some systems
        raise DataError(f"{archive} has a member with an unsafe name {name!r}; refusing it")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise DataError(
            f"{archive} has a member with an absolute name {name!r} that would land outside "
            "the folder; refusing it"
        )
    if ".." in path.parts:
        raise DataError(
            f"{archive} has a member {name!r} that escapes the folder through '..'; refusing it"
        )
    parts = [p for p in path.parts if p != "."]
    return PurePosixPath(*parts) if parts else None


def _tar_members(
    archive: Path, advance: Advance
) -> Iterator[tuple[PurePosixPath, IO[bytes] | None, int]]:
    """(path, data or None for a folder, declared size) of each tar member, refusing links
    and devices; ``advance`` gets the archive's bytes read."""
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        read = 0
        for m in tar:
            advance(raw.tell() - read)
            read = raw.tell()
            path = member_path(m.name, archive)
            if m.issym() or m.islnk():
                raise DataError(f"{archive} has a link {m.name!r}; refusing to extract links")
            if not (m.isfile() or m.isdir()):
                raise DataError(
                    f"{archive} has a device or special file {m.name!r}; refusing to extract it"
                )
            if path is None:
                continue
            yield path, tar.extractfile(m) if m.isfile() else None, m.size


def _zip_members(
    archive: Path, advance: Advance
) -> Iterator[tuple[PurePosixPath, IO[bytes] | None, int]]:
    """(path, data or None for a folder, declared size) of each zip member, refusing links
    and devices; ``advance`` gets each member's compressed bytes."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            advance(info.compress_size)
            path = member_path(info.filename, archive)
            # The Unix file type, when the zip was made on Unix (0 when it was not, or when
            # only permissions were stored, as Python's writestr does).
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise DataError(
                    f"{archive} has a link {info.filename!r}; refusing to extract links"
                )
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DataError(
                    f"{archive} has a device or special file {info.filename!r}; refusing it"
                )
            if path is None:
                continue
            yield path, None if info.is_dir() else zf.open(info), info.file_size


def env_limit(env: str, default: int) -> int:
    """A positive integer from ``$env``, else ``default``."""
    text = os.environ.get(env, "").replace("_", "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{env} must be a positive integer, got {text!r}")
    return value


class _Budget:
    """Counts the bytes an extraction writes against :data:`MAX_EXTRACTED_BYTES` and
    :data:`MAX_RATIO`; a member's declared size is checked first, then each block it yields
    (a declared size can lie)."""

    def __init__(self, archive: Path, size: int) -> None:
        self.archive = archive
        self.max_bytes = env_limit(BYTES_ENV, MAX_EXTRACTED_BYTES)
        self.max_ratio = env_limit(RATIO_ENV, MAX_RATIO)
        self.cap = min(self.max_bytes, max(RATIO_FREE_BYTES, self.max_ratio * size))
        self.written = 0

    def check(self, more: int) -> None:
        """Refuse the archive if ``more`` bytes would take it past the cap."""
        if self.written + more <= self.cap:
            return
        if self.cap == self.max_bytes:
            why, env = f"more than {self.max_bytes:,} bytes", BYTES_ENV
        else:
            why, env = f"more than {self.max_ratio} times its own size", RATIO_ENV
        raise DataError(
            f"{self.archive} extracts to {why} (a zip or tar bomb?); refusing it; if the "
            f"archive is genuine, set {env} higher"
        )

    def copy(self, src: IO[bytes], dest: IO[bytes]) -> None:
        """Copy ``src`` to ``dest`` in blocks, counting each."""
        while block := src.read(1 << 20):
            self.check(len(block))
            self.written += len(block)
            dest.write(block)


def _declared(archive: Path) -> int:
    """The total size a zip's central directory declares (0 for a tar: its sizes are read
    member by member as it streams)."""
    if not archive.name.lower().endswith(".zip"):
        return 0
    with zipfile.ZipFile(archive) as zf:
        return sum(info.file_size for info in zf.infolist())


def _key(archive: Path) -> str:
    """A short key of the archive's identity: resolved path, size and modification time."""
    st = archive.stat()
    text = f"{archive.resolve()} {st.st_size} {st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def extract(
    archive: Path,
    cache: Path,
    check: Callable[[Path], object] | None = None,
    progress: LoadProgress = SILENT,
) -> Path:
    """The folder ``archive`` is extracted to under ``cache``: extracted now, or reused.

    ``check`` gets the extracted folder before it is renamed into place; an error it raises
    (an archive that holds no image tree) leaves nothing in the cache. ``progress`` is told how
    much of the archive is read, and where the extraction went and its size.
    """
    try:
        target = cache / f"{stem(archive)}-{_key(archive)}"
    except OSError as e:
        raise DataError(f"cannot read {archive} ({one_line(e)}); check its permissions") from None
    if target.is_dir():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob(f".{target.name}{_PART}*"):  # left by a killed extraction
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}{_PART}"))
    except OSError as e:
        raise DataError(
            f"cannot write to {cache} ({one_line(e)}); set RESNEXT_NAS_DATA to a writable folder"
        ) from None
    members = _zip_members if archive.name.lower().endswith(".zip") else _tar_members
    try:
        size = archive.stat().st_size
        budget = _Budget(archive, size)
        budget.check(_declared(archive))
        with progress.stage(f"extracting {archive.name}", size, "bytes") as advance:
            for path, src, declared in members(archive, advance):
                dest = tmp.joinpath(*path.parts)
                if src is None:
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                budget.check(declared)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with src, open(dest, "wb") as f:
                    budget.copy(src, f)
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
        progress.note(f"extracted {archive.name} to {target} ({size_text(budget.written)})")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({one_line(e)}); replace it with a good copy"
        ) from None
    except OSError as e:
        if target.is_dir():  # another process finished the same extraction first
            return target
        raise DataError(f"cannot extract {archive} into {cache} ({one_line(e)})") from None
    finally:  # an error or Ctrl-C leaves no partial folder behind
        shutil.rmtree(tmp, ignore_errors=True)
    return target
