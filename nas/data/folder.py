"""ImageFolder trees: ``train/<class>/*`` and an optional ``test/<class>/`` or ``val/<class>/``,
or torchvision's plain ``<class>/*`` tree, which has no held-out split.

The tree may be a folder or an archive of one (:mod:`nas.data.archive`), with or without one top
folder. Images are JPEG, PNG, WebP or BMP in any mode Pillow reads (grayscale, palette, RGBA,
CMYK ...), converted to RGB; hidden files and folders and files of other types are ignored.
Classes are the sorted names of the class folders of ``train/`` (of the root in a plain tree),
whatever their names. Either way the validation split is carved from the training images
(:mod:`nas.data.splits`).

Images are decoded in parallel threads (Pillow releases the GIL while it decodes) and cached as
uint8 arrays in the user's cache, keyed by the file list, sizes and modification times, so a
second load reads one ``.npz`` and the tree itself is never written to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from nas.data import archive
from nas.data.cache import default_data_dir
from nas.data.errors import DataError, one_line
from nas.data.progress import SILENT, LoadProgress, folder_bytes, size_text
from nas.fileio import write_atomic

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
HELD_OUT = ("test", "val")  # the folder of the held-out split, in order of preference
MIXED_RESOLUTION = 64  # the default side when the images do not share one size
# Threads decode faster than one only where libjpeg's work, done without the GIL, outweighs
# Python's share of each image. benchmarks/bench_decode.py and a sweep on 2 idle cores
#: the pool ran at 0.72x one thread on 32x32 CIFAR JPEGs, 0.82x at 128x128,
# 0.88x at 160x160, 1.32x at 256x256 and 1.50x at 500x375 (decoded to 64).
# On 224x224 Imagenette photos: 1.15x decoded to 224 px, 0.93x to 64 (docs/imagenet.md).
POOL_MIN_SIDE = 224
# An image's header declares its size before a byte is decoded; past this many pixels it is
# refused unread (a 16000x16000 PNG of a few KB decodes to 768 MB). 150 MP admits the largest
# medium-format photographs (102 MP); $RESNEXT_NAS_MAX_IMAGE_PIXELS raises it.
MAX_IMAGE_PIXELS = 150_000_000
MAX_PIXELS_ENV = "RESNEXT_NAS_MAX_IMAGE_PIXELS"
_CACHE_VERSION = 2  # bump when decoding changes, so that old caches are not reused
_IGNORED_DIRS = ("__MACOSX",)  # resource forks that macOS adds to zips

T = TypeVar("T")


class BadImage(DataError):
    """An image file that cannot be decoded, or declares more pixels than allowed."""


@dataclass(frozen=True)
class Tree:
    """The files of an ImageFolder tree: class names, and files with labels per split."""

    root: Path
    class_names: tuple[str, ...]
    train: tuple[tuple[Path, ...], tuple[int, ...]]
    test: tuple[tuple[Path, ...], tuple[int, ...]] | None  # None: the tree has no test/ or val/
    test_folder: str | None  # "test" or "val"
    plain: bool = False  # the classes are the root's own folders (no train/)


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in _IGNORED_DIRS


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The visible entries of ``folder``, sorted by name; DataError if it cannot be read."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if _visible(e.name)), key=lambda e: e.name)
    except OSError as e:
        raise DataError(
            f"cannot read the folder {folder} ({one_line(e)}); check that it exists and its "
            "permissions"
        ) from None


def _subdirs(folder: Path) -> list[str]:
    return [e.name for e in _entries(folder) if e.is_dir()]


def _holds_classes(folder: Path) -> bool:
    """Whether ``folder`` is a plain tree: a visible sub-folder of it holds an image file."""
    return any(
        e.is_dir() and any(f.name.lower().endswith(IMAGE_SUFFIXES) for f in _entries(Path(e.path)))
        for e in _entries(folder)
    )


def _is_root(folder: Path) -> bool:
    return (folder / "train").is_dir() or _holds_classes(folder)


NO_TREE = "expected train/<class>/<images> or <class>/<images> (or one top folder holding either)"


def find_root(path: Path) -> Path:
    """The root of the tree: ``path`` itself or its only visible sub-folder, whichever holds
    ``train/`` or, for a plain tree, class folders of images."""
    if _is_root(path):
        return path
    subdirs = _subdirs(path)
    if len(subdirs) == 1 and _is_root(path / subdirs[0]):
        return path / subdirs[0]
    raise DataError(f"no train/ folder or class folders of images in {path}: {NO_TREE}")


def open_tree(path: str | Path | None, progress: LoadProgress = SILENT) -> Path:
    """The root of the ImageFolder tree at ``path``, a folder or an archive (extracted once,
    told to ``progress``)."""
    if path is None:
        raise DataError(
            "the folder dataset needs --data-dir PATH: an ImageFolder tree (train/<class>/... "
            f"or <class>/...) or a {', '.join(archive.SUFFIXES)} archive of one"
        )
    path = Path(path).expanduser()
    if path.is_dir():
        return find_root(path)
    if path.is_file() and archive.is_archive(path):

        def check(folder: Path) -> None:
            try:
                find_root(folder)
            except DataError:
                raise DataError(
                    f"no train/ folder or class folders of images in the archive {path}: {NO_TREE}"
                ) from None

        return find_root(archive.extract(path, default_data_dir() / "extracted", check, progress))
    if not path.exists():
        raise DataError(f"{path} does not exist; pass an ImageFolder tree or an archive of one")
    raise DataError(
        f"{path} is neither a folder nor a supported archive ({', '.join(archive.SUFFIXES)})"
    )


def discard_extraction(root: Path) -> None:
    """Remove the extracted archive ``root`` lies in, if it lies in one: a tree that failed to
    load must not be reused from the cache by the next try."""
    cache = default_data_dir() / "extracted"
    try:
        rel = root.resolve().relative_to(cache.resolve())
    except (ValueError, OSError):
        return  # a folder of the user's: never touched
    if rel.parts:
        shutil.rmtree(cache / rel.parts[0], ignore_errors=True)


def _images(folder: Path, limit: int | None) -> list[Path]:
    """The first ``limit`` image files of a class folder in sorted order; DataError if none."""
    files = [
        Path(e.path)
        for e in _entries(folder)
        if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()
    ]
    if not files:
        raise DataError(
            f"the class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}); add some "
            "or remove the folder"
        )
    return files[:limit]


def scan(root: Path, classes: int | None = None, images_per_class: int | None = None) -> Tree:
    """The tree's classes (the first ``classes``) and files (the first ``images_per_class``).

    The held-out split is ``test/`` (else ``val/``); its class folders must be those of
    ``train/``. Held-out folders are listed in full, whatever ``images_per_class``. A root
    without ``train/`` is a plain tree: its own folders are the classes, with no held-out split.
    """
    plain = not (root / "train").is_dir()
    train_dir = root if plain else root / "train"
    names = _subdirs(train_dir)
    if not names:
        raise DataError(f"{train_dir} has no class folders; expected {train_dir}/<class>/<images>")
    held = None if plain else next((h for h in HELD_OUT if (root / h).is_dir()), None)
    if held is not None:
        theirs = _subdirs(root / held)
        if theirs != names:
            missing = sorted(set(names) - set(theirs))
            extra = sorted(set(theirs) - set(names))
            what = "; ".join(
                f"{label} {', '.join(v)}" for label, v in (("lacks", missing), ("adds", extra)) if v
            )
            raise DataError(
                f"{root / held} has other classes than {train_dir}: it {what}; the held-out "
                "split needs the same class folders"
            )
    if classes is not None:
        if classes > len(names):
            raise DataError(f"{train_dir} has {len(names)} class folders, cannot keep {classes}")
        names = names[:classes]

    def listing(folder: Path, limit: int | None) -> tuple[tuple[Path, ...], tuple[int, ...]]:
        files: list[Path] = []
        labels: list[int] = []
        for label, cls in enumerate(names):
            found = _images(folder / cls, limit)
            files += found
            labels += [label] * len(found)
        return tuple(files), tuple(labels)

    train = listing(train_dir, images_per_class)
    test = listing(root / held, None) if held is not None else None
    return Tree(root, tuple(names), train, test, held, plain)


# --- decoding ------------------------------------------------------------------------------


def _image_error(path: Path, e: BaseException) -> DataError:
    return BadImage(f"cannot decode {path} ({one_line(e)}); delete or replace the file")


def max_image_pixels() -> int:
    """The pixel limit of one image: ``$RESNEXT_NAS_MAX_IMAGE_PIXELS``, else the default."""
    return archive.env_limit(MAX_PIXELS_ENV, MAX_IMAGE_PIXELS)


def _open(path: Path) -> PIL.Image.Image:
    """``path`` opened by Pillow (header read, nothing decoded), refused past the pixel limit."""
    from PIL import Image

    limit = max_image_pixels()
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    # Pillow warns past its own limit and refuses past twice it; this limit replaces both.
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise _too_large(path, None, limit) from None
    w, h = im.size
    if w * h > limit:
        im.close()
        raise _too_large(path, (w, h), limit)
    return im


def _too_large(path: Path, size: tuple[int, int] | None, limit: int) -> DataError:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "more pixels"
    return BadImage(
        f"{path} declares {what}, over the limit of {limit:,} per image (a decompression "
        f"bomb, or a photo larger than the default admits); remove it, or set {MAX_PIXELS_ENV} "
        "higher to decode it"
    )


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header."""
    from PIL import UnidentifiedImageError

    try:
        with _open(path) as im:
            return im.size
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        raise _image_error(path, e) from None


