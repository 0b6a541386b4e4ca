"""Nothing hangs or eats the machine at the command line: sizes are checked before anything is
allocated, and a size out of range is one line (exit 2) naming its option.

The library's side of the same limits: tests/resnext/test_sizes.py (spec fields, stage counting,
int64 overflow, training memory), tests/data/test_synthetic.py (the synthetic set painted only
where used), tests/training/test_train.py and tests/search/test_bounds.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nas.export import MAX_SPEC_BYTES, load_spec
from resnext.budget import MAX_GRID_CELLS
from tests.helpers import HUGE, one_line, run_cli

# --- budget grids ---------------------------------------------------------------------------


def test_budget_with_a_huge_depth_is_one_line_not_a_hang() -> None:
    one_line(run_cli("budget", "--flops", "4e9", "--depths", f"{HUGE},1,1,1"), "at most 1,000")


def test_budget_grid_is_capped_before_it_is_counted() -> None:
    cards = ",".join(map(str, range(1, 4097)))
    ds = ",".join(map(str, range(1, 5001)))
    line = one_line(
        run_cli("budget", "--flops", "4e9", "--cardinalities", cards, "--bottleneck-widths", ds),
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


def test_budget_overflow_names_cardinalities_at_the_command_line() -> None:
    one_line(
        run_cli(
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
    one_line(run_cli("budget", "--flops", "4e9", option, value), message)


# --- memory before data -------------------------------------------------------------------


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


# --- spec files ---------------------------------------------------------------------------


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
    one_line(run_cli("train", "--spec", str(path)), message)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_spec_from_dev_zero_is_one_line_not_a_hang() -> None:
    one_line(run_cli("train", "--spec", "/dev/zero", timeout=60), "larger than")


# --- numbers that blow up, and options named ----------------------------------------------


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
    one_line(run_cli(*args), message)


# --- workers ------------------------------------------------------------------------------


def test_search_warns_about_workers_on_stderr() -> None:
    proc = run_cli("search", "--workers", "999", "--seed", "-1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0].startswith("warning: --workers 999 capped to ")
    assert "--seed" in lines[1]


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
    proc = run_cli(*args, "--flops", "3.3e6", "--tolerance", "0.5", "--storage", f"sqlite:///{app}")
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
    one_line(run_cli(*args), "another application", "--create")
    proc = run_cli(*args, "--create")
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
    one_line(run_cli("search", option, "99999999999", "--trials", "1"), option, "at most")
