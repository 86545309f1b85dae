"""keras.applications networks on [-1, 1] images: shapes, flat graphs, save/load, and offline weights."""

import keras
import numpy as np
import pytest

from keras_medgan.networks import applications as apps


@pytest.fixture
def offline(monkeypatch):
    from keras.src.utils import file_utils

    def fail(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(file_utils, "get_file", fail)


def test_resnet50_classifier_outputs_probabilities_and_round_trips(tmp_path):
    model, origin = apps.imagenet_classifier("resnet50", 32, 1, 3, weights=None)
    assert origin == "random init" and model.output_shape == (None, 3)
    assert model.get_layer("features").output.shape == (None, 2048)
    assert model.get_layer("conv2_block3_out") is not None  # one flat graph: inner layers are reachable
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    probs = np.asarray(model(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    path = str(tmp_path / "c.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x), probs, rtol=1e-5, atol=1e-6)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()


def test_vgg16_style_features_are_johnsons_four_layers():
    model, _ = apps.vgg16_style_features(32, 3, weights=None)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 32, 32, 64), (None, 16, 16, 128), (None, 8, 8, 256),
                                                       (None, 4, 4, 512)]


def test_offline_imagenet_weights_raise_one_clear_error(offline):
    with pytest.raises(apps.PretrainedWeightsUnavailable, match=r"ResNet50 ImageNet weights: Keras downloads "
                                                               r"resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        apps.imagenet_backbone("resnet50", 32, 3, "imagenet")


def test_auto_falls_back_to_random_init_and_says_why(offline):
    model, origin = apps.imagenet_backbone("mobilenet", 32, 3, "auto")
    assert origin.startswith("random init (ImageNet weights unavailable: Exception: URL fetch failure")
    assert model.output_shape[-1] == 1024


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`name` must be one of"):
        apps.imagenet_backbone("resnet18", 32)
    with pytest.raises(ValueError, match="`weights` must be"):
        apps.imagenet_backbone("vgg16", 32, 3, "imagenet21k")
    with pytest.raises(ValueError, match="`channels` must be 1 or 3"):
        apps.imagenet_backbone("vgg16", 32, 2, None)
