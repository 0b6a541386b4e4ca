"""The images a search's worker processes share: one published copy, mapped by every process
(:mod:`nas.data.shared`), its folder gone when the search ends however it ends."""

from __future__ import annotations

import copy
import dataclasses
import errno
import mmap
import os
import pickle
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import Dataset, shared
from nas.search import workers
from nas.search.attrs import is_trained_proxy
from nas.search.storage import load
from nas.search.study import SearchSettings
from nas.search.workers import run_search
from tests.helpers import TRAIN, sqlite, tiny_space, toy_data


@pytest.fixture
def places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """This test's own /dev/shm stand-in and data folder: (shm, the data folder's shared/)."""
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(shared, "SHM", shm)
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "data"))
    return shm, tmp_path / "data" / "shared"


def published(places: tuple[Path, Path]) -> list[Path]:
    """The folders publish() left in either place."""
    return [p for place in places if place.is_dir() for p in place.iterdir()]


def assert_same(a: Dataset, b: Dataset) -> None:
    for f in dataclasses.fields(Dataset):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, f.name
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("pattern", ["bands", "stripes"])  # without and with a test split
def test_a_handle_round_trips_a_dataset(places: tuple[Path, Path], pattern: str) -> None:
    data = dataclasses.replace(
        toy_data(48, classes=4, pattern=pattern),  # type: ignore[arg-type]
        class_names=("a", "b", "c", "d"),
        template="imagenet",
        note="a note",
    )
    assert (data.test_x is not None) == (pattern == "stripes")
    expected = copy.deepcopy(data)
    handle = shared.publish(data)
    assert handle is not None
    opened = pickle.loads(pickle.dumps(handle)).open()  # as a spawned worker gets it
    assert_same(opened, expected)
    assert_same(data, expected)  # the publisher switched to the maps, same values
    assert isinstance(data.train_x, np.memmap)
    assert published(places) == [Path(handle.folder)]
    assert Path(handle.folder).parent == places[0]  # /dev/shm first, where it has room
    handle.remove()
    assert published(places) == []
    assert np.array_equal(data.train_x, expected.train_x)  # open maps outlive the files


def test_the_opened_arrays_are_copy_on_write_maps(places: tuple[Path, Path]) -> None:
    data = toy_data(32)
    before = data.train_x.copy()
    handle = shared.publish(data)
    assert handle is not None
    a, b = handle.open(), handle.open()
    for x in (a.train_x, a.train_y, a.val_x, a.val_y):
        assert isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a read-only map would warn here
        torch.from_numpy(np.ascontiguousarray(a.train_x))[0] = 0
    assert not a.train_x[0].any()  # the write lands in this process's private page ...
    assert np.array_equal(b.train_x, before) and np.array_equal(data.train_x, before)  # only
    handle.remove()


def test_the_parent_swaps_its_copy_for_the_maps(places: tuple[Path, Path]) -> None:
    data = toy_data(32)
    handle = shared.publish(data)
    assert handle is not None
    for k in handle.arrays:
        x = getattr(data, k)
        assert isinstance(x, np.memmap) and Path(x.filename).parent == Path(handle.folder)
    handle.remove()


def test_stale_folders_are_swept(places: tuple[Path, Path]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()  # its id no longer runs
    dead, alive, young = (
        f"{shared.PREFIX}{p}" for p in (f"{proc.pid}-x", f"{os.getpid()}-y", f"{proc.pid}-young")
    )
    old = time.time() - shared.SWEEP_AGE - 1
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        for name in (dead, alive, young, "someone-else"):
            (place / name).mkdir()
            (place / name / "train_x.npy").write_bytes(b"")
            if name != young:
                os.utime(place / name, (old, old))
    handle = shared.publish(toy_data(16))
    assert handle is not None
    left = sorted(p.name for p in published(places) if p != Path(handle.folder))
    # A running owner's folder stays, and so does a dead one's younger than SWEEP_AGE.
    assert left == sorted([alive, young, "someone-else"] * 2)
    handle.remove()


@pytest.mark.parametrize("fault", ["disk full", "not a folder"])
def test_a_failing_publish_falls_back_with_one_warning(
    places: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    if fault == "disk full":

        def save(*_args: object, **_kw: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(np, "save", save)
    else:  # root ignores permissions, so the folders are made impossible instead
        (tmp_path / "file").write_text("")
        monkeypatch.setattr(shared, "SHM", tmp_path / "file")
        monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "file" / "data"))
    data = toy_data(16)
    expected = copy.deepcopy(data)
    assert shared.publish(data) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: each worker gets its own copy")
    assert "Traceback" not in err
    assert published(places) == []  # a half-written folder is removed
    assert not isinstance(data.train_x, np.memmap)
    assert_same(data, expected)


class _Spy:
    """Records the handles run_search publishes."""

    def __init__(self) -> None:
        self.handles: list[shared.SharedData | None] = []

    def __call__(self, data: Dataset) -> shared.SharedData | None:
        handle = shared.publish(data)
        self.handles.append(handle)
        return handle


def test_two_workers_train_on_the_shared_images_and_the_folder_goes(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spy = _Spy()
    monkeypatch.setattr(workers, "publish", spy)
    url = sqlite(tmp_path)
    settings = SearchSettings(tiny_space(), study="shared", pruner="none", latency=False)
    data = toy_data()
    reports = run_search(settings, data, TRAIN, 2, storage=url, workers=2)
    assert sum(r.trials for r in reports) == 2
    assert sum(is_trained_proxy(t) for t in load("shared", url).trials) == 2
    (handle,) = spy.handles
    assert handle is not None and isinstance(data.train_x, np.memmap)
    assert Path(data.train_x.filename).parent == Path(handle.folder)
    assert published(places) == []


def test_one_worker_publishes_nothing(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spy = _Spy()
    monkeypatch.setattr(workers, "publish", spy)
    settings = SearchSettings(tiny_space(), study="one", pruner="none", latency=False)
    data = toy_data()
    run_search(settings, data, TRAIN, 1, storage=sqlite(tmp_path))
    assert spy.handles == [] and not isinstance(data.train_x, np.memmap)


@pytest.mark.parametrize("stop", [RuntimeError("the pool broke"), KeyboardInterrupt()])
def test_the_folder_goes_when_the_search_raises(
    places: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stop: BaseException,
) -> None:
    spy = _Spy()
    monkeypatch.setattr(workers, "publish", spy)

    def gather(*_args: object) -> None:
        assert len(published(places)) == 1  # the workers' images are there while they run
        raise stop

    monkeypatch.setattr(workers._Pool, "gather", gather)
    settings = SearchSettings(tiny_space(), study="raises", pruner="none", latency=False)
    with pytest.raises(type(stop)):
        run_search(settings, toy_data(), TRAIN, 2, storage=sqlite(tmp_path), workers=2)
    assert len(spy.handles) == 1 and spy.handles[0] is not None
    assert published(places) == []
