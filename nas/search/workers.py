"""The worker pool of a search: local processes taking trials until the study has enough.

Each worker takes trials until the *study-wide* number of trained trials is reached, counted from
the storage and not per process. Heartbeats mark a killed worker's trial failed and queue it
again, so a crash loses at most the trials that were running; the pool names a worker that died
and what became of its trial. Workers stop with the process that started them, however it ends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.data import Dataset
from nas.data.shared import SharedData, publish
from nas.search import deadline
from nas.search.attrs import (
    CONFIRM,
    display_state,
    is_trained,
    is_trained_proxy,
    phase,
    retried_from,
)
from nas.search.confirm import ConfirmSettings, plan
from nas.search.objective import Objective
from nas.search.space import SpecGrid
from nas.search.storage import (
    HEARTBEAT,
    MAX_RETRY,
    causes,
    open_storage,
    quiet_optuna,
    storage_error,
    storage_url,
)
from nas.search.study import (
    ENQUEUED,
    Progress,
    SearchSettings,
    create_or_load,
    prepare,
)
from nas.training.config import TrainConfig

MAX_FAILURES = 3  # a worker whose trials raise this many times in a row stops
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"  # the user's choice of GPUs, narrowed per worker


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the process is: its trial is failed and queued again, as
    on Ctrl-C. ``signum`` is the signal's number (the shell's exit code for it is 128 + it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _terminate(signum: int, _frame: Any) -> None:
    stop = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
    # A database call waiting in this thread raises it itself, at once, even if the server is
    # frozen (psycopg's own Ctrl-C handling first asks the server to cancel, for seconds); the
    # clean-up's calls then have a few seconds in all.
    if not deadline.interrupt(stop):
        raise stop


# Closing a terminal hangs up its processes; a pool hung up must stop as one sent SIGTERM does.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP interrupt the main thread as Ctrl-C does, and each
    of them (Ctrl-C too) ends a wait on the database at once.

    Python's default for them ends the process at once: no trial is queued again, and a pool's
    workers are left running on their own. A SIGHUP ignored from the start (``nohup``) stays
    ignored; Ctrl-C is taken over only where Python's own handler has it (a background job
    ignores it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        s: signal.signal(s, _terminate)
        for s in STOP_SIGNALS
        if s == signal.SIGTERM or signal.getsignal(s) is not signal.SIG_IGN
    }
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _terminate)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        deadline.resume()


@dataclass
class WorkerReport:
    """What one worker did, for the summary line and the overhead benchmark."""

    worker: int
    trials: int = 0  # proxy trials trained here (complete or pruned)
    confirm_trials: int = 0  # confirmation trials trained here
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    latency_seconds: float = 0.0
    idle_seconds: float = 0.0  # waiting for the others' last trials (the study has enough)
    statuses: dict[str, int] = field(default_factory=dict)


def run_worker(
    settings: SearchSettings,
    data: Dataset,
    train: TrainConfig,
    n_trials: int,
    *,
    storage: str | optuna.storages.RDBStorage | None = None,
    worker: int = 0,
    heartbeat: int = HEARTBEAT,
    progress: Progress | None = None,
    poll: float = 1.0,
    shared: bool = True,
    started: Callable[[int], None] | None = None,
) -> WorkerReport:
    """Take trials of the study until ``n_trials`` trials of the whole study are trained, then
    run its confirmation phase (``settings.confirm``) until :func:`nas.search.confirm.plan` has
    nothing
    left to queue and no confirmation trial runs.

    ``storage`` is a URL, or a storage :func:`open_storage` opened; ``shared=False`` says no
    other worker takes trials of the study at the same time (see
    :func:`~nas.search.study.make_sampler`); ``started`` is called with the number of each trial
    it starts. SIGTERM or SIGHUP stops it as Ctrl-C does: its trial is failed and queued again,
    then :class:`Terminated`.
    """
    with stop_signals_interrupt():
        return _run_worker(
            settings,
            data,
            train,
            n_trials,
            storage,
            worker,
            heartbeat,
            progress,
            poll,
            shared,
            started,
        )


def _run_worker(
    settings: SearchSettings,
    data: Dataset,
    train: TrainConfig,
    n_trials: int,
    storage: str | optuna.storages.RDBStorage | None,
    worker: int,
    heartbeat: int,
    progress: Progress | None,
    poll: float,
    shared: bool,
    started: Callable[[int], None] | None,
) -> WorkerReport:
    quiet_optuna()
    t0 = time.perf_counter()
    if isinstance(storage, optuna.storages.RDBStorage):
        st = storage
    else:
        st = open_storage(storage, heartbeat=heartbeat)
    study = create_or_load(
        st, settings, n_trials=n_trials, train=train, worker=worker, shared=shared
    )
    objective = Objective(
        settings.space,
        data,
        train,
        settings.objectives,
        n_trials,
        latency=settings.latency,
        worker=worker,
        progress=progress,
        runs_dir=settings.runs_dir,
        confirm=settings.confirm,
    )
    report = WorkerReport(worker)
    grid = isinstance(settings.space, SpecGrid)  # only enqueued points are trained
    failures = 0
    ran: list[FrozenTrial] = []  # the trial this process just ran, from optimize's callback

    def take(trial: optuna.Trial) -> float | list[float]:
        if started:
            started(trial.number)
        return objective(trial)

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if is_trained_proxy(t)]
        errors = [t.values[0] for t in done if t.state == TrialState.COMPLETE and t.values]
        objective.best_error = min([objective.best_error, *errors])
        if len(done) >= n_trials:
            step = _confirm_step(study, trials, settings.confirm)
            if step == "done":
                break
            if step == "wait":
                time.sleep(poll)
                report.idle_seconds += poll
                continue
        else:
            running = sum(t.state == TrialState.RUNNING and phase(t) != CONFIRM for t in trials)
            if len(done) + running >= n_trials or (grid and running and not _waiting(trials)):
                # Wait for the others: a running trial that goes stale comes back as a retry.
                time.sleep(poll)
                report.idle_seconds += poll
                continue
            if grid and not _waiting(trials):
                break  # the grid points left failed; `enqueue_grid` queues them on the next run
        try:
            study.optimize(
                take,
                n_trials=1,
                catch=(Exception,),
                gc_after_trial=False,
                callbacks=[lambda _study, t: ran.append(t)],  # noqa: B023 (called at once)
            )
        except BaseException as e:
            stop = _interrupt_in(e)
            if stop is None:
                raise
            requeue_interrupted(study, objective.current)
            raise stop from None
        last = ran[-1]
        if progress:
            progress(worker, {"ended": last.number})
        state = display_state(last)
        report.statuses[state] = report.statuses.get(state, 0) + 1
        if is_trained_proxy(last):
            report.trials += 1
        elif is_trained(last):
            report.confirm_trials += 1
        if last.state == TrialState.FAIL:
            failures += 1
            if failures >= MAX_FAILURES:
                msg = last.user_attrs.get("error", "unknown error")
                if msg.startswith("ValueError: "):
                    raise ValueError(msg.removeprefix("ValueError: "))
                raise RuntimeError(f"{failures} trials in a row failed; the last with {msg}")
        else:
            failures = 0
    report.wall_seconds = time.perf_counter() - t0
    report.train_seconds = objective.train_seconds
    report.latency_seconds = objective.latency_seconds
    return report


def _interrupt_in(e: BaseException) -> KeyboardInterrupt | None:
    """The interrupt (Ctrl-C, SIGTERM) that ``e`` is or was raised in handling, else None.

    Optuna's clean-up after an interrupt can fail on top of it (UnboundLocalError, when the
    database did not answer its write of the failed trial): the interrupt is what happened.
    """
    return next((c for c in causes(e) if isinstance(c, KeyboardInterrupt)), None)


def _waiting(trials: list[FrozenTrial]) -> bool:
    return any(t.state == TrialState.WAITING for t in trials)


def _confirm_step(
    study: optuna.Study, trials: list[FrozenTrial], settings: ConfirmSettings | None
) -> str:
    """One step of the confirmation phase: queue what the plan asks for, then say what to do.

    Returns ``run`` (a trial waits: take it), ``wait`` (confirmation trials run elsewhere; the
    plan may grow when they end) or ``done``. Queuing is idempotent within a worker (the plan
    skips queued points); two workers that queue the same point at once leave a copy that the
    objective gives up as surplus.
    """
    if settings is None or settings.k == 0:
        return "done"
    points = plan(trials, settings)
    for p in points:
        study.enqueue_trial(p.params, user_attrs={**p.user_attrs(), ENQUEUED: p.params})
    if points or any(t.state == TrialState.WAITING and phase(t) == CONFIRM for t in trials):
        return "run"
    running = any(t.state == TrialState.RUNNING for t in trials)
    return "wait" if running else "done"


def requeue_interrupted(study: optuna.Study, number: int | None) -> None:
    """Queue again the trial an interrupt (Ctrl-C) stopped, as a killed worker's trial is.

    Optuna marks the interrupted trial failed; the retry, like a heartbeat retry, keeps its
    parameters and attributes (its seed included) and notes ``retry of #N``, so re-running the
    command trains it first.
    """
    if number is None:
        return
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL or is_trained_proxy(trial):
        return
    if "rejected" in trial.user_attrs or "surplus" in trial.user_attrs:
        return
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


# Seconds an orphaned worker has to fail and queue its trial again before it exits outright (its
# heartbeat then stops, and the trial is retried as a killed worker's is).
ORPHAN_GRACE = 10


def _die_with_parent() -> None:
    """Stop this worker as SIGTERM does once the process that started it is gone.

    A parent killed outright (``kill -9``, a crash) says nothing, but the pipe it spawned this
    process through reaches its end then (the sentinel of ``multiprocessing.parent_process()``,
    on Linux and macOS alike). The trial in hand is failed and queued again; a worker still
    alive :data:`ORPHAN_GRACE` seconds later exits outright.
    """
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(
    settings: SearchSettings,
    data: SharedData | Dataset,
    train: TrainConfig,
    n_trials: int,
    storage: str,
    worker: int,
    heartbeat: int,
    cores: list[int] | None,
    gpu: str | None,
    conn: Any,
) -> None:
    """Entry point of a spawned worker process: pin cores or a GPU, run, report on ``conn``.

    ``data`` is the pool's published images (:func:`nas.data.shared.publish`), or the dataset
    itself where they could not be published.
    """
    _die_with_parent()

    def send(*event: Any) -> None:
        try:
            conn.send(event)
        except OSError:
            pass  # the parent is gone, and _die_with_parent stops this process

    if gpu is not None:
        os.environ[VISIBLE_DEVICES] = gpu
    if cores and hasattr(os, "sched_setaffinity"):
        # The trainer uses as many threads as the process has cores.
        os.sched_setaffinity(0, cores)
    try:
        report = run_worker(
            settings,
            data.open() if isinstance(data, SharedData) else data,
            train,
            n_trials,
            storage=storage,
            worker=worker,
            heartbeat=heartbeat,
            progress=lambda w, ev: send("progress", w, ev),
            started=lambda number: send("trial", worker, number),
        )
        send("done", worker, report)
    except ValueError as e:
        send("error", worker, str(e))
    except Terminated:
        send("error", worker, f"worker {worker} was terminated; its trial is queued again")
    except Exception as e:
        gone = storage_error(e)
        if gone is None:
            send("crash", worker, f"{type(e).__name__}: {e}")
            raise
        send("error", worker, gone)
    except BaseException as e:
        send("crash", worker, f"{type(e).__name__}: {e}")
        raise


def gpu_count() -> int:
    """CUDA devices here; 0 where torch or CUDA is missing."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def _cores() -> list[int]:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _local_capacity(trials_per_gpu: int = 1, on_cpu: bool = False) -> tuple[int, str]:
    """How many local workers this machine can run side by side, and what limits them."""
    gpus = 0 if on_cpu else gpu_count()
    if gpus:
        per = f" at --trials-per-gpu {trials_per_gpu}" if trials_per_gpu > 1 else ""
        return gpus * trials_per_gpu, (
            f"{gpus} GPU{'s' * (gpus > 1)} here and a worker takes "
            f"{'one' if trials_per_gpu == 1 else f'a {trials_per_gpu}th of one'}{per}"
        )
    cores = len(_cores())
    return cores, f"{cores} CPU core{'s' * (cores > 1)} here and more workers would only share them"


