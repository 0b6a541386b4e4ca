"""The trial trainer: config validation, schedules, batch augmentation, training, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import resnext
from nas.data import Dataset
from nas.fileio import write_atomic
from nas.training.augment import CENTER_CROP, CIFAR_PAD, augment, channel_stats, evaluation_view
from nas.training.checkpoint import CHECKPOINT, identity
from nas.training.config import FLOAT32_MAX, TrainConfig
from nas.training.loop import EpochStats, Run, lr_factor, measure_latency, train
from tests.helpers import FAST, TINY, cli_env, run_cli, toy_data


@pytest.fixture(scope="module")
def data() -> Dataset:
    return toy_data(256, classes=4, res=16, pattern="stripes")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Train on one thread."""
    # Where other processes hold the cores, OpenMP threads that wait for each other spin: on a
    # busy 2-core machine a tiny training took 10x longer with 2 threads than with 1.
    monkeypatch.setenv(
        "OMP_NUM_THREADS", "1"
    )  # nas.training.device then leaves the thread count alone
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("lr", -0.1),
        ("lr", 0.0),
        ("lr", math.nan),
        ("momentum", 0.0),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("schedule", "triangle"),
        ("ema", 1.0),
        ("ema", 0.0),
        ("tta", 1),
        ("interim_val", 0),
        ("warmup_epochs", -1),
        ("label_smoothing", 1.0),
        ("seed", -1),
        ("device", "gpu"),
        ("early_stop_patience", 0),
        ("min_crop_scale", 0.0),
        ("min_crop_scale", 1.5),
    ],
)
def test_config_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        TrainConfig(**{field: value})


def test_importing_the_config_does_not_import_torch() -> None:
    """A bad command line is refused without the seconds an import of torch takes."""
    code = (
        "import sys, nas.training.config as c; c.TrainConfig(); c.DEFAULT_TRIAL.train_config(); "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=cli_env()).returncode == 0


def test_config_resolves_weight_decay_per_kind() -> None:
    # Sec. 5.3: 5e-4 on CIFAR; Sec. 4: 1e-4 on ImageNet; an explicit value wins.
    assert TrainConfig().resolved("cifar").weight_decay == 5e-4
    assert TrainConfig().resolved("imagenet").weight_decay == 1e-4
    assert TrainConfig(weight_decay=0.0).resolved("cifar").weight_decay == 0.0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert TrainConfig().resolved("cifar").device == expected


# --- schedules ---------------------------------------------------------------------------


def lrs(schedule: str, epochs: int = 10, steps: int = 10, warmup: float = 1.0) -> list[float]:
    cfg = TrainConfig(epochs=epochs, schedule=schedule, warmup_epochs=warmup)
    return [lr_factor(cfg, s, epochs * steps, steps) for s in range(epochs * steps)]


def test_cosine_warms_up_linearly_then_anneals_to_zero() -> None:
    f = lrs("cosine")
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] < 0.001


def test_warmup_takes_at_most_half_of_a_short_run() -> None:
    f = lrs("cosine", epochs=1, steps=10, warmup=1.0)
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 4
    assert f[5:] == sorted(f[5:], reverse=True) and f[-1] < 0.1  # 5 annealing steps


def test_linear_warms_up_then_decays_in_a_straight_line_to_zero() -> None:
    f = lrs("linear", warmup=0.5)  # 5 warm-up steps of 100
    assert f[:5] == pytest.approx([(i + 1) / 5 for i in range(5)])
    assert f[5] == pytest.approx(1.0)
    steps = np.diff(f[5:])
    assert steps == pytest.approx(np.full_like(steps, -1 / 95))
    assert f[-1] == pytest.approx(1 / 95)  # the last step's rate; zero right after it


def test_step_schedule_divides_by_ten_at_half_and_three_quarters() -> None:
    f = lrs("step", epochs=300, steps=1, warmup=0.0)  # Sec. 5.3: epochs 150 and 225 of 300
    assert f[149] == 1.0 and f[150] == pytest.approx(0.1)
    assert f[224] == pytest.approx(0.1) and f[225] == pytest.approx(0.01)


def test_onecycle_peaks_at_thirty_percent() -> None:
    f = lrs("onecycle")  # torch's OneCycleLR peaks at step 0.3 * 100 - 1
    assert f[0] == pytest.approx(1 / 25) and f.index(max(f)) == 29 and max(f) == 1.0
    assert f[-1] == pytest.approx(1 / 25 / 1e4)


