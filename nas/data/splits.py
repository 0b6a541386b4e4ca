"""The validation split: carved first from the training set, stratified by class and seeded,
then a training subset of the rest; the rules that size it (:data:`VAL_CAP_RULE`,
:data:`MIN_VAL_IMAGES`)."""

from __future__ import annotations

import numpy as np

from nas.data.errors import DataError

# Trials are ranked on the validation split: on n images an accuracy moves in steps of 1/n
# (12 images scored every trial of a search 75.0%); 100 give 1% steps and a binomial standard
# error of at most 5 points. Searches raise the split to this many, or refuse.
MIN_VAL_IMAGES = 100
VAL_CAP_RULE = (
    "with --train-images N the validation split holds at most N/2 images (at least one a "
    "class), so that scoring never dominates a short trial; a search's trial, which scores "
    "the whole split only after its last epoch, up to 2.5 N; seeded and stratified by class"
)


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


def val_size(
    n: int,
    classes: int,
    val_fraction: float,
    train_images: int | None = None,
    val_cap: float = 0.5,
) -> int:
    """Images of the validation split: ``val_fraction`` of ``n``, capped by :data:`VAL_CAP_RULE`
    at ``val_cap`` validation images per training image (a trial that scores its whole split
    only once, after its last epoch, can afford more than the half of one scored every epoch)."""
    size = round(n * val_fraction)
    if train_images is not None:
        size = min(size, max(int(train_images * val_cap), classes))
    return size


def split_indices(
    y: np.ndarray,
    val_fraction: float,
    seed: int,
    train_images: int | None = None,
    name: str = "the dataset",
    min_val: int = 0,
    val_cap: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices into ``y``: val carved first, then ``train_images`` of the rest.

    Uncapped, ``train --train-images 300`` would score 5,000 validation images (10% of CIFAR)
    every epoch, 446 s of a 546-s epoch; the val split is capped by :data:`VAL_CAP_RULE`.
    """
    labels, counts = np.unique(y, return_counts=True)
    n_val = val_size(len(y), len(labels), val_fraction, train_images, val_cap)
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
