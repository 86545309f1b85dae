"""Small serializable Keras layers used by the networks."""

from keras_medgan.layers.ada import AdaptiveAugment as AdaptiveAugment
from keras_medgan.layers.imagenet_input import ImageNetInput
from keras_medgan.layers.normalization import FusedBatchNormalization, make_norm
from keras_medgan.layers.resize_conv import ResizeConv2D

__all__ = ["FusedBatchNormalization", "ImageNetInput", "ResizeConv2D", "make_norm"]
