"""The README's commands stay true, and so do those of the docs pages it links to: each fenced
`resnext-nas` line parses with today's options.

Every line is parsed by the command line's own parser (option names, types, choices and
arguments), without running it; the ones that train nothing also run, and must succeed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

import cli
from resnext.budget import MAX_GRID_CELLS
from resnext.spec import LIMITS
from tests.helpers import ROOT

# Commands that answer at once, with no data, storage or training: run them for real.
RUN = ("budget", "show", "presets", "study list")
# The README is the short user's guide; the long form, the figures and the search quality live in
# the docs pages it links to, and their commands must stay runnable too.
DOCS = ("README.md", "docs/guide.md", "docs/performance.md", "docs/search-quality.md")
GROUPS = {"budget", "search", "trials", "train", "export", "study run", "calibrate"}


def readme_commands(name: str = "README.md") -> list[list[str]]:
    """The `resnext-nas` lines of a page's fenced blocks, split as a shell would."""
    text = (ROOT / name).read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    lines = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    return [shlex.split(ln, comments=True)[1:] for ln in lines if ln.startswith("resnext-nas ")]


README_COMMANDS = readme_commands()
COMMANDS = [args for name in DOCS for args in readme_commands(name)]


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


def test_the_readme_walks_through_search_answer_and_export() -> None:
    """The quick start: a budget, a search, its trials, its dashboard, an export, a training."""
    assert len(README_COMMANDS) >= 10
    groups = {parse(args) for args in README_COMMANDS}
    assert {"budget", "search", "trials", "dashboard", "export", "train"} <= groups


def test_the_docs_have_commands_of_every_group() -> None:
    assert len(COMMANDS) >= 25
    assert GROUPS <= {parse(args) for args in COMMANDS}


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


def test_the_guide_states_the_limits() -> None:
    """The guide (the README's long form) states every limit that the spec enforces."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    for name, limit in LIMITS.items():
        assert f"{limit:,}" in guide, (name, limit)
    assert f"{MAX_GRID_CELLS:,}" in guide


def anchors(page: Path) -> set[str]:
    """The heading anchors of a Markdown page, as GitHub spells them."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_the_readme_links_resolve() -> None:
    """Every relative link of the README and the docs pages names a file (and heading) that
    exists."""
    for name in (*DOCS, "docs/plan.md", "docs/imagenet.md", "docs/reference.md"):
        page = ROOT / name
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]*))?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), (name, target)
            if anchor:
                assert anchor in anchors(page.parent / target), (name, target, anchor)


def test_anchors_are_spelt_as_github_does() -> None:
    assert anchors(ROOT / "docs" / "guide.md") >= {
        "the-papers-studies-and-the-calibration-of-a-short-trial",
        "one-model-of-the-noise-and-three-verdicts",
    }
