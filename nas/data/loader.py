"""Datasets for short training trials: the built-in synthetic set, CIFAR-10/100, image folders.

Every loader returns a :class:`Dataset` of uint8 NCHW arrays, so that the trainer can hold a
whole dataset on its device and augment whole batches as tensors.

Trials are scored on a validation split carved from the training set (stratified by class,
seeded); the official test split is loaded only when asked for, so that a search never looks at
it. Every problem a user can fix (a missing or corrupt archive, a bad option) raises
:class:`DataError`, a ``ValueError`` whose message is one line saying what to do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# "folder": any ImageFolder tree or archive of one; "imagenet": the same loader with ImageNet's
# defaults (its tree in the cache folder, val/ as the test split, 64 px, Sec. 4's augmentation).
DATASETS = ("synthetic", "cifar10", "cifar100", "folder", "imagenet")
AUGMENTS = ("cifar", "imagenet")
SYNTHETIC_SEED = 0  # the synthetic set is one fixed dataset, like CIFAR; `seed` only splits it
# Sec. 5.3's pad-crop-flip suits small images, Sec. 4's random-resized crop large ones; the
# CIFAR template keeps small images' resolution (3x3 stem), ImageNet's quarters it at once.
SMALL_IMAGES = 64
IMAGENET_RESOLUTION = 64  # the default side of the imagenet dataset (CPU scale)
MIN_CLASSES = 2  # one class scores 100% whatever the network: nothing is learned or compared
# Trials are ranked on the validation split: on n images an accuracy moves in steps of 1/n
# (12 images scored every trial of a search 75.0%); 100 give 1% steps and a binomial standard
# error of at most 5 points. Searches raise the split to this many, or refuse.
MIN_VAL_IMAGES = 100
VAL_CAP_RULE = (
    "with --train-images N the validation split holds at most N/2 images (at least one a "
    "class), so that scoring never dominates a short trial; seeded and stratified by class"
)


class DataError(ValueError):
    """A dataset problem the user can fix; the message is one line that says how."""


def default_augment(resolution: int) -> str:
    """Sec. 5.3's CIFAR augmentation at 64 px or less, else Sec. 4's ImageNet one."""
    return "cifar" if resolution <= SMALL_IMAGES else "imagenet"


def default_template(resolution: int) -> str:
    """The CIFAR template at 64 px or less, else the ImageNet one."""
    return "cifar" if resolution <= SMALL_IMAGES else "imagenet"


@dataclass
class Dataset:
    """Images as uint8 arrays ``[N, 3, H, W]`` and int64 labels, split into train/val/test."""

    name: str
    classes: int
    kind: str  # "cifar" (pad-4 crop + flip) or "imagenet" (random-resized crop + flip)
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray | None = None  # loaded only when asked for (--eval-test)
    test_y: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    template: str = "cifar"  # the template a network for these images defaults to
    note: str = ""  # why the validation split is larger than asked, if it is

    @property
    def resolution(self) -> int:
        """Side of the (square) images."""
        return int(self.train_x.shape[-1])


def describe(ds: Dataset) -> str:
    """One line: name, classes, resolution and split sizes."""
    r = ds.resolution
    sizes = f"{len(ds.train_y):,} train / {len(ds.val_y):,} val"
    if ds.test_y is not None:
        sizes += f" / {len(ds.test_y):,} test"
    return f"{ds.name}: {ds.classes} classes, {r}x{r} images, {sizes}"


def image_side(name: str, resolution: int | None = None) -> int:
    """The side of the images :func:`load_dataset` gives ``name`` with ``resolution``."""
    return resolution or (64 if name == "imagenet" else 32)


def default_data_dir() -> Path:
    """Where datasets live unless told: ``$RESNEXT_NAS_DATA``, else the user's cache folder."""
    if env := os.environ.get("RESNEXT_NAS_DATA"):
        return Path(env).expanduser()
    return user_cache_dir() / "resnext-nas"


