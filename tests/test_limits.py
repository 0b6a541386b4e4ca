"""Nothing hangs or eats the machine: sizes are checked before anything is allocated.

Each case was a hang, a traceback or gigabytes of memory before; now it is one line (exit 2 at the
command line) or the work is sized to what is used.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import resnext
from nas.data import load_dataset, synthetic
from nas.data.splits import split_indices
from nas.export import MAX_SPEC_BYTES, load_spec
from resnext.budget import INT64_MAX, MAX_GRID_CELLS, Budget, generate
from resnext.complexity import complexity, training_memory
from resnext.spec import LIMITS, Spec
from tests.conftest import ROOT

HUGE = "99999999999999999999"  # beyond int64
cxmod = importlib.import_module("resnext.complexity")  # the package exports the function


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it; a hang fails the test by its timeout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def one_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert exit 2 with one line on stderr holding every fragment; return the line."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- spec limits (2) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("width", "width"),
        ("cardinality", "cardinality"),
        ("bottleneck_width", "bottleneck width"),
        ("classes", "classes"),
        ("resolution", "resolution"),
        ("stem_width", "stem width"),
    ],
)
def test_each_field_has_a_stated_limit(field: str, name: str) -> None:
    limit = LIMITS[name]
    Spec(**{field: limit})  # the limit itself is allowed
    with pytest.raises(ValueError, match=f"{name} must be at most {limit:,}, got {limit + 1:,}"):
        Spec(**{field: limit + 1})


def test_depth_limit_and_a_huge_depth_is_refused_not_walked() -> None:
    Spec("cifar", (LIMITS["depth"], 1, 1))
    with pytest.raises(ValueError, match="a depth \\(blocks a stage\\) must be at most 1,000"):
        Spec("imagenet", (int(HUGE), 1, 1, 1))


# --- arithmetic stage counting (3) --------------------------------------------------------


def test_a_stage_is_counted_from_two_blocks_whatever_its_depth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks 2..n of a stage are identical, so the counter evaluates two blocks a stage."""
    calls = []
    real = cxmod._block_cx

    def counting(*args: object) -> int:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(cxmod, "_block_cx", counting)
    spec = Spec("imagenet", (1000, 1000, 1000, 1000), 64, 4, 4, resolution=64)
    total = complexity(spec)
    assert len(calls) == 8  # 4000 on the walk of every block
    # Linear in each stage's depth: n blocks = first block + (n - 1) copies of the second.
    one = complexity(replace(spec, depths=(1, 1000, 1000, 1000)))
    two = complexity(replace(spec, depths=(2, 1000, 1000, 1000)))
    assert total.params == one.params + 999 * (two.params - one.params)
    assert total.flops == one.flops + 999 * (two.flops - one.flops)


def test_deep_stage_counts_equal_the_built_model() -> None:
    """A stage of many blocks, counted arithmetically, against the real model's parameters."""
    spec = Spec("cifar", (7, 1, 5), 16, 2, 2, classes=10, resolution=16)
    model = resnext.build(spec, device="meta")
    assert complexity(spec).params == sum(p.numel() for p in model.parameters())


# --- budget grids (2, 4) ------------------------------------------------------------------


def test_budget_with_a_huge_depth_is_one_line_not_a_hang() -> None:
    one_line(run("budget", "--flops", "4e9", "--depths", f"{HUGE},1,1,1"), "at most 1,000")


def test_budget_grid_is_capped_before_it_is_counted() -> None:
    cards = ",".join(map(str, range(1, 4097)))
    ds = ",".join(map(str, range(1, 5001)))
    line = one_line(
        run("budget", "--flops", "4e9", "--cardinalities", cards, "--bottleneck-widths", ds),
        "20,480,000 cells",
        f"{MAX_GRID_CELLS:,}",
    )
    assert "--cardinalities" in line


