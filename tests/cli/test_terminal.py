"""Output that fits a terminal: `trials` and the help at 100 columns, signed budget offsets, and
the progress of a search (on a terminal, and as plain lines when piped)."""

from __future__ import annotations

import io
import re
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from rich.cells import cell_len
from rich.console import Console

from nas.search.attrs import CONFIRM, config_key, notation
from nas.search.confirm import ConfirmSettings
from resnext.spec import Spec
from tests.helpers import cli_env, run_cli

NARROW = cli_env(COLUMNS="100")


def _widest(text: str) -> int:
    return max(cell_len(line) for line in text.splitlines())


def _rows(text: str) -> list[list[str]]:
    """The cells of each row of a rich table (lines split on its vertical bars)."""
    lines = [ln.replace("┃", "│") for ln in text.splitlines()]  # the header's bars are heavy
    return [[c.strip() for c in ln.split("│")[1:-1]] for ln in lines if "│" in ln]


def test_trials_fits_100_columns(stored_study: str) -> None:
    res = run_cli("trials", "--study", "synthetic", "--storage", stored_study, env=NARROW)
    assert res.returncode == 0, res.stderr
    assert _widest(res.stdout) <= 100 and "…" not in res.stdout
    rows = _rows(res.stdout)
    header = rows[0]
    assert header == ["#", "phase", "config", "FLOPs", "accuracy", "mean [95%] n", "note"]
    numbered = [r for r in rows[1:] if r[0]]
    # The # column holds every trial's number (a row whose note wraps goes on below it).
    assert [int(r[0]) for r in numbered] == list(range(36))
    trials = optuna.load_study(study_name="synthetic", storage=stored_study).trials
    for r, t in zip(numbered, trials, strict=True):
        assert r[2].startswith(notation(t.user_attrs["spec"]))
        if t.state == TrialState.COMPLETE:
            assert r[4] == f"{t.user_attrs['val_accuracy']:.1%}"
        else:  # without the state column, the note says it
            assert r[6].startswith({"FAIL": "failed", "PRUNED": "pruned"}[t.state.name])
    # Repeated configurations: a mean, its interval (in %) and n, the same on each of its rows.
    means = [r[5] for r in numbered if r[5]]
    assert means and all(re.fullmatch(r"\d+\.\d% \[\d+\.\d, \d+\.\d\] [2-9]", m) for m in means)
    assert {r[5] for r in numbered if r[0] in ("0", "1", "11")} == {means[0]}


def test_trials_wide_shows_the_rest(stored_study: str) -> None:
    args = ("trials", "--study", "synthetic", "--storage", stored_study, "--wide")
    res = run_cli(*args, env=cli_env(COLUMNS="200"))
    assert res.returncode == 0, res.stderr
    header = _rows(res.stdout)[0]
    for col in ("#", "state", "params", "latency", "epochs", "train img/s", "infer img/s"):
        assert col in header
    assert _widest(res.stdout) <= 200


HELPED = [["search"], ["study", "run"], ["calibrate"], ["train"], ["trials"], ["export"]]


def _command(words: list[str]) -> Any:
    import typer

    import cli

    cmd = typer.main.get_command(cli.app)
    for w in words:
        cmd = cmd.commands[w]
    return cmd


@pytest.mark.parametrize("words", HELPED, ids=" ".join)
def test_help_fits_100_columns(words: list[str]) -> None:
    res = run_cli(*words, "--help", env=NARROW)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert _widest(text) <= 100 and "<bool>" not in text
    lines = text.splitlines()
    for param in _command(words).params:
        if not param.help or param.hidden:
            continue
        # Where the option's help starts: at least 40 columns are left for it.
        words = param.help.split()
        found = None
        for k in (3, 2, 1):  # the first words, wherever the help wraps
            pattern = re.compile(r"\s+".join(map(re.escape, words[:k])))
            found = next((m for ln in lines if (m := pattern.search(ln))), None)
            if found:
                break
        assert found is not None, f"{param.name}: {words[0]!r} is not in the help"
        assert 100 - cell_len(found.string[: found.start()]) >= 40, found.string
        if getattr(param, "is_flag", False):  # a flag takes no value
            assert "--" + param.name.replace("_", "-") in text or param.opts[0] in text


def test_help_shows_the_defaults() -> None:
    train = run_cli("train", "--help", env=NARROW).stdout
    card = next(ln for ln in train.splitlines() if "--cardinality" in ln)
    assert "default" in card or "default" in train[train.index("--cardinality") :][:400]
    search = run_cli("search", "--help", env=NARROW).stdout
    assert "[default: 50]" in search and "[default: 3]" in search


def test_budget_offsets_are_signed() -> None:
    from resnext.budget import Budget, generate

    args = ("--flops", "8e6", "--template", "cifar", "--depths", "1,1,1", "--widths", "32")
    res = run_cli("budget", *args, "--tolerance", "0.2", env=NARROW)
    assert res.returncode == 0, res.stderr
    rows = [r for r in _rows(res.stdout) if len(r) == 8 and r[0] != "C x d"]
    bud = Budget(flops=8e6, tolerance=0.2)
    want = {
        c.spec.notation: f"{float(bud.offset(c.complexity)):+.1%}"
        for c in generate(bud, "cifar", [(1, 1, 1)], (32,))
    }
    assert {r[0]: r[6] for r in rows} == want
    signs = {v[0] for v in want.values()}
    assert signs == {"+", "-"}  # over and under the target both occur in this band