def cap_workers(workers: int, trials_per_gpu: int = 1, on_cpu: bool = False) -> int:
    """``workers``, capped at what the GPUs (or else cores) here hold, with one line on stderr."""
    limit, why = _local_capacity(trials_per_gpu, on_cpu)
    if workers <= limit:
        return workers
    sys.stderr.write(f"warning: --workers {workers} capped to {limit}: {why}\n")
    return limit


def visible_devices(gpus: int, visible: str | None) -> list[str]:
    """The ``gpus`` CUDA devices workers choose among, named as ``CUDA_VISIBLE_DEVICES`` names
    them: the first ``gpus`` entries of the user's own ``visible`` list (indices or ``GPU-``/
    ``MIG-`` UUIDs) where it is set, else ``0`` .. ``gpus - 1``.

    ``gpus`` is what torch counts, so it already stops where CUDA stops reading the list (at an
    entry that names no device).
    """
    if visible is None:
        return [str(i) for i in range(gpus)]
    return [d.strip() for d in visible.split(",") if d.strip()][:gpus]


def _placement(
    workers: int,
    trials_per_gpu: int = 1,
    gpus: int | None = None,
    threads: int | None = None,
    visible: str | None = None,
) -> list[tuple[list[int] | None, str | None]]:
    """Cores and GPU of each local worker: ``trials_per_gpu`` workers a GPU, else split cores.

    ``gpus`` None counts the visible CUDA devices; 0 (a CPU run) gives each worker ``threads``
    cores (None: an equal share of them). A worker's GPU is the ``CUDA_VISIBLE_DEVICES`` value
    it runs with: one of the devices of the user's ``visible`` list (:func:`visible_devices`),
    so that a worker never lands on a device the user left out. Workers fill one GPU before the
    next (0, 0, 1, 1 for two a GPU), and more workers than the GPUs hold at ``trials_per_gpu``
    each are refused rather than crowded onto one.
    """
    if trials_per_gpu < 1:
        raise ValueError(f"--trials-per-gpu must be a positive integer, got {trials_per_gpu}")
    if gpus is None:
        gpus = gpu_count()
    if gpus:
        devices = visible_devices(gpus, visible)
        gpus = len(devices)
        if workers > gpus * trials_per_gpu:
            raise ValueError(
                f"--workers {workers} needs {-(-workers // trials_per_gpu)} GPUs at "
                f"--trials-per-gpu {trials_per_gpu}, and {gpus} "
                f"{'is' if gpus == 1 else 'are'} visible; raise --trials-per-gpu or lower --workers"
            )
        return [(None, devices[i // trials_per_gpu]) for i in range(workers)]
    cores = _cores()
    per = threads or max(1, len(cores) // workers)
    return [([cores[(i * per + j) % len(cores)] for j in range(per)], None) for i in range(workers)]


def on_cpu(device: str) -> bool:
    """Whether a run on ``device`` uses no CUDA GPU (its workers split the cores instead)."""
    return str(device).startswith(("cpu", "mps"))


def run_search(
    settings: SearchSettings,
    data: Dataset,
    train: TrainConfig,
    n_trials: int,
    *,
    storage: str | None = None,
    workers: int = 1,
    heartbeat: int = HEARTBEAT,
    progress: Progress | None = None,
    trials_per_gpu: int = 1,
    share_data: bool = True,
) -> list[WorkerReport]:
    """Run (or resume) the study with ``workers`` local processes until it has ``n_trials``.

    On CUDA, ``trials_per_gpu`` workers share each GPU (:func:`_placement`). The commands cap
    ``workers`` at what the machine holds (:func:`cap_workers`); a library caller gets as many
    processes as it asks for (the load tests run 8 on 2 cores). ``n_trials`` and ``heartbeat``
    come checked (:func:`nas.search.study.check_trials`,
    :func:`nas.search.storage.check_heartbeat`): the commands check them before any data loads.

    Two or more workers map one copy of the images, and ``data``'s arrays become maps of it too
    (:func:`nas.data.shared.publish`); ``share_data=False`` pickles a copy to each worker instead
    (the baseline of ``benchmarks/bench_worker_memory.py``).
    """
    if workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers}")
    cpu = on_cpu(train.device)
    # A CPU run spreads workers over cores even where there are GPUs.
    placement = _placement(
        workers, trials_per_gpu, 0 if cpu else None, train.threads, os.environ.get(VISIBLE_DEVICES)
    )
    url = storage_url(storage)
    st = open_storage(url, heartbeat=heartbeat)
    prepare(settings, storage=st, n_trials=n_trials)
    if workers == 1:
        # Another machine may share a server's study; a SQLite file is this machine's alone.
        return [
            run_worker(
                settings,
                data,
                train,
                n_trials,
                storage=st,
                heartbeat=heartbeat,
                progress=progress,
                shared=not url.startswith("sqlite"),
            )
        ]
    ctx = mp.get_context("spawn")
    # One copy of the images, mapped by every worker and from here on by this process too; where
    # it cannot be written, each worker unpickles a copy of its own.
    sent = (publish(data) if share_data else None) or data
    # A pipe a worker: a worker killed in the middle of a send leaves no lock held (a shared
    # queue's would stop the others' sends), and its end of file says it is gone at once.
    pipes = [ctx.Pipe(duplex=False) for _ in placement]
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(settings, sent, train, n_trials, url, i, heartbeat, cores, gpu, pipes[i][1]),
            daemon=True,
        )
        for i, (cores, gpu) in enumerate(placement)
    ]
    for p, (_, send_end) in zip(procs, pipes, strict=True):
        p.start()
        send_end.close()  # the worker's copy is the only one left
    pool = _Pool()
    stopped = True  # until the loop ends normally: an interrupt or error stops the workers
    try:
        with stop_signals_interrupt():
            pool.gather(procs, [r for r, _ in pipes], progress)
        stopped = False
    finally:
        if stopped:
            # SIGTERM, SIGHUP or an error here: the workers must not go on alone. terminate()
            # is SIGTERM: each fails and requeues its trial.
            for p in procs:
                if p.is_alive():
                    p.terminate()
        for p in procs:
            p.join(timeout=5 if not stopped else 30)
            if p.is_alive():
                p.kill()
        if isinstance(sent, SharedData):
            sent.remove()
    if pool.errors:
        raise ValueError(pool.errors[0])
    if pool.crashes:
        raise RuntimeError("; ".join(pool.crashes))
    if pool.lost:
        trials = optuna.load_study(study_name=settings.study, storage=st).get_trials(deepcopy=False)
        line = "; ".join(
            _lost_worker(w, procs[w].pid, code, pool.trial.get(w), trials)
            for w, code in sorted(pool.lost.items())
        )
        if not pool.reports:
            raise ValueError(f"{line}; no worker is left: run the same command to resume")
        finished = sorted(pool.reports)
        who = ", ".join(map(str, finished))
        sys.stderr.write(
            f"warning: {line}; worker{'s' * (len(finished) > 1)} {who} finished the study\n"
        )
    return [pool.reports[i] for i in sorted(pool.reports)]


@dataclass
class _Pool:
    """What a pool's workers said on their pipes, and which of them died without a word."""

    reports: dict[int, WorkerReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # one line a user can act on
    crashes: list[str] = field(default_factory=list)  # the worker printed its traceback
    said: set[int] = field(default_factory=set)  # the workers that sent an error or a crash
    trial: dict[int, int] = field(default_factory=dict)  # the trial each worker started last
    lost: dict[int, int] = field(default_factory=dict)  # exit code of a worker that said nothing

    def gather(self, procs: list[Any], conns: list[Any], progress: Progress | None) -> None:
        """Read the workers' events until every worker has exited."""
        from multiprocessing.connection import wait

        open_ = dict(enumerate(conns))
        pending = set(range(len(procs)))
        while pending:
            wait([*open_.values(), *(procs[w].sentinel for w in pending)])
            for w in sorted(pending):
                exited = procs[w].exitcode is not None  # first: all it sent is in the pipe
                try:
                    while w in open_ and open_[w].poll():
                        self._take(open_[w].recv(), progress)
                except EOFError:  # also the rest of a message cut short by a kill
                    del open_[w]
                if exited:
                    pending.discard(w)
                    if w not in self.reports and w not in self.said:
                        self.lost[w] = procs[w].exitcode

    def _take(self, event: tuple[str, int, Any], progress: Progress | None) -> None:
        kind, w, payload = event
        if kind == "progress" and progress:
            progress(w, payload)
        elif kind == "trial":
            self.trial[w] = payload
        elif kind == "done":
            self.reports[w] = payload
        elif kind == "error":
            self.said.add(w)
            self.errors.append(payload)
        elif kind == "crash":
            self.said.add(w)
            self.crashes.append(f"[{w}] {payload}")


def _how(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


_FATE = {
    TrialState.COMPLETE: "completed",
    TrialState.PRUNED: "was pruned",
    TrialState.WAITING: "waits in the queue",
    TrialState.RUNNING: "is still running",
    TrialState.FAIL: "failed too",
}


def _lost_worker(
    worker: int, pid: int | None, exitcode: int, number: int | None, trials: list[FrozenTrial]
) -> str:
    """One line: how a worker died without a word, and what became of the trial it had.

    ``number`` is the trial it started last, ``trials`` the study's trials once the other
    workers have ended. A dead worker's trial stops beating: a worker still running fails it
    after :data:`nas.search.storage.GRACE_BEATS` heartbeats and queues a retry (up to
    :data:`nas.search.storage.MAX_RETRY` times); a later run of the command does, if none was left.
    """
    who = f"worker {worker} (pid {pid}) died ({_how(exitcode)})"
    by_number = {t.number: t for t in trials}
    t = by_number.get(number) if number is not None else None
    if t is None:
        return f"{who} before its first trial"
    if t.state == TrialState.RUNNING:
        return (
            f"{who} during trial {t.number}, still marked running: the next run fails it once "
            "its heartbeat is stale and retries it"
        )
    if t.state != TrialState.FAIL:
        return f"{who} after its trial {t.number} ended; no trial was lost"
    retry = next((r for r in trials if retried_from(r) == t.number), None)
    if retry is None:
        return f"{who} during trial {t.number}, which failed and is not retried"
    return (
        f"{who} during trial {t.number}: its heartbeat stopped, so it was failed and retried as "
        f"trial {retry.number}, which {_FATE.get(retry.state, retry.state.name.lower())}"
    )
