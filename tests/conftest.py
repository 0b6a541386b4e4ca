"""Shared test set-up and fixtures: a few CPU threads, so that the suite behaves the same on 2
cores; a stored study, a browser, a counter of decoded images. Plain functions are in
tests/helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

# The project importable however pytest was started (tests/helpers.py names it ROOT).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_report_header(config) -> str:
    """One line naming the processor, its vector extensions, torch's kernel level, version and
    thread count: what a kernel comparison's rounding depends on (tests/numerics.py)."""
    from tests.numerics import machine

    return f"cpu: {machine()}"


def pytest_configure(config) -> None:
    """Keep torch from oversubscribing the CI machine's 2 cores, and runs from measuring the
    machine's plan (seconds each, and timings of a loaded machine): tests of the plan ask for
    it."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("RESNEXT_NAS_PLAN", "default")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """The image files decoded so far, recorded around the real decoder (a fresh cache)."""
    from nas.data import folder

    seen: list[Path] = []
    real = folder.decode

    def counting(path: Path, resolution: int) -> Any:
        seen.append(path)
        return real(path, resolution)

    monkeypatch.setattr(folder, "decode", counting)
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "cache"))
    return seen


@pytest.fixture(scope="session")
def stored_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite storage with studies "synthetic" (36 trials), "empty" and one named XSS."""
    import optuna

    from tests.helpers import XSS
    from tests.synthetic import synthetic_study, synthetic_trials

    url = f"sqlite:///{tmp_path_factory.mktemp('storage') / 'studies.db'}"
    synthetic_study(url, "synthetic", n=36, seeds_per_spec=2)
    optuna.create_study(study_name="empty", storage=url)
    xss = optuna.create_study(study_name=XSS, storage=url)
    xss.add_trials(synthetic_trials(3, odd=False))
    return url


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium per browser test module (tests/browser.py); skipped without one,
    except under $CI, where a missing browser fails the run."""
    from tests.browser import browser, in_ci, missing_reason

    reason = missing_reason()
    if reason:
        if in_ci():
            pytest.fail(f"$CI is set but {reason}")
        pytest.skip(reason)
    with browser() as b:
        yield b
