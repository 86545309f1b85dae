"""Perceptual distance: LPIPS-like maths by hand, the offline fallback to the domain classifier, clear errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.metrics import perceptual
from keras_medgan.metrics.perceptual import (PerceptualFeaturesUnavailable, perceptual_distance,
                                             perceptual_features)
from keras_medgan.networks.applications import PretrainedWeightsUnavailable
from keras_medgan.networks.classifiers import domain_classifier

VGG_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = domain_classifier(16, 3, 2, filters=(4, 8), feature_dim=8)
    path = str(tmp_path_factory.mktemp("ruler") / "classifier.keras")
    model.save(path)
    return path


def _images(n, seed, channels=3):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 16, 16, channels)).astype("float32")


def test_classifier_features_are_unit_normalised_per_resolution(tiny_classifier):
    fn, origin = perceptual_features(16, 3, prefer="classifier", classifier_path=tiny_classifier)
    assert fn.kind == "classifier" and "requested" in origin and "block1_relu2" in origin
    assert fn.layers == ["block1_relu2", "block2_relu2"]  # last activation at 16 px and at 8 px
    feats = fn(_images(2, 0))
    assert [f.shape[1] for f in feats] == [16, 8]
    for f in feats:
        norms = np.linalg.norm(f.numpy(), axis=-1)
        live = norms > 1e-3  # ReLU pixels with all channels 0 stay 0
        np.testing.assert_allclose(norms[live], 1.0, atol=1e-4)


def test_distance_matches_hand_computation(tiny_classifier):
    fn, _ = perceptual_features(16, 3, prefer="classifier", classifier_path=tiny_classifier)
    a, b = _images(3, 1), _images(3, 2)
    model = keras.saving.load_model(tiny_classifier, compile=False)
    taps = keras.Model(model.inputs, [model.get_layer(n).output for n in fn.layers])
    expected = np.zeros(3)
    for fa, fb in zip(taps(a, training=False), taps(b, training=False)):
        fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
        fa = fa / np.sqrt(np.sum(fa ** 2, -1, keepdims=True) + 1e-10)
        fb = fb / np.sqrt(np.sum(fb ** 2, -1, keepdims=True) + 1e-10)
        expected += np.mean(np.sum((fa - fb) ** 2, -1), axis=(1, 2))
    got = perceptual_distance(fn, a, b).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(perceptual_distance(fn, a, a).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(perceptual_distance(fn, b, a).numpy(), got, rtol=1e-5)
    x = tf.Variable(a)
    with tf.GradientTape() as tape:
        d = tf.reduce_sum(perceptual_distance(fn, x, b))
    grad = tape.gradient(d, x)
    assert grad is not None and np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).sum() > 0


def test_grey_images_and_other_sizes_are_matched_to_the_classifier(tiny_classifier):
    fn, _ = perceptual_features(32, 1, prefer="classifier", classifier_path=tiny_classifier)
    grey = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1)).astype("float32")
    d = perceptual_distance(fn, grey, grey[::-1]).numpy()
    assert d.shape == (2,) and np.all(d > 0)


@pytest.mark.skipif(os.path.isfile(os.path.join(os.path.expanduser("~"), ".keras", "models", VGG_FILE)),
                    reason="VGG16 ImageNet weights are present: no fallback to test")
def test_offline_vgg16_falls_back_to_the_classifier_and_says_why(tiny_classifier):
    fn, origin = perceptual_features(16, 3, prefer="vgg16", classifier_path=tiny_classifier)
    assert fn.kind == "classifier"
    assert "VGG16 ImageNet weights unavailable" in origin and VGG_FILE in origin and "fell back" in origin
    assert fn.record()["origin"] == origin


def test_forced_vgg16_offline_names_the_file_to_copy(monkeypatch, tiny_classifier):
    def offline(*args, **kwargs):
        raise PretrainedWeightsUnavailable("URL fetch failure")

    monkeypatch.setattr(perceptual, "vgg16_style_features", offline)
    with pytest.raises(PerceptualFeaturesUnavailable, match=rf"copy {VGG_FILE} into ~/.keras/models/"):
        perceptual_features(16, 3, prefer="vgg16", fallback=False, classifier_path=tiny_classifier)
    with pytest.raises(PerceptualFeaturesUnavailable, match="no data_dir"):
        perceptual_features(16, 3, prefer="vgg16")
    with pytest.raises(ValueError, match="`prefer` must be one of"):
        perceptual_features(16, 3, prefer="inception")