def decode(path: Path, resolution: int) -> np.ndarray:
    """One image file as ``[3, R, R]`` uint8 RGB: shorter side resized to R, center-cropped."""
    from PIL import Image

    try:
        with _open(path) as im:
            im.draft("RGB", (resolution, resolution))  # JPEG: let libjpeg downscale by 2..8
            # Palette images with transparency go through RGBA, as Pillow asks; CMYK, L, LA, P,
            # I;16 ... all convert to RGB.
            rgba = im.mode == "P" and "transparency" in im.info
            rgb = (im.convert("RGBA") if rgba else im).convert("RGB")
        w, h = rgb.size
        if (w, h) != (resolution, resolution):
            scale = resolution / min(w, h)
            size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
            rgb = rgb.crop((left, top, left + resolution, top + resolution))
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise _image_error(path, e) from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def parallel_map(fn: Callable[[Path], T], files: Sequence[Path], threads: int = 0) -> list[T]:
    """``fn`` over ``files`` on ``threads`` threads (0: a few, by the cores), in order; the
    first error is raised at once. One thread maps in this one, with no pool."""
    threads = threads or min(8, os.cpu_count() or 1)
    if threads == 1:
        return [fn(f) for f in files]
    pool = ThreadPoolExecutor(threads)
    try:
        return list(pool.map(fn, files))
    finally:  # after an error (a corrupt image, Ctrl-C) the files still queued are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def common_resolution(files: Sequence[Path]) -> int:
    """The side the images share (the shorter side if they all share one size), else 64."""
    sizes = set(parallel_map(image_size, files, threads=1))  # a header each: Python's work
    return min(next(iter(sizes))) if len(sizes) == 1 else MIXED_RESOLUTION


