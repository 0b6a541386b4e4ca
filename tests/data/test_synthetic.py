"""The synthetic set sized to its use: only the images a split keeps are painted, with the
same bytes as painting the whole set."""

from __future__ import annotations

import numpy as np
import pytest

from nas.data import load_dataset, synthetic
from nas.data.splits import split_indices


def test_synthetic_indices_paint_the_same_bytes_as_the_whole_set() -> None:
    x, y = synthetic.generate(2500, seed=3, classes=7, resolution=24)
    idx = np.sort(np.random.default_rng(0).choice(2500, 200, replace=False))
    xs, ys = synthetic.generate(2500, seed=3, classes=7, resolution=24, indices=idx)
    assert np.array_equal(xs, x[idx]) and np.array_equal(ys, y[idx])
    assert np.array_equal(synthetic.make_labels(2500, seed=3, classes=7), y)
    with pytest.raises(ValueError, match="sorted, distinct"):
        synthetic.generate(10, indices=np.array([3, 3]))


def test_synthetic_dataset_paints_only_the_images_it_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    painted = []
    real = synthetic.generate

    def counting(n: int, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        x, y = real(n, **kwargs)
        painted.append(len(x))
        return x, y

    monkeypatch.setattr(synthetic, "generate", counting)
    ds = load_dataset("synthetic", train_images=300, val_fraction=0.1, seed=5, synthetic_train=4000)
    # The images the set's public generator painted: 300 train + a validation split capped at
    # half of them (nas.data.loader.VAL_CAP_RULE), not 4,000.
    assert sum(painted) == 300 + 150
    # The same selection and bytes as painting the whole set and splitting it.
    monkeypatch.setattr(synthetic, "generate", real)
    x, y = synthetic.generate(4000)
    train, val = split_indices(y, 0.1, 5, 300, "synthetic")
    assert np.array_equal(ds.train_x, x[train]) and np.array_equal(ds.train_y, y[train])
    assert np.array_equal(ds.val_x, x[val]) and np.array_equal(ds.val_y, y[val])
