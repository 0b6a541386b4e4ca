"""Image folders and archives of them: formats, modes, names, defaults, and every bad input."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from nas.data import archive, folder, load_dataset

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)
# One solid colour per (format, mode): what each decodes to in RGB.
SAMPLES = {
    "rgb.jpg": ("JPEG", "RGB", RED, RED),
    "grey.png": ("PNG", "L", 128, GREY),
    "alpha.webp": ("WEBP", "RGBA", (0, 0, 255, 100), BLUE),
    "palette.bmp": ("BMP", "P", 1, GREEN),  # palette index 1 is green below
    "cmyk.jpg": ("JPEG", "CMYK", (255, 0, 255, 0), GREEN),  # full cyan and yellow: green
    "palette-alpha.png": ("PNG", "P", 2, BLUE),  # with a transparent index
    "upper.JPEG": ("JPEG", "RGB", GREEN, GREEN),
}
# Spaces and unicode in names; classes are in code-point order, as ImageFolder sorts them.
CLASSES = tuple(sorted(("écureuil 松鼠", "chat noir", "zèbre")))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder for every test (decoded arrays, extracted archives)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(path))
    return path


def _image(path: Path, fmt: str, mode: str, value: object, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, value)  # type: ignore[arg-type]
    if mode == "P":
        im.putpalette([0, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 - 3) * 3)
    kwargs = {"transparency": 0} if path.name == "palette-alpha.png" else {}
    im.save(path, fmt, **kwargs)


def _tree(root: Path, size: tuple[int, int] = (24, 24), test: str | None = "test") -> Path:
    """Every sample in every class of train/ (and of ``test``), plus files to be ignored."""
    for split in ("train", test) if test else ("train",):
        for c in CLASSES:
            for name, (fmt, mode, value, _) in SAMPLES.items():
                _image(root / split / c / name, fmt, mode, value, size)
            (root / split / c / "notes.txt").write_text("not an image")
            (root / split / c / ".DS_Store").write_bytes(b"\0\1 hidden")
            (root / split / c / "._rgb.jpg").write_bytes(b"AppleDouble, hidden")
        (root / split / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class
        _image(root / split / ".ipynb_checkpoints" / "x.png", "PNG", "RGB", RED, size)
    return root


def test_formats_modes_and_names(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    ds = load_dataset("folder", data_dir=root, val_fraction=3 / 21, eval_test=True)
    assert ds.class_names == CLASSES and ds.classes == 3
    assert (ds.resolution, ds.kind, ds.template) == (24, "cifar", "cifar")
    assert len(ds.train_y) + len(ds.val_y) == 3 * len(SAMPLES)
    assert ds.test_x is not None and ds.test_y is not None
    assert ds.test_x.shape == (3 * len(SAMPLES), 3, 24, 24)
    # The test split is listed in sorted file order per class; every sample decodes to its RGB.
    names = sorted(SAMPLES)
    for i, (label, image) in enumerate(zip(ds.test_y, ds.test_x, strict=True)):
        assert label == i // len(names)
        want = SAMPLES[names[i % len(names)]][3]
        got = image.reshape(3, -1).mean(1)
        assert np.abs(got - np.array(want)).max() < 6, (names[i % len(names)], got)


def test_default_resolution_and_augmentation_follow_the_images(tmp_path: Path) -> None:
    big = _tree(tmp_path / "big", size=(80, 80), test=None)
    ds = load_dataset("folder", data_dir=big)
    assert (ds.resolution, ds.kind, ds.template) == (80, "imagenet", "imagenet")
    ds = load_dataset("folder", data_dir=big, resolution=40, augment="imagenet")
    # Resized smaller, they keep the template of the images they are (80 px: ImageNet).
    assert (ds.resolution, ds.kind, ds.template) == (40, "imagenet", "imagenet")
    # Images of several sizes: 64 px; one shared non-square size: its shorter side.
    _image(big / "train" / "zèbre" / "wide.png", "PNG", "RGB", RED, (90, 70))
    assert load_dataset("folder", data_dir=big).resolution == folder.MIXED_RESOLUTION
    wide = tmp_path / "wide"
    for c in ("a", "b"):
        for i in range(4):
            _image(wide / "train" / c / f"{i}.png", "PNG", "RGB", RED, (30, 20))
    assert load_dataset("folder", data_dir=wide, val_fraction=0.25).resolution == 20
    # ImageNet's defaults: 64 px and its augmentation and template, whatever the size.
    ds = load_dataset("imagenet", data_dir=big)
    assert (ds.resolution, ds.kind, ds.template) == (64, "imagenet", "imagenet")


def test_subsets_and_decoding_once(tmp_path: Path, decodes: list[Path]) -> None:
    root = _tree(tmp_path / "tree")
    seen = decodes
    kw = {"data_dir": root, "classes": 2, "images_per_class": 3, "val_fraction": 1 / 3}
    ds = load_dataset("folder", **kw)  # type: ignore[arg-type]
    assert ds.class_names == CLASSES[:2] and len(ds.train_y) + len(ds.val_y) == 6
    first = sorted(SAMPLES)[:3]
    assert sorted(p.name for p in seen) == sorted(first * 2)
    seen.clear()
    again = load_dataset("folder", **kw)  # type: ignore[arg-type]
    assert seen == [] and np.array_equal(again.train_x, ds.train_x)
    # A changed file changes the cache key; the tree itself is never written to.
    _image(root / "train" / CLASSES[0] / first[0], "PNG", "RGB", BLUE, (24, 24))
    load_dataset("folder", **kw)  # type: ignore[arg-type]
    assert len(seen) == 6
    assert not any(p.name.startswith(".resnext") for p in root.rglob("*"))


def _pack(tree: Path, dest: Path, top: str | None) -> Path:
    """``tree``'s files in an archive ``dest`` (by its suffix), under folder ``top`` if given."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    name = lambda p: (f"{top}/" if top else "") + p.relative_to(tree).as_posix()  # noqa: E731
    if dest.suffix == ".zip":
        with zipfile.ZipFile(dest, "w") as z:
            for p in files:
                z.write(p, name(p))
    else:
        with tarfile.open(dest, "w:gz" if dest.name.endswith("gz") else "w") as t:
            for p in files:
                t.add(p, name(p))
    return dest


