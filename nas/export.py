"""Export a trained trial of a study: its spec as JSON, its weights, and a checked ONNX model.

A search saves each trial's final weights where it ran (``nas.search.study.run_folder``); this
module
finds them through the trial's ``weights`` and ``host`` attributes and writes, into one folder:

- ``spec.json``: the spec, its complexity, the trial's identity and accuracy, the class names
  in label order, and a timm-style ``preprocessing`` block (input size, interpolation, crop, and
  the mean and std the weights were trained with, in 0..1 units) (:func:`load_spec` reads it
  back);
- ``weights.pt``: the model's state dict, for ``resnext.build(spec).load_state_dict``;
- ``model.onnx``: the same network with a dynamic batch dimension, the spec, class names and
  preprocessing in its metadata, run once with onnxruntime against PyTorch before it is called
  done.

torch and Optuna are imported inside the functions that need them, so that ``resnext-nas train
--spec`` reads a spec file without them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.text import shell_word
from resnext.spec import Spec

if TYPE_CHECKING:
    import torch
    from optuna.trial import FrozenTrial

SPEC_FILE = "spec.json"
MAX_SPEC_BYTES = 1 << 20  # a spec file is a few hundred bytes; more is not a spec
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
# The exported graph must give PyTorch's logits to float32 rounding: 1e-4 of the largest logit
# (or absolute, for logits below 1). Summation order differs between the two runtimes.
TOLERANCE = 1e-4
EXPORT_BATCH, CHECK_BATCH = 2, 3  # the check runs another batch size than the trace saw


class OnnxMismatch(RuntimeError):
    """The ONNX model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class Exported:
    """What :func:`export_trial` wrote, and the ONNX check's result."""

    folder: Path
    files: list[Path]
    record: dict[str, Any]  # the content of spec.json
    max_abs_diff: float | None  # ONNX vs PyTorch; None without ONNX
    tolerance: float | None
    # The study's answer the trial stands for (nas.search.answer); None for a trial by number.
    answer: dict[str, Any] | None = None


def default_out(study: str, number: int) -> Path:
    """``runs/export-<study>-trial-<number>`` in the working directory."""
    from nas.search.study import safe_name

    return Path("runs") / f"export-{safe_name(study)}-trial-{number}"


def check_onnx_packages() -> None:
    """ValueError saying how to install the ONNX packages unless all of them are installed.

    Found, not imported: importing them takes seconds (onnxscript alone 3.7 s on 2 cores), and
    an export refused for its weights should say so at once. They are imported where used.
    """
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"ONNX export needs {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}); "
            "pip install -e '.[onnx]', or use --no-onnx"
        )


def pick_trial(
    study: Any, number: int | None, recommended: bool = False
) -> tuple[FrozenTrial, dict[str, Any] | None]:
    """The trial to export and the study's answer it stands for (None for ``--trial N``).

    ``number`` None exports the study's answer (:func:`nas.search.answer.study_answer`): the
    recommended configuration's representative trial, the seed closest to its mean, or, while
    there is no recommendation, the best single proxy trial. ``recommended`` refuses the latter.
    """
    from optuna.trial import TrialState

    from nas.search.answer import answer_of
    from nas.search.attrs import display_state

    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    if number is None:
        answer = answer_of(study)
        if recommended and (answer is None or answer["source"] != "recommendation"):
            raise ValueError(
                f"study {name!r} has no confirmed configuration; run its confirmation "
                "phase (`resnext-nas search --confirm K`) first, or export --best, the best "
                "single proxy trial"
            )
        if answer is None:
            raise ValueError(f"study {name!r} has no complete trial to export yet")
        (found,) = [t for t in trials if t.number == answer["trial"]]
        return found, answer
    found = [t for t in trials if t.number == number]
    if not found:
        have = f"0..{trials[-1].number}" if trials else "none"
        raise ValueError(f"study {name!r} has no trial {number} (trials: {have})")
    t = found[0]
    if t.state != TrialState.COMPLETE:
        raise ValueError(
            f"trial {number} of study {name!r} is {display_state(t)}, not complete; export a "
            f"complete one (see `resnext-nas trials --study {shell_word(name)}`) or use --best"
        )
    return t, None


