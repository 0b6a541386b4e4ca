"""The built-in 32x32 sets, whose classes are known before they load."""

from __future__ import annotations

KNOWN_CLASSES = {"synthetic": 10, "cifar10": 10, "cifar100": 100}  # all 32x32
