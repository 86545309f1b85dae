import math

import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.losses import (content_loss, gaussian_mmd2, gram_matrix, inception_score_loss, style_content_loss,
                                 style_loss)
from keras_medgan.losses.guidance import PAPER_MMD_SIGMA, median_bandwidth


@pytest.mark.parametrize("k", [2, 3, 5])
def test_is_loss_of_balanced_one_hot_probs_is_log_k(k):
    """Eq. 7 is log IS: confident and evenly spread -> H(p~) - 0 = log K."""
    assert float(inception_score_loss(np.eye(k, dtype=np.float32))) == pytest.approx(math.log(k), abs=1e-6)


def test_is_loss_is_zero_when_all_rows_agree_and_matches_entropy_difference():
    assert float(inception_score_loss(np.full((4, 3), 1 / 3, np.float32))) == pytest.approx(0.0, abs=1e-7)
    assert float(inception_score_loss(np.tile([[0.9, 0.1]], (5, 1)))) == pytest.approx(0.0, abs=1e-7)
    # Hand computed: rows (1, 0) and (0.5, 0.5); marginal (0.75, 0.25).
    # KL1 = log(1 / 0.75); KL2 = 0.5 log(0.5 / 0.75) + 0.5 log(0.5 / 0.25).
    expected = 0.5 * (math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    assert float(inception_score_loss([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(expected, abs=1e-6)
    h = lambda p: -sum(v * math.log(v) for v in p if v > 0)  # noqa: E731
    assert expected == pytest.approx(h([0.75, 0.25]) - 0.5 * (h([1, 0]) + h([0.5, 0.5])), abs=1e-12)


def test_is_loss_gradient_is_finite_at_one_hot_rows():
    p = tf.Variable(np.eye(3, dtype=np.float32))
    with tf.GradientTape() as tape:
        value = inception_score_loss(p)
    assert np.all(np.isfinite(tape.gradient(value, p).numpy()))


def test_mmd_of_identical_sets_is_zero():
    """The U-statistic of Eq. 8 (Gretton et al. Lemma 6): exactly 0 when X and Y are the same sample."""
    x = np.random.default_rng(0).dirichlet(np.ones(3), size=6).astype(np.float32)
    assert float(gaussian_mmd2(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_mmd_golden_values_with_the_papers_kernel():
    """k(a, b) = exp(-||a - b||^2), sigma = sqrt(1/2)."""
    e2 = math.exp(-2.0)
    # Disjoint point masses: Kxx = Kyy = 1 off the diagonal, Kxy = exp(-2) -> 2 - 2 exp(-2).
    x, y = [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]
    assert float(gaussian_mmd2(x, y)) == pytest.approx(2 - 2 * e2, abs=1e-6)
    # X = {e1, e2}, Y = {(.5, .5), (.5, .5)}: Kxx = exp(-2), Kyy = 1, Kxy = exp(-0.5) -> negative (unbiased).
    x, y = [[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]
    value = float(gaussian_mmd2(x, y))
    assert value == pytest.approx(e2 + 1 - 2 * math.exp(-0.5), abs=1e-6) and value < 0
    # The cross term skips i == j: X = {e1, e2}, Y = {e1, e1}: Kxy(i != j) = {1, exp(-2)} -> 0.
    assert float(gaussian_mmd2([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.0, abs=1e-6)


def test_mmd_bandwidth_and_size_checks():
    x, y = [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]
    # sigma = 1: exp(-2 / 2).
    assert float(gaussian_mmd2(x, y, sigma=1.0)) == pytest.approx(2 - 2 * math.exp(-1.0), abs=1e-6)
    assert PAPER_MMD_SIGMA == pytest.approx(math.sqrt(0.5))
    # Median heuristic: pooled {e1, e1, e2, e2}: off-diagonal squared distances four 0s, eight 2s -> median 2.
    assert float(median_bandwidth(x, y)) == pytest.approx(math.sqrt(2.0), abs=1e-6)
    assert float(gaussian_mmd2(x, y, sigma=None)) == pytest.approx(2 - 2 * math.exp(-0.5), abs=1e-6)
    with pytest.raises(ValueError, match="same size N"):
        gaussian_mmd2(np.zeros((3, 2)), np.zeros((2, 2)))


def test_gram_of_a_1x1x2_map():
    """phi = (a, b) at one pixel: G = [[a^2, ab], [ab, b^2]] / (C H W) with C H W = 2."""
    g = gram_matrix(np.array([[[[2.0, 3.0]]]], np.float32)).numpy()
    np.testing.assert_allclose(g, [[[2.0, 3.0], [3.0, 4.5]]], atol=1e-6)


def test_gram_normalises_by_c_h_w():
    f = np.ones((1, 2, 3, 4), np.float32)  # each entry: sum over 6 pixels of 1 / (4 * 6)
    np.testing.assert_allclose(gram_matrix(f).numpy(), np.full((1, 4, 4), 0.25), atol=1e-6)


def test_style_loss_compares_batch_mean_grams_and_sums_layers():
    fake = np.array([[[[2.0, 0.0]]], [[[0.0, 2.0]]]], np.float32)  # grams diag(2, 0), diag(0, 2): mean diag(1, 1)
    real = np.array([[[[1.0, 1.0]]]], np.float32)  # gram [[.5, .5], [.5, .5]]
    # || diag(1,1) - 0.5 ones ||_F^2 = 4 * 0.25 = 1.
    assert float(style_loss(fake, real)) == pytest.approx(1.0, abs=1e-6)
    assert float(style_loss([fake, fake], [real, real])) == pytest.approx(2.0, abs=1e-6)
    assert float(style_loss(fake[::-1], fake)) == pytest.approx(0.0, abs=1e-7)  # order within a batch is irrelevant
    with pytest.raises(ValueError, match="same layers"):
        style_loss([fake], [real, real])


def test_style_content_loss_is_style_plus_content_at_the_middle_layer():
    rng = np.random.default_rng(1)
    layers = [rng.normal(size=(2, 2, 2, 3)).astype(np.float32) for _ in range(3)]
    style_target = [rng.normal(size=(4, 2, 2, 3)).astype(np.float32) for _ in range(3)]
    content_target = [f + 1.0 for f in layers]  # content distance 1 per element at every layer
    value = float(style_content_loss(layers, style_target, content_target))
    assert value == pytest.approx(float(style_loss(layers, style_target)) + 1.0, abs=1e-5)
    assert float(content_loss(layers[1], content_target[1])) == pytest.approx(1.0, abs=1e-6)
    # Identical transfer and content target: only the style part remains.
    same = float(style_content_loss(layers, style_target, layers, content_layer=0))
    assert same == pytest.approx(float(style_loss(layers, style_target)), abs=1e-6)
