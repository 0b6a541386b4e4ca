"""Real ImageNet photos: a small sample of the shared Imagenette tarball read as an ImageNet
subset (README and checksums beside the splits, val/ held out, greyscale photos as RGB), and a
search on it that takes the ImageNet template's defaults and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from nas.data import data_template, load_dataset
from nas.search.attrs import ATTR
from nas.search.space import IMAGENET_SEARCH_DEPTHS, IMAGENET_SEARCH_FLOPS
from nas.training.config import IMAGENET_TRIAL
from tests.data.realdata import imagenette_sample
from tests.helpers import cli_env, run_cli

TRAIN, VAL = 12, 4  # photos a class; a search scores trials on 100 validation images at least
CLASSES = 10  # ../shared/data/README.md
GREY = "n01440764"  # the class that gets a generated greyscale photo


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample tree, plus one greyscale JPEG (mode L) in the first class of train/."""
    root = imagenette_sample(tmp_path_factory.mktemp("imagenette"), TRAIN, VAL)
    ramp = np.tile(np.arange(224, dtype=np.uint8), (224, 1))
    Image.fromarray(ramp, "L").save(root / "train" / GREY / "zz-grey.JPEG", quality=90)
    return root


def test_the_sample_loads_as_an_imagenet_subset(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "cache"))
    assert {p.name for p in sample.iterdir()} == {"README.txt", "SHA256SUMS", "train", "val"}
    assert data_template("folder", sample) == "imagenet"
    ds = load_dataset("folder", data_dir=sample, resolution=64, val_fraction=0.1, eval_test=True)
    # Photos seen at 64 px keep the ImageNet template and augmentation of their 224-px selves.
    assert (ds.classes, ds.resolution) == (CLASSES, 64)
    assert (ds.kind, ds.template) == ("imagenet", "imagenet")
    assert len(ds.train_y) + len(ds.val_y) == CLASSES * TRAIN + 1
    # val/ is the held-out split, whole and in class order.
    assert ds.test_x is not None and ds.test_y is not None
    assert ds.test_x.shape == (CLASSES * VAL, 3, 64, 64)
    assert np.bincount(ds.test_y).tolist() == [VAL] * CLASSES
    # Real photos, in colour: their channels differ (a greyscale photo's would not).
    assert np.abs(ds.test_x[:, 0].astype(int) - ds.test_x[:, 2]).mean() > 5
    # The greyscale photo: 3 equal channels, its ramp kept (dark left, bright right).
    full = load_dataset("folder", data_dir=sample, val_fraction=0.1)
    assert full.resolution == 224
    x = np.concatenate([full.train_x, full.val_x])
    y = np.concatenate([full.train_y, full.val_y])
    grey = [im for im, label in zip(x, y, strict=True) if label == 0 and (im[0] == im[1]).all()]
    assert len(grey) == 1 and (grey[0][0] == grey[0][2]).all()
    assert grey[0][0, :, :20].mean() < 30 < 200 < grey[0][0, :, -20:].mean()


def test_a_search_takes_the_imagenet_defaults_and_resumes(sample: Path, tmp_path: Path) -> None:
    """`search` on the photos with no size options: ImageNet template at 64 px on the default
    ImageNet space; a second run to 2 trials adds one and leaves the first alone."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    env = cli_env(RESNEXT_NAS_DATA=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["search", "--dataset", "folder", "--data-dir", str(sample), "--confirm", "0"]
    args += ["--epochs", "1", "--storage", db, "--json", "--no-latency", "--no-save-weights"]

    res = run_cli(*args, "--trials", "1", env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["trials"] == {"COMPLETE": 1}
    study = optuna.load_study(study_name="resnext-search", storage=db)
    space = study.user_attrs[ATTR]["space"]
    assert (space["template"], space["resolution"], space["classes"]) == ("imagenet", 64, 10)
    assert IMAGENET_TRIAL.resolution == 64
    assert [tuple(d) for d in space["depths"]] == list(IMAGENET_SEARCH_DEPTHS)
    assert space["budget"]["flops"] == IMAGENET_SEARCH_FLOPS
    (first,) = study.get_trials()

    res = run_cli(*args, "--trials", "2", env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["trials"] == {"COMPLETE": 2}
    trials = optuna.load_study(study_name="resnext-search", storage=db).get_trials()
    assert len(trials) == 2
    again = trials[0]
    assert (again.number, again.params, again.values) == (0, first.params, first.values)
    assert again.datetime_complete == first.datetime_complete  # not retrained
    assert trials[1].datetime_start > first.datetime_complete
    # `trials` shows the 64-px trials' FLOPs at 224 px too.
    res = run_cli("trials", "--storage", db, "--wide", env=env)
    assert res.returncode == 0, res.stderr
    head = next(ln for ln in res.stdout.splitlines() if "FLOPs @224" in ln)
    assert head.index("FLOPs @224") > head.index("FLOPs ")


def test_calibrate_takes_the_imagenet_defaults(sample: Path, tmp_path: Path) -> None:
    """`calibrate` on the photos picks the ImageNet template's band and trial, as `search` does."""
    env = cli_env(RESNEXT_NAS_DATA=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    out = tmp_path / "cal.json"
    res = run_cli(
        "calibrate", "--dataset", "folder", "--data-dir", str(sample), "--k", "3",
        "--epochs", "1", "--factor", "2", "--out", str(out), "--json", env=env, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    options = json.loads(out.read_text())["options"]
    assert options["budget"]["flops"] == IMAGENET_SEARCH_FLOPS
    assert [tuple(d) for d in options["depths"]] == list(IMAGENET_SEARCH_DEPTHS)
    assert options["template"] == "imagenet"
    assert (options["batch_size"], options["lr"]) == (IMAGENET_TRIAL.batch_size, IMAGENET_TRIAL.lr)
    assert options["val_fraction"] == IMAGENET_TRIAL.val_fraction
