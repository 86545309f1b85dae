"""Perceptual path length: a linear generator against a hand computation, a w-blind generator scores 0."""

import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.layers.stylegan import ModulatedConv2D
from keras_medgan.metrics.ppl import filtered_mean, perceptual_path_length
from keras_medgan.networks.stylegan2 import stylegan2_generator


class LinearGenerator:
    """w = z A; image = reshape(w M) (every ws row the same w): path lengths are ||(w1 - w0) M||^2 exactly."""

    num_classes, z_dim, w_dim, num_ws = 0, 4, 3, 2

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.A = rng.normal(size=(self.z_dim, self.w_dim))
        self.M = rng.normal(size=(self.w_dim, 2 * 2 * 1))

    def mapping(self, z, training=False):
        return tf.matmul(z, tf.constant(self.A, tf.float32))

    def synthesis(self, ws, training=False):
        return tf.reshape(tf.matmul(ws[:, 0], tf.constant(self.M, tf.float32)), [-1, 2, 2, 1])


def l2_squared(a, b):
    return tf.reduce_sum(tf.square(a - b), axis=[1, 2, 3])


def test_linear_generator_matches_hand_computation():
    g = LinearGenerator()
    n = 300
    result = perceptual_path_length(g, l2_squared, num_samples=n, epsilon=1e-2, batch_size=64, seed=5,
                                    bootstrap=200, return_distances=True)
    z = np.random.default_rng(5).standard_normal((n, 2, g.z_dim)).astype(np.float32).astype(np.float64)
    w0, w1 = z[:, 0] @ g.A, z[:, 1] @ g.A
    hand = np.sum(((w1 - w0) @ g.M) ** 2, axis=1)  # eps cancels for a linear generator
    np.testing.assert_allclose(result["distances"], hand, rtol=2e-3)
    # 1st percentile 'lower' of 300 values = 3rd smallest, 99th 'higher' = 3rd largest: 2 dropped at each end
    expected = np.mean(np.sort(hand)[2:-2])
    assert result["n"] == n and result["n_kept"] == n - 4
    assert result["ppl"] == pytest.approx(expected, rel=2e-3)
    assert result["low"] == pytest.approx(np.sort(hand)[2], rel=2e-3)
    assert result["high"] == pytest.approx(np.sort(hand)[-3], rel=2e-3)
    assert (result["space"], result["sampling"], result["epsilon"]) == ("w", "end", 1e-2)
    assert result["ci_low"] < result["ppl"] < result["ci_high"]
    # the value does not depend on the batch size
    again = perceptual_path_length(g, l2_squared, num_samples=n, epsilon=1e-2, batch_size=7, seed=5, bootstrap=0)
    assert again["ppl"] == pytest.approx(result["ppl"], rel=1e-5) and "ci_low" not in again


def test_default_epsilon_close_to_exact_for_linear_generator():
    g = LinearGenerator(1)
    result = perceptual_path_length(g, l2_squared, num_samples=50, seed=0, bootstrap=0, return_distances=True)
    z = np.random.default_rng(0).standard_normal((50, 2, g.z_dim)).astype(np.float32).astype(np.float64)
    hand = np.sum(((z[:, 1] - z[:, 0]) @ g.A @ g.M) ** 2, axis=1)
    np.testing.assert_allclose(result["distances"], hand, rtol=5e-2)
    assert result["epsilon"] == 1e-4


def test_stylegan2_with_zeroed_affine_kernels_has_zero_ppl():
    g = stylegan2_generator(16, 3, num_classes=2, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256,
                            channel_max=32)
    for layer in g.synthesis.layers:
        if isinstance(layer, ModulatedConv2D):
            layer.affine.kernel.assign(np.zeros(layer.affine.kernel.shape, np.float32))
    result = perceptual_path_length(g, l2_squared, num_samples=8, batch_size=8, bootstrap=0,
                                    return_distances=True)
    assert result["ppl"] == 0.0 and np.all(result["distances"] == 0.0)
    assert result["labels"] == "uniform random classes"
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 2\)"):
        perceptual_path_length(g, l2_squared, num_samples=4, labels=np.array([0, 1, 2, 0]))


def test_filtered_mean_and_argument_errors():
    mean, low, high, keep = filtered_mean(np.arange(1.0, 201.0))  # 1..200
    assert (low, high) == (2.0, 199.0) and keep.sum() == 198 and mean == pytest.approx(100.5)
    with pytest.raises(ValueError, match="`epsilon` must be > 0"):
        perceptual_path_length(LinearGenerator(), l2_squared, num_samples=4, epsilon=0.0)
    with pytest.raises(ValueError, match="unconditional"):
        perceptual_path_length(LinearGenerator(), l2_squared, num_samples=4, labels=[0, 0, 0, 0])
