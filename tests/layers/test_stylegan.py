"""StyleGAN2 building blocks against numpy references: FIR resampling as NVIDIA's upfirdn2d, modulation and
demodulation as per-sample kernels, minibatch stddev by explicit groups, equalised learning rate; config and
``.keras`` round trips for every layer."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.layers.stylegan import (ConstantInput, EqualizedConv2D, EqualizedDense, FIRUpsample2D,
                                          MinibatchStdDev, ModulatedConv2D, NormalizeSecondMoment, ProjectionOutput,
                                          ScaledAdd, fir_downsample_2x, fir_kernel, fir_upsample_2x, lrelu,
                                          minibatch_stddev, modulated_weights, normalize_2nd_moment)

F1 = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
SQRT2 = math.sqrt(2.0)


def _upfirdn(x, f, up=1, down=1, pad=(0, 0)):
    """NVIDIA's upfirdn2d in numpy ([B, H, W, C]): zero-insert ``up``, pad, correlate with ``f``, keep every
    ``down``-th pixel."""
    b, h, w, c = x.shape
    u = np.zeros((b, h * up, w * up, c))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), pad, pad, (0, 0)))
    n = f.shape[0]
    oh, ow = u.shape[1] - n + 1, u.shape[2] - n + 1
    out = np.zeros((b, oh, ow, c))
    for i in range(n):
        for j in range(n):
            out += f[i, j] * u[:, i:i + oh, j:j + ow]
    return out[:, ::down, ::down]


def _correlate(x, k, stride=1):
    """'VALID' cross-correlation of ``x [H, W, I]`` with ``k [kh, kw, I, O]`` in numpy."""
    kh, kw = k.shape[:2]
    oh, ow = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((oh, ow, k.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[i:i + oh, j:j + ow] @ k[i, j]
    return out[::stride, ::stride]


def _np_lrelu(x):
    return np.where(x > 0, x, 0.2 * x) * SQRT2


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# ---------------------------------------------------------------------------------------------- pure helpers


def test_fir_kernel_is_the_normalised_outer_product_of_the_taps():
    k = fir_kernel()
    assert k.shape == (4, 4) and k.dtype == np.float32
    assert k.sum() == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(k, np.outer(F1, F1), rtol=1e-6)
    np.testing.assert_allclose(fir_kernel((1, 2, 1)), np.outer([1, 2, 1], [1, 2, 1]) / 16.0, rtol=1e-6)


def test_fir_upsample_matches_upfirdn2d_and_keeps_a_constant_image_constant():
    x = _rand(2, 5, 6, 3)
    y = fir_upsample_2x(tf.constant(x)).numpy()
    assert y.shape == (2, 10, 12, 3)
    np.testing.assert_allclose(y, _upfirdn(x, 4.0 * np.outer(F1, F1), up=2, pad=(2, 1)), atol=1e-5)
    const = fir_upsample_2x(tf.fill((1, 6, 6, 2), 0.7)).numpy()
    np.testing.assert_allclose(const[:, 2:-2, 2:-2], 0.7, rtol=1e-6)  # gain 4 undoes the zero insertion
    assert const[0, 0, 0, 0] < 0.7  # zero padding shows at the border


def test_fir_downsample_matches_upfirdn2d_and_shapes():
    x = _rand(2, 8, 6, 3, seed=1)
    y = fir_downsample_2x(tf.constant(x)).numpy()
    assert y.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(y, _upfirdn(x, np.outer(F1, F1), down=2, pad=(1, 1)), atol=1e-5)


def test_downsample_of_upsample_is_the_zero_phase_lowpass_3_10_3():
    # 1-D: 2 f * f = [1, 6, 15, 20, 15, 6, 1] / 32, decimated at the input's phase -> [3, 10, 3] / 16.
    x = _rand(1, 10, 10, 2, seed=2)
    y = fir_downsample_2x(fir_upsample_2x(tf.constant(x))).numpy()
    assert y.shape == x.shape
    lowpass = _upfirdn(x, np.outer([3, 10, 3], [3, 10, 3]) / 256.0, pad=(1, 1))
    np.testing.assert_allclose(y[:, 2:-2, 2:-2], lowpass[:, 2:-2, 2:-2], atol=1e-5)


def test_lrelu_gain_slope_and_clamp():
    x = tf.constant([-2.0, -0.5, 0.0, 1.0, 300.0])
    np.testing.assert_allclose(lrelu(x).numpy(), [-0.4 * SQRT2, -0.1 * SQRT2, 0.0, SQRT2, 300 * SQRT2], rtol=1e-6)
    np.testing.assert_allclose(lrelu(x, clamp=1.0).numpy(), [-0.4 * SQRT2, -0.1 * SQRT2, 0.0, 1.0, 1.0], rtol=1e-6)


def test_normalize_2nd_moment_gives_unit_mean_square():
    x = _rand(3, 7) * np.array([[0.1], [1.0], [50.0]], "float32")
    y = normalize_2nd_moment(x).numpy()
    np.testing.assert_allclose(np.mean(y ** 2, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y, x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True)), rtol=1e-5)
    np.testing.assert_allclose(NormalizeSecondMoment()(x).numpy(), y, rtol=1e-6)


def test_modulated_weights_demodulate_to_unit_norm_per_sample_and_output_channel():
    weight, styles = _rand(3, 3, 4, 5), _rand(2, 4, seed=1) + 1.0
    w = modulated_weights(tf.constant(weight), tf.constant(styles)).numpy()
    assert w.shape == (2, 3, 3, 4, 5)
    np.testing.assert_allclose(np.sqrt(np.sum(w ** 2, axis=(1, 2, 3))), 1.0, rtol=1e-5)
    modulated = weight[None] * styles[:, None, None, :, None]
    np.testing.assert_allclose(w, modulated / np.linalg.norm(modulated.reshape(2, -1, 5), axis=1)[:, None, None, None],
                               rtol=1e-5)
    plain = modulated_weights(tf.constant(weight), tf.constant(styles), demodulate=False).numpy()
    np.testing.assert_allclose(plain, modulated, rtol=1e-6)


def _minibatch_stddev_numpy(x, group, num_channels):
    b, h, w, c = x.shape
    g = min(group, b)
    m = b // g
    out = np.zeros((b, h, w, num_channels))
    for n in range(b):
        members = x[np.arange(n % m, b, m)]  # group n mod (b / g)
        std = np.sqrt(members.var(axis=0) + 1e-8)  # population std over the group
        for f in range(num_channels):
            out[n, :, :, f] = std[..., f * (c // num_channels):(f + 1) * (c // num_channels)].mean()
    return np.concatenate([x, out], axis=-1)


@pytest.mark.parametrize("group, num_channels", [(4, 1), (2, 1), (4, 2), (16, 1)])
def test_minibatch_stddev_against_numpy_groups(group, num_channels):
    x = _rand(8, 3, 3, 4, seed=3) * np.arange(1, 9, dtype="float32")[:, None, None, None]  # groups differ
    y = minibatch_stddev(tf.constant(x), group, num_channels).numpy()
    assert y.shape == (8, 3, 3, 4 + num_channels)
    np.testing.assert_allclose(y, _minibatch_stddev_numpy(x, group, num_channels), rtol=1e-5)
    layer = MinibatchStdDev(group, num_channels)
    np.testing.assert_allclose(layer(x).numpy(), y, rtol=1e-6)
    assert layer.compute_output_shape((8, 3, 3, 4)) == (8, 3, 3, 4 + num_channels)


def test_minibatch_stddev_group_membership_is_n_mod_groups():
    # Batch 8, group 4 -> groups {0, 2, 4, 6} (all zeros) and {1, 3, 5, 7} (values 0, 2, 4, 6: std sqrt(5)).
    x = np.zeros((8, 1, 1, 1), "float32")
    x[1::2, 0, 0, 0] = [0.0, 2.0, 4.0, 6.0]
    stat = minibatch_stddev(tf.constant(x), 4).numpy()[:, 0, 0, 1]
    np.testing.assert_allclose(stat[0::2], 1e-4, rtol=1e-3)
    np.testing.assert_allclose(stat[1::2], math.sqrt(5.0), rtol=1e-6)


# ---------------------------------------------------------------------------------------------- layers


def test_equalized_dense_runtime_weight_is_kernel_times_lr_mul_over_sqrt_fan_in():
    layer = EqualizedDense(3, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    x = _rand(4, 6)
    layer.build((None, 6))
    np.testing.assert_allclose(layer.bias.numpy(), 50.0)  # stored / lr_multiplier, used times it
    layer.kernel.assign(_rand(6, 3, seed=1))
    layer.bias.assign(np.array([10.0, -20.0, 30.0], "float32"))
    want = _np_lrelu(x @ (layer.kernel.numpy() * 0.01 / math.sqrt(6)) + np.array([0.1, -0.2, 0.3]))
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-5, atol=1e-6)
    linear = EqualizedDense(2, use_bias=False)
    linear.build((None, 6))
    np.testing.assert_allclose(linear(x).numpy(), x @ linear.kernel.numpy() / math.sqrt(6), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        EqualizedDense(2, activation="relu")


def test_equalized_dense_initial_weights_have_unit_runtime_scale():
    keras.utils.set_random_seed(0)
    layer = EqualizedDense(400, lr_multiplier=0.01)
    layer.build((None, 100))
    runtime = layer.kernel.numpy() * 0.01
    assert np.std(runtime) == pytest.approx(1.0, rel=0.05)  # N(0, 1/lr_mul) stored -> N(0, 1) * gain at run time


def test_equalized_conv_same_and_fir_downsampling_against_numpy():
    x = _rand(2, 8, 8, 3, seed=4)
    conv = EqualizedConv2D(5, 3, conv_clamp=0.5)
    conv.build(x.shape)
    conv.bias.assign(_rand(5, seed=5))
    w = conv.kernel.numpy() / math.sqrt(27)
    want = np.stack([_correlate(np.pad(xi, ((1, 1), (1, 1), (0, 0))), w) for xi in x]) + conv.bias.numpy()
    np.testing.assert_allclose(conv(x).numpy(), np.clip(_np_lrelu(want), -0.5, 0.5), atol=1e-5)

    down = EqualizedConv2D(4, 3, activation="linear", down=True, use_bias=False)
    down.build(x.shape)
    blurred = _upfirdn(x, np.outer(F1, F1), pad=(2, 2))  # conv2d_resample: blur with padding 2, stride-2 conv
    want = np.stack([_correlate(b, down.kernel.numpy() / math.sqrt(27), stride=2) for b in blurred])
    y = down(x).numpy()
    assert y.shape == (2, 4, 4, 4) == down.compute_output_shape((2, 8, 8, 3))
    np.testing.assert_allclose(y, want, atol=1e-5)

    skip = EqualizedConv2D(4, 1, activation="linear", down=True, use_bias=False)
    skip.build(x.shape)
    want = _upfirdn(x, np.outer(F1, F1), down=2, pad=(1, 1)) @ (skip.kernel.numpy()[0, 0] / math.sqrt(3))
    np.testing.assert_allclose(skip(x).numpy(), want, atol=1e-5)


def _modulated_layer(x, ws, **kwargs):
    layer = ModulatedConv2D(**kwargs)
    layer.build((x.shape, ws.shape))
    layer.affine.kernel.assign(_rand(*layer.affine.kernel.shape, seed=6))
    layer.affine.bias.assign(1.0 + 0.3 * _rand(*layer.affine.bias.shape, seed=7))
    layer.bias.assign(0.1 * _rand(layer.filters, seed=8))
    if layer.use_noise:
        layer.noise_strength.assign(0.25)
    return layer


def _noise_and_bias(layer, y):
    if layer.use_noise:
        y = y + 0.25 * layer.noise_const.numpy()[None]
    return y + layer.bias.numpy()


def test_modulated_conv_equals_per_sample_convolution_with_the_modulated_kernel():
    x, ws = _rand(3, 6, 6, 4, seed=9), _rand(3, 2, 5, seed=10)
    layer = _modulated_layer(x, ws, filters=6, kernel_size=3, w_index=1, seed=3)
    styles = layer.styles(tf.constant(ws)).numpy()
    np.testing.assert_allclose(styles, ws[:, 1] @ layer.affine.kernel.numpy() / math.sqrt(5)
                               + layer.affine.bias.numpy(), rtol=1e-5)
    kernels = modulated_weights(layer.kernel * 1.0, styles).numpy()  # the gain cancels under demodulation
    want = np.stack([_correlate(np.pad(x[b], ((1, 1), (1, 1), (0, 0))), kernels[b]) for b in range(3)])
    y = layer([x, ws], training=False).numpy()
    np.testing.assert_allclose(y, _np_lrelu(_noise_and_bias(layer, want)), atol=1e-4)
    np.testing.assert_allclose(layer([x, ws], training=False).numpy(), y)  # fixed noise buffer in inference
    assert not np.allclose(layer([x, ws], training=True).numpy(), y, atol=1e-3)  # fresh noise in training


def test_modulated_conv_without_demodulation_applies_the_equalized_gain():
    x, ws = _rand(2, 4, 4, 6, seed=11), _rand(2, 1, 5, seed=12)
    layer = _modulated_layer(x, ws, filters=3, kernel_size=1, demodulate=False, activation="linear",
                             use_noise=False)
    styles = layer.styles(tf.constant(ws)).numpy()
    kernels = modulated_weights(layer.kernel * (1.0 / math.sqrt(6)), styles, demodulate=False).numpy()
    want = np.stack([x[b] @ kernels[b, 0, 0] for b in range(2)]) + layer.bias.numpy()
    np.testing.assert_allclose(layer([x, ws]).numpy(), want, atol=1e-5)


def test_modulated_conv_up_equals_zero_insert_fir_then_per_sample_convolution():
    # NVIDIA's conv2d_resample (up=2, 3x3): upfirdn2d(up=2, pad (3, 2), gain 4) then a 'VALID' conv. TF's
    # transposed convolution is the adjoint of correlation, so the kernel it applies is the spatially flipped one.
    x, ws = _rand(2, 4, 4, 3, seed=13), _rand(2, 3, 5, seed=14)
    layer = _modulated_layer(x, ws, filters=4, kernel_size=3, w_index=2, up=True, seed=5)
    kernels = modulated_weights(layer.kernel * 1.0, layer.styles(tf.constant(ws))).numpy()
    upsampled = _upfirdn(x, 4.0 * np.outer(F1, F1), up=2, pad=(3, 2))
    want = np.stack([_correlate(upsampled[b], kernels[b, ::-1, ::-1]) for b in range(2)])
    y = layer([x, ws], training=False).numpy()
    assert y.shape == (2, 8, 8, 4) and layer.noise_const.shape == (8, 8, 1)
    np.testing.assert_allclose(y, _np_lrelu(_noise_and_bias(layer, want)), atol=1e-4)
    # The same through tf.nn.conv2d_transpose with each sample's kernel, then the FIR filter by hand.
    by_hand = []
    for b in range(2):
        t = tf.nn.conv2d_transpose(x[b:b + 1], np.transpose(kernels[b], (0, 1, 3, 2)), [1, 9, 9, 4], 2, "VALID")
        by_hand.append(_upfirdn(t.numpy(), 4.0 * np.outer(F1, F1), pad=(1, 1))[0])
    np.testing.assert_allclose(y, _np_lrelu(_noise_and_bias(layer, np.stack(by_hand))), atol=1e-4)


def test_constant_input_scaled_add_and_projection_output():
    const = ConstantInput(3, size=4)
    y = const(tf.zeros((5, 2, 7))).numpy()
    assert y.shape == (5, 4, 4, 3)
    np.testing.assert_array_equal(y, np.broadcast_to(const.const.numpy(), y.shape))
    a, b = _rand(2, 3), _rand(2, 3, seed=1)
    np.testing.assert_allclose(ScaledAdd()([a, b]).numpy(), (a + b) * math.sqrt(0.5), rtol=1e-6)
    np.testing.assert_allclose(ScaledAdd(2.0)([a, b]).numpy(), (a + b) * 2.0, rtol=1e-6)
    x, cmap = _rand(4, 9), _rand(4, 9, seed=2)
    out = ProjectionOutput()([x, cmap]).numpy()
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out[:, 0], np.sum(x * cmap, axis=1) / 3.0, rtol=1e-5)
    up = FIRUpsample2D()(x.reshape(1, 2, 2, 9)).numpy()
    np.testing.assert_allclose(up, fir_upsample_2x(tf.constant(x.reshape(1, 2, 2, 9))).numpy())


# ---------------------------------------------------------------------------------------------- serialisation

LAYERS = [
    EqualizedDense(4, activation="lrelu", lr_multiplier=0.1, bias_init=0.5, use_bias=False),
    EqualizedConv2D(3, 1, activation="linear", down=True, use_bias=False, conv_clamp=8, taps=(1, 2, 1)),
    ModulatedConv2D(5, 1, w_index=2, up=True, demodulate=False, activation="linear", use_noise=False,
                    conv_clamp=256, seed=7),
    ConstantInput(6, size=2),
    FIRUpsample2D(taps=(1, 1)),
    MinibatchStdDev(2, 2),
    NormalizeSecondMoment(),
    ScaledAdd(0.25),
    ProjectionOutput(),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_get_config_from_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_every_layer_survives_a_keras_save_and_load(tmp_path):
    keras.utils.set_random_seed(3)
    image = keras.Input((8, 8, 3), name="image")
    ws = keras.Input((3, 4), name="ws")
    c = keras.Input((6,), name="c")
    x = ConstantInput(4, name="const")(ws)
    x = ModulatedConv2D(4, 3, w_index=1, up=True, seed=5, conv_clamp=4, name="mod_up")([x, ws])
    x = ModulatedConv2D(3, 1, w_index=2, demodulate=False, activation="linear", use_noise=False,
                        name="torgb")([x, ws])
    rgb = FIRUpsample2D(name="fir_up")(x)
    d = EqualizedConv2D(4, 3, down=True, conv_clamp=2.0, name="conv_down")(image)
    skip = EqualizedConv2D(4, 1, activation="linear", down=True, use_bias=False, name="skip")(image)
    d = MinibatchStdDev(2, 1, name="mbstd")(ScaledAdd(name="add")([skip, d]))
    d = EqualizedDense(6, activation="lrelu", lr_multiplier=0.1, bias_init=0.5, name="fc")(
        keras.layers.Flatten()(d))
    out = ProjectionOutput(name="proj")([d, NormalizeSecondMoment(name="norm")(c)])
    model = keras.Model([image, ws, c], [rgb, d, out])
    model.set_weights([w + 0.1 * _rand(*w.shape, seed=i) for i, w in enumerate(model.get_weights())])
    inputs = [_rand(4, 8, 8, 3, seed=20), _rand(4, 3, 4, seed=21), _rand(4, 6, seed=22)]
    before = model(inputs, training=False)
    path = str(tmp_path / "layers.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert {type(layer).__name__ for layer in loaded.layers} >= {type(layer).__name__ for layer in LAYERS}
    for a, b in zip(before, loaded(inputs, training=False)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)
    assert loaded.get_layer("mod_up").noise_strength.numpy() == pytest.approx(
        model.get_layer("mod_up").noise_strength.numpy())
