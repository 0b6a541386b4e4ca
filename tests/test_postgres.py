"""One study, two worker processes, one PostgreSQL database: every trial runs exactly once.

Runs when ``RESNEXT_NAS_TEST_POSTGRES`` holds a PostgreSQL URL, e.g. after
``eval "$(scripts/start_postgres.sh)"``.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from nas.records import counts, study_rows
from nas.storage import load
from nas.study import SearchSettings
from nas.workers import run_search
from tests.test_search import TRAIN, tiny_space, toy_data

URL = os.environ.get("RESNEXT_NAS_TEST_POSTGRES")
pytestmark = [
    pytest.mark.postgres,
    # Off CI a developer without a server may skip; under CI (.ci/run starts one) it must run.
    pytest.mark.skipif(
        not URL and not os.environ.get("CI"), reason="RESNEXT_NAS_TEST_POSTGRES is not set"
    ),
]


def test_two_workers_share_one_postgres_study() -> None:
    assert URL, 'CI must start PostgreSQL: eval "$(scripts/start_postgres.sh)" (see .ci/run)'
    name = f"pg-{uuid.uuid4().hex[:8]}"
    settings = SearchSettings(tiny_space(), study=name, pruner="none", latency=False)
    try:
        reports = run_search(settings, toy_data(), TRAIN, 6, storage=URL, workers=2)
        study = load(name, URL)
        assert [t.state for t in study.trials].count(TrialState.FAIL) == 0
        trained = [t for t in study.trials if counts(t)]
        assert len(trained) == 6  # the study-wide count, not 6 per worker
        assert sum(r.trials for r in reports) == 6
        assert all(r.trials >= 1 for r in reports)
        # Each trained trial ran once: one start, one end, one full curve.
        assert len({t.number for t in trained}) == 6
        assert all(len(t.user_attrs["curve"]) == TRAIN.epochs for t in trained)
        # A third run of the same command is a resume that trains nothing.
        assert run_search(settings, toy_data(), TRAIN, 6, storage=URL)[0].trials == 0
        assert any(r["name"] == name for r in study_rows(URL))
    finally:
        optuna.delete_study(study_name=name, storage=URL)
