"""The measured plan of a machine: how many worker processes, threads each, which memory format
and precision train a search's trials fastest here, decided by timing them, not by a rule.

On first use on a machine (its CPU model and flags, or GPU name, torch version and cores) and
trial model, :func:`measure` times a few training steps of every option that matters, running
the workers of an option side by side as a search does: processes x threads on the CPU
(1 x all cores up to one single-thread process a core), NCHW or NHWC, and fp32 or bf16 autocast
where the processor computes bf16 natively (AVX512-BF16 or AMX; on CUDA always). The fastest
option is the plan; it is cached as JSON in the user's cache folder, keyed by those fields, so
later runs read it in a millisecond. The baseline it is compared with is what a run did before
plans were measured: one process on every core, fp32, NHWC on the CPU.

Batch size is not a plan choice: it changes what a trial computes (the optimisation), so it
stays the recipe's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.data.cache import default_data_dir
from nas.fileio import write_atomic
from resnext.spec import Spec

# Version of the measurement: a change to what is measured or how invalidates cached plans.
PLAN_VERSION = 1
# Seconds each option's steps are timed, after a warm-up step. Short timings of many options
# beat long ones of few: the choice rests on ratios of about 1.3x or more.
SECONDS = 1.0
# CPU flags that say the processor computes bf16 natively (oneDNN's avx512_core_bf16 and AMX).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# A plan measured while other work kept more than this share of the cores busy says so.
BUSY = 0.5
# RESNEXT_NAS_PLAN=default runs without measuring: one worker on every core, the device's rule
# for format and precision (NHWC; fp32 on a CPU, bf16 on CUDA), as before plans were measured.
PLAN_ENV = "RESNEXT_NAS_PLAN"
PLAN_MODES = ("measure", "default")
# Flags shown in the machine's description, when present.
SHOWN_FLAGS = ("avx2", "avx512f", *BF16_FLAGS)


@dataclass(frozen=True)
class Option:
    """One way to run trials here, and the training images per second it reached (all its
    workers together)."""

    workers: int
    threads: int  # CPU threads of each worker; 0 on a GPU (torch's default)
    channels_last: bool
    bf16: bool
    rate: float = 0.0

    def label(self) -> str:
        """E.g. ``2 workers x 1 thread, NHWC, bf16``."""
        w, t = self.workers, self.threads
        fmt = "NHWC" if self.channels_last else "NCHW"
        threads = f" x {t} thread{'s' * (t > 1)}" if t else ""
        return f"{w} worker{'s' * (w > 1)}{threads}, {fmt}, {'bf16' if self.bf16 else 'fp32'}"

    def same_run(self, other: Option) -> bool:
        """Whether ``other`` runs the same way (its rate aside)."""
        return dataclasses.replace(self, rate=0.0) == dataclasses.replace(other, rate=0.0)


@dataclass(frozen=True)
class MachinePlan:
    """The measured plan of one machine and trial model: the chosen option and the baseline."""

    machine: dict[str, Any]  # device, name, flags, torch, cores
    model: str  # the trial model measured, e.g. "8x1d 1-1-1 w32 at 32 px, batch 32"
    chosen: Option
    baseline: Option  # one process on every core, fp32: what runs did before plans
    options: tuple[Option, ...] = ()
    seconds: float = 0.0  # the measurement's wall time
    load: float = 0.0  # the 1-minute load average when measured (others' work skews rates)
    cached: str | None = field(default=None, compare=False)  # the file it was read from

    @property
    def speedup(self) -> float:
        """The chosen option's rate over the baseline's."""
        return self.chosen.rate / self.baseline.rate if self.baseline.rate else 1.0

    def describe(self) -> str:
        """One line: ``plan for AMD EPYC (avx512_bf16), torch 2.13.0: 2 workers x 1 thread,
        NHWC, bf16: measured 3.1x the fp32 1x2 default``."""
        m, b = self.machine, self.baseline
        flags = [f for f in m.get("flags", ()) if f in BF16_FLAGS] or m.get("flags", [])[-1:]
        where = m["name"] + (f" ({', '.join(flags)})" if flags else "")
        when = f"cached in {self.cached}" if self.cached else f"measured in {self.seconds:.0f} s"
        busy = ""
        if self.load > BUSY * m["cores"]:
            busy = (
                f"; measured under a load of {self.load:.1f} on {m['cores']} cores: "
                "`resnext-nas plan --refresh` on a quiet machine measures it truly"
            )
        default = f"bf16 {b.workers}x" if b.bf16 else f"fp32 {b.workers}x{b.threads}"
        if m.get("gpu"):
            where = f"{m['gpu']} ({m['gpus']} GPU{'s' * (m['gpus'] > 1)})"
        return (
            f"plan for {where}, torch {m['torch']}: {self.chosen.label()}: {self.speedup:.2f}x "
            f"the {default} default on {self.model} ({when}{busy})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the cache."""
        d = dataclasses.asdict(self)
        d.pop("cached")
        return {"version": PLAN_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: str | None = None) -> MachinePlan:
        """Read :meth:`to_dict`'s form back."""
        return cls(
            machine=d["machine"],
            model=d["model"],
            chosen=Option(**d["chosen"]),
            baseline=Option(**d["baseline"]),
            options=tuple(Option(**o) for o in d["options"]),
            seconds=float(d["seconds"]),
            load=float(d.get("load", 0.0)),
            cached=cached,
        )


