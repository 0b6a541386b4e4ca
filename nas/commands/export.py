"""``export``: a trial's spec.json, weights.pt and checked model.onnx (:mod:`nas.export`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import resnext
from nas.commands.options import JsonOpt, StorageOpt, error_line, out, print_json


def class_list(names: list[str], first: int = 5) -> str:
    """``names`` in label order, the ``first`` few and how many in all when there are more."""
    shown = ", ".join(names[:first])
    return shown if len(names) <= first else f"{shown}, ... ({len(names)} in all)"


def export_command(
    study: Annotated[str, typer.Option(help="Name of the study.", show_default=False)],
    trial: Annotated[
        int | None, typer.Option(help="Export this trial (a complete one).", show_default=False)
    ] = None,
    best: Annotated[
        bool,
        typer.Option(
            "--best",
            help="Export the study's answer: the recommendation's representative trial, or "
            "while there is none the best single proxy trial.",
        ),
    ] = False,
    recommended: Annotated[
        bool,
        typer.Option(
            "--recommended",
            help="Export the recommended configuration's representative trial (the seed "
            "closest to its mean); refused before a recommendation.",
        ),
    ] = False,
    storage: StorageOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write (default runs/export-STUDY-trial-N).", show_default=False
        ),
    ] = None,
    onnx: Annotated[
        bool, typer.Option(help="Also write model.onnx, checked against PyTorch with onnxruntime.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Export a trial: spec.json (spec, complexity, accuracy), weights.pt and model.onnx."""
    if best + recommended + (trial is not None) != 1:
        raise ValueError("give exactly one of --trial N, --best and --recommended")
    from nas.export import OnnxMismatch, export_trial

    try:
        done = export_trial(study, storage, trial, out_dir, onnx=onnx, recommended=recommended)
    except OnnxMismatch as e:
        sys.stderr.write(error_line(e))
        raise typer.Exit(1) from None
    r = done.record
    summary = {
        "folder": str(done.folder),
        "files": [str(f) for f in done.files],
        "study": r["study"],
        "trial": r["trial"],
        "onnx_max_abs_diff": done.max_abs_diff,
        "onnx_tolerance": done.tolerance,
        "class_names": r["class_names"],
        "answer": done.answer,
    }
    if as_json:
        print_json(summary)
        return
    spec = resnext.Spec.from_dict(r["spec"])
    acc = r["final_val_accuracy"]
    out.print(
        f"trial {r['trial']} of study {r['study']!r}: {spec.describe()}"
        + ("" if acc is None else f", val accuracy {acc:.2%} (final weights)")
    )
    if done.answer is not None:
        for line in weights_lines(done.answer):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    for f in done.files:
        out.print(f"  {f}", soft_wrap=True)
    names = r["class_names"]
    out.print(
        f"classes: {class_list(names)}" if names else f"classes {r['class_names_note']}",
        soft_wrap=True,
    )
    if done.max_abs_diff is not None:
        out.print(
            f"ONNX vs PyTorch: max abs difference {done.max_abs_diff:.3g} "
            f"(tolerance {done.tolerance:.3g})"
        )


def weights_lines(answer: dict[str, Any]) -> list[str]:
    """The study's answer, then what the exported weights are of it, for people."""
    from nas.search.answer import answer_line

    lines = [f"the study's {answer_line(answer)}"]
    if answer["source"] == "recommendation" and answer["seeds"] > 1:
        lines.append(
            f"these weights: trial {answer['trial']} (seed {answer['seed']}, val acc "
            f"{answer['trial_accuracy']:.1%}), the seed closest to the mean of the "
            f"{answer['seeds']}, not the best of them"
        )
    return lines