def test_a_band_of_134249_configurations_is_shown_in_bounded_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The band is kept as columns and only the rows shown become objects: the table of a
    134,249-row band (826 MB resident and 2 min 10 s before) stays under 100 MB traced."""
    import tracemalloc

    import cli
    from tests.hostile import HUGE_GRID

    tracemalloc.start()
    try:
        cli.main([*HUGE_GRID, "--limit", "100"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    assert "showing 100 of 134,249 configurations" in out
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MB"


BIG = {"widths": (65536,), "depths": [(1000,) * 4], "resolution": 4096}


@pytest.mark.parametrize(
    ("kwargs", "culprit", "fits"),
    [
        # fits at C = 1 and d = 1, overflows at C = 65536 and d = 1
        ({**BIG, "cardinalities": (1, 65536), "bottleneck_widths": (1,)},
         "--cardinalities (up to 65,536)", (1, 1)),
        # fits at C = 65536 with d = 1, overflows with d = 1,000,000
        ({"cardinalities": (65536,), "bottleneck_widths": (1, 1_000_000), "resolution": 4096},
         "--bottleneck-widths (up to 1,000,000)", (65536, 1)),
    ],
)  # fmt: skip
def test_int64_overflow_names_the_option_that_causes_it(
    kwargs: dict, culprit: str, fits: tuple[int, int]
) -> None:
    with pytest.raises(ValueError, match="exceed 9.22e\\+18") as e:
        generate(Budget(flops=4e9), "imagenet", **kwargs)
    assert culprit in str(e.value)
    # The blame is right: without the culprit's largest value the network fits in int64 ...
    depths = kwargs.get("depths", [()])[0]
    width = kwargs.get("widths", (256,))[0]
    spec = Spec("imagenet", depths, width, *fits, resolution=kwargs["resolution"])
    assert max(complexity(spec).to_dict().values()) <= INT64_MAX
    # ... and even every network within the spec's limits does, with C = d = 1.
    widest = Spec("imagenet", (1000,) * 4, 65536, 1, 1, 1 << 20, 4096, 65536)
    assert max(complexity(widest).to_dict().values()) <= INT64_MAX


def test_budget_overflow_names_cardinalities_at_the_command_line() -> None:
    one_line(
        run(
            "budget", "--flops", "4e9", "--widths", "65536", "--depths", "1000,1000,1000,1000",
            "--resolution", "4096", "--cardinalities", "1,65536", "--bottleneck-widths", "1",
        ),
        "lower --cardinalities",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--cardinalities", HUGE, "cardinalities must be at most 65,536"),
        ("--bottleneck-widths", HUGE, "bottleneck widths must be at most 1,048,576"),
        ("--widths", "4000000000000", "width must be at most 65,536"),
        ("--resolution", "4000000000", "resolution must be at most 4,096"),
        ("--classes", HUGE, "classes must be at most 1,048,576"),
    ],
)
def test_budget_huge_options_are_one_line(option: str, value: str, message: str) -> None:
    one_line(run("budget", "--flops", "4e9", option, value), message)


# --- memory before data (1) ---------------------------------------------------------------


def test_training_memory_is_weights_gradients_momentum_and_layer_outputs() -> None:
    """Against the built model's parameters and fvcore's activation count (independent)."""
    import torch
    from fvcore.nn import ActivationCountAnalysis

    spec = Spec("cifar", (1, 2, 1), 32, 4, 2, classes=10, resolution=16)
    model = resnext.build(spec).eval()
    a = ActivationCountAnalysis(model, torch.zeros(1, 3, 16, 16))
    a.unsupported_ops_warnings(False)
    ops = a.by_operator()
    acts = ops["conv"] + ops["linear"]
    params = sum(p.numel() for p in model.parameters())
    assert training_memory(spec, 32) == 12 * params + 4 * 32 * (3 * 16 * 16 + acts)
    assert training_memory(spec, 32, activation_bytes=2) == 12 * params + 2 * 32 * (768 + acts)


def test_training_memory_is_a_lower_bound_of_a_real_step() -> None:
    """One SGD step's peak on the CPU allocator stays above the estimate."""
    import torch

    from nas.training.device import available_memory

    spec = Spec("cifar", (1, 1, 1), 64, 8, 4, classes=10, resolution=32)
    torch.manual_seed(0)
    model = resnext.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    saved: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # Bytes autograd keeps for the backward pass, each storage once; weights are not
        # activations (they are counted below).
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    state = sum(b.numel() * b.element_size() for s in opt.state.values() for b in s.values())
    weights_and_grads = 2 * sum(p.numel() * 4 for p in model.parameters())
    real = weights_and_grads + state + sum(saved.values())
    assert training_memory(spec, 16) <= real
    assert available_memory(torch.device("cpu")) > 0


