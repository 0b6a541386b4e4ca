"""Write docs/report.md and its figures from real runs of the paper's studies and a calibration.

Every number in the report is read from the study storage and the calibration file; the paper's
figures it compares against are quoted with their table. The verdicts ("agrees", "disagrees",
"inconclusive") are computed from the seeds' spread, as stated next to each.

    python scripts/make_report.py --storage sqlite:///runs/report.db \
        --calibration runs/calibration.json [--notes docs/report-notes.md]
    python scripts/make_report.py --recipes RECIPES.json --update  # that section only

(`scripts/report_runs.sh` makes the runs and then calls this.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import studies  # noqa: E402
from nas import dashboard as dash  # noqa: E402
from nas.dashboard import records_from_study, spec_errors  # noqa: E402
from nas.search.records import trial_rows  # noqa: E402
from resnext.complexity import format_count  # noqa: E402
from resnext.spec import Spec  # noqa: E402

# Table 3 (ImageNet-1K top-1 error %, ResNeXt-50 at ResNet-50's complexity), quoted for the
# direction of the effect; the proxy's absolute errors are not comparable.
TABLE3 = {1: 23.9, 2: 23.0, 4: 22.6, 8: 22.3, 32: 22.2}


def notation(spec: dict[str, Any]) -> str:
    return Spec.from_dict(spec).notation


def spearman(x: list[float], y: list[float]) -> float:
    import numpy as np

    from nas.stats.rank import spearman as rho

    return float(rho(np.array(x, dtype=float), np.array(y, dtype=float)))


def per_spec(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """spec_errors (mean/std in %) plus the per-seed errors, by C then d."""
    by_number = {r["number"]: r for r in records}
    rows = spec_errors(records)
    for r in rows:
        r["errors"] = [100 * (1 - by_number[n]["val_accuracy"]) for n in r["numbers"]]
        r["seeds"] = [by_number[n].get("seed") for n in r["numbers"]]
    return sorted(rows, key=lambda r: (r["spec"]["cardinality"], r["spec"]["bottleneck_width"]))


MAX_SEEDS = 100  # past this many seeds a difference is too small to matter at proxy scale


def verdict(diff: float, se: float, n: int, paper_sign: int) -> str:
    """Agreement of a difference of ``n`` paired seeds with the paper's sign, at two SEs."""
    if n < 2:
        return "inconclusive (one seed: no spread to judge by)"
    if se == 0:
        return "inconclusive (no spread between the seeds to judge by)"
    if abs(diff) < 2 * se:
        # With the per-seed spread s = SE * sqrt(n), n' seeds settle it when 2 s / sqrt(n')
        # < |diff|: n' > (2 s / diff)^2.
        spread = se * math.sqrt(n)
        need = math.floor((2 * spread / abs(diff)) ** 2) + 1 if diff else None
        if need is None or need > MAX_SEEDS:
            settle = f"; more than {MAX_SEEDS} seeds at this spread: no effect to speak of"
        else:
            settle = f"; about {need} seeds would settle it at this spread"
        return f"inconclusive (|{diff:+.2f}| < 2 x SE {se:.2f}{settle})"
    return "agrees" if math.copysign(1, diff) == paper_sign else "disagrees"


def paired_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, int]:
    """Mean of a's error minus b's over the seeds both have, its standard error, the seeds."""
    ea = dict(zip(a["seeds"], a["errors"], strict=True))
    eb = dict(zip(b["seeds"], b["errors"], strict=True))
    diffs = [ea[s] - eb[s] for s in ea if s in eb]
    if not diffs:
        return float("nan"), float("nan"), 0
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return statistics.fmean(diffs), se, len(diffs)


def figure_png(fig: Any, png: Path, width: int = 900, height: int = 520) -> Path:
    """A PNG of one plotly figure, drawn by headless Chromium from an offline HTML page."""
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "fig.html"
        fig.update_layout(width=width, height=height)
        fig.write_html(
            page, include_plotlyjs=True, full_html=True, config={"displayModeBar": False}
        )
        dash.screenshot(page, png, width=width, height=height, wait_ms=4000)
    return png


