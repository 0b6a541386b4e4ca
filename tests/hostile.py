"""Hostile invocations of every command, and a clock on each: how long until its first line.

One table for two readers: tests/test_hostile.py runs it in-process through ``cli.main`` and
asserts that each invocation prints (or refuses) within FIRST_LINE_SECONDS and ends with exit 0
or 2, never a traceback; benchmarks/bench_hostile.py runs it as real processes and prints
command -> seconds to the first line -> exit code. A case that would train is refused before
training, so the whole table runs in seconds.

Arguments name the files of :func:`make_files` as ``$db``, ``$junk`` and so on.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import socket
import sqlite3
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

FIRST_LINE_SECONDS = 5.0  # the first line, or the refusal, comes within this
CASE_SECONDS = 60.0  # a whole invocation past this is a hang
HUGE = "99999999999999999999"  # beyond int64
# The budget grid that printed nothing for minutes: 4 skeletons x 6 widths x 11 cardinalities,
# 134,249 configurations in a band of 1e12 FLOPs +-99%.
HUGE_GRID = (
    "budget", "--flops", "1e12", "--tolerance", "0.99",
    "--depths", "3,4,6,3", "--depths", "3,4,23,3", "--depths", "3,8,36,3", "--depths", "2,2,2,2",
    "--widths", "64,128,256,512,1024,2048",
    "--cardinalities", "1,2,4,8,16,32,64,128,256,512,1024",
)  # fmt: skip
# Names a user sharing a storage may give a study: markup, escapes, newline, bidi override.
HOSTILE_NAMES = ("[/x]", "\x1b]8;;http://x\x07[link]", "a\nb", "evil\u202etxt.exe", "é ∑ 松鼠")


@dataclass(frozen=True)
class Case:
    """One invocation: its name, its arguments (``$name`` for a file of :func:`make_files`) and
    the exit code it must end with."""

    name: str
    args: tuple[str, ...]
    code: int = 2

    def argv(self, files: dict[str, str]) -> list[str]:
        """The arguments with the files' paths put in."""
        return [Template(a).safe_substitute(files) for a in self.args]