def test_a_spec_that_cannot_fit_is_refused_before_any_data_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import cli
    import nas.data.loader

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data loaded before the size check")

    monkeypatch.setattr(nas.data.loader, "load_dataset", no_data)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--template", "imagenet", "--width", "65536",
                  "--depths", "1000,1000,1000,1000", "--out", str(out)])  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs at least" in err and "GiB available" in err
    assert not out.exists()


def test_train_refuses_a_spec_too_large_for_memory_before_building_it() -> None:
    from nas.training.config import TrainConfig
    from nas.training.loop import train
    from tests.test_train import toy_data

    data = toy_data(64, classes=4, res=16)
    spec = Spec("cifar", (1000, 1000, 1000), 65536, classes=4, resolution=16)
    with pytest.raises(ValueError, match="needs at least .* GiB"):
        train(spec, data, TrainConfig(epochs=1, batch_size=16, device="cpu"))


# --- spec files (5) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests its JSON too deeply"),
        (" " * (MAX_SPEC_BYTES + 1), f"larger than {MAX_SPEC_BYTES:,} bytes"),
    ],
)
def test_hostile_spec_files_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_spec(path)
    one_line(run("train", "--spec", str(path)), message)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_spec_from_dev_zero_is_one_line_not_a_hang() -> None:
    one_line(run("train", "--spec", "/dev/zero", timeout=60), "larger than")


# --- synthetic set sized to its use (6) ---------------------------------------------------


def test_synthetic_indices_paint_the_same_bytes_as_the_whole_set() -> None:
    x, y = synthetic.generate(2500, seed=3, classes=7, resolution=24)
    idx = np.sort(np.random.default_rng(0).choice(2500, 200, replace=False))
    xs, ys = synthetic.generate(2500, seed=3, classes=7, resolution=24, indices=idx)
    assert np.array_equal(xs, x[idx]) and np.array_equal(ys, y[idx])
    assert np.array_equal(synthetic.make_labels(2500, seed=3, classes=7), y)
    with pytest.raises(ValueError, match="sorted, distinct"):
        synthetic.generate(10, indices=np.array([3, 3]))


def test_synthetic_dataset_paints_only_the_images_it_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    painted = []
    real = synthetic._render

    def counting(labels: np.ndarray, *args: object) -> np.ndarray:
        out = real(labels, *args)
        painted.append(len(out))
        return out

    monkeypatch.setattr(synthetic, "_render", counting)
    ds = load_dataset("synthetic", train_images=300, val_fraction=0.1, seed=5, synthetic_train=4000)
    # 300 train + a validation split capped at half of them (nas.data.VAL_CAP_RULE): not
    # 4,000
    assert sum(painted) == 300 + 150
    # The same selection and bytes as painting the whole set and splitting it.
    monkeypatch.setattr(synthetic, "_render", real)
    x, y = synthetic.generate(4000)
    train, val = split_indices(y, 0.1, 5, 300, "synthetic")
    assert np.array_equal(ds.train_x, x[train]) and np.array_equal(ds.train_y, y[train])
    assert np.array_equal(ds.val_x, x[val]) and np.array_equal(ds.val_y, y[val])


# --- numbers that blow up, and options named (7) ------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lr", "1e308"], "--lr"),
        (["train", "--weight-decay", "1e308"], "--weight-decay"),
        (["train", "--seed", "-1"], "--seed"),
        (["search", "--seed", "-1"], "--seed"),
        (["search", "--device", f"cuda:{HUGE}"], "--device"),
        (["search", "--device", "cuda:128"], "--device"),
        (["search", "--heartbeat", HUGE[:14]], "--heartbeat must be 1 to 86,400"),
    ],
)
def test_numbers_out_of_range_name_their_option(args: list[str], message: str) -> None:
    one_line(run(*args), message)


def test_an_lr_that_overflows_the_weights_ends_the_trial_as_diverged() -> None:
    from nas.training.config import FLOAT32_MAX, TrainConfig
    from nas.training.loop import train
    from tests.test_train import toy_data

    spec = Spec("cifar", (1, 1, 1), 16, 2, 2, classes=4, resolution=16)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=FLOAT32_MAX, warmup_epochs=0, device="cpu")
    assert train(spec, toy_data(64, classes=4, res=16), cfg).status == "diverged"