def _record(study: Any, trial: FrozenTrial, storage: str) -> dict[str, Any]:
    """spec.json's content but for the normalisation: spec, complexity, identity, accuracy.

    Read from the trial's :func:`nas.search.records.trial_record`, as ``trials`` and the dashboard
    do.
    """
    from nas.search.records import objectives_of, trial_record
    from nas.search.storage import redact
    from resnext.complexity import complexity

    r = trial_record(trial, study.study_name)
    if r["spec"] is None:
        raise ValueError(
            f"trial {trial.number} of study {study.study_name!r} has no readable spec ({r['note']})"
        )
    spec = Spec.from_dict(r["spec"])
    return {
        "spec": spec.to_dict(),
        "complexity": complexity(spec).to_dict(),
        "study": study.study_name,
        "storage": redact(storage),
        "trial": trial.number,
        "objectives": dict(zip(objectives_of(study), trial.values or [], strict=False)),
        "val_accuracy": r["val_accuracy"],  # the best epoch's, what the search ranked
        "final_val_accuracy": r["final_val_accuracy"],  # of the exported weights
        "epochs": r["epochs"],
        "status": r["status"],
        "seed": r["seed"],
        "hparams": r["hparams"],
        "weights_source": r["weights"],
        "host": r["host"],
        "input": {"name": "images", "shape": ["batch", 3, spec.resolution, spec.resolution]},
        "output": {"name": "logits", "shape": ["batch", spec.classes]},
        **_class_names(r["class_names"], spec),
        "augment": r["augment"],  # the data's augmentation family: the crop it was scored with
    }


def _class_names(names: list[str] | None, spec: Spec) -> dict[str, Any]:
    """``class_names``: the trial's, one per logit in label order; None with a note saying why
    where they are unknown (a trial searched before they were kept) or do not fit the spec."""
    if names is not None and len(names) == spec.classes:
        return {"class_names": list(names)}
    why = (
        "the trial did not record its data's class names (searched before they were kept)"
        if names is None
        else f"the trial recorded {len(names)} class names for {spec.classes} classes"
    )
    return {"class_names": None, "class_names_note": f"unknown: {why}; logit k is class k"}


def _load_weights(path: Path, spec: Spec, where: str) -> dict[str, Any]:
    """A trial's weights file, checked to hold weights of ``spec``; else ValueError."""
    import torch

    from nas.fileio import load_tensors

    state = load_tensors(path, where)
    if not isinstance(state, dict) or not {"model", "normalization", "spec"} <= set(state):
        raise ValueError(f"{path} is not a resnext-nas trial weights file; {where}")
    if state["spec"] != spec.to_dict():
        raise ValueError(f"{path} holds weights of another spec than the trial's; {where}")
    if not isinstance(state["model"], dict):
        raise ValueError(f"{path} holds no state dict under 'model'; {where}")
    bad = [
        k
        for k, t in state["model"].items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(t.isfinite().all())
    ]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ValueError(f"{path}: tensor {bad[0]}{more} holds NaN or inf; {where}")
    return state


