"""The domain classifier (``networks/classifiers.py``): structure, config and ``.keras`` round trips, bad arguments."""

import keras
import numpy as np
import pytest

from keras_medgan.networks.classifiers import FEATURES_LAYER, domain_classifier


def _images(size=16, channels=3, batch=3, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, size, size, channels)).astype("float32")


def _small(**kwargs):
    keras.utils.set_random_seed(0)
    args = dict(image_size=16, channels=3, num_classes=4, filters=(4, 8), feature_dim=6)
    args.update(kwargs)
    return domain_classifier(**args)


def test_structure_shapes_and_probabilities():
    model = _small(channels=1, num_classes=5)
    assert tuple(model.inputs[0].shape) == (None, 16, 16, 1)
    assert model.name == "domain_classifier"
    features = model.get_layer(FEATURES_LAYER)
    assert FEATURES_LAYER == "features" and features.units == 6 and tuple(features.output.shape) == (None, 6)
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)] == \
        ["block1_pool", "block2_pool"]
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]) == 4
    out = model(_images(channels=1), training=False)
    assert tuple(out.shape) == (3, 5) and out.dtype == "float32"
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(out) >= 0)
    # Conv filters (3x3, no bias) + BN + features + probs.
    expected = (3 * 3 * 1 * 4 + 3 * 3 * 4 * 4 + 3 * 3 * 4 * 8 + 3 * 3 * 8 * 8) + 2 * (2 * 4 + 2 * 8) \
        + (8 * 6 + 6) + (6 * 5 + 5)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_default_architecture_and_odd_size():
    model = domain_classifier(image_size=20, channels=3, num_classes=2)
    assert model.get_layer("features").units == 128
    assert model.get_layer("block3_conv2").filters == 128
    assert tuple(model(_images(size=20, batch=1)).shape) == (1, 2)


def test_probs_are_float32_under_mixed_precision():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = _small()
        assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
        out = model(_images(), training=False)
        assert out.dtype == "float32"
        np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-3)
    finally:
        keras.config.set_dtype_policy("float32")


def test_get_config_from_config_round_trip():
    model = _small(dropout_rate=0.5, name="ruler")
    clone = keras.Model.from_config(model.get_config())
    assert clone.name == "ruler"
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.get_layer("dropout").rate == 0.5
    clone.set_weights(model.get_weights())
    x = _images()
    np.testing.assert_array_equal(clone(x, training=False), model(x, training=False))


def test_keras_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = _small()
    x = _images(seed=1)
    rng = np.random.default_rng(2)
    for layer in model.layers:  # moving BN statistics away from their initial values
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape).astype("float32"))
    path = str(tmp_path / "ruler.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    feats = keras.Model(model.input, model.get_layer("features").output)
    loaded_feats = keras.Model(loaded.input, loaded.get_layer("features").output)
    np.testing.assert_array_equal(loaded_feats(x), feats(x))


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 2}, "channels must be 1 or 3. Received: channels=2"),
    ({"num_classes": 1}, "num_classes must be >= 2 for a classifier. Received: num_classes=1"),
    ({"image_size": 8, "filters": (4, 8, 16, 32)}, "image_size=8 is too small for 4 pooling blocks; it must be >= 16"),
    ({"filters": ()}, "too small for 0 pooling blocks"),
    ({"dropout_rate": 1.0}, "dropout_rate must be in [0, 1). Received: dropout_rate=1.0"),
    ({"dropout_rate": -0.1}, "dropout_rate must be in [0, 1)"),
])
def test_bad_arguments(kwargs, message):
    args = dict(image_size=16, channels=3, num_classes=4, filters=(4, 8))
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        domain_classifier(**args)
    assert message in str(info.value)


def test_smallest_valid_size():
    model = domain_classifier(image_size=4, channels=1, num_classes=2, filters=(4, 4), feature_dim=2)
    assert tuple(model(_images(size=4, channels=1, batch=2)).shape) == (2, 2)
