"""Shared test set-up: a few CPU threads, so that the suite behaves the same on 2 cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_configure(config) -> None:
    """Keep torch from oversubscribing the CI machine's 2 cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
