"""A built-in, offline image-classification set whose classes differ only by shape.

Each image holds one large shape whose outline or topology is the label (ring, cross, triangle,
bars, checker patch, spiral, L, two blobs, square outline, crescent), drawn at a random position,
scale, aspect and rotation, in a random colour on a random background colour (their brightness
differs by at least 0.25, either may be the brighter) with a brightness gradient, among up to
three smaller items of clutter (line segments and small shapes of other classes) that may pass in
front of it, plus pixel noise of random strength. Colours never depend on the label, so the mean
colour and every pixel's expected value are the same for all classes: a classifier has to see
shape. 4% of the images leave their shape out, an error no model can avoid.

Generation is vectorised numpy: each shape is a signed distance function evaluated on the pixel
grid of a whole group of images at once, and anti-aliased by clipping the distance in pixels;
clutter is drawn in a window of half the side. 50k + 10k images of 32x32 take about 5 s of CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view as swv

SHAPES = (
    "ring",
    "cross",
    "triangle",
    "bars",
    "checker",
    "spiral",
    "ell",
    "two-blobs",
    "square-outline",
    "crescent",
)

_CHUNK = 1024  # images per independently seeded chunk: the bytes do not depend on threads
# Difficulty, tuned so that a linear model stays near chance while a small ResNeXt learns
# quickly, though far from 100% (figures in the docstring of tests/data/test_data.py::
# test_linear_model_stays_far_below_small_resnext).
_SCALE = (0.3, 0.45)  # radius of the labelled shape, as a fraction of the side
_MIN_LUMA = 0.25  # least difference of mean intensity between the shape and the background
_CLUTTER = 0.6  # chance that each of the three clutter slots holds an item
_NOISE = (0.02, 0.1)  # range of the per-image pixel noise std, on a [0, 1] scale
_BLANK = 0.04  # images whose shape is left out, so no model can exceed about 96.5%
_F = np.float32
_Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Distance to an axis-aligned box of half-sides a, b (exact inside, a bound outside)."""
    return np.maximum(np.abs(u) - a, np.abs(v) - b)


def _circle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.sqrt(u * u + v * v) - r


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(_circle(u, v, 0.72)) - 0.2


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_box(u, v, 0.95, 0.24), _box(u, v, 0.24, 0.95))


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, circumradius 1: the largest of three half-plane distances.
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    return np.maximum(np.maximum(-v, c * u + s * v), -c * u + s * v) - 0.5


