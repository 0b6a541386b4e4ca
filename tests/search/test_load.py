"""Load: many worker processes on one study, trials of a fraction of a second.

The real :func:`nas.search.workers.run_search` with the real objective on a tiny model and 24
training
images of 8x8, one epoch: every trial is done exactly once, none is lost, the study-wide count is
exact and no (config, seed) is trained twice. 8 processes on PostgreSQL, 4 on SQLite.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from nas.search.attrs import config_key, is_trained_proxy
from nas.search.storage import load
from nas.search.study import SearchSettings
from nas.search.workers import run_search
from tests.helpers import TRAIN, sqlite, tiny_space, toy_data

PG = os.environ.get("RESNEXT_NAS_TEST_POSTGRES")


def _check(name: str, url: str, n: int, workers: int) -> None:
    settings = SearchSettings(tiny_space(), study=name, pruner="none", latency=False)
    reports = run_search(settings, toy_data(24), TRAIN, n, storage=url, workers=workers)
    trials = load(name, url).trials
    trained = [t for t in trials if is_trained_proxy(t)]
    assert len(trained) == n and sum(r.trials for r in reports) == n  # exact, study-wide
    assert not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert all(len(t.user_attrs["curve"]) == TRAIN.epochs for t in trained)  # ran once each
    runs = Counter(
        (config_key(t.user_attrs["spec"], t.user_attrs.get("hparams")), t.user_attrs["seed"])
        for t in trained
    )
    assert max(runs.values()) == 1, [k for k, v in runs.items() if v > 1]
    assert len(reports) == workers


@pytest.mark.slow
def test_four_workers_on_sqlite(tmp_path) -> None:
    _check("load", sqlite(tmp_path), 24, 4)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not PG and not os.environ.get("CI"), reason="RESNEXT_NAS_TEST_POSTGRES unset")
def test_eight_workers_on_postgres() -> None:
    assert PG, 'CI must start PostgreSQL: eval "$(scripts/start_postgres.sh)"'
    name = f"load-{uuid.uuid4().hex[:8]}"
    try:
        _check(name, PG, 48, 8)
    finally:
        optuna.delete_study(study_name=name, storage=PG)
