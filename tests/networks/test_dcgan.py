import copy
import re

import keras
import numpy as np
import pytest

from keras_medgan.layers import ResizeConv2D
from keras_medgan.networks import dcgan_discriminator, dcgan_generator

# PyTorch examples/dcgan at 64 px (nz=100, ngf=ndf=64, nc=3), every layer bias-free:
# G: ConvT 100->512 (4x4 from 1x1) + 512->256->128->64->3 (4x4), BN on the four hidden maps (weight + bias).
PYTORCH_DCGAN_G_PARAMS = 16 * (100 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 3) + 2 * (512 + 256 + 128 + 64)
# D: Conv 3->64->128->256->512 (4x4 stride 2), BN on the last three, Conv 512->1 (4x4 valid).
PYTORCH_DCGAN_D_PARAMS = 16 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 512) + 2 * (128 + 256 + 512)


def _trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _z(batch=2, dim=100, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, dim)).astype("float32")


def _images(size, channels=3, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, size, size, channels)).astype("float32")


def test_parameters_match_pytorch_dcgan_at_64px():
    assert PYTORCH_DCGAN_G_PARAMS == 3_576_704 and PYTORCH_DCGAN_D_PARAMS == 2_765_568
    generator = dcgan_generator(64)
    # Ours adds a bias to the two layers that no batch norm follows: G's output conv (3), D's first conv (64) and
    # logits (1).
    assert _trainable_count(generator) == PYTORCH_DCGAN_G_PARAMS + 3
    assert [generator.get_layer(f"up_{k}_upsample").output.shape[1:] for k in range(1, 5)] == [
        (8, 8, 256), (16, 16, 128), (32, 32, 64), (64, 64, 3)]
    assert generator.get_layer("project_reshape").output.shape[1:] == (4, 4, 512)
    discriminator = dcgan_discriminator(64)
    assert _trainable_count(discriminator) == PYTORCH_DCGAN_D_PARAMS + 64 + 1
    assert discriminator.get_layer("block_4_conv").output.shape[1:] == (4, 4, 512)
    with_bias = sorted(layer.name for layer in discriminator.layers if getattr(layer, "use_bias", False))
    assert with_bias == ["block_1_conv", "logits"]


@pytest.mark.parametrize("size, channels, upsampling", [(32, 1, "transpose"), (64, 3, "resize_conv")])
def test_generator_shapes_range_and_label_conditioning(size, channels, upsampling):
    generator = dcgan_generator(size, channels, latent_dim=16, num_classes=3, base_filters=8, upsampling=upsampling)
    z = _z(dim=16)
    y0 = np.asarray(generator({"z": z, "label": np.array([0, 0])}, training=False))
    y2 = np.asarray(generator({"z": z, "label": np.array([2, 2])}, training=False))
    assert y0.shape == (2, size, size, channels) and y0.dtype == np.float32
    assert y0.min() >= -1.0 and y0.max() <= 1.0 and y0.std() > 0
    assert not np.allclose(y0, y2)  # the one-hot label reaches the image
    assert generator.get_layer("z_label_concat").output.shape[-1] == 16 + 3
    assert isinstance(generator.get_layer(f"up_{int(np.log2(size)) - 2}_upsample"),
                      ResizeConv2D if upsampling == "resize_conv" else keras.layers.Conv2DTranspose)


