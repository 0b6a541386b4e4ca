"""The search's settings within their bounds: heartbeat, seed, and workers capped to the
machine with the reason."""

from __future__ import annotations

import pytest

from nas.search.storage import MAX_HEARTBEAT, check_heartbeat
from nas.search.study import SearchSettings
from nas.search.workers import _local_capacity, cap_workers
from tests.helpers import tiny_space


def test_heartbeat_limit_in_the_library() -> None:
    check_heartbeat(MAX_HEARTBEAT)
    for bad in (0, MAX_HEARTBEAT + 1, 1.5):
        with pytest.raises(ValueError, match="--heartbeat"):
            check_heartbeat(bad)


def test_workers_beyond_the_machine_are_capped_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    limit, why = _local_capacity()
    assert cap_workers(limit) == limit and capsys.readouterr().err == ""
    assert cap_workers(limit + 7) == limit
    err = capsys.readouterr().err
    assert err == f"warning: --workers {limit + 7} capped to {limit}: {why}\n"


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5])
def test_search_settings_name_the_seed_option(seed: object) -> None:
    SearchSettings(tiny_space(), seed=2**63 - 1)
    with pytest.raises(ValueError, match="--seed must be an integer from 0 to"):
        SearchSettings(tiny_space(), seed=seed)
