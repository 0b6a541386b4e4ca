"""Where the tests find the shared real data (CIFAR-10, Imagenette), and small subsets of it."""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers import ROOT

TARBALL = "cifar10-jpg.tar.gz"  # ../shared/data/README.md: 50k train / 10k test JPEGs, 32x32
# ../shared/data/README.md: 2,600 train / 500 val ImageNet photos of 10 classes, 224x224 JPEG
IMAGENETTE = "imagenette10.tar.gz"


def in_ci() -> bool:
    """Whether the tests run under CI (env CI set to 1 or true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_tarball(name: str = TARBALL) -> Path:
    """The shared tarball ``name``: ``$RESNEXT_NAS_SHARED``, else ``shared/data`` beside the
    project root or a folder above it. Its absence skips the test, or fails it under CI."""
    candidates = []
    if env := os.environ.get("RESNEXT_NAS_SHARED"):
        candidates.append(Path(env).expanduser() / "data" / name)
    candidates += [p / "shared" / "data" / name for p in ROOT.parents]
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p.parent) for p in candidates[:3])
    reason = f"real data ({name}) not found in {where}; set RESNEXT_NAS_SHARED"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def cifar_subset(dest: Path, train: int, test: int) -> Path:
    """A ``.tar.gz`` at ``dest`` of the first ``train`` and ``test`` images of each class.

    Read from the shared tarball as it is (JPEG members under its one top folder), so that the
    subset has the real layout and encoding.
    """
    source = shared_tarball()
    taken: Counter[tuple[str, str]] = Counter()
    limit = {"train": train, "test": test}
    with tarfile.open(source) as src, tarfile.open(dest, "w:gz") as out:
        for m in src:
            parts = PurePosixPath(m.name).parts
            if not m.isfile() or len(parts) != 4 or parts[1] not in limit:
                continue
            key = (parts[1], parts[2])
            if taken[key] < limit[parts[1]]:
                taken[key] += 1
                out.addfile(m, src.extractfile(m))
    return dest


def imagenette_sample(dest: Path, train: int, val: int) -> Path:
    """A folder ``dest/imagenette10`` of the first ``train`` and ``val`` photos of each class,
    with the README.txt and SHA256SUMS beside train/ and val/, as in the shared tarball."""
    source = shared_tarball(IMAGENETTE)
    taken: Counter[tuple[str, str]] = Counter()
    limit = {"train": train, "val": val}
    with tarfile.open(source) as src:
        for m in src:
            parts = PurePosixPath(m.name).parts
            image = len(parts) == 4 and parts[1] in limit
            if not m.isfile() or not (image or len(parts) == 2):
                continue
            if image:
                key = (parts[1], parts[2])
                if taken[key] >= limit[parts[1]]:
                    continue
                taken[key] += 1
            path = dest.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(src.extractfile(m).read())  # type: ignore[union-attr]
    return dest / "imagenette10"