def test_generator_options_of_paper_001():
    generator = dcgan_generator(32, base_filters=8, bn_momentum=0.1, leaky_slope=0.2)
    assert generator.input.shape == (None, 100)  # unconditional: z alone
    norms = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 3 and all(layer.momentum == 0.1 for layer in norms)
    acts = [layer for layer in generator.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(acts) == 3 and all(layer.negative_slope == pytest.approx(0.2) for layer in acts)
    relu = dcgan_generator(32, base_filters=8)
    assert sum(isinstance(layer, keras.layers.ReLU) for layer in relu.layers) == 3


@pytest.mark.parametrize("size", [32, 64])
def test_discriminator_shapes_unconditional_and_label_maps(size):
    plain = dcgan_discriminator(size, 3, base_filters=8)
    assert tuple(plain(_images(size), training=False).shape) == (2, 1)
    assert plain.get_layer(f"block_{int(np.log2(size)) - 2}_conv").output.shape[1:3] == (4, 4)

    cond = dcgan_discriminator(size, 3, num_classes=4, base_filters=8)  # conditioning=None -> label maps
    x = _images(size)
    logits0 = np.asarray(cond({"image": x, "label": np.array([0, 1])}, training=False))
    logits3 = np.asarray(cond({"image": x, "label": np.array([3, 3])}, training=False))
    assert logits0.shape == (2, 1) and logits0.dtype == np.float32
    assert not np.allclose(logits0, logits3)
    assert cond.get_layer("image_label_maps_concat").output.shape[1:] == (size, size, 3 + 4)
    probe = keras.Model(cond.inputs, cond.get_layer("label_maps").output)
    maps = np.asarray(probe({"image": x, "label": np.array([0, 2])}))
    np.testing.assert_array_equal(maps[1], np.broadcast_to(np.eye(4)[2], (size, size, 4)))


def test_projection_logit_is_psi_plus_embedding_dot_features():
    """Miyato & Koyama 2018, Eq. 3: logit = psi(h) + <V y, h>."""
    model = dcgan_discriminator(32, 1, num_classes=3, base_filters=8, conditioning="projection", norm="none")
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in model.layers)  # no label maps
    x, labels = _images(32, 1), np.array([2, 0])
    logits = np.asarray(model({"image": x, "label": labels}, training=False))
    h = np.asarray(keras.Model(model.inputs, model.get_layer("features").output)({"image": x, "label": labels}))
    w, b = (np.asarray(v) for v in model.get_layer("logits").weights)
    embeddings = np.asarray(model.get_layer("label_embedding").kernel)  # [num_classes, features]
    expected = h @ w + b + np.sum(embeddings[labels] * h, axis=1, keepdims=True)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_spectral_norm_wraps_every_weight_layer_and_normalises_it():
    model = dcgan_discriminator(32, 1, num_classes=2, base_filters=8, conditioning="projection",
                                spectral_norm=True, norm="layer")
    wrapped = {layer.name for layer in model.layers if isinstance(layer, keras.layers.SpectralNormalization)}
    assert wrapped == {"block_1_conv", "block_2_conv", "block_3_conv", "logits", "label_embedding"}
    assert all(layer.power_iterations == 1 for layer in model.layers
               if isinstance(layer, keras.layers.SpectralNormalization))
    assert not any(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) for layer in model.layers)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert [layer.groups for layer in norms] == [1, 1]  # "layer" norm: one group per sample

    conv = model.get_layer("block_2_conv")
    conv.layer.kernel.assign(conv.layer.kernel * 50.0)

    def sigma():
        return np.linalg.norm(np.asarray(conv.layer.kernel).reshape(-1, conv.layer.kernel.shape[-1]), 2)

    before = sigma()
    inputs = {"image": _images(32, 1), "label": np.array([0, 1])}
    model(inputs, training=False)
    assert sigma() == before  # inference leaves the weights alone
    for _ in range(30):  # one power iteration per training call; the estimate never exceeds the true norm
        model(inputs, training=True)
    assert before > 10 and 0.999 < sigma() < 1.1


def test_discriminator_norms_and_biases():
    none = dcgan_discriminator(32, base_filters=8, norm="none")
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, keras.layers.GroupNormalization))
                   for layer in none.layers)
    assert all(layer.use_bias for layer in none.layers if isinstance(layer, keras.layers.Conv2D))
    batch = dcgan_discriminator(32, base_filters=8, bn_momentum=0.8, leaky_slope=0.1)
    assert [layer.momentum for layer in batch.layers if isinstance(layer, keras.layers.BatchNormalization)] == [
        0.8, 0.8]
    assert {round(layer.negative_slope, 6) for layer in batch.layers
            if isinstance(layer, keras.layers.LeakyReLU)} == {0.1}