def state_dict_mismatch(model: torch.nn.Module, state_dict: dict[str, Any], first: int = 3) -> str:
    """What keeps ``state_dict`` from loading into ``model``: missing, unexpected and
    mis-shaped keys, the ``first`` few of each; "" when it fits."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    shapes = [
        f"{k} {tuple(getattr(state_dict[k], 'shape', ()))} for {tuple(want[k].shape)}"
        for k in want
        if k in state_dict and tuple(getattr(state_dict[k], "shape", ())) != tuple(want[k].shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if keys:
            more = f", ... ({len(keys)} in all)" if len(keys) > first else ""
            parts.append(f"{label} {', '.join(keys[:first])}{more}")
    return "; ".join(parts)


def export_trial(
    study_name: str,
    storage: str | None = None,
    number: int | None = None,
    out: str | Path | None = None,
    *,
    onnx: bool = True,
    tolerance: float = TOLERANCE,
    recommended: bool = False,
) -> Exported:
    """Write spec.json, weights.pt and (with ``onnx``) model.onnx of a trial into ``out``.

    ``number`` None exports the study's answer (:func:`pick_trial`); ``recommended`` the same,
    refused while there is no recommendation. A trial whose weights are not on this machine
    still gets its spec.json, and a ValueError saying where they were written.
    :class:`OnnxMismatch` if onnxruntime's outputs differ from PyTorch's beyond ``tolerance``.
    """
    import socket

    from nas.fileio import ensure_folder
    from nas.search.storage import load, storage_url

    study = load(study_name, storage, read_only=True)
    trial, answer = pick_trial(study, None if recommended else number, recommended)
    if onnx:
        check_onnx_packages()  # before any file is written
    if "spec" not in trial.user_attrs:
        raise ValueError(f"trial {trial.number} of study {study_name!r} has no spec")
    record = _record(study, trial, storage_url(storage))
    spec = Spec.from_dict(record["spec"])
    target = Path(out if out is not None else default_out(study_name, trial.number))
    created = not target.exists()
    folder = ensure_folder(target)
    retrain = f"retrain it with `resnext-nas train --spec {shell_word(folder / SPEC_FILE)}`"
    source, host = record["weights_source"], record["host"]
    if source is None and record["status"] == "diverged":
        _write_record(folder / SPEC_FILE, record)
        raise ValueError(
            f"trial {trial.number} of study {study_name!r} diverged, so it kept no weights; "
            f"{retrain} and a lower --lr"
        )
    if source is None:
        _write_record(folder / SPEC_FILE, record)
        raise ValueError(
            f"trial {trial.number} of study {study_name!r} saved no weights (searched with "
            f"--no-save-weights, or before weights were saved); {retrain}"
        )
    if not Path(source).is_file():
        _write_record(folder / SPEC_FILE, record)
        here = "this host" if host == socket.gethostname() else "this machine"
        raise ValueError(
            f"weights of trial {trial.number} of study {study_name!r} were written to {source} "
            f"on host {host}, and are not on {here}; copy them there, or {retrain}"
        )
    try:  # nothing is written until the weights are known to give numbers
        state = _load_weights(Path(source), spec, retrain)
        mean, std = _normalization(state["normalization"], Path(source), retrain)
        record["preprocessing"] = preprocessing(spec, mean, std, record["augment"])
        model = _model(spec, state["model"])
        check_finite(model, spec, Path(source), retrain)
    except ValueError:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # the folder this export made, empty: gone again
        raise
    files = [folder / SPEC_FILE, folder / WEIGHTS_FILE]
    _write_record(files[0], record)
    _save_state_dict(files[1], model)
    diff = bound = None
    if onnx:
        files.append(folder / ONNX_FILE)
        to_onnx(model, spec, files[-1])
        add_metadata(
            files[-1],
            {
                "spec": record["spec"],
                "preprocessing": record["preprocessing"],
                **({"class_names": names} if (names := record["class_names"]) else {}),
                "input": record["input"],
                "output": record["output"],
                "study": record["study"],
                "trial": record["trial"],
            },
        )
        diff, bound = check_onnx(model, spec, files[-1], tolerance=tolerance)
        if not diff <= bound:  # a NaN difference compares false, and is a mismatch
            how = (
                f"differs from the PyTorch model by up to {diff:.3g} on a batch of "
                f"{CHECK_BATCH}, more than the tolerance {bound:.3g}"
                if math.isfinite(diff)
                else f"gives NaN or inf logits on a batch of {CHECK_BATCH} where PyTorch's are "
                "finite"
            )
            raise OnnxMismatch(f"{files[-1]} {how}; the file is kept to inspect")
    return Exported(folder, files, record, diff, bound, answer)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """spec.json, strict JSON: a NaN or infinity anywhere is a ValueError naming its field."""
    from nas.fileio import write_json

    if where := _non_finite(record):
        raise ValueError(f"{path} would hold {where}, which JSON cannot; nothing is written")
    write_json(path, record, allow_nan=False)


def _non_finite(obj: Any, where: str = "") -> str | None:
    """``field = value`` of the first NaN or infinity inside a JSON-ready object, else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where or 'the value'} = {obj}"
    if isinstance(obj, dict):
        inner = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        inner = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    return next((found for at, v in inner if (found := _non_finite(v, at))), None)


