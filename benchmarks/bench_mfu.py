"""Training throughput and MFU of trial models against a matrix-product peak of the same run.

For the search's default trial model (CIFAR template, depths 1-1-1, width 32, 8x1d), a mid-size
ResNeXt-29 (4x16d) and ResNeXt-29 8x64d (Sec. 5.3), on the CPU and on CUDA when present: images
per second of the trainer (``nas.training.loop.Run``: augmentation, lr schedule, counters) and of
the
bare forward + backward + SGD step on ready tensors, across memory format (NCHW, NHWC), batch
size and torch.compile, and MFU = 6 x multiply-adds x images/s over the FLOP/s of a large matrix
product measured in this run (fp32 on the CPU, bf16 on CUDA; ``nas.training.plan``).

Every variant is warmed up (its compile time is reported apart), then all are timed in turns,
``--repeats`` times (ABAB...), so that other processes' load falls on all alike; figures are
medians with the smallest and largest in brackets. After the table: the trainer's own pick
(``nas.training.plan.plan``) against the best option measured, compile time against a trial's
length,
and on CUDA the issue-14 goals and grouped (C=8) against dense (C=1) convolutions of equal FLOPs.

    PYTHONPATH=. python benchmarks/bench_mfu.py --quick                    # ~2 min on 2 cores
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_mfu.py --quick  # on a busy machine
    PYTHONPATH=. python benchmarks/bench_mfu.py --device cuda --json out/mfu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import resnext
from nas.data import Dataset
from nas.training import plan as perf
from nas.training.config import TrainConfig
from nas.training.loop import Run
from resnext.registry import R29

# The search's default trial model (cli.SEARCH_*: 8e6 FLOPs, depths 1-1-1, width 32) at 8x1d.
TRIAL = resnext.Spec("cifar", (1, 1, 1), 32, 8, 1)
MID = resnext.Spec("cifar", R29, 256, 4, 16)  # ResNeXt-29 4x16d, 0.49 GFLOPs
BIG = resnext.preset("resnext29_8x64d")  # Sec. 5.3, 5.4 GFLOPs
SEARCH_BATCH = 32  # cli search's --batch-size
SEARCH_IMAGES = 3 * 1960  # cli search's trial: 3 epochs of 2,000 images less 2% held out
CIFAR_EPOCH = 50_000


def dense_twin(spec: resnext.Spec) -> resnext.Spec:
    """The C=1 spec of ``spec``'s skeleton whose FLOPs are closest to ``spec``'s."""
    target = resnext.complexity(spec).flops
    twins = (dataclasses.replace(spec, cardinality=1, bottleneck_width=d) for d in range(1, 1025))
    return min(twins, key=lambda s: abs(resnext.complexity(s).flops - target))


@dataclass
class Variant:
    """One model in one memory format, batch size and compile mode."""

    name: str
    spec: resnext.Spec
    channels_last: bool
    batch: int
    compile: str  # "off" or a torch.compile mode
    kinds: tuple[str, ...] = ("bare", "trainer")
    rates: dict[str, list[float]] = field(default_factory=dict)  # kind -> images/s per repeat
    compile_s: dict[str, float] = field(default_factory=dict)  # kind -> first call less a call

    @property
    def label(self) -> str:
        fmt = "NHWC" if self.channels_last else "NCHW"
        return f"{self.name} {fmt} b{self.batch} {self.compile}"


def grid(device: str, quick: bool) -> list[Variant]:
    """The variants measured on ``device``."""
    both = (False, True)
    out: list[Variant] = []
    if device == "cpu":
        for cl in both:
            for b in (32, 128) if quick else (32, 128, 256):
                out.append(Variant("trial", TRIAL, cl, b, "off"))
            # A compile takes 40-150 s here: quick compiles the trainer in the rule's format only.
            if not quick or cl == perf.plan("cpu").channels_last:
                kinds = ("trainer",) if quick else ("bare", "trainer")
                out.append(Variant("trial", TRIAL, cl, SEARCH_BATCH, "default", kinds))
            for b in (8,) if quick else (16, 64):
                out.append(Variant("29-4x16d", MID, cl, b, "off"))
            out.append(Variant("29-8x64d", BIG, cl, 2 if quick else 8, "off", ("bare",)))
        return out
    twin_trial, twin_big = dense_twin(TRIAL), dense_twin(BIG)
    for cl in both:
        for b in (SEARCH_BATCH, 256, 1024):
            out.append(Variant("trial", TRIAL, cl, b, "off"))
        out.append(Variant("29-4x16d", MID, cl, 256, "off"))
        out.append(Variant("29-8x64d", BIG, cl, 128, "off"))
    # Compiles take tens of seconds each: the trainer only, on the trial model, where the launch
    # overhead that CUDA graphs ("reduce-overhead") remove matters most.
    for mode, b in (("reduce-overhead", SEARCH_BATCH), ("reduce-overhead", 256), ("default", 256)):
        out.append(Variant("trial", TRIAL, True, b, mode, ("trainer",)))
    out.append(Variant(f"trial-twin-{twin_trial.notation}", twin_trial, True, 256, "off"))
    out.append(Variant(f"29-twin-{twin_big.notation}", twin_big, True, 128, "off", ("bare",)))
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Bare:
    """Forward, backward and SGD step of a model on one ready batch."""

    def __init__(self, v: Variant, dev: torch.device) -> None:
        fmt = torch.channels_last if v.channels_last else torch.contiguous_format
        torch.manual_seed(0)
        self.model = resnext.build(v.spec).to(dev, memory_format=fmt).train()
        self.fwd = self.model if v.compile == "off" else perf.compiled(self.model, v.compile)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        res = v.spec.resolution
        self.x = torch.randn(v.batch, 3, res, res, device=dev).contiguous(memory_format=fmt)
        self.y = torch.randint(0, v.spec.classes, (v.batch,), device=dev)
        self.dev, self.batch, self.steps = dev, v.batch, 1
        self.bf16 = dev.type == "cuda"

    def run(self, steps: int) -> float:
        """Images per second of ``steps`` steps."""
        _sync(self.dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = F.cross_entropy(self.fwd(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        _sync(self.dev)
        return steps * self.batch / (time.perf_counter() - t0)


def _random_data(spec: resnext.Spec, n: int) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, spec.resolution, spec.resolution), dtype=np.uint8)
    y = rng.integers(0, spec.classes, n).astype(np.int64)
    return Dataset("bench", spec.classes, "cifar", x, y, x[:1], y[:1])


class Trainer:
    """Epochs of ``nas.training.loop.Run`` on random images, ``steps`` batches each."""

    def __init__(self, v: Variant, device: str, steps: int) -> None:
        cfg = TrainConfig(
            epochs=10_000,  # the schedule stays near its peak lr over the measured epochs
            batch_size=v.batch,
            lr=0.01,
            device=device,
            channels_last=v.channels_last,
            compile=v.compile,
        ).resolved("cifar")
        self.trial = Run(v.spec, _random_data(v.spec, steps * v.batch), cfg)

    def run(self) -> float:
        """Images per second of one epoch (NaN if it diverged)."""
        done = self.trial.train_epoch()
        return float("nan") if done is None else done[2]


def measure(variants: list[Variant], device: str, repeats: int, target: float) -> None:
    """Warm every variant up, then time all of them in turns ``repeats`` times."""
    dev = torch.device(device)
    jobs: list[tuple[Variant, str, Callable[[], float]]] = []
    # The eager bare step of each (model, format, batch): warmed up once, it sizes every timing
    # of that shape (about ``target`` seconds) and is itself the eager variant's bare job.
    eager: dict[tuple, tuple[Bare, float]] = {}
    for v in variants:
        key = (v.spec, v.channels_last, v.batch)
        if key not in eager:
            probe = Bare(dataclasses.replace(v, compile="off"), dev)
            probe.run(1)
            eager[key] = probe, v.batch / probe.run(1)
        probe, step_s = eager[key]
        steps = max(1, min(200, round(target / step_s)))
        for kind in v.kinds:
            t0 = time.perf_counter()
            if kind == "bare" and v.compile == "off":
                bare, first, once = probe, 0.0, step_s

                def job(bare: Bare = bare, steps: int = steps) -> float:
                    return bare.run(steps)
            elif kind == "bare":
                bare = Bare(v, dev)
                bare.run(1)
                first = time.perf_counter() - t0
                once = v.batch / bare.run(1)

                def job(bare: Bare = bare, steps: int = steps) -> float:
                    return bare.run(steps)
            else:
                trainer = Trainer(v, device, steps)
                trainer.run()
                first = time.perf_counter() - t0
                once = steps * v.batch / trainer.run()
                job = trainer.run
            if v.compile != "off":
                v.compile_s[kind] = max(0.0, first - once)
            v.rates[kind] = []
            jobs.append((v, kind, job))
            print(f"  warmed up {v.label} {kind} in {time.perf_counter() - t0:.1f} s", flush=True)
    for r in range(repeats):
        for v, kind, job in jobs:
            v.rates[kind].append(job())
        print(f"  turn {r + 1}/{repeats} done", flush=True)


def _num(x: float) -> str:
    """Three significant figures or more, with thousands separators."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _fmt_rate(rates: list[float]) -> str:
    if not rates:
        return "-"
    med, lo, hi = perf.spread(rates)
    return f"{_num(med)} [{_num(lo)}-{_num(hi)}]"


