"""The trainer's CUDA path: bf16 autocast, channels_last, data on the device, compile, workers.

Every test here needs CUDA and is marked ``gpu``; without CUDA they are skipped with a reason.
scripts/gpu_check.sh runs them on a GPU machine (``pytest -m gpu``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import resnext
from nas.search.storage import load
from nas.search.study import SearchSettings
from nas.search.workers import _placement, run_search
from nas.training import plan as perf
from nas.training.config import TrainConfig
from nas.training.loop import Run, train
from tests import numerics
from tests.helpers import TINY, tiny_space, toy_data

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
CUDA = TrainConfig(epochs=4, batch_size=32, lr=0.05, device="cuda")


def test_cuda_trial_runs_bf16_channels_last_on_device_data() -> None:
    data = toy_data(256, classes=4, res=16, pattern="stripes")
    trial = Run(TINY, data, CUDA.resolved("cifar"))
    assert trial.plan == perf.plan("cuda") and trial.plan.bf16 and trial.plan.channels_last
    # The whole dataset lives on the GPU: no host-to-device copy in the inner loop.
    assert trial.train_x.device.type == "cuda" and trial.val_y.device.type == "cuda"
    conv = next(m for m in trial.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.device.type == "cuda"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = trial.prepare(trial.train_x[:8])
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    with trial.autocast():
        logits = trial.forward(x)
    assert logits.dtype == torch.bfloat16  # autocast ran the convolutions in bf16
    assert conv.weight.dtype == torch.float32  # master weights stay fp32


def test_short_cuda_training_learns() -> None:
    data = toy_data(512, classes=4, res=16, pattern="stripes")
    result = train(TINY, data, CUDA)
    # Chance is 1/4; the same config reaches about 0.8 on the CPU in fp32 (test_train).
    assert result.status == "completed" and result.val_accuracy > 0.6
    assert result.images_per_second > 0


def test_cuda_graphs_training_learns() -> None:
    data = toy_data(512, classes=4, res=16, pattern="stripes")
    result = train(TINY, data, dataclasses.replace(CUDA, compile="reduce-overhead"))
    assert result.status == "completed" and result.val_accuracy > 0.6


def test_nchw_and_nhwc_agree_on_cuda() -> None:
    """Same weights, same batch: the two formats' bf16 logits differ by rounding only."""
    data = toy_data(64, classes=4, res=16, pattern="stripes")
    logits: dict[bool, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    for cl in (False, True):
        trial = Run(TINY, data, dataclasses.replace(CUDA, channels_last=cl).resolved("cifar"))
        if logits:
            trial.model.load_state_dict(state)
        state = state or trial.model.state_dict()
        with torch.no_grad(), trial.autocast():
            logits[cl] = trial.model(trial.prepare(trial.train_x[:32]))
    forward, _, layers = numerics.reductions(trial.model, 32, TINY.resolution)
    bound = numerics.rounding_bound(torch.float32, forward, layers, inputs=torch.bfloat16)
    numerics.assert_close("bf16 logits", logits[True], logits[False], bound)


def test_placement_counts_the_visible_gpus() -> None:
    gpus = torch.cuda.device_count()
    assert _placement(2 * gpus, 2) == [(None, i // 2) for i in range(2 * gpus)]
    with pytest.raises(ValueError, match="--trials-per-gpu"):
        _placement(2 * gpus + 1, 2)


def test_two_workers_share_the_gpu(tmp_path: Path) -> None:
    settings = SearchSettings(tiny_space(), study="gpu", pruner="none", latency=False)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, device="cuda")
    reports = run_search(settings, toy_data(256), cfg, 4, storage=url, workers=2, trials_per_gpu=2)
    # Both workers ran to the end on the one GPU (which of them trained what is a race).
    assert sorted(r.worker for r in reports) == [0, 1] and sum(r.trials for r in reports) == 4
    done = [t for t in load("gpu", url).trials if t.state.name == "COMPLETE"]
    assert len(done) == 4


def test_mfu_of_a_resnext29_step_is_measurable() -> None:
    dev = torch.device("cuda")
    peak = max(perf.matmul_peak(dev, n=4096, repeats=2))
    spec = resnext.preset("resnext29_8x64d")
    model = resnext.build(spec).to(dev, memory_format=torch.channels_last)
    x = torch.randn(64, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(x).float().sum().backward()  # runs at all in bf16 with channels_last
    assert 1e12 < peak < 5e15  # between 1 TFLOP/s and 5 PFLOP/s: a real bf16 matmul rate