def _normalization(norm: Any, path: Path, where: str) -> tuple[list[float], list[float]]:
    """The weights' input normalisation, mean and std per RGB channel in 0..255 pixel units:
    finite, and the std positive, else ValueError in one line."""
    try:
        mean, std = ([float(v) for v in norm[k]] for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError(f"{path} holds no readable input normalisation; {where}") from None
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(
            f"{path}: the input normalisation has {len(mean)} means and {len(std)} stds, not 3 "
            f"(one per RGB channel); {where}"
        )
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise ValueError(
            f"{path}: the input normalisation (mean {mean}, std {std}) is not a finite mean and "
            f"a finite positive std per channel; {where}"
        )
    return mean, std


def preprocessing(
    spec: Spec, mean: list[float], std: list[float], augment: str | None
) -> dict[str, Any]:
    """How an image becomes the model's input, in timm's data-config keys (``input_size``,
    ``interpolation``, ``crop_pct``, ``crop_mode``, ``mean``, ``std``): mean and std in 0..1
    units, as timm and torchvision's ``Normalize`` after ``ToTensor`` take them.

    ``mean`` and ``std`` are the trainer's, in 0..255 pixel units. The crop is the view a trial
    is scored on (:func:`nas.training.augment.evaluation_view`): the whole image for the CIFAR
    augmentation, its central :data:`~nas.training.augment.CENTER_CROP` for the ImageNet one.
    ``augment`` None (a trial that did not record it) takes the spec's template, whose
    augmentation is the default.
    """
    from nas.training.augment import CENTER_CROP

    family = augment if augment in ("cifar", "imagenet") else spec.template
    crop_pct = 1.0 if family == "cifar" else CENTER_CROP
    side = spec.resolution
    scale = math.floor(side / crop_pct)  # timm's transforms_factory: the side before the crop
    block: dict[str, Any] = {
        "input_size": [3, side, side],
        "interpolation": "bilinear",
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "mean": [m / 255 for m in mean],
        "std": [v / 255 for v in std],
        "note": (
            f"RGB; resize the shorter side to {scale} px (bilinear), center-crop {side}x{side}, "
            "scale to 0..1 (pixels / 255), then (x - mean) / std per channel"
        ),
    }
    if augment != family:
        block["note"] += (
            f"; the trial did not record its augmentation, so crop_pct is that of the "
            f"{family} template's default"
        )
    return block


def check_input(spec: Spec, batch: int = CHECK_BATCH, seed: int = 0) -> torch.Tensor:
    """The random batch that the export checks the model on (the same for PyTorch and ONNX)."""
    import torch

    return torch.randn(
        batch, 3, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(seed)
    )


def check_finite(model: torch.nn.Module, spec: Spec, path: Path, where: str) -> None:
    """ValueError unless ``model``'s logits on :func:`check_input` are all finite (``model``
    holds the weights read from ``path``).

    Finite weights can still give NaN: a batch-norm running variance below 0 (its square root),
    or weights near float32's largest (3.4e38) that overflow in the first conv. The cause found
    in the state dict is named.
    """
    import torch

    with torch.no_grad():
        logits = model(check_input(spec))
    if bool(logits.isfinite().all()):
        return
    state = model.state_dict()
    negative = [k for k, t in state.items() if k.endswith("running_var") and bool((t < 0).any())]
    if negative:
        cause = f"{negative[0]} holds a negative variance"
    else:
        largest = max(
            float(t.abs().max()) for t in state.values() if t.is_floating_point() and t.numel()
        )
        cause = f"its largest weight is {largest:.3g}"
    bad = int((~logits.isfinite()).sum())
    raise ValueError(
        f"the weights in {path} give NaN or inf in {bad} of {logits.numel()} logits on a random "
        f"batch ({cause}), so nothing is exported; {where}"
    )


def _model(spec: Spec, state_dict: dict[str, Any]) -> torch.nn.Module:
    """``resnext.build(spec)`` with ``state_dict`` loaded, in eval mode."""
    import resnext

    model = resnext.build(spec)
    if problem := state_dict_mismatch(model, state_dict):
        raise ValueError(f"the weights do not fit {spec.describe()}: {problem}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"the weights do not fit {spec.describe()}: {first}") from None
    return model.eval()


def _save_state_dict(path: Path, model: torch.nn.Module) -> None:
    import torch

    from nas.fileio import write_atomic

    write_atomic(path, lambda f: torch.save(model.state_dict(), f))


def to_onnx(model: torch.nn.Module, spec: Spec, path: Path) -> None:
    """Write ``model`` (eval mode) as one ONNX file with a dynamic batch dimension.

    The torch.export-based exporter (``dynamo=True``), not the TorchScript one: since torch 2.9
    it is the default and the legacy path warns that it will be removed. It needs onnxscript
    besides onnx, and takes seconds where the legacy one takes a fraction of a second.
    """
    import torch

    x = torch.randn(EXPORT_BATCH, 3, spec.resolution, spec.resolution)
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" warnings
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecations inside torch.export
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,  # one file: the weights inside the graph
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def add_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store ``meta`` in the ONNX file's metadata (``metadata_props``): a string as it is, any
    other value (a number, a list, an object) as JSON.

    A runtime reads it back with ``onnxruntime``'s ``get_modelmeta().custom_metadata_map``: the
    spec, the class names and the preprocessing travel with the graph.
    """
    import onnx

    from nas.fileio import write_atomic

    model = onnx.load(str(path))
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    onnx.helper.set_model_props(model, props)
    data = model.SerializeToString()
    write_atomic(path, lambda f: f.write(data))


def check_onnx(
    model: torch.nn.Module,
    spec: Spec,
    path: Path,
    *,
    batch: int = CHECK_BATCH,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Max abs difference of onnxruntime's logits from PyTorch's on a random batch, and the
    bound it must stay within (``tolerance`` times the largest logit, at least ``tolerance``)."""
    import numpy as np
    import onnxruntime
    import torch

    x = check_input(spec, batch, seed)
    with torch.no_grad():
        want = model(x).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    if got.shape != want.shape:
        return float("inf"), tolerance
    diff = float(np.abs(got - want).max())
    return diff, tolerance * max(1.0, float(np.abs(want).max()))


def load_spec(path: str | Path) -> Spec:
    """The spec in a JSON file: an export's spec.json, the output of ``resnext-nas show --json``
    (both have a ``spec`` object), or a bare spec dict; ValueError in one line otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:  # a bounded read: /dev/zero or a huge file must not hang
            raw = f.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise ValueError(
                f"spec file {path} is larger than {MAX_SPEC_BYTES:,} bytes; a spec is a few "
                "hundred, so this is not one"
            )
        text = raw.decode()
    except FileNotFoundError:
        raise ValueError(f"no spec file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read spec file {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"spec file {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"spec file {path} nests its JSON too deeply to be a spec") from None
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]
    if not isinstance(data, dict) or "template" not in data:
        raise ValueError(
            f"spec file {path} holds no spec: expected an object with a template, depths, "
            'width, cardinality and bottleneck_width, or one with such a "spec" object'
        )
    try:
        return Spec.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"spec file {path}: {e}") from None