def cpu_info(path: str | Path = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and flags, from the first processor of Linux's ``/proc/cpuinfo``;
    elsewhere platform's name and no flags."""
    name, flags = platform.processor() or platform.machine(), ()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = tuple(value.split())
                if key == "" and flags:
                    break  # the first processor's block is enough
    except OSError:
        pass
    return name, flags


def cores() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine(device: str = "cpu") -> dict[str, Any]:
    """What a plan is keyed by: device type, CPU or GPU name, flags, torch version, cores."""
    import torch

    name, flags = cpu_info()
    m: dict[str, Any] = {
        "device": device,
        "name": name,
        "flags": sorted(f for f in flags if f in SHOWN_FLAGS),
        "torch": torch.__version__,
        "cores": cores(),
    }
    if device == "cuda":
        m["gpu"] = torch.cuda.get_device_name(0)
        m["gpus"] = torch.cuda.device_count()
    return m


def native_bf16(m: dict[str, Any]) -> bool:
    """Whether bf16 autocast is a candidate: on CUDA, and on a CPU with native bf16."""
    return m["device"] == "cuda" or any(f in m["flags"] for f in BF16_FLAGS)


def worker_counts(n_cores: int) -> list[int]:
    """Worker counts to try on ``n_cores``: 1, powers of 2 below, and one a core (at most 4)."""
    counts = {1, n_cores}
    k = 2
    while k < n_cores and len(counts) < 4:
        counts.add(k)
        k *= 4
    return sorted(counts)


def candidates(m: dict[str, Any]) -> list[Option]:
    """Every option measured on machine ``m``; on CUDA one worker (the GPU's share is
    ``--trials-per-gpu``'s) on all cores."""
    precisions = (False, True) if native_bf16(m) else (False,)
    gpu = m["device"] == "cuda"
    counts = [1] if gpu else worker_counts(m["cores"])
    return [
        Option(w, 0 if gpu else max(1, m["cores"] // w), cl, bf)
        for w in counts
        for cl in (False, True)
        for bf in precisions
    ]


def model_key(spec: Spec, batch_size: int, kind: str) -> str:
    """The trial model of a plan, as shown: ``8x1d 1-1-1 w32 at 32 px, batch 32``."""
    return f"{spec.describe()} at {spec.resolution} px ({kind}), batch {batch_size}"


def cache_file(m: dict[str, Any], model: str) -> Path:
    """Where the plan of machine ``m`` and ``model`` is kept."""
    key = json.dumps({"v": PLAN_VERSION, "machine": m, "model": model}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_data_dir() / "plans" / f"{m['device']}-{digest}.json"


def _probe(
    spec: Spec,
    batch: int,
    kind: str,
    device: str,
    option: Option,
    core_set: list[int] | None,
    seconds: float,
    barrier: Any,
    conn: Any,
) -> None:
    """Worker of one measurement: time ``seconds`` of training steps of each format and
    precision of the options in turn, in step with the other workers (``barrier``)."""
    if core_set and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, core_set)
    rates = []
    for channels_last, bf16 in conn.recv():
        rates.append(
            _time_steps(
                spec, batch, kind, device, option.threads, channels_last, bf16, seconds, barrier
            )
        )
    conn.send(rates)


def _time_steps(
    spec: Spec,
    batch: int,
    kind: str,
    device: str,
    threads: int,
    channels_last: bool,
    bf16: bool,
    seconds: float,
    barrier: Any,
) -> float:
    """Training images per second of the trainer's own step (augmentation, forward, backward,
    SGD) on random images, timed over about ``seconds`` after a warm-up step."""
    import numpy as np

    from nas.data import Dataset
    from nas.training.config import TrainConfig
    from nas.training.loop import Run

    rng = np.random.default_rng(0)
    n = batch * 2
    x = rng.integers(0, 256, (n, 3, spec.resolution, spec.resolution), dtype=np.uint8)
    y = rng.integers(0, spec.classes, n).astype(np.int64)
    data = Dataset("probe", spec.classes, kind, x, y, x[:1], y[:1])
    cfg = TrainConfig(
        epochs=10_000,
        batch_size=batch,
        lr=0.01,
        device=device,
        channels_last=channels_last,
        precision="bf16" if bf16 else "fp32",
        threads=threads if device == "cpu" else None,
    ).resolved(kind)
    run = Run(spec, data, cfg)
    run.train_epoch()  # warm-up: allocation, kernel choice, caches
    barrier.wait()
    images, t0 = 0, time.perf_counter()
    while True:
        done = run.train_epoch()
        images += run.steps * run.batch
        elapsed = time.perf_counter() - t0
        if done is None or elapsed >= seconds:
            break
    barrier.wait()  # the next option starts when every worker has finished this one
    return images / elapsed


def _core_sets(workers: int, threads: int) -> list[list[int] | None]:
    """Disjoint cores for each of ``workers`` workers of ``threads`` threads."""
    if not hasattr(os, "sched_getaffinity"):
        return [None] * workers
    mine = sorted(os.sched_getaffinity(0))
    return [mine[i * threads : (i + 1) * threads] or None for i in range(workers)]


def _measure_group(
    spec: Spec,
    batch: int,
    kind: str,
    device: str,
    group: list[Option],
    seconds: float,
) -> list[Option]:
    """Rates of options that share workers x threads, their workers run side by side."""
    w, t = group[0].workers, group[0].threads
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(w)
    pipes = [ctx.Pipe() for _ in range(w)]
    procs = [
        ctx.Process(
            target=_probe,
            args=(spec, batch, kind, device, group[0], cs, seconds, barrier, pipes[i][1]),
            daemon=True,
        )
        for i, cs in enumerate(_core_sets(w, t))
    ]
    for p in procs:
        p.start()
    try:
        for mine, _ in pipes:
            mine.send([(o.channels_last, o.bf16) for o in group])
        totals = [0.0] * len(group)
        for mine, _ in pipes:
            for i, r in enumerate(mine.recv()):
                totals[i] += r
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [dataclasses.replace(o, rate=r) for o, r in zip(group, totals, strict=True)]


def measure(
    spec: Spec, batch: int, kind: str, device: str = "cpu", seconds: float = SECONDS
) -> MachinePlan:
    """Time every option of :func:`candidates` for ``spec`` at ``batch`` and choose."""
    m = machine(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    t0 = time.perf_counter()
    groups: dict[tuple[int, int], list[Option]] = {}
    for o in candidates(m):
        groups.setdefault((o.workers, o.threads), []).append(o)
    options = [
        o
        for group in groups.values()
        for o in _measure_group(spec, batch, kind, device, group, seconds)
    ]
    chosen = max(options, key=lambda o: o.rate)
    gpu = device == "cuda"
    base = Option(1, 0 if gpu else m["cores"], channels_last=True, bf16=gpu)
    baseline = next(o for o in options if o.same_run(base))
    return MachinePlan(
        machine=m,
        model=model_key(spec, batch, kind),
        chosen=chosen,
        baseline=baseline,
        options=tuple(options),
        seconds=time.perf_counter() - t0,
        load=load,
    )


def machine_plan(
    spec: Spec,
    batch: int,
    kind: str,
    device: str = "cpu",
    *,
    refresh: bool = False,
    announce: Callable[[], None] | None = None,
) -> MachinePlan:
    """The cached plan of this machine and trial model, measured (and cached) when there is
    none or ``refresh``; ``announce`` is called before a measurement. A cache that cannot be
    read is measured again; one that cannot be written is a warning."""
    m = machine(device)
    path = cache_file(m, model_key(spec, batch, kind))
    if not refresh:
        try:
            d = json.loads(path.read_text())
            if d.get("version") == PLAN_VERSION and d.get("machine") == m:
                return MachinePlan.from_dict(d, cached=str(path))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if announce is not None:
        announce()
    found = measure(spec, batch, kind, device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(found.to_dict(), indent=1)
        write_atomic(path, lambda f: f.write(text.encode()))
    except OSError as e:
        sys.stderr.write(f"warning: could not cache the machine plan in {path.parent}: {e}\n")
    return found


def representative(specs: list[Spec]) -> Spec:
    """The spec a plan is measured on: the median by FLOPs of those a run may train."""
    from resnext.complexity import complexity

    ranked = sorted(specs, key=lambda s: complexity(s).flops)
    return ranked[(len(ranked) - 1) // 2]


@dataclass(frozen=True)
class RunChoice:
    """How a command's trials run: the measured plan's option, with the options a user gave in
    its place. ``threads`` None leaves torch's default (a GPU run)."""

    workers: int
    threads: int | None
    channels_last: bool | None
    precision: str  # "fp32", "bf16", or "auto" where no plan was measured (mps)
    plan: MachinePlan | None = None
    given: tuple[str, ...] = ()  # the options given, e.g. ("--workers 1",)
    single: bool = False  # the command trains in its own process

    def label(self) -> str:
        """E.g. ``2 workers x 1 thread, NHWC, bf16``."""
        w, t = self.workers, self.threads
        parts = [f"{w} worker{'s' * (w > 1)}" + (f" x {t} thread{'s' * (t > 1)}" if t else "")]
        if self.channels_last is not None:
            parts.append("NHWC" if self.channels_last else "NCHW")
        parts.append(self.precision)
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """What the run says about its plan: the plan, then what runs if options changed it."""
        out = [] if self.plan is None else [self.plan.describe()]
        chosen = self.plan and self.plan.chosen
        runs_as_planned = chosen and Option(
            self.workers, self.threads or 0, bool(self.channels_last), self.precision == "bf16"
        ).same_run(chosen)
        why = [*self.given, *(["one process: this command trains in its own"] * self.single)]
        if chosen and not runs_as_planned:
            out.append(f"running {self.label()} ({'; '.join(why) or 'as measured'})")
        elif self.plan is None and self.given:
            out.append(f"running {self.label()} ({'; '.join(why)})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form in a command's summary."""
        return {
            "workers": self.workers,
            "threads": self.threads,
            "channels_last": self.channels_last,
            "precision": self.precision,
            "given": list(self.given),
            "plan": None if self.plan is None else self.plan.to_dict(),
        }


def choose(
    specs: list[Spec],
    batch: int,
    kind: str,
    device_type: str,
    *,
    workers: int | None = None,
    threads: int | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    gpu_workers: int = 1,
    single: bool = False,
    announce: Callable[[], None] | None = None,
) -> RunChoice:
    """How trials of ``specs`` at ``batch`` run on ``device_type``: the measured plan
    (:func:`machine_plan`, of the median spec), with ``workers``, ``threads``, ``precision``
    (not "auto") and ``channels_last`` (not None) in place of its choices where given.

    Of the options measured, the fastest that agrees with every given value runs; a given value
    that no measured option has (``--threads 3``) joins the plan's other choices. Nothing is
    measured where every choice is given, nor on mps. On CUDA the workers are ``gpu_workers``
    (the GPUs times ``--trials-per-gpu``) unless given, and the plan picks format and precision.
    ``single``: the command trains in its own process (``train``, ``calibrate``), one worker.
    """
    given = tuple(
        f"--{name} {value}"
        for name, value in (
            ("workers", workers),
            ("threads", threads),
            ("precision", None if precision == "auto" else precision),
            ("channels-last", None if channels_last is None else channels_last),
        )
        if value is not None
    )
    if single:
        workers = 1
    elif device_type == "cuda" and workers is None:
        workers = gpu_workers
    mode = os.environ.get(PLAN_ENV) or "measure"
    if mode not in PLAN_MODES:
        raise ValueError(f"{PLAN_ENV} must be one of {', '.join(PLAN_MODES)}, got {mode!r}")
    if device_type not in ("cpu", "cuda") or mode == "default":
        return RunChoice(workers or 1, threads, channels_last, precision, None, given, single)
    settled = precision != "auto" and channels_last is not None
    if settled and (device_type == "cuda" or (workers is not None and threads is not None)):
        return RunChoice(workers or 1, threads, channels_last, precision, None, given, single)
    plan = machine_plan(representative(specs), batch, kind, device_type, announce=announce)

    def agrees(o: Option) -> bool:
        return (
            (workers is None or device_type == "cuda" or o.workers == workers)
            and (threads is None or o.threads == threads)
            and (precision == "auto" or o.bf16 == (precision == "bf16"))
            and (channels_last is None or o.channels_last == channels_last)
        )

    fitting = [o for o in plan.options if agrees(o)]
    best = max(fitting, key=lambda o: o.rate) if fitting else plan.chosen
    w = workers or best.workers
    t = threads or (best.threads if device_type == "cpu" else None)
    if not fitting and workers is not None and threads is None and device_type == "cpu":
        t = max(1, plan.machine["cores"] // w)  # the cores shared out among the workers given
    return RunChoice(
        w,
        t,
        best.channels_last if channels_last is None else channels_last,
        ("bf16" if best.bf16 else "fp32") if precision == "auto" else precision,
        plan,
        given,
        single,
    )