def _cases() -> list[Case]:
    many = ",".join(map(str, range(1, 15001)))  # 15,000 bottleneck widths, 80 kB of argument
    tpu = ("--device", "tpu")
    folder = ("--dataset", "folder", "--data-dir")
    return [
        # --- budget
        Case("budget huge grid, table", HUGE_GRID, 0),
        Case("budget huge grid, --json", (*HUGE_GRID, "--json"), 0),
        Case("budget huge grid, --limit 1000", (*HUGE_GRID, "--limit", "1000"), 0),
        Case(
            "budget 15,000 bottleneck widths",
            ("budget", "--flops", "1e12", "--tolerance", "0.99", "--bottleneck-widths", many),
            0,
        ),  # fmt: skip
        Case(
            "budget grid over the cell cap",
            (
                "budget",
                "--flops",
                "4e9",
                "--cardinalities",
                ",".join(map(str, range(1, 4097))),
                "--bottleneck-widths",
                many,
            ),
        ),  # fmt: skip
        Case(
            "budget --depths x500 repeated",
            ("budget", "--flops", "4.1e9", *("--depths", "3,4,6,3") * 500),
            0,
        ),  # fmt: skip
        Case("budget --flops nan", ("budget", "--flops", "nan")),
        Case("budget --flops inf", ("budget", "--flops", "inf")),
        Case("budget --flops 1e400", ("budget", "--flops", "1e400")),
        Case("budget --flops -4e9", ("budget", "--flops", "-4e9")),
        Case("budget --flops 1e30", ("budget", "--flops", "1e30")),
        Case("budget --flops 1e-30", ("budget", "--flops", "1e-30")),
        Case("budget --tolerance nan", ("budget", "--flops", "4e9", "--tolerance", "nan")),
        Case("budget --depths HUGE", ("budget", "--flops", "4e9", "--depths", f"{HUGE},1,1,1")),
        Case("budget --cardinalities HUGE", ("budget", "--flops", "4e9", "--cardinalities", HUGE)),
        Case("budget --widths 0", ("budget", "--flops", "4e9", "--widths", "0")),
        Case("budget --limit 0", ("budget", "--flops", "4e9", "--limit", "0")),
        Case("budget --limit HUGE", ("budget", "--flops", "4.1e9", "--limit", HUGE), 0),
        Case(
            "budget int64 overflow",
            (
                "budget",
                "--flops",
                "4e9",
                "--widths",
                "65536",
                "--depths",
                "1000,1000,1000,1000",
                "--resolution",
                "4096",
                "--cardinalities",
                "1,65536",
                "--bottleneck-widths",
                "1",
            ),
        ),  # fmt: skip
        Case("budget --template newline", ("budget", "--flops", "4e9", "--template", "cifar\n")),
        # --- show, presets
        Case("show a markup preset name", ("show", "[/x]\x1b[31m")),
        Case("show --depths HUGE", ("show", "--depths", f"{HUGE},1,1,1")),
        # --- search: refused before any data or training
        Case("search --seed -1", ("search", "--seed", "-1")),
        Case("search --device tpu", ("search", *tpu)),
        Case("search --heartbeat HUGE", ("search", "--heartbeat", HUGE[:14])),
        Case("search --trials -1", ("search", "--trials", "-1")),
        Case("search --confirm HUGE", ("search", "--confirm", HUGE)),
        Case("search --confirm 10**9", ("search", "--confirm", "1000000000", *tpu)),
        Case("search --flops nan", ("search", "--flops", "nan")),
        Case("search --workers 999", ("search", "--workers", "999", "--seed", "-1")),
        Case(
            "search newline study name, junk storage",
            ("search", "--study", "a\nb\u202e", "--storage", "sqlite:///$junk"),
        ),  # fmt: skip
        Case("search storage bogus://", ("search", "--storage", "bogus://x")),
        Case(
            "search storage in a missing folder",
            ("search", "--storage", "sqlite:////no/such/folder/x.db"),
        ),  # fmt: skip
        Case("search storage of another app", ("search", "--storage", "sqlite:///$foreign")),
        Case(
            "search storage postgresql refused",
            ("search", "--storage", "postgresql://u:p@127.0.0.1:1/db"),
        ),  # fmt: skip
        Case("search folder data missing", ("search", *folder, "$tmp/none")),
        Case("search corrupt archive", ("search", *folder, "$corrupt")),
        # (cifar10 and cifar100 are downloaded when missing: not a case for a test)
        Case(
            "search imagenet not there", ("search", "--dataset", "imagenet", "--data-dir", "$empty")
        ),  # fmt: skip
        # --- train
        Case("plan --batch-size 0", ("plan", "--batch-size", "0")),
        Case("train --lr 1e308", ("train", "--lr", "1e308")),
        Case("train --lr nan", ("train", "--lr", "nan")),
        Case("train --epochs 0", ("train", "--epochs", "0")),
        Case("train --batch-size -5", ("train", "--batch-size", "-5")),
        Case("train --spec /dev/zero", ("train", "--spec", "/dev/zero")),
        Case("train --spec nested JSON", ("train", "--spec", "$nested")),
        Case("train --spec missing", ("train", "--spec", "$tmp/absent.json")),
        Case(
            "train too large for memory",
            (
                "train",
                "--template",
                "imagenet",
                "--width",
                "65536",
                "--depths",
                "1000,1000,1000,1000",
                "--out",
                "$tmp/big",
            ),
        ),  # fmt: skip
        Case("train --out is a file", ("train", "--out", "$taken")),
        Case("train corrupt archive", ("train", *folder, "$corrupt")),
        Case("train --resolution HUGE", ("train", "--resolution", HUGE)),
        # --- trials, studies
        Case("studies of hostile names", ("studies", "--storage", "sqlite:///$db"), 0),
        Case(
            "trials of a markup name",
            ("trials", "--study", "[/x]", "--storage", "sqlite:///$db"),
            0,
        ),  # fmt: skip
        Case(
            "trials unknown escape name",
            ("trials", "--study", "\x1b]8;;http://x\x07[/x]", "--storage", "sqlite:///$db"),
        ),  # fmt: skip
        Case("trials of a junk file", ("trials", "--study", "s", "--storage", "sqlite:///$junk")),
        Case("trials in memory", ("trials", "--study", "s", "--storage", "sqlite://")),
        Case(
            "trials --csv into /proc",
            (
                "trials",
                "--study",
                "synthetic",
                "--storage",
                "sqlite:///$db",
                "--csv",
                "/proc/resnext-nas-hostile",
            ),
        ),  # fmt: skip
        Case(
            "trials --front bogus",
            ("trials", "--study", "synthetic", "--storage", "sqlite:///$db", "--front", "bogus"),
        ),  # fmt: skip
        Case("studies missing file", ("studies", "--storage", "sqlite:///$tmp/absent.db")),
        Case("studies of another app", ("studies", "--storage", "sqlite:///$foreign")),
        # --- export
        Case(
            "export unknown study",
            ("export", "--study", "nope", "--best", "--storage", "sqlite:///$db"),
        ),  # fmt: skip
        Case(
            "export --trial HUGE",
            ("export", "--study", "negvar", "--trial", HUGE, "--storage", "sqlite:///$db"),
        ),  # fmt: skip
        *(
            Case(
                f"export {name} weights",
                (
                    "export",
                    "--study",
                    name,
                    "--best",
                    "--no-onnx",
                    "--storage",
                    "sqlite:///$db",
                    "--out",
                    f"$tmp/export-{name}",
                ),
            )  # fmt: skip
            for name in ("negvar", "huge", "nannorm", "pickle")
        ),
        Case(
            "export negvar weights with ONNX",
            (
                "export",
                "--study",
                "negvar",
                "--best",
                "--storage",
                "sqlite:///$db",
                "--out",
                "$tmp/export-onnx",
            ),
        ),  # fmt: skip
        # --- dashboard
        Case(
            "dashboard --port 99999",
            (
                "dashboard",
                "--study",
                "synthetic",
                "--serve",
                "--port",
                "99999",
                "--storage",
                "sqlite:///$db",
            ),
        ),  # fmt: skip
        Case(
            "dashboard --out into /proc",
            (
                "dashboard",
                "--study",
                "synthetic",
                "--storage",
                "sqlite:///$db",
                "--out",
                "/proc/resnext-nas-hostile",
            ),
        ),  # fmt: skip
        Case(
            "dashboard unknown study",
            (
                "dashboard",
                "--study",
                "a\nb\u202e",
                "--storage",
                "sqlite:///$db",
                "--out",
                "$tmp/page.html",
            ),
        ),  # fmt: skip
        Case(
            "dashboard of a markup name",
            (
                "dashboard",
                "--study",
                "[/x]",
                "--storage",
                "sqlite:///$db",
                "--out",
                "$tmp/markup.html",
            ),
            0,
        ),  # fmt: skip
        # --- calibrate
        Case("calibrate --k 100", ("calibrate", "--k", "100", "--out", "$tmp/cal.json")),
        Case("calibrate --k 1", ("calibrate", "--k", "1", "--out", "$tmp/cal.json")),
        Case("calibrate --factor 0", ("calibrate", "--factor", "0", "--out", "$tmp/cal.json")),
        Case("calibrate --lr nan", ("calibrate", "--lr", "nan", "--out", "$tmp/cal.json")),
        Case("calibrate --out into /proc", ("calibrate", "--out", "/proc/x/cal.json")),
        # --- study
        Case("study list", ("study", "list"), 0),
        Case("study run unknown", ("study", "run", "[/x]\nnope")),
        Case("study run --device tpu", ("study", "run", "cardinality-vs-width", *tpu)),
        Case("study run --seeds HUGE", ("study", "run", "cardinality-vs-width", "--seeds", HUGE)),
        Case("study drop unknown", ("study", "drop", "nope", "--storage", "sqlite:///$db")),
        Case(
            "study drop without --yes", ("study", "drop", "synthetic", "--storage", "sqlite:///$db")
        ),  # fmt: skip
    ]


