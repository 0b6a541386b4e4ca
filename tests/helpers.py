"""Plain functions and constants the test modules share (fixtures live in tests/conftest.py).

The command line as a real process (:func:`run_cli`, :func:`run_clis`, :func:`start_cli`) and
its one-line errors (:func:`one_line`), or in-process (:func:`refused`); the tiny search every
search test trains (:func:`tiny_space`, :data:`TRAIN`, :func:`toy_data`); hand-made trials; and
the clean-up of processes a test started (:func:`reap`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

import cli
from nas.data import Dataset
from nas.search.attrs import config_key
from nas.search.space import SearchSpace
from nas.training.config import TrainConfig
from resnext.budget import Budget, Config, generate
from resnext.spec import Spec

ROOT = Path(__file__).resolve().parent.parent

HUGE = "99999999999999999999"  # beyond int64

# A study name that is a script: every page and table must print it literally.
XSS = "<script>alert(1)</script>"

# ------------------------------------------------------------------------------ command line

# The command line as a user's shell starts it: a fresh interpreter on cli.py.
CLI = (sys.executable, str(ROOT / "cli.py"))


def cli_env(**extra: str) -> dict[str, str]:
    """This environment with the project importable and no default storage, plus ``extra``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESNEXT_NAS_STORAGE", None)
    return {**env, **extra}


def start_cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen:
    """``cli.py args`` started as a real process (signals, exit codes, process groups)."""
    return subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env() if env is None else env, **popen)


