"""The ResNeXt family: specs, template rules, presets, models and exact complexity.

Importing this package does not import torch; :func:`build` and :func:`convert` do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnext.complexity import Complexity, complexity, complexity_by_part, complexity_grid
from resnext.registry import preset, preset_names, preset_source, register
from resnext.spec import TEMPLATES, Spec
from resnext.template import stages, stem

if TYPE_CHECKING:
    from torch import nn

FORMS = ("a", "b", "c")

__all__ = [
    "FORMS",
    "TEMPLATES",
    "Complexity",
    "Spec",
    "build",
    "complexity",
    "complexity_by_part",
    "complexity_grid",
    "convert",
    "preset",
    "preset_names",
    "preset_source",
    "register",
    "stages",
    "stem",
]


def build(spec: Spec, form: str = "c", **kwargs: Any) -> nn.Module:
    """Build the network of ``spec`` with blocks in form ``a``, ``b`` or ``c`` (Fig. 3)."""
    from resnext.network import build as _build

    return _build(spec, form, **kwargs)


def convert(model: nn.Module, form: str) -> nn.Module:
    """A new network in ``form`` that computes the same function as ``model``."""
    from resnext.network import convert as _convert

    return _convert(model, form)
