import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.layers import AdaptiveAugment
from keras_medgan.layers.ada import AUGMENT_SPECS, ada_augment, adjust_p, warp_affine

ALL_TRANSFORMS = AUGMENT_SPECS["bgc"]
# Transforms whose random draw can be the identity even when they fire (flip bit 0, k = 0, zero shift).
DISCRETE = ("xflip", "rotate90", "xint", "lumaflip")
ADA_STEP = 64 * 4 / 500_000  # batch * interval / (ada_kimg * 1000), ADA paper Sec. 3 defaults


def _images(batch=8, size=16, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, size, size, channels)).astype("float32")


def _reflect(i, n):
    period = max(2 * (n - 1), 1)
    m = np.mod(i, period)
    return np.minimum(m, period - m)


def _np_warp(image, g_inv):
    """Reference bilinear warp of one [H, W, C] image, loops and numpy only: out[y, x] = in[G_inv (x, y)]."""
    h, w, _ = image.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    out = np.zeros_like(image, dtype="float64")
    for y in range(h):
        for x in range(w):
            sx, sy, _ = g_inv @ np.array([x - cx, y - cy, 1.0])
            sx, sy = sx + cx, sy + cy
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            fx, fy = sx - x0, sy - y0
            for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                    out[y, x] += wy * wx * image[_reflect(yy, h), _reflect(xx, w)]
    return out


def _affine(angle=0.0, scale=1.0, tx=0.0, ty=0.0):
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]], "float32")


@pytest.mark.parametrize("name", ALL_TRANSFORMS)
def test_each_transform_is_identity_at_p0_and_changes_images_at_p1(name):
    x = _images()
    np.testing.assert_array_equal(ada_augment(x, 0.0, seed=3, spec=(name,)).numpy(), x)  # bit for bit
    changed = np.abs(ada_augment(x, 1.0, seed=3, spec=(name,)).numpy() - x).reshape(len(x), -1).max(axis=1)
    if name in DISCRETE:
        assert 0 < (changed > 1e-3).sum() < len(x) or (changed > 1e-3).all()
        assert (changed > 1e-3).any()
    else:
        assert (changed > 1e-3).all(), changed


def test_full_pipeline_is_identity_at_p0_in_graph_mode_with_unknown_batch():
    seed = keras.random.SeedGenerator(0)
    fn = tf.function(lambda im, p: ada_augment(im, p, seed=seed),
                     input_signature=[tf.TensorSpec([None, 16, 16, 3]), tf.TensorSpec([])])
    x = _images()
    np.testing.assert_array_equal(fn(x, 0.0).numpy(), x)
    gray = tf.function(lambda im: ada_augment(im, 0.0, seed=1), input_signature=[tf.TensorSpec([None, 16, 16, 1])])
    np.testing.assert_array_equal(gray(_images(channels=1)).numpy(), _images(channels=1))
    assert np.abs(fn(x, 1.0).numpy() - x).max() > 0.1
    assert fn(x[:3], 0.5).shape == (3, 16, 16, 3)


@pytest.mark.parametrize("name", ["scale", "rotate", "xfrac", "brightness", "saturation"])
def test_each_image_is_transformed_with_probability_p(name):
    x = _images(batch=512, size=8)
    changed = np.abs(ada_augment(x, 0.3, seed=9, spec=(name,)).numpy() - x).reshape(512, -1).max(axis=1) > 1e-4
    # Binomial(512, 0.3): std 0.02. Rotation fires twice with 1 - sqrt(1 - p) each, P(either) = p.
    assert 0.23 < changed.mean() < 0.37