def run_clis(
    calls: Sequence[Sequence[str]],
    cwd: Path = ROOT,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``cli.py`` command lines in parallel (each pays seconds of imports); none is left
    running, whatever fails. A hang fails the test by ``timeout``."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [start_cli(*args, cwd=cwd, env=env, **pipes) for args in calls]
    out = []
    try:
        for p, args in zip(procs, calls, strict=True):
            stdout, stderr = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(list(args), p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """One ``cli.py`` command line as a user runs it, its output captured."""
    (res,) = run_clis([args], cwd=cwd, env=env, timeout=timeout)
    return res


def one_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert exit 2 with one line on stderr holding every fragment; return the line."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def refused(capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> str:
    """Run ``cli.main(args)`` in-process; assert exit 2 and one ``error:`` line on stderr
    holding each needle; return the line."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def reap(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process of its session (it was started with a new one)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    try:  # its children (a pool's workers) share its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------ tiny search

# Trials are tiny (CIFAR template, depths 1-1-1 / 2-1-1, width 16, 8x8 images, 128 training
# images, 1-2 epochs) so that a trial takes about a second on a 2-core CPU.
RES = 8

TRAIN = TrainConfig(epochs=1, batch_size=64, device="cpu", seed=0)

# The trainer's tests: a tiny 4-class net at 16x16 (toy_data(pattern="stripes")) for 2 epochs.
TINY = Spec("cifar", (1, 1, 1), 16, 2, 2, classes=4, resolution=16, stem_width=16)
FAST = TrainConfig(epochs=2, batch_size=32, lr=0.05, device="cpu")

# Trials long enough (40 epochs of 16 steps: seconds, not milliseconds, even on an idle machine)
# that a test's 0.2 s polls catch the second trial in its first half, leaving a signal 20
# epochs to land before the trial ends (one caught near its end once completed first).
KILL_IMAGES, KILL_TRAIN = 1024, replace(TRAIN, epochs=40)


def toy_data(
    n: int = 128,
    *,
    res: int = RES,
    classes: int = 10,
    kind: str = "cifar",
    seed: int = 0,
    pattern: Literal["bands", "stripes"] = "bands",
) -> Dataset:
    """A learnable toy set of ``n`` training images, ``classes`` classes at ``res`` x ``res``.

    ``bands`` (the search's trials, learnt in an epoch): each class lights one channel in one
    band of rows over uniform noise; 64 validation images, no test split. ``stripes`` (the
    trainer's tests): a class colour plus a class stripe frequency under heavy Gaussian noise,
    which survive flips and (as a phase shift) the crops' translations; ``n // 2`` validation
    and ``n // 2`` test images.
    """
    rng = np.random.default_rng(seed)
    if pattern == "bands":

        def split(m: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, classes, m)
            x = rng.integers(0, 80, (m, 3, res, res)).astype(np.uint8)
            for c in range(classes):
                band = (c // 3) * (res // 4)
                x[y == c, c % 3, band : band + res // 4] += 150
            return x, y.astype(np.int64)

        tx, ty = split(n)
        vx, vy = split(64)
        return Dataset("toy", classes, kind, tx, ty, vx, vy)
    colours = rng.uniform(70, 190, (classes, 3))
    rows = np.arange(res)[None, :, None]
    freq = np.arange(1, classes + 1)[:, None, None] * np.pi / res

    def striped(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, m)
        pattern = 30 * np.sin(freq[y] * rows)[:, None]
        x = colours[y][:, :, None, None] + pattern + rng.normal(0, 35, (m, 3, res, res))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    tx, ty = striped(n)
    vx, vy = striped(n // 2)
    sx, sy = striped(n // 2)
    return Dataset("toy", classes, kind, tx, ty, vx, vy, sx, sy)


def tiny_space(**kw: Any) -> SearchSpace:
    """17 configurations on two skeletons; the cell (2-1-1, C=8) has no in-band d."""
    args = {
        "budget": Budget(2.5e5, None, 0.2),
        "template": "cifar",
        "depths": ((1, 1, 1), (2, 1, 1)),
        "widths": (16,),
        "classes": 10,
        "resolution": RES,
    }
    return SearchSpace(**{**args, **kw})


def sqlite(tmp_path: Path) -> str:
    """The URL of a fresh SQLite study database in ``tmp_path``."""
    return f"sqlite:///{tmp_path / 'study.db'}"


def calibration_configs() -> list[Config]:
    """The in-band configurations of one tiny skeleton (1-1-1, width 16, 8x8 images)."""
    return generate(Budget(2.5e5, None, 0.2), "cifar", [(1, 1, 1)], (16,), resolution=RES)


# A worker process of the tiny search that a test stops mid-trial. It restores Python's Ctrl-C
# handler: a test run in the background (`make test &`) inherits SIGINT ignored, and so would
# the worker, which then finished the trial it was sent.
WORKER = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.helpers import toy_data, tiny_space, KILL_IMAGES, KILL_TRAIN
from nas.search.study import SearchSettings
from nas.search.workers import run_worker
settings = SearchSettings(tiny_space(), study="k", pruner="none", latency=False)
run_worker(settings, toy_data(KILL_IMAGES), KILL_TRAIN, 2, storage=sys.argv[1], heartbeat=1)
"""

# ---------------------------------------------------------------------------- hand-made trials


def spec(c: int, d: int) -> dict:
    """The spec (as stored) of a CIFAR 1-1-1 width-32 net with cardinality ``c``, width ``d``."""
    return Spec("cifar", depths=(1, 1, 1), width=32, cardinality=c, bottleneck_width=d).to_dict()


def trial(
    number: int,
    c: int,
    d: int,
    acc: float | None,
    *,
    phase: str | None = None,
    seed: int = 0,
    state: TrialState = TrialState.COMPLETE,
) -> optuna.trial.FrozenTrial:
    """A hand-made trial of ``spec(c, d)`` with accuracy ``acc`` (COMPLETE by default)."""
    attrs: dict[str, Any] = {"spec": spec(c, d), "seed": seed}
    if acc is not None:
        attrs["val_accuracy"] = acc
    if phase:
        attrs.update(phase=phase, confirm_of=config_key(spec(c, d), None))
    t = create_trial(
        state=state,
        value=None if acc is None or state != TrialState.COMPLETE else 1 - acc,
        params={"cardinality": c, "bottleneck_width": d},
        distributions={
            "cardinality": CategoricalDistribution([1, 2, 4, 8]),
            "bottleneck_width": CategoricalDistribution([1, 2, 4, 8]),
        },
        user_attrs=attrs,
    )
    t.number = number
    return t


def confirmations(first: int, c: int, d: int, accs: Sequence[float]) -> list:
    """Confirmation trials of ``spec(c, d)`` numbered from ``first``: seed i at ``accs[i]``."""
    return [trial(first + s, c, d, a, phase="confirm", seed=s) for s, a in enumerate(accs)]


def proxy() -> list:
    """Five proxy trials; the means per config are 8x1d 0.35, 4x2d 0.50, 2x4d 0.45, 1x8d 0.20."""
    return [
        trial(0, 8, 1, 0.40),
        trial(1, 4, 2, 0.50),
        trial(2, 8, 1, 0.30, seed=1),
        trial(3, 2, 4, 0.45),
        trial(4, 1, 8, 0.20),
    ]


def brute_front(cost: list[float], score: list[float]) -> set[int]:
    """The Pareto front by definition: no other point with cost <= and score >=, one of them
    strictly."""
    return {
        i
        for i in range(len(cost))
        if not any(
            cost[j] <= cost[i]
            and score[j] >= score[i]
            and (cost[j] < cost[i] or score[j] > score[i])
            for j in range(len(cost))
        )
    }