def user_cache_dir(platform: str = sys.platform) -> Path:
    """The user's cache folder by the platform's convention (platformdirs' ``user_cache_path``
    roots): ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows, else
    ``$XDG_CACHE_HOME`` or ``~/.cache`` (the XDG base directory specification)."""
    if platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


@dataclass
class _Full:
    """A dataset before the validation split: all training images, and the test split if asked."""

    classes: int
    kind: str
    class_names: tuple[str, ...]
    train_x: np.ndarray | None
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    template: str = "cifar"  # the template a network for these images defaults to
    # Paints the training images at sorted indices on demand, where ``train_x`` is None (the
    # synthetic set: only the images a split keeps are generated).
    paint: Callable[[np.ndarray], np.ndarray] | None = None

    def take(self, *parts: np.ndarray) -> list[np.ndarray]:
        """The training images at each index array of ``parts`` (disjoint)."""
        if self.paint is None:
            return [self.train_x[p] for p in parts]
        wanted = np.sort(np.concatenate(parts))
        images = self.paint(wanted)
        return [images[np.searchsorted(wanted, p)] for p in parts]

    def keep(self, index: np.ndarray) -> None:
        """Keep only the training images at the sorted ``index`` (still painted on demand)."""
        self.train_y = self.train_y[index]
        if self.paint is None:
            self.train_x = self.train_x[index]
        else:
            paint = self.paint
            self.paint = lambda i: paint(index[i])


