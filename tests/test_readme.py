"""The README's commands stay true: each fenced `resnext-nas` line parses with today's options.

Every line is parsed by the command line's own parser (option names, types, choices and
arguments), without running it; the ones that train nothing also run, and must succeed.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer

import cli
from resnext.budget import MAX_GRID_CELLS
from resnext.spec import LIMITS
from tests.helpers import ROOT

# Commands that answer at once, with no data, storage or training: run them for real.
RUN = ("budget", "show", "presets", "study list")


def readme_commands() -> list[list[str]]:
    """The `resnext-nas` lines of the README's fenced blocks, split as a shell would."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    lines = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    return [shlex.split(ln, comments=True)[1:] for ln in lines if ln.startswith("resnext-nas ")]


COMMANDS = readme_commands()


def parse(args: list[str]) -> str:
    """Parse ``args`` down to the command that would run; returns its path, e.g. ``study run``."""
    command = typer.main.get_command(cli.app)
    ctx = command.make_context("resnext-nas", [], resilient_parsing=True)
    path = []
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"no command {args[0]!r} in `resnext-nas {' '.join(path)}`"
        path.append(args[0])
        args = args[1:]
        command = sub
        if not hasattr(command, "get_command"):
            command.make_context(" ".join(path), list(args), parent=ctx)  # raises on a bad option
            break
        ctx = command.make_context(" ".join(path), [], parent=ctx, resilient_parsing=True)
    return " ".join(path)


def test_the_readme_has_commands_of_every_group() -> None:
    assert len(COMMANDS) >= 25
    groups = {parse(args) for args in COMMANDS}
    assert {"budget", "search", "trials", "train", "export", "study run", "calibrate"} <= groups


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_readme_command_parses(args: list[str]) -> None:
    parse(args)


def test_a_renamed_option_would_fail() -> None:
    with pytest.raises(Exception, match="--flop"):
        parse(["budget", "--flop", "4e9"])
    with pytest.raises(Exception, match="cmaes"):
        parse(["search", "--sampler", "cmaes"])


@pytest.mark.parametrize(
    "args", [a for a in COMMANDS if parse(a) in RUN], ids=lambda a: " ".join(a)[:60]
)
def test_readme_command_runs(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(args)  # raises SystemExit on any error
    assert capsys.readouterr().out.strip()


def makefile_commands() -> list[list[str]]:
    """The `resnext-nas` lines of the Makefile (the demo), with its variables expanded."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) :?= (.*)$", text, flags=re.M))
    lines = re.findall(r"^\t\$\(BIN\)/resnext-nas (.*)$", text, flags=re.M)
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), ln) for ln in lines]
    return [shlex.split(ln) for ln in expanded]


MAKE_COMMANDS = makefile_commands()


def test_the_demo_runs_a_search_with_a_confirmation() -> None:
    searches = [a for a in MAKE_COMMANDS if a[0] == "search"]
    assert searches and "--confirm" in searches[0]


@pytest.mark.parametrize("args", MAKE_COMMANDS, ids=[" ".join(a)[:60] for a in MAKE_COMMANDS])
def test_makefile_command_parses(args: list[str]) -> None:
    parse(args)


def test_the_readme_states_the_limits() -> None:
    """The README states every limit that the spec enforces."""
    readme = (ROOT / "README.md").read_text()
    for name, limit in LIMITS.items():
        assert f"{limit:,}" in readme, (name, limit)
    assert f"{MAX_GRID_CELLS:,}" in readme
