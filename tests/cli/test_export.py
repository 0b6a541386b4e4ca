"""Per-trial weights, `resnext-nas export` (spec.json, weights.pt, model.onnx) and `train --spec`.

One tiny search (the trials of tests/helpers.py: about a second each) feeds every export
test; the command lines run as subprocesses, in parallel where they can.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from math import nan
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

import resnext
from nas.export import ONNX_PACKAGES, load_spec
from nas.search.objective import Objective
from nas.search.storage import load
from nas.search.study import SearchSettings, run_folder, safe_name
from nas.search.workers import run_search
from nas.training.config import TrainConfig, recipe_config
from nas.training.loop import lr_factor, train
from resnext.complexity import complexity
from resnext.spec import Spec
from tests.helpers import TRAIN, cli_env, one_line, run_clis, tiny_space, toy_data

STUDY = "exp ort"  # a name that is not a file name as it is
EPOCHS = 2
# The searched data's classes, in label order: names that are not ASCII, and not sorted.
NAMES = ("zèbre", "chat noir", "松鼠", "ant", "bee", "cow", "dog", "eel", "fox", "gnu")


def named_data():
    """The tests' toy set with class names, as a folder or CIFAR set has them."""
    return replace(toy_data(), class_names=NAMES)


HAVE_ONNX = all(importlib.util.find_spec(p) for p in ONNX_PACKAGES)
# Without the packages the ONNX tests skip on a laptop, but fail in CI, which installs them.
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX and not os.environ.get("CI"), reason="pip install -e '.[onnx]'"
)