# --- progress ------------------------------------------------------------------------------

SPECS = [Spec("cifar", (1, 1, 1), 32, c, d) for c, d in ((8, 1), (4, 2), (2, 4))]
DIST = {"cardinality": CategoricalDistribution([2, 4, 8])}


def _proxy(spec: Spec, acc: float) -> optuna.trial.FrozenTrial:
    curve = [{"epoch": e, "val_accuracy": acc} for e in (1, 2, 3)]
    attrs = {"spec": spec.to_dict(), "val_accuracy": acc, "curve": curve, "seed": 0}
    params = {"cardinality": spec.cardinality}
    return create_trial(
        state=TrialState.COMPLETE, value=1 - acc, params=params, distributions=DIST,
        user_attrs=attrs,
    )  # fmt: skip


def _confirmed(spec: Spec, seed: int, acc: float) -> optuna.trial.FrozenTrial:
    attrs = {
        "spec": spec.to_dict(), "val_accuracy": acc, "phase": CONFIRM, "seed": seed,
        "confirm_of": config_key(spec, {}),
    }  # fmt: skip
    params = {"cardinality": spec.cardinality}
    return create_trial(
        state=TrialState.COMPLETE, value=1 - acc, params=params, distributions=DIST,
        user_attrs=attrs,
    )  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _progress(console: Console, stored: list[Any], clock: _Clock) -> Any:
    from nas.commands.progress import SearchProgress

    confirm = ConfirmSettings(k=2, seeds=2, max_seeds=2)  # 2 configs x 2 seeds of 9 epochs

    def read() -> list[Any]:
        for i, t in enumerate(stored):
            t.number = i  # as a storage numbers them
        return list(stored)

    return SearchProgress("s", None, 4, 3, confirm, console=console, now=clock, read=read)


def _epoch(trial: int, epoch: int, epochs: int = 3) -> dict[str, Any]:
    return {
        "trial": trial, "spec": notation(SPECS[0]), "epoch": epoch, "epochs": epochs,
        "val_accuracy": 0.3, "best_error": 0.7,
    }  # fmt: skip


def test_search_progress_when_piped_is_a_line_a_trial() -> None:
    piped, stored, clock = io.StringIO(), [], _Clock()
    p = _progress(Console(file=piped, force_terminal=False, width=400), stored, clock)
    p.start()
    clock.t = 10.0
    p(0, _epoch(0, 1))  # an epoch writes no line
    # 48 epochs planned: 4 proxy trials of 3, and 2 x 2 confirmation trials of 9.
    assert p.work() == (1, 48) and p.eta() == pytest.approx(47 * 10)
    clock.t = 30.0
    stored.append(_proxy(SPECS[0], 0.41))
    p(0, {"ended": 0})
    lines = piped.getvalue().splitlines()
    assert lines == [
        "search 0/4 trials, confirmation 0/4 trials planned; elapsed 0s, ETA after the first epoch",
        # 3 of 48 epochs in 30 s: 45 more take 450 s.
        "search 1/4 trials, confirmation 0/4 trials planned; elapsed 30s, ETA 7m30s; best "
        f"single proxy trial so far: #0 {notation(SPECS[0])} 41.0% (3 epochs, 1 seed; not the "
        "answer)",
    ]
    # The proxy trials done, the confirmation plan is the top 2 configurations' 2 seeds each,
    # and a confirmed mean replaces the single proxy trial as the best so far.
    stored += [_proxy(SPECS[1], 0.45), _proxy(SPECS[2], 0.30), _proxy(SPECS[1], 0.43)]
    stored.append(_confirmed(SPECS[1], 0, 0.52))
    clock.t = 120.0
    p(0, {"ended": 4})
    last = piped.getvalue().splitlines()[-1]
    # 12 + 9 of 48 epochs in 120 s: 27 more take 120 * 27 / 21 s = 2m34s.
    assert last.startswith("search 4/4 trials, confirmation 1/4 trials planned; elapsed 2m00s,")
    assert "ETA 2m34s" in last
    assert last.endswith(f"best confirmed mean so far: {notation(SPECS[1])} 52.0% (1 seed of 9 "
                         "epochs)")  # fmt: skip
    p.stop()
    assert piped.getvalue().splitlines()[-1] == last  # nothing more when piped


def test_search_progress_on_a_terminal_draws_bars() -> None:
    screen, stored, clock = io.StringIO(), [], _Clock()
    p = _progress(Console(file=screen, force_terminal=True, width=100), stored, clock)
    p.start()
    clock.t = 10.0
    p(1, _epoch(5, 2))
    assert p.lines()[-1] == f"worker 1: trial 5 {notation(SPECS[0])}, epoch 2/3, val acc 30.0%"
    stored.append(_proxy(SPECS[0], 0.41))
    p(1, {"ended": 5})
    p.stop()
    text = screen.getvalue()
    assert "search" in text and "1/4" in text and "confirmation" in text and "0/4" in text
    assert "best single proxy trial so far" in text and "\x1b[" in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert max(cell_len(ln) for ln in re.split(r"[\r\n]", plain)) <= 100
