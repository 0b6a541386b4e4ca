"""Datasets for short training trials: the built-in synthetic set, CIFAR-10/100, image folders.

Every loader returns a :class:`Dataset` of uint8 NCHW arrays, so that the trainer can hold a
whole dataset on its device and augment whole batches as tensors.

Trials are scored on a validation split carved from the training set (stratified by class,
seeded); the official test split is loaded only when asked for, so that a search never looks at
it. Every problem a user can fix (a missing or corrupt archive, a bad option) raises
:class:`DataError`, a ``ValueError`` whose message is one line saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import cifar, folder, synthetic
from nas.data.cache import default_data_dir
from nas.data.errors import DataError
from nas.data.progress import SILENT, LoadProgress
from nas.data.splits import first_per_class, split_indices, val_size

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


def data_template(
    name: str,
    data_dir: str | Path | None,
    resolution: int | None = None,
    progress: LoadProgress = SILENT,
) -> str:
    """The template a network for dataset ``name`` defaults to, judged before the data loads:
    from the first training image's stored side for a folder (its tree is opened, and an
    archive extracted once, told to ``progress``), ImageNet's for ``imagenet``, else from the
    side it is seen at."""
    if name == "imagenet":
        return "imagenet"
    if name != "folder":
        return default_template(image_side(name, resolution))
    root = folder.open_tree(data_dir, progress)
    files = folder.scan(root, images_per_class=1).train[0]
    return default_template(max(resolution or 0, folder.source_side(files)))


def image_side(name: str, resolution: int | None = None) -> int:
    """The side of the images :func:`load_dataset` gives ``name`` with ``resolution``."""
    return resolution or (64 if name == "imagenet" else 32)


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
        progress: LoadProgress = SILENT,
        val_cap: float = 0.5,
    ) -> Dataset:
        """:func:`load_dataset` of these options with a schedule's training subset and split."""
        return load_dataset(
            self.dataset,
            min_val=min_val,
            val_cap=val_cap,
            data_dir=self.data_dir,
            train_images=train_images,
            val_fraction=val_fraction,
            seed=seed,
            eval_test=eval_test,
            classes=self.classes,
            images_per_class=self.images_per_class,
            resolution=self.resolution,
            augment=self.augment,
            progress=progress,
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
    progress: LoadProgress = SILENT,
    val_cap: float = 0.5,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`), with a seeded, stratified val split.

    ``classes`` keeps the first classes (in sorted order for folders) and ``images_per_class``
    the first images of each (sorted file names for folders, file order for the others) before
    anything else. Then ``val_fraction`` of the training set is set aside for scoring trials,
    stratified by class; if ``train_images`` is given, only that many of the remaining images
    are kept (again stratified and seeded) and the validation split is capped at ``val_cap``
    times as many (:data:`VAL_CAP_RULE`). ``seed`` picks both subsets; the images themselves
    never depend on it. The test split is loaded only with ``eval_test``. ``min_val`` (a search's
    :data:`MIN_VAL_IMAGES`) raises the validation split to that many images where the data
    leaves enough to train on, and the returned dataset's ``note`` says so; else DataError.

    ``data_dir`` is, for ``folder``, an ImageFolder tree (``train/<class>/``, or a plain
    ``<class>/`` tree) or a ``.tar``/``.tar.gz``/``.zip`` of one (:mod:`nas.data.folder`); for
    ``imagenet`` such a tree, by default ``imagenet/`` in :func:`default_data_dir`; for CIFAR
    the folder of its archive (that same folder by default).
    ``resolution`` defaults to the images' own side (folders whose images share one size, and
    CIFAR's 32), else 64. ``augment`` ("cifar" or "imagenet") defaults to
    :func:`default_augment` of the resolution (ImageNet's for ``imagenet``). A first load's
    download, extraction and decoding are told to ``progress``
    (:class:`~nas.data.progress.LoadProgress`).
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
    elif name in cifar.FORMATS:
        if resolution not in (None, 32):
            raise DataError(f"{name} images are 32x32; leave resolution unset or pass 32")
        assert root is not None
        names, train_x, train_y, test_x, test_y = cifar.load(
            cifar.FORMATS[name], root, classes, eval_test, download, progress
        )
        full = _Full(len(names), "cifar", names, train_x, train_y, test_x, test_y)
    else:
        if name == "imagenet":
            resolution = resolution or IMAGENET_RESOLUTION
        full = _load_folder(root, classes, images_per_class, resolution, eval_test, progress)
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

    train, val = split_indices(
        full.train_y, val_fraction, seed, train_images, name, min_val, val_cap
    )
    train_x, val_x = full.take(train, val)
    asked = val_size(len(full.train_y), full.classes, val_fraction, train_images, val_cap)
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


# --- synthetic ----------------------------------------------------------------------------


def _load_synthetic(
    classes: int | None, resolution: int, n_train: int, n_test: int, eval_test: bool
) -> _Full:
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


# --- image folders ------------------------------------------------------------------------


def _load_folder(
    path: Path | None,
    classes: int | None,
    images_per_class: int | None,
    resolution: int | None,
    eval_test: bool,
    progress: LoadProgress = SILENT,
) -> _Full:
    """An ImageFolder tree (:mod:`nas.data.folder`), decoded once and cached."""
    root = folder.open_tree(path, progress)
    try:
        tree = folder.scan(root, classes, images_per_class)
        if eval_test and tree.test is None:  # said before any image is decoded
            fix = (
                "is a plain <class>/ tree, which holds no test split; arrange it as "
                "train/<class>/... and test/<class>/..., or leave out --eval-test"
                if tree.plain
                else "has no test/ or val/ folder for the test split (test/<class>/...); "
                "add one or leave out --eval-test"
            )
            raise DataError(f"{root} {fix}")
        files, labels = tree.train
        train_x = folder.load_split(root, "train", files, labels, resolution, progress)
        side = int(train_x.shape[-1])
        test_x = test_y = None
        if eval_test and tree.test is not None:
            test_files, test_labels = tree.test
            test_x = folder.load_split(
                root, str(tree.test_folder), test_files, test_labels, side, progress
            )
            test_y = np.asarray(test_labels, dtype=np.int64)
    except folder.BadImage:
        # A bad image (a bomb, a corrupt file) condemns an archive: its extraction goes too.
        folder.discard_extraction(root)
        raise
    y = np.asarray(labels, dtype=np.int64)
    # Photos trained at a reduced side keep their template and augmentation: a 224-px photo at
    # 64 px is an ImageNet image seen small, not a CIFAR one.
    source = max(side, folder.source_side(files))
    kind, template = default_augment(source), default_template(source)
    names = tree.class_names
    return _Full(len(names), kind, names, train_x, y, test_x, test_y, template)
