"""CPU training throughput: our trainer against the loop a user would write and the bare step.

Three ways to train the same small CIFAR-template network, in one run, interleaved so that
noise from other processes falls on all three alike:

1. ``nas.training.loop.train``: whole-batch tensor augmentation, no DataLoader;
2. a plain PyTorch loop: a ``torch.utils.data.DataLoader`` (shuffle, batch 128, ``--workers``,
   default 0) over a Dataset that pads, crops, flips and normalises each image on its own,
   and ``loss.item()`` every step, as a tutorial does;
3. forward, backward and SGD step of the model on ready tensors: no data work at all.

Then, since end-to-end figures on a shared machine are only as steady as its load, the data
work of (1) and of (2) and the step of (3) are timed per batch, in turns, and compared.

Each figure is the images per second of the epochs after the first (the first warms caches
up), per wall second and per CPU second of this process, median and best of ``--repeats``. On
a machine that other processes share, wall time swings with their load; CPU time does not as
long as this process neither spins on OpenMP barriers nor hands work to other processes, so
trust it with ``OMP_NUM_THREADS=1`` and ``--workers 0``. Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_train.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_train.py  # on a busy machine
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import resnext
from nas.data import Dataset
from nas.training.augment import augment, channel_stats
from nas.training.config import TrainConfig
from nas.training.loop import train

# The fixed small config: one block per stage of the CIFAR template (Sec. 5.3) at 4x8d.
DEFAULT = resnext.Spec("cifar", (1, 1, 1), 64, 4, 8, classes=10, resolution=32)
BATCH = 128
LR, MOMENTUM, WD = 0.1, 0.9, 5e-4  # Sec. 5.3


class PerImage(torch.utils.data.Dataset):
    """The paper's CIFAR augmentation one image at a time, as a tutorial writes it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        xf = x.float()
        self.mean = xf.mean((0, 2, 3)).view(3, 1, 1)
        self.std = xf.std((0, 2, 3)).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.pad(self.x[i], (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img.float() - self.mean) / self.std, self.y[i]


def _model_and_optimizer(spec: resnext.Spec) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = resnext.build(spec).train()
    opt = torch.optim.SGD(
        model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD
    )
    return model, opt


class Clock:
    """Wall and CPU seconds of the epochs after the first."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.marks: list[tuple[float, float]] = []

    def mark(self) -> None:
        """Call at the start of training and at the end of every epoch."""
        self.marks.append((time.perf_counter(), time.process_time()))
        if len(self.marks) > 2:  # the interval that just ended is not the first epoch
            (w0, c0), (w1, c1) = self.marks[-2:]
            self.wall += w1 - w0
            self.cpu += c1 - c0

    def rates(self, images_per_epoch: int) -> tuple[float, float]:
        """Images per wall second and per CPU second."""
        images = (len(self.marks) - 2) * images_per_epoch
        return images / self.wall, images / self.cpu


def plain_loop(
    spec: resnext.Spec, x: torch.Tensor, y: torch.Tensor, epochs: int, workers: int
) -> tuple[float, float]:
    """A DataLoader loop with per-image transforms."""
    model, opt = _model_and_optimizer(spec)
    loader = torch.utils.data.DataLoader(
        PerImage(x, y), batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers
    )
    clock, running = Clock(), 0.0
    clock.mark()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item()
        clock.mark()
    return clock.rates(len(x) // BATCH * BATCH)


def bare_steps(
    spec: resnext.Spec, x: torch.Tensor, y: torch.Tensor, epochs: int
) -> tuple[float, float]:
    """Forward, backward and step on ready normalised batches."""
    model, opt = _model_and_optimizer(spec)
    steps = len(x) // BATCH
    xs = ((x.float() - 127.5) / 64).split(BATCH)[:steps]
    ys = y.split(BATCH)[:steps]
    clock = Clock()
    clock.mark()
    for _ in range(epochs):
        for xb, yb in zip(xs, ys, strict=True):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        clock.mark()
    return clock.rates(steps * BATCH)


def ours(spec: resnext.Spec, data: Dataset, epochs: int) -> tuple[float, float]:
    """nas.training.loop, timed from the end of one epoch to the end of the next (callback)."""
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, momentum=MOMENTUM, device="cpu")
    clock = Clock()
    clock.mark()  # includes train()'s setup, but the first interval is not counted
    train(spec, data, cfg, callback=lambda _: clock.mark())
    return clock.rates(len(data.train_y) // BATCH * BATCH)


def per_batch_ms(
    spec: resnext.Spec, x: torch.Tensor, y: torch.Tensor, batches: int
) -> dict[str, float]:
    """Median milliseconds per batch of each data path and of the step, measured in turns."""
    model, opt = _model_and_optimizer(spec)
    loader = torch.utils.data.DataLoader(PerImage(x, y), batch_size=BATCH, shuffle=True)
    g = torch.Generator().manual_seed(0)
    mean, std = channel_stats(x)
    shift, scale = mean.view(1, 3, 1, 1), (1 / std).view(1, 3, 1, 1)
    ready = (x[:BATCH].float() - 127.5) / 64

    def ours_data() -> None:  # what nas.training.loop does before each step on the CPU
        idx = torch.randperm(len(x), generator=g)[:BATCH]
        augment(x[idx], "cifar", g).to(torch.float32).sub_(shift).mul_(scale)

    def plain_data() -> None:
        next(iter(loader))  # one batch of the per-image DataLoader (building the iterator: ~0)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(ready), y[:BATCH]).backward()
        opt.step()

    parts = {"ours data": ours_data, "DataLoader data": plain_data, "step": step}
    times: dict[str, list[float]] = {k: [] for k in parts}
    for i in range(batches + 1):
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            if i:  # the first turn warms up
                times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main() -> None:
    """Measure the three loops interleaved and print their medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement, >= 2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of loop 2")
    parser.add_argument("--batches", type=int, default=20, help="turns of the per-batch timing")
    for name in ("width", "cardinality", "bottleneck_width", "stem_width"):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(DEFAULT, name), help="of the spec")
    args = parser.parse_args()
    if args.images < BATCH or args.epochs < 2:
        parser.error(f"--images must be at least one batch ({BATCH}) and --epochs at least 2")
    spec = dataclasses.replace(
        DEFAULT,
        width=args.width,
        cardinality=args.cardinality,
        bottleneck_width=args.bottleneck_width,
        stem_width=args.stem_width,
    )
    # What nas.training.loop does on the CPU: all cores, unless OMP_NUM_THREADS says otherwise.
    threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, spec.classes, args.images).astype(np.int64)
    # One validation image: ours validates after every epoch, which the others do not.
    data = Dataset("bench", spec.classes, "cifar", x, y, x[:1], y[:1])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    mflops = resnext.complexity(spec).flops / 1e6
    print(f"{spec.describe()}, {mflops:.0f} MFLOPs/image, batch {BATCH}, {args.images} images")
    print(f"{threads} threads, torch {torch.__version__}, DataLoader workers {args.workers}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    loops = {
        "bare": lambda: bare_steps(spec, tx, ty, args.epochs),
        "plain": lambda: plain_loop(spec, tx, ty, args.epochs, args.workers),
        "ours": lambda: ours(spec, data, args.epochs),
    }
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in loops}
    for r in range(args.repeats):
        for name, loop in loops.items():
            runs[name].append(loop())
        print(
            f"repeat {r + 1}, images/s (wall, CPU): "
            + ", ".join(f"{k} {v[-1][0]:.1f} {v[-1][1]:.1f}" for k, v in runs.items())
        )
    ms = per_batch_ms(spec, tx, ty, args.batches)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"per batch, median of {args.batches} turns: step {ms['step']:.1f} ms, data path of ours "
        f"{ms['ours data']:.2f} ms ({ms['ours data'] / ms['step']:.2%} of a step), of the "
        f"per-image DataLoader {ms['DataLoader data']:.2f} ms "
        f"({ms['DataLoader data'] / ms['step']:.2%} of a step)"
    )
    # CPU time is immune to other processes only when this one neither spins nor hands work to
    # other processes: trust it with OMP_NUM_THREADS=1 and --workers 0.
    for i, clock in enumerate(("wall", "CPU")):
        for name, pick in (("median", statistics.median), ("best", max)):
            v = {k: pick(rate[i] for rate in r) for k, r in runs.items()}
            overhead = v["bare"] / v["ours"] - 1  # extra time per image over the bare step
            print(
                f"{clock} {name}: (1) nas.training.loop {v['ours']:.1f}, (2) DataLoader per-image "
                f"{v['plain']:.1f}, (3) bare step {v['bare']:.1f} images/s; "
                f"ours/(2) = {v['ours'] / v['plain']:.3f}, ours/(3) = {v['ours'] / v['bare']:.3f} "
                f"(time overhead {overhead:+.1%})"
            )


if __name__ == "__main__":
    main()
