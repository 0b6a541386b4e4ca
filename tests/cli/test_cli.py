"""The command line, run as a user runs it: JSON output, tables, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import resnext
from tests.helpers import ROOT, run_cli


def test_budget_json_has_the_table2_pairs_and_exact_counts() -> None:
    res = run_cli("budget", "--flops", "4.1e9", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["budget"] == {
        "flops": 4.1e9,
        "params": None,
        "tolerance": 0.05,
        "template": "imagenet",
    }
    pairs = {(c["cardinality"], c["bottleneck_width"]) for c in doc["configs"]}
    assert {(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)} <= pairs
    for c in doc["configs"]:
        spec = resnext.Spec(
            c["template"], tuple(c["depths"]), c["width"], c["cardinality"], c["bottleneck_width"]
        )
        assert resnext.complexity(spec).to_dict() == {
            k: c[k] for k in ("flops", "params", "activations")
        }


def test_budget_grid_options() -> None:
    res = run_cli(
        "budget",
        "--params",
        "25e6",
        "--flops",
        "4.1e9",
        "--depths",
        "3,4,6,3",
        "--depths",
        "3,4,23,3",
        "--widths",
        "256",
        "--cardinalities",
        "1,32",
        "--json",
    )
    doc = json.loads(res.stdout)
    assert {tuple(c["depths"]) for c in doc["configs"]} == {(3, 4, 6, 3), (3, 4, 23, 3)}
    assert {c["cardinality"] for c in doc["configs"]} == {1, 32}
    assert all(abs(c["params"] - 25e6) / 25e6 <= 0.05 for c in doc["configs"])


def test_budget_table_marks_closest() -> None:
    res = run_cli("budget", "--flops", "4.1e9")
    assert res.returncode == 0
    line = next(ln for ln in res.stdout.splitlines() if "32x4d" in ln)
    assert "★" in line and "4.23G" in line


def test_budget_at_a_small_side_also_counts_224_px() -> None:
    """The ImageNet template at 64 px (a CPU trial) shows its FLOPs at 224 px too; at 224 it
    does not repeat them."""
    args = ("budget", "--tolerance", "0.1", "--depths", "1,1,1,1", "--widths", "64")
    small = run_cli(*args, "--flops", "18e6", "--classes", "10", "--resolution", "64")
    assert small.returncode == 0, small.stderr
    line = next(ln for ln in small.stdout.splitlines() if "8x4d" in ln)
    assert "FLOPs @224" in small.stdout and "18.16M" in line and "222.39M" in line
    full = run_cli(*args, "--flops", "222e6", "--classes", "10")
    assert full.returncode == 0, full.stderr
    assert "@224" not in full.stdout and "FLOPs" in full.stdout


GRID = ("--flops", "4.1e9", "--tolerance", "0.5", "--depths", "3,4,6,3", "--depths", "2,2,2,2")
GRID += ("--widths", "128,256")


def table_rows(stdout: str) -> list[tuple[str, str, str]]:
    """(C x d, depths, width) of each data row of the budget table(s)."""
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in stdout.splitlines()]
    return [(c[0], c[2], c[3]) for c in cells if len(c) == 8 and c[0] != "C x d"]


def test_budget_table_shows_the_closest_and_counts_the_rest() -> None:
    from resnext.budget import Budget, scan

    band = scan(Budget(flops=4.1e9, tolerance=0.5), "imagenet", [(3, 4, 6, 3), (2, 2, 2, 2)],
                (128, 256))  # fmt: skip
    assert len(band) > 600

    def shown(n: int) -> list[tuple[str, str, str]]:
        return [
            (c.spec.notation, "-".join(map(str, c.spec.depths)), str(c.spec.width))
            for c in band.configs(band.nearest(n))
        ]

    total = len(band)
    for args, n in (((), 100), (("--limit", "7"), 7), (("--limit", "600"), 600)):
        res = run_cli("budget", *GRID, *args)
        assert res.returncode == 0, res.stderr
        assert table_rows(res.stdout) == shown(n)
        assert res.stdout.splitlines()[-1] == (
            f"showing {n} of {total:,} configurations, the closest to the budget; "
            f"--limit {total} or --json for all"
        )
        assert f"{total:,} imagenet configurations within" in res.stdout
        # Past 500 rows the table comes in pages, each laid out and printed in turn.
        assert ("rows 501-600 of 600" in res.stdout) == (n == 600)
    everything = run_cli("budget", *GRID, "--limit", str(total + 1))
    assert table_rows(everything.stdout) == shown(total)
    assert "showing" not in everything.stdout


def test_budget_lists_a_repeated_skeleton_once() -> None:
    args = ("budget", "--flops", "4.1e9", "--widths", "256,256", "--json")
    twice = json.loads(run_cli(*args, "--depths", "3,4,6,3", "--depths", "3,4,6,3").stdout)
    once = json.loads(run_cli(*args, "--depths", "3,4,6,3").stdout)
    keys = [(c["depths"][1], c["cardinality"], c["bottleneck_width"]) for c in twice["configs"]]
    assert len(keys) == len(set(keys)) > 0
    assert twice == once
    table = run_cli("budget", "--flops", "4.1e9", "--depths", "3,4,6,3", "--depths", "3,4,6,3")
    assert len(table_rows(table.stdout)) == len(once["configs"])


def test_budget_does_not_import_torch() -> None:
    code = (
        "import sys, cli\n"
        "try:\n    cli.app(['budget', '--flops', '4.1e9', '--json'], standalone_mode=False)\n"
        "finally:\n    sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NOTORCH')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stderr.endswith("NOTORCH")


def test_show_preset_json_matches_complexity() -> None:
    doc = json.loads(run_cli("show", "resnext101_32x4d", "--json").stdout)
    spec = resnext.preset("resnext101_32x4d")
    assert doc["spec"] == spec.to_dict()
    assert doc["complexity"] == resnext.complexity(spec).to_dict()


def test_show_custom_spec_table() -> None:
    res = run_cli(
        "show",
        "--template",
        "imagenet",
        "--depths",
        "3,4,23,3",
        "--width",
        "256",
        "--cardinality",
        "32",
        "--bottleneck-width",
        "8",
        "--classes",
        "100",
    )
    assert res.returncode == 0, res.stderr
    spec = resnext.Spec("imagenet", (3, 4, 23, 3), 256, 32, 8, classes=100)
    assert f"{resnext.complexity(spec).params:,}" in res.stdout
    for row in ("conv1", "conv2", "conv5", "112x112", "7x7", "3x3, 2048, C=32", "x23", "100-d fc"):
        assert row in res.stdout


def test_show_preset_with_override() -> None:
    doc = json.loads(run_cli("show", "resnext29_8x64d", "--classes", "100", "--json").stdout)
    assert doc["spec"]["classes"] == 100 and doc["spec"]["cardinality"] == 8


def test_presets_json_lists_the_registry() -> None:
    doc = json.loads(run_cli("presets", "--json").stdout)
    assert [r["name"] for r in doc] == resnext.preset_names()
    r = next(r for r in doc if r["name"] == "resnext50_32x4d")
    assert r["complexity"]["params"] == 25_028_904


@pytest.mark.parametrize(
    "args, message",
    [
        (["budget", "--flops", "0"], "flops budget must be a positive number"),
        (["budget", "--flops", "-4e9"], "flops budget must be a positive number"),
        (["budget", "--flops", "4e9", "--tolerance", "1.2"], "tolerance must lie strictly"),
        (["budget", "--flops", "4e9", "--tolerance", "0"], "tolerance must lie strictly"),
        (["budget", "--flops", "1e4"], "no configuration lies within"),
        (["budget", "--flops", "4e9", "--depths", "3,4,6"], "needs 4 numbers"),
        (["budget", "--flops", "4e9", "--cardinalities", "0,2"], "--cardinalities takes"),
        (["budget", "--flops", "4e9", "--depths", "a,b"], "--depths takes"),
        (["budget"], "give a budget"),
        (["budget", "--flops", "4e9", "--limit", "0"], "Invalid value for '--limit'"),
        (["budget", "--flops", "4e9", "--limit", "-3"], "Invalid value for '--limit'"),
        (["show", "resnext50_32x5d"], "unknown preset 'resnext50_32x5d'; did you mean"),
        (["show", "--template", "cifar", "--depths", "3,3,3,3"], "needs 3 numbers"),
        (["show", "--cardinality", "-1"], "cardinality must be a positive integer"),
        (["show", "--bottleneck-width", "0"], "bottleneck width must be a positive integer"),
        # Usage errors (click's): one line too, naming the command's help.
        (["budget", "--flops", "abc"], "Invalid value for '--flops'"),
        (["budget", "--template", "mobile"], "Invalid value for '--template'"),
        (["budget", "--nope", "1"], "No such option: --nope"),
        (["bogus"], "No such command 'bogus'; see `resnext-nas --help`"),
        (["dashboard"], "Missing option '--study'; see `resnext-nas dashboard --help`"),
        (["search", "--dataset", "mnist"], "Invalid value for '--dataset'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_help_and_bare_command() -> None:
    res = run_cli("--help")
    assert res.returncode == 0 and "budget" in res.stdout and "search" in res.stdout
    bare = run_cli()
    assert bare.returncode == 2 and "Usage" in bare.stdout  # click's convention for no command
