"""How trials run (nas.training.plan): per-device plans, their config fields, MFU counts, GPU
placement."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import resnext
from nas.search.workers import _placement, visible_devices
from nas.training import plan as perf
from nas.training.config import TrainConfig
from nas.training.loop import Run, train
from tests import numerics
from tests.helpers import FAST, TINY, run_cli, toy_data


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Train on one thread (see tests/training/test_train.py)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_plans_follow_the_device_rules_unless_forced() -> None:
    cpu, cuda = perf.plan("cpu"), perf.plan("cuda")
    # The CPU rule (bench_mfu): channels_last, eager, fp32; CUDA: channels_last, eager, bf16.
    assert (cpu.channels_last, cpu.compile_mode, cpu.bf16) == (True, None, False)
    assert (cuda.channels_last, cuda.compile_mode, cuda.bf16) == (True, None, True)
    forced = perf.plan("cpu", channels_last=False, compile="reduce-overhead")
    assert (forced.channels_last, forced.compile_mode) == (False, "reduce-overhead")
    assert perf.plan("cuda", compile="off").compile_mode is None
    assert not perf.plan("mps").channels_last  # unmeasured there: the old NCHW
    assert cpu.describe() == "NHWC, eager, fp32"
    assert forced.describe() == "NCHW, compile reduce-overhead, fp32"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("channels_last", 1, "channels_last must be true, false or None"),
        ("channels_last", "yes", "channels_last must be true, false or None"),
        ("compile", "fast", "compile must be one of auto, off, default"),
        ("compile", None, "compile must be one of"),
    ],
)
def test_config_refuses_bad_run_settings(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_trial_follows_its_plan() -> None:
    data = toy_data(64, classes=4, res=16, pattern="stripes")
    for channels_last in (None, True, False):
        cfg = dataclasses.replace(FAST, channels_last=channels_last).resolved("cifar")
        trial = Run(TINY, data, cfg)
        nhwc = channels_last is not False  # None: the CPU rule, channels_last
        conv = next(m for m in trial.model.modules() if isinstance(m, torch.nn.Conv2d))
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        assert conv.weight.is_contiguous(memory_format=fmt)
        assert trial.prepare(trial.train_x[:4]).is_contiguous(memory_format=fmt)
        assert trial.forward is trial.model  # eager: no compiled wrapper


# The network of the numerical comparisons: ResNeXt 4x2d, one block a stage, width 32, 32 px.
NUMERIC = resnext.Spec("cifar", (1, 1, 1), 32, 4, 2, classes=10, resolution=32)
BATCH = 8


def _nchw_and_nhwc() -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The same weights and batch-norm statistics in NCHW and in NHWC, and a batch in each."""
    nchw, x = numerics.calibrated(NUMERIC, BATCH)
    nhwc = numerics.twin(nchw, torch.channels_last)
    return nchw, nhwc, x, x.contiguous(memory_format=torch.channels_last)


def test_memory_format_changes_only_rounding_in_evaluation() -> None:
    """NCHW and NHWC compute the same logits from the same weights, to float32 rounding of the
    reductions on the path (tests/numerics.py): one pass, not a training run, whose rounding
    the epochs would amplify differently on each processor."""
    nchw, nhwc, x, x_nhwc = _nchw_and_nhwc()
    forward, _, layers = numerics.reductions(nchw, BATCH, NUMERIC.resolution)
    bound = numerics.rounding_bound(torch.float32, forward, layers)
    assert bound < 1e-3  # far below a layout bug's error (test_a_layout_bug_exceeds_the_bounds)
    with torch.no_grad():
        want = nchw.eval()(x)
        got, seen = numerics.recording(nhwc.eval(), x_nhwc)
    # The twin really ran in NHWC (a 1x1 map is contiguous in both formats: pick an 8x8 one).
    fmt = torch.channels_last
    assert seen["stages.conv4.0.c.1"].is_contiguous(memory_format=fmt)
    assert not seen["stages.conv4.0.c.1"].is_contiguous()
    numerics.assert_close("evaluation logits", got, want, bound)


