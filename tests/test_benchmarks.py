"""The benchmark scripts run end to end at tiny sizes, so that a change to the library cannot
leave one of them broken until somebody next wants a figure (bench_search once was)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, timeout: float = 300, **extra: str) -> str:
    """Run ``benchmarks/<script>`` as the README says to, on one thread; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_search_prints_overhead_samplers_and_pruning() -> None:
    out = run(
        "bench_search.py", "--trials", "2", "--seeds", "1", "--epochs", "1",
        "--train-images", "200",
    )  # fmt: skip
    m = re.search(r"1\. overhead: (\d+) trials in .* inside train\(\) ([\d.]+)%", out)
    assert m, out
    assert int(m.group(1)) == 6  # 3 kinds x 1 seed x 2 trials
    assert 0 < float(m.group(2)) <= 100
    assert re.search(r"TPE / random error ratio: [\d.]+", out), out
    assert "Hyperband trains" in out


def test_bench_attrs_prints_public_and_batched_cost() -> None:
    out = run("bench_attrs.py", "--repeats", "3", "--postgres", "")
    m = re.search(r"SQLite \(WAL\): 15 attributes ([\d.]+) ms one call each, ([\d.]+) ms", out)
    assert m, out
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0


def test_bench_train_rejects_less_than_a_batch() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_train.py", "--images", "64"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "at least one batch" in proc.stderr


@pytest.mark.slow
def test_bench_train_compares_three_loops() -> None:
    out = run(
        "bench_train.py", "--images", "256", "--epochs", "2", "--repeats", "1", "--batches", "2"
    )
    m = re.search(
        r"wall median: \(1\) nas.training.loop ([\d.]+), .* \(3\) bare step ([\d.]+)", out
    )
    assert m, out
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0


def test_bench_p_best_verdicts_are_calibrated() -> None:
    args = ("--draws", "200", "--configs", "2", "--seeds", "3", "--deltas", "0,3")
    out = run("bench_p_best.py", *args, "--reliability-draws", "400", "--replay-draws", "100")
    rows = re.findall(r"^\s+2\s+3\s+([\d.]+)\s+(\d+)%\s+(\d+)%\s+(\d+)%\s+(\S+)", out, re.M)
    assert [r[0] for r in rows] == ["0.0", "3.0"], out
    # Equal means: a `best` verdict is a false one, at most 10% by design (200 draws: allow 14%).
    assert int(rows[0][1]) <= 14 and rows[0][4] == "-"
    # 3 SDs ahead, racing up to 5 seeds: nearly always `best`, and rightly.
    assert int(rows[1][1]) >= 75 and rows[1][4] == "100%"
    # Reliability: answers given with P(best) >= 0.9 name the truly best one mostly.
    top = re.search(r"\[0\.9, 1\.0\]\s+(\d+)\s+(\d+)%", out)
    assert top and int(top.group(1)) > 20 and int(top.group(2)) >= 75, out
    # The flat real band: nearly every answer is `equivalent`.
    shares = re.search(r"best (\d+)%, equivalent (\d+)%, no-signal (\d+)%", out)
    assert shares and int(shares.group(2)) >= 80, out


def test_bench_hostile_prints_each_command_with_its_first_line() -> None:
    out = run("bench_hostile.py", "--only", "budget --flops")
    rows = re.findall(r"^(budget --flops \S+) +([\d.]+) s +[\d.]+ +(\d) +error: ", out, re.M)
    assert len(rows) == 6, out
    assert all(code == "2" for *_, code in rows)
    assert re.search(r"^6 invocations, \d+ late", out, re.M), out


def _jpeg_tree(root: Path, classes: int = 3, train: int = 60, test: int = 8) -> Path:
    """An image folder of ``classes`` classes of 32x32 JPEGs in train/ and test/, each class a
    colour over noise, as the real CIFAR-10 tarball is laid out."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                x = rng.integers(0, 96, (32, 32, 3), dtype=np.uint8)
                x[..., c % 3] += 150
                Image.fromarray(x).save(folder / f"{i}.jpg", quality=90)
    return root


def test_bench_bf16_accuracy_pairs_the_seeds(tmp_path: Path) -> None:
    tree = _jpeg_tree(tmp_path / "tree")
    out = run(
        "bench_bf16_accuracy.py", "--data-dir", str(tree), "--seeds", "2", "--configs",
        "8x1d 1-1-1", "--jobs", "1", "--train-images", "64", "--epochs", "1", "--out",
        str(tmp_path / "bf16.json"),
    )  # fmt: skip
    assert len(re.findall(r"^8x1d 1-1-1 +seed \d (fp32|bf16): val", out, re.M)) == 4, out
    diff = re.search(r"^test_accuracy: bf16 - fp32 ([+-][\d.]+) points, 95% CI \[", out, re.M)
    assert diff and "over 2 pairs" in out, out
    assert re.search(r"training speed, one thread: bf16 [\d.]+x fp32", out), out


def test_bench_trials_per_hour_compares_the_old_default_and_the_plan(tmp_path: Path) -> None:
    """The plan is measured here (a fresh cache): the one test of the measurement through the
    command line."""
    tree = _jpeg_tree(tmp_path / "tree", train=80)
    out = run(
        "bench_trials_per_hour.py", "--data-dir", str(tree), "--trials", "2", "--",
        "--train-images", "128", "--epochs", "1", "--resolution", "16", "--no-latency",
        RESNEXT_NAS_DATA=str(tmp_path / "cache"),
    )  # fmt: skip
    assert len(list((tmp_path / "cache" / "plans").glob("cpu-*.json"))) == 1
    rows = re.findall(r"^(old-default|plan) .* 2 trials \(\d+ epochs\) in \d+ s: ", out, re.M)
    assert rows == ["old-default", "plan"], out
    assert re.search(r"training [\d.]+%, validation [\d.]+%, other -?[\d.]+%", out), out
    assert re.search(r"waiting for the last trials [\d.]+%, start-up -?[\d.]+%\)", out), out
    assert re.search(r"^plan / old default: [\d.]+x trials per hour", out, re.M), out


@pytest.mark.slow
def test_bench_worker_memory_prints_four_configurations() -> None:
    out = run(
        "bench_worker_memory.py", "--dataset", "synthetic", "--images", "600",
        "--batch-size", "64",
    )  # fmt: skip
    rows = re.findall(
        r"^\| ([12]) \| (on|off) \| [\d,]+ \| ([\d,]+) \| [\d,]+ \| \d+ \|$", out, re.M
    )
    assert [(w, s) for w, s, _ in rows] == [("1", "on"), ("1", "off"), ("2", "on"), ("2", "off")]
    assert all(int(pss.replace(",", "")) > 0 for _, _, pss in rows)
    assert re.search(r"2 workers, sharing on: .* published in \S+resnext-nas-\d+-", out), out
    assert out.count("left behind: False") == 4, out