def accuracy(model: torch.nn.Module, norm: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Validation accuracy as the trainer measures it: (pixels - mean) / std, eval mode."""
    mean, std = (torch.as_tensor(norm[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        logits = model.eval()((torch.from_numpy(x).float() - mean) / std)
    return float((logits.argmax(1).numpy() == y).mean())


# ------------------------------------------------------------------------------ the trainer


def test_on_end_gets_the_final_weights_of_a_run() -> None:
    data, spec = toy_data(), tiny_space().configs[0].spec
    got = []
    result = train(spec, data, replace(TRAIN, epochs=EPOCHS), on_end=got.append)
    assert len(got) == 1 and set(got[0]) == {"model", "normalization"}
    model = resnext.build(spec)
    model.load_state_dict(got[0]["model"])
    acc = accuracy(model, got[0]["normalization"], data.val_x, data.val_y)
    assert acc == result.final_val_accuracy == result.history[-1].val_accuracy


def test_on_end_runs_before_a_callback_error_propagates() -> None:
    got = []

    def stop(_stats) -> None:
        raise optuna.TrialPruned("stop")

    with pytest.raises(optuna.TrialPruned):
        train(
            tiny_space().configs[0].spec,
            toy_data(),
            replace(TRAIN, epochs=3),
            callback=stop,
            on_end=got.append,
        )
    assert len(got) == 1 and "model" in got[0]


def test_paper_recipe_is_sec_5_3_and_options_given_override_it() -> None:
    cfg = recipe_config("paper", "cifar", {})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum) == (300, 128, 0.1, 0.9)
    assert (cfg.weight_decay, cfg.schedule, cfg.warmup_epochs) == (5e-4, "step", 0.0)
    steps = 390  # 50k images / batch 128
    total = cfg.epochs * steps

    def factor(epoch: int) -> float:  # at the first step of 0-based epoch ``epoch``
        return lr_factor(cfg, epoch * steps, total, steps)

    # No warm-up: the first step has the full lr; /10 at epoch 150, /100 at epoch 225.
    assert factor(0) == 1.0 and factor(149) == 1.0
    assert factor(150) == pytest.approx(0.1) and factor(224) == pytest.approx(0.1)
    assert factor(225) == pytest.approx(0.01) and factor(299) == pytest.approx(0.01)
    # A chosen length keeps the recipe's shape: 30 epochs drop at 15 and 22.5.
    short = recipe_config("paper", "cifar", {"epochs": 30, "lr": 0.05})
    assert (short.epochs, short.lr, short.schedule, short.warmup_epochs) == (30, 0.05, "step", 0)
    assert lr_factor(short, 15 * steps - 1, 30 * steps, steps) == 1.0
    assert lr_factor(short, 15 * steps, 30 * steps, steps) == pytest.approx(0.1)
    assert recipe_config(None, "cifar", {"epochs": 4}) == TrainConfig(epochs=4)
    with pytest.raises(ValueError, match="Sec. 4"):
        recipe_config("paper", "imagenet", {})
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("fast", "cifar", {})


# ------------------------------------------------------------------------------- the search


def weights_of(trial: optuna.trial.FrozenTrial) -> dict:
    return torch.load(trial.user_attrs["weights"], map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A 3-trial study with weights saved, and the folder to run command lines in."""
    cwd = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{cwd / 'study.db'}"
    runs = cwd / "trial-runs"
    settings = SearchSettings(
        tiny_space(), study=STUDY, pruner="none", latency=False, runs_dir=runs
    )
    run_search(settings, named_data(), replace(TRAIN, epochs=EPOCHS), 3, storage=url)
    return url, runs, cwd


def test_every_trained_trial_saves_its_final_weights(searched) -> None:
    url, runs, _ = searched
    trials = load(STUDY, url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    data = named_data()
    for t in trials:
        a = t.user_attrs
        path = Path(a["weights"])
        assert path.is_absolute() and path.is_file()
        assert path == (run_folder(runs, STUDY, t.number) / "weights.pt").resolve()
        assert path.parent.parent.name.startswith("exp_ort-")  # the space is replaced
        assert a["host"] == socket.gethostname()
        assert a["final_val_accuracy"] == a["curve"][-1]["val_accuracy"]
        assert a["val_accuracy"] == max(c["val_accuracy"] for c in a["curve"])
        state = weights_of(t)
        assert state["spec"] == a["spec"]
        model = resnext.build(Spec.from_dict(a["spec"]))
        model.load_state_dict(state["model"])
        assert (
            accuracy(model, state["normalization"], data.val_x, data.val_y)
            == (a["final_val_accuracy"])
        )
        assert a["class_names"] == list(NAMES) and a["augment"] == "cifar"


def test_every_trained_trial_leaves_a_result_json_beside_its_weights(searched) -> None:
    url, runs, _ = searched
    for t in load(STUDY, url).trials:
        a = t.user_attrs
        result = json.loads((run_folder(runs, STUDY, t.number) / "result.json").read_text())
        assert (result["study"], result["trial"], result["phase"]) == (STUDY, t.number, "search")
        assert result["spec"] == a["spec"] and result["seed"] == a["seed"]
        spec = Spec.from_dict(a["spec"])
        assert (result["flops"], result["params"]) == (
            complexity(spec).flops,
            complexity(spec).params,
        )
        assert result["status"] == a["status"] == "completed"
        assert result["val_accuracy"] == a["val_accuracy"] == 1 - t.values[0]
        assert result["final_val_accuracy"] == a["final_val_accuracy"]
        assert result["curve"] == a["curve"] and result["epochs"] == EPOCHS
        epoch = result["curve"][-1]
        assert {"val_accuracy", "val_loss", "train_loss", "train_seconds"} <= set(epoch)
        assert epoch["train_seconds"] > 0
        assert result["class_names"] == list(NAMES) and result["weights"] == "weights.pt"


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def one_trial(
    runs: Path, data, train: TrainConfig, pruner: optuna.pruners.BasePruner | None = None
) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """One trial of a one-spec space, weights saved under ``runs``: the study and the trial."""
    # A seeded sampler on a space without empty cells: the one trial is never a rejection.
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    space = tiny_space(depths=((1, 1, 1),))
    objective = Objective(space, data, train, ("error",), 1, latency=False, runs_dir=runs)
    study.optimize(objective, n_trials=1)
    return study, study.trials[0]


def test_a_pruned_trial_keeps_the_weights_it_has(tmp_path: Path) -> None:
    _, t = one_trial(tmp_path, toy_data(), replace(TRAIN, epochs=3), _AlwaysPrune())
    assert t.state == TrialState.PRUNED and len(t.user_attrs["curve"]) == 1
    assert t.user_attrs["final_val_accuracy"] == t.user_attrs["curve"][0]["val_accuracy"]
    assert Path(t.user_attrs["weights"]).is_file()
    result = json.loads((Path(t.user_attrs["weights"]).parent / "result.json").read_text())
    assert (result["status"], result["epochs"], result["weights"]) == ("pruned", 1, "weights.pt")
    assert result["val_accuracy"] == t.user_attrs["curve"][0]["val_accuracy"]
    assert result["class_names"] is None  # the toy set has no class names


def test_a_diverged_trial_leaves_its_result_and_no_weights(tmp_path: Path) -> None:
    overflow = replace(TRAIN, epochs=3, lr=1e12, warmup_epochs=0)  # overflows at once
    study, t = one_trial(tmp_path, named_data(), overflow)
    assert t.user_attrs["status"] == "diverged" and "weights" not in t.user_attrs
    folder = run_folder(tmp_path, study.study_name, t.number)
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]
    result = json.loads((folder / "result.json").read_text())
    assert (result["status"], result["weights"]) == ("diverged", None)
    assert result["epochs"] == len(t.user_attrs.get("curve", [])) < 3
    assert result["class_names"] == list(NAMES)


def test_no_runs_dir_saves_nothing(tmp_path: Path) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    objective = Objective(
        tiny_space(depths=((1, 1, 1),)), toy_data(), TRAIN, ("error",), n_trials=1, latency=False
    )
    study.optimize(objective, n_trials=1)
    (t,) = study.trials
    assert t.state == TrialState.COMPLETE
    assert not {"weights", "host", "final_val_accuracy"} & set(t.user_attrs)


# ------------------------------------------------------------------------------ the exports


@pytest.fixture(scope="module")
def exported(searched) -> dict[str, object]:
    """`export --best --json` (default folder) and `export --trial N` of another trial."""
    url, _, cwd = searched
    trials = load(STUDY, url).trials
    best = min(trials, key=lambda t: (t.values[0], t.number))
    other = next(t for t in trials if t.number != best.number)
    base = ["export", "--study", STUDY, "--storage", url]
    r_best, r_other = run_clis(
        [[*base, "--best", "--json"], [*base, "--trial", str(other.number), "--out", "other"]],
        cwd,
    )
    return {"best": best, "other": other, "r_best": r_best, "r_other": r_other, "cwd": cwd}


@needs_onnx
def test_export_writes_spec_weights_and_onnx(exported) -> None:
    r, best, cwd = exported["r_best"], exported["best"], exported["cwd"]
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    folder = cwd / "runs" / f"export-{safe_name(STUDY)}-trial-{best.number}"
    assert Path(summary["folder"]) == folder.relative_to(cwd)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "spec.json", "weights.pt"]
    assert summary["trial"] == best.number
    assert 0 <= summary["onnx_max_abs_diff"] <= summary["onnx_tolerance"]

    other, r2 = exported["other"], exported["r_other"]
    assert r2.returncode == 0, r2.stderr
    assert "max abs difference" in r2.stdout
    assert sorted(p.name for p in (cwd / "other").iterdir()) == [
        "model.onnx",
        "spec.json",
        "weights.pt",
    ]
    record = json.loads((cwd / "other" / "spec.json").read_text())
    assert record["trial"] == other.number and record["study"] == STUDY


