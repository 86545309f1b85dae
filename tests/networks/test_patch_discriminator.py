import copy
import re

import keras
import numpy as np
import pytest

from keras_medgan.networks import patch_discriminator

# PyTorch pix2pix NLayerDiscriminator(input_nc=6, ndf=64, n_layers=3, norm_layer=BatchNorm2d).
PIX2PIX_PATCHGAN_PARAMS = 2_768_705


def _trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _output_shapes(model):
    return {key: tuple(tensor.shape) for key, tensor in model.output.items()}


def _pair(size, map_channels=3, image_channels=3, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    semantic_map = rng.uniform(0.0, 1.0, size=(batch, size, size, map_channels)).astype("float32")
    image = rng.uniform(-1.0, 1.0, size=(batch, size, size, image_channels)).astype("float32")
    return [semantic_map, image]


def test_trainable_parameters_match_pytorch_pix2pix():
    expected = (6 * 64 * 16 + 64) + (64 * 128 * 16 + 2 * 128) + (128 * 256 * 16 + 2 * 256) \
        + (256 * 512 * 16 + 2 * 512) + (512 * 16 + 1)
    assert expected == PIX2PIX_PATCHGAN_PARAMS
    model = patch_discriminator(image_size=256, map_channels=3, image_channels=3, base_filters=64, n_layers=3)
    assert _trainable_count(model) == PIX2PIX_PATCHGAN_PARAMS
    with_bias = sorted(layer.name for layer in model.layers if getattr(layer, "use_bias", False))
    assert with_bias == ["block_1_conv", "logits"]


@pytest.mark.parametrize(
    "size, logits_hw, features_hw",
    [(32, 2, 3), (64, 6, 7), (256, 30, 31), (50, 4, 5)],  # 50 px: PyTorch padding=1 floors odd sizes (25 -> 12)
)
def test_output_shapes_follow_pytorch_padding(size, logits_hw, features_hw):
    model = patch_discriminator(image_size=size)
    out = model(_pair(size, batch=1), training=False)
    assert set(out) == {"logits", "features"}
    assert tuple(out["logits"].shape) == (1, logits_hw, logits_hw, 1)
    assert tuple(out["features"].shape) == (1, features_hw, features_hw, 512)


def test_n_layers_is_configurable():
    model = patch_discriminator(image_size=64, n_layers=2, map_channels=3, image_channels=3)
    # conv 6->64 (+bias), conv 64->128 + BN, conv 128->256 (stride 1) + BN, conv 256->1 (+bias); 4x4 kernels.
    assert _trainable_count(model) == (6 * 64 * 16 + 64) + (64 * 128 * 16 + 256) + (128 * 256 * 16 + 512) \
        + (256 * 16 + 1) == 666_433
    assert _output_shapes(model) == {"logits": (None, 14, 14, 1), "features": (None, 15, 15, 256)}
    one = patch_discriminator(image_size=32, n_layers=1, map_channels=1, image_channels=1, base_filters=8)
    assert _output_shapes(one) == {"logits": (None, 14, 14, 1), "features": (None, 15, 15, 16)}


def test_features_are_the_second_to_last_conv_activations():
    """DermGAN Sec. 2: feature matching on the input of the last convolution (after norm + LeakyReLU)."""
    model = patch_discriminator(image_size=32, base_filters=8, norm="instance")
    inputs = _pair(32)
    out = model(inputs, training=False)
    probe = keras.Model(model.inputs, model.get_layer("block_4_lrelu").output)
    np.testing.assert_allclose(np.asarray(out["features"]), np.asarray(probe(inputs, training=False)), atol=1e-6)
    padded = model.get_layer("logits_pad")(out["features"])
    np.testing.assert_allclose(np.asarray(model.get_layer("logits")(padded)), np.asarray(out["logits"]),
                               rtol=1e-5, atol=1e-5)
    assert model.get_layer("block_4_conv").strides == (1, 1)


def test_float32_outputs_under_mixed_bfloat16():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = patch_discriminator(image_size=32, base_filters=8)
        out = model(_pair(32), training=False)
        assert out["logits"].dtype == "float32" and out["features"].dtype == "float32"
        assert model.get_layer("block_2_conv").compute_dtype == "bfloat16"
        assert all(w.dtype == "float32" for w in model.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_config_round_trip_and_keras_file(tmp_path):
    model = patch_discriminator(image_size=32, map_channels=3, image_channels=1, base_filters=8)
    config = model.get_config()
    clone = keras.Model.from_config(copy.deepcopy(config))  # from_config consumes its argument
    assert clone.get_config() == config
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]

    inputs = _pair(32, image_channels=1)
    model(inputs, training=True)  # move the batch-norm moving statistics away from their initial values
    expected = model(inputs, training=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    out = loaded(inputs, training=False)
    assert set(out) == {"logits", "features"}
    for key in ("logits", "features"):
        np.testing.assert_allclose(np.asarray(out[key]), np.asarray(expected[key]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_layers": 0}, "`n_layers` must be an integer >= 1. Received: n_layers=0"),
        ({"image_size": 16}, "`image_size` must be >= 24 for n_layers=3"),
        ({"image_size": 64, "n_layers": 5}, "`image_size` must be >= 96 for n_layers=5"),
        ({"map_channels": 0}, "`map_channels` must be an integer >= 1. Received: map_channels=0"),
        ({"norm": "spectral"}, "`norm` must be one of ('batch', 'instance'). Received: norm='spectral'"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        patch_discriminator(**{"image_size": 32, **kwargs})