def _bars(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    av = np.abs(v)
    return np.maximum(np.abs(u) - 0.9, np.minimum(av, np.abs(av - 0.62)) - 0.15)


def _checker(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # A 3x3 checkerboard (5 filled cells) cut to its square: distance to the nearest grid line,
    # negative in the cells of even parity.
    cu, cv = u / 0.6 + 1.5, v / 0.6 + 1.5
    fu, fv = np.floor(cu), np.floor(cv)
    edge = np.minimum(np.abs(cu - fu - 0.5), np.abs(cv - fv - 0.5))
    d = (0.5 - edge) * 0.6
    inside = (fu + fv) % 2 == 0
    return np.maximum(np.where(inside, -d, d), _box(u, v, 0.9, 0.9))


def _spiral(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Archimedean spiral r = pitch * turns: radial distance to the nearest arm.
    pitch = 0.42
    r = np.sqrt(u * u + v * v)
    t = (r - pitch * (np.arctan2(v, u) + np.pi) / (2 * np.pi)) / pitch
    return np.maximum(np.abs(t - np.round(t)) * pitch - 0.1, r - 1.0)


def _ell(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_box(u + 0.45, v, 0.22, 0.9), _box(u, v - 0.68, 0.67, 0.22))


def _two_blobs(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_circle(u + 0.5, v, 0.42), _circle(u - 0.5, v, 0.42))


def _square_outline(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(_box(u, v, 0.75, 0.75)) - 0.17


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_circle(u, v, 0.9), -_circle(u - 0.42, v, 0.72))


# Signed distance of each class's shape in shape units (the shape spans about [-1, 1]^2).
_SDFS: tuple[_Sdf, ...] = (
    _ring,
    _cross,
    _triangle,
    _bars,
    _checker,
    _spiral,
    _ell,
    _two_blobs,
    _square_outline,
    _crescent,
)


def _shapes(kinds: np.ndarray, grid: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Coverage ``[n, h, w]`` of shape ``kinds[i]`` at ``pose[i]`` on ``grid``.

    ``pose`` rows are (centre x, centre y, scale in pixels, angle, aspect).
    """
    xs, ys = grid
    out = np.empty((len(kinds), *xs.shape), _F)
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        cx, cy, scale, angle, aspect = (p[:, None, None] for p in pose[idx].T)
        dx, dy = xs - cx, ys - cy
        c, s = np.cos(angle), np.sin(angle)
        u = (c * dx + s * dy) / (scale * aspect)
        v = (c * dy - s * dx) * (aspect / scale)
        d = _SDFS[kind](u, v) * scale  # in pixels, so that a clip anti-aliases by one pixel
        out[idx] = np.clip(0.5 - d, 0, 1)
    return out


def _segments(grid: np.ndarray, ends: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Coverage ``[n, h, w]`` of segments ``ends[i] = (ax, ay, bx, by)`` of half-width ``width``."""
    xs, ys = grid
    ax, ay, bx, by = (e[:, None, None] for e in ends.T)
    px, py, ex, ey = xs - ax, ys - ay, bx - ax, by - ay
    h = np.clip((px * ex + py * ey) / (ex * ex + ey * ey + 1e-6), 0, 1)
    px -= ex * h
    py -= ey * h
    return np.clip(0.5 + width[:, None, None] - np.sqrt(px * px + py * py), 0, 1)


def _colour_pairs(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` pairs of RGB colours whose mean intensities differ by at least ``_MIN_LUMA``.

    Rejection keeps the two colours of a pair exchangeable (either may be the shape's), so an
    image's expected colour does not depend on how much of it the shape covers, i.e. its class.
    """
    pairs = rng.random((n, 2, 3), dtype=_F)
    bad = np.abs(pairs[:, 0].mean(1) - pairs[:, 1].mean(1)) < _MIN_LUMA
    while bad.any():
        pairs[bad] = rng.random((int(bad.sum()), 2, 3), dtype=_F)
        bad = np.abs(pairs[:, 0].mean(1) - pairs[:, 1].mean(1)) < _MIN_LUMA
    return pairs


def _grid(side: int) -> np.ndarray:
    """Pixel-centre coordinates ``[2, side, side]`` (x, y)."""
    pix = np.arange(side, dtype=_F) + 0.5
    return np.stack(np.broadcast_arrays(pix[None, :], pix[:, None]))


def _render(
    labels: np.ndarray,
    rng: np.random.Generator,
    noise: np.ndarray,
    classes: int,
    r: int,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Images ``[k, 3, r, r]`` for ``labels[keep]`` (all by default), drawn with ``rng``.

    Every random number of the whole group is drawn, in the same order, whatever ``keep`` is,
    so that an image's pixels do not depend on which others are painted; only the painting
    (nearly all of the time and memory) is restricted to ``keep``. ``noise`` is a normal pool.
    """
    n = len(labels)
    keep = np.arange(n) if keep is None else keep
    k = len(keep)
    grid = _grid(r)

    fg, bg = _colour_pairs(rng, n)[keep].transpose(1, 0, 2)
    # Background: a flat colour plus a luminance gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi, n).astype(_F)[keep, None, None]
    slope = rng.uniform(-0.25, 0.25, n).astype(_F)[keep, None, None] / r

    # The labelled shape, mostly inside the frame.
    scale = rng.uniform(*_SCALE, n) * r
    centre = rng.uniform(0, 1, (n, 2)) * (r - 1.6 * scale[:, None]) + 0.8 * scale[:, None]
    pose = np.column_stack(
        [centre, scale, rng.uniform(0, 2 * np.pi, n), np.exp(rng.uniform(-0.2, 0.2, n))]
    ).astype(_F)[keep]
    blank = (rng.random(n) < _BLANK)[keep]  # a few images lack their shape: irreducible error

    # Clutter: up to three items, each a line segment or a small shape of another class, drawn
    # inside a window of half the side (cheap to render), behind or in front of the shape.
    w, slots = r // 2, 3
    wgrid = _grid(w)
    draws = []
    for _ in range(slots):
        active = np.flatnonzero(rng.random(n) < _CLUTTER)
        m = len(active)
        line = rng.random(m) < 0.5
        ends = rng.uniform(1, w - 1, (m, 4)).astype(_F)
        half = rng.uniform(0.5, 1.2, m).astype(_F)
        small = rng.uniform(0.1, 0.16, m) * r
        jitter = rng.uniform(-1, 1, (m, 2)) * (w / 2 - 1.35 * small[:, None])
        pose_small = np.column_stack(
            [w / 2 + jitter, small, rng.uniform(0, 2 * np.pi, m), np.ones(m)]
        ).astype(_F)
        others = (labels[active] + rng.integers(1, max(classes, 2), m)) % classes
        corner = rng.integers(0, r - w + 1, (m, 2))
        front = rng.random(m) < 0.5
        colour = rng.random((m, 3), dtype=_F)
        draws.append((active, line, ends, half, pose_small, others, corner, front, colour))
    # Pixel noise: windows of a shared normal pool, scaled per image.
    start = rng.integers(0, len(noise) - 3 * r * r, n)[keep]
    sigma = rng.uniform(*_NOISE, n).astype(_F)[keep, None, None, None]

    # Painting, of the kept images only.
    ramp = (grid[0] - r / 2) * (slope * np.cos(angle)) + (grid[1] - r / 2) * (slope * np.sin(angle))
    img = bg[:, :, None, None] + ramp[:, None]
    alpha = _shapes(labels[keep], grid, pose)
    alpha[blank] = 0
    windows = swv(img, (w, w), axis=(2, 3), writeable=True)
    items = []
    for active, line, ends, half, pose_small, others, corner, front, colour in draws:
        mine = np.isin(active, keep)  # the items on kept images, at their rows of ``img``
        at = np.searchsorted(keep, active[mine])
        line, ends, half, pose_small = line[mine], ends[mine], half[mine], pose_small[mine]
        cover = np.empty((len(at), w, w), _F)
        cover[line] = _segments(wgrid, ends[line], half[line])
        cover[~line] = _shapes(others[mine][~line], wgrid, pose_small[~line])
        items.append((at, cover, corner[mine], front[mine], colour[mine]))

    def paint_clutter(in_front: bool) -> None:
        for at, cover, corner, front, colour in items:
            sel = front == in_front
            i, y, x = at[sel], corner[sel, 0], corner[sel, 1]
            patch = windows[i, :, y, x]
            patch += cover[sel][:, None] * (colour[sel][:, :, None, None] - patch)
            windows[i, :, y, x] = patch

    paint_clutter(False)
    img += alpha[:, None] * (fg[:, :, None, None] - img)
    paint_clutter(True)

    img += swv(noise, 3 * r * r)[start].reshape(k, 3, r, r) * sigma
    img *= 255
    img += 0.5
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def generate(
    n: int,
    *,
    seed: int = 0,
    stream: int = 0,
    classes: int = 10,
    resolution: int = 32,
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``[n, 3, R, R]`` (uint8) and balanced int64 labels, deterministic in the args.

    ``stream`` separates independent sets drawn from the same seed (train 0, test 1).
    ``indices`` (sorted, distinct) paints only those images of the ``n``, identical to the same
    rows of the whole set, at a fraction of the time and memory; their labels come with them.
    """
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"the synthetic set has 1 to {len(SHAPES)} classes, got {classes}")
    if resolution < 8:
        raise ValueError(f"synthetic images need a resolution of at least 8, got {resolution}")
    if n < 0:
        raise ValueError(f"cannot generate {n} images; ask for zero or more")
    labels = make_labels(n, seed=seed, stream=stream, classes=classes)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(idx) and (idx[0] < 0 or idx[-1] >= n or (np.diff(idx) <= 0).any()):
        raise ValueError(f"indices must be sorted, distinct and in 0..{n - 1}")
    root = np.random.SeedSequence([seed, stream])
    starts = range(0, n, _CHUNK)
    _, noise_seq, *chunk_seqs = root.spawn(2 + len(starts))
    pool = max(1 << 20, 4 * 3 * resolution**2)
    noise = np.random.default_rng(noise_seq).standard_normal(pool, dtype=_F)
    x = np.empty((len(idx), 3, resolution, resolution), np.uint8)
    # Where each chunk's images lie in ``idx``: a chunk with none is skipped, undrawn.
    bounds = np.searchsorted(idx, np.append(np.asarray(starts, dtype=np.int64), n))

    def work(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        if a == b:
            return
        lo = starts[i]
        hi = min(lo + _CHUNK, n)
        rng = np.random.default_rng(chunk_seqs[i])
        x[a:b] = _render(labels[lo:hi], rng, noise, classes, resolution, idx[a:b] - lo)

    # numpy releases the GIL in its array loops, so threads share the cores.
    with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 8))) as pool:
        list(pool.map(work, range(len(starts))))
    return x, labels[idx]


def make_labels(n: int, *, seed: int = 0, stream: int = 0, classes: int = 10) -> np.ndarray:
    """The int64 labels of :func:`generate`'s ``n`` images, without painting any."""
    label_seq = np.random.SeedSequence([seed, stream]).spawn(1)[0]
    return np.random.default_rng(label_seq).permutation(np.arange(n) % classes).astype(np.int64)
