"""Datasets for short training trials: the built-in synthetic set, CIFAR-10/100, ImageNet subsets.

Every loader returns a :class:`Dataset` of uint8 NCHW arrays, so that the trainer can hold a
whole dataset on its device and augment whole batches as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def resolution(self) -> int:
        """Side of the (square) images."""
        return int(self.train_x.shape[-1])