def test_xflip_at_p1_flips_exactly_about_half_the_images():
    x = _images(batch=16)
    y = ada_augment(x, 1.0, seed=0, spec=("xflip",)).numpy()
    # ADA Appendix B: when xflip fires, the flip bit i is uniform in {0, 1}.
    flipped = [np.array_equal(y[b], x[b, :, ::-1]) for b in range(16)]
    kept = [np.array_equal(y[b], x[b]) for b in range(16)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 3 <= sum(flipped) <= 13


def test_rotate90_at_p1_gives_one_of_the_four_np_rot90_per_image():
    x = _images(batch=16)
    y = ada_augment(x, 1.0, seed=1, spec=("rotate90",)).numpy()
    ks = []
    for b in range(16):
        matches = [k for k in range(4) if np.array_equal(y[b], np.rot90(x[b], k, axes=(0, 1)))]
        assert len(matches) == 1
        ks.append(matches[0])
    assert len(set(ks)) >= 3


def test_integer_translation_is_an_exact_reflect_padded_shift():
    x = _images(batch=8)
    y = ada_augment(x, 1.0, seed=2, spec=("xint",)).numpy()
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")  # 0.125 * 16 = 2 px at most
    shifts = []
    for b in range(8):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(y[b], padded[b, 2 - dy:18 - dy, 2 - dx:18 - dx])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) >= 4


def test_warp_identity_reproduces_and_translation_matches_numpy_reflect_shift():
    x = _images(batch=2, size=16)
    eye = np.tile(np.eye(3, dtype="float32"), (2, 1, 1))
    np.testing.assert_array_equal(warp_affine(x, eye).numpy(), x)
    # G_inv translation (-3, +2): out[y, x] = in[y + 2, x - 3], reflected at the borders.
    shift = np.tile(_affine(tx=-3.0, ty=2.0), (2, 1, 1))
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(warp_affine(x, shift).numpy(), padded[:, 5:21, 0:16])


def test_warp_fractional_shift_and_rotation_match_numpy_bilinear():
    x = _images(batch=2, size=8, channels=3)
    matrices = np.stack([_affine(tx=0.25, ty=-0.5), _affine(angle=0.6, scale=1.3, tx=1.7, ty=-4.2)])
    y = warp_affine(x, matrices).numpy()
    for b in range(2):
        np.testing.assert_allclose(y[b], _np_warp(x[b], matrices[b].astype("float64")), rtol=0, atol=1e-5)
    # Hand value: half-pixel shift in y averages two rows, quarter-pixel in x weights columns 3:1.
    expected = 0.5 * (0.75 * x[0, 2, 4] + 0.25 * x[0, 2, 5]) + 0.5 * (0.75 * x[0, 3, 4] + 0.25 * x[0, 3, 5])
    np.testing.assert_allclose(y[0, 3, 4], expected, atol=1e-6)


def test_warp_gradient_matches_finite_differences_on_a_4x4_image():
    x = _images(batch=1, size=4, channels=1, seed=5)[0]
    w = np.random.default_rng(6).normal(size=(4, 4, 1)).astype("float32")
    g = _affine(angle=0.7, scale=0.8, tx=0.3, ty=-2.6)  # reads across the reflected border
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(warp_affine(xt, g[None]) * w)
    grad = tape.gradient(loss, xt).numpy()[0]
    # Central differences, all 16 perturbations in one batch (the warp is linear in the image).
    h = 0.1
    basis = np.eye(16, dtype="float32").reshape(16, 4, 4, 1)
    mats = np.tile(g, (16, 1, 1))
    plus = tf.reduce_sum(warp_affine(x + h * basis, mats) * w, axis=(1, 2, 3)).numpy()
    minus = tf.reduce_sum(warp_affine(x - h * basis, mats) * w, axis=(1, 2, 3)).numpy()
    numeric = ((plus - minus) / (2 * h)).reshape(4, 4, 1)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)
    assert np.abs(grad).sum() > 0.1


