"""What a data load tells people while it works: the stages of a first load, and notes.

A first load of an image archive extracts it and decodes every image (about half a minute for
CIFAR-10's 60,000 JPEGs on 2 cores) and leaves both in the cache; later loads read the cache in
a second. The loaders report to a :class:`LoadProgress`: this one says nothing, and the commands
pass one that draws on the terminal (:class:`nas.commands.progress.LoadDisplay`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Advance = Callable[[int], None]  # called with the work done since its last call


class LoadProgress:
    """Where a data load reports its stages and notes; this base class is silent."""

    @contextmanager
    def stage(self, what: str, total: int, unit: str) -> Iterator[Advance]:
        """A stage of ``total`` units (``"images"``, ``"bytes"``): the block calls the advance
        it is given as the work gets done."""
        yield _nothing

    def note(self, text: str) -> None:
        """One line for people: where a load left files, and how large they are."""


def _nothing(_n: int) -> None:
    pass


SILENT = LoadProgress()


def size_text(n: int) -> str:
    """A size in bytes for people, in decimal units: ``383 MB``, ``1.2 GB``, ``512 bytes``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def folder_bytes(path: Path) -> int:
    """The bytes of the files under ``path`` (links not followed; unreadable entries skipped)."""
    total, stack = 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total
