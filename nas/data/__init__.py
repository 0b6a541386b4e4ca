"""Images in: the synthetic set, CIFAR-10/100, any image folder or archive, split and cached."""

from nas.data.known import KNOWN_CLASSES, Shape, known_shape

__all__ = ["KNOWN_CLASSES", "Shape", "known_shape"]
