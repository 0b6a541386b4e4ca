"""Real photos as an image folder: extraction, parallel decoding and the cached load.

Loads the shared tarball (``../shared/data/cifar10-jpg.tar.gz``: 60,000 JPEGs of 32x32) with
``--dataset folder`` into a fresh cache, three times, and prints what each step took:

1. first load: the archive extracted once into the cache, then the 50,000 train and 10,000
   test images decoded on ``min(8, cores)`` threads and cached as arrays;
2. second load: the extraction and the decoded arrays read back from the cache;
3. for the ratio, a serial decode (one thread) of ``--sample`` of the images against the
   thread pool on the same files, interleaved, at each side of ``--sides`` (default 32).

``--tarball ../shared/data/imagenette10.tar.gz --sides 64,224`` measures the 224x224 ImageNet
photos decoded to a 64-px trial's side and to their own.

Wall and CPU seconds of this process are printed; on a machine others share, wall time swings
with their load, so the ratios of one run are the figures to compare. Run from the root:

    PYTHONPATH=. python benchmarks/bench_decode.py [--tarball PATH] [--sample 5000] [--sides 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.shared import find_archive
from nas.data import folder, load_dataset


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tarball", type=Path, default=None)
    ap.add_argument("--sample", type=int, default=5000, help="images of the serial comparison")
    ap.add_argument("--sides", default="32", help="sides decoded to in the comparison, e.g. 64,224")
    args = ap.parse_args()
    tarball = args.tarball or find_archive(flag="--tarball")
    print(f"{tarball} ({tarball.stat().st_size / 1e6:.1f} MB), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RESNEXT_NAS_DATA"] = tmp
        kw = {"data_dir": tarball, "eval_test": True}
        root, w_ex, c_ex = _timed(folder.open_tree, tarball)
        print(f"extract:        {w_ex:7.1f} s wall {c_ex:7.1f} s CPU   -> {root}")
        ds, w1, c1 = _timed(load_dataset, "folder", **kw)
        assert ds.test_y is not None
        n = len(ds.train_y) + len(ds.val_y) + len(ds.test_y)
        print(
            f"decode {n:,} images: {w1:7.1f} s wall {c1:7.1f} s CPU "
            f"({n / w1:,.0f} images/s wall; {ds.classes} classes, {ds.resolution}x"
            f"{ds.resolution})"
        )
        _, w2, c2 = _timed(load_dataset, "folder", **kw)
        print(f"cached load:    {w2:7.1f} s wall {c2:7.1f} s CPU   ({w1 / w2:.0f}x faster)")

        files = folder.scan(root).train[0][: args.sample]
        pick = "one thread" if folder.decode_threads(files) == 1 else "the thread pool"
        w, h = folder.image_size(files[0])
        for side in (int(v) for v in args.sides.split(",")):
            serial = parallel = 0.0
            for _ in range(2):  # interleaved, so that load from others falls on both
                _, t, _ = _timed(lambda s=side: [folder.decode(p, s) for p in files])
                serial += t
                _, t, _ = _timed(folder.parallel_map, lambda p, s=side: folder.decode(p, s), files)
                parallel += t
            print(
                f"decode {len(files):,} {w}x{h} images to {side} px x2: serial {serial:.1f} s, "
                f"thread pool {parallel:.1f} s: {serial / parallel:.2f}x"
            )
        print(f"the loader picks {pick} for these (pool from a {folder.POOL_MIN_SIDE}-pixel side)")


if __name__ == "__main__":
    main()
