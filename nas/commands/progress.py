"""Progress on stderr for people: a search's trials, a first data load's stages.

On a terminal both draw with :mod:`rich.progress`; when stderr is a file or a pipe they write
plain lines instead (a line a finished trial, a line as a load stage starts and ends), which a
log keeps readable. Under ``--quiet`` nothing is said; under ``--json`` only where a data load
left files in the cache (stdout holds the JSON; stderr stays for people).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nas.commands.options import LiteralConsole
from nas.data.progress import SILENT, Advance, LoadProgress, size_text


def clock(seconds: float) -> str:
    """A duration for people: ``42s``, ``3m07s``, ``1h05m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def stderr_console() -> Console:
    """The console progress is drawn on: stderr, printing strings literally."""
    return LiteralConsole(stderr=True, highlight=False)


class LoadDisplay(LoadProgress):
    """A first data load on stderr: a bar a stage on a terminal, else a line as each stage
    starts and ends; ``notes`` (where the cache is, its size) as lines unless ``notes`` is off.
    """

    def __init__(
        self, stages: bool = True, notes: bool = True, console: Console | None = None
    ) -> None:
        self.stages, self.notes = stages, notes
        self.console = console or stderr_console()

    @contextmanager
    def stage(self, what: str, total: int, unit: str) -> Iterator[Advance]:
        """A bar (terminal) or two lines (piped) around the stage, ending in its wall time."""
        if not self.stages:
            with SILENT.stage(what, total, unit) as advance:
                yield advance
            return
        t0 = time.perf_counter()
        if self.console.is_terminal:
            count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
            columns = (TextColumn("{task.description}"), BarColumn(), count, TaskProgressColumn())
            with Progress(
                *columns, TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task(what, total=total or None)
                yield lambda n: bar.advance(task, n)
        else:
            size = f" ({size_text(total)})" if unit == "bytes" and total else ""
            self.console.print(f"{what}{size}...", soft_wrap=True)
            with SILENT.stage(what, total, unit) as advance:
                yield advance
        self.console.print(f"{what}: done in {clock(time.perf_counter() - t0)}", soft_wrap=True)

    def note(self, text: str) -> None:
        """One line on stderr, unless notes are off."""
        if self.notes:
            self.console.print(text, soft_wrap=True)


def load_display(quiet: bool, as_json: bool = False) -> LoadProgress:
    """What a command's data load reports: nothing under ``--quiet``; the cache's notes only
    under ``--json`` (stdout is the JSON, stderr stays for people); else stages and notes."""
    if quiet:
        return SILENT
    return LoadDisplay(stages=not as_json)


@dataclass(frozen=True)
class Tally:
    """Where a search stands, read from its storage."""

    proxy_done: int = 0  # trained proxy trials of the study (complete or pruned)
    confirm_done: int = 0  # complete confirmation trials
    confirm_planned: int = 0  # confirmation trials done, running, queued or to be queued
    best: str = ""  # the best so far, labelled: confirmed mean, or a single proxy trial


def tally(trials: list[Any], n_trials: int, confirm: Any, proxy_epochs: int) -> Tally:
    """The :class:`Tally` of a study's ``trials``, searched for ``n_trials`` proxy trials of
    ``proxy_epochs`` epochs and confirmed as ``confirm`` says (None or k=0: not at all).

    Until the proxy trials are all trained the confirmation plans ``k`` configurations of
    ``seeds`` seeds; after, what is queued and what :func:`nas.search.confirm.plan` adds
    (racing may add seeds later)."""
    from optuna.trial import TrialState

    from nas.search.attrs import CONFIRM, config_of, is_trained_proxy, notation, phase
    from nas.search.confirm import confirmed, plan

    proxy_done = sum(map(is_trained_proxy, trials))
    mine = [t for t in trials if phase(t) == CONFIRM and "surplus" not in t.user_attrs]
    done = sum(t.state == TrialState.COMPLETE for t in mine)
    planned = 0
    if confirm is not None and confirm.k > 0:
        if proxy_done < n_trials:
            planned = confirm.k * confirm.seeds
        else:
            live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            planned = sum(t.state in live for t in mine) + len(plan(trials, confirm))
    got = confirmed(trials)
    if got:
        key = max(got, key=lambda k: (sum(got[k].values()) / len(got[k]), k))
        accs = list(got[key].values())
        n = len(accs)
        epochs = confirm.confirm_epochs(proxy_epochs) if confirm is not None else proxy_epochs
        best = (
            f"best confirmed mean so far: {notation(config_of(key)[0])} "
            f"{sum(accs) / n:.1%} ({n} seed{'s' * (n != 1)} of {_epochs(epochs)})"
        )
    else:
        proxies = [
            t
            for t in trials
            if phase(t) != CONFIRM
            and t.state == TrialState.COMPLETE
            and isinstance(t.user_attrs.get("val_accuracy"), int | float)
            and isinstance(t.user_attrs.get("spec"), dict)
        ]
        best = ""
        if proxies:
            t = max(proxies, key=lambda t: (t.user_attrs["val_accuracy"], -t.number))
            best = (
                f"best single proxy trial so far: #{t.number} "
                f"{notation(t.user_attrs['spec'])} {t.user_attrs['val_accuracy']:.1%} "
                f"({_epochs(len(t.user_attrs.get('curve') or []) or proxy_epochs)}, 1 seed; "
                "not the answer)"
            )
    return Tally(proxy_done, done, max(planned, done), best)


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


class _Board(Progress):
    """A rich Progress that draws lines of text under its bars."""

    def __init__(self, lines: Callable[[], list[str]], **kwargs: Any) -> None:
        self._lines = lines  # before Progress's own set-up, which renders once
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[what]}"),
            **kwargs,
        )

    def get_renderables(self) -> Iterator[Any]:
        """The bars, then the lines."""
        yield self.make_tasks_table(self.tasks)
        yield Text("\n".join(self._lines()))