@pytest.mark.parametrize(
    ("archive_name", "top"),
    [("t.tar", None), ("t.tar.gz", "cifar-like"), ("t.tgz", None), ("t.zip", "top folder")],
)
def test_archives_are_extracted_once(
    tmp_path: Path, cache: Path, archive_name: str, top: str | None
) -> None:
    tree = _tree(tmp_path / "tree")
    packed = _pack(tree, tmp_path / archive_name, top)
    ds = load_dataset("folder", data_dir=packed, val_fraction=3 / 21)
    plain = load_dataset("folder", data_dir=tree, val_fraction=3 / 21)
    assert ds.class_names == CLASSES and np.array_equal(ds.train_x, plain.train_x)
    extracted = [p for p in (cache / "extracted").iterdir()]
    assert len(extracted) == 1 and not extracted[0].name.startswith(".")
    stamp = extracted[0].stat().st_mtime_ns
    load_dataset("folder", data_dir=packed, val_fraction=3 / 21)
    assert [p for p in (cache / "extracted").iterdir()] == extracted
    assert extracted[0].stat().st_mtime_ns == stamp


def _noise_tree(folder: Path, n: int = 6) -> None:
    """Two classes of ``n`` distinct noise images each, JPEG and PNG, in ``folder/<class>/``."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(n):
            fmt = "JPEG" if i % 2 else "PNG"
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            (folder / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / c / f"{i}.{fmt.lower()}", fmt)


def test_a_plain_class_tree_is_split_as_a_train_folder_is(tmp_path: Path) -> None:
    """torchvision's ``root/<class>/`` layout: the same classes, images and validation split as
    the same files under ``train/`` (no val/ folder: the split is carved from them, seeded)."""
    _noise_tree(tmp_path / "plain")
    _noise_tree(tmp_path / "split" / "train")
    kw = {"val_fraction": 1 / 3, "seed": 3}
    plain = load_dataset("folder", data_dir=tmp_path / "plain", **kw)  # type: ignore[arg-type]
    split = load_dataset("folder", data_dir=tmp_path / "split", **kw)  # type: ignore[arg-type]
    assert plain.class_names == split.class_names == ("cat", "dog")
    assert (len(plain.train_y), len(plain.val_y)) == (8, 4)
    assert np.array_equal(plain.val_y, split.val_y) and np.array_equal(plain.val_y, [0, 0, 1, 1])
    for a, b in ((plain.train_x, split.train_x), (plain.val_x, split.val_x)):
        assert np.array_equal(a, b)
    assert len({x.tobytes() for x in plain.train_x} | {x.tobytes() for x in plain.val_x}) == 12
    # Another seed holds out other images; one top folder, and an archive of it, read the same.
    other = load_dataset("folder", data_dir=tmp_path / "plain", val_fraction=1 / 3, seed=4)
    assert not np.array_equal(other.val_x, plain.val_x)
    _noise_tree(tmp_path / "wrapped" / "photos")
    packed = _pack(tmp_path / "wrapped", tmp_path / "photos.tar.gz", None)
    for source in (tmp_path / "wrapped", packed):
        again = load_dataset("folder", data_dir=source, **kw)  # type: ignore[arg-type]
        assert again.class_names == ("cat", "dog") and np.array_equal(again.val_x, plain.val_x)


def test_an_interrupted_extraction_is_not_taken_for_a_finished_one(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = _pack(_tree(tmp_path / "tree"), tmp_path / "t.tar", None)
    real = tarfile.TarFile.extractfile
    partial: list[Path] = []

    def interrupted(self: tarfile.TarFile, member: object) -> object:
        extracting = [p for p in (cache / "extracted").glob(".*") if p.is_dir()]
        if sum(f.is_file() for p in extracting for f in p.rglob("*")) >= 4:
            partial.extend(extracting)  # four files written: Ctrl-C in the middle of it
            raise KeyboardInterrupt
        return real(self, member)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "extractfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("folder", data_dir=packed)
    (part,) = partial  # the extraction's own folder, under a name no finished one has
    assert part.name.startswith(".")
    assert list((cache / "extracted").iterdir()) == []  # no partial folder left
    # A killed extraction leaves its partial folder: never read, removed by the next one.
    (part / "train" / "a").mkdir(parents=True)
    monkeypatch.setattr(tarfile.TarFile, "extractfile", real)
    assert load_dataset("folder", data_dir=packed, val_fraction=3 / 21).classes == 3
    assert not part.exists()
    (done,) = (cache / "extracted").iterdir()
    assert not done.name.startswith(".")


def _evil_tar(path: Path, kind: str) -> Path:
    """A tar of a good tree plus one hostile member of ``kind``."""
    with tarfile.open(path, "w") as t:
        good = tarfile.TarInfo("tree/train/a/x.png")
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, "PNG")
        good.size = len(png.getvalue())
        t.addfile(good, io.BytesIO(png.getvalue()))
        bad = tarfile.TarInfo(
            {"dotdot": "tree/../../evil.png", "absolute": "/tmp/evil.png"}.get(kind, "tree/x")
        )
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "tree/train/a/x.png"
        elif kind == "device":
            bad.type, bad.devmajor, bad.devminor = tarfile.CHRTYPE, 1, 3
        t.addfile(bad, io.BytesIO(b"") if bad.isfile() else None)
    return path


def _zip_with(path: Path, name: str, mode: int = 0o100644) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        z.writestr(info, b"/etc/passwd")
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input: (the --data-dir to pass, what its error line says)."""
    cases: dict[str, tuple[Path, str]] = {}

    def tree(name: str) -> Path:
        root = tmp / name
        for c in ("a", "b"):
            for i in range(3):
                _image(root / "train" / c / f"{i}.jpg", "JPEG", "RGB", RED, (16, 16))
        return root

    corrupt = tree("corrupt")
    (corrupt / "train" / "b" / "1.jpg").write_bytes(b"\xff\xd8 garbage, not a JPEG")
    cases["corrupt image"] = (corrupt, "cannot decode " + str(corrupt / "train" / "b" / "1.jpg"))
    truncated = tree("truncated")
    big = truncated / "train" / "a" / "2.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, "JPEG")
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    cases["truncated image"] = (truncated, f"cannot decode {big}")
    empty_file = tree("zero-byte")
    (empty_file / "train" / "a" / "0.jpg").write_bytes(b"")
    cases["zero-byte image"] = (empty_file, "0.jpg (empty file)")
    empty_class = tree("empty-class")
    (empty_class / "train" / "c").mkdir()
    (empty_class / "train" / "c" / "readme.txt").write_text("no images here")
    cases["empty class folder"] = (empty_class, f"class folder {empty_class / 'train' / 'c'} has")
    other = tree("other-test-classes")
    _image(other / "test" / "a" / "0.jpg", "JPEG", "RGB", RED, (16, 16))
    _image(other / "test" / "z" / "0.jpg", "JPEG", "RGB", RED, (16, 16))
    cases["test classes differ"] = (other, "it lacks b; adds z")
    no_train = tmp / "no-train"
    (no_train / "images").mkdir(parents=True)
    (no_train / "other").mkdir()
    (no_train / "other" / "readme.txt").write_text("no images here")
    cases["no train folder"] = (
        no_train,
        f"no train/ folder or class folders of images in {no_train}",
    )
    for kind in ("dotdot", "absolute", "symlink", "hardlink", "device"):
        what = {"dotdot": "escapes", "absolute": "absolute name", "device": "device"}
        cases[f"tar {kind}"] = (_evil_tar(tmp / f"{kind}.tar", kind), what.get(kind, "link"))
    cases["zip dotdot"] = (_zip_with(tmp / "dd.zip", "t/../../evil.jpg"), "escapes")
    cases["zip symlink"] = (_zip_with(tmp / "ln.zip", "t/x.jpg", 0o120777), "a link")
    cases["zip device"] = (_zip_with(tmp / "dev.zip", "t/x.jpg", 0o020644), "device")
    text = tmp / "notes.txt"
    text.write_text("hello")
    cases["not a folder or archive"] = (text, "neither a folder nor a supported archive")
    cases["missing path"] = (tmp / "nowhere", "does not exist")
    no_tree = tmp / "flat.zip"
    with zipfile.ZipFile(no_tree, "w") as z:
        z.writestr("0.jpg", b"an image outside any class folder")
        z.writestr("notes/a.txt", b"no images here")
    cases["archive without train/"] = (
        no_tree,
        f"no train/ folder or class folders of images in the archive {no_tree}",
    )
    plain_test = tmp / "plain-eval-test"
    for c in ("a", "b"):
        for i in range(3):
            _image(plain_test / c / f"{i}.png", "PNG", "RGB", RED, (16, 16))
    cases["plain tree, --eval-test"] = (plain_test, "is a plain <class>/ tree")
    truncated_gz = tmp / "cut.tar.gz"
    whole = _pack(tree("to-cut"), tmp / "whole.tar.gz", None).read_bytes()
    truncated_gz.write_bytes(whole[: len(whole) // 2])
    cases["truncated archive"] = (truncated_gz, "truncated or corrupt")
    return cases


BAD = [  # the cases of _bad_inputs, for parametrize
    "corrupt image", "truncated image", "zero-byte image", "empty class folder",
    "test classes differ", "no train folder", "tar dotdot", "tar absolute", "tar symlink",
    "tar hardlink", "tar device", "zip dotdot", "zip symlink", "zip device",
    "not a folder or archive", "missing path", "truncated archive", "archive without train/",
    "plain tree, --eval-test",
]  # fmt: skip


def _leftovers(cache: Path) -> list[Path]:
    """Files and folders in the cache: a decoded array, an extraction, a temporary file."""
    return sorted(p for p in cache.rglob("*") if p.is_file() or p.parent.name == "extracted")


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path, message = _bad_inputs(tmp_path / "inputs")[case]
    args = ["train", "--dataset", "folder", "--data-dir", str(path), "--epochs", "1"]
    if case == "plain tree, --eval-test":
        args.append("--eval-test")
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert _leftovers(cache) == []
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_unreadable_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    for c in ("a", "b"):
        for i in range(3):
            _image(root / "train" / c / f"{i}.png", "PNG", "RGB", RED, (8, 8))
    locked = root / "train" / "b"
    # Root reads any folder whatever its mode, so the refusal is simulated for root.
    real = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(folder.os, "scandir", scandir)
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--dataset", "folder", "--data-dir", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(f"error: cannot read the folder {locked} (") and "Permission" in err
    assert len(err.strip().splitlines()) == 1


def test_member_paths() -> None:
    where = Path("a.tar")
    assert str(archive.member_path("./top/train/a/x.jpg", where)) == "top/train/a/x.jpg"
    assert archive.member_path("./", where) is None
    for bad in ("../x", "a/../../x", "/abs/x", "C:/x", "a\\..\\x"):
        with pytest.raises(ValueError):
            archive.member_path(bad, where)
    assert archive.stem(Path("/d/cifar10-jpg.tar.gz")) == "cifar10-jpg"
    assert archive.is_archive(Path("x.TGZ")) and not archive.is_archive(Path("x.tar.xz.txt"))


def test_small_images_decode_on_one_thread_large_ones_on_the_pool(tmp_path: Path) -> None:
    """Threads pay only for large JPEGs (``POOL_MIN_SIDE``, measured): CIFAR-sized files decode
    in this thread, large ones on the pool, and both give the same arrays as a plain loop."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for side in (32, folder.POOL_MIN_SIDE):
        files = []
        for i in range(3):
            path = tmp_path / f"{side}-{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
            files.append(path)
        threads = folder.decode_threads(files)
        assert threads == (1 if side == 32 else 0)
        got = folder.parallel_map(lambda p: folder.decode(p, 16), files, threads)
        want = [folder.decode(p, 16) for p in files]
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("archive_name", ["t.tar.gz", "t.zip"])
def test_a_first_load_says_its_stages_and_what_it_leaves(
    tmp_path: Path, cache: Path, archive_name: str
) -> None:
    from rich.console import Console

    from nas.commands.progress import LoadDisplay
    from nas.data.progress import folder_bytes, size_text

    packed = _pack(_tree(tmp_path / "tree"), tmp_path / archive_name, None)
    piped = io.StringIO()
    shown = LoadDisplay(console=Console(file=piped, force_terminal=False, width=400))
    load_dataset("folder", data_dir=packed, val_fraction=3 / 21, eval_test=True, progress=shown)
    lines = piped.getvalue().splitlines()
    (extracted,) = (cache / "extracted").iterdir()
    decoded = sorted((cache / "decoded").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(lines) == 9 and len(decoded) == 2, lines
    assert lines[0] == f"extracting {archive_name} ({size_text(packed.stat().st_size)})..."
    assert lines[1].startswith(f"extracting {archive_name}: done in ")
    extracted_size = size_text(folder_bytes(extracted))
    assert lines[2] == f"extracted {archive_name} to {extracted} ({extracted_size})"
    # 3 classes x 7 images in each split; each split is decoded, then its cache file said.
    for start, split, file in ((3, "train", decoded[0]), (6, "test", decoded[1])):
        assert lines[start] == f"decoding 21 {split} images..."
        assert lines[start + 1].startswith(f"decoding 21 {split} images: done in ")
        assert lines[start + 2].startswith(
            f"cached 21 decoded images in {file} ({size_text(file.stat().st_size)}); {cache} holds "
        )
    # The last line's total is the cache's size now: nothing was written after it.
    assert f"holds {size_text(folder_bytes(cache))} in all" in lines[-1]
    # A second load reads the cache: nothing to say.
    again = io.StringIO()
    shown = LoadDisplay(console=Console(file=again, force_terminal=False, width=400))
    load_dataset("folder", data_dir=packed, val_fraction=3 / 21, eval_test=True, progress=shown)
    assert again.getvalue() == ""


def test_a_first_load_on_a_terminal_draws_bars_then_lines(tmp_path: Path) -> None:
    from rich.console import Console

    from nas.commands.progress import LoadDisplay, load_display
    from nas.data.progress import SILENT

    packed = _pack(_tree(tmp_path / "tree"), tmp_path / "t.tar", None)
    screen = io.StringIO()
    shown = LoadDisplay(
        console=Console(file=screen, force_terminal=True, width=100, highlight=False)
    )
    load_dataset("folder", data_dir=packed, val_fraction=3 / 21, progress=shown)
    text = screen.getvalue()
    assert "\x1b[" in text  # drawn: cursor and colour codes
    assert "extracting t.tar: done in" in text and "decoding 21 train images: done in" in text
    assert load_display(quiet=True) is SILENT  # --quiet: nothing at all
    assert not load_display(quiet=False, as_json=True).stages  # --json: the notes only
