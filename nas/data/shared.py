"""One copy of a dataset's images for a search's local worker processes.

:func:`publish` writes each array of a :class:`Dataset` as a ``.npy`` file in a private folder and
points the dataset at memory maps of those files; the :class:`SharedData` it returns is small
and pickles to the workers, which map the same files (:meth:`SharedData.open`). The pages are
the kernel's, mapped by every process, so the parent and N workers hold one copy of the images
between them where a pickled dataset gave each process a copy of its own.

The folder is ``/dev/shm`` (memory, no disk write) where it has room, else ``shared/`` in
:func:`default_data_dir`. Its name carries the publishing process's id, so a folder whose process
no longer runs (one killed outright) is swept by the next :func:`publish`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.data.cache import default_data_dir
from nas.data.loader import Dataset

SHM = Path("/dev/shm")
# A search takes at most this share of /dev/shm's free space: others use it too (PyTorch's
# DataLoader workers, NCCL), and a full tmpfs fails them. Docker's default 64 MB /dev/shm holds
# less than CIFAR-10's 150 MB, which then goes to the cache folder.
SHM_SHARE = 0.5
PREFIX = "resnext-nas-"  # then the owner's process id, "-" and mkdtemp's random part
# A folder younger than this is never swept: a process of another PID namespace that shares
# /dev/shm (a container) looks dead from here, and its workers map their files within seconds
# of the publish, after which deleting the files no longer hurts them.
SWEEP_AGE = 600.0
# Copy-on-write maps ("c"): their pages are the shared file's until a process writes one, which
# then copies only that page. Read-only maps ("r") would do for the trainer, which only reads,
# but torch.from_numpy warns on them, and a write through the tensor would kill the worker with
# SIGSEGV instead of touching a private copy.
MMAP_MODE = "c"


@dataclass(frozen=True)
class SharedData:
    """A published :class:`Dataset`: the folder of its arrays and its other fields."""

    folder: str
    arrays: tuple[str, ...]  # the Dataset fields stored as <field>.npy in ``folder``
    fields: dict[str, Any]  # the other fields as they were (a missing test split: None)

    def open(self) -> Dataset:
        """The dataset, its arrays mapped from the folder's files."""
        mapped = {k: np.load(Path(self.folder) / f"{k}.npy", MMAP_MODE) for k in self.arrays}
        return Dataset(**self.fields, **mapped)

    def remove(self) -> None:
        """Delete the folder; maps already open stay valid (the kernel frees them with the last)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def publish(data: Dataset) -> SharedData | None:
    """Write ``data``'s arrays to a private folder and switch ``data`` to maps of them.

    The caller removes the folder (:meth:`SharedData.remove`) when its workers are done; if it
    cannot (an error between the two), the folder goes when the handle is collected or the
    interpreter exits, and after a kill by the next :func:`publish`. None, after one warning line
    on stderr, where no folder takes the arrays (a full or read-only disk): the caller then
    pickles ``data`` to each worker.
    """
    values = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    others = {k: v for k, v in values.items() if k not in arrays}
    size = sum(a.nbytes for a in arrays.values())
    failures = []
    for place in (SHM, _cache()):
        sweep(place)
    for base in _bases(size):
        folder = None
        try:
            base.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
            for k, a in arrays.items():
                np.save(folder / f"{k}.npy", a, allow_pickle=False)
            handle = SharedData(str(folder), tuple(arrays), others)
            mapped = handle.open()
        except (OSError, ValueError) as e:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            failures.append(f"{base}: {getattr(e, 'strerror', None) or e}")
            continue
        weakref.finalize(handle, shutil.rmtree, str(folder), True)
        for k in arrays:
            setattr(data, k, getattr(mapped, k))  # the process's own copy is freed
        return handle
    sys.stderr.write(
        f"warning: each worker gets its own copy of the images ({size / 2**20:,.0f} MB): they "
        f"could not be shared through a file ({'; '.join(failures)})\n"
    )
    return None


def _bases(size: int) -> list[Path]:
    """Where the arrays may go, best first: /dev/shm if ``size`` fits, then the cache folder."""
    bases = [_cache()]
    try:
        st = os.statvfs(SHM)
        if size <= SHM_SHARE * st.f_bavail * st.f_frsize and os.access(SHM, os.W_OK | os.X_OK):
            bases.insert(0, SHM)
    except (OSError, AttributeError):  # no /dev/shm (macOS), or no statvfs (Windows)
        pass
    return bases


def _cache() -> Path:
    """``shared/`` in the data folder: where the arrays go when /dev/shm cannot take them."""
    return default_data_dir() / "shared"


def sweep(base: Path) -> list[Path]:
    """Delete the folders in ``base`` that this user's processes published and that no longer
    run (killed before they could clean up), once :data:`SWEEP_AGE` old; the folders deleted.

    A process id that another process took since stays until that one ends too.
    """
    gone = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return gone
    for path in entries:
        owner = path.name.removeprefix(PREFIX).split("-")[0]
        if not path.name.startswith(PREFIX) or not owner.isdigit() or _running(int(owner)):
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        old = time.time() - st.st_mtime >= SWEEP_AGE
        if old and path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts)."""
    if sys.platform.startswith("win"):
        return True  # os.kill(pid, 0) ends the process there; such folders are never swept
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
