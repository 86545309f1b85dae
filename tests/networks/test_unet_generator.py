import copy
import re

import keras
import numpy as np
import pytest

from keras_medgan.layers import ResizeConv2D
from keras_medgan.networks import unet_generator

# PyTorch pix2pix UnetGenerator(3, 3, num_downs=8, ngf=64, norm_layer=BatchNorm2d): conv weights + the outermost
# up-conv bias + BatchNorm2d weight/bias; worked out term by term in test_trainable_parameters_match_pytorch_pix2pix.
PIX2PIX_UNET_256_PARAMS = 54_413_955
DERMGAN_UNET_256_PARAMS = 39_157_763  # the same with every 4x4 deconvolution replaced by a 3x3 resize-conv


def _trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _semantic_map(size, batch=2, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(batch, size, size, channels)).astype("float32")


def test_trainable_parameters_match_pytorch_pix2pix():
    down = 3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 4 * 512 * 512  # 4x4 kernels, no biases with batch norm
    up = 512 * 512 + 3 * 1024 * 512 + 1024 * 256 + 512 * 128 + 256 * 64 + 128 * 3
    norms = 2 * (128 + 256 + 4 * 512) + 2 * (4 * 512 + 256 + 128 + 64)  # gamma + beta, no running stats
    assert 16 * (down + up) + 3 + norms == PIX2PIX_UNET_256_PARAMS

    model = unet_generator(image_size=256, upsampling="transpose", norm="batch")
    assert _trainable_count(model) == PIX2PIX_UNET_256_PARAMS
    assert model.output_shape == (None, 256, 256, 3)
    assert model.get_layer("down_8_conv").output.shape[1:] == (1, 1, 512)  # 1x1 bottleneck


def test_resize_conv_parameters_at_256():
    model = unet_generator(image_size=256, upsampling="resize_conv", norm="batch")
    assert _trainable_count(model) == DERMGAN_UNET_256_PARAMS
    assert isinstance(model.get_layer("up_1_upsample"), ResizeConv2D)


def test_biases_norms_and_dropout_follow_pix2pix():
    model = unet_generator(image_size=256, upsampling="transpose", norm="batch")
    with_bias = sorted(layer.name for layer in model.layers if getattr(layer, "use_bias", False))
    assert with_bias == ["up_1_upsample"]
    norms = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert norms == {f"down_{i}_norm" for i in range(2, 8)} | {f"up_{i}_norm" for i in range(2, 9)}
    dropouts = {layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert dropouts == {"up_7_dropout": 0.5, "up_6_dropout": 0.5, "up_5_dropout": 0.5}

    instance = unet_generator(image_size=32, norm="instance")
    convs = [layer for layer in instance.layers if isinstance(layer, (keras.layers.Conv2D, ResizeConv2D))]
    assert len(convs) == 10 and all(layer.use_bias for layer in convs)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in instance.layers)
    # Small images keep three dropout blocks after the innermost one (32 px: up_4, up_3, up_2).
    assert {layer.name for layer in instance.layers if isinstance(layer, keras.layers.Dropout)} == {
        "up_4_dropout", "up_3_dropout", "up_2_dropout"}
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in unet_generator(32, dropout_rate=0.0).layers)


@pytest.mark.parametrize("size, upsampling", [(32, "resize_conv"), (64, "transpose"), (128, "resize_conv")])
def test_output_shape_and_range(size, upsampling):
    model = unet_generator(image_size=size, input_channels=3, output_channels=1, base_filters=8, max_filters=32,
                           upsampling=upsampling, norm="instance")
    # Large inputs push the tanh into saturation; the output must still stay within [-1, 1].
    y = np.asarray(model(100.0 * _semantic_map(size), training=False))
    assert y.shape == (2, size, size, 1) and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and y.min() >= -1.0 and y.max() <= 1.0
    assert y.max() - y.min() > 0.0


def test_float32_output_under_mixed_bfloat16():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = unet_generator(image_size=32, base_filters=8, max_filters=32)
        y = model(_semantic_map(32), training=False)
        assert y.dtype == "float32"
        assert model.get_layer("tanh").dtype_policy.name == "float32"
        assert model.get_layer("down_2_conv").compute_dtype == "bfloat16"
        assert model.get_layer("up_2_upsample").conv.compute_dtype == "bfloat16"
        assert all(w.dtype == "float32" for w in model.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_dropout_is_the_noise_source_only_in_training():
    model = unet_generator(image_size=32, base_filters=8, max_filters=32)
    x = _semantic_map(32)
    a, b = np.asarray(model(x, training=True)), np.asarray(model(x, training=True))
    assert np.abs(a - b).max() > 1e-4
    c, d = np.asarray(model(x, training=False)), np.asarray(model(x, training=False))
    np.testing.assert_array_equal(c, d)


def test_config_round_trip_and_keras_file(tmp_path):
    model = unet_generator(image_size=32, base_filters=8, max_filters=32, norm="batch", upsampling="resize_conv")
    config = model.get_config()
    clone = keras.Model.from_config(copy.deepcopy(config))  # from_config consumes its argument
    assert clone.get_config() == config
    assert len(clone.weights) == len(model.weights)
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]

    x = _semantic_map(32)
    model(x, training=True)  # move the batch-norm moving statistics away from their initial values
    expected = np.asarray(model(x, training=False))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.name == "unet_generator"
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 100}, "`image_size` must be a power of two between 32 and 512 (the U-Net halves it down to "
                              "1x1). Received: image_size=100"),
        ({"image_size": 16}, "Received: image_size=16"),
        ({"image_size": 1024}, "Received: image_size=1024"),
        ({"norm": "layer"}, "`norm` must be one of ('batch', 'instance'). Received: norm='layer'"),
        ({"upsampling": "deconv"}, "`upsampling` must be one of ('resize_conv', 'transpose'). "
                                   "Received: upsampling='deconv'"),
        ({"dropout_rate": 1.0}, "`dropout_rate` must be in [0, 1). Received: dropout_rate=1.0"),
        ({"base_filters": 0}, "`base_filters` must be an integer >= 1. Received: base_filters=0"),
        ({"base_filters": 64, "max_filters": 32}, "`max_filters` must be >= `base_filters` (64). "
                                                  "Received: max_filters=32"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        unet_generator(**{"image_size": 32, **kwargs})