def test_memory_format_changes_only_rounding_in_training() -> None:
    """In train mode too: every batch-norm output (normalised by batch statistics), the logits,
    the loss, the running statistics left behind and the gradients of one backward pass, which
    NHWC takes on NCHW's side of each ReLU's kink (numerics.SameKinks)."""
    nchw, nhwc, x, x_nhwc = _nchw_and_nhwc()
    y = torch.arange(BATCH) % NUMERIC.classes
    out, kinks = {}, numerics.SameKinks()
    for model, batch in ((nchw, x), (nhwc, x_nhwc)):
        with kinks:  # NCHW records its ReLU masks, NHWC replays them
            logits, seen = numerics.recording(model.train(), batch)
            loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        stats = {n: b for n, b in model.named_buffers() if b.is_floating_point()}
        out[model is nhwc] = (logits, loss, seen, stats, grads)
    forward, backward, layers = numerics.reductions(nchw, BATCH, NUMERIC.resolution, training=True)
    fwd = numerics.rounding_bound(torch.float32, forward, layers)
    bwd = numerics.rounding_bound(torch.float32, backward, 2 * layers)
    (l0, s0, bn0, r0, g0), (l1, s1, bn1, r1, g1) = out[False], out[True]
    assert len(kinks.masks) == 10  # the stem's ReLU and 3 a block
    assert len(bn0) == 13 and len(r0) == 26 and len(g0) == 41  # 13 batch norms, 14 layers
    for name in bn0:
        numerics.assert_close(f"train-mode output of {name}", bn1[name], bn0[name], fwd)
    numerics.assert_close("logits", l1, l0, fwd)
    numerics.assert_close("loss", s1, s0, fwd)
    for name in r0:
        numerics.assert_close(f"batch statistics {name}", r1[name], r0[name], fwd)
    for name in g0:
        numerics.assert_close(f"gradient of {name}", g1[name], g0[name], bwd)


def test_a_layout_bug_exceeds_the_bounds() -> None:
    """The comparisons above could fail: NHWC memory read as NCHW, or one kernel mirrored,
    moves the logits by far more than the loosest bound they allow."""
    nchw, nhwc, x, x_nhwc = _nchw_and_nhwc()
    _, backward, layers = numerics.reductions(nchw, BATCH, NUMERIC.resolution, training=True)
    loosest = numerics.rounding_bound(torch.float32, backward, 2 * layers)
    with torch.no_grad():
        want = nchw.eval()(x)
        misread = x_nhwc.permute(0, 2, 3, 1).reshape(x.shape)  # the bytes taken as NCHW
        assert numerics.relative_error(nhwc.eval()(misread), want) > loosest
        kernel = nhwc.stages.conv3[0].b[0].weight
        kernel.copy_(kernel.flip(-1))
        assert numerics.relative_error(nhwc(x_nhwc), want) > loosest


def test_bf16_autocast_changes_only_rounding_on_the_cpu() -> None:
    """bf16 autocast on the CPU (native with AVX-512 BF16 or AMX, emulated on AVX2) gives the
    fp32 logits of the same weights to bf16 rounding of the operands, and keeps what training
    accumulates in float32: the loss, batch-norm's statistics, the parameters and gradients."""
    model, x = numerics.calibrated(NUMERIC, BATCH)
    forward, _, layers = numerics.reductions(model, BATCH, NUMERIC.resolution)
    with torch.no_grad():
        want = model.eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert got.dtype == torch.bfloat16  # autocast ran the layers in bf16
    bound = numerics.precision_bound(torch.float32, forward, layers, torch.bfloat16)
    numerics.assert_close("bf16 autocast logits", got, want, bound)

    y = torch.arange(BATCH) % NUMERIC.classes
    fp32 = numerics.twin(model, torch.contiguous_format)
    with torch.no_grad():
        fp32.train()(x)  # momentum 1: the running statistics become this batch's
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model.train()(x), y)
    assert loss.dtype == torch.float32  # autocast's fp32 list: the loss is not rounded to bf16
    statistics, _, _ = numerics.reductions(model, BATCH, NUMERIC.resolution, training=True)
    bound = numerics.precision_bound(torch.float32, statistics, layers, torch.bfloat16)
    for name, stat in fp32.named_buffers():
        if stat.is_floating_point():
            numerics.assert_close(
                f"bf16 batch statistics {name}", model.get_buffer(name), stat, bound
            )
    loss.backward()
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    tensors |= {f"gradient of {n}": p.grad for n, p in model.named_parameters()}
    kept = {n: t.dtype for n, t in tensors.items() if t.is_floating_point()}
    assert len(kept) == 26 + 41 + 41 and set(kept.values()) == {torch.float32}, kept


