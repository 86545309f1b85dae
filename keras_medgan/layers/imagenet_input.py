"""Turns keras-medgan images (in [-1, 1], 1 or 3 channels) into the input an ImageNet network expects."""

import keras
from keras import ops

# ImageNet channel means in BGR order, subtracted by the "caffe" preprocessing of ResNet-50 and VGG-16
# (keras.applications.imagenet_utils, mode="caffe").
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("caffe", "tf", "raw255")


@keras.saving.register_keras_serializable(package="keras_medgan")
class ImageNetInput(keras.layers.Layer):
    """Maps images in [-1, 1] to an ImageNet network's expected input, repeating grey images to RGB.

    Modes (the three preprocessing conventions of `keras.applications`):

    - `"caffe"` (ResNet-50, VGG-16): RGB in [0, 255] -> BGR, minus the ImageNet channel means.
    - `"tf"` (MobileNet, InceptionV3): [-1, 1] as is.
    - `"raw255"` (EfficientNet, whose models rescale inside): RGB in [0, 255].

    Args:
        mode: str. One of `"caffe"`, `"tf"`, `"raw255"`.
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        if self.mode == "tf":
            return x
        x = (x + 1.0) * 127.5
        if self.mode == "raw255":
            return x
        x = ops.flip(x, axis=-1)  # RGB -> BGR
        return x - ops.cast(ops.convert_to_tensor(CAFFE_BGR_MEAN), x.dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
