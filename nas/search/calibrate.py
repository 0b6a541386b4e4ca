"""How far to trust a short trial: rank agreement between short and long training schedules.

K configurations from a budget are each trained twice, with the short schedule a search uses and
with an R-times longer one; the Spearman and Kendall correlations between the two rankings (with
bootstrap intervals) say how well the short trial orders architectures. Plain params and FLOPs,
ranked against the long result, are the baselines a proxy has to beat. For scale: reduced-training
proxies reach Spearman 0.61 on NAS-Bench-201 (Abdelfattah et al., ICLR 2021).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import Dataset
from nas.fileio import ensure_parent, write_json
from nas.search.records import spec_key
from nas.stats.rank import Estimate, bootstrap, kendall, spearman
from nas.training.config import TrainConfig
from resnext.budget import Config
from resnext.spec import Spec


def pick(configs: Sequence[Config], k: int, seed: int = 0) -> list[Config]:
    """K configs spread over the band: the closest per cardinality first, then a seeded draw."""
    if k < 3:
        raise ValueError(f"calibration needs at least 3 configurations to rank, got --k {k}")
    if len(configs) < k:
        raise ValueError(
            f"the budget band holds {len(configs)} configurations, fewer than --k {k}: "
            "widen --tolerance or the grid, or lower --k"
        )
    chosen = [c for c in configs if c.closest][:k]
    rest = [c for c in configs if not c.closest]
    chosen += random.Random(seed).sample(rest, k - len(chosen))
    return sorted(chosen, key=lambda c: c.complexity.flops)


def spread(configs: Sequence[Config], k: int) -> list[Config]:
    """K configs spread over skeletons, widths and complexity: the band's (depths, width)
    groups take turns, each giving configurations evenly spaced in its order by cardinality
    and FLOPs."""
    if len(configs) < k:
        raise ValueError(
            f"the budget band holds {len(configs)} configurations, fewer than --k {k}: "
            "widen --tolerance or the grid, or lower --k"
        )
    groups: dict[tuple, list[Config]] = {}
    for c in sorted(configs, key=lambda c: (c.spec.cardinality, c.complexity.flops)):
        groups.setdefault((c.spec.depths, c.spec.width), []).append(c)
    share = dict.fromkeys(groups, 0)
    while sum(share.values()) < k:  # the groups take turns until k are taken
        for g in groups:
            if share[g] < len(groups[g]) and sum(share.values()) < k:
                share[g] += 1
    chosen = []
    for g, members in groups.items():
        n = share[g]
        chosen += [members[round(i * (len(members) - 1) / max(n - 1, 1))] for i in range(n)]
    return sorted(chosen, key=lambda c: c.complexity.flops)


@dataclass(frozen=True)
class Calibration:
    """Per-config accuracies under both schedules and the rank agreement between them."""

    rows: list[dict[str, Any]]  # spec, flops, params, short/long val accuracy and status
    short_epochs: int
    long_epochs: int
    spearman: Estimate  # short vs long accuracy
    kendall: Estimate
    params_spearman: Estimate  # baseline: params vs long accuracy
    flops_spearman: Estimate  # baseline: FLOPs vs long accuracy
    params_kendall: Estimate
    flops_kendall: Estimate

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        est = {
            k: getattr(self, k).to_dict()
            for k in (
                "spearman",
                "kendall",
                "params_spearman",
                "flops_spearman",
                "params_kendall",
                "flops_kendall",
            )
        }
        return {
            "short_epochs": self.short_epochs,
            "long_epochs": self.long_epochs,
            "configs": self.rows,
            **est,
        }


def long_schedule(cfg: TrainConfig, factor: int) -> TrainConfig:
    """``cfg`` with ``factor`` times its epochs; ValueError unless ``factor`` is at least 2."""
    if factor < 2:
        raise ValueError(
            f"--factor must be at least 2 (the long schedule is R times the short), got {factor}"
        )
    return replace(cfg, epochs=cfg.epochs * factor)


def calibrate(
    configs: Sequence[Config],
    data: Dataset,
    cfg: TrainConfig,
    factor: int,
    *,
    seed: int = 0,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    done: Sequence[dict[str, Any]] = (),
) -> Calibration:
    """Train every config with ``cfg`` and with ``factor`` times its epochs; compare rankings.

    ``done`` holds rows of an earlier run (as ``on_progress`` gave them): a schedule they
    have a result for is not trained again. ``on_progress`` gets the row after each schedule,
    ``on_result`` after both.
    """
    from nas.training.loop import train

    long_cfg = long_schedule(cfg, factor)
    known = {spec_key(r["spec"]): r for r in done}
    rows = []
    for c in configs:
        spec: Spec = replace(c.spec, classes=data.classes, resolution=data.resolution)
        row: dict[str, Any] = {
            "spec": json.loads(json.dumps(spec.to_dict())),
            "notation": spec.describe(),
            "flops": c.complexity.flops,
            "params": c.complexity.params,
        }
        row.update(known.get(spec_key(row["spec"]), {}))
        for name, run_cfg in (("short", cfg), ("long", long_cfg)):
            if row.get(f"{name}_val_accuracy") is not None:
                continue
            result = train(spec, data, run_cfg)
            row[f"{name}_val_accuracy"] = result.val_accuracy
            row[f"{name}_status"] = result.status
            row[f"{name}_wall_seconds"] = result.wall_seconds
            if on_progress:
                on_progress(row)
        rows.append(row)
        if on_result:
            on_result(row)
    short = np.array([r["short_val_accuracy"] for r in rows])
    long = np.array([r["long_val_accuracy"] for r in rows])
    params = np.array([r["params"] for r in rows], dtype=float)
    flops = np.array([r["flops"] for r in rows], dtype=float)
    return Calibration(
        rows,
        cfg.epochs,
        long_cfg.epochs,
        bootstrap(spearman, short, long, seed=seed),
        bootstrap(kendall, short, long, seed=seed),
        bootstrap(spearman, params, long, seed=seed),
        bootstrap(spearman, flops, long, seed=seed),
        bootstrap(kendall, params, long, seed=seed),
        bootstrap(kendall, flops, long, seed=seed),
    )


# ------------------------------------------------------------------------------ the result file

REFERENCE = (
    "reduced-training proxies reach Spearman 0.61 on NAS-Bench-201 (Abdelfattah et al., ICLR 2021)"
)


def _malformed(configs: Any) -> str | None:
    """What is wrong with the ``configs`` of a calibration file, or None if nothing is."""
    if not isinstance(configs, list):
        return f"configs is {type(configs).__name__}, not a list"
    for i, row in enumerate(configs):
        if not isinstance(row, dict) or not isinstance(row.get("spec"), dict):
            return f"configs[{i}] has no spec object"
        try:
            Spec.from_dict(row["spec"])
        except (TypeError, ValueError, KeyError) as e:
            return f"configs[{i}].spec: {e}"
        for key, v in row.items():
            numeric = key.endswith(("_val_accuracy", "_wall_seconds")) or key in ("flops", "params")
            if (
                numeric
                and v is not None
                and (isinstance(v, bool) or not isinstance(v, int | float))
            ):
                return f"configs[{i}].{key} is {v!r}, not a number"
    return None


class CalibrationFile:
    """The JSON file of a calibration: its options, each config's results as they come, and
    finally the correlations. Written atomically after every trained schedule, so that a run
    stopped half-way resumes with the same options and the same file."""

    def __init__(self, path: str | Path, options: dict[str, Any]) -> None:
        self.path = ensure_parent(path)  # before any training
        self.options = options
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.done: list[dict[str, Any]] = self._read()

    def _read(self) -> list[dict[str, Any]]:
        """The rows of an earlier run with the same options; ValueError for another file."""
        if not self.path.exists():
            return []
        try:
            previous = json.loads(self.path.read_text())
            had = previous["options"]
        except (ValueError, KeyError, TypeError, OSError):
            raise ValueError(
                f"--out {self.path} is not a calibration file; use another --out"
            ) from None
        if not isinstance(had, dict):
            raise ValueError(f"--out {self.path} is not a calibration file; use another --out")
        if had != self.options:
            diff = ", ".join(o for o in self.options if had.get(o) != self.options[o])
            raise ValueError(
                f"--out {self.path} was made with other options (they differ in {diff}); "
                "use the same options to resume it, or another --out"
            )
        configs = previous.get("configs", [])
        problem = _malformed(configs)
        if problem:
            raise ValueError(
                f"--out {self.path} has the same options but a malformed body ({problem}); "
                "delete the file to start over, or use another --out"
            )
        return configs

    def left(self, k: int) -> int:
        """How many of ``k`` configurations still need their long schedule."""
        return k - sum(r.get("long_val_accuracy") is not None for r in self.done)

    def save(self, row: dict[str, Any]) -> None:
        """Record one config's row (after a schedule) and rewrite the file."""
        self.rows[spec_key(row["spec"])] = dict(row)
        merged = {spec_key(r["spec"]): r for r in self.done} | self.rows
        write_json(self.path, {"options": self.options, "configs": list(merged.values())})

    def finish(self, cal: Calibration) -> dict[str, Any]:
        """Write the complete result and return it."""
        result = {"options": self.options, **cal.to_dict(), "reference": REFERENCE}
        write_json(self.path, result)
        return result