def test_heartbeat_limit_in_the_library() -> None:
    from nas.search.storage import MAX_HEARTBEAT, check_heartbeat

    check_heartbeat(MAX_HEARTBEAT)
    for bad in (0, MAX_HEARTBEAT + 1, 1.5):
        with pytest.raises(ValueError, match="--heartbeat"):
            check_heartbeat(bad)


# --- workers (8) --------------------------------------------------------------------------


def test_workers_beyond_the_machine_are_capped_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nas.search.workers import _local_capacity, cap_workers

    limit, why = _local_capacity()
    assert cap_workers(limit) == limit and capsys.readouterr().err == ""
    assert cap_workers(limit + 7) == limit
    err = capsys.readouterr().err
    assert err == f"warning: --workers {limit + 7} capped to {limit}: {why}\n"


def test_search_warns_about_workers_on_stderr() -> None:
    proc = run("search", "--workers", "999", "--seed", "-1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0].startswith("warning: --workers 999 capped to ")
    assert "--seed" in lines[1]


def test_the_readme_states_the_limits() -> None:
    """The README states every limit that the spec enforces."""
    readme = (ROOT / "README.md").read_text()
    for name, limit in LIMITS.items():
        assert f"{limit:,}" in readme, (name, limit)
    assert f"{MAX_GRID_CELLS:,}" in readme


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5])
def test_search_settings_name_the_seed_option(seed: object) -> None:
    from nas.search.study import SearchSettings
    from tests.test_search import tiny_space

    SearchSettings(tiny_space(), seed=2**63 - 1)
    with pytest.raises(ValueError, match="--seed must be an integer from 0 to"):
        SearchSettings(tiny_space(), seed=seed)


# --- files the tool must not alter ---------------------------------------------------------


def another_applications_file(path: Path) -> Path:
    """A SQLite file of another application: a table ``customers`` with one row."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('ada')")
    con.commit()
    con.close()
    return path


def test_search_leaves_another_applications_sqlite_file_untouched(tmp_path: Path) -> None:
    import hashlib

    app = another_applications_file(tmp_path / "app.db")
    before = hashlib.sha256(app.read_bytes()).hexdigest()
    args = ["search", "--trials", "1", "--epochs", "1", "--depths", "1,1,1", "--widths", "16"]
    proc = run(*args, "--flops", "3.3e6", "--tolerance", "0.5", "--storage", f"sqlite:///{app}")
    one_line(proc, "another application", "left untouched", "--create")
    assert hashlib.sha256(app.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm


# Commands that create a study, each as small as it goes (a few seconds of training).
TINY_RUNS = {
    "search": ["search", "--trials", "1", "--depths", "1,1,1", "--widths", "16", "--flops", "1e6",
               "--tolerance", "0.2", "--confirm", "0", "--train-images", "64",
               "--resolution", "16"],
    "study run": ["study", "run", "cardinality-vs-width", "--seeds", "1",
                  "--val-fraction", "0.002", "--train-images", "64", "--resolution", "8"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(TINY_RUNS))
def test_create_adds_the_study_tables_to_another_applications_file(
    tmp_path: Path, command: str
) -> None:
    import sqlite3

    import optuna

    app = another_applications_file(tmp_path / "app.db")
    args = [*TINY_RUNS[command], "--epochs", "1", "--no-latency", "--quiet", "--json"]
    args += ["--storage", f"sqlite:///{app}", "--runs-dir", str(tmp_path / "runs")]
    one_line(run(*args), "another application", "--create")
    proc = run(*args, "--create")
    assert proc.returncode == 0, proc.stderr[-2000:]
    con = sqlite3.connect(app)
    assert con.execute("SELECT name FROM customers").fetchall() == [("ada",)]
    con.close()
    (study,) = optuna.get_all_study_summaries(f"sqlite:///{app}")
    assert study.n_trials == (1 if command == "search" else 5)


@pytest.mark.parametrize(
    "option", ["--confirm", "--confirm-seeds", "--confirm-max-seeds", "--confirm-epochs"]
)
def test_confirmation_counts_have_an_upper_bound(option: str) -> None:
    one_line(run("search", option, "99999999999", "--trials", "1"), option, "at most")
