"""CIFAR-10 and CIFAR-100 from their official python-pickle archives, downloaded if need be.

An archive is fetched to a temporary file and kept only once its MD5 matches the published one;
only the expected batch files are extracted, to paths built here; the batches are read through an
unpickler that resolves a short allow-list of globals, and checked before they are used. Every
problem a user can fix raises :class:`~nas.data.errors.DataError`.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import pickle
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.data.errors import DataError, one_line
from nas.data.progress import SILENT, LoadProgress, size_text
from nas.fileio import new_temp, write_atomic

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 1.26 has only the old name
    from numpy.core import multiarray  # type: ignore[no-redef]


@dataclass(frozen=True)
class Format:
    """Where one CIFAR version lives and how its python-pickle batches are laid out."""

    title: str
    archive: str
    url: str
    md5: str
    folder: str  # what the archive extracts to
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    classes: int

    @property
    def files(self) -> tuple[str, ...]:
        """The files extracted from the archive: training batches, test batch and meta."""
        return (*self.train, self.test, self.meta)


# https://www.cs.toronto.edu/~kriz/cifar.html: the "python version" archives and their MD5s.
FORMATS = {
    "cifar10": Format(
        "CIFAR-10",
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
        10,
    ),
    "cifar100": Format(
        "CIFAR-100",
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        b"fine_labels",
        b"fine_label_names",
        100,
    ),
}


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | Path, md5: str, progress: LoadProgress = SILENT) -> Path:
    """Fetch ``url`` to ``dest`` via a temporary file, renamed into place once its MD5 matches;
    ``progress`` is told the bytes received."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp(dest)  # named for this process: a killed download's is removed
    except OSError as e:
        raise DataError(
            f"cannot write to {dest.parent} ({one_line(e)}); pass a writable data_dir"
        ) from None
    sys.stderr.write(f"downloading {url} to {dest}\n")
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            with progress.stage(f"downloading {dest.name}", total, "bytes") as advance:
                while block := response.read(1 << 20):
                    h.update(block)
                    f.write(block)
                    advance(len(block))
        if h.hexdigest() != md5:
            raise DataError(
                f"the download of {url} has MD5 {h.hexdigest()}, expected {md5}; "
                f"place the official archive at {dest} by hand"
            )
        os.replace(tmp, dest)
    except (OSError, http.client.HTTPException, ValueError) as e:
        if isinstance(e, DataError):
            raise
        # URLError carries the cause in .reason; HTTPError's text has the status code.
        cause = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        reason = one_line(cause)
        raise DataError(
            f"could not download {url} ({reason}); place the archive at {dest}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class _Unpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds: dicts, lists, bytes, ints and numpy arrays.

    The batches are pickles, and a pickle can call any importable function; this one resolves
    a short allow-list of globals and refuses every other.
    """

    def find_class(self, module: str, name: str) -> Any:
        obj = _safe_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refused to load the global {module}.{name}")
        return obj


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The globals a CIFAR pickle may name: array and dtype reconstruction, latin-1 bytes."""
    return {
        # Python 2 pickles (the official files) name numpy.core; numpy 2 writes numpy._core.
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes as _codecs.encode(str, "latin1") under protocol 2.
        ("_codecs", "encode"): codecs.encode,
    }


def _unpickle(path: Path, what: str) -> dict[bytes, Any]:
    """The dict pickled in the CIFAR file ``path``, through the restricted unpickler."""
    try:
        with open(path, "rb") as f:
            obj = _Unpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(
            f"{path} is not a valid {what} file ({one_line(e)}); delete it and load again "
            "to re-extract or re-download it"
        ) from None
    except (IndexError, KeyError, OverflowError, MemoryError) as e:
        raise DataError(
            f"{path} is corrupt ({type(e).__name__}); delete it and load again to re-extract it"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read {path} ({one_line(e)}); check its permissions") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a {what} dict; delete it")
    return obj


def _read_batch(path: Path, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 32, 32]`` and labels of one CIFAR batch file, validated."""
    batch = _unpickle(path, f"{fmt.title} batch")
    data, labels = batch.get(b"data"), batch.get(fmt.label_key)
    fix = "delete it and load again to re-extract it"
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path} has no uint8 image matrix under b'data'; {fix}")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path} has rows of {data.shape[1]} bytes, not 3072; {fix}")
    if not isinstance(labels, list | np.ndarray):
        raise DataError(f"{path} has no label list under {fmt.label_key!r}; {fix}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path} has labels that are not integers; {fix}") from None
    if y.shape != (len(data),):
        raise DataError(f"{path} has {len(y)} labels for {len(data)} images; {fix}")
    if len(y) and (y.min() < 0 or y.max() >= fmt.classes):
        raise DataError(f"{path} has labels outside 0..{fmt.classes - 1}; {fix}")
    # Each row holds the red, green and blue planes of a 32x32 image, row-major.
    return data.reshape(-1, 3, 32, 32), y


def _read_names(path: Path, fmt: Format) -> tuple[str, ...]:
    """The class names in a CIFAR meta file."""
    names = _unpickle(path, f"{fmt.title} meta").get(fmt.names_key)
    if (
        not isinstance(names, list)
        or len(names) != fmt.classes
        or not all(isinstance(n, bytes | str) for n in names)
    ):
        raise DataError(
            f"{path} lacks {fmt.classes} class names under {fmt.names_key!r}; delete it and "
            "load again to re-extract it"
        )
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _write_atomic(dest: Path, payload: bytes) -> None:
    """Write ``dest`` atomically (:func:`nas.fileio.write_atomic`); a failure is a DataError."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, lambda f: f.write(payload))
    except OSError as e:  # WriteError is an OSError too
        raise DataError(
            f"cannot write {dest} ({one_line(e)}); free some space or pass a writable data_dir"
        ) from None


def _extract(archive: Path, fmt: Format, root: Path, progress: LoadProgress = SILENT) -> None:
    """Extract the batch files of ``archive`` into ``root/fmt.folder``, checking its MD5 first.

    Only regular members with the expected names are read, and they are written to paths this
    function builds, so a hostile archive cannot write elsewhere (no path traversal).
    ``progress`` is told how much of the archive is read, and where the batches went.
    """
    got = file_md5(archive)
    if got != fmt.md5:
        raise DataError(
            f"{archive} has MD5 {got}, expected {fmt.md5} (truncated or not the official "
            f"archive); delete it and load again to download it, or place a good copy there"
        )
    wanted = {f"{fmt.folder}/{f}": f for f in fmt.files}
    found: set[str] = set()
    written = read = 0
    size = archive.stat().st_size
    try:
        with (
            progress.stage(f"extracting {archive.name}", size, "bytes") as advance,
            open(archive, "rb") as raw,
            tarfile.open(fileobj=raw, mode="r:gz") as tar,
        ):
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has data
                payload = src.read()  # at most 160 MB
                _write_atomic(root / fmt.folder / name, payload)
                found.add(name)
                written += len(payload)
                advance(raw.tell() - read)
                read = raw.tell()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({one_line(e)}); delete it and load again "
            "to download it, or place a good copy there"
        ) from None
    missing = [f for f in fmt.files if f not in found]
    if missing:
        raise DataError(
            f"{archive} lacks {fmt.folder}/{', '.join(missing)}; it is not the official "
            f"{fmt.title} archive: delete it and place the official one there"
        )
    progress.note(
        f"extracted {fmt.title} to {root / fmt.folder} ({size_text(written)}; {archive.name} "
        f"stays beside it, {size_text(size)})"
    )


