"""FusedBatchNormalization: Keras BatchNormalization's function (outputs, gradients, moving statistics)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.layers import FusedBatchNormalization, make_norm


def _pair(**kwargs):
    """A Keras BN and a fused BN with identical weights."""
    kwargs = {"momentum": 0.9, "epsilon": 1e-5, **kwargs}
    ref, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    return ref, fused


def _build_same(ref, fused, shape, seed=0):
    ref.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(1.0, 0.2, w.shape).astype("float32") if "gamma" in w.path
               else rng.normal(0.0, 0.2, w.shape).astype("float32") if "beta" in w.path or "mean" in w.path
               else rng.uniform(0.5, 2.0, w.shape).astype("float32") for w in ref.weights]
    ref.set_weights(weights)
    fused.set_weights(weights)


def _forward_backward(layer, x, training):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        # A non-uniform upstream gradient, so the input gradient is not trivially zero.
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.reshape(tf.range(tf.size(y), dtype=tf.float32) % 7.0,
                                                                  y.shape))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y, grads


@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_batch_normalization_float32(training):
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(3, 5, 6, 4)).astype("float32")
    ref, fused = _pair()
    _build_same(ref, fused, x.shape)
    y_ref, g_ref = _forward_backward(ref, x, training)
    y, g = _forward_backward(fused, x, training)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    # Moving statistics: updated in training (biased variance, as Keras), untouched in inference.
    np.testing.assert_allclose(fused.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-5, atol=1e-6)


def test_moving_statistics_golden_values():
    # One channel, 4 values 0, 1, 2, 3: mean 1.5, biased variance 1.25 (unbiased would be 1.6667).
    x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    layer.build(x.shape)
    y = layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), [0.9 * 0 + 0.1 * 1.5], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), [0.9 * 1 + 0.1 * 1.25], rtol=1e-6)
    np.testing.assert_allclose(y.numpy().ravel(), (np.arange(4) - 1.5) / np.sqrt(1.25 + 1e-5), rtol=1e-5)


def test_matches_keras_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = tf.cast(np.random.default_rng(2).normal(size=(2, 8, 8, 16)).astype("float32"), tf.bfloat16)
        ref, fused = _pair()
        _build_same(ref, fused, x.shape)
        assert fused.gamma.dtype == "float32"
        y_ref, g_ref = _forward_backward(ref, x, True)
        y, g = _forward_backward(fused, x, True)
        assert y.dtype == tf.bfloat16 == y_ref.dtype
        # Both compute in float32 and round once to bfloat16 (2**-8 relative).
        np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(y_ref, tf.float32).numpy(),
                                   rtol=2e-2, atol=2e-2)
        for a, b in zip(g[1:], g_ref[1:]):  # gamma, beta gradients (float32)
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-2, atol=0.5)
        np.testing.assert_allclose(fused.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-4)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (4, 3), (2, 3, 4, 5, 2)])
def test_falls_back_to_keras_where_the_kernel_does_not_apply(shape):
    # A single value per channel (n = 1), 2-D and 5-D inputs: Keras's own path, same numbers.
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    ref, fused = _pair()
    _build_same(ref, fused, x.shape)
    np.testing.assert_allclose(fused(x, training=True).numpy(), ref(x, training=True).numpy(), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-6)


def test_runs_one_fused_op_in_a_graph():
    layer = FusedBatchNormalization()
    layer.build((2, 4, 4, 3))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 4, 4, 3), tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in ops
    assert "Rsqrt" not in ops  # the unfused Keras path normalises with rsqrt


def test_config_and_save_load_round_trip(tmp_path):
    layer = make_norm("batch", name="bn")
    assert isinstance(layer, FusedBatchNormalization)
    restored = FusedBatchNormalization.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 3)).astype("float32")
    model(x, training=True)  # move the statistics away from their initial values
    path = os.path.join(tmp_path, "bn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], FusedBatchNormalization)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-6)
