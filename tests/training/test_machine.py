"""The measured plan of a machine (nas.training.machine): what it measures, how it is cached
and keyed, how given options take its place, and that the commands follow it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.training import machine as mach
from nas.training.config import TrainConfig
from nas.training.loop import Run
from nas.training.machine import MachinePlan, Option, RunChoice, choose
from tests.helpers import TINY, one_line, run_cli, toy_data


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh cache folder, plans measured (the suite's default is not to)."""
    monkeypatch.setenv("RESNEXT_NAS_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv(mach.PLAN_ENV, "measure")
    return tmp_path / "cache"


def fake_plan(m: dict[str, Any], model: str = "m", cores: int = 2) -> MachinePlan:
    """A plan of two cores where 2 x 1 NHWC bf16 is fastest and 1 x 2 NHWC fp32 the default."""
    rates = {(1, 2, False, False): 180, (1, 2, True, False): 370, (1, 2, False, True): 430,
             (1, 2, True, True): 550, (2, 1, False, False): 480, (2, 1, True, False): 850,
             (2, 1, False, True): 930, (2, 1, True, True): 1230}  # fmt: skip
    options = tuple(Option(w, t, cl, bf, r) for (w, t, cl, bf), r in rates.items())
    best = max(options, key=lambda o: o.rate)
    base = next(o for o in options if (o.workers, o.channels_last, o.bf16) == (1, True, False))
    return MachinePlan({**m, "cores": cores}, model, best, base, options, seconds=19.0)


def test_cpu_info_reads_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n"
    )
    assert mach.cpu_info(info) == ("AMD EPYC 9654", ("fpu", "avx2", "avx512f", "avx512_bf16"))
    name, flags = mach.cpu_info(tmp_path / "missing")  # macOS: no /proc/cpuinfo
    assert flags == () and isinstance(name, str)


def test_candidates_try_bf16_only_where_the_cpu_computes_it() -> None:
    avx2 = {"device": "cpu", "flags": ["avx2"], "cores": 2}
    bf16 = {**avx2, "flags": ["avx2", "avx512_bf16", "avx512f"]}
    assert not any(o.bf16 for o in mach.candidates(avx2))
    assert {(o.workers, o.threads) for o in mach.candidates(avx2)} == {(1, 2), (2, 1)}
    assert len(mach.candidates(avx2)) == 4 and len(mach.candidates(bf16)) == 8
    assert mach.worker_counts(16) == [1, 2, 8, 16] and mach.worker_counts(1) == [1]
    cuda = mach.candidates({"device": "cuda", "flags": [], "cores": 16})
    assert {o.workers for o in cuda} == {1} and any(o.bf16 for o in cuda)


def test_measure_times_every_candidate_side_by_side() -> None:
    plan = mach.measure(TINY, 16, "cifar", seconds=0.05)
    assert [dataclasses.replace(o, rate=0.0) for o in plan.options] == mach.candidates(plan.machine)
    assert all(o.rate > 0 for o in plan.options)
    assert plan.chosen.rate == max(o.rate for o in plan.options)
    b = plan.baseline
    assert (b.workers, b.threads, b.channels_last, b.bf16) == (1, mach.cores(), True, False)
    assert plan.speedup >= 1.0
    assert plan.machine["torch"] == torch.__version__


