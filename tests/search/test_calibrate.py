"""Calibration: both schedules are really trained and the rankings compared."""

from __future__ import annotations

import pytest

from nas.search.calibrate import calibrate, pick
from nas.stats.rank import kendall, spearman
from nas.training.config import TrainConfig
from tests.helpers import calibration_configs, toy_data


def test_pick_takes_the_closest_per_cardinality_then_a_seeded_draw() -> None:
    configs = calibration_configs()
    chosen = pick(configs, 5, seed=3)
    assert len(chosen) == 5 == len({c.spec for c in chosen})
    assert {c.spec for c in configs if c.closest} <= {c.spec for c in chosen}
    assert chosen == pick(configs, 5, seed=3)
    with pytest.raises(ValueError, match="at least 3"):
        pick(configs, 2)
    with pytest.raises(ValueError, match="fewer than --k"):
        pick(configs, len(configs) + 1)


def test_calibrate_trains_both_schedules_and_ranks_them() -> None:
    data = toy_data(192)
    chosen = pick(calibration_configs(), 3)
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", seed=0)
    seen = []
    cal = calibrate(chosen, data, cfg, 2, on_result=seen.append)
    assert (cal.short_epochs, cal.long_epochs) == (1, 2)
    assert len(cal.rows) == len(seen) == 3
    short = [r["short_val_accuracy"] for r in cal.rows]
    long = [r["long_val_accuracy"] for r in cal.rows]
    assert all(0 <= a <= 1 for a in short + long)
    assert cal.spearman.value == pytest.approx(spearman(short, long), nan_ok=True)
    assert cal.kendall.value == pytest.approx(kendall(short, long), nan_ok=True)
    params = [r["params"] for r in cal.rows]
    assert cal.params_spearman.value == pytest.approx(spearman(params, long), nan_ok=True)
    assert set(cal.to_dict()) >= {"configs", "spearman", "kendall", "flops_spearman"}
    with pytest.raises(ValueError, match="--factor must be at least 2"):
        calibrate(chosen, data, cfg, 1)