def figure_lines(fig: Any, png: Path, caption: str) -> list[str]:
    """The markdown of the figure's PNG once drawn; a note instead when there is no Chromium."""
    try:
        figure_png(fig, png)
    except ValueError as e:  # no Chromium: the numbers stand without the picture
        print(f"figure {png.name} skipped: {e}", file=sys.stderr)
        return [f"*({caption}: not drawn, {e}.)*", ""]
    return [f"![{caption}]({png.parent.name}/{png.name})", ""]


def section_table3(storage: str, out: Path, lines: list[str], tag: str = "") -> None:
    d = studies.get("cardinality-vs-width")
    records = records_from_study(dash.load_study(d.name, storage))
    rows = per_spec(records)
    lines += [
        f"### {d.title}: {d.citation}",
        "",
        d.description,
        "",
        "| spec | C·d | FLOPs | params | error % (mean ± std) | seeds | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["spec"]
        lines.append(
            f"| {notation(s)} | {s['cardinality'] * s['bottleneck_width']} | "
            f"{format_count(r['flops'])} | {format_count(r['params'])} | "
            f"{r['mean']:.2f} ± {r['std']:.2f} | {r['n']} | "
            + ", ".join(f"{e:.1f}" for e in r["errors"])
            + " |"
        )
    planned = len(d.space().specs)
    if len(rows) < 2:
        lines += [
            "",
            f"Only {len(rows)} of the {planned} specs finished: nothing to compare yet.",
            "",
        ]
        return
    if len(rows) < planned:
        lines += ["", f"**{len(rows)} of the {planned} specs finished** (the run is resumable)."]
    cs = [r["spec"]["cardinality"] for r in rows]
    rho = spearman(cs, [r["mean"] for r in rows])
    paper_rho = spearman(list(TABLE3), list(TABLE3.values()))
    lo, hi = rows[0], rows[-1]
    diff, se, n = paired_difference(hi, lo)
    lines += [
        "",
        f"- Spearman correlation of C with the mean error: **{rho:+.2f}** (Table 3, ResNeXt-50 "
        f"on ImageNet: {paper_rho:+.2f}, error falling from "
        f"{TABLE3[1]} at 1x64d to {TABLE3[32]} at 32x4d).",
        f"- {notation(hi['spec'])} minus {notation(lo['spec'])}, paired by seed: "
        f"**{diff:+.2f} points** (SE {se:.2f}, {n} seeds; Table 3: "
        f"{TABLE3[32] - TABLE3[1]:+.1f}). Against the paper's direction (negative): "
        f"**{verdict(diff, se, n, -1)}**.",
        f"- Spread of the FLOPs: {format_count(min(r['flops'] for r in rows))} to "
        f"{format_count(max(r['flops'] for r in rows))}.",
        "",
    ]
    lines += figure_lines(
        dash.cardinality_figure(records), out / f"table3{tag}.png", "Table 3 view of the study"
    )


def section_fig7(storage: str, out: Path, lines: list[str], tag: str = "") -> None:
    d = studies.get("cardinality-vs-width-growth")
    records = records_from_study(dash.load_study(d.name, storage))
    rows = per_spec(records)
    if len(rows) < 2:
        planned = len(d.space().specs)
        lines += [f"### {d.title}: {d.citation}", "", d.description, ""]
        lines += [f"Only {len(rows)} of the {planned} specs finished: nothing to compare yet.", ""]
        return
    d0 = min(r["spec"]["bottleneck_width"] for r in rows)
    c_series = sorted(
        (r for r in rows if r["spec"]["bottleneck_width"] == d0), key=lambda r: r["params"]
    )
    w_series = sorted(
        (r for r in rows if r["spec"]["cardinality"] == 1 and r["spec"]["bottleneck_width"] > d0),
        key=lambda r: r["params"],
    )
    lines += [
        f"### {d.title}: {d.citation}",
        "",
        d.description,
        "",
        "| series | spec | params | FLOPs | error % (mean ± std) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, series in (("cardinality", c_series), ("width", w_series)):
        for r in series:
            lines.append(
                f"| {name} | {notation(r['spec'])} | {format_count(r['params'])} | "
                f"{format_count(r['flops'])} | {r['mean']:.2f} ± {r['std']:.2f} | {r['n']} |"
            )
    # Pair each width-series spec with the cardinality-series spec nearest in params.
    lines += ["", "Pairs at about the same size (nearest params):", ""]
    diffs = []
    for w in w_series:
        c = min(c_series, key=lambda r: abs(math.log(r["params"] / w["params"])))
        diff, se, n = paired_difference(c, w)
        ratio = c["params"] / w["params"]
        diffs.append(diff)
        lines.append(
            f"- {notation(c['spec'])} ({format_count(c['params'])}) vs {notation(w['spec'])} "
            f"({format_count(w['params'])}, params ratio {ratio:.2f}): {diff:+.2f} points "
            f"(SE {se:.2f}, {n} seeds): **{verdict(diff, se, n, -1)}**"
        )
    slope_c = spearman([r["params"] for r in c_series], [r["mean"] for r in c_series])
    slope_w = spearman([r["params"] for r in w_series], [r["mean"] for r in w_series])
    lines += [
        "",
        f"- Spearman of params with the error along the cardinality series: **{slope_c:+.2f}**; "
        f"along the width series: **{slope_w:+.2f}** (Fig. 7: both fall, the cardinality "
        "series faster).",
        f"- Mean of the paired differences (cardinality minus width): "
        f"**{statistics.fmean(diffs):+.2f} points** (the paper's direction: negative).",
        "",
    ]
    lines += figure_lines(
        dash.model_size_figure(records), out / f"fig7{tag}.png", "Fig. 7 view of the study"
    )


def section_search(storage: str, out: Path, lines: list[str], tag: str = "") -> None:
    d = studies.get("budgeted-search")
    study = dash.load_study(d.name, storage)
    rows = trial_rows(study)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    best = min(done, key=lambda r: r["error"])
    walls = [r["wall_seconds"] for r in rows if r["wall_seconds"]]
    lines += [
        f"### {d.title}: {d.citation}",
        "",
        d.description,
        "",
        "Trials by state: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + "; "
        f"{sum(walls) / 60:.1f} trial-minutes in all.",
        "",
        f"Best: **{best['spec']}** at {100 * best['val_accuracy']:.1f}% validation accuracy "
        f"(trial {best['number']}, {format_count(best['params'])} params, "
        f"{format_count(best['flops'])} FLOPs).",
        "",
        "The (error, FLOPs) Pareto front of the complete trials:",
        "",
        "| trial | spec | FLOPs | params | val acc | seed |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted((r for r in done if r["pareto"]), key=lambda r: r["flops"]):
        lines.append(
            f"| {r['number']} | {r['spec']} | {format_count(r['flops'])} | "
            f"{format_count(r['params'])} | {100 * r['val_accuracy']:.1f}% | {r['seed']} |"
        )
    # A spec TPE proposed again was trained with the next seed: the best single trial is a
    # maximum over seeds, so show each spec's mean too.
    lines += [
        "",
        "Every complete spec, by mean accuracy over the seeds TPE gave it (a repeat trains the "
        "next seed):",
        "",
        "| spec | trials | val acc mean ± std | best |",
        "|---|---|---|---|",
    ]
    for r in sorted(per_spec(records_from_study(study)), key=lambda r: r["mean"]):
        lines.append(
            f"| {notation(r['spec'])} {'-'.join(map(str, r['spec']['depths']))} | {r['n']} | "
            f"{100 - r['mean']:.1f}% ± {r['std']:.1f} | {100 - min(r['errors']):.1f}% |"
        )
    lines.append("")
    lines += figure_lines(
        dash.pareto_figure(records_from_study(study)),
        out / f"search{tag}.png",
        "Pareto view of the search",
    )


def _estimates(cal: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The file's rank correlations, or, for a calibration still running, the same estimates
    (nas.stats.rank.bootstrap, the file's seed) over the configurations that have both results."""
    keys = ("spearman", "kendall", "params_spearman", "params_kendall")
    keys += ("flops_spearman", "flops_kendall")
    if all(k in cal for k in keys):
        return {k: cal[k] for k in keys}
    import numpy as np

    from nas.stats.rank import bootstrap, kendall, spearman

    long = np.array([r["long_val_accuracy"] for r in rows])
    by = {
        "": np.array([r["short_val_accuracy"] for r in rows]),
        "params_": np.array([r["params"] for r in rows], dtype=float),
        "flops_": np.array([r["flops"] for r in rows], dtype=float),
    }
    seed = cal["options"]["seed"]
    return {
        f"{p}{name}": bootstrap(stat, x, long, seed=seed).to_dict()
        for p, x in by.items()
        for name, stat in (("spearman", spearman), ("kendall", kendall))
    }


def section_calibration(path: Path, lines: list[str]) -> None:
    cal = json.loads(path.read_text())
    o = cal["options"]
    short, long = o["epochs"], o["epochs"] * o["factor"]
    rows = [r for r in cal["configs"] if r.get("long_val_accuracy") is not None]
    partial = [r for r in cal["configs"] if r.get("long_val_accuracy") is None]
    lines += [
        "### How far to trust a short trial (`resnext-nas calibrate`)",
        "",
        f"{o['k']} configurations of the band {_band(o['budget'])} (template "
        f"{o['template'] or 'the data default'}, depths {o['depths']}, widths {o['widths']}), "
        f"each trained for {short} epochs (the short trial) and for {long} epochs, batch "
        f"{o['batch_size']}, lr {o['lr']}, {o['train_images']} images"
        + (
            f"; **{len(rows)} of {o['k']} have both results so far** (the run is resumable)."
            if len(rows) < o["k"]
            else "."
        ),
        "",
        "| config | FLOPs | params | short acc | long acc |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["long_val_accuracy"]) + partial:
        acc = [r.get(f"{k}_val_accuracy") for k in ("short", "long")]
        lines.append(
            f"| {r['notation']} | {format_count(r['flops'])} | {format_count(r['params'])} | "
            + " | ".join("-" if a is None else f"{100 * a:.1f}%" for a in acc)
            + " |"
        )
    if len(rows) < 3:
        lines += ["", "Too few configurations have both results to rank them yet.", ""]
        return
    e = _estimates(cal, rows)

    def est(k: str) -> str:
        return f"{e[k]['value']:+.2f} [{e[k]['low']:+.2f}, {e[k]['high']:+.2f}]"

    lines += [
        "",
        "| ranking against the long result | Spearman [95% bootstrap] | Kendall [95% bootstrap] |",
        "|---|---|---|",
        f"| short trial | {est('spearman')} | {est('kendall')} |",
        f"| params (baseline) | {est('params_spearman')} | {est('params_kendall')} |",
        f"| FLOPs (baseline) | {est('flops_spearman')} | {est('flops_kendall')} |",
        "",
        f"For scale: {cal.get('reference', 'see `resnext-nas calibrate --help`')}.",
        "",
        f"- The short trial's Spearman {_against_zero(e['spearman'])}; it "
        + (
            "ranks better than"
            if e["spearman"]["value"]
            > max(e["params_spearman"]["value"], e["flops_spearman"]["value"])
            else "does not rank better than"
        )
        + " params and FLOPs (point estimates).",
        "",
    ]


RECIPES_HEADING = "### Which trial ranks best per CPU-second (`resnext-nas calibrate --compare`)"


def section_recipes(path: Path, lines: list[str]) -> None:
    """The trial-recipe comparison of a ``calibrate --compare`` file."""
    from nas.search.recipes import LONG, compare, truth_separability

    result = json.loads(path.read_text())
    rows = compare(result)
    if not rows:
        raise ValueError(f"{path} has too few runs to compare recipes yet")
    sep = truth_separability(result)
    cands = result["candidates"]
    full = max(r.images for r in rows)
    long = cands[LONG.name]
    elapsed = result["finished"] - result["started"]
    lines += [
        RECIPES_HEADING,
        "",
        f"{len(result['configs'])} configurations of one band (real CIFAR-10, "
        f"{_band(result['settings']['budget'])}, "
        f"depths {', '.join('-'.join(map(str, d)) for d in result['settings']['grid'][1])}, "
        f"widths {', '.join(map(str, result['settings']['grid'][2]))}, "
        f"C {', '.join(map(str, result['settings']['grid'][3]))}"
        + (
            f", d {', '.join(map(str, result['settings']['grid'][4]))}"
            if result["settings"]["grid"][4]
            else ""
        )
        + f"), each trained by every recipe and by the long schedule "
        f"({long['train_images']:,} images x {long['epochs']} epochs, "
        f"{long['epochs'] * (long['train_images'] // long['batch_size']):,} steps) with seeds of "
        f"its own; "
        + "; ".join(
            f"{name} has {r.seeds} runs on {r.configs} of them"
            for name, r in {r.recipe: r for r in rows}.items()
        )
        + f" (spread over the band), and the long schedule has {sep['runs']} runs in all. "
        "The statistics below use each recipe's configurations with two runs (n). Every run is "
        f"scored on the same {full:,} held-out training images. "
        f"{result['cpu_seconds'] / 3600:.1f} CPU-hours of runs; {elapsed / 60:.0f} min from the "
        f"first run's start to the last one's end, over {len(result.get('command', []))} "
        "invocations of the commands:",
        "",
        *[f"- `{c}`" for c in dict.fromkeys(result.get("command", []))],
        "",
        "| recipe | images x epochs | steps | lr schedule | label smoothing |",
        "|---|---|---|---|---|",
    ]
    for name, c in cands.items():
        steps = c["epochs"] * (c["train_images"] // c["batch_size"])
        lines.append(
            f"| {name} | {c['train_images']:,} x {c['epochs']} | {steps:,} | "
            f"{c['schedule']}, warm-up {c['warmup_epochs']:g} epochs, lr {c['lr']:g} | "
            f"{c['label_smoothing']:g} |"
        )
    lines += [
        "",
        f"The long schedule separates its configurations: one-way F {sep['f']:.2f}, "
        f"permutation p {sep['p']:.4f} over {sep['runs']} runs; seed SD "
        f"{sep['seed_sd']:.2f} points, SD of the configurations' true means "
        f"{sep['config_sd']:.2f} points."
        if sep["p"] < 0.05
        else f"The long schedule does not separate its configurations: one-way F "
        f"{sep['f']:.2f}, permutation p {sep['p']:.2f} over {sep['runs']} runs.",
        "",
        f"Each recipe scored on all {full:,} images: plainly (raw), with flip TTA (tta), or "
        "with the weights' moving average (ema). SDs in points; ICC with its F-based 95% "
        "interval, Spearman and Kendall of the configurations' mean against the long schedule's "
        "with 95% bootstrap intervals over configurations; binomial: the share of the seed "
        "variance that the scoring sample alone explains; CPU-s: one trial, training and its "
        "scoring.",
        "",
        "| recipe | scoring | n | mean acc | seed SD | config SD | ICC | Spearman of the mean | "
        "Kendall | binomial | CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def iv(e: Any) -> str:
        return f"{e.value:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"

    for r in rows:
        if r.images == full:
            lines.append(
                f"| {r.recipe} | {r.scoring} | {r.configs} | {100 * r.mean_accuracy:.1f}% | "
                f"{100 * r.seed_sd:.2f} | {100 * r.between_sd:.2f} | {iv(r.icc)} | "
                f"{iv(r.spearman)} | {iv(r.kendall)} | {r.binomial_share:.0%} | "
                f"{r.cpu_seconds:.0f} |"
            )
    single = compare(result, runs=1)
    lines += [
        "",
        f"One trial's rank agreement over all {single[0].configs} configurations: each "
        "recipe's first seed against the long schedule's mean (Spearman and Kendall with 95% "
        "bootstrap intervals over configurations), on the first 1,000 and on all "
        f"{full:,} scoring images:",
        "",
        "| recipe | scoring | images | mean acc | Spearman | Kendall | CPU-s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in single:
        if r.images in (1000, full):
            lines.append(
                f"| {r.recipe} | {r.scoring} | {r.images:,} | {100 * r.mean_accuracy:.1f}% | "
                f"{iv(r.spearman)} | {iv(r.kendall)} | {r.cpu_seconds:.0f} |"
            )
    pick = {(r.recipe, r.scoring, r.images): r for r in single}
    old, new = pick.get(("base", "raw", 1000)), pick.get(("base", "ema", full))
    if old is not None and new is not None:
        lines += [
            "",
            f"The search's trial before this comparison (base, plain, 1,000 images) ranked at "
            f"Spearman {iv(old.spearman)}; the same training scored with its moving average on "
            f"{full:,} images (the default since) at {iv(new.spearman)}, for "
            f"{new.cpu_seconds - old.cpu_seconds:+.0f} CPU-s a trial.",
        ]
    two = next((r for r in rows if (r.recipe, r.scoring, r.images) == ("base", "ema", full)), None)
    if two is not None and two.seeds >= 2:
        lines += [
            "",
            f"The mean of {two.seeds} such trials (different seeds) ranks the {two.configs} "
            f"configurations at Spearman {iv(two.spearman)} against the long schedule, for "
            f"{two.seeds}x the CPU: what a configuration's repeated proxy trials and the "
            "confirmation phase's seeds buy."
            + (
                f" Its ICC is {iv(two.icc)}: the trial's own ranking repeats from seed to seed "
                "better than it matches the long schedule's, so what keeps the trial from the "
                "long ranking is its shortness (larger configurations gain more from longer "
                "training) more than its noise, and more seeds of the same trial do not close "
                "the gap; a longer trial would."
                if two.icc.low > two.spearman.value
                else ""
            ),
        ]
    lines += [
        "",
        "The scoring sample's size, plain scoring (nested samples of the same runs):",
        "",
        "| recipe | images | seed SD | binomial | ICC | Spearman | CPU-s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.scoring == "raw":
            lines.append(
                f"| {r.recipe} | {r.images:,} | {100 * r.seed_sd:.2f} | "
                f"{r.binomial_share:.0%} | {iv(r.icc)} | {iv(r.spearman)} | "
                f"{r.cpu_seconds:.0f} |"
            )
    lines.append("")


def update_section(report: Path, heading: str, section: list[str]) -> None:
    """Put ``section`` (starting with ``heading``) in place of that heading's section of
    ``report``, or before its synthetic-set part when it has none."""
    text = report.read_text().splitlines()
    if heading in text:
        start = text.index(heading)
        end = next(
            (i for i in range(start + 1, len(text)) if text[i].startswith(("## ", "### "))),
            len(text),
        )
    else:
        start = end = next(
            (i for i, line in enumerate(text) if line == "## Built-in synthetic set"), len(text)
        )
    report.write_text("\n".join([*text[:start], *section, *text[end:]]) + "\n")


def _band(budget: dict[str, Any]) -> str:
    parts = [f"{budget[k]:.3g} {k}" for k in ("flops", "params") if budget.get(k)]
    return " and ".join(parts) + f" ±{budget['tolerance']:.0%}"


def _against_zero(e: dict[str, float]) -> str:
    if e["low"] > 0:
        return f"interval [{e['low']:+.2f}, {e['high']:+.2f}] lies above zero"
    return (
        f"interval [{e['low']:+.2f}, {e['high']:+.2f}] includes zero: with "
        "this many configurations it cannot be told from no agreement"
    )


def _steps(path: Path) -> list[str]:
    """The commands and wall times that ``scripts/report_runs.sh`` logged, as list items."""
    lines, cmd = [], None
    for line in path.read_text().splitlines():
        if line.startswith("+ "):
            if cmd:
                lines.append(f"- `{cmd}`: stopped or still running, no time logged")
            cmd = line[2:]
        elif line.strip().startswith("(") and line.strip().endswith(" s)") and cmd:
            seconds = int(line.strip()[1:-3])
            lines.append(f"- `{cmd}`: {seconds:,} s ({seconds / 60:.1f} min)")
            cmd = None
    if cmd:
        lines.append(f"- `{cmd}`: stopped or still running, no time logged")
    return lines


def part(
    title: str,
    about: str,
    storage: str | None,
    calibration: Path | None,
    times: list[Path],
    figs: Path,
    tag: str,
    lines: list[str],
) -> None:
    """One dataset's sections: the studies in ``storage``, the calibration, commands and times."""
    lines += [f"## {title}", "", about, ""]
    steps = [s for t in times if t.exists() for s in _steps(t)]
    if steps:
        lines += ["Commands and wall times:", "", *steps, ""]
    if storage is not None:
        for section in (section_table3, section_fig7, section_search):
            try:
                section(storage, figs, lines, tag)
            except ValueError as e:  # a study not run yet: say so, write the rest
                print(f"skipped {section.__name__} ({title}): {e}", file=sys.stderr)
    if calibration is not None and calibration.exists():
        section_calibration(calibration, lines)


def kept_sections(report: Path) -> list[str]:
    """The synthetic-set part of an earlier report, verbatim, under this report's headings.

    An earlier report (one dataset) has ``## N. title`` sections and then the notes; a later
    one has ``## Built-in synthetic set`` with ``###`` sections.
    """
    text = report.read_text().splitlines()
    if "## Built-in synthetic set" in text:
        start = text.index("## Built-in synthetic set")
        body = text[start:]
    else:
        start = next(i for i, line in enumerate(text) if line.startswith("## "))
        about = text[2] if len(text) > 2 else ""
        body = [
            "## Built-in synthetic set",
            "",
            f"Kept from the report of an earlier run ({report.name}): {about}",
            "",
        ]
        for line in text[start:]:
            if line.startswith("## ") and line[3:4].isdigit():
                line = "### " + line.split(". ", 1)[1]
            body.append(line)
    end = next((i for i, line in enumerate(body) if line == "## Discussion"), len(body))
    return [*body[:end]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-storage", default=None, help="studies run on real CIFAR-10")
    ap.add_argument("--real-calibration", type=Path, default=None)
    ap.add_argument(
        "--real-times", type=Path, action="append", default=[], help="a step log (repeatable)"
    )
    ap.add_argument("--real-note", default="", help="a sentence on how the real runs were made")
    ap.add_argument("--storage", default="sqlite:///runs/report.db")
    ap.add_argument("--calibration", type=Path, default=Path("runs/calibration.json"))
    ap.add_argument("--times", type=Path, action="append", default=[])
    ap.add_argument(
        "--keep-synthetic",
        type=Path,
        default=None,
        help="take the synthetic-set sections from this earlier report instead of --storage",
    )
    ap.add_argument("--notes", type=Path, default=ROOT / "docs" / "report-notes.md")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report.md")
    ap.add_argument(
        "--recipes",
        type=Path,
        default=None,
        help="a `calibrate --compare` file: with --update, write only its section into --out",
    )
    ap.add_argument("--update", action="store_true", help="change --out in place (--recipes)")
    args = ap.parse_args()
    if args.update:
        if args.recipes is None:
            ap.error("--update needs --recipes")
        section: list[str] = []
        section_recipes(args.recipes, section)
        update_section(args.out, RECIPES_HEADING, section)
        print(args.out)
        return
    figs = args.out.parent / "report"
    figs.mkdir(parents=True, exist_ok=True)
    import torch

    val = studies.get("cardinality-vs-width").trial_budget.val_fraction
    lines = [
        "# The paper's studies at proxy scale: what they found",
        "",
        f"Generated by `scripts/make_report.py` on {time.strftime('%Y-%m-%d')} from the runs of "
        f"`scripts/report_runs.sh`, on {platform.machine()} with {_cores()} CPU cores, torch "
        f"{torch.__version__}, no GPU{' (CUDA available)' if torch.cuda.is_available() else ''}. "
        "Errors are validation top-1 error on a held-out, stratified split of the training set. "
        "The paper's numbers are ImageNet and CIFAR results of full-size networks trained for "
        "100-300 epochs: only the direction of an effect can be compared.",
        "",
    ]
    if args.real_storage or args.real_calibration:
        part(
            "Real CIFAR-10",
            "Dataset: real CIFAR-10 (`--dataset folder --data-dir "
            "../shared/data/cifar10-jpg.tar.gz`: 50,000 train images of 32x32 in 10 classes, "
            "re-encoded as JPEG), so chance is 90% error. Storage "
            f"`{args.real_storage}`, calibration `{args.real_calibration}`. {args.real_note}",
            args.real_storage,
            args.real_calibration,
            args.real_times,
            figs,
            "-real",
            lines,
        )
    if args.recipes is not None:
        section_recipes(args.recipes, lines)
    if args.keep_synthetic is not None:
        lines += kept_sections(args.keep_synthetic)
    else:
        part(
            "Built-in synthetic set",
            "Dataset: the built-in `synthetic` set (10 shape classes, 32x32, so chance is 90% "
            f"error), validation on the held-out {val:.0%} of it. Storage `{args.storage}`, "
            f"calibration `{args.calibration}`.",
            args.storage,
            args.calibration,
            args.times,
            figs,
            "",
            lines,
        )
    if args.notes.exists():
        lines += [args.notes.read_text().rstrip(), ""]
    args.out.write_text("\n".join(lines))
    print(args.out)


def _cores() -> int:
    return os.cpu_count() or 0  # not nproc, which reports OMP_NUM_THREADS when that is set


if __name__ == "__main__":
    main()