@pytest.mark.parametrize("spec", ["bgc", "bg"])
def test_pipeline_gradient_is_finite_and_nonzero_at_p1(spec):
    x = tf.constant(_images(batch=4))
    w = tf.constant(np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(ada_augment(x, 1.0, seed=4, spec=spec) * w)
    grad = tape.gradient(loss, x).numpy()
    assert np.isfinite(grad).all()
    assert (np.abs(grad).reshape(4, -1).sum(axis=1) > 1.0).all()


def test_brightness_shifts_each_image_by_one_constant():
    x = _images()
    delta = (ada_augment(x, 1.0, seed=0, spec=("brightness",)).numpy() - x).reshape(len(x), -1)
    np.testing.assert_allclose(delta, np.repeat(delta[:, :1], delta.shape[1], axis=1), atol=1e-6)
    assert (np.abs(delta[:, 0]) > 1e-4).all()
    assert 0.05 < np.abs(delta[:, 0]).mean() < 0.6  # N(0, 0.2^2): E|b| = 0.16


def test_contrast_scales_each_image_by_one_factor():
    x = _images()
    y = ada_augment(x, 1.0, seed=0, spec=("contrast",)).numpy()
    ratio = (y / x).reshape(len(x), -1)
    np.testing.assert_allclose(ratio, np.repeat(ratio[:, :1], ratio.shape[1], axis=1), rtol=1e-4)
    assert (ratio[:, 0] > 0).all()


@pytest.mark.parametrize("name", ["saturation", "hue"])
def test_saturation_and_hue_keep_the_luma(name):
    x = _images()
    y = ada_augment(x, 1.0, seed=0, spec=(name,)).numpy()
    # Luma axis v = (1, 1, 1) / sqrt(3) (ADA Appendix B): the luma is the equal-weight channel mean.
    np.testing.assert_allclose(y.mean(axis=-1), x.mean(axis=-1), atol=1e-5)
    assert np.abs(y - x).max() > 0.1


def test_lumaflip_reflects_along_the_luma_axis():
    x = _images(batch=16)
    y = ada_augment(x, 1.0, seed=0, spec=("lumaflip",)).numpy()
    luma = x.mean(axis=-1, keepdims=True)
    reflected = x - 2 * luma  # x - 2 v (v . x): the luma is negated, the chroma kept
    flips = [np.allclose(y[b], reflected[b], atol=1e-5) for b in range(16)]
    keeps = [np.array_equal(y[b], x[b]) for b in range(16)]
    assert all(f or k for f, k in zip(flips, keeps)) and 3 <= sum(flips) <= 13


def test_grayscale_color_reduces_to_brightness_contrast_and_negation():
    x = _images(batch=16, channels=1)
    np.testing.assert_array_equal(ada_augment(x, 1.0, seed=0, spec=("hue", "saturation")).numpy(), x)
    y = ada_augment(x, 1.0, seed=0, spec=("lumaflip",)).numpy()
    negated = [np.allclose(y[b], -x[b], atol=1e-6) for b in range(16)]
    kept = [np.array_equal(y[b], x[b]) for b in range(16)]
    assert all(n or k for n, k in zip(negated, kept)) and 3 <= sum(negated) <= 13
    delta = (ada_augment(x, 1.0, seed=0, spec=("brightness",)).numpy() - x).reshape(16, -1)
    np.testing.assert_allclose(delta, np.repeat(delta[:, :1], delta.shape[1], axis=1), atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shape_and_dtype_preserved(channels, dtype):
    x32 = _images(batch=4, channels=channels)
    x = tf.cast(x32, dtype)
    y = ada_augment(x, 0.7, seed=11)
    assert y.dtype == tf.as_dtype(dtype) and tuple(y.shape) == (4, 16, 16, channels)
    # Computed in float32 whatever the input: bfloat16 only rounds the input and the output.
    reference = ada_augment(tf.cast(x, "float32"), 0.7, seed=11).numpy()
    np.testing.assert_allclose(tf.cast(y, "float32").numpy(), reference, atol=0.05 if dtype == "bfloat16" else 0)
    assert np.abs(reference - tf.cast(x, "float32").numpy()).max() > 0.1


def test_same_seed_same_output_different_seed_different_output():
    x = _images()
    a, b = ada_augment(x, 0.8, seed=7).numpy(), ada_augment(x, 0.8, seed=7).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - ada_augment(x, 0.8, seed=8).numpy()).max() > 0.1
    g1, g2 = keras.random.SeedGenerator(5), keras.random.SeedGenerator(5)
    first = ada_augment(x, 0.8, seed=g1).numpy()
    np.testing.assert_array_equal(first, ada_augment(x, 0.8, seed=g2).numpy())
    assert np.abs(first - ada_augment(x, 0.8, seed=g1).numpy()).max() > 0.1  # a generator advances


def test_unknown_spec_and_bad_images_raise():
    with pytest.raises(ValueError, match="spec"):
        ada_augment(_images(), 0.5, spec=("xflip", "blur"))
    with pytest.raises(ValueError, match="spec"):
        ada_augment(_images(), 0.5, spec="bgcfnc")
    with pytest.raises(ValueError, match="1 or 3"):
        ada_augment(np.zeros((2, 8, 8, 4), "float32"), 0.5)
    np.testing.assert_array_equal(ada_augment(_images(), 1.0, spec="none").numpy(), _images())


def test_adjust_p_steps_by_batch_interval_over_ada_kimg_and_clips():
    assert adjust_p(0.5, 0.7) == pytest.approx(0.5 + ADA_STEP, abs=1e-12)
    assert adjust_p(0.5, 0.5) == pytest.approx(0.5 - ADA_STEP, abs=1e-12)
    assert adjust_p(0.5, 0.6) == 0.5
    assert adjust_p(0.3, 0.9, target=0.95, batch_size=32, interval=8, ada_kimg=100) == pytest.approx(
        0.3 - 32 * 8 / 100_000, abs=1e-12)
    assert adjust_p(0.0, 0.1) == 0.0 and adjust_p(ADA_STEP / 2, 0.1) == 0.0
    assert adjust_p(1.0, 0.9) == 1.0 and adjust_p(1.0 - ADA_STEP / 2, 0.9) == 1.0
    p = tf.Variable(0.25)
    up = adjust_p(p, tf.constant(0.61))
    assert up.dtype == tf.float32 and float(up) == pytest.approx(0.25 + ADA_STEP, abs=1e-7)
    assert float(adjust_p(tf.constant(0.0), tf.constant(-1.0))) == 0.0
    assert float(adjust_p(tf.constant(1.0), tf.constant(1.0))) == 1.0


def test_layer_weight_identity_when_not_training_and_config_round_trip():
    layer = AdaptiveAugment(spec=("xflip", "brightness"), init_p=1.0, seed=3, name="ada")
    assert [w.name for w in layer.weights if w.name == "p"] == ["p"]
    assert not layer.p.trainable and layer.p.dtype == "float32" and float(layer.p) == 1.0
    x = _images()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    assert np.abs(layer(x, training=True).numpy() - x).max() > 1e-3
    layer.p.assign(0.0)
    np.testing.assert_allclose(layer(x, training=True).numpy(), x, atol=1e-6)
    config = layer.get_config()
    clone = AdaptiveAugment.from_config(config)
    assert clone.get_config() == config and clone.spec == ("xflip", "brightness") and float(clone.p) == 1.0
    with pytest.raises(ValueError, match="init_p"):
        AdaptiveAugment(init_p=1.5)


def test_keras_save_load_keeps_p(tmp_path):
    inputs = keras.Input((16, 16, 3))
    layer = AdaptiveAugment(spec="bg", seed=0, name="ada")
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(layer(inputs)))
    layer.p.assign(0.37)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert float(loaded.get_layer("ada").p) == pytest.approx(0.37)
    assert loaded.get_layer("ada").spec == "bg"
    x = _images(batch=2)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-6)


def test_layer_under_mixed_bfloat16_policy_in_tf_function():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = AdaptiveAugment(init_p=0.0, seed=0)
        fn = tf.function(lambda im: layer(im, training=True),
                         input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
        x = _images(batch=3)
        y = fn(x)
        assert y.dtype == tf.bfloat16 and layer.p.dtype == "float32"
        np.testing.assert_array_equal(tf.cast(y, "float32").numpy(), tf.cast(tf.cast(x, "bfloat16"), "float32"))
        layer.p.assign(1.0)
        assert np.abs(tf.cast(fn(x), "float32").numpy() - x).max() > 0.1
    finally:
        keras.config.set_dtype_policy(previous)
