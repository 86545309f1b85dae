import re

import keras
import numpy as np
import pytest

from keras_medgan.layers import ResizeConv2D, make_norm


def _ones_layer(filters=1, kernel_size=1, **kwargs):
    return ResizeConv2D(filters, kernel_size=kernel_size, use_bias=False, kernel_initializer="ones", **kwargs)


def test_output_shape_and_compute_output_shape():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 4)).astype("float32")
    layer = ResizeConv2D(6)
    assert tuple(layer(x).shape) == (2, 10, 14, 6)
    assert layer.compute_output_shape((None, 5, 7, 4)) == (None, 10, 14, 6)
    assert layer.compute_output_shape((None, None, None, 4)) == (None, None, None, 6)
    layer3 = ResizeConv2D(2, kernel_size=5, scale=3, interpolation="bilinear")
    assert tuple(layer3(x).shape) == (2, 15, 21, 2)
    # Weights: kernel_size x kernel_size conv kernel and a bias.
    assert [tuple(w.shape) for w in layer.weights] == [(3, 3, 4, 6), (6,)]
    no_bias = ResizeConv2D(6, use_bias=False)
    no_bias.build((None, 5, 7, 4))
    assert [tuple(w.shape) for w in no_bias.weights] == [(3, 3, 4, 6)]


def test_nearest_golden_values_with_ones_kernel():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 3)).astype("float32")
    y = _ones_layer()(x)
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)


def test_bilinear_golden_values_with_ones_kernel():
    # 1-D ramp 0, 1 upsampled x2 with half-pixel centres: 0, 0.25, 0.75, 1 (edges clamp).
    x = np.array([0.0, 1.0], "float32").reshape(1, 1, 2, 1)
    y = _ones_layer(interpolation="bilinear")(x)
    np.testing.assert_allclose(np.asarray(y)[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(y)[0, 1, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_constant_input_has_no_checkerboard_unlike_transposed_conv():
    """DermGAN Sec. 2 / Odena et al. 2016: resize-conv is even, stride-2 deconvolution is not."""
    x = np.ones((1, 8, 8, 2), "float32")
    resize = _ones_layer(kernel_size=3)(x)
    interior = np.asarray(resize)[0, 1:-1, 1:-1, 0]
    np.testing.assert_array_equal(interior, np.full_like(interior, 9 * 2))

    deconv = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", use_bias=False, kernel_initializer="ones")
    checker = np.asarray(deconv(x))[0, 1:-1, 1:-1, 0]
    # Output pixels receive 1, 2 or 4 kernel taps depending on their parity: a checkerboard.
    assert sorted(np.unique(checker).tolist()) == [2.0, 4.0, 8.0]
    assert checker[0, 0] != checker[1, 0] and checker[0, 0] != checker[0, 1]



@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape, transposed", [((2, 16, 20, 4), True), ((2, 5, 7, 4), False)])
def test_nearest_x2_3x3_runs_as_exact_transposed_equivalent(use_bias, shape, transposed):
    """The fast path (4x4 stride-2 transposed conv with summed taps, inputs >= 16x16) is the resize-then-convolve
    function: same outputs, same gradients for the input and the 3x3 kernel, borders included."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    layer = ResizeConv2D(6, use_bias=use_bias, kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))
    layer.build(x.shape)
    assert layer.runs_transposed(x.shape) is transposed
    assert not ResizeConv2D(6, interpolation="bilinear").runs_transposed(shape)
    assert not ResizeConv2D(6, kernel_size=5).runs_transposed(shape)
    if use_bias:
        layer.conv.bias.assign(rng.normal(size=(6,)).astype("float32"))

    def reference(inputs):
        up = tf.repeat(tf.repeat(inputs, 2, axis=1), 2, axis=2)
        y = tf.nn.conv2d(up, layer.conv.kernel.value, 1, "SAME")
        return y + layer.conv.bias.value if use_bias else y

    weights = tf.constant(rng.normal(size=(shape[0], 2 * shape[1], 2 * shape[2], 6)).astype("float32"))
    grads = []
    for fn in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * weights)
        grads.append((y, *tape.gradient(loss, [x, layer.conv.kernel.value])))
    for fast, ref in zip(*grads):  # float32 rounding of sums over up to 2 * 32 * 40 pixels
        ref = np.asarray(ref)
        np.testing.assert_allclose(np.asarray(fast), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())

def test_config_round_trip():
    layer = ResizeConv2D(8, kernel_size=5, scale=4, interpolation="bilinear", use_bias=False,
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.02), name="up")
    config = layer.get_config()
    assert config["filters"] == 8 and config["scale"] == 4 and config["interpolation"] == "bilinear"
    restored = ResizeConv2D.from_config(config)
    assert restored.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(revived, ResizeConv2D) and revived.get_config() == config


def test_keras_file_save_load_same_outputs(tmp_path):
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, ResizeConv2D(4, name="up")(inputs))
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("up"), ResizeConv2D)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, rtol=1e-6, atol=1e-6)


def test_follows_mixed_precision_policy():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        layer = ResizeConv2D(4)
        y = layer(np.ones((1, 4, 4, 2), "float32"))
        assert y.dtype == "bfloat16"
        assert all(w.dtype == "float32" for w in layer.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0}, "`filters` must be an integer >= 1. Received: filters=0"),
        ({"filters": 4, "kernel_size": 2.5}, "`kernel_size` must be an integer >= 1. Received: kernel_size=2.5"),
        ({"filters": 4, "scale": 0}, "`scale` must be an integer >= 1. Received: scale=0"),
        ({"filters": 4, "interpolation": "bicubic"}, "Received: interpolation='bicubic'"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ResizeConv2D(**kwargs)


def test_make_norm_matches_pytorch_defaults():
    batch = make_norm("batch", name="bn")
    assert isinstance(batch, keras.layers.BatchNormalization)
    assert (batch.momentum, batch.epsilon, batch.name) == (0.9, 1e-5, "bn")
    instance = make_norm("instance")
    assert isinstance(instance, keras.layers.GroupNormalization)
    assert (instance.groups, instance.center, instance.scale, instance.epsilon) == (-1, False, False, 1e-5)
    # Instance norm: every sample and channel normalised on its own, no trainable weights.
    x = np.random.default_rng(3).normal(3.0, 2.0, size=(2, 5, 5, 3)).astype("float32")
    y = np.asarray(instance(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
    assert instance.trainable_weights == []
    message = "`norm` must be one of ('batch', 'instance'). Received: norm='layer'"
    with pytest.raises(ValueError, match=re.escape(message)):
        make_norm("layer")