@dataclass(frozen=True)
class DataOptions:
    """What a command that trains says about its images: the set, where it is, which subset
    (``classes``, ``images_per_class``) and how it is seen (``resolution``, ``augment``).

    ``search``, ``study run``, ``calibrate`` and ``train`` take the same options; each builds one
    of these and loads through :meth:`load` with its own schedule's sizes.
    """

    dataset: str
    data_dir: str | Path | None = None
    classes: int | None = None
    images_per_class: int | None = None
    resolution: int | None = None
    augment: str | None = None

    def load(
        self,
        *,
        train_images: int | None,
        val_fraction: float,
        seed: int = 0,
        eval_test: bool = False,
        min_val: int = 0,
    ) -> Dataset:
        """:func:`load_dataset` of these options with a schedule's training subset and split."""
        return load_dataset(
            self.dataset,
            min_val=min_val,
            data_dir=self.data_dir,
            train_images=train_images,
            val_fraction=val_fraction,
            seed=seed,
            eval_test=eval_test,
            classes=self.classes,
            images_per_class=self.images_per_class,
            resolution=self.resolution,
            augment=self.augment,
        )


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    train_images: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    eval_test: bool = False,
    download: bool = True,
    classes: int | None = None,
    images_per_class: int | None = None,
    resolution: int | None = None,
    augment: str | None = None,
    synthetic_train: int = 50_000,
    synthetic_test: int = 10_000,
    min_val: int = 0,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`), with a seeded, stratified val split.

    ``classes`` keeps the first classes (in sorted order for folders) and ``images_per_class``
    the first images of each (sorted file names for folders, file order for the others) before
    anything else. Then ``val_fraction`` of the training set is set aside for scoring trials,
    stratified by class; if ``train_images`` is given, only that many of the remaining images
    are kept (again stratified and seeded) and the validation split is capped at half of them
    (:data:`VAL_CAP_RULE`). ``seed`` picks both subsets; the images themselves never depend on
    it. The test split is loaded only with ``eval_test``. ``min_val`` (a search's
    :data:`MIN_VAL_IMAGES`) raises the validation split to that many images where the data
    leaves enough to train on, and the returned dataset's ``note`` says so; else DataError.

    ``data_dir`` is, for ``folder``, an ImageFolder tree or a ``.tar``/``.tar.gz``/``.zip`` of
    one (:mod:`nas.data.folder`); for ``imagenet`` such a tree, by default ``imagenet/`` in
    :func:`default_data_dir`; for CIFAR the folder of its archive (that same folder by default).
    ``resolution`` defaults to the images' own side (folders whose images share one size, and
    CIFAR's 32), else 64. ``augment`` ("cifar" or "imagenet") defaults to
    :func:`default_augment` of the resolution (ImageNet's for ``imagenet``).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    for option, value in (
        ("train_images", train_images),
        ("classes", classes),
        ("images_per_class", images_per_class),
        ("resolution", resolution),
    ):
        if value is not None and (isinstance(value, bool) or value < 1):
            raise DataError(f"{option} must be a positive integer, got {value!r}")
    if classes is not None and classes < MIN_CLASSES:
        raise DataError(
            f"classes={classes}: a classifier needs at least {MIN_CLASSES} classes (with one, "
            "every prediction is right and the accuracy says nothing)"
        )
    if augment is not None and augment not in AUGMENTS:
        raise DataError(f"unknown augment {augment!r}; choose one of {', '.join(AUGMENTS)}")
    if data_dir is not None:
        root: Path | None = Path(data_dir).expanduser()
    elif name == "imagenet":
        root = default_data_dir() / "imagenet"
    elif name == "folder":
        root = None  # nas.data.folder says what to pass
    else:  # the CIFAR archives share the cache folder
        root = default_data_dir()

    if name == "synthetic":
        full = _load_synthetic(
            classes, image_side(name, resolution), synthetic_train, synthetic_test, eval_test
        )
    elif name in _CIFAR:
        if resolution not in (None, 32):
            raise DataError(f"{name} images are 32x32; leave resolution unset or pass 32")
        assert root is not None
        full = _load_cifar(_CIFAR[name], root, classes, eval_test, download)
    else:
        if name == "imagenet":
            resolution = resolution or IMAGENET_RESOLUTION
        full = _load_folder(root, classes, images_per_class, resolution, eval_test)
        images_per_class = None  # taken while listing the files, before decoding
        if name == "imagenet":
            full.kind = full.template = "imagenet"
    if full.classes < MIN_CLASSES:
        where = f" ({full.class_names[0]!r} in {root})" if full.class_names and root else ""
        raise DataError(
            f"{name} has {full.classes} class{where}: a classifier needs at least "
            f"{MIN_CLASSES} classes (with one, every prediction is right and the accuracy says "
            "nothing); add a class folder"
        )
    if images_per_class is not None:
        full.keep(first_per_class(full.train_y, images_per_class))
    if augment is not None:
        full.kind = augment

    train, val = split_indices(full.train_y, val_fraction, seed, train_images, name, min_val)
    train_x, val_x = full.take(train, val)
    asked = val_size(len(full.train_y), full.classes, val_fraction, train_images)
    note = ""
    if len(val) > asked:
        note = (
            f"the validation split holds {len(val):,} images instead of {asked:,} (--val-fraction "
            f"{val_fraction:g} of {len(full.train_y):,}), so that trials are ranked on at least "
            f"{min_val}"
        )
    return Dataset(
        name=name,
        classes=full.classes,
        kind=full.kind,
        train_x=train_x,
        train_y=full.train_y[train],
        val_x=val_x,
        val_y=full.train_y[val],
        test_x=full.test_x,
        test_y=full.test_y,
        class_names=full.class_names,
        template=full.template,
        note=note,
    )


# --- splits -------------------------------------------------------------------------------


def first_per_class(y: np.ndarray, m: int) -> np.ndarray:
    """Sorted indices of the first ``m`` items of each class of ``y`` (all of a smaller class)."""
    keep = [np.flatnonzero(y == c)[:m] for c in np.unique(y)]
    return np.sort(np.concatenate(keep)) if keep else np.empty(0, np.int64)


def stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` items of ``y``, each class taking its share (largest remainder)."""
    labels, counts = np.unique(y, return_counts=True)
    quota = counts * (n / len(y))
    take = np.floor(quota).astype(np.int64)
    # The seats left over go to the largest fractional quotas, ties to the lower class.
    order = np.lexsort((labels, -(quota - take)))
    take[order[: n - int(take.sum())]] += 1
    picked = [
        rng.choice(np.flatnonzero(y == c), k, replace=False)
        for c, k in zip(labels, take, strict=True)
    ]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def val_size(n: int, classes: int, val_fraction: float, train_images: int | None = None) -> int:
    """Images of the validation split: ``val_fraction`` of ``n``, capped by :data:`VAL_CAP_RULE`."""
    size = round(n * val_fraction)
    if train_images is not None:
        size = min(size, max(train_images // 2, classes))
    return size


def split_indices(
    y: np.ndarray,
    val_fraction: float,
    seed: int,
    train_images: int | None = None,
    name: str = "the dataset",
    min_val: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices into ``y``: val carved first, then ``train_images`` of the rest.

    Uncapped, ``train --train-images 300`` would score 5,000 validation images (10% of CIFAR)
    every epoch, 446 s of a 546-s epoch; the val split is capped by :data:`VAL_CAP_RULE`.
    """
    labels, counts = np.unique(y, return_counts=True)
    n_val = val_size(len(y), len(labels), val_fraction, train_images)
    if n_val < min_val:
        # The training subset keeps its size; the validation split takes what is left over.
        needed = train_images if train_images is not None else len(labels)
        if len(y) - min_val < needed:
            fewer = (
                f"; pass --train-images {len(y) - min_val} or fewer"
                if train_images is not None and len(y) - min_val >= len(labels)
                else "; use more images"
            )
            raise DataError(
                f"{name} has {len(y):,} training images, too few to score trials on the "
                f"{min_val} validation images that ranking them needs (on {n_val} an accuracy "
                f"moves in steps of {1 / max(n_val, 1):.0%}){fewer}"
            )
        n_val = min_val
    if n_val < 1 or len(y) - n_val < len(labels):
        raise DataError(
            f"{name} has only {len(y)} training images for {len(labels)} classes, too few "
            f"to carve a {val_fraction:.0%} validation split; use more images"
        )
    val = stratified_pick(y, n_val, np.random.default_rng([seed, 1]))
    rest = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    left = np.isin(labels, y[rest])
    if not left.all():
        raise DataError(
            f"class {labels[~left][0]} of {name} has only {counts[~left][0]} image(s), all taken "
            "by the validation split; use more images or a smaller val_fraction"
        )
    if train_images is not None:
        if train_images > len(rest):
            raise DataError(
                f"train_images={train_images} but {name} has only {len(rest)} training images "
                f"left after carving the {n_val:,}-image validation split"
            )
        if train_images < len(labels):
            raise DataError(
                f"train_images={train_images} is fewer than the {len(labels)} classes of {name}"
            )
        rest = rest[stratified_pick(y[rest], train_images, np.random.default_rng([seed, 2]))]
    return rest, val