@needs_onnx
@pytest.mark.parametrize("which", ["best", "other"])
def test_exported_files_reload_and_agree(exported, which: str) -> None:
    trial, cwd = exported[which], exported["cwd"]
    assert exported[f"r_{which}"].returncode == 0, exported[f"r_{which}"].stderr
    folder = Path(json.loads(exported["r_best"].stdout)["folder"]) if which == "best" else "other"
    folder = cwd / folder
    record = json.loads((folder / "spec.json").read_text())
    spec = load_spec(folder / "spec.json")
    assert spec == Spec.from_dict(trial.user_attrs["spec"])
    assert record["complexity"] == complexity(spec).to_dict()
    assert record["trial"] == trial.number
    assert record["val_accuracy"] == trial.user_attrs["val_accuracy"]
    assert record["final_val_accuracy"] == trial.user_attrs["final_val_accuracy"]
    assert record["objectives"]["error"] == trial.values[0]
    state = weights_of(trial)
    pre = record["preprocessing"]
    assert pre["input_size"] == [3, spec.resolution, spec.resolution] and pre["crop_pct"] == 1.0
    for k in ("mean", "std"):  # 0..1 units: the trainer's 0..255 values over 255
        assert np.allclose(np.array(pre[k]) * 255, state["normalization"][k].numpy())
    assert record["class_names"] == list(NAMES) and "class_names_note" not in record

    exported_model = resnext.build(spec)
    exported_model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    trial_model = resnext.build(spec)
    trial_model.load_state_dict(state["model"])
    x = torch.randn(
        5, 3, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        want = trial_model.eval()(x)
        got = exported_model.eval()(x)
    assert torch.equal(got, want)

    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 5):  # the export traced a batch of 2
        (logits,) = session.run(None, {"images": x[:batch].numpy()})
        assert logits.shape == (batch, spec.classes)
        np.testing.assert_allclose(logits, want[:batch].numpy(), atol=1e-4, rtol=1e-4)


