"""One answer everywhere: ``studies``, ``trials``, ``export`` and the dashboard's header name the
same configuration of a study that holds proxy and confirmation trials."""

from __future__ import annotations

import html
import json
import re
import socket
from pathlib import Path

import optuna
import pytest
import torch

import resnext
from nas.search.answer import answer_line, study_answer
from nas.search.attrs import ATTR
from tests.helpers import confirmations, one_line, proxy, run_clis, sqlite

# The best single proxy trial is 4x2d (#1, 0.50); the confirmation phase puts 2x4d clearly
# ahead, with seeds 0.62, 0.60, 0.64 (mean 0.62): the answer is 2x4d, its weights seed 0's.
ANSWER, PROXY_BEST = "2x4d 1-1-1 w32", "4x2d 1-1-1 w32"
CONFIRMED = [(4, 2, (0.40, 0.41, 0.39)), (2, 4, (0.62, 0.60, 0.64))]


def _trials() -> list[optuna.trial.FrozenTrial]:
    out = proxy()
    for c, d, accs in CONFIRMED:
        out += confirmations(len(out), c, d, accs)
    return out


def _store(url: str, name: str, trials: list[optuna.trial.FrozenTrial], folder: Path) -> None:
    """``trials`` as study ``name``, each with a 3-epoch curve and weights of its spec."""
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr(ATTR, {"objectives": ["error"], "space": {"budget": {}}})
    for t in trials:
        spec = resnext.Spec.from_dict(t.user_attrs["spec"])
        path = folder / f"{name}-{t.number}.pt"
        state = {
            "format": 1,
            "spec": spec.to_dict(),
            "model": resnext.build(spec).state_dict(),
            "normalization": {"mean": torch.zeros(3), "std": torch.ones(3)},
        }
        torch.save(state, path)
        t.user_attrs.update(
            curve=[{"epoch": e, "val_accuracy": t.user_attrs["val_accuracy"]} for e in (1, 2, 3)],
            weights=str(path),
            host=socket.gethostname(),
        )
        study.add_trial(t)


@pytest.mark.slow  # eight command lines, each importing torch: about a minute on 2 cores
def test_studies_trials_export_and_the_dashboard_name_the_same_answer(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    _store(url, "mixed", _trials(), tmp_path)
    _store(url, "proxy-only", proxy(), tmp_path)
    expected = study_answer(optuna.load_study(study_name="mixed", storage=url).trials, {})
    assert expected["notation"] == ANSWER and expected["trial"] == 8
    base = ["--storage", url]
    mixed = ["--study", "mixed", *base]
    calls = {
        "studies": ["studies", *base, "--json"],
        "studies table": ["studies", *base],
        "trials": ["trials", *mixed],
        "best": ["export", *mixed, "--best", "--no-onnx", "--out", "best"],
        "recommended": ["export", *mixed, "--recommended", "--no-onnx", "--json", "--out", "rec"],
        "dashboard": ["dashboard", *mixed, "--out", "page.html"],
        "proxy best": ["export", "--study", "proxy-only", *base, "--best", "--no-onnx", "--json"],
        "proxy rec": ["export", "--study", "proxy-only", *base, "--recommended", "--no-onnx"],
    }
    r = dict(zip(calls, run_clis(list(calls.values()), tmp_path), strict=True))
    for name, proc in r.items():
        if name != "proxy rec":
            assert proc.returncode == 0, (name, proc.stderr[-2000:])
    line = answer_line(expected)
    assert line.startswith(f"answer: {ANSWER}, the recommendation (verdict best)")
    # studies: the answer of each study, not its best single trial.
    rows = {row["name"]: row for row in json.loads(r["studies"].stdout)}
    assert rows["mixed"]["answer"]["notation"] == ANSWER
    assert rows["mixed"]["answer"]["trial"] == 8
    assert rows["proxy-only"]["answer"]["notation"] == PROXY_BEST
    assert rows["proxy-only"]["answer"]["label"] == "best single proxy trial (3 epochs, 1 seed)"
    table = r["studies table"].stdout
    assert ANSWER in table and "the recommendation (verdict best)" in table
    assert "best single proxy trial (3 epochs, 1 seed)" in table  # proxy-only's row
    # trials: the same line after its table.
    assert line in r["trials"].stdout.splitlines()
    # export --best: the answer's representative trial, and the answer above the files.
    best = r["best"].stdout
    assert best.startswith("trial 8 of study 'mixed': ResNeXt 2x4d"), best
    assert f"the study's {line}" in best.splitlines()
    assert (
        "these weights: trial 8 (seed 0, val acc 62.0%), the seed closest to the mean of " in best
    )
    spec = json.loads((tmp_path / "best" / "spec.json").read_text())["spec"]
    assert (spec["cardinality"], spec["bottleneck_width"]) == (2, 4)
    # export --recommended: the same trial; the answer in the JSON.
    rec = json.loads(r["recommended"].stdout)
    assert rec["trial"] == 8 and rec["answer"]["notation"] == ANSWER
    assert rec["answer"]["mean_accuracy"] == pytest.approx(0.62) and not rec["answer"]["tie"]
    # The dashboard's header.
    page = (tmp_path / "page.html").read_text()
    (header,) = re.findall(r'<p id="answer">(.*?)</p>', page)
    assert html.unescape(header) == line and PROXY_BEST not in html.unescape(header)
    # A study with no confirmation: --best is the best single proxy trial and says so;
    # --recommended refuses in one line.
    proxy_best = json.loads(r["proxy best"].stdout)
    assert proxy_best["trial"] == 1 and proxy_best["answer"]["source"] == "proxy"
    one_line(r["proxy rec"], "study 'proxy-only' has no confirmed configuration", "--best")