# --- synthetic ----------------------------------------------------------------------------


def _load_synthetic(
    classes: int | None, resolution: int, n_train: int, n_test: int, eval_test: bool
) -> _Full:
    from nas.data import synthetic

    classes = classes or len(synthetic.SHAPES)

    def make(n: int, stream: int, indices: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return synthetic.generate(  # checks its arguments
            n,
            seed=SYNTHETIC_SEED,
            stream=stream,
            classes=classes,
            resolution=resolution,
            indices=indices,
        )

    make(0, 0)  # refuses bad classes or resolution before anything is drawn
    train_y = synthetic.make_labels(n_train, seed=SYNTHETIC_SEED, classes=classes)
    test_x, test_y = make(n_test, 1) if eval_test else (None, None)
    names = synthetic.SHAPES[:classes]
    # Only the images that the split keeps are painted (painting all 50,000 first for
    # `--train-images 300` at 128x128 took 3.7 GB); they are the same bytes as in the whole set.
    kind, template = default_augment(resolution), default_template(resolution)
    return _Full(
        classes, kind, names, None, train_y, test_x, test_y, template,
        lambda i: make(n_train, 0, i)[0],
    )  # fmt: skip


# --- CIFAR --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarFormat:
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
        return (*self.train, self.test, self.meta)


# https://www.cs.toronto.edu/~kriz/cifar.html: the "python version" archives and their MD5s.
_CIFAR = {
    "cifar10": _CifarFormat(
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
    "cifar100": _CifarFormat(
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


def one_line(e: BaseException) -> str:
    """An exception's text on one line (the CLI prints user errors as one line)."""
    return " ".join(str(e).split()) or type(e).__name__


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB blocks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | Path, md5: str) -> Path:
    """Fetch ``url`` to ``dest`` via a temporary file, renamed into place once its MD5 matches."""
    from nas.fileio import new_temp

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
            while block := response.read(1 << 20):
                h.update(block)
                f.write(block)
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


class _CifarUnpickler(pickle.Unpickler):
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
    import codecs

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 1.26 has only the old name
        from numpy.core import multiarray  # type: ignore[no-redef]
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
            obj = _CifarUnpickler(f, encoding="bytes").load()
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


def _read_batch(path: Path, fmt: _CifarFormat) -> tuple[np.ndarray, np.ndarray]:
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


def _read_names(path: Path, fmt: _CifarFormat) -> tuple[str, ...]:
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
    from nas.fileio import write_atomic

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, lambda f: f.write(payload))
    except OSError as e:  # WriteError is an OSError too
        raise DataError(
            f"cannot write {dest} ({one_line(e)}); free some space or pass a writable data_dir"
        ) from None


def _extract_cifar(archive: Path, fmt: _CifarFormat, root: Path) -> None:
    """Extract the batch files of ``archive`` into ``root/fmt.folder``, checking its MD5 first.

    Only regular members with the expected names are read, and they are written to paths this
    function builds, so a hostile archive cannot write elsewhere (no path traversal).
    """
    got = file_md5(archive)
    if got != fmt.md5:
        raise DataError(
            f"{archive} has MD5 {got}, expected {fmt.md5} (truncated or not the official "
            f"archive); delete it and load again to download it, or place a good copy there"
        )
    wanted = {f"{fmt.folder}/{f}": f for f in fmt.files}
    found: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has data
                _write_atomic(root / fmt.folder / name, src.read())  # at most 160 MB
                found.add(name)
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


def _cifar_folder(fmt: _CifarFormat, root: Path, download_ok: bool) -> Path:
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
        download(fmt.url, archive, fmt.md5)
    _extract_cifar(archive, fmt, root)
    return folder


def _load_cifar(
    fmt: _CifarFormat, root: Path, classes: int | None, eval_test: bool, download_ok: bool
) -> _Full:
    folder = _cifar_folder(fmt, root, download_ok)
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
    return _Full(n, "cifar", names[:n], train_x, train_y, test_x, test_y)


# --- image folders ------------------------------------------------------------------------


def _load_folder(
    path: Path | None,
    classes: int | None,
    images_per_class: int | None,
    resolution: int | None,
    eval_test: bool,
) -> _Full:
    """An ImageFolder tree (:mod:`nas.data.folder`), decoded once and cached."""
    from nas.data import folder

    root = folder.open_tree(path)
    try:
        tree = folder.scan(root, classes, images_per_class)
        files, labels = tree.train
        train_x = folder.load_split(root, "train", files, labels, resolution)
        side = int(train_x.shape[-1])
        test_x = test_y = None
        if eval_test:
            if tree.test is None:
                raise DataError(
                    f"{root} has no test/ or val/ folder for the test split (test/<class>/...); "
                    "add one or leave out --eval-test"
                )
            test_files, test_labels = tree.test
            test_x = folder.load_split(root, str(tree.test_folder), test_files, test_labels, side)
            test_y = np.asarray(test_labels, dtype=np.int64)
    except folder.BadImage:
        # A bad image (a bomb, a corrupt file) condemns an archive: its extraction goes too.
        folder.discard_extraction(root)
        raise
    y = np.asarray(labels, dtype=np.int64)
    kind, template = default_augment(side), default_template(side)
    names = tree.class_names
    return _Full(len(names), kind, names, train_x, y, test_x, test_y, template)