@needs_onnx
def test_onnx_metadata_carries_spec_class_names_and_preprocessing(exported) -> None:
    import onnxruntime

    folder = exported["cwd"] / "other"
    record = json.loads((folder / "spec.json").read_text())
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    meta = session.get_modelmeta().custom_metadata_map
    # Strings as they are, not JSON-quoted; structured values as JSON.
    assert meta["study"] == STUDY and meta["trial"] == str(exported["other"].number)
    assert Spec.from_dict(json.loads(meta["spec"])) == Spec.from_dict(
        exported["other"].user_attrs["spec"]
    )
    assert json.loads(meta["class_names"]) == list(NAMES)
    assert json.loads(meta["preprocessing"]) == record["preprocessing"]
    assert json.loads(meta["input"])["name"] == "images"


def test_a_plain_pytorch_reload_with_the_preprocessing_block_gives_the_trainers_logits(
    exported,
) -> None:
    """spec.json and weights.pt alone, as a user without this package would load them: pixels
    / 255, then (x - mean) / std with the block's 0..1 values, give the logits of the trainer's
    own normalisation (0..255 units), and the trial's accuracy on its validation split."""
    assert exported["r_other"].returncode == 0, exported["r_other"].stderr
    folder = exported["cwd"] / "other"
    record = json.loads((folder / "spec.json").read_text())
    pre = record["preprocessing"]
    model = resnext.build(Spec.from_dict(record["spec"]))
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    data = named_data()
    pixels = torch.from_numpy(data.val_x).float()  # uint8 RGB, N x 3 x H x W
    assert list(pixels.shape[1:]) == pre["input_size"]
    mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        got = model(((pixels / 255) - mean) / std)
    state = weights_of(exported["other"])["normalization"]
    trainer_mean, trainer_std = (state[k].view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        want = model((pixels - trainer_mean) / trainer_std)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    predicted = [record["class_names"][k] for k in got.argmax(1).tolist()]
    truth = [NAMES[k] for k in data.val_y.tolist()]
    acc = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    assert acc == record["final_val_accuracy"]


def test_an_export_of_a_trial_without_class_names_says_they_are_unknown(
    searched, tmp_path: Path
) -> None:
    """A study searched before class names and the augmentation were recorded still exports:
    spec.json says the names are unknown, and the crop follows the spec's template."""
    url, _, cwd = searched
    best = min(load(STUDY, url).trials, key=lambda t: t.values[0])
    attrs = {k: v for k, v in best.user_attrs.items() if k not in ("class_names", "augment")}
    old = optuna.create_study(study_name="old", storage=url)
    old.add_trial(optuna.trial.create_trial(value=best.values[0], user_attrs=attrs))
    args = ["export", "--storage", url, "--study", "old", "--best", "--no-onnx", "--out"]
    (r,) = run_clis([[*args, str(tmp_path / "old")]], cwd)
    assert r.returncode == 0, r.stderr
    assert "classes unknown: the trial did not record" in r.stdout
    record = json.loads((tmp_path / "old" / "spec.json").read_text())
    assert record["class_names"] is None and record["class_names_note"].startswith("unknown")
    pre = record["preprocessing"]
    assert pre["crop_pct"] == 1.0 and "did not record its augmentation" in pre["note"]
    (r,) = run_clis(
        [[*args[:4], STUDY, "--best", "--no-onnx", "--out", str(tmp_path / "new")]], cwd
    )
    assert r.returncode == 0, r.stderr
    assert "classes: zèbre, chat noir, 松鼠, ant, bee, ... (10 in all)" in r.stdout


def test_preprocessing_follows_the_augmentation_the_trial_was_scored_with() -> None:
    from nas.export import preprocessing
    from nas.training.augment import CENTER_CROP

    spec = Spec("imagenet", (1, 1, 1, 1), 64, 4, 4, classes=5, resolution=64)
    mean, std = [127.5, 102.0, 51.0], [51.0, 25.5, 255.0]
    block = preprocessing(spec, mean, std, "imagenet")
    assert block["crop_pct"] == CENTER_CROP == 0.875 and block["input_size"] == [3, 64, 64]
    assert block["mean"] == [0.5, 0.4, 0.2] and block["std"] == [0.2, 0.1, 1.0]
    assert "shorter side to 73 px" in block["note"]  # timm: floor(64 / 0.875)
    # --augment cifar on large images: scored on the whole image, whatever the template.
    assert preprocessing(spec, mean, std, "cifar")["crop_pct"] == 1.0
    unknown = preprocessing(spec, mean, std, None)
    assert unknown["crop_pct"] == 0.875 and "imagenet template's default" in unknown["note"]


def test_export_errors_are_one_line_and_exit_2(searched, tmp_path: Path) -> None:
    url, _, cwd = searched
    study = load(STUDY, url)
    # A second study in the same storage with a pruned trial.
    pruned = optuna.create_study(study_name="pruned", storage=url)
    pruned.add_trial(
        optuna.trial.create_trial(state=TrialState.PRUNED, params={}, distributions={})
    )
    # A trial whose weights are elsewhere: a copy of the study's best with another path.
    best = min(study.trials, key=lambda t: t.values[0])
    moved = optuna.create_study(study_name="moved", storage=url)
    attrs = {**best.user_attrs, "weights": "/elsewhere/weights.pt", "host": "gpu-box-7"}
    moved.add_trial(optuna.trial.create_trial(value=best.values[0], user_attrs=attrs))
    unsaved = optuna.create_study(study_name="unsaved", storage=url)
    attrs = {k: v for k, v in best.user_attrs.items() if k not in ("weights", "host")}
    unsaved.add_trial(optuna.trial.create_trial(value=best.values[0], user_attrs=attrs))
    unsaved.add_trial(
        optuna.trial.create_trial(value=0.9, user_attrs={**attrs, "status": "diverged"})
    )

    base = ["export", "--storage", url, "--no-onnx"]
    calls = {
        "unknown": [*base, "--study", "nope", "--best"],
        "no trial": [*base, "--study", STUDY, "--trial", "99"],
        "pruned": [*base, "--study", "pruned", "--trial", "0"],
        "none complete": [*base, "--study", "pruned", "--best"],
        "moved": [*base, "--study", "moved", "--best", "--out", str(tmp_path / "moved")],
        "unsaved": [*base, "--study", "unsaved", "--trial", "0", "--out", str(tmp_path / "un")],
        "diverged": [*base, "--study", "unsaved", "--trial", "1", "--out", str(tmp_path / "d")],
        "neither": [*base, "--study", STUDY],
        "both": [*base, "--study", STUDY, "--best", "--trial", "0"],
    }
    r = dict(zip(calls, run_clis(list(calls.values()), cwd), strict=True))
    one_line(r["unknown"], "no study 'nope'")
    one_line(r["no trial"], "no trial 99", "trials: 0..2")
    one_line(r["pruned"], "trial 0", "PRUNED, not complete", "--best")
    one_line(r["none complete"], "no complete trial")
    one_line(r["moved"], "/elsewhere/weights.pt", "gpu-box-7", "resnext-nas train --spec")
    one_line(r["unsaved"], "saved no weights", "resnext-nas train --spec")
    one_line(r["diverged"], "trial 1", "diverged", "resnext-nas train --spec", "lower --lr")
    one_line(r["neither"], "exactly one of --trial N, --best and --recommended")
    one_line(r["both"], "exactly one of --trial N, --best and --recommended")
    # Where the weights are missing, the spec is still written, for `train --spec`.
    assert load_spec(tmp_path / "moved" / "spec.json") == Spec.from_dict(best.user_attrs["spec"])
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == ["spec.json"]


def test_export_without_the_onnx_packages_says_how_to_get_them(searched, tmp_path: Path) -> None:
    url, _, cwd = searched
    # The packages hidden: an import of onnxscript fails as if it were not installed.
    code = (
        "import sys; sys.modules['onnxscript'] = None; sys.argv[0] = 'resnext-nas'; "
        "import cli; cli.main()"
    )
    out = tmp_path / "x"
    args = ["export", "--study", STUDY, "--storage", url, "--best", "--out", str(out)]
    env = cli_env()
    r = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    one_line(r, "missing: onnxscript", "pip install -e '.[onnx]'", "--no-onnx")
    assert not out.exists()  # refused before writing anything
    ok = subprocess.run(
        [sys.executable, "-c", code, *args, "--no-onnx"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.iterdir()) == ["spec.json", "weights.pt"]


def copy_with_weights(url: str, name: str, path: Path, corrupt, **attrs) -> None:
    """Study ``name``: a copy of the best trial whose weights, changed by ``corrupt``, are at
    ``path`` (and whose user attributes ``attrs`` override)."""
    best = min(load(STUDY, url).trials, key=lambda t: t.values[0])
    state = weights_of(best)
    corrupt(state)
    torch.save(state, path)
    user = {**best.user_attrs, "weights": str(path), **attrs}
    copy = optuna.create_study(study_name=name, storage=url)
    copy.add_trial(optuna.trial.create_trial(value=best.values[0], user_attrs=user))


def negative_variance(state: dict) -> None:
    next(t for k, t in state["model"].items() if k.endswith("running_var")).fill_(-1.0)


def huge_weights(state: dict) -> None:
    next(t for t in state["model"].values() if t.dim() == 4).fill_(3e38)  # the stem's conv


def nan_normalisation(state: dict) -> None:
    state["normalization"]["mean"][1] = float("nan")


def test_weights_that_give_nan_are_refused_before_anything_is_written(
    searched, tmp_path: Path
) -> None:
    """Finite weights with a negative BN variance or 3e38 values give NaN logits, and a NaN
    normalisation is no JSON: each is one line and exit 2, and no folder is left behind."""
    url, _, cwd = searched
    cases = {
        "negvar": (negative_variance, "running_var holds a negative variance"),
        "huge": (huge_weights, "its largest weight is 3e+38"),
        "nannorm": (nan_normalisation, "input normalisation (mean [", "nan"),
    }
    for name, (corrupt, *_) in cases.items():
        copy_with_weights(url, name, tmp_path / f"{name}.pt", corrupt)
    calls = [
        ["export", "--storage", url, "--study", name, "--best", "--no-onnx", "--out",
         str(tmp_path / f"out-{name}")]
        for name in cases
    ]  # fmt: skip
    for (name, (_, *needles)), r in zip(cases.items(), run_clis(calls, cwd), strict=True):
        one_line(r, *needles, "resnext-nas train --spec")
        if name != "nannorm":
            one_line(r, "NaN or inf in", "logits on a random batch", "nothing is exported")
        assert not (tmp_path / f"out-{name}").exists()


@needs_onnx
def test_an_onnx_export_of_nan_weights_fails_before_the_graph_is_written(
    searched, tmp_path: Path
) -> None:
    url, _, cwd = searched
    copy_with_weights(url, "negvar-onnx", tmp_path / "w.pt", negative_variance)
    (tmp_path / "out").mkdir()  # a folder the user made stays, empty
    args = ["export", "--storage", url, "--study", "negvar-onnx", "--best", "--out"]
    (r,) = run_clis([[*args, str(tmp_path / "out")]], cwd)
    one_line(r, "NaN or inf in", "negative variance")
    assert "max abs difference" not in r.stdout
    assert list((tmp_path / "out").iterdir()) == []


def test_spec_json_is_strict_json(tmp_path: Path) -> None:
    """A NaN that reaches the record (attributes are cleaned, the normalisation checked before)
    is refused naming its field, where json.dumps would write a bare NaN."""
    from nas.export import _write_record

    path = tmp_path / "spec.json"
    with pytest.raises(ValueError, match=r"would hold normalization\.std\[2\] = inf"):
        _write_record(path, {"spec": {}, "normalization": {"std": [1.0, 2.0, float("inf")]}})
    with pytest.raises(ValueError, match=r"would hold objectives\.error = nan"):
        _write_record(path, {"objectives": {"error": nan}})
    assert not path.exists()
    _write_record(path, {"a": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": [1.5, None]}


# ------------------------------------------------------------------------------ train --spec


def test_load_spec_reads_exports_show_json_and_bare_specs(tmp_path: Path) -> None:
    spec = Spec("cifar", (1, 2, 1), 16, 4, 2, classes=7, resolution=8)
    for i, content in enumerate(
        [
            {"spec": spec.to_dict(), "complexity": complexity(spec).to_dict(), "trial": 3},
            spec.to_dict(),
        ]
    ):
        (tmp_path / f"{i}.json").write_text(json.dumps(content))
        assert load_spec(tmp_path / f"{i}.json") == spec
    for bad, message in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds no spec"),
        ('{"spec": {"template": "cifar", "depth": [1, 1, 1]}}', "unknown spec fields: depth"),
        ('{"template": "cifar", "depths": [1, 1]}', "3 stages"),
        ('{"template": "cifar", "width": "wide"}', "width must be a positive integer"),
        ('{"template": "cifar", "depths": 3}', "spec file"),
    ]:
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(ValueError, match=message):
            load_spec(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no spec file"):
        load_spec(tmp_path / "absent.json")


def test_train_spec_retrains_an_export_with_the_paper_recipe(exported, tmp_path: Path) -> None:
    src = exported["cwd"] / "other" / "spec.json"
    assert exported["r_other"].returncode == 0, exported["r_other"].stderr
    spec = load_spec(src)
    show = tmp_path / "show.json"
    bad = tmp_path / "bad.json"
    bad.write_text('{"spec": {"template": "cifar", "cardinality": 0}}')
    common = ["--dataset", "synthetic", "--train-images", "200", "--quiet"]
    calls = [
        ["show", "resnext29_8x64d", "--json"],
        ["train", "--spec", str(src), "--recipe", "paper", "--epochs", "1", "--json",
         "--out", str(tmp_path / "run"), *common],
        ["train", "--spec", str(bad), *common],
        ["train", "--spec", str(tmp_path / "absent.json"), *common],
        ["train", "resnext29_8x64d", "--spec", str(src), *common],
        ["train", "--spec", str(src), "--recipe", "fast", *common],
    ]  # fmt: skip
    r = run_clis(calls, tmp_path)
    assert r[0].returncode == 0, r[0].stderr
    show.write_text(r[0].stdout)
    assert load_spec(show) == resnext.preset("resnext29_8x64d")

    run = r[1]
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    trained = Spec.from_dict(record["spec"])
    # The architecture of the file, the classes and resolution of the data, and a notice.
    assert (trained.depths, trained.width, trained.cardinality, trained.bottleneck_width) == (
        spec.depths,
        spec.width,
        spec.cardinality,
        spec.bottleneck_width,
    )
    assert (trained.classes, trained.resolution) == (10, 32) != (spec.classes, spec.resolution)
    note = run.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("note:") and "32x32" in note[0], run.stderr
    cfg = record["config"]
    assert len(record["history"]) == 1 and cfg["epochs"] == 1  # --epochs overrides the recipe
    assert (cfg["schedule"], cfg["warmup_epochs"], cfg["weight_decay"]) == ("step", 0.0, 5e-4)
    assert (cfg["batch_size"], cfg["lr"], cfg["momentum"]) == (128, 0.1, 0.9)

    one_line(r[2], "bad.json", "cardinality must be a positive integer")
    one_line(r[3], "no spec file")
    one_line(r[4], "a preset or --spec, not both")
    one_line(r[5], "unknown recipe 'fast'")