def test_the_plan_is_cached_per_machine_and_model(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    calls: list[str] = []

    def measure(spec: Any, batch: int, kind: str, device: str = "cpu") -> MachinePlan:
        calls.append(mach.model_key(spec, batch, kind))
        return fake_plan(mach.machine(device), calls[-1])

    monkeypatch.setattr(mach, "measure", measure)
    first = mach.machine_plan(TINY, 16, "cifar")
    assert first.cached is None and len(calls) == 1
    again = mach.machine_plan(TINY, 16, "cifar")
    assert again == first and again.cached and Path(again.cached).parent == cache / "plans"
    assert "cached in" in again.describe()
    mach.machine_plan(TINY, 32, "cifar")  # another trial model is measured on its own
    assert len(calls) == 2
    mach.machine_plan(TINY, 16, "cifar", refresh=True)
    assert len(calls) == 3
    Path(again.cached).write_text("{not json")  # a broken cache is measured again
    assert mach.machine_plan(TINY, 16, "cifar").cached is None and len(calls) == 4
    # Another torch (or CPU, or core count) is another machine: a plan of it is not read.
    real = mach.machine
    monkeypatch.setattr(mach, "machine", lambda d="cpu": {**real(d), "torch": "0.0"})
    assert mach.machine_plan(TINY, 16, "cifar").cached is None and len(calls) == 5


def test_the_plan_line_names_the_machine_the_choice_and_the_gain() -> None:
    m = {"device": "cpu", "name": "AMD EPYC", "flags": ["avx2", "avx512_bf16"], "torch": "2.13"}
    line = fake_plan(m, "8x1d").describe()
    assert line.startswith("plan for AMD EPYC (avx512_bf16), torch 2.13: 2 workers x 1 thread,")
    assert "NHWC, bf16: 3.32x the fp32 1x2 default on 8x1d (measured in 19 s)" in line
    busy = dataclasses.replace(fake_plan(m), load=3.0).describe()
    assert "under a load of 3.0 on 2 cores" in busy and "--refresh" in busy


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """machine_plan answers with :func:`fake_plan`; the list counts its calls."""
    calls: list[int] = []

    def fake(spec: Any, batch: int, kind: str, device: str = "cpu", **kw: Any) -> MachinePlan:
        calls.append(1)
        return fake_plan({**mach.machine("cpu"), "device": device})

    monkeypatch.setattr(mach, "machine_plan", fake)
    return calls


def _run(c: RunChoice) -> tuple[Any, ...]:
    return c.workers, c.threads, c.channels_last, c.precision


def test_given_options_take_the_plans_place(planned: list[int]) -> None:
    specs = [TINY]
    assert _run(choose(specs, 32, "cifar", "cpu")) == (2, 1, True, "bf16")
    # The fastest measured option that agrees with what is given.
    assert _run(choose(specs, 32, "cifar", "cpu", workers=1)) == (1, 2, True, "bf16")
    assert _run(choose(specs, 32, "cifar", "cpu", precision="fp32")) == (2, 1, True, "fp32")
    assert _run(choose(specs, 32, "cifar", "cpu", channels_last=False)) == (2, 1, False, "bf16")
    assert _run(choose(specs, 32, "cifar", "cpu", single=True)) == (1, 2, True, "bf16")
    # A value no option measured joins the plan's other choices.
    assert _run(choose(specs, 32, "cifar", "cpu", threads=3)) == (2, 3, True, "bf16")
    assert len(planned) == 6
    # Everything given: nothing to measure.
    full = choose(specs, 32, "cifar", "cpu", workers=1, threads=2, precision="fp32",
                  channels_last=True)  # fmt: skip
    assert _run(full) == (1, 2, True, "fp32") and full.plan is None and len(planned) == 6
    assert full.lines() == ["running 1 worker x 2 threads, NHWC, fp32 (--workers 1; --threads 2; "
                            "--precision fp32; --channels-last True)"]  # fmt: skip


def test_the_run_says_what_differs_from_the_plan(planned: list[int]) -> None:
    (plan_line,) = choose([TINY], 32, "cifar", "cpu").lines()
    assert plan_line.startswith("plan for ")
    lines = choose([TINY], 32, "cifar", "cpu", workers=1).lines()
    assert lines[1] == "running 1 worker x 2 threads, NHWC, bf16 (--workers 1)"
    lines = choose([TINY], 32, "cifar", "cpu", single=True).lines()
    assert lines[1].endswith("(one process: this command trains in its own)")


def test_plans_can_be_turned_off_and_refuse_a_bad_mode(
    monkeypatch: pytest.MonkeyPatch, planned: list[int]
) -> None:
    monkeypatch.setenv(mach.PLAN_ENV, "default")
    off = choose([TINY], 32, "cifar", "cpu")
    assert _run(off) == (1, None, None, "auto") and off.plan is None and not planned
    monkeypatch.setenv(mach.PLAN_ENV, "fast")
    with pytest.raises(ValueError, match="RESNEXT_NAS_PLAN must be one of measure, default"):
        choose([TINY], 32, "cifar", "cpu")


def test_a_cuda_run_has_a_worker_per_gpu_share(planned: list[int]) -> None:
    c = choose([TINY], 32, "cifar", "cuda", gpu_workers=4)
    assert c.workers == 4 and c.threads is None


def test_the_median_spec_by_flops_is_measured() -> None:
    import resnext

    specs = [dataclasses.replace(TINY, width=w) for w in (32, 16, 64)]
    assert mach.representative(specs).width == 32
    assert (
        resnext.complexity(mach.representative(specs[:2])).flops
        < resnext.complexity(specs[0]).flops
    )


def test_a_bf16_trial_keeps_batch_norm_weights_and_loss_in_fp32() -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, device="cpu", precision="bf16", threads=1)
    run = Run(TINY, toy_data(64, res=16, classes=4), cfg.resolved("cifar"))
    assert run.plan.bf16
    with run.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    loss, _, _ = run.train_epoch()
    assert torch.get_num_threads() == 1
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    stats = [b for n, b in run.model.named_buffers() if "running" in n]
    assert stats and all(b.dtype == torch.float32 for b in stats)
    assert isinstance(loss, float)
    fp32_cfg = dataclasses.replace(cfg, precision="fp32").resolved("cifar")
    fp32 = Run(TINY, toy_data(64, res=16, classes=4), fp32_cfg)
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_search_runs_as_the_cached_plan_says(tmp_path: Path, cache: Path) -> None:
    """A real search reads the cached plan (2 workers x 1 thread, bf16) and runs it; the
    measurement itself is the test above's."""
    from nas.commands.options import ALL_CARDINALITIES
    from nas.commands.search import search_space

    # The space `search --resolution 16` searches, built by the command's own function.
    args = (None, None, 0.1, "cifar", None, None, ALL_CARDINALITIES, None, 10, 16, False, False)
    spec = mach.representative(search_space(*args).trainable())
    m = mach.machine("cpu")
    model = mach.model_key(spec, 32, "cifar")
    path = mach.cache_file(m, model)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(fake_plan(m, model, cores=m["cores"]).to_dict()))
    env = {**os.environ, "RESNEXT_NAS_DATA": str(cache), mach.PLAN_ENV: "measure"}
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = run_cli(
        "search", "--trials", "2", "--train-images", "256", "--resolution", "16", "--epochs",
        "1", "--confirm", "0", "--storage", url, "--runs-dir",
        str(tmp_path / "runs"), "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout)["run"]
    assert (run["workers"], run["threads"], run["precision"]) == (2, 1, "bf16")
    assert run["plan"]["chosen"]["workers"] == 2 and len(run["plan"]["options"]) == 8
    assert "measuring" not in proc.stderr
    import optuna

    trials = optuna.load_study(study_name="resnext-search", storage=url).trials
    # A proposal outside the band is rejected at no cost (pruned, not trained): not a trial.
    trials = [t for t in trials if "rejected" not in t.user_attrs]
    assert len(trials) == 2 and {t.user_attrs["precision"] for t in trials} == {"bf16"}


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_a_bad_workers_value_is_refused_in_one_line(value: str) -> None:
    one_line(run_cli("search", "--workers", value), "--workers takes auto or a positive integer")


def test_a_bad_precision_is_refused() -> None:
    proc = run_cli("train", "--precision", "fp16")
    assert proc.returncode == 2 and "fp16" in proc.stderr and "Traceback" not in proc.stderr