def source_side(files: Sequence[Path]) -> int:
    """The shorter side of the first image as stored: the template and augmentation follow it
    whatever side the images are resized to (0 for no files)."""
    return min(image_size(files[0])) if files else 0


def decode_threads(files: Sequence[Path]) -> int:
    """Threads to decode ``files`` with: the pool for large images, one for small ones (see
    ``POOL_MIN_SIDE``), judged by the first file."""
    return 0 if files and min(image_size(files[0])) >= POOL_MIN_SIDE else 1


def cache_dir() -> Path:
    """Where decoded arrays are kept: ``decoded/`` in :func:`nas.data.cache.default_data_dir`."""
    return default_data_dir() / "decoded"


def _cache_file(
    root: Path, split: str, files: Sequence[Path], labels: Sequence[int], resolution: int | None
) -> Path:
    """The cache file of one split's files at one resolution (None: the images' own)."""
    side = "auto" if resolution is None else str(resolution)
    h = hashlib.sha256(f"{_CACHE_VERSION} {root.resolve()} {side}\n".encode())
    for p, y in zip(files, labels, strict=True):
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{y} {st.st_size} {st.st_mtime_ns}\n".encode())
    n_classes = len(set(labels))
    name = f"{split}-{n_classes}c-{len(files)}i-{side}px-{h.hexdigest()[:16]}.npz"
    return cache_dir() / name


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    """The cached images if ``path`` holds ``n`` of them, else None (a broken file is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["x"]
    except (OSError, ValueError, KeyError, EOFError, zlib.error):
        return None
    ok = x.dtype == np.uint8 and x.ndim == 4 and x.shape[:2] == (n, 3) and x.shape[2] == x.shape[3]
    return x if ok else None


def _write_cache(path: Path, x: np.ndarray, progress: LoadProgress = SILENT) -> None:
    """Save ``x`` atomically and tell ``progress`` where, and what the cache holds now; a
    failure is a warning, since the cache is only an optimisation."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: np.savez(f, x=x))
        size = path.stat().st_size
    except OSError as e:  # WriteError is an OSError too
        sys.stderr.write(f"warning: could not cache decoded images in {path.parent}: {e}\n")
        return
    root = default_data_dir()
    progress.note(
        f"cached {len(x):,} decoded images in {path} ({size_text(size)}); {root} holds "
        f"{size_text(folder_bytes(root))} in all (RESNEXT_NAS_DATA moves it; deleting it is safe)"
    )


def load_split(
    root: Path,
    split: str,
    files: Sequence[Path],
    labels: Sequence[int],
    resolution: int | None,
    progress: LoadProgress = SILENT,
) -> np.ndarray:
    """Decoded images ``[N, 3, R, R]`` of ``files``, from the cache when it has them.

    ``resolution`` None is the images' own side when they share one size, else 64. A decoding
    is told to ``progress``, image by image, and so is the cache file it writes.
    """
    try:
        cache = _cache_file(root, split, files, labels, resolution)
    except OSError as e:
        raise DataError(f"cannot read the files of {root / split} ({one_line(e)})") from None
    x = _read_cache(cache, len(files))
    if x is not None:
        return x
    side = common_resolution(files) if resolution is None else resolution
    with progress.stage(f"decoding {len(files):,} {split} images", len(files), "images") as step:

        def one(p: Path) -> np.ndarray:
            image = decode(p, side)
            step(1)
            return image

        images = parallel_map(one, files, decode_threads(files))
    x = np.stack(images) if images else np.empty((0, 3, side, side), np.uint8)
    _write_cache(cache, x, progress)
    return x
