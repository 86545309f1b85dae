"""StyleGAN2 networks: channel and w-count arithmetic, mapping normalisation, truncation towards ``w_avg``, the
``w_avg`` tracker, the discriminator's projection, ADA heuristics, and config / ``.keras`` round trips."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.layers.stylegan import ModulatedConv2D
from keras_medgan.networks.stylegan2 import (StyleGAN2Generator, channels_at, lazy_regularization, mapping_network,
                                             num_ws, r1_gamma_heuristic, stylegan2_discriminator,
                                             stylegan2_generator, synthesis_network)

RES, Z, W = 16, 8, 8
TINY = dict(channel_base=128, channel_max=16)


def _generator(num_classes, seed=1):
    keras.utils.set_random_seed(seed)
    g = stylegan2_generator(RES, 3, num_classes=num_classes, z_dim=Z, w_dim=W, mapping_layers=1, **TINY)
    # Non-zero noise strengths, so that the fixed noise buffers matter to the round trip.
    for layer in g.synthesis.layers:
        if isinstance(layer, ModulatedConv2D) and layer.use_noise:
            layer.noise_strength.assign(0.5)
    return g


def _inputs(num_classes, n=4, seed=0):
    z = np.random.default_rng(seed).standard_normal((n, Z)).astype("float32")
    if not num_classes:
        return z
    return [z, tf.one_hot(np.arange(n) % num_classes, num_classes).numpy()]


@pytest.fixture(scope="module")
def generators():
    return {0: _generator(0), 3: _generator(3)}


def test_channels_and_num_ws_follow_the_ada_code():
    assert num_ws(256) == 14 and num_ws(8) == 4 and num_ws(16) == 6
    assert channels_at(256, 16384, 512) == 64 and channels_at(4, 16384, 512) == 512
    assert channels_at(32, 16384, 512) == 512 and channels_at(64, 16384, 512) == 256
    assert channels_at(1024, 128, 16) == 1  # never zero
    for bad in (4, 12, 16.0):
        with pytest.raises(ValueError, match="power of two >= 8"):
            num_ws(bad)


def test_r1_gamma_heuristic_and_lazy_regularization():
    assert r1_gamma_heuristic(256, 64) == pytest.approx(0.0002 * 256 ** 2 / 64)  # 0.2048
    assert r1_gamma_heuristic(32, 32) == pytest.approx(0.0064)
    lr, betas = lazy_regularization(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    lr, betas = lazy_regularization(0.002, (0.5, 0.99), 4)
    assert lr == pytest.approx(0.0016) and betas == pytest.approx((0.5 ** 0.8, 0.99 ** 0.8))


def test_mapping_normalises_z_and_the_class_embedding():
    keras.utils.set_random_seed(0)
    mapping = mapping_network(Z, 3, W, num_layers=2)
    z, c = _inputs(3)
    w = mapping([z, c]).numpy()
    assert w.shape == (4, W)
    np.testing.assert_allclose(mapping([7.5 * z, c]).numpy(), w, rtol=1e-4, atol=1e-6)  # pixel norm of z
    np.testing.assert_allclose(mapping([z, 3.0 * c]).numpy(), w, rtol=1e-4, atol=1e-6)  # and of the embedding
    assert not np.allclose(mapping([z, c[::-1]]).numpy(), w)
    class_only = mapping_network(0, 3, W, num_layers=1)
    assert class_only(c).shape == (4, W)
    with pytest.raises(ValueError, match="z_dim > 0 or num_classes > 0"):
        mapping_network(0, 0)


def test_synthesis_layers_read_every_row_of_ws_once_per_convolution():
    synthesis = synthesis_network(RES, 1, W, **TINY)
    mods = [layer for layer in synthesis.layers if isinstance(layer, ModulatedConv2D)]
    assert synthesis.input_shape == (None, num_ws(RES), W) and synthesis.output_shape == (None, RES, RES, 1)
    convs = sorted(m.w_index for m in mods if m.demodulate)
    assert convs == list(range(num_ws(RES) - 1))  # 0..4: b4_conv1, b8_conv0/1, b16_conv0/1
    assert sorted(m.w_index for m in mods if not m.demodulate) == [1, 3, 5]  # toRGB shares the next conv's row
    assert [m.filters for m in mods if m.demodulate] == [16, 16, 16, 8, 8]


def test_generator_output_and_fixed_noise_in_inference(generators):
    for classes, g in generators.items():
        assert (g.num_ws, g.w_dim, g.z_dim, g.num_classes) == (num_ws(RES), W, Z, classes)
        x = g(_inputs(classes), training=False).numpy()
        assert x.shape == (4, RES, RES, 3) and x.dtype == np.float32
        np.testing.assert_array_equal(g(_inputs(classes), training=False).numpy(), x)
        assert not np.allclose(g(_inputs(classes), training=True).numpy(), x, atol=1e-4)


@pytest.mark.parametrize("classes", [0, 3])
def test_truncation_psi_zero_maps_every_sample_to_w_avg(generators, classes):
    g = generators[classes]
    g.w_avg.assign(np.linspace(-1, 1, W).astype("float32"))
    z, c = (_inputs(classes), None) if not classes else _inputs(classes)
    ws = g.map(z, c, truncation_psi=0.0).numpy()
    np.testing.assert_allclose(ws, np.broadcast_to(g.w_avg.numpy(), ws.shape), atol=1e-6)
    images = g(_inputs(classes), truncation_psi=0.0).numpy()
    np.testing.assert_allclose(images, np.broadcast_to(images[:1], images.shape), atol=1e-5)  # all identical
    full = g.map(z, c).numpy()
    half = g.map(z, c, truncation_psi=0.5).numpy()
    np.testing.assert_allclose(half, g.w_avg.numpy() + 0.5 * (full - g.w_avg.numpy()), atol=1e-5)
    cut = g.map(z, c, truncation_psi=0.0, truncation_cutoff=2).numpy()
    np.testing.assert_allclose(cut[:, :2], np.broadcast_to(g.w_avg.numpy(), cut[:, :2].shape), atol=1e-6)
    np.testing.assert_allclose(cut[:, 2:], full[:, 2:], atol=1e-6)  # cutoff: only the first rows move
    g.w_avg.assign(np.zeros(W, "float32"))


def test_update_w_avg_is_an_exponential_moving_average():
    g = _generator(0)
    w1 = np.random.default_rng(1).standard_normal((4, W)).astype("float32")
    w2 = np.random.default_rng(2).standard_normal((4, num_ws(RES), W)).astype("float32")
    g.update_w_avg(w1)
    np.testing.assert_allclose(g.w_avg.numpy(), 0.005 * w1.mean(0), rtol=1e-4)
    g.update_w_avg(w2)  # ws: the first row stands for w
    want = 0.995 * 0.005 * w1.mean(0) + 0.005 * w2[:, 0].mean(0)
    np.testing.assert_allclose(g.w_avg.numpy(), want, rtol=1e-4)


@pytest.mark.parametrize("classes", [0, 3])
def test_generator_config_and_keras_round_trip(generators, classes, tmp_path):
    g = generators[classes]
    g.w_avg.assign(0.3 * np.ones(W, "float32"))
    config = g.get_config()
    clone = StyleGAN2Generator.from_config(config)
    assert clone.get_config() == config and clone.num_classes == classes
    assert StyleGAN2Generator.from_config(config).get_config() == config  # from_config leaves its argument intact
    path = str(tmp_path / "g.keras")
    g.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, StyleGAN2Generator)
    np.testing.assert_allclose(loaded.w_avg.numpy(), 0.3)
    for psi in (1.0, 0.5):
        np.testing.assert_allclose(loaded(_inputs(classes), truncation_psi=psi).numpy(),
                                   g(_inputs(classes), truncation_psi=psi).numpy(), atol=1e-5)
    g.w_avg.assign(np.zeros(W, "float32"))


def test_discriminator_projection_and_shapes():
    keras.utils.set_random_seed(2)
    d = stylegan2_discriminator(RES, 3, num_classes=3, mapping_layers=1, mbstd_group_size=2, **TINY)
    images = np.random.default_rng(3).uniform(-1, 1, (4, RES, RES, 3)).astype("float32")
    c = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    logits = d([images, c]).numpy()
    assert logits.shape == (4, 1) and logits.dtype == np.float32
    assert not np.allclose(d([images, np.eye(3, dtype="float32")[[1, 2, 0, 1]]]).numpy(), logits)
    # The output is the projection of b4_out on the mapped class, over sqrt(cmap_dim).
    x = keras.Model(d.inputs[0], d.get_layer("b4_out").output)(images).numpy()
    cmap = d.get_layer("d_mapping")(c).numpy()
    np.testing.assert_allclose(logits[:, 0], np.sum(x * cmap, axis=1) / math.sqrt(16), rtol=1e-4, atol=1e-6)
    names = [layer.name for layer in d.layers]
    assert names[:2] == ["image", "b16_fromrgb"] and "b16_skip" in names and "b8_skip" in names


@pytest.mark.parametrize("classes", [0, 2])
def test_discriminator_keras_round_trip(classes, tmp_path):
    keras.utils.set_random_seed(4)
    d = stylegan2_discriminator(RES, 3, num_classes=classes, mapping_layers=1, **TINY)
    images = np.random.default_rng(5).uniform(-1, 1, (4, RES, RES, 3)).astype("float32")
    inputs = [images, np.eye(2, dtype="float32")[[0, 1, 1, 0]]] if classes else images
    clone = keras.Model.from_config(d.get_config())
    assert clone.get_config() == d.get_config()
    path = str(tmp_path / "d.keras")
    d.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(inputs).numpy(), d(inputs).numpy(), rtol=1e-5, atol=1e-6)
    assert len(loaded.inputs) == (2 if classes else 1)