class SearchProgress:
    """A search's progress on stderr: proxy and confirmation trials done of those planned, the
    time elapsed and an ETA at this run's pace, the best so far (a confirmed mean, or the best
    single proxy trial labelled so), and each worker's trial and epoch. When stderr is no
    terminal: a line as it starts and a line a finished trial.

    It is the ``progress`` callback of :func:`nas.search.workers.run_search` (events:
    :data:`nas.search.study.Progress`) and counts trials from the study's storage as each ends,
    so that the trials of other processes sharing the study count too. The ETA counts epochs:
    the proxy trials' and the planned confirmation trials', at the epochs per second this run
    has trained so far.
    """

    def __init__(
        self,
        study: str,
        storage: str | None,
        n_trials: int,
        epochs: int,
        confirm: Any = None,
        console: Console | None = None,
        now: Callable[[], float] = time.monotonic,
        read: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.study, self.storage = study, storage
        self.n_trials, self.epochs, self.confirm = n_trials, epochs, confirm
        self.console = console or stderr_console()
        self.now = now
        self._read = read
        self._loaded: Any = None
        self.lock = threading.Lock()
        self.tally = tally([], n_trials, confirm, epochs)  # until the study can be read
        self.running: dict[int, dict[str, Any]] = {}  # worker -> its trial's last epoch event
        self.t0 = 0.0
        self.work0 = 0.0  # epochs done when this run started
        self.board: _Board | None = None

    @property
    def confirm_epochs(self) -> int:
        """Epochs of one confirmation trial (0 without a confirmation phase)."""
        c = self.confirm
        return c.confirm_epochs(self.epochs) if c is not None and c.k > 0 else 0

    def _trials(self) -> list[Any]:
        if self._read is not None:
            return self._read()
        if self._loaded is None:
            from nas.search.storage import load

            self._loaded = load(self.study, self.storage, read_only=True)
        return self._loaded.get_trials(deepcopy=False)

    def refresh(self) -> None:
        """Count the study's trials again; a storage that does not answer keeps the last count
        (the search itself reports it)."""
        try:
            t = tally(self._trials(), self.n_trials, self.confirm, self.epochs)
        except Exception:
            return
        with self.lock:
            self.tally = t

    def work(self) -> tuple[float, float]:
        """(epochs done, epochs planned) of the whole search, running trials' epochs included."""
        t, ce = self.tally, self.confirm_epochs
        total = self.n_trials * self.epochs + t.confirm_planned * ce
        done = min(self.n_trials, t.proxy_done) * self.epochs + t.confirm_done * ce
        done += sum(ev.get("epoch", 0) for ev in self.running.values())
        return min(done, total), total

    def eta(self) -> float | None:
        """Seconds left at this run's pace so far; None before its first epoch."""
        done, total = self.work()
        spent = self.now() - self.t0
        if done <= self.work0 or spent <= 0:
            return None if done < total else 0.0
        return (total - done) * spent / (done - self.work0)

    def status(self) -> str:
        """One line: trials done of planned, elapsed, ETA."""
        t = self.tally
        parts = [f"search {min(t.proxy_done, self.n_trials)}/{self.n_trials} trials"]
        if self.confirm_epochs:
            parts.append(f"confirmation {t.confirm_done}/{t.confirm_planned} trials planned")
        eta = self.eta()
        left = "ETA after the first epoch" if eta is None else f"ETA {clock(eta)}"
        return f"{', '.join(parts)}; elapsed {clock(self.now() - self.t0)}, {left}"

    def lines(self) -> list[str]:
        """The lines under the bars: time, best so far, workers."""
        with self.lock:
            eta = self.eta()
            left = "ETA after the first epoch" if eta is None else f"ETA {clock(eta)}"
            out = [f"elapsed {clock(self.now() - self.t0)}, {left}"]
            if self.tally.best:
                out.append(self.tally.best)
            for w, ev in sorted(self.running.items()):
                out.append(
                    f"worker {w}: trial {ev['trial']} {ev['spec']}, epoch {ev['epoch']}/"
                    f"{ev['epochs']}, val acc {ev['val_accuracy']:.1%}"
                )
            return out

    def start(self) -> None:
        """Count what the study holds, and start drawing (or write the first line)."""
        self.refresh()
        self.t0 = self.now()
        self.work0 = self.work()[0]
        if not self.console.is_terminal:
            self._line()
            return
        self.board = _Board(self.lines, console=self.console, refresh_per_second=2)
        self.search_task = self.board.add_task("search", total=self.n_trials, what="trials")
        if self.confirm_epochs:
            self.confirm_task = self.board.add_task(
                "confirmation", total=self.tally.confirm_planned, what="trials planned"
            )
        self._draw()
        self.board.start()

    def _line(self) -> None:
        best = f"; {self.tally.best}" if self.tally.best else ""
        self.console.print(self.status() + best, soft_wrap=True)

    def _draw(self) -> None:
        if self.board is None:
            return
        t = self.tally
        self.board.update(self.search_task, completed=min(t.proxy_done, self.n_trials))
        if self.confirm_epochs:
            self.board.update(self.confirm_task, completed=t.confirm_done, total=t.confirm_planned)

    def __call__(self, worker: int, ev: dict[str, Any]) -> None:
        """A worker's event: an epoch of its trial, or the trial's end."""
        if "ended" in ev:
            with self.lock:
                self.running.pop(worker, None)
            self.refresh()
            if self.board is None:
                self._line()
        else:
            with self.lock:
                self.running[worker] = ev
        self._draw()

    def stop(self) -> None:
        """Draw the last state and stop; the bars end with a newline, so that a summary that
        follows on stdout starts a line of its own."""
        if self.board is None:
            return
        with self.lock:
            self.running.clear()
        self.refresh()
        self._draw()
        self.board.stop()
