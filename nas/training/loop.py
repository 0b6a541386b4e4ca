"""Short training trials of one spec on one dataset: the objective that the search optimises.

A trial keeps everything on its device: the whole dataset as uint8, the paper's augmentation
done on whole batches as tensors (Sec. 5.3 for CIFAR, Sec. 4 for ImageNet), the loss and
accuracy counters. There is no DataLoader, no per-image Python and, on a GPU, no host sync in
the inner loop but a periodic divergence check.

torch is imported inside the functions that need it: building a :class:`TrainConfig`, and so
refusing a bad ``resnext-nas train`` command line, must not wait the seconds an import of torch
takes.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import resnext
from nas.data import Dataset
from nas.fileio import load_tensors, write_atomic
from nas.training import plan as perf
from resnext.complexity import training_memory
from resnext.spec import Spec

if TYPE_CHECKING:
    import torch

SCHEDULES = ("cosine", "onecycle", "step")
RECIPES = ("paper",)
# Sec. 5.3 (CIFAR) and Sec. 4 (ImageNet).
WEIGHT_DECAY = {"cifar": 5e-4, "imagenet": 1e-4}
CIFAR_PAD = 4  # Sec. 5.3: 32x32 crops of a zero-padded 40x40 image
ASPECT_RATIOS = (3 / 4, 4 / 3)  # Sec. 4's aspect-ratio augmentation, in Inception's range
CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = 1
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# TrainConfig fields that the train, search and calibrate commands take as options.
_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch-size",
    "lr": "lr",
    "weight_decay": "weight-decay",
    "warmup_epochs": "warmup-epochs",
    "label_smoothing": "label-smoothing",
    "seed": "seed",
    "early_stop_patience": "patience",
}
# The optimiser computes in float32: a larger lr or weight decay does not convert (`--lr 1e308`
# would be a RuntimeError traceback); up to this, a blow-up is a "diverged" trial.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# torch keeps a device index in 8 bits: cuda:128 is cuda:-128 to it.
MAX_DEVICE_INDEX = 127
# On a GPU, reading the loss back every step would stall the queue; NaN and inf survive
# summation, so checking the running sum every few steps still catches every divergence.
_GPU_CHECK_EVERY = 16


def _check_number(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    integer: bool = False,
) -> None:
    """Raise a ValueError a user can act on unless ``value`` lies in the range."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (
            value < high if open_high else value <= high
        )
    if not ok:
        what = "an integer" if integer else "a number"
        lo = f"{'>' if open_low else '>='} {low:g}"
        bound = f"{high:,}" if integer else f"{high:g}"
        hi = "" if high == math.inf else f" and {'<' if open_high else '<='} {bound}"
        # The command-line spelling too, so that a user sees which option was wrong.
        option = f" (--{_OPTIONS[name]})" if name in _OPTIONS else ""
        raise ValueError(f"{name}{option} must be {what} {lo}{hi}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training trial; the defaults follow the paper where it has one."""

    epochs: int = 10
    batch_size: int = 128  # Sec. 5.3
    lr: float = 0.1  # peak learning rate; Sec. 4 and 5.3: 0.1 at batch 128-256
    momentum: float = 0.9  # Nesterov
    weight_decay: float | None = None  # None: 5e-4 for kind "cifar" (Sec. 5.3), 1e-4 (Sec. 4)
    # "cosine": linear warm-up then cosine; "onecycle"; "step": /10 at 50% and 75% (Sec. 5.3)
    schedule: str = "cosine"
    warmup_epochs: float = 1.0  # for "cosine" and "step"; capped at half the run
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto": cuda if available, else cpu
    early_stop_patience: int | None = None  # stop when val accuracy has not improved for N epochs
    # Smallest area of a random-resized crop (kind "imagenet"). Sec. 4 follows Inception's 0.08;
    # trials are a few epochs on small subsets, where such crops mostly cost accuracy, so the
    # default is a gentler 0.35. Set 0.08 for the paper's recipe.
    min_crop_scale: float = 0.35
    # How the trial runs, not what it computes (nas.training.plan): None and "auto" follow the
    # device's
    # rule there, measured by benchmarks/bench_mfu.py; True/False and a compile mode force one.
    channels_last: bool | None = None
    compile: str = "auto"

    def __post_init__(self) -> None:
        _check_number("epochs", self.epochs, 1, integer=True)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("lr", self.lr, 0, FLOAT32_MAX, open_low=True)
        # Nesterov momentum needs a momentum strictly between 0 and 1.
        _check_number("momentum", self.momentum, 0, 1, open_low=True, open_high=True)
        if self.weight_decay is not None:
            _check_number("weight_decay", self.weight_decay, 0, FLOAT32_MAX)
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        _check_number("warmup_epochs", self.warmup_epochs, 0)
        _check_number("label_smoothing", self.label_smoothing, 0, 1, open_high=True)
        _check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        _check_device(self.device)
        if self.early_stop_patience is not None:
            _check_number("early_stop_patience", self.early_stop_patience, 1, integer=True)
        _check_number("min_crop_scale", self.min_crop_scale, 0, 1, open_low=True)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ValueError(
                f"channels_last must be true, false or None, got {self.channels_last!r}"
            )
        perf.check_compile(self.compile)

    def resolved(self, kind: str) -> TrainConfig:
        """A copy with the weight decay of ``kind``'s recipe and the device "auto" stands for."""
        if kind not in WEIGHT_DECAY:
            raise ValueError(f"unknown dataset kind {kind!r}; choose one of cifar, imagenet")
        wd = WEIGHT_DECAY[kind] if self.weight_decay is None else self.weight_decay
        return replace(self, weight_decay=wd, device=str(_device(self.device)))


@dataclass
class EpochStats:
    """What one epoch did: losses, accuracies and throughput."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches, with label smoothing if any
    train_accuracy: float  # on the augmented training batches
    val_loss: float  # plain cross-entropy
    val_accuracy: float
    epoch_seconds: float  # training and validation
    images_per_second: float  # training throughput of the epoch (augmentation included)
    val_images_per_second: float  # inference throughput measured during validation


@dataclass
class TrainResult:
    """The outcome of :func:`train`; ``val_accuracy`` is what a search maximises."""

    status: str  # "completed" | "diverged" | "early_stopped"
    val_accuracy: float  # best over epochs; 0.0 if no epoch completed
    best_epoch: int  # 1-based; 0 if no epoch completed
    final_val_accuracy: float
    history: list[EpochStats]
    # Harmonic means over the epochs (total images / total time), leaving out the first epoch
    # when there are more, since it pays for warm-up (cudnn autotuning, allocator, caches).
    images_per_second: float
    inference_images_per_second: float
    wall_seconds: float  # of this call, resumed epochs not included
    test_accuracy: float | None  # of the final weights; only with eval_test and a test split

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, history as a list of dicts."""
        return asdict(self)


def recipe_config(name: str | None, kind: str, given: dict[str, Any]) -> TrainConfig:
    """The config of recipe ``name`` for data of ``kind``, with the ``given`` fields overriding it.

    ``name`` None is no recipe: the ``given`` fields over :class:`TrainConfig`'s defaults.
    """
    if name is None:
        return TrainConfig(**given)
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    if kind != "cifar":
        # Sec. 4 gives the optimiser but neither the epochs nor when the lr is divided.
        raise ValueError(
            "--recipe paper is the CIFAR recipe of Sec. 5.3; for ImageNet Sec. 4 states batch "
            "256, lr 0.1, momentum 0.9 and weight decay 1e-4 but not the epochs or when lr drops, "
            "so give --epochs, --batch-size, --lr and --schedule instead"
        )
    # Sec. 5.3: SGD, batch 128, momentum 0.9, weight decay 5e-4, lr 0.1, 300 epochs, lr / 10 at
    # epochs 150 and 225 ("step" divides at 50% and 75% of the run); no warm-up, no smoothing.
    paper = {
        "epochs": 300,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "step",
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
    }
    return TrainConfig(**{**paper, **given})


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak ``cfg.lr`` at 0-based optimiser step ``step`` of ``total_steps``."""
    if cfg.schedule == "onecycle":
        # Smith & Topin (2019) as torch's OneCycleLR computes it with its defaults: a cosine ramp
        # from lr/25 reaching lr at step 0.3 * total - 1, then a cosine down to lr/25/1e4 at the
        # last step (total - 1). Momentum stays 0.9.
        end = 0.3 * total_steps - 1
        if step <= end:
            return _cosine(1 / 25, 1.0, step / end)
        return _cosine(1.0, 1 / 25 / 1e4, (step - end) / (total_steps - 1 - end))
    # A short run still anneals: the warm-up never takes more than half of it.
    warm = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps // 2)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        return _cosine(1.0, 0.0, (step - warm) / max(1, total_steps - warm))
    # Sec. 5.3: lr / 10 at epochs 150 and 225 of 300, i.e. at 50% and 75% of the steps.
    return 0.1 ** ((step >= 0.5 * total_steps) + (step >= 0.75 * total_steps))


def _cosine(start: float, end: float, t: float) -> float:
    """Cosine interpolation from ``start`` (t=0) to ``end`` (t>=1)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def augment(
    x: torch.Tensor, kind: str, generator: torch.Generator, *, min_crop_scale: float = 0.35
) -> torch.Tensor:
    """Randomly crop and flip a uint8 batch ``[B, 3, H, W]`` as a whole, keeping its size.

    kind "cifar" (Sec. 5.3): a crop of the batch zero-padded by 4, and a horizontal flip; pixels
    are only moved, so the result is uint8. kind "imagenet" (Sec. 4): a random-resized crop of
    area ``min_crop_scale..1`` and aspect ratio 3/4..4/3, and a flip, sampled bilinearly from
    per-image affine grids; float32 in 0..255.
    """
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, 1, generator=generator, device=dev) < 0.5
    if kind == "cifar":
        p = CIFAR_PAD
        hp, wp = h + 2 * p, w + 2 * p
        padded = F.pad(x, (p, p, p, p)).view(b, 3, hp * wp)
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
        rows = dy + torch.arange(h, device=dev)
        cols = dx + torch.arange(w, device=dev)
        cols = torch.where(flip, cols.flip(1), cols)
        # One gather for the whole batch, from one flat pixel index per image shared by its
        # channels: several times faster on the CPU than advanced indexing with 4 indices.
        where = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w)
        return padded.gather(2, where.expand(b, 3, h * w)).view(b, 3, h, w)
    if kind != "imagenet":
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of cifar, imagenet")
    area = torch.empty(b, device=dev).uniform_(min_crop_scale, 1.0, generator=generator)
    log_r = torch.empty(b, device=dev).uniform_(*map(math.log, ASPECT_RATIOS), generator=generator)
    # Crop sides as fractions of the image sides, clamped to the image where a wide (or tall)
    # crop of a large area would not fit (torchvision retries, then falls back to a centre crop).
    sw = (area * log_r.exp()).sqrt().clamp(max=1.0)
    sh = (area / log_r.exp()).sqrt().clamp(max=1.0)
    u = torch.rand(2, b, generator=generator, device=dev) * 2 - 1
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = torch.where(flip[:, 0], -sw, sw)
    theta[:, 0, 2] = (1 - sw) * u[0]  # crop centre, inside the image
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = (1 - sh) * u[1]
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    # The crop is never larger than the image it is resized to, so bilinear upsampling needs
    # no antialiasing.
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float32, on ``x``'s device) of uint8 images ``[N, 3, H, W]``."""
    import torch

    n, c, h, w = x.shape
    total = torch.zeros(c, dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    chunk = max(1, 2**24 // (c * h * w))  # bounded memory for large ImageNet subsets
    for i in range(0, n, chunk):
        part = x[i : i + chunk].to(torch.float64)
        total += part.sum((0, 2, 3))
        squares += part.square().sum((0, 2, 3))
    mean = total / (n * h * w)
    var = (squares / (n * h * w) - mean.square()).clamp_min(0)
    # A constant channel must not divide by zero: one grey level is the smallest spread.
    return mean.float(), var.sqrt().clamp_min(1.0).float()


def _check_device(name: Any) -> None:
    """Refuse a device name that is not one the trainer knows."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name.startswith("cuda:") and int(name[5:]) > MAX_DEVICE_INDEX:
        raise ValueError(
            f"--device {name}: torch numbers devices 0 to {MAX_DEVICE_INDEX}; give cuda:N with "
            "N below the number of GPUs here"
        )


def check_device(name: str) -> None:
    """Refuse a device that is not here (a ValueError) before a run creates anything."""
    _device(name)


def _device(name: str) -> torch.device:
    """The torch device ``name`` stands for; "auto" is cuda when there is one, else cpu."""
    import torch

    _check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(
            f"--device {name} asked for, but this machine has {n} GPUs (cuda:0 to cuda:{n - 1})"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps asked for, but MPS is not available here")
    return dev


def available_memory(dev: torch.device) -> int:
    """Bytes free for a run on ``dev``: free GPU memory on CUDA, else the host's available RAM."""
    import torch

    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:  # Linux: what can be allocated without swapping, page cache included
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(spec: Spec, cfg: TrainConfig) -> None:
    """Refuse, in one line, a spec whose training step cannot fit on ``cfg.device``.

    The estimate is :func:`resnext.complexity.training_memory`, a lower bound, so a refused spec
    cannot fit; one that passes may still run out of memory at the margin.
    """
    dev = _device(cfg.device)
    # bfloat16 autocast on CUDA (see _setup) halves the activations.
    need = training_memory(spec, cfg.batch_size, activation_bytes=2 if dev.type == "cuda" else 4)
    have = available_memory(dev)
    if need > have:
        r = spec.resolution
        raise ValueError(
            f"{spec.describe()} needs at least {need / 2**30:,.1f} GiB to train batches of "
            f"{cfg.batch_size} at {r}x{r} (weights, gradients, momentum and every layer's "
            f"output), more than the {have / 2**30:,.1f} GiB available on {dev}; use a smaller "
            "spec, --batch-size or resolution"
        )


def _setup(
    name: str, channels_last: bool | None = None, compile: str = "auto"
) -> tuple[torch.device, perf.Plan, torch.memory_format, Any]:
    """Device, plan (:func:`nas.training.plan.plan`), memory format and autocast context of a
    run."""
    import torch

    dev = _device(name)
    plan = perf.plan(dev.type, channels_last, compile)
    fmt = torch.channels_last if plan.channels_last else torch.contiguous_format
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cudnn pick the fastest convs
        return dev, plan, fmt, lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    if dev.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        # Every core the process may use (cpu_count() would count cores outside the affinity),
        # unless OMP_NUM_THREADS shares them out: trials run in parallel processes that each
        # take all cores oversubscribe them, and OpenMP's spinning then costs 10x or more.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(cores or os.cpu_count() or 1)
    return dev, plan, fmt, contextlib.nullcontext


def _check_data(spec: Spec, data: Dataset) -> None:
    """Refuse a dataset the trainer cannot use, or one that does not match the spec."""
    if data.kind not in WEIGHT_DECAY:
        raise ValueError(f"dataset {data.name!r} has unknown kind {data.kind!r}")
    for split, x, y in (("train", data.train_x, data.train_y), ("val", data.val_x, data.val_y)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(
                f"{split} images of dataset {data.name!r} must be uint8 [N, 3, S, S], "
                f"got {x.dtype} {list(x.shape)}"
            )
        if len(x) == 0 or len(y) != len(x):
            raise ValueError(
                f"{split} split of dataset {data.name!r} has {len(x)} images and {len(y)} labels"
            )
        if y.min() < 0 or y.max() >= data.classes:
            raise ValueError(
                f"{split} labels of dataset {data.name!r} lie outside 0..{data.classes - 1}"
            )
    if (spec.classes, spec.resolution) != (data.classes, data.resolution):
        raise ValueError(
            f"the spec has {spec.classes} classes at resolution {spec.resolution}, the dataset "
            f"{data.name!r} {data.classes} at {data.resolution}; use dataclasses.replace(spec, "
            f"classes={data.classes}, resolution={data.resolution})"
        )


def _identity(spec: Spec, data: Dataset, cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must share with a run to be resumed by it.

    Not the epochs (a run may be extended) nor the early-stopping patience, which change when
    training stops but not what the epochs so far did; nor the memory format or compile mode,
    which change only rounding (and so checkpoints from before those fields still resume).
    """
    config = asdict(cfg)
    for name in ("epochs", "early_stop_patience", "channels_last", "compile"):
        del config[name]
    config["device"] = config["device"].split(":")[0]  # RNG states differ across device types
    data_id = {
        "name": data.name,
        "kind": data.kind,
        "classes": data.classes,
        "resolution": data.resolution,
        "train": len(data.train_y),
        "val": len(data.val_y),
        # A cheap fingerprint of the split: another seed or subset gives other labels.
        "train_labels_crc32": zlib.crc32(np.ascontiguousarray(data.train_y, np.int64).tobytes()),
    }
    return {"spec": spec.to_dict(), "config": config, "data": data_id}


def _load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, if it belongs to the run of ``identity``; else ValueError."""

    fix = "delete it to start over, or train into another directory"
    state = load_tensors(path, fix)
    keys = {"format", "epoch", "history", "model", "optimizer", "scheduler", "rng", *identity}
    if (
        not isinstance(state, dict)
        or not keys <= set(state)
        or not all(isinstance(state[part], dict) for part in identity)
    ):
        raise ValueError(f"{path} is not a resnext-nas training checkpoint; {fix}")
    if state["format"] != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} has format {state['format']!r}, not {_CHECKPOINT_FORMAT}; {fix}"
        )
    for part, ours in identity.items():
        theirs = state[part]
        if theirs != ours:
            diff = ", ".join(
                f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here"
                for k in sorted(set(theirs) | set(ours))
                if theirs.get(k) != ours.get(k)
            )
            raise ValueError(f"checkpoint {path} is of another run ({part}: {diff}); {fix}")
    return state


def _stalled(history: list[EpochStats], patience: int | None) -> bool:
    """Whether the best validation accuracy is ``patience`` or more epochs old."""
    if patience is None or not history:
        return False
    return len(history) - _best(history).epoch >= patience


def _best(history: list[EpochStats]) -> EpochStats:
    """The first epoch with the highest validation accuracy."""
    return max(history, key=lambda s: s.val_accuracy)  # max keeps the first of equals


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, or None: nothing is printed unless enabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    times = (TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, *times, console=Console(stderr=True)) as bar:
        yield bar


def _harmonic_mean(rates: list[float]) -> float:
    """Total work over total time for equal work per entry; 0.0 for no entries."""
    return len(rates) / sum(1 / r for r in rates) if rates and min(rates) > 0 else 0.0


class Trial:
    """One run's state on its device: data, model, optimiser, RNG, and the steps taken.

    :func:`train` drives it; ``benchmarks/bench_mfu.py`` times its epochs directly.
    """

    def __init__(self, spec: Spec, data: Dataset, cfg: TrainConfig) -> None:
        import torch

        self.cfg, self.kind = cfg, data.kind
        self.dev, self.plan, self.fmt, self.autocast = _setup(
            cfg.device, cfg.channels_last, cfg.compile
        )
        self.on_gpu = self.dev.type == "cuda"
        torch.manual_seed(cfg.seed)
        self.model = resnext.build(spec).to(self.dev, memory_format=self.fmt)
        # Training steps go through the compiled module (same parameters); evaluation stays
        # eager, since inference mode would compile a second graph.
        mode = self.plan.compile_mode
        self.forward = self.model if mode is None else perf.compiled(self.model, mode)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
        self.generator = torch.Generator(self.dev).manual_seed(cfg.seed)
        self.train_x, self.train_y = self.tensors(data.train_x, data.train_y)
        self.val_x, self.val_y = self.tensors(data.val_x, data.val_y)
        self.mean, self.std = channel_stats(self.train_x)
        self.shift, self.scale = self.mean.view(1, 3, 1, 1), (1 / self.std).view(1, 3, 1, 1)
        self.n = len(self.train_x)
        self.batch = min(cfg.batch_size, self.n)
        self.steps = self.n // self.batch  # per epoch
        self.step = 0  # optimiser steps taken, which the schedule follows

    def tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (uint8) and labels (int64) on the device; no copy on the CPU."""
        import torch

        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)
        return torch.from_numpy(x).to(self.dev), torch.from_numpy(y).to(self.dev)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float 0..255 images -> normalised float32 in the model's memory format."""
        import torch

        return x.to(torch.float32, memory_format=self.fmt).sub_(self.shift).mul_(self.scale)

    def train_epoch(
        self, on_step: Callable[[], None] | None = None
    ) -> tuple[float, float, float] | None:
        """Mean loss, accuracy and images per second of one epoch; None if the loss diverged."""
        import torch
        import torch.nn.functional as F

        cfg, dev, batch = self.cfg, self.dev, self.batch
        t0 = time.perf_counter()
        self.model.train()
        # Counters stay on the device: no host sync per step, but the divergence check.
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        order = torch.randperm(self.n, generator=self.generator, device=dev)
        total_steps = cfg.epochs * self.steps
        for i in range(self.steps):
            idx = order[i * batch : (i + 1) * batch]
            x = augment(
                self.train_x[idx], self.kind, self.generator, min_crop_scale=cfg.min_crop_scale
            )
            x, y = self.prepare(x), self.train_y[idx]
            lr = cfg.lr * lr_factor(cfg, self.step, total_steps, self.steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                logits = self.forward(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            loss_sum += loss.detach().float()
            correct += (logits.detach().argmax(1) == y).sum()
            check = not self.on_gpu or (i + 1) % _GPU_CHECK_EVERY == 0 or i + 1 == self.steps
            if check and not loss_sum.isfinite():
                return None
            if on_step is not None:
                on_step()
        loss_v, correct_v = loss_sum.item(), correct.item()  # .item() waits for the device
        images = self.steps * batch
        return loss_v / self.steps, correct_v / images, images / (time.perf_counter() - t0)

    def evaluate(self, xs: torch.Tensor, ys: torch.Tensor) -> tuple[float, float, float]:
        """Plain cross-entropy, accuracy and images per second on a split, no augmentation."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        self.model.eval()
        loss = torch.zeros((), dtype=torch.float64, device=self.dev)
        correct = torch.zeros((), dtype=torch.int64, device=self.dev)
        step = 2 * self.cfg.batch_size  # no activations are kept, so twice the batch fits
        with torch.inference_mode():
            for i in range(0, len(xs), step):
                with self.autocast():
                    logits = self.model(self.prepare(xs[i : i + step])).float()
                loss += F.cross_entropy(logits, ys[i : i + step], reduction="sum")
                correct += (logits.argmax(1) == ys[i : i + step]).sum()
        loss_v, correct_v = loss.item(), correct.item()
        return loss_v / len(xs), correct_v / len(xs), len(xs) / (time.perf_counter() - t0)

    def weights(self) -> dict[str, Any]:
        """The model's weights on the CPU and the input normalisation they were trained with."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "normalization": {"mean": self.mean.cpu(), "std": self.std.cpu()},
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only, so that ``torch.load(weights_only=True)`` reads it."""
        import torch

        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.on_gpu:
            rng["cuda"] = torch.cuda.get_rng_state(self.dev)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": self.cfg.schedule, "step": self.step},
            "rng": rng,
            "normalization": {"mean": self.mean.cpu(), "std": self.std.cpu()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where :meth:`state_dict` left off."""
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["scheduler"]["step"])
        self.generator.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.on_gpu and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.dev)


def train(
    spec: Spec,
    data: Dataset,
    cfg: TrainConfig,
    *,
    callback: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    eval_test: bool = False,
    on_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data``, resuming from ``checkpoint_dir`` if it holds this run's state.

    SGD with Nesterov momentum on whole shuffled batches (the last partial batch of an epoch
    is dropped, so batch-norm never sees a tiny batch; a training set smaller than one batch is
    one batch). ``callback`` runs after every epoch, once that epoch's checkpoint is written;
    an exception it raises (``optuna.TrialPruned``) propagates. A loss that turns NaN or inf
    ends the run with status "diverged". ``on_end`` gets the final weights (``model`` state
    dict and ``normalization``, on the CPU) of a run that trained an epoch and did not diverge,
    also of one that ``callback`` stopped by raising.
    """
    import torch

    start = time.perf_counter()
    _check_data(spec, data)
    cfg = cfg.resolved(data.kind)
    identity = _identity(spec, data, cfg)
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    state = None if path is None or not path.exists() else _load_checkpoint(path, identity)
    if state is not None and state["epoch"] > cfg.epochs:
        raise ValueError(
            f"checkpoint {path} has {state['epoch']} epochs, more than the {cfg.epochs} "
            "asked for; ask for at least as many, or train into another directory"
        )
    check_memory(spec, cfg)
    trial = Trial(spec, data, cfg)
    history: list[EpochStats] = []
    if state is not None:
        trial.load_state_dict(state)
        history = [EpochStats(**h) for h in state["history"]]

    status = "completed"
    with _progress_bar(progress) as bar:
        on_step = None
        if bar is not None:
            epochs_task = bar.add_task("epochs", total=cfg.epochs, completed=len(history))
            batches_task = bar.add_task("batches", total=trial.steps)
            on_step = partial(bar.advance, batches_task)
        while len(history) < cfg.epochs and not _stalled(history, cfg.early_stop_patience):
            epoch_start = time.perf_counter()
            if bar is not None:
                bar.reset(batches_task, description=f"epoch {len(history) + 1}")
            trained = trial.train_epoch(on_step)
            if trained is None:
                status = "diverged"
                break
            val_loss, val_accuracy, val_ips = trial.evaluate(trial.val_x, trial.val_y)
            if not math.isfinite(val_loss):  # a finite loss, but broken batch-norm statistics
                status = "diverged"
                break
            train_loss, train_accuracy, train_ips = trained
            stats = EpochStats(
                epoch=len(history) + 1,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                epoch_seconds=time.perf_counter() - epoch_start,
                images_per_second=train_ips,
                val_images_per_second=val_ips,
            )
            history.append(stats)
            if path is not None:
                state = {"format": _CHECKPOINT_FORMAT, **identity, "epoch": len(history)}
                state["history"] = [asdict(h) for h in history]
                state.update(trial.state_dict())
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, lambda f, state=state: torch.save(state, f))
            if bar is not None:
                best = _best(history)
                described = f"val {val_accuracy:.1%}, best {best.val_accuracy:.1%} @ {best.epoch}"
                bar.update(epochs_task, advance=1, description=f"epochs: {described}")
            if callback is not None:
                try:
                    callback(stats)
                except Exception:
                    if on_end is not None:  # a pruned trial keeps the weights it has
                        on_end(trial.weights())
                    raise

    if status == "completed" and len(history) < cfg.epochs:
        status = "early_stopped"
    if on_end is not None and history and status != "diverged":
        on_end(trial.weights())
    test_accuracy = None
    if eval_test and data.test_x is not None and data.test_y is not None and status != "diverged":
        test_accuracy = trial.evaluate(*trial.tensors(data.test_x, data.test_y))[1]
    timed = history[1:] if len(history) > 1 else history
    best = _best(history) if history else None
    return TrainResult(
        status=status,
        val_accuracy=best.val_accuracy if best else 0.0,
        best_epoch=best.epoch if best else 0,
        final_val_accuracy=history[-1].val_accuracy if history else 0.0,
        history=history,
        images_per_second=_harmonic_mean([s.images_per_second for s in timed]),
        inference_images_per_second=_harmonic_mean([s.val_images_per_second for s in timed]),
        wall_seconds=time.perf_counter() - start,
        test_accuracy=test_accuracy,
    )


def measure_latency(
    spec: Spec, *, device: str = "auto", batch_size: int = 1, repeats: int = 20
) -> float:
    """Seconds per image of ``spec``'s forward pass in eval mode, the median after a warm-up."""
    import torch

    _check_number("batch_size", batch_size, 1, integer=True)
    _check_number("repeats", repeats, 1, integer=True)
    dev, _, fmt, autocast = _setup(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = resnext.build(spec).to(dev, memory_format=fmt).eval()
    x = torch.randn(batch_size, 3, spec.resolution, spec.resolution, device=dev)
    x = x.contiguous(memory_format=fmt)
    times = []
    with torch.inference_mode(), autocast():
        for _ in range(3 + repeats):  # the first calls allocate, autotune and fill caches
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    return float(np.median(times[3:])) / batch_size
