"""The built-in 32x32 sets, whose classes and image side are known before they load."""

from __future__ import annotations

from typing import NamedTuple

from nas.data.loader import default_template, image_side

KNOWN_CLASSES = {"synthetic": 10, "cifar10": 10, "cifar100": 100}  # all 32x32


class Shape(NamedTuple):
    """What a network for a dataset predicts, and at which image side."""

    classes: int
    resolution: int

    @property
    def template(self) -> str:
        """The template a network for these images defaults to."""
        return default_template(self.resolution)


def known_shape(dataset: str, classes: int | None, resolution: int | None) -> Shape | None:
    """The shape of ``dataset`` under the ``classes`` and ``resolution`` options where it is
    known before the data loads (a built-in set); None for an image folder or ImageNet.

    The commands check a spec, a budget band and a study against it before the seconds a
    dataset takes to load.
    """
    if dataset not in KNOWN_CLASSES:
        return None
    return Shape(classes or KNOWN_CLASSES[dataset], image_side(dataset, resolution))
