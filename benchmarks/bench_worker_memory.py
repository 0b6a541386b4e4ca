"""Peak memory of a search with 1 and 2 local workers, the images shared or a copy a worker.

Each configuration runs in a fresh process (this script with ``--one``) that loads the images
and then searches: one trial a worker, one epoch of a tiny spec (8x1d, width 8, stem 16, about
0.74 MFLOPs an image at 32 px), so that the images and not the model fill the memory. A thread
here reads that process and its descendants (the workers, multiprocessing's resource tracker)
every 0.2 s and keeps the largest sum of their PSS, the proportional set size of
``/proc/PID/smaps_rollup``: a page that k processes map counts 1/k in each, so images mapped
by every worker count once in all. The sum of RSS, which counts them in each process, is shown
for contrast. "sharing off" pickles the dataset to each worker (``run_search(...,
share_data=False)``); one worker trains in the search's own process, where there is nothing to
share, so its two rows differ only by noise. Linux only (``/proc``). From the root:

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_worker_memory.py [--data-dir PATH]
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_worker_memory.py --dataset synthetic \
        --images 2000

The default is ``--dataset folder`` on the shared CIFAR-10 tarball (``shared/data`` above the
project): its 50,000 training JPEGs, decoded once into the cache and read back in seconds after
that, 49,000 to train on and 1,000 to score (``--val-fraction 0.02``). The second is a smoke run.
One thread a trial keeps the one-worker runs (which would take both cores) as short as a
worker's: about 3 minutes in all on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.shared import find_archive

MB = 2**20


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name, in parentheses, may hold spaces: the parent id follows it.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _pss_rss(pid: int) -> tuple[int, int]:
    """PSS and RSS of process ``pid`` in bytes; zeros once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return pss, rss


class Sampler(threading.Thread):
    """The largest PSS and RSS sums over a process tree, sampled every ``every`` seconds."""

    def __init__(self, root: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pss = self.rss = self.processes = 0
        self.last = (0, 0)

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.root)
            sizes = [_pss_rss(p) for p in pids]
            pss, rss = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
            with self.lock:
                self.last = (pss, rss)
                if pss > self.pss:
                    self.pss, self.processes = pss, sum(s[0] > 0 for s in sizes)
                self.rss = max(self.rss, rss)
            self.stop.wait(self.every)

    def reset(self) -> int:
        """Start the peaks afresh; the PSS sum now."""
        with self.lock:
            self.pss = self.rss = self.processes = 0
            return self.last[0]


def measure(args: argparse.Namespace, workers: int, sharing: bool) -> dict:
    """Run one configuration in its own process; its figures."""
    cmd = [sys.executable, __file__, "--one", str(workers), "on" if sharing else "off"]
    for name in ("dataset", "data_dir", "images", "val_fraction", "batch_size"):
        value = getattr(args, name)
        if value is not None:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    out: dict = {"workers": workers, "sharing": sharing}
    assert proc.stdout is not None
    for line in proc.stdout:
        key, _, value = line.strip().partition(" ")
        if key == "searching":  # the load's own peak is the same in every configuration
            out["after_load"] = sampler.reset() / MB
        elif key == "loaded":
            out["images"] = float(value)
        else:
            out[key] = value
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    sampler.stop.set()
    sampler.join()
    out.update(pss=sampler.pss / MB, rss=sampler.rss / MB, processes=sampler.processes)
    out["wall"] = time.perf_counter() - t0
    return out


def one(args: argparse.Namespace) -> None:
    """The measured process: load, search, and print ``key value`` lines for the driver."""
    from nas.data import load_dataset
    from nas.search.space import SpecGrid
    from nas.search.study import SearchSettings, enqueue_grid, prepare
    from nas.search.workers import run_search
    from nas.training.config import TrainConfig
    from resnext.spec import Spec

    workers, sharing = int(args.one[0]), args.one[1] == "on"
    t0 = time.perf_counter()
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        val_fraction=args.val_fraction,
        synthetic_train=args.images,
    )
    images = sum(a.nbytes for a in (data.train_x, data.val_x)) / MB
    print(f"load {time.perf_counter() - t0:.1f}")
    print(f"loaded {images:.1f}", flush=True)
    time.sleep(1)  # samples of the loaded process before the search starts
    print("searching", flush=True)
    spec = Spec(
        "cifar", (1, 1, 1), 8, 1, 1, classes=data.classes, resolution=data.resolution, stem_width=16
    )
    grid = SpecGrid((spec,))
    train = TrainConfig(epochs=1, batch_size=args.batch_size, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'memory.db'}"
        settings = SearchSettings(grid, study="memory", pruner="none", latency=False)
        study, _ = prepare(settings, storage=url, n_trials=workers)
        enqueue_grid(study, grid, range(workers))
        t0 = time.perf_counter()
        reports = run_search(
            settings, data, train, workers, storage=url, workers=workers, share_data=sharing
        )
        print(f"search {time.perf_counter() - t0:.1f}")
    print(f"trials {','.join(str(r.trials) for r in reports)}")
    where = getattr(data.train_x, "filename", None)
    published = "no" if where is None else Path(where).parent
    print(f"published {published}")
    print(f"left {where is not None and Path(where).exists()}")
    print(f"train {len(data.train_y)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="folder", help="folder, synthetic or cifar10")
    ap.add_argument("--data-dir", default=None, help="the folder or archive of --dataset folder")
    ap.add_argument("--images", type=int, default=50_000, help="synthetic training images")
    ap.add_argument("--val-fraction", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--one", nargs=2, metavar=("WORKERS", "SHARING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dataset == "folder" and args.data_dir is None:
        args.data_dir = find_archive(flag="--data-dir")
    if args.one:
        one(args)
        return
    rows = []
    t0 = time.perf_counter()
    for workers in (1, 2):
        for sharing in (True, False):
            r = measure(args, workers, sharing)
            rows.append(r)
            print(
                f"{workers} worker{'s' * (workers > 1)}, sharing {'on' if sharing else 'off'}: "
                f"{r['wall']:.0f} s (load {r['load']} s, search {r['search']} s), trials a worker "
                f"{r['trials']}, published in "
                f"{r['published']}, left behind: {r['left']}",
                flush=True,
            )
    print(f"\n{rows[0]['train']} training images, {time.perf_counter() - t0:.0f} s in all\n")
    print(
        "| workers | sharing | PSS after load MB | peak PSS total MB | peak RSS sum MB "
        "| images MB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['workers']} | {'on' if r['sharing'] else 'off'} | {r['after_load']:,.0f} "
            f"| {r['pss']:,.0f} | {r['rss']:,.0f} | {r['images']:,.0f} |"
        )
    by = {(r["workers"], r["sharing"]): r["pss"] for r in rows}
    images = rows[0]["images"]
    saved = by[2, False] - by[2, True]
    print(
        f"\n2 workers: peak PSS off / on {by[2, False] / by[2, True]:.2f}; sharing saves "
        f"{saved:,.0f} MB, {saved / images:.2f}x the images. 2 workers against 1: "
        f"+{by[2, True] - by[1, True]:,.0f} MB with sharing, +{by[2, False] - by[1, False]:,.0f} "
        "MB without."
    )


if __name__ == "__main__":
    main()
