"""``study run``'s summary holds the pooled axis effects: in the JSON and as lines for people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.search.records import trial_records
from nas.search.storage import load
from nas.stats.designspace import axis_effect_lines, axis_effects
from tests.helpers import run_cli, sqlite


def test_study_run_summary_states_the_axis_effects(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    # Table 2's five specs, one seed, one epoch on 64 synthetic 8x8 images: seconds.
    args = ["study", "run", "cardinality-vs-width", "--storage", url, "--seeds", "1"]
    args += ["--epochs", "1", "--train-images", "64", "--val-fraction", "0.002"]
    args += ["--resolution", "8", "--no-latency", "--quiet"]
    first = run_cli(*args, "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    fit = axis_effects(trial_records(load("cardinality-vs-width", url)))
    got = summary["axis_effects"]
    assert got["n"] == fit.n == 5 and got["phase"] == "search"
    # C and FLOPs vary over the five specs (2 axes + intercept on 5 trials: df 2); at preserved
    # complexity d follows from them, and the depths and the width are the template's.
    assert [e["name"] for e in got["effects"]] == ["log10 FLOPs", "log2 C"]
    assert got["df"] == 2 and got["reason"] is None
    # A grid study has no confirmation phase: its answer is the search phase's verdict, here
    # on one seed a spec, so the seed noise is unmeasured.
    rec = summary["recommendation"]
    assert rec["phase"] == "search" and rec["verdict"] == "no-signal"
    assert "seed noise is unmeasured" in rec["reason"] and rec["proxy_fidelity"] is None
    # The study's answer, as `studies` and the dashboard name it, is that same verdict's pick.
    answer = summary["answer"]
    assert answer["phase"] == "search" and answer["recommendation"] == rec
    assert answer["notation"] == rec["notation"] and answer["verdict"] == "no-signal"
    assert got["left_out"]["depth"] == "does not vary"
    assert got["left_out"]["log2 width"] == "does not vary"
    assert "explained by log10 FLOPs, log2 C" in got["left_out"]["log2 d"]
    for e, ref in zip(got["effects"], fit.effects, strict=True):
        assert e["estimate"] == pytest.approx(ref.estimate)
        assert (e["low"], e["high"]) == pytest.approx((ref.low, ref.high))
        assert e["n"] == 5 and e["direction"] == ref.direction
    # Again for people: nothing left to train, the same fit as lines after the summary.
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    expected = axis_effect_lines(fit)
    assert expected[-1].startswith("axis effects on accuracy, pooled over 5 complete")
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected
    assert "axis_effects" not in again.stdout
    assert any(ln.startswith("verdict: no-signal: the seed noise is unmeasured") for ln in lines)
    assert not any("no confirmed configuration yet" in ln for ln in lines)