def _extracted(fmt: Format, root: Path, download_ok: bool, progress: LoadProgress = SILENT) -> Path:
    """The extracted folder of ``fmt`` under ``root``: extracted or downloaded if need be."""
    folder = root / fmt.folder
    if all((folder / f).is_file() for f in fmt.files):
        return folder
    archive = root / fmt.archive
    if not archive.is_file():
        if not download_ok:
            raise DataError(
                f"{fmt.title} is not in {root}: place {fmt.archive} (from {fmt.url}) or its "
                f"extracted {fmt.folder}/ there, or allow downloading"
            )
        download(fmt.url, archive, fmt.md5, progress)
    _extract(archive, fmt, root, progress)
    return folder


def load(
    fmt: Format,
    root: Path,
    classes: int | None,
    eval_test: bool,
    download_ok: bool,
    progress: LoadProgress = SILENT,
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Class names, training images and labels, and the test split if ``eval_test`` (else
    None, None) of ``fmt`` under ``root``, keeping its first ``classes`` classes; a download
    or extraction is told to ``progress``."""
    folder = _extracted(fmt, root, download_ok, progress)
    names = _read_names(folder / fmt.meta, fmt)
    parts = [_read_batch(folder / f, fmt) for f in fmt.train]
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    test_x, test_y = _read_batch(folder / fmt.test, fmt) if eval_test else (None, None)
    n = classes or fmt.classes
    if n > fmt.classes:
        raise DataError(f"{fmt.title} has {fmt.classes} classes, cannot keep {n}")
    if n < fmt.classes:  # keep the first n classes, as for ImageNet subsets
        keep = train_y < n
        train_x, train_y = train_x[keep], train_y[keep]
        if test_y is not None and test_x is not None:
            keep = test_y < n
            test_x, test_y = test_x[keep], test_y[keep]
    return names[:n], train_x, train_y, test_x, test_y
