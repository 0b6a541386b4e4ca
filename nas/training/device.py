"""Where a run trains: the device a name stands for, whether it is here, and whether a spec's
training step fits in its memory."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from nas.training import plan as perf
from nas.training.config import TrainConfig, check_device_name
from resnext.complexity import training_memory
from resnext.spec import Spec


def check_device(name: str) -> None:
    """Refuse a device that is not here (a ValueError) before a run creates anything."""
    resolve_device(name)


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` stands for; "auto" is cuda when there is one, else cpu."""
    check_device_name(name)
    return perf.torch_device(name)


def available_memory(dev: torch.device) -> int:
    """Bytes free for a run on ``dev``: free GPU memory on CUDA, else the host's available RAM."""
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
    dev = resolve_device(cfg.device)
    # bfloat16 autocast (see setup) halves the activations.
    bf16 = perf.plan(dev.type, cfg.channels_last, cfg.compile, cfg.precision).bf16
    need = training_memory(spec, cfg.batch_size, activation_bytes=2 if bf16 else 4)
    have = available_memory(dev)
    if need > have:
        r = spec.resolution
        raise ValueError(
            f"{spec.describe()} needs at least {need / 2**30:,.1f} GiB to train batches of "
            f"{cfg.batch_size} at {r}x{r} (weights, gradients, momentum and every layer's "
            f"output), more than the {have / 2**30:,.1f} GiB available on {dev}; use a smaller "
            "spec, --batch-size or resolution"
        )


def setup(
    name: str,
    channels_last: bool | None = None,
    compile: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> tuple[torch.device, perf.Plan, torch.memory_format, Any]:
    """Device, plan (:func:`nas.training.plan.plan`), memory format and autocast context of a
    run; on the CPU, ``threads`` (None: every core the process may use) sets torch's threads."""
    dev = resolve_device(name)
    plan = perf.plan(dev.type, channels_last, compile, precision)
    fmt = torch.channels_last if plan.channels_last else torch.contiguous_format
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cudnn pick the fastest convs
    if dev.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)
    elif dev.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        # Every core the process may use (cpu_count() would count cores outside the affinity),
        # unless OMP_NUM_THREADS shares them out: trials run in parallel processes that each
        # take all cores oversubscribe them, and OpenMP's spinning then costs 10x or more.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(cores or os.cpu_count() or 1)
    if plan.bf16 and dev.type in ("cuda", "cpu"):
        # Autocast runs convolutions and matmuls in bf16 and keeps batch norm, softmax and the
        # loss in fp32; the weights and the optimiser stay fp32.
        return dev, plan, fmt, lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
    return dev, plan, fmt, contextlib.nullcontext