CASES = _cases()


# ---------------------------------------------------------------------------------- the files


def make_files(folder: Path) -> dict[str, str]:
    """Write what the cases read into ``folder``; their ``$names`` -> paths.

    ``db`` holds a synthetic study, studies of :data:`HOSTILE_NAMES`, and one-trial studies
    whose weights are spoilt: a negative batch-norm variance (negvar), 3e38 weights (huge), a
    NaN normalisation (nannorm) and a raw pickle (pickle).
    """
    import optuna
    import torch

    import resnext
    from tests.synthetic import synthetic_study, synthetic_trials

    folder.mkdir(parents=True, exist_ok=True)
    files = {"tmp": str(folder), "db": str(folder / "studies.db")}
    url = f"sqlite:///{files['db']}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    synthetic_study(url, "synthetic", n=12)
    for name in HOSTILE_NAMES:
        optuna.create_study(study_name=name, storage=url).add_trials(synthetic_trials(3, odd=False))
    spec = resnext.Spec("cifar", (1, 1, 1), 16, 2, 2, classes=4, resolution=16, stem_width=16)
    for name in ("negvar", "huge", "nannorm", "pickle"):
        model = resnext.build(spec)
        state: Any = {
            "format": 1,
            "spec": spec.to_dict(),
            "model": model.state_dict(),
            "normalization": {"mean": torch.zeros(3), "std": torch.ones(3)},
        }
        if name == "negvar":
            next(t for k, t in state["model"].items() if k.endswith("running_var")).fill_(-1)
        elif name == "huge":
            next(t for t in state["model"].values() if t.dim() == 4).fill_(3e38)
        elif name == "nannorm":
            state["normalization"]["mean"][0] = float("nan")
        path = folder / f"{name}.pt"
        if name == "pickle":
            path.write_bytes(pickle.dumps({"spec": object()}))
        else:
            torch.save(state, path)
        attrs = {"spec": spec.to_dict(), "weights": str(path), "host": socket.gethostname()}
        study = optuna.create_study(study_name=name, storage=url)
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    files["junk"] = str(folder / "junk.db")
    Path(files["junk"]).write_bytes(b"not a database at all\n" * 40)
    files["foreign"] = str(folder / "app.db")
    con = sqlite3.connect(files["foreign"])
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    files["corrupt"] = str(folder / "corrupt.tar.gz")
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:
        member = tarfile.TarInfo("tree/train/a/x.png")
        member.size = 4096
        t.addfile(member, io.BytesIO(os.urandom(4096)))
    Path(files["corrupt"]).write_bytes(tar.getvalue()[: len(tar.getvalue()) // 2])
    files["nested"] = str(folder / "nested.json")
    Path(files["nested"]).write_text("[" * 100_000 + "]" * 100_000)
    files["taken"] = str(folder / "taken")
    Path(files["taken"]).write_text("mine")
    files["empty"] = str(folder / "empty")
    Path(files["empty"]).mkdir(exist_ok=True)
    return files


# ---------------------------------------------------------------------------------- the clock


@dataclass
class Timing:
    """What one invocation did: seconds to its first line and in all, exit code, output."""

    first_line: float | None  # None: it printed nothing
    total: float
    code: int | None  # None: stopped after CASE_SECONDS
    first: str  # the first line printed (stdout or stderr)
    stderr: str


class _Stamped(io.TextIOBase):
    """A text stream that notes when its first text arrives and keeps the first 64 kB."""

    def __init__(self, start: float, clock: list[float | None]) -> None:
        self.start, self.clock, self.head = start, clock, []
        self.kept = 0

    def write(self, s: str) -> int:
        if s and self.clock[0] is None:
            self.clock[0] = time.perf_counter() - self.start
        if self.kept < 65536:
            self.head.append(s)
            self.kept += len(s)
        return len(s)

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def text(self) -> str:
        return "".join(self.head)


class Hung(BaseException):
    """Raised into an invocation that ran past CASE_SECONDS (BaseException: no handler eats it)."""


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def ring(*_: object) -> None:
        raise Hung

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_in_process(argv: list[str]) -> Timing:
    """``cli.main(argv)`` with stdout and stderr timed; a traceback propagates."""
    import cli

    start = time.perf_counter()
    clock: list[float | None] = [None]
    out, err = _Stamped(start, clock), _Stamped(start, clock)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    code: int | None = 0
    try:
        with _alarm(CASE_SECONDS):
            cli.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Hung:
        code = None
    finally:
        sys.stdout, sys.stderr = saved
    total = time.perf_counter() - start
    first = next((ln for ln in (out.text() + err.text()).splitlines() if ln.strip()), "")
    return Timing(clock[0], total, code, first, err.text())


def run_process(argv: list[str], cwd: Path, env: dict[str, str]) -> Timing:
    """``cli.py argv`` as a real process, from its start: interpreter and imports included."""
    import selectors
    import subprocess

    from tests.helpers import start_cli

    start = time.perf_counter()
    proc = start_cli(*argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    first_line = None
    open_streams = 2
    while open_streams:
        left = CASE_SECONDS - (time.perf_counter() - start)
        events = sel.select(timeout=max(left, 0))
        if not events:
            proc.kill()
            break
        for key, _ in events:
            data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if not data:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            if first_line is None:
                first_line = time.perf_counter() - start
            if sum(map(len, chunks[key.data])) < 65536:
                chunks[key.data].append(data)
    code = proc.wait()
    total = time.perf_counter() - start
    out, err = (b"".join(chunks[k]).decode(errors="replace") for k in ("out", "err"))
    first = next((ln for ln in (out + err).splitlines() if ln.strip()), "")
    return Timing(first_line, total, None if code < 0 else code, first, err)