def test_float32_outputs_under_mixed_bfloat16():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        generator = dcgan_generator(32, 1, latent_dim=8, num_classes=2, base_filters=8)
        discriminator = dcgan_discriminator(32, 1, num_classes=2, base_filters=8, conditioning="projection",
                                            spectral_norm=True, norm="layer")
        labels = keras.ops.convert_to_tensor(np.array([0, 1], "int32"))
        images = generator({"z": keras.ops.convert_to_tensor(_z(dim=8)), "label": labels}, training=True)
        logits = discriminator({"image": images, "label": labels}, training=True)
        assert images.dtype == "float32" and logits.dtype == "float32"
        assert discriminator.get_layer("block_2_conv").compute_dtype == "bfloat16"
        assert all(w.dtype == "float32" for w in discriminator.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _round_trip(model, inputs, tmp_path):
    config = model.get_config()
    clone = keras.Model.from_config(copy.deepcopy(config))  # from_config consumes its argument
    assert clone.get_config() == config
    model(inputs, training=True)  # move batch-norm statistics and spectral-norm vectors off their initial values
    expected = np.asarray(model(inputs, training=False))
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: nothing custom but registered keras_medgan layers
    np.testing.assert_allclose(np.asarray(loaded(inputs, training=False)), expected, rtol=1e-5, atol=1e-6)


def test_generator_config_and_keras_round_trip(tmp_path):
    generator = dcgan_generator(32, 1, latent_dim=8, num_classes=3, base_filters=8, upsampling="resize_conv",
                                leaky_slope=0.2)
    _round_trip(generator, {"z": _z(dim=8), "label": np.array([2, 0])}, tmp_path)


@pytest.mark.parametrize("conditioning, norm", [("projection", "layer"), ("label_maps", "batch")])
def test_discriminator_config_and_keras_round_trip(tmp_path, conditioning, norm):
    discriminator = dcgan_discriminator(32, 1, num_classes=3, base_filters=8, conditioning=conditioning,
                                        spectral_norm=True, norm=norm)
    _round_trip(discriminator, {"image": _images(32, 1), "label": np.array([2, 0])}, tmp_path)


@pytest.mark.parametrize("builder, kwargs, message", [
    (dcgan_generator, {"image_size": 48},
     ("`image_size` must be a power of two between 32 and 256 (DCGAN doubles a 4x4 map up to it). Received: "
      "image_size=48")),
    (dcgan_generator, {"image_size": 512}, "Received: image_size=512"),
    (dcgan_discriminator, {"image_size": 16}, "Received: image_size=16"),
    (dcgan_generator, {"latent_dim": 0}, "`latent_dim` must be an integer >= 1. Received: latent_dim=0"),
    (dcgan_generator, {"num_classes": -1}, "`num_classes` must be an integer >= 0. Received: num_classes=-1"),
    (dcgan_generator, {"upsampling": "bilinear"},
     "`upsampling` must be one of ('transpose', 'resize_conv'). Received: upsampling='bilinear'"),
    (dcgan_generator, {"bn_momentum": 1.0}, "`bn_momentum` must be in [0, 1). Received: bn_momentum=1.0"),
    (dcgan_generator, {"base_filters": 64, "max_filters": 32}, "`max_filters` must be >= `base_filters` (64)"),
    (dcgan_discriminator, {"conditioning": "projection"},
     "`conditioning='projection'` needs the classes: pass `num_classes` >= 1. Received: num_classes=0"),
    (dcgan_discriminator, {"num_classes": 2, "conditioning": "concat"},
     "`conditioning` must be one of ('label_maps', 'projection') or None. Received: conditioning='concat'"),
    (dcgan_discriminator, {"norm": "instance"},
     "`norm` must be one of ('batch', 'layer', 'none'). Received: norm='instance'"),
    (dcgan_discriminator, {"spectral_norm": "yes"}, "`spectral_norm` must be True or False. Received: spectral_norm"),
    (dcgan_discriminator, {"leaky_slope": -0.2}, "`leaky_slope` must be in [0, 1). Received: leaky_slope=-0.2"),
])
def test_rejects_bad_arguments(builder, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        builder(**{"image_size": 32, "base_filters": 8, **kwargs})
