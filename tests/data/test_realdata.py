"""Real images: a small ResNeXt trained through the CLI on a subset of real CIFAR-10."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nas.data import load_dataset
from tests.data.realdata import cifar_subset
from tests.helpers import cli_env, run_cli

TRAIN, TEST = 100, 50  # images a class taken from the shared tarball


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 train and 50 test images a class of real CIFAR-10, as a .tar.gz with its top folder."""
    return cifar_subset(tmp_path_factory.mktemp("cifar") / "cifar10-sub.tar.gz", TRAIN, TEST)


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """The CLI with its own cache, on one thread: no OpenMP spin-waiting when other jobs
    share the 2 cores (tests/data/test_data.py)."""
    env = cli_env(RESNEXT_NAS_DATA=str(cache), OMP_NUM_THREADS="1")
    return run_cli(*args, env=env, timeout=900)


def test_subset_loads_as_cifar(subset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "cache"))
    ds = load_dataset("folder", data_dir=subset, val_fraction=0.1, eval_test=True)
    names = "airplane automobile bird cat deer dog frog horse ship truck"  # the README's
    assert ds.class_names == tuple(names.split())
    assert (ds.resolution, ds.kind, ds.template) == (32, "cifar", "cifar")
    assert (len(ds.train_y), len(ds.val_y)) == (900, 100)
    assert ds.test_y is not None and np.bincount(ds.test_y).tolist() == [TEST] * 10
    # Real photographs: colour varies within an image, unlike a solid fill.
    assert ds.train_x.std(axis=(2, 3)).mean() > 20
    # The extracted folder is a dataset too, with the same images.
    (extracted,) = (tmp_path / "cache" / "extracted").iterdir()
    again = load_dataset("folder", data_dir=extracted / "cifar10-jpg", val_fraction=0.1)
    assert np.array_equal(again.train_x, ds.train_x) and np.array_equal(again.val_y, ds.val_y)


def test_search_study_and_calibrate_run_on_the_archive(subset: Path, tmp_path: Path) -> None:
    """The commands that train take the archive as --data-dir (tiny runs: 1 epoch, 100 images)."""
    data = ["--dataset", "folder", "--data-dir", str(subset), "--train-images", "100"]
    data += ["--epochs", "1", "--val-fraction", "0.05"]
    db = f"sqlite:///{tmp_path / 's.db'}"
    cache = tmp_path / "cache"
    study = ["--storage", db, "--json", "--no-latency", "--no-save-weights"]
    runs = {
        # --confirm 0: a search of one proxy trial, without the confirmation phase
        "search": (["search", "--trials", "1", "--confirm", "0", *study], 1),
        "study run": (["study", "run", "cardinality-vs-width", "--seeds", "1", *study], 5),
    }
    for command, (args, trials) in runs.items():
        res = _cli(*args, *data, "--classes", "3", cache=cache)
        assert res.returncode == 0, (command, res.stderr)
        counts = json.loads(res.stdout)["trials"]
        counts.pop("rejected", None)  # a proposal in a cell with no in-band d costs nothing
        assert counts == {"COMPLETE": trials}
    out = tmp_path / "cal.json"
    args = ["calibrate", *data, "--k", "3", "--factor", "2", "--images-per-class", "60"]
    res = _cli(*args, "--out", str(out), "--json", cache=cache)
    assert res.returncode == 0, res.stderr
    cal = json.loads(out.read_text())
    assert len(cal["configs"]) == 3 and cal["options"]["images_per_class"] == 60
    assert all(r["long_val_accuracy"] is not None for r in cal["configs"])


def test_small_resnext_learns_real_images(subset: Path, tmp_path: Path) -> None:
    """Trained through `resnext-nas train` on 900 real images, a 27k-parameter ResNeXt (C=4,
    d=2, one block a stage) scores its 500 held-out test images well above chance (10%)."""
    args = ["train", "--dataset", "folder", "--data-dir", str(subset), "--template", "cifar"]
    args += ["--depths", "1,1,1", "--width", "32", "--cardinality", "4", "--bottleneck-width"]
    args += ["2", "--epochs", "12", "--batch-size", "32", "--lr", "0.05", "--val-fraction"]
    args += ["0.1", "--eval-test", "--json", "--out", str(tmp_path / "run")]
    res = _cli(*args, cache=tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["dataset"] == {
        "name": "folder",
        "kind": "cifar",
        "classes": 10,
        "resolution": 32,
        "train_images": 900,
        "val_images": 100,
    }
    # Chance is 10%; 500 test images put 25% over 11 standard errors above it.
    assert record["test_accuracy"] > 0.25, record["history"]