def _mfu(spec: resnext.Spec, rates: list[float], peak: float) -> str:
    return f"{perf.train_flops(spec) * statistics.median(rates) / peak:.1%}" if rates else "-"


def _median(v: Variant, kind: str) -> float:
    return statistics.median(v.rates[kind]) if v.rates.get(kind) else float("nan")


def report(variants: list[Variant], device: str, peaks: list[float]) -> dict[str, Any]:
    """Print the table and the comparisons; return the figures for ``--json``."""
    peak = statistics.median(peaks)
    med, lo, hi = perf.spread(peaks)
    unit = "bf16" if device == "cuda" else "fp32"
    print(
        f"\n{device}: {unit} matrix-product peak {med / 1e9:,.1f} GFLOP/s "
        f"[{lo / 1e9:,.1f}-{hi / 1e9:,.1f}] over {len(peaks)} timings"
    )
    head = (
        f"{'model':<18} {'MMAC':>6} {'fmt':<4} {'batch':>5} {'compile':<15} "
        f"{'bare img/s':>22} {'MFU':>6} {'trainer img/s':>22} {'MFU':>6} {'tr/bare':>7} "
        f"{'compile s':>9}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for v in variants:
        bare, tr = v.rates.get("bare", []), v.rates.get("trainer", [])
        ratio = _median(v, "trainer") / _median(v, "bare") if bare and tr else float("nan")
        comp = ", ".join(f"{k} {s:.1f}" for k, s in v.compile_s.items()) or "-"
        print(
            f"{v.name:<18} {resnext.complexity(v.spec).flops / 1e6:>6.1f} "
            f"{'NHWC' if v.channels_last else 'NCHW':<4} {v.batch:>5} {v.compile:<15} "
            f"{_fmt_rate(bare):>22} {_mfu(v.spec, bare, peak):>6} {_fmt_rate(tr):>22} "
            f"{_mfu(v.spec, tr, peak):>6} {ratio:>7.2f} {comp:>9}"
        )
        rows.append({**dataclasses.asdict(v), "spec": v.spec.to_dict(), "label": v.label})
    out: dict[str, Any] = {"device": device, "peak_flops": peaks, "variants": rows}
    out["pick"] = _pick_line(variants, device)
    _compile_lines(variants)
    if device == "cuda":
        _goal_lines(variants, peak)
    return out


def _pick_line(variants: list[Variant], device: str) -> dict[str, Any] | None:
    """The trainer's own plan for the trial model at the search's batch against the best."""
    plan = perf.plan(device)
    options = [
        v
        for v in variants
        if v.name == "trial" and v.batch == SEARCH_BATCH and v.rates.get("trainer")
    ]
    mode = plan.compile_mode or "off"
    pick = next(
        (v for v in options if (v.channels_last, v.compile) == (plan.channels_last, mode)), None
    )
    if pick is None:
        print(f"trainer's pick ({plan.describe()}) was not among the measured variants")
        return None
    best = max(options, key=lambda v: _median(v, "trainer"))
    # Per repeat too: pick and best were timed side by side in each turn.
    turns = [p / b for p, b in zip(pick.rates["trainer"], best.rates["trainer"], strict=True)]
    ratio = _median(pick, "trainer") / _median(best, "trainer")
    t_med, t_lo, t_hi = perf.spread(turns)
    print(
        f"\ntrainer's pick on {device} for the search's trial model at batch {SEARCH_BATCH}: "
        f"{plan.describe()}, {_median(pick, 'trainer'):,.0f} images/s; best measured option "
        f"{best.label}, {_median(best, 'trainer'):,.0f} images/s; pick/best {ratio:.2f} "
        f"(per repeat {t_med:.2f} [{t_lo:.2f}-{t_hi:.2f}]); goal >= 0.90: "
        f"{'met' if ratio >= 0.9 else 'NOT met'}"
    )
    others = ", ".join(f"{v.label} {_median(v, 'trainer'):,.0f}" for v in options)
    print(f"  options (trainer images/s, medians): {others}")
    return {"pick": pick.label, "best": best.label, "ratio": ratio, "per_repeat": turns}


def _compile_lines(variants: list[Variant]) -> None:
    """Each compile's seconds against a trial's length and the images it takes to pay off."""
    for v in variants:
        if v.compile == "off" or "trainer" not in v.rates:
            continue
        eager = next(
            (
                e
                for e in variants
                if (e.spec, e.channels_last, e.batch, e.compile)
                == (v.spec, v.channels_last, v.batch, "off")
                and e.rates.get("trainer")
            ),
            None,
        )
        if eager is None:
            continue
        fast, slow = _median(v, "trainer"), _median(eager, "trainer")
        saved = 1 / slow - 1 / fast  # seconds per image
        secs = v.compile_s.get("trainer", float("nan"))
        pays = f"pays for itself after {secs / saved:,.0f} images" if saved > 0 else "never pays"
        print(
            f"compile {v.label}: {secs:.1f} s to compile; compiled/eager trainer "
            f"{fast / slow:.2f}x; {pays}; a search trial ({SEARCH_IMAGES:,} images) lasts "
            f"{SEARCH_IMAGES / slow:.1f} s eager, a 10-epoch CIFAR-10 trial "
            f"{10 * CIFAR_EPOCH / slow:,.0f} s"
        )


def _goal_lines(variants: list[Variant], peak: float) -> None:
    """The GPU goals (MFU, throughput), and grouped against dense convolutions of equal FLOPs."""

    def best(name: str, kind: str = "trainer") -> Variant | None:
        vs = [v for v in variants if v.name == name and v.rates.get(kind)]
        return max(vs, key=lambda v: _median(v, kind)) if vs else None

    if b := best("29-8x64d", "bare"):
        mfu = perf.train_flops(b.spec) * _median(b, "bare") / peak
        print(f"goal 8x64d >= 25% MFU (bare step): {mfu:.1%} ({b.label})")
    if t := best("trial"):
        print(f"goal trial model >= 20,000 images/s (trainer): {_median(t, 'trainer'):,.0f} "
              f"({t.label})")  # fmt: skip
    for name in ("29-4x16d", "29-8x64d"):
        kind = "trainer" if best(name) else "bare"
        if m := best(name, kind):
            secs = 10 * CIFAR_EPOCH / _median(m, kind)
            print(
                f"goal 10-epoch CIFAR-10 of ResNeXt-{name} < 60 s: {secs:.0f} s ({kind}, {m.label})"
            )
    # Grouped against dense at the same format and batch: the dense twin's shape is the guide.
    for grouped, prefix in (("trial", "trial-twin"), ("29-8x64d", "29-twin")):
        for d in (v for v in variants if v.name.startswith(prefix) and v.rates.get("bare")):
            g = next(
                (
                    v
                    for v in variants
                    if v.name == grouped
                    and (v.channels_last, v.batch, v.compile) == (d.channels_last, d.batch, "off")
                    and v.rates.get("bare")
                ),
                None,
            )
            if g is not None:
                gf, df = (perf.train_flops(v.spec) * _median(v, "bare") for v in (g, d))
                print(
                    f"grouped {g.spec.notation} against dense {d.spec.notation} of equal FLOPs "
                    f"(bare step, achieved FLOP/s): {gf / df:.2f}x ({g.label} vs {d.label})"
                )


def main() -> None:
    """Measure the grid on each device and print one table per device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants, ~2 min on 2 cores")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                        help="auto: cpu, and cuda too when present")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="turns of timings (ABAB...)")
    parser.add_argument("--seconds", type=float, default=None, help="per timing (0.4, quick 0.15)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--models", default=None, help="comma-separated name prefixes to keep, e.g. trial,29-8x64d"
    )
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = parser.parse_args()
    repeats = args.repeats
    target = args.seconds or (0.15 if args.quick else 0.4)
    has_cuda = torch.cuda.is_available()
    if args.device in ("cuda",) and not has_cuda:
        raise SystemExit("--device cuda asked for, but CUDA is not available here")
    devices = {"auto": ["cpu"] + ["cuda"] * has_cuda, "all": ["cpu", "cuda"]}.get(
        args.device, [args.device]
    )
    if not os.environ.get("OMP_NUM_THREADS"):  # as the trainer does (nas.training.device.setup)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    name = torch.cuda.get_device_name() if has_cuda else "none"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA device: {name}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = []
    t0 = time.perf_counter()
    for device in devices:
        variants = [
            v
            for v in grid(device, args.quick)
            if not (args.no_compile and v.compile != "off")
            and (not args.models or v.name.startswith(tuple(args.models.split(","))))
        ]
        # CPU: a 1024^3 fp32 product is well past the cache-blocking sizes; CUDA: 8192^3 bf16.
        peaks = perf.matmul_peak(torch.device(device), repeats=repeats)
        print(f"{device}: {len(variants)} variants, {repeats} repeats", flush=True)
        measure(variants, device, repeats, target)
        peaks += perf.matmul_peak(torch.device(device), repeats=repeats)  # before and after
        results.append(report(variants, device, peaks))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "gpu": name, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