@pytest.mark.parametrize("total", [2, 3, 7, 100, 300, 1001])
def test_onecycle_follows_torch(total: int) -> None:
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=total, cycle_momentum=False
    )
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    cfg = TrainConfig(epochs=1, schedule="onecycle")
    got = [lr_factor(cfg, s, total, total) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


# --- augmentation ------------------------------------------------------------------------


def test_cifar_augmentation_is_a_padded_crop_and_maybe_a_flip() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 12, 12), dtype=torch.uint8)
    out = augment(x, "cifar", g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    p = CIFAR_PAD
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (padded[i].flip(-1) if flip else padded[i])[:, dy : dy + 12, dx : dx + 12],
            )
        ]
        assert len(matches) == 1, f"image {i} is no crop of its padded self"
        seen.add(matches[0])
    # 64 draws out of 162 (dy, dx, flip): the crops are not all alike, both flips occur.
    assert len(seen) > 30 and {m[2] for m in seen} == {False, True}


def test_imagenet_augmentation_crops_at_least_min_scale_and_flips() -> None:
    g = torch.Generator().manual_seed(0)
    res = 32
    ramp = torch.linspace(0, 255, res).round().to(torch.uint8)  # left to right 0..255
    x = ramp.expand(200, 3, res, res).contiguous()
    out = augment(x, "imagenet", g, min_crop_scale=0.5)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255
    row = out[:, 0, res // 2]
    slope = row[:, -1] - row[:, 0]
    # A crop of area >= 0.5 has a width >= 0.5 (its height is at most 1), so each row spans at
    # least half the ramp's range, in one direction or, flipped, the other.
    assert (slope.abs() > 0.5 * 255 * (res - 1) / res - 8).all()
    assert (slope > 0).any() and (slope < 0).any()
    assert out.std(0).mean() > 1, "all crops are alike"


def test_imagenet_evaluation_is_the_central_crop_resized_back() -> None:
    res = 64
    ramp = torch.arange(res, dtype=torch.uint8)  # column j holds j
    x = torch.stack([ramp.expand(res, res), ramp.expand(res, res).T, ramp.expand(res, res)])[None]
    assert evaluation_view(x, "cifar") is x  # scored as stored
    out = evaluation_view(x, "imagenet")
    assert out.shape == x.shape and out.dtype == torch.float32
    # torchvision's Resize(R / 0.875) + CenterCrop(R) sees columns 4..59.5 of 0..63 across R.
    margin = (1 - CENTER_CROP) * res / 2
    for axis, profile in ((3, out[0, 0, 0]), (2, out[0, 1, :, 0])):
        assert profile[0].item() == pytest.approx(margin, abs=0.6), axis
        assert profile[-1].item() == pytest.approx(res - 1 - margin, abs=0.6), axis
        assert (profile.diff() > 0).all() and (profile.diff() < 1).all()  # stretched by 1/0.875
    with pytest.raises(ValueError, match="unknown dataset kind"):
        evaluation_view(x, "mnist")


def test_channel_stats_match_numpy() -> None:
    x = np.random.default_rng(1).integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    mean, std = channel_stats(torch.from_numpy(x))
    assert mean.numpy() == pytest.approx(x.mean((0, 2, 3)), rel=1e-5)
    assert std.numpy() == pytest.approx(x.std((0, 2, 3)), rel=1e-4)


# --- training ----------------------------------------------------------------------------


def test_training_learns_well_above_chance(data: Dataset) -> None:
    result = train(TINY, data, dataclasses.replace(FAST, epochs=4), eval_test=True)
    assert result.status == "completed" and len(result.history) == 4
    assert result.val_accuracy > 0.8  # chance is 0.25
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.val_accuracy == max(s.val_accuracy for s in result.history)
    assert result.history[result.best_epoch - 1].val_accuracy == result.val_accuracy
    assert result.test_accuracy is not None and result.test_accuracy > 0.6
    assert result.images_per_second > 0 and result.inference_images_per_second > 0
    json.dumps(result.to_dict())  # JSON-ready


def test_imagenet_kind_trains_with_random_resized_crops() -> None:
    data = toy_data(256, classes=4, res=32, kind="imagenet", pattern="stripes")
    spec = dataclasses.replace(TINY, template="imagenet", depths=(1, 1, 1, 1), resolution=32)
    result = train(spec, data, dataclasses.replace(FAST, epochs=3, min_crop_scale=0.35))
    assert result.status == "completed"
    assert result.val_accuracy > 0.5  # chance is 0.25


def test_same_seed_same_run_other_seed_other_run(data: Dataset) -> None:
    a, b = (train(TINY, data, FAST) for _ in range(2))
    c = train(TINY, data, dataclasses.replace(FAST, seed=1))
    losses = [[(s.train_loss, s.val_loss) for s in r.history] for r in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_huge_learning_rate_diverges_instead_of_training_on(data: Dataset) -> None:
    cfg = dataclasses.replace(FAST, epochs=5, lr=1e12, warmup_epochs=0)
    result = train(TINY, data, cfg, eval_test=True)
    assert result.status == "diverged"
    assert len(result.history) < 5
    assert result.test_accuracy is None
    assert all(math.isfinite(s.train_loss) for s in result.history)


def test_early_stopping_when_val_accuracy_stalls() -> None:
    # One class: every epoch scores 100%, so nothing improves after epoch 1.
    data = toy_data(256, classes=1, res=16, pattern="stripes")
    spec = dataclasses.replace(TINY, classes=1)
    result = train(spec, data, dataclasses.replace(FAST, epochs=10, early_stop_patience=2))
    assert result.status == "early_stopped"
    assert [s.epoch for s in result.history] == [1, 2, 3] and result.best_epoch == 1


def test_spec_must_match_the_data(data: Dataset) -> None:
    with pytest.raises(ValueError, match="classes=4, resolution=16"):
        train(dataclasses.replace(TINY, classes=10), data, FAST)


def test_progress_bar_only_when_asked(data: Dataset, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = dataclasses.replace(FAST, epochs=1)
    train(TINY, data, cfg)
    assert capfd.readouterr() == ("", "")
    train(TINY, data, cfg, progress=True)
    captured = capfd.readouterr()
    assert captured.out == "" and "epochs: val" in captured.err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_path_trains_and_resumes(data: Dataset, tmp_path: Path) -> None:
    cfg = dataclasses.replace(FAST, device="cuda", epochs=4)
    result = train(TINY, data, cfg, checkpoint_dir=tmp_path, eval_test=True)
    assert result.status == "completed" and result.val_accuracy > 0.6  # bf16; chance is 0.25
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["config"]["device"] == "cuda" and "cuda" in state["rng"]
    more = train(TINY, data, dataclasses.replace(cfg, epochs=5), checkpoint_dir=tmp_path)
    assert len(more.history) == 5 and more.history[:4] == result.history


# --- checkpoints -------------------------------------------------------------------------


def test_resume_trains_only_the_missing_epochs(data: Dataset, tmp_path: Path) -> None:
    first = train(TINY, data, FAST, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).exists()
    epochs_seen: list[int] = []
    more = train(
        TINY,
        data,
        dataclasses.replace(FAST, epochs=3),
        checkpoint_dir=tmp_path,
        callback=lambda s: epochs_seen.append(s.epoch),
    )
    assert epochs_seen == [3]
    assert [s.epoch for s in more.history] == [1, 2, 3]
    assert more.history[:2] == first.history
    assert not [p for p in tmp_path.iterdir() if p.name != CHECKPOINT], "temp files left"
    again = train(TINY, data, dataclasses.replace(FAST, epochs=3), checkpoint_dir=tmp_path)
    assert again.status == "completed" and again.history == more.history  # nothing left to do
    with pytest.raises(ValueError, match="has 3 epochs, more than the 2 asked for"):
        train(TINY, data, FAST, checkpoint_dir=tmp_path)


class Stop(Exception):
    pass


def test_interrupted_run_resumes_exactly(data: Dataset, tmp_path: Path) -> None:
    def stop(stats: EpochStats) -> None:
        raise Stop  # as optuna.TrialPruned would

    with pytest.raises(Stop):
        train(TINY, data, FAST, checkpoint_dir=tmp_path, callback=stop)
    resumed = train(TINY, data, FAST, checkpoint_dir=tmp_path)
    straight = train(TINY, data, FAST)
    key = [(s.train_loss, s.train_accuracy, s.val_loss) for s in straight.history]
    assert [(s.train_loss, s.train_accuracy, s.val_loss) for s in resumed.history] == key


def test_ema_scores_the_moving_average_and_resumes_exactly(data: Dataset, tmp_path: Path) -> None:
    cfg = dataclasses.replace(FAST, ema=0.9)
    kept: list[dict] = []
    straight = train(TINY, data, cfg, on_end=kept.append)
    plain = train(TINY, data, FAST)
    # The trained weights are the same; what is scored (and exported) is their average.
    assert [s.train_loss for s in straight.history] == [s.train_loss for s in plain.history]
    assert straight.history[-1].val_loss != plain.history[-1].val_loss
    run = Run(TINY, data, cfg.resolved(data.kind))
    run.train_epoch()
    assert run.scored is run.ema.module and run.scored is not run.model
    assert int(run.ema.n_averaged) == run.steps  # one update of the average per step
    name = next(k for k, v in run.model.state_dict().items() if v.ndim == 4)
    assert not torch.equal(run.model.state_dict()[name], run.scored.state_dict()[name])
    # Stopped after epoch 1 and resumed: the same scored weights as straight through.
    with pytest.raises(Stop):
        train(TINY, data, cfg, checkpoint_dir=tmp_path, callback=_stop)
    resumed: list[dict] = []
    train(TINY, data, cfg, checkpoint_dir=tmp_path, on_end=resumed.append)
    for name, value in kept[0]["model"].items():
        assert torch.equal(value, resumed[0]["model"][name]), name


def _stop(stats: EpochStats) -> None:
    raise Stop


def test_flip_tta_scores_the_mean_logits_of_image_and_mirror(data: Dataset) -> None:
    run = Run(TINY, data, dataclasses.replace(FAST, tta=True).resolved(data.kind))
    run.train_epoch()
    run.model.eval()
    with torch.inference_mode():
        x = run.prepare(run.val_x)
        logits = (run.model(x) + run.model(x.flip(3))) / 2
        plain = run.model(x)
    want = (logits.argmax(1) == run.val_y).float().mean().item()
    hits, loss, _ = run.predict(run.val_x, run.val_y)
    assert hits.float().mean().item() == pytest.approx(want)
    assert loss == pytest.approx(F.cross_entropy(logits, run.val_y).item(), rel=1e-5)
    untta = run.evaluate(run.val_x, run.val_y, tta=False)[1]
    assert untta == pytest.approx((plain.argmax(1) == run.val_y).float().mean().item())


def test_interim_epochs_score_a_fixed_sample_and_the_last_the_whole_split(data: Dataset) -> None:
    cfg = dataclasses.replace(FAST, epochs=3, interim_val=16)
    result = train(TINY, data, cfg)
    assert [s.val_images for s in result.history] == [16, 16, len(data.val_y)]
    assert result.val_accuracy == result.history[-1].val_accuracy and result.best_epoch == 3
    # The sample is the same for every run of the split, whatever the run's seed.
    a, b = (Run(TINY, data, dataclasses.replace(cfg, seed=s).resolved("cifar")) for s in (0, 5))
    assert torch.equal(a.interim[1], b.interim[1]) and len(a.interim[1]) == 16
    assert len(set(a.interim[1].tolist())) > 1  # not one class: a seeded sample, not a prefix
    whole = train(TINY, data, dataclasses.replace(FAST, epochs=3))
    assert [s.val_images for s in whole.history] == [len(data.val_y)] * 3
    # The same training either way: only what is scored differs.
    assert [s.train_loss for s in whole.history] == [s.train_loss for s in result.history]


def test_scoring_settings_join_the_checkpoint_identity_only_when_set(data: Dataset) -> None:
    base = identity(TINY, data, FAST.resolved(data.kind))
    assert "ema" not in base["config"] and "tta" not in base["config"]  # older files resume
    ema = identity(TINY, data, dataclasses.replace(FAST, ema=0.99).resolved(data.kind))
    assert ema["config"]["ema"] == 0.99


def test_checkpoint_of_another_run_is_refused(data: Dataset, tmp_path: Path) -> None:
    train(TINY, data, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="lr 0.05 there, 0.1 here"):
        train(TINY, data, dataclasses.replace(FAST, lr=0.1), checkpoint_dir=tmp_path)
    other = dataclasses.replace(TINY, cardinality=1)
    with pytest.raises(ValueError, match="cardinality 2 there, 1 here"):
        train(other, data, FAST, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="train_labels_crc32"):
        train(
            TINY,
            toy_data(256, classes=4, res=16, seed=5, pattern="stripes"),
            FAST,
            checkpoint_dir=tmp_path,
        )


def test_corrupt_checkpoint_is_one_clear_error(data: Dataset, tmp_path: Path) -> None:
    train(TINY, data, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn write
    with pytest.raises(ValueError, match="unreadable") as err:
        train(TINY, data, FAST, checkpoint_dir=tmp_path)
    assert "\n" not in str(err.value)
    torch.save({"format": 1, "spec": [1, 2]}, path)  # readable, but no checkpoint of ours
    with pytest.raises(ValueError, match="not a resnext-nas training checkpoint"):
        train(TINY, data, FAST, checkpoint_dir=tmp_path)


def test_write_atomic_replaces_or_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_atomic(target, lambda f: f.write(b"old"))

    def broken(f) -> None:
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_cpu_runs_take_every_core_unless_omp_num_threads_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measure_latency(TINY, device="cpu", repeats=1)
    assert torch.get_num_threads() == 1  # OMP_NUM_THREADS=1, set by the fixture, is respected
    monkeypatch.delenv("OMP_NUM_THREADS")
    measure_latency(TINY, device="cpu", repeats=1)
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))


def test_latency_grows_with_the_model() -> None:
    small = measure_latency(TINY, device="cpu", repeats=5)
    big = resnext.Spec("cifar", (2, 2, 2), 128, 8, 8, classes=4, resolution=16)
    large = measure_latency(big, device="cpu", repeats=5)
    assert 0 < small < large
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(TINY, repeats=0)


# --- command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "resnext51_32x4d"], "unknown preset"),
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--lr", "-0.1"], "lr"),
        (["train", "--batch-size", "0"], "batch_size"),
        (["train", "--dataset", "mnist"], "unknown dataset"),
        (["train", "--template", "cifar", "--depths", "3,3"], "depths"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_defaults_are_the_config_defaults() -> None:
    import typer.main

    import cli

    command = typer.main.get_command(cli.app).commands["train"]
    defaults = {p.name: p.default for p in command.params}
    cfg = TrainConfig()
    names = ("epochs", "batch_size", "lr", "seed", "schedule", "label_smoothing")
    for name in (*names, "warmup_epochs", "weight_decay"):
        assert defaults[name] == getattr(cfg, name), name


@pytest.mark.slow  # generates the 60k-image synthetic set: tens of seconds on 2 cores
def test_cli_trains_end_to_end_on_synthetic(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(
        "train", "--template", "cifar", "--depths", "1,1,1", "--width", "16", "--cardinality",
        "2", "--bottleneck-width", "2", "--train-images", "256", "--epochs", "2",
        "--batch-size", "32", "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record == json.loads((out / "result.json").read_text())
    assert len(record["history"]) == 2 and record["images_per_second"] > 0
    assert record["spec"]["classes"] == 10 and record["spec"]["resolution"] == 32
    assert (out / CHECKPOINT).exists()


def test_trainer_learns_the_synthetic_dataset_well_above_chance() -> None:
    # The README's figures: 8x1d-like small nets leave chance (10%) within ~190 SGD steps.
    from nas.data import load_dataset

    data = load_dataset("synthetic", synthetic_train=2500, synthetic_test=10, val_fraction=0.2)
    spec = resnext.Spec("cifar", (1, 1, 1), 32, 4, 2, classes=10, resolution=32)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu", seed=0)
    result = train(spec, data, cfg)
    assert result.status == "completed"
    assert result.val_accuracy > 0.2, [h.val_accuracy for h in result.history]


# --- sizes and numbers out of range --------------------------------------------------


def test_train_refuses_a_spec_too_large_for_memory_before_building_it() -> None:
    data = toy_data(64, classes=4, res=16, pattern="stripes")
    spec = resnext.Spec("cifar", (1000, 1000, 1000), 65536, classes=4, resolution=16)
    with pytest.raises(ValueError, match="needs at least .* GiB"):
        train(spec, data, TrainConfig(epochs=1, batch_size=16, device="cpu"))


def test_an_lr_that_overflows_the_weights_ends_the_trial_as_diverged() -> None:
    spec = resnext.Spec("cifar", (1, 1, 1), 16, 2, 2, classes=4, resolution=16)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=FLOAT32_MAX, warmup_epochs=0, device="cpu")
    assert train(spec, toy_data(64, classes=4, res=16, pattern="stripes"), cfg).status == "diverged"
