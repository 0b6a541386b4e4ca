"""Images in: the synthetic set, CIFAR-10/100, any image folder or archive, split and cached."""

from nas.data.cache import default_data_dir
from nas.data.errors import DataError
from nas.data.known import KNOWN_CLASSES, Shape, known_shape
from nas.data.loader import (
    AUGMENTS,
    DATASETS,
    DataOptions,
    Dataset,
    data_template,
    default_template,
    describe,
    image_side,
    load_dataset,
)
from nas.data.splits import MIN_VAL_IMAGES, VAL_CAP_RULE

__all__ = [
    "KNOWN_CLASSES",
    "Shape",
    "known_shape",
    "AUGMENTS",
    "DATASETS",
    "MIN_VAL_IMAGES",
    "VAL_CAP_RULE",
    "DataError",
    "DataOptions",
    "Dataset",
    "data_template",
    "default_data_dir",
    "default_template",
    "describe",
    "image_side",
    "load_dataset",
]
