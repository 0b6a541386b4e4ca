"""How fast the analytic counter enumerates a design space, against building + fvcore.

Prints, from one run: configs/second of the vectorised grid counter over a grid of at least
100,000 configurations, of the scalar counter, and of building each model and counting it with
fvcore (on a seeded sample of configs under 8 GFLOPs, the region budgets usually ask about), the
ratios between them, and the wall time of `resnext-nas budget --flops 4.1e9` next to a bare
`import torch`.

    python benchmarks/bench_complexity.py [--sample 6]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resnext  # noqa: E402

DEPTHS = [(3, 4, 6, 3), (3, 4, 23, 3), (2, 2, 2, 2), (3, 8, 36, 3)]
WIDTHS = [64, 128, 256, 512]
CARDS = np.arange(1, 65)
DS = np.arange(1, 129)


def grid_rate() -> tuple[float, int, list]:
    """Configs/s of complexity_grid over DEPTHS x WIDTHS x C 1..64 x d 1..128."""
    c, d = np.meshgrid(CARDS, DS, indexing="ij")
    t0 = time.perf_counter()
    results = []
    for dep in DEPTHS:
        for w in WIDTHS:
            base = resnext.Spec("imagenet", dep, w, 1, 1)
            results.append((base, c, d, resnext.complexity_grid(base, c, d)))
    dt = time.perf_counter() - t0
    n = len(DEPTHS) * len(WIDTHS) * c.size
    return n / dt, n, results


def scalar_rate(specs: list) -> float:
    t0 = time.perf_counter()
    for s in specs:
        resnext.complexity(s)
    return len(specs) / (time.perf_counter() - t0)


def fvcore_rate(specs: list) -> float:
    import torch
    from fvcore.nn import FlopCountAnalysis

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    for s in specs:
        model = resnext.build(s).eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            fca = FlopCountAnalysis(model, torch.zeros(1, 3, s.resolution, s.resolution))
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            ops = fca.by_operator()
        assert ops["conv"] + ops["linear"] == resnext.complexity(s).flops, s
    return len(specs) / (time.perf_counter() - t0)


def wall(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=6, help="configs built and counted by fvcore")
    args = ap.parse_args()

    rate, n, results = grid_rate()
    print(f"grid counter:   {n:,} configs in one pass, {rate:,.0f} configs/s")
    rng = random.Random(0)
    small = [
        (b, int(c[i, j]), int(d[i, j]))
        for b, c, d, cx in results
        for i, j in zip(*np.nonzero(cx.flops <= 8e9), strict=True)
    ]
    picks = rng.sample(small, 2000)
    specs = [replace(b, cardinality=ci, bottleneck_width=di) for b, ci, di in picks]
    srate = scalar_rate(specs)
    print(f"scalar counter: {srate:,.0f} configs/s (2,000 specs)")
    frate = fvcore_rate(specs[: args.sample])
    print(
        f"build + fvcore: {frate:.3f} configs/s ({args.sample} sampled configs <= 8 GFLOPs, "
        "224x224, all equal to the analytic count)"
    )
    print(f"ratio grid / fvcore:   {rate / frate:,.0f}x")
    print(f"ratio scalar / fvcore: {srate / frate:,.0f}x")
    budget = wall([sys.executable, str(ROOT / "cli.py"), "budget", "--flops", "4.1e9"])
    torch_import = wall([sys.executable, "-c", "import torch"])
    print(
        f"`resnext-nas budget --flops 4.1e9`: {budget:.2f} s wall (median of 5); "
        f"a bare `import torch` takes {torch_import:.2f} s, ratio {budget / torch_import:.2f}"
    )


if __name__ == "__main__":
    main()
