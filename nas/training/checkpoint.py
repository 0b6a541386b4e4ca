"""A run's checkpoint file: what identifies the run it belongs to, and reading and writing it."""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data import Dataset
from nas.fileio import load_tensors, write_atomic
from nas.training.config import TrainConfig
from resnext.spec import Spec

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def identity(spec: Spec, data: Dataset, cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must share with a run to be resumed by it.

    Not the epochs (a run may be extended) nor the early-stopping patience, which change when
    training stops but not what the epochs so far did; nor the memory format, compile mode,
    precision or threads, which change only rounding (and so checkpoints from before those
    fields still resume).
    """
    config = asdict(cfg)
    for name in (
        "epochs",
        "early_stop_patience",
        "channels_last",
        "compile",
        "precision",
        "threads",
    ):
        del config[name]
    # Scoring settings added later join only when set, so older checkpoints still resume.
    for name, default in (("ema", None), ("tta", False), ("interim_val", None)):
        if config[name] == default:
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


def load_checkpoint(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, if it belongs to the run of :func:`identity` ``run``; else
    ValueError."""
    fix = "delete it to start over, or train into another directory"
    state = load_tensors(path, fix)
    keys = {"format", "epoch", "history", "model", "optimizer", "scheduler", "rng", *run}
    if (
        not isinstance(state, dict)
        or not keys <= set(state)
        or not all(isinstance(state[part], dict) for part in run)
    ):
        raise ValueError(f"{path} is not a resnext-nas training checkpoint; {fix}")
    if state["format"] != FORMAT:
        raise ValueError(f"checkpoint {path} has format {state['format']!r}, not {FORMAT}; {fix}")
    for part, ours in run.items():
        theirs = state[part]
        if theirs != ours:
            diff = ", ".join(
                f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here"
                for k in sorted(set(theirs) | set(ours))
                if theirs.get(k) != ours.get(k)
            )
            raise ValueError(f"checkpoint {path} is of another run ({part}: {diff}); {fix}")
    return state


def save_checkpoint(
    path: Path, run: dict[str, Any], history: list[dict[str, Any]], state: dict[str, Any]
) -> None:
    """Write the run of :func:`identity` ``run`` after ``len(history)`` epochs, atomically.

    ``state`` is the run's tensors and counters (:meth:`nas.training.loop.Run.state_dict`).
    """
    saved = {"format": FORMAT, **run, "epoch": len(history), "history": history, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(saved, f))
