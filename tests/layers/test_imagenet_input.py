"""ImageNetInput: the three keras.applications preprocessing conventions from images in [-1, 1]."""

import keras
import numpy as np
import pytest

from keras_medgan.layers import ImageNetInput
from keras_medgan.layers.imagenet_input import CAFFE_BGR_MEAN


def test_caffe_mode_is_bgr_minus_means_on_0_255():
    x = np.array([[[[-1.0, 0.0, 1.0]]]], np.float32)  # RGB = 0, 127.5, 255
    out = np.asarray(ImageNetInput("caffe")(x))
    np.testing.assert_allclose(out[0, 0, 0], [255 - CAFFE_BGR_MEAN[0], 127.5 - CAFFE_BGR_MEAN[1],
                                              0 - CAFFE_BGR_MEAN[2]], rtol=1e-6)


def test_tf_and_raw255_modes_and_grey_repeated_to_rgb():
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    np.testing.assert_allclose(np.asarray(ImageNetInput("tf")(x)), np.full((2, 4, 4, 3), 0.5))
    np.testing.assert_allclose(np.asarray(ImageNetInput("raw255")(x)), np.full((2, 4, 4, 3), 191.25))
    assert ImageNetInput("tf").compute_output_shape((None, 4, 4, 1)) == (None, 4, 4, 3)


def test_config_and_save_load_round_trip(tmp_path):
    layer = ImageNetInput("raw255", name="pre")
    assert ImageNetInput.from_config(layer.get_config()).mode == "raw255"
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, ImageNetInput("caffe")(inputs))
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(keras.saving.load_model(path)(x), model(x))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ImageNetInput("torch")
