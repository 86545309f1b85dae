"""Sampling of real subsets and synthetic images: counts, planted near-duplicates, ancillary-error order."""

import numpy as np
import pytest
from PIL import Image

from keras_medgan.evaluation import sampling


def _distinct_images(n, size=32, seed=0):
    """Smooth random patterns (6x6 noise, bicubic upsampled): clearly different perceptual hashes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC)) for c in coarse])


def _near_duplicate(image, seed):
    rng = np.random.default_rng(seed)
    return np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape) + 3, 0, 255).astype(np.uint8)


def test_stratified_subset_keeps_class_ratio_and_redraws_per_replicate():
    labels = np.array([0] * 80 + [1] * 16 + [2] * 4)
    a = sampling.stratified_subset(labels, 0.25, (0, 0))
    assert np.bincount(labels[a]).tolist() == [20, 4, 1]
    assert np.array_equal(a, sampling.stratified_subset(labels, 0.25, (0, 0)))
    assert not np.array_equal(a, sampling.stratified_subset(labels, 0.25, (0, 1)))
    assert np.array_equal(sampling.stratified_subset(labels, 1.0, 5), np.arange(100))
    assert len(sampling.stratified_subset(labels, 0.0, 5)) == 0
    assert np.bincount(labels[sampling.stratified_subset(labels, 1 / 16, 1)]).tolist() == [5, 1, 1]
    with pytest.raises(ValueError, match="fraction"):
        sampling.stratified_subset(labels, 1.5, 0)


def test_synthetic_counts_follow_the_reviews_ratios():
    real = [800, 200]  # benign, melanoma
    assert sampling.synthetic_counts(real, 0.5).tolist() == [400, 100]  # 1:1/2 keeps the class ratio
    assert sampling.synthetic_counts(real, 0.5, {1: 0.5}).tolist() == [400, 100]  # (1:1/2:1/2) is the same
    assert sampling.synthetic_counts(real, 0.5, {1: 0.75}).tolist() == [400, 150]  # (1:1/2:3/4)
    assert sampling.synthetic_counts(real, 0.5, {1: 1.0}).tolist() == [400, 200]  # (1:1/2:1)
    assert sampling.synthetic_counts(real, 15 / 16).tolist() == [750, 188]  # anonymization 1/16:15/16 top-up
    with pytest.raises(ValueError, match="class_ratios names class 2"):
        sampling.synthetic_counts(real, 0.5, {2: 1.0})


def test_balancing_ratios_produce_the_requested_counts_in_the_selection():
    labels = np.repeat([0, 1], 500)
    counts = sampling.synthetic_counts([800, 200], 0.5, {1: 0.75})
    idx = sampling.select_synthetic(labels, counts, "random", seed=3)
    assert np.bincount(labels[idx]).tolist() == [400, 150]
    assert len(set(idx.tolist())) == len(idx)
    assert np.array_equal(idx, sampling.select_synthetic(labels, counts, "random", seed=3))  # fixed sample


def test_diverse_removes_planted_near_duplicates():
    originals = _distinct_images(12)
    copies = np.stack([_near_duplicate(img, i) for i, img in enumerate(originals)])
    images = np.concatenate([originals, copies])
    labels = np.zeros(24, np.int64)
    hashes = sampling.perceptual_hashes(images)
    assert hashes.shape == (24, 64)
    distance = np.count_nonzero(hashes[:12] != hashes[12:], axis=1)
    assert (distance <= sampling.DEFAULT_MAX_HASH_DISTANCE).all()  # the planted copies are near-duplicates
    between = np.count_nonzero(hashes[:12, None] != hashes[None, :12], axis=2)[np.triu_indices(12, 1)]
    assert between.min() > sampling.DEFAULT_MAX_HASH_DISTANCE  # the originals are not
    keep = sampling.diverse_mask(hashes, labels, np.random.default_rng(0).permutation(24))
    assert keep.sum() == 12
    assert not (keep[:12] & keep[12:]).any()  # never an original together with its copy
    idx = sampling.select_synthetic(labels, [12], "diverse", seed=1, hashes=hashes)
    assert sorted(i % 12 for i in idx) == list(range(12))
    with pytest.raises(sampling.NotEnoughSyntheticImages, match="12 usable images of class '0' after removing "
                                                                "near-duplicates, but the arm needs 13"):
        sampling.select_synthetic(labels, [13], "diverse", seed=1, hashes=hashes)
    random_pick = sampling.select_synthetic(labels, [24], "random", seed=1)
    assert len(random_pick) == 24  # random sampling keeps duplicates


def test_diverse_compares_only_within_a_class():
    image = _distinct_images(1)
    images = np.concatenate([image, image])
    hashes = sampling.perceptual_hashes(images)
    assert sampling.diverse_mask(hashes, [0, 1], [0, 1]).tolist() == [True, True]
    assert sampling.diverse_mask(hashes, [0, 0], [0, 1]).tolist() == [True, False]


def test_best_and_worst_order_by_the_ancillary_classifiers_error():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([[.9, .1], [.6, .4], [.2, .8], [.75, .25], [.3, .7], [.95, .05], [.1, .9], [.5, .5]])
    errors = sampling.classification_error(probs, labels)
    np.testing.assert_allclose(errors, [.1, .4, .8, .25, .3, .95, .1, .5])
    best = sampling.select_synthetic(labels, [2, 2], "best", errors=errors)
    worst = sampling.select_synthetic(labels, [2, 2], "worst", errors=errors)
    assert best.tolist() == [0, 3, 4, 6]
    assert worst.tolist() == [1, 2, 5, 7]
    order = sampling.select_synthetic(labels, [4, 0], "best", errors=errors)
    assert set(order.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="needs the ancillary classifier's errors"):
        sampling.select_synthetic(labels, [1, 1], "worst")
    with pytest.raises(ValueError, match="method must be one of|`method` must be one of"):
        sampling.select_synthetic(labels, [1, 1], "smart")


def test_perceptual_hashes_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        sampling.perceptual_hashes(np.zeros((2, 8, 8, 3), np.float32))
