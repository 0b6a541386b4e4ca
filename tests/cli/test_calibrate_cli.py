"""`resnext-nas calibrate` end to end at a tiny size: table, JSON, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.search.calibrate import calibrate, pick
from nas.stats.rank import kendall, spearman
from nas.training import loop as ntrain
from nas.training.config import TrainConfig
from resnext.spec import Spec
from tests.helpers import calibration_configs, run_clis, toy_data

# 8x8 synthetic images, 64 to train, 100 held out, 1 and 2 epochs: seconds per config.
TINY = ["calibrate", "--resolution", "8", "--train-images", "64", "--val-fraction", "0.002"]
TINY += ["--epochs", "1", "--factor", "2", "--k", "3", "--flops", "2.5e5", "--depths", "1,1,1"]
TINY += ["--widths", "16", "--tolerance", "0.2", "--batch-size", "32"]


def test_calibrate_command_writes_resumes_and_refuses_other_options(tmp_path: Path) -> None:
    (first,) = run_clis([[*TINY, "--json"]], tmp_path)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved == result
    assert (result["short_epochs"], result["long_epochs"]) == (1, 2)
    assert result["options"]["k"] == 3 and len(result["configs"]) == 3
    short = [r["short_val_accuracy"] for r in result["configs"]]
    long = [r["long_val_accuracy"] for r in result["configs"]]
    assert result["spearman"]["value"] == pytest.approx(spearman(short, long), nan_ok=True)
    assert result["kendall"]["value"] == pytest.approx(kendall(short, long), nan_ok=True)
    assert "Spearman 0.61 on NAS-Bench-201" in result["reference"]

    # Resume: a file with one config complete (marked by impossible accuracies), one with only
    # its short result, one missing. Only the missing schedules are trained.
    a, b, _ = saved["configs"]
    a = {**a, "short_val_accuracy": 0.987, "long_val_accuracy": 0.986}
    b = {k: v for k, v in b.items() if not k.startswith("long_")}
    b["short_val_accuracy"] = 0.985
    partial = {"options": saved["options"], "configs": [a, b]}
    (tmp_path / "calibration.json").write_text(json.dumps(partial))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(partial))
    complete = tmp_path / "t.json"  # a finished file: the table is printed, nothing trained
    complete.write_text(json.dumps(saved))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2]")
    resumed, table, other, broken = run_clis(
        [
            [*TINY, "--json"],
            [*TINY, "--out", str(complete)],
            [*TINY, "--out", str(bad), "--lr", "0.2"],
            [*TINY, "--out", str(garbage)],
        ],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = {r["notation"]: r for r in json.loads(resumed.stdout)["configs"]}
    assert (
        rows[a["notation"]]["short_val_accuracy"],
        rows[a["notation"]]["long_val_accuracy"],
    ) == (
        0.987,
        0.986,
    )
    assert rows[b["notation"]]["short_val_accuracy"] == 0.985
    assert rows[b["notation"]]["long_val_accuracy"] is not None
    assert len(rows) == 3 and all(r["long_val_accuracy"] is not None for r in rows.values())
    assert table.returncode == 0, table.stderr
    # Nothing retrained: a new run would have other wall times.
    assert json.loads(complete.read_text())["configs"] == saved["configs"]
    for text in ("short acc", "long acc", "Spearman", "Kendall", "params (baseline)", "0.61"):
        assert text in table.stdout
    for r, msg in ((other, "differ in lr"), (broken, "not a calibration file")):
        assert r.returncode == 2 and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert json.loads(bad.read_text()) == partial  # a refused file is left as it was


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "2"], "at least 3 configurations"),
        (["--factor", "1"], "--factor must be at least 2"),
        (["--k", "50"], "fewer than --k 50"),
        (["--flops", "-1"], "must be a positive number"),
        (["--dataset", "mnist"], "unknown dataset"),
    ],
)
def test_calibrate_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (r,) = run_clis([[*TINY, *args]], tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "calibration.json").exists()


def test_calibrate_trains_only_the_schedules_not_done(monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_data(128)
    chosen = pick(calibration_configs(), 3)
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", seed=0)
    first = calibrate(chosen, data, cfg, 2)
    trained: list[tuple[str, int]] = []
    real = ntrain.train

    def counting(spec, data, schedule, **kw):
        trained.append((spec.notation, schedule.epochs))
        return real(spec, data, schedule, **kw)

    monkeypatch.setattr(ntrain, "train", counting)
    done = [first.rows[0], {k: v for k, v in first.rows[1].items() if not k.startswith("long")}]
    progress = []
    again = calibrate(chosen, data, cfg, 2, done=done, on_progress=progress.append)
    names = [r["spec"] for r in first.rows]
    notation = [Spec.from_dict(r["spec"]).notation for r in first.rows]
    assert trained == [(notation[1], 2), (notation[2], 1), (notation[2], 2)]
    assert [r["spec"] for r in again.rows] == names and len(progress) == 3
    assert again.rows[0] == first.rows[0]
