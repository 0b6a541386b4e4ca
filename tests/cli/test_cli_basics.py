"""What a new user meets first: --version, -h, completion, help texts, --out folders, progress."""

from __future__ import annotations

import csv
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nas.fileio import ensure_parent
from nas.search.records import SPEC_COLUMNS
from tests.helpers import ROOT, cli_env, run_cli

# Help on one line per option.
WIDE = cli_env(COLUMNS="300")


def test_version_is_the_package_version() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        want = tomllib.load(f)["project"]["version"]
    res = run_cli("--version", env=WIDE)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"resnext-nas {want}"


@pytest.mark.parametrize("args", [("-h",), ("search", "-h"), ("study", "run", "-h")])
def test_short_help_is_the_help(args: tuple[str, ...]) -> None:
    short, long = run_cli(*args, env=WIDE), run_cli(*args[:-1], "--help", env=WIDE)
    assert short.returncode == 0 and short.stdout == long.stdout and "Usage:" in short.stdout


def test_shell_completion_script() -> None:
    # Typer detects the shell from the parent processes, which under make or CI is sh (not
    # supported); with detection off, --show-completion takes the shell by name.
    res = run_cli(
        "--show-completion",
        "bash",
        env=cli_env(COLUMNS="300", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"),
    )
    assert res.returncode == 0, res.stderr
    assert "_RESNEXT_NAS_COMPLETE" in res.stdout and "complete " in res.stdout
    assert "--install-completion" in run_cli("--help", env=WIDE).stdout


def test_help_texts_are_the_commands_own() -> None:
    trials, search = (
        run_cli("trials", "--help", env=WIDE).stdout,
        run_cli("search", "--help", env=WIDE).stdout,
    )
    assert "resumes" in search and "resumes" not in trials
    for command in ("train", "calibrate", "search"):
        text = run_cli(command, "--help", env=WIDE).stdout
        assert "<synthetic|cifar10|cifar100|" in text, command


def test_out_creates_its_folders_before_any_work(tmp_path: Path) -> None:
    # --k 100 is refused once the band is counted, before any data or training; by then the
    # folder of --out exists.
    res = run_cli("calibrate", "--k", "100", "--out", "new/sub/cal.json", cwd=tmp_path, env=WIDE)
    assert res.returncode == 2 and "--k 100" in res.stderr
    assert (tmp_path / "new" / "sub").is_dir()
    (tmp_path / "afile").write_text("")
    res = run_cli("calibrate", "--out", "afile/cal.json", cwd=tmp_path, env=WIDE)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "afile is a file, not a folder" in res.stderr


def test_ensure_parent(tmp_path: Path) -> None:
    assert ensure_parent(tmp_path / "a" / "b" / "c.json") == tmp_path / "a" / "b" / "c.json"
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(ValueError, match="is a folder"):
        ensure_parent(tmp_path / "a")


def test_last_progress_line_ends_before_the_summary(tmp_path: Path) -> None:
    # stdout and stderr into one file, as `resnext-nas search > log 2>&1` does.
    code = (
        "from nas.commands.progress import SearchProgress\n"
        "p = SearchProgress('s', None, 2, 3, read=list); p.start()\n"
        "p(0, {'trial': 0, 'spec': '8x1d', 'epoch': 1, 'epochs': 3, 'val_accuracy': 0.5,"
        " 'best_error': 0.4})\n"
        "p(0, {'ended': 0})\n"
        "p.stop(); print('summary', flush=True)\n"
    )
    log = tmp_path / "log"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, stderr=f, cwd=ROOT, check=True)
    lines = log.read_text().splitlines()
    assert lines[-1] == "summary" and lines[-2].startswith("search 0/2 trials; elapsed ")


def test_trials_csv_has_the_spec_columns(stored_study: str, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "t.csv"
    res = run_cli(
        "trials", "--study", "synthetic", "--storage", stored_study, "--csv", str(out), env=WIDE
    )
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.open()))
    assert set(SPEC_COLUMNS) <= set(rows[0])
    import optuna

    trials = optuna.load_study(study_name="synthetic", storage=stored_study).trials
    for row, t in zip(rows, trials, strict=True):
        spec = t.user_attrs["spec"]
        assert int(row["cardinality"]) == spec["cardinality"]
        assert int(row["bottleneck_width"]) == spec["bottleneck_width"]
        assert int(row["width"]) == spec["width"]
        assert row["depths"] == "-".join(map(str, spec["depths"]))


@pytest.mark.parametrize("command", [["study", "run", "cardinality-vs-width"], ["search"]])
def test_training_settings_are_checked_before_the_data(command: list[str], tmp_path: Path) -> None:
    # No cifar10 in an empty folder: a check after the data load would complain about that.
    args = [*command, "--device", "tpu", "--dataset", "cifar10", "--data-dir", str(tmp_path)]
    res = run_cli(*args, cwd=tmp_path, env=WIDE)
    assert res.returncode == 2 and "device must be" in res.stderr, res.stderr


@pytest.mark.parametrize(
    "name", ["plain", "two words", "it's", "evil\u202etxt.exe", "a\nb", "\x1b[31mred", "é ∑"]
)
def test_suggested_commands_quote_hostile_names_for_the_shell(name: str) -> None:
    from nas.commands.options import command

    line = command("trials", "--study", name)
    assert line.isprintable(), repr(line)  # no newline, control or bidirectional override
    echoed = subprocess.run(
        [
            "bash",
            "-c",
            line.replace("resnext-nas", "printf %s", 1).replace(" trials --study ", " "),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert echoed.stdout == name


def test_the_data_line_says_how_much_the_scoring_sample_alone_moves_an_accuracy(capsys) -> None:
    from nas.commands.options import report_data
    from tests.helpers import toy_data

    data = toy_data(128)  # 64 held-out images: 50 / sqrt(64) = 6.25 points
    report_data(data, quiet=False)
    printed = capsys.readouterr().out
    assert "scored on the 64 held-out images" in printed and "SE of 6.2 points" in printed
    report_data(data, quiet=True)
    assert capsys.readouterr().out == ""
