"""Short training trials of one spec on one dataset: the objective that the search optimises.

A trial keeps everything on its device: the whole dataset as uint8, the paper's augmentation
done on whole batches as tensors (:mod:`nas.training.augment`), the loss and accuracy counters.
There is no DataLoader, no per-image Python and, on a GPU, no host sync in the inner loop but a
periodic divergence check. Its settings are :class:`nas.training.config.TrainConfig`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import resnext
from nas.data import Dataset
from nas.training import plan as perf
from nas.training.augment import augment, channel_stats, evaluation_view
from nas.training.checkpoint import CHECKPOINT, identity, load_checkpoint, save_checkpoint
from nas.training.config import WEIGHT_DECAY, TrainConfig, check_number
from nas.training.device import check_memory, setup
from resnext.spec import Spec

# On a GPU, reading the loss back every step would stall the queue; NaN and inf survive
# summation, so checking the running sum every few steps still catches every divergence.
_GPU_CHECK_EVERY = 16


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
    # Of epoch_seconds, those of the training steps (the rest is validation); 0.0 in
    # checkpoints written before it was kept.
    train_seconds: float = 0.0
    val_images: int = 0  # scored for val_loss and val_accuracy; 0 in older checkpoints


@dataclass
class TrainResult:
    """The outcome of :func:`train`; ``val_accuracy`` is what a search maximises."""

    status: str  # "completed" | "diverged" | "early_stopped"
    # Best over epochs (with interim scoring, the last epoch's: the one scored on the whole
    # split); 0.0 if no epoch completed.
    val_accuracy: float
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
    if cfg.schedule == "linear":
        return max(0.0, 1 - (step - warm) / max(1, total_steps - warm))
    # Sec. 5.3: lr / 10 at epochs 150 and 225 of 300, i.e. at 50% and 75% of the steps.
    return 0.1 ** ((step >= 0.5 * total_steps) + (step >= 0.75 * total_steps))


def _cosine(start: float, end: float, t: float) -> float:
    """Cosine interpolation from ``start`` (t=0) to ``end`` (t>=1)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


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


