"""The synthetic copies of mammo.testing keep their promise: the original's area is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from mammo.testing import film_scan, larger_detector


def test_film_scan_never_draws_on_the_original():
    """Labels and markers go where they fit whole in the margin (a label wider than the side
    margins once landed on the breast at the chest wall), or are left out."""
    rng = np.random.default_rng(0)
    labelled = 0
    for seed in range(100):
        h, w = int(rng.integers(60, 900)), int(rng.integers(60, 900))
        img = rng.random((h, w)).astype(np.float32)
        film, (dr, dc) = film_scan(img, np.random.default_rng(seed))
        np.testing.assert_array_equal(film[dr : dr + h, dc : dc + w], img)
        # the same film edges (drawn first, from the same seed) without label and marker
        bare, _ = film_scan(img, np.random.default_rng(seed), label=False, marker=False)
        labelled += not np.array_equal(film, bare)
    assert labelled > 75  # nearly every copy still carries a label or a marker


def test_larger_detector_keeps_the_original():
    img = np.random.default_rng(1).random((50, 40)).astype(np.float32)
    big, (r0, c0) = larger_detector(img, factor=1.8, level=0.06)
    np.testing.assert_array_equal(big[r0 : r0 + 50, c0 : c0 + 40], img)
    assert big.shape == (90, 72) and big[0, 0] == np.float32(0.06)


@pytest.mark.parametrize("pad", [0.0, 0.004, 0.01, 0.02])
def test_film_scan_with_a_margin_of_a_pixel_or_two(pad):
    """A margin of 0-2 px once crashed the film edge (its penumbra was longer than the edge)."""
    img = np.random.default_rng(2).random((100, 80)).astype(np.float32) * 0.5
    film, (dr, dc) = film_scan(img, np.random.default_rng(3), pad=pad, sides=["top", "bottom", "left", "right"])
    np.testing.assert_array_equal(film[dr : dr + 100, dc : dc + 80], img)
    assert film.shape == (100 + 2 * dr, 80 + 2 * dc)
    if dr:  # the edge's first row is bright, however thin the margin
        assert film[0, dc:-dc].mean() > 0.8 and film[-1, dc:-dc].mean() > 0.8
