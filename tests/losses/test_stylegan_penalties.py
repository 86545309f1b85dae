"""StyleGAN2 regularisers: R1 on a linear discriminator (gradient = its weights), path lengths and the
path-length penalty by hand."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.losses.penalties import path_length_penalty, path_lengths, r1_penalty


def test_r1_penalty_is_the_squared_gradient_norm_per_image():
    g = np.zeros((2, 2, 2, 1), "float32")
    g[0] = [[[1.0], [2.0]], [[0.0], [-2.0]]]  # 1 + 4 + 0 + 4
    g[1, 0, 0, 0] = 0.5
    np.testing.assert_allclose(r1_penalty(g).numpy(), [9.0, 0.25], rtol=1e-6)
    assert r1_penalty(tf.constant(g, tf.float16)).dtype == tf.float32


def test_r1_on_a_linear_discriminator_is_the_squared_norm_of_its_weights():
    # D(x) = sum(w * x) + b: grad_x D = w for every image, so R1 = ||w||^2 whatever the image.
    keras.utils.set_random_seed(0)
    d = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
    d.layers[-1].bias.assign([0.7])
    w = d.layers[-1].kernel.numpy()[:, 0]
    real = tf.constant(np.random.default_rng(1).uniform(-1, 1, (3, 4, 4, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(d(real))
    penalty = r1_penalty(tape.gradient(total, real)).numpy()
    np.testing.assert_allclose(penalty, np.full(3, np.sum(w ** 2)), rtol=1e-5)


def test_path_lengths_average_the_squared_norm_over_the_ws_rows():
    g = np.zeros((2, 2, 3), "float32")
    g[0, 0] = [3.0, 4.0, 0.0]  # |.|^2 = 25
    g[0, 1] = [0.0, 0.0, 1.0]  # 1 -> sqrt((25 + 1) / 2) = sqrt(13)
    g[1] = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]  # 3 and 3 -> sqrt(3)
    np.testing.assert_allclose(path_lengths(g).numpy(), [math.sqrt(13.0), math.sqrt(3.0)], rtol=1e-6)


def test_path_length_penalty_uses_the_updated_running_mean():
    penalty, mean = path_length_penalty(tf.constant([1.0, 3.0]), 0.0)
    assert float(mean) == pytest.approx(0.02)  # 0 + 0.01 * (2 - 0)
    np.testing.assert_allclose(penalty.numpy(), [0.98 ** 2, 2.98 ** 2], rtol=1e-6)
    penalty, mean = path_length_penalty(tf.constant([2.0, 4.0, 6.0]), tf.constant(1.0), decay=0.5)
    assert float(mean) == pytest.approx(2.5)  # 1 + 0.5 * (4 - 1)
    np.testing.assert_allclose(penalty.numpy(), [0.25, 2.25, 12.25], rtol=1e-6)


def test_path_length_of_a_linear_synthesis_is_the_projected_norm():
    # img = ws[:, 0] @ A: J^T y = (A y) on row 0, zero on row 1 -> length sqrt(|A y|^2 / 2).
    a = np.random.default_rng(2).standard_normal((3, 5)).astype("float32")
    y = np.random.default_rng(3).standard_normal((2, 5)).astype("float32")
    ws = tf.constant(np.random.default_rng(4).standard_normal((2, 2, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(ws)
        projected = tf.reduce_sum((ws[:, 0] @ a) * y)
    lengths = path_lengths(tape.gradient(projected, ws)).numpy()
    np.testing.assert_allclose(lengths, np.sqrt(np.sum((y @ a.T) ** 2, axis=1) / 2.0), rtol=1e-5)