def test_checkpoint_resumes_across_memory_formats(tmp_path: Path) -> None:
    """A run checkpointed in NCHW resumes in NHWC with its first epochs kept as they were."""
    data = toy_data(256, classes=4, res=16, pattern="stripes")
    first = train(
        TINY, data, dataclasses.replace(FAST, channels_last=False), checkpoint_dir=tmp_path
    )
    more = train(
        TINY,
        data,
        dataclasses.replace(FAST, epochs=3, channels_last=True),
        checkpoint_dir=tmp_path,
    )
    assert len(more.history) == 3 and more.history[:2] == first.history


def test_train_flops_count_six_per_multiply_add() -> None:
    spec = resnext.preset("resnext29_8x64d")
    # Sec. 5.3 / Table 7: ResNeXt-29 8x64d is about 5.4 GFLOPs (multiply-adds) per image.
    assert perf.train_flops(spec) == 6 * resnext.complexity(spec).flops
    assert 5.3e9 < resnext.complexity(spec).flops < 5.5e9


def test_matmul_peak_is_a_plausible_rate() -> None:
    rates = perf.matmul_peak(torch.device("cpu"), n=128, repeats=3, seconds=0.01)
    assert len(rates) == 3 and all(1e6 < r < 1e14 for r in rates)  # 1 MFLOP/s .. 100 TFLOP/s
    assert perf.spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


# --- placement of workers ----------------------------------------------------------------


def test_placement_puts_trials_per_gpu_workers_on_each_gpu() -> None:
    assert _placement(4, 2, gpus=2) == [(None, "0"), (None, "0"), (None, "1"), (None, "1")]
    assert _placement(2, 1, gpus=2) == [(None, "0"), (None, "1")]  # --workers: one GPU each
    assert _placement(2, 2, gpus=1) == [(None, "0"), (None, "0")]
    assert _placement(1, 3, gpus=4) == [(None, "0")]


def test_placement_chooses_among_the_devices_the_user_made_visible() -> None:
    # CUDA_VISIBLE_DEVICES=2,5: torch counts 2 devices, and the workers get "2" and "5", not the
    # devices 0 and 1 the user left out.
    assert _placement(2, 1, gpus=2, visible="2,5") == [(None, "2"), (None, "5")]
    assert _placement(4, 2, gpus=2, visible="5, 2") == [
        (None, "5"), (None, "5"), (None, "2"), (None, "2"),
    ]  # fmt: skip
    uuid = "GPU-8f2e1c3a-0000-1111-2222-333344445555"
    assert _placement(1, 1, gpus=1, visible=uuid) == [(None, uuid)]
    # CUDA stops reading the list at an entry that names no device (torch counted 1 of 3).
    assert visible_devices(1, "3,99,4") == ["3"]
    assert visible_devices(3, None) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="--workers 3 needs 3 GPUs at --trials-per-gpu 1, and 2"):
        _placement(3, 1, gpus=2, visible="2,5")


def test_placement_refuses_more_workers_than_gpus_hold() -> None:
    with pytest.raises(ValueError, match="--workers 3 needs 3 GPUs at --trials-per-gpu 1"):
        _placement(3, 1, gpus=2)
    with pytest.raises(ValueError, match="needs 2 GPUs at --trials-per-gpu 2, and 1 is visible"):
        _placement(3, 2, gpus=1)
    with pytest.raises(ValueError, match="--trials-per-gpu must be a positive integer"):
        _placement(1, 0, gpus=1)


def test_placement_without_gpus_splits_the_cores() -> None:
    cores = sorted(os.sched_getaffinity(0))
    placed = _placement(2, 2, gpus=0)
    assert [gpu for _, gpu in placed] == [None, None]
    per = max(1, len(cores) // 2)
    assert all(len(c) == per and set(c) <= set(cores) for c, _ in placed)
    if len(cores) >= 2:
        assert not set(placed[0][0]) & set(placed[1][0])  # disjoint shares


@pytest.mark.parametrize("command", [("search",), ("study", "run", "cardinality-vs-width")])
def test_a_bad_trials_per_gpu_is_refused_in_one_line(command: tuple[str, ...]) -> None:
    res = run_cli(*command, "--trials-per-gpu", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trials-per-gpu" in lines[0] and "positive integer" in lines[0]
