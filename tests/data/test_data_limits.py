"""Inputs that must be refused before any training: one class, a device that is not here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PIL import Image

import cli
from tests.helpers import refused


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
    err = refused(capsys, [*base, *extra, "--classes", "1", "--quiet"])
    assert "at least 2 classes" in err
    one = _folder(tmp_path / "one", classes=1, per_class=40)
    data = ["--dataset", "folder", "--data-dir", str(one), "--train-images", "20"]
    err = refused(capsys, [*base, *extra, *data, "--quiet"])
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
    err = refused(capsys, [*args, "--device", "cuda:5"])
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


def _bomb_png(path: Path, side: int = 16_000) -> Path:
    """A 1-bit PNG of ``side`` x ``side`` zeros: a few dozen KB that decode to side² pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte and the packed bits of one row
    pixels = zlib.compressobj(9)
    idat = b"".join(pixels.compress(row) for _ in range(side)) + pixels.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("command", ["train", "search"])
@pytest.mark.parametrize("how", ["folder", "zip", "resolution"])
def test_a_decompression_bomb_is_refused_from_its_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, how: str
) -> None:
    """A PNG declaring 16000x16000 pixels ends in one line naming it and the limit, exit 2,
    whether the images' size is read (common resolution) or the image decoded (--resolution)."""
    import time
    import zipfile

    root = _folder(tmp_path / "tree", classes=2, per_class=30)
    bomb = _bomb_png(root / "train" / "class1" / "0007.png")
    assert bomb.stat().st_size < 100_000
    data_dir = root
    if how == "zip":
        data_dir = tmp_path / "tree.zip"
        with zipfile.ZipFile(data_dir, "w") as z:
            for p in sorted(root.rglob("*.png")):
                z.write(p, p.relative_to(root).as_posix())
    base = ["train", "--epochs", "1"] if command == "train" else SEARCH
    extra = (
        ["--storage", f"sqlite:///{tmp_path / 's.db'}"]
        if command == "search"
        else ["--out", str(tmp_path / "run")]
    )
    data = ["--dataset", "folder", "--data-dir", str(data_dir), "--train-images", "20"]
    if how == "resolution":
        data += ["--resolution", "8"]
    t0 = time.perf_counter()
    err = refused(capsys, [*base, *extra, *data, "--quiet"])
    assert time.perf_counter() - t0 < 5
    assert "0007.png declares 16000x16000 = 256,000,000 pixels" in err, err
    assert "150,000,000" in err and "RESNEXT_NAS_MAX_IMAGE_PIXELS" in err


