import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan import losses
from keras_medgan.losses import gradient_penalty

REAL = np.array([-5.0, 1.4, 12.5, 2.7], np.float32)
FAKE = np.array([0.5, -3.0, 7.0, -0.2], np.float32)


def _linear_critic(w):
    """D(x) = w . x over all pixels of a sample: its gradient is w everywhere."""
    w = tf.convert_to_tensor(w, tf.float32)
    return lambda x: tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]) * tf.reshape(w, [1, -1]), axis=1)


def _pair(shape=(3, 2, 2, 1), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, shape).astype(np.float32), rng.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("norm_w, expected", [(1.0, 0.0), (2.0, 1.0), (3.0, 4.0), (0.5, 0.25)])
def test_linear_critic_penalty_is_norm_minus_one_squared(norm_w, expected):
    """The issue's golden value: 0 for D(x) = w.x with ||w|| = 1, then (||w|| - 1)^2, growing with ||w||."""
    w = np.array([0.6, 0.0, 0.8, 0.0], np.float32).reshape(2, 2, 1) * norm_w  # ||w|| = norm_w
    real, fake = _pair()
    value = float(gradient_penalty(_linear_critic(w), real, fake, seed_or_alpha=7))
    assert value == pytest.approx(expected, abs=1e-6)


def test_quadratic_critic_golden_value_and_interpolation_direction():
    # D(x) = 0.5 ||x||^2 has gradient x, so the penalty sees the interpolate itself.
    # Sample 0: x^ = 0.5 * (3, 4) + 0.5 * 0 = (1.5, 2), norm 2.5 -> (2.5 - 1)^2 = 2.25.
    # Sample 1: alpha = 1 keeps the real (0, 1) (Gulrajani et al., Alg. 1: eps x + (1 - eps) x~), norm 1 -> 0.
    # Sample 2: alpha = 0 keeps the fake (2, 0): norm 2 -> 1.
    real = np.array([[3.0, 4.0], [0.0, 1.0], [9.0, 9.0]], np.float32)
    fake = np.array([[0.0, 0.0], [5.0, 5.0], [2.0, 0.0]], np.float32)
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=1)
    value = gradient_penalty(critic, real, fake, seed_or_alpha=np.array([0.5, 1.0, 0.0], np.float32))
    assert value.dtype == tf.float32 and value.shape == ()
    assert float(value) == pytest.approx((2.25 + 0.0 + 1.0) / 3, rel=1e-6)
    # A scalar alpha applies to every sample: alpha = 1 scores the reals, norms 5, 1, 12.73 (9 * sqrt 2).
    assert float(gradient_penalty(critic, real, fake, 1.0)) == pytest.approx(
        (16.0 + 0.0 + (9 * np.sqrt(2) - 1) ** 2) / 3, rel=1e-5)


def test_penalty_trains_the_critic_through_the_inner_gradient():
    # P(w) = (||w|| - 1)^2, so dP/dw = 2 (||w|| - 1) w / ||w||: with w = (0, 3, 4) that is 2 * 4 * w / 5 = 1.6 w.
    w = tf.Variable([0.0, 3.0, 4.0])
    real, fake = _pair(shape=(4, 3))
    with tf.GradientTape() as tape:
        penalty = gradient_penalty(lambda x: tf.linalg.matvec(x, w), real, fake, seed_or_alpha=0)
    grad = tape.gradient(penalty, w)
    assert float(penalty) == pytest.approx(16.0, rel=1e-6)
    np.testing.assert_allclose(grad.numpy(), 1.6 * np.array([0.0, 3.0, 4.0]), rtol=1e-5)


def test_penalty_is_finite_where_the_critic_is_flat_and_never_trains_g():
    real, fake = _pair()
    fake = tf.Variable(fake)
    w = tf.Variable(tf.zeros((2, 2, 1)))
    with tf.GradientTape(persistent=True) as tape:
        penalty = gradient_penalty(lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3]), real, fake)
    assert float(penalty) == pytest.approx(1.0, abs=1e-5)  # zero gradient: (0 - 1)^2, up to the 1e-12 stabiliser
    assert np.all(np.isfinite(tape.gradient(penalty, w).numpy()))
    assert tape.gradient(penalty, fake) is None  # the interpolates are constants for G


def test_seeded_alpha_is_reproducible_and_per_sample():
    real = np.zeros((64, 1), np.float32)
    fake = np.ones((64, 1), np.float32)
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=1)  # gradient x^ = 1 - alpha
    a = float(gradient_penalty(critic, real, fake, seed_or_alpha=3))
    b = float(gradient_penalty(critic, real, fake, seed_or_alpha=3))
    c = float(gradient_penalty(critic, real, fake, seed_or_alpha=keras.random.SeedGenerator(3)))
    assert a == b
    # alpha ~ U[0, 1) per sample: E[(1 - alpha - 1)^2] = E[alpha^2] = 1/3.
    assert a == pytest.approx(1 / 3, abs=0.1) and c == pytest.approx(1 / 3, abs=0.1)


def test_bfloat16_critic_gives_a_float32_penalty():
    w = np.array([0.0, 2.0], np.float32)
    critic = lambda x: tf.linalg.matvec(tf.cast(x, tf.bfloat16), tf.constant(w, tf.bfloat16))
    real, fake = _pair(shape=(2, 2))
    value = gradient_penalty(critic, real, fake, seed_or_alpha=0.3)
    assert value.dtype == tf.float32 and float(value) == pytest.approx(1.0, rel=1e-2)


def test_wasserstein_pair_golden_values():
    assert float(losses.wasserstein_generator_loss(FAKE)) == pytest.approx(-1.075)  # -mean(FAKE)
    # mean(FAKE) - mean(REAL) = 1.075 - 2.9
    assert float(losses.wasserstein_discriminator_loss(REAL, FAKE)) == pytest.approx(-1.825)
    patch = tf.constant(REAL.reshape(1, 2, 2, 1), tf.bfloat16)
    out = losses.wasserstein_discriminator_loss(patch, patch)
    assert out.dtype == tf.float32 and float(out) == 0.0


def test_wasserstein_is_not_a_standalone_registry_entry():
    # Without a Lipschitz constraint the critic is unbounded: models offer it as "wgan-gp" only.
    assert "wasserstein" not in losses.ADVERSARIAL_LOSSES and "wgan" not in losses.ADVERSARIAL_LOSSES
