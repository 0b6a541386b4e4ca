"""Inputs that must be refused before any training: one class, a device that is not here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PIL import Image

import cli


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder for every test (decoded arrays, extracted archives)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def _folder(root: Path, classes: int, per_class: int, side: int = 8) -> Path:
    """An ImageFolder tree of solid PNGs: ``classes`` folders of ``per_class`` images."""
    for c in range(classes):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (side, side), (40 * c % 256, i % 256, 0)).save(d / f"{i:04d}.png")
    return root


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a command that must exit 2."""
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


SEARCH = ["search", "--trials", "1", "--epochs", "1", "--no-latency", "--no-save-weights"]


@pytest.mark.parametrize("command", ["train", "search"])
def test_one_class_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """One class scores 100% whatever the network: `--classes 1` and a one-class folder are
    refused in one line before anything trains."""
    base = ["train", "--epochs", "1"] if command == "train" else SEARCH
    db = f"sqlite:///{tmp_path / 's.db'}"
    extra = ["--storage", db] if command == "search" else ["--out", str(tmp_path / "run")]
    err = _refused([*base, *extra, "--classes", "1", "--quiet"], capsys)
    assert "at least 2 classes" in err
    one = _folder(tmp_path / "one", classes=1, per_class=40)
    data = ["--dataset", "folder", "--data-dir", str(one), "--train-images", "20"]
    err = _refused([*base, *extra, *data, "--quiet"], capsys)
    assert "has 1 class" in err and "at least 2 classes" in err


def test_a_missing_device_leaves_no_failed_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`search --device cuda:5` where there is no such GPU is refused before the storage is
    opened: the study file holds no trials (it used to hold 3 FAIL trials)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    db = tmp_path / "s.db"
    args = [*SEARCH, "--storage", f"sqlite:///{db}", "--train-images", "64", "--quiet"]
    err = _refused([*args, "--device", "cuda:5"], capsys)
    assert "cuda:5" in err and "not available" in err
    if db.exists():
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master")}
            rows = (
                con.execute("select count(*) from trials").fetchone()[0]
                if "trials" in tables
                else 0
            )
        assert rows == 0