def test_the_pixel_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$RESNEXT_NAS_MAX_IMAGE_PIXELS lowers or raises the limit; a bad value is refused."""
    from nas.data import folder

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    monkeypatch.setenv("RESNEXT_NAS_MAX_IMAGE_PIXELS", "50_000")
    with pytest.raises(ValueError, match="300x200 = 60,000 pixels, over the limit of 50,000"):
        folder.image_size(big)
    monkeypatch.setenv("RESNEXT_NAS_MAX_IMAGE_PIXELS", "60000")
    assert folder.image_size(big) == (300, 200)
    assert folder.decode(big, 8).shape == (3, 8, 8)
    monkeypatch.setenv("RESNEXT_NAS_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="must be a positive integer"):
        folder.image_size(big)
    # Past Pillow's own refusal (twice its 89.5 MP), the raised limit is the one that counts.
    bomb = _bomb_png(tmp_path / "bomb.png", side=14_000)
    monkeypatch.setenv("RESNEXT_NAS_MAX_IMAGE_PIXELS", "200000000")
    assert folder.image_size(bomb) == (14_000, 14_000)


def _zeros_archive(path: Path, mb: int, root: Path) -> Path:
    """``root``'s images plus ``train/class0/huge.bmp``: ``mb`` MB of zeros, in a zip or tar.gz."""
    import io
    import tarfile
    import zipfile

    files = sorted(root.rglob("*.png"))
    zeros = b"\0" * (mb << 20)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, p.relative_to(root).as_posix())
            z.writestr("train/class0/huge.bmp", zeros)
    else:
        with tarfile.open(path, "w:gz") as t:
            for p in files:
                t.add(p, p.relative_to(root).as_posix())
            info = tarfile.TarInfo("train/class0/huge.bmp")
            info.size = len(zeros)
            t.addfile(info, io.BytesIO(zeros))
    return path


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz"])
def test_an_archive_bomb_is_refused_and_leaves_nothing(
    tmp_path: Path,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """An archive that extracts to more than MAX_RATIO times its size (8 MB of zeros in a few
    KB) is refused in one line naming the setting that raises the cap, with nothing left in the
    cache; raising the ratio lets it through."""
    from nas.data import archive

    monkeypatch.setattr(archive, "RATIO_FREE_BYTES", 1 << 20)  # the bomb stays small and fast
    root = _folder(tmp_path / "tree", classes=2, per_class=10)
    bomb = _zeros_archive(tmp_path / name, 8, root)
    assert bomb.stat().st_size < 100_000
    args = ["train", "--epochs", "1", "--dataset", "folder", "--data-dir", str(bomb)]
    args += ["--out", str(tmp_path / "run"), "--quiet", "--train-images", "10"]
    err = refused(capsys, args)
    assert f"{bomb} extracts to more than 100 times its own size" in err
    assert "RESNEXT_NAS_MAX_ARCHIVE_RATIO" in err
    assert list(cache.rglob("*")) in ([], [cache / "extracted"])
    # The total cap, whatever the ratio.
    monkeypatch.setenv("RESNEXT_NAS_MAX_ARCHIVE_RATIO", "100000")
    monkeypatch.setenv("RESNEXT_NAS_MAX_EXTRACTED_BYTES", str(4 << 20))
    err = refused(capsys, args)
    assert f"more than {4 << 20:,} bytes" in err and "RESNEXT_NAS_MAX_EXTRACTED_BYTES" in err
    assert list(cache.rglob("*")) in ([], [cache / "extracted"])
    monkeypatch.delenv("RESNEXT_NAS_MAX_EXTRACTED_BYTES")
    (extracted,) = archive.extract(bomb, cache / "extracted").parent.iterdir()
    assert (extracted / "train" / "class0" / "huge.bmp").stat().st_size == 8 << 20


def test_extraction_counts_the_bytes_it_writes_not_the_declared_sizes(tmp_path: Path) -> None:
    """Declared sizes can lie: the copy counts what is read and stops at the cap."""
    import io

    from nas.data import archive

    budget = archive._Budget(tmp_path / "a.zip", 1000)
    budget.cap = 3 << 20
    sink = io.BytesIO()
    with pytest.raises(ValueError, match="zip or tar bomb"):
        budget.copy(io.BytesIO(b"\0" * (5 << 20)), sink)
    assert sink.tell() <= 3 << 20


def test_a_bad_image_in_an_archive_removes_its_extraction(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A decode error (here a decompression bomb) removes the extracted folder, so that the
    next try extracts again instead of reusing a condemned tree."""
    import zipfile

    root = _folder(tmp_path / "tree", classes=2, per_class=10)
    _bomb_png(root / "train" / "class1" / "0003.png")
    packed = tmp_path / "t.zip"
    with zipfile.ZipFile(packed, "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(root).as_posix())
    args = ["train", "--epochs", "1", "--dataset", "folder", "--data-dir", str(packed)]
    err = refused(capsys, [*args, "--out", str(tmp_path / "run"), "--quiet"])
    assert "0003.png declares 16000x16000" in err
    assert list((cache / "extracted").iterdir()) == []


class _Stop(Exception):
    """Raised in place of the search itself: the test needs only what it was given."""


def test_search_ranks_on_enough_validation_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On 600 images, --val-fraction 0.02 would score every trial on 12 (every trial read
    75.0%): the split is raised to MIN_VAL_IMAGES with a note, and the split sizes are printed
    at the start; where the training subset leaves too few images, one line says how many."""
    from nas.data import MIN_VAL_IMAGES
    from nas.search import workers

    seen = []

    def stop(settings: object, data: object, *args: object, **kwargs: object) -> None:
        seen.append(data)
        raise _Stop

    monkeypatch.setattr(workers, "run_search", stop)
    root = _folder(tmp_path / "tree", classes=4, per_class=150)
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = [*SEARCH, "--storage", db, "--dataset", "folder", "--data-dir", str(root)]
    with pytest.raises(_Stop):
        cli.main([*args, "--train-images", "400", "--val-fraction", "0.02"])
    out, err = capsys.readouterr()
    (data,) = seen
    assert (len(data.train_y), len(data.val_y)) == (400, 100) == (400, MIN_VAL_IMAGES)
    assert "folder: 4 classes, 8x8 images, 400 train / 100 val" in out
    assert "note: the validation split holds 100 images instead of 12" in err
    err = refused(capsys, [*args, "--train-images", "550", "--val-fraction", "0.02", "--quiet"])
    assert "600 training images, too few to score trials on the 100 validation images" in err
    assert "pass --train-images 500 or fewer" in err


def test_train_prints_its_split_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nas.training import loop as train

    def stop(*args: object, **kwargs: object) -> None:
        raise _Stop

    monkeypatch.setattr(train, "train", stop)
    root = _folder(tmp_path / "tree", classes=2, per_class=30)
    args = ["train", "--dataset", "folder", "--data-dir", str(root), "--epochs", "1"]
    with pytest.raises(_Stop):
        cli.main([*args, "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert out.startswith("folder: 2 classes, 8x8 images, 54 train / 6 val")