class Run:
    """One run's state on its device: data, model, optimiser, RNG, and the steps taken.

    :func:`train` drives it; ``benchmarks/bench_mfu.py`` times its epochs directly.
    """

    def __init__(self, spec: Spec, data: Dataset, cfg: TrainConfig) -> None:
        self.cfg, self.family = cfg, data.kind
        self.dev, self.plan, self.fmt, self.autocast = setup(
            cfg.device, cfg.channels_last, cfg.compile, cfg.precision, cfg.threads
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
        # The scored weights: an exponential moving average (torch's own, buffers included)
        # with ``cfg.ema``, else the trained ones.
        self.ema = None
        if cfg.ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True
            )
        self.scored = self.model if self.ema is None else self.ema.module
        self.generator = torch.Generator(self.dev).manual_seed(cfg.seed)
        self.train_x, self.train_y = self.tensors(data.train_x, data.train_y)
        self.val_x, self.val_y = self.tensors(data.val_x, data.val_y)
        # The interim sample: a permutation seeded apart from the run, so every run of this
        # split sees the same images.
        self.interim = None
        if cfg.interim_val is not None and cfg.interim_val < len(self.val_y):
            pick = torch.randperm(len(self.val_y), generator=torch.Generator().manual_seed(0))
            idx = pick[: cfg.interim_val].sort().values.to(self.dev)
            self.interim = (self.val_x[idx], self.val_y[idx])
        self.mean, self.std = channel_stats(self.train_x)
        self.shift, self.scale = self.mean.view(1, 3, 1, 1), (1 / self.std).view(1, 3, 1, 1)
        self.n = len(self.train_x)
        self.batch = min(cfg.batch_size, self.n)
        self.steps = self.n // self.batch  # per epoch
        self.step = 0  # optimiser steps taken, which the schedule follows

    def tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (uint8) and labels (int64) on the device; no copy on the CPU."""
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)
        return torch.from_numpy(x).to(self.dev), torch.from_numpy(y).to(self.dev)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float 0..255 images -> normalised float32 in the model's memory format."""
        return x.to(torch.float32, memory_format=self.fmt).sub_(self.shift).mul_(self.scale)

    def train_epoch(
        self, on_step: Callable[[], None] | None = None
    ) -> tuple[float, float, float] | None:
        """Mean loss, accuracy and images per second of one epoch; None if the loss diverged."""
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
                self.train_x[idx], self.family, self.generator, min_crop_scale=cfg.min_crop_scale
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
            if self.ema is not None:
                self.ema.update_parameters(self.model)
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

    def evaluate(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        *,
        model: torch.nn.Module | None = None,
        tta: bool | None = None,
    ) -> tuple[float, float, float]:
        """Plain cross-entropy, accuracy and images per second on a split, no augmentation.

        ``model`` defaults to the scored weights and ``tta`` to the config's: with it, the
        logits are the mean of each image's and its mirror image's.
        """
        correct, loss, ips = self.predict(xs, ys, model=model, tta=tta)
        return loss, float(correct.float().mean().item()), ips

    def predict(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        *,
        model: torch.nn.Module | None = None,
        tta: bool | None = None,
    ) -> tuple[torch.Tensor, float, float]:
        """Per-image correctness (bool, on the CPU), mean cross-entropy and images per second."""
        t0 = time.perf_counter()
        model = self.scored if model is None else model
        tta = self.cfg.tta if tta is None else tta
        model.eval()
        loss = torch.zeros((), dtype=torch.float64, device=self.dev)
        hits = []
        step = 2 * self.cfg.batch_size  # no activations are kept, so twice the batch fits
        with torch.inference_mode():
            for i in range(0, len(xs), step):
                with self.autocast():
                    view = self.prepare(evaluation_view(xs[i : i + step], self.family))
                    logits = model(view).float()
                    if tta:
                        logits = (logits + model(view.flip(3)).float()) / 2
                loss += F.cross_entropy(logits, ys[i : i + step], reduction="sum")
                hits.append(logits.argmax(1) == ys[i : i + step])
        correct = torch.cat(hits).cpu()
        return correct, loss.item() / len(xs), len(xs) / (time.perf_counter() - t0)

    def weights(self) -> dict[str, Any]:
        """The model's weights on the CPU and the input normalisation they were trained with."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.scored.state_dict().items()},
            "normalization": {"mean": self.mean.cpu(), "std": self.std.cpu()},
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only, so that ``torch.load(weights_only=True)`` reads it."""
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.on_gpu:
            rng["cuda"] = torch.cuda.get_rng_state(self.dev)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": self.cfg.schedule, "step": self.step},
            "rng": rng,
            "normalization": {"mean": self.mean.cpu(), "std": self.std.cpu()},
            **({} if self.ema is None else {"ema": self.ema.state_dict()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where :meth:`state_dict` left off."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
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
    start = time.perf_counter()
    _check_data(spec, data)
    cfg = cfg.resolved(data.kind)
    run_id = identity(spec, data, cfg)
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    state = None if path is None or not path.exists() else load_checkpoint(path, run_id)
    if state is not None and state["epoch"] > cfg.epochs:
        raise ValueError(
            f"checkpoint {path} has {state['epoch']} epochs, more than the {cfg.epochs} "
            "asked for; ask for at least as many, or train into another directory"
        )
    check_memory(spec, cfg)
    run = Run(spec, data, cfg)
    history: list[EpochStats] = []
    if state is not None:
        run.load_state_dict(state)
        history = [EpochStats(**h) for h in state["history"]]

    status = "completed"
    with _progress_bar(progress) as bar:
        on_step = None
        if bar is not None:
            epochs_task = bar.add_task("epochs", total=cfg.epochs, completed=len(history))
            batches_task = bar.add_task("batches", total=run.steps)
            on_step = partial(bar.advance, batches_task)
        while len(history) < cfg.epochs and not _stalled(history, cfg.early_stop_patience):
            epoch_start = time.perf_counter()
            if bar is not None:
                bar.reset(batches_task, description=f"epoch {len(history) + 1}")
            trained = run.train_epoch(on_step)
            if trained is None:
                status = "diverged"
                break
            last = len(history) + 1 == cfg.epochs
            scored = (run.val_x, run.val_y) if last or run.interim is None else run.interim
            val_loss, val_accuracy, val_ips = run.evaluate(*scored)
            if not math.isfinite(val_loss):  # a finite loss, but broken batch-norm statistics
                status = "diverged"
                break
            train_loss, train_accuracy, train_ips = trained
            stats = EpochStats(
                train_seconds=run.steps * run.batch / train_ips,
                epoch=len(history) + 1,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                epoch_seconds=time.perf_counter() - epoch_start,
                images_per_second=train_ips,
                val_images_per_second=val_ips,
                val_images=len(scored[1]),
            )
            history.append(stats)
            if path is not None:
                save_checkpoint(path, run_id, [asdict(h) for h in history], run.state_dict())
            if bar is not None:
                best = _best(history)
                described = f"val {val_accuracy:.1%}, best {best.val_accuracy:.1%} @ {best.epoch}"
                bar.update(epochs_task, advance=1, description=f"epochs: {described}")
            if callback is not None:
                try:
                    callback(stats)
                except Exception:
                    if on_end is not None:  # a pruned trial keeps the weights it has
                        on_end(run.weights())
                    raise

    if status == "completed" and len(history) < cfg.epochs:
        status = "early_stopped"
    if on_end is not None and history and status != "diverged":
        on_end(run.weights())
    test_accuracy = None
    if eval_test and data.test_x is not None and data.test_y is not None and status != "diverged":
        test_accuracy = run.evaluate(*run.tensors(data.test_x, data.test_y))[1]
    timed = history[1:] if len(history) > 1 else history
    best = _best(history) if history else None
    if run.interim is not None and history:
        # Interim epochs scored fewer images: only the whole split's score is the run's.
        whole = [s for s in history if s.val_images == len(run.val_y)]
        best = whole[-1] if whole else history[-1]
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
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("repeats", repeats, 1, integer=True)
    dev, _, fmt, autocast = setup(device)
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
