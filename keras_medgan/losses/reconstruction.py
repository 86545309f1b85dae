"""Reconstruction and feature losses of DermGAN (Ghorbani et al. 2020, Sec. 2, Fig. 3).

DermGAN trains G with four terms: "l1 reconstruction loss for the whole image,
l1 reconstruction loss for the pathological region, feature matching loss for
the second to last activation layer of the discriminator, and the min-max GAN
loss". The first three are here; the GAN pairs are in ``adversarial.py``.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def l1_loss(real_images, fake_images):
    """Whole-image L1 (pix2pix Eq. 3): mean absolute error over every pixel and channel."""
    return tf.reduce_mean(tf.abs(tf.cast(real_images, tf.float32) - tf.cast(fake_images, tf.float32)))


def roi_l1_loss(real_images, fake_images, roi_mask):
    """Condition-specific L1 (DermGAN Sec. 2): mean absolute error over the ROI pixels only.

    ``roi_mask`` is the semantic map's B channel, ``[B, H, W]`` or ``[B, H, W, 1]``,
    1 inside a condition box. The masked error is normalised by the mask area
    (times channels), so a small lesion weighs as much as a large one per pixel.
    A batch with no box at all gives exactly 0 (and zero gradient), not NaN.
    """
    real = tf.cast(real_images, tf.float32)
    fake = tf.cast(fake_images, tf.float32)
    mask = tf.cast(roi_mask, tf.float32)
    if mask.shape.rank == 3:
        mask = mask[..., None]
    channels = tf.cast(tf.shape(real)[-1], tf.float32)
    area = tf.reduce_sum(mask) * channels
    return tf.math.divide_no_nan(tf.reduce_sum(tf.abs(real - fake) * mask), area)


def feature_matching_loss(real_features, fake_features):
    """Feature matching (Salimans et al. 2016; DermGAN Sec. 2): L2 between D's features of real and fake images.

    Mean squared difference of the discriminator activations (DermGAN: its
    second-to-last layer). The real features are a fixed target
    (``stop_gradient``). Lists of feature maps are averaged layer by layer.
    """
    if isinstance(real_features, Sequence) and not isinstance(real_features, tf.Tensor):
        if len(real_features) != len(fake_features) or not real_features:
            raise ValueError("`real_features` and `fake_features` must be non-empty lists of the same length. "
                             f"Received: {len(real_features)} and {len(fake_features)}")
        return tf.add_n([feature_matching_loss(r, f) for r, f in zip(real_features, fake_features)]) / len(
            real_features)
    real = tf.stop_gradient(tf.cast(real_features, tf.float32))
    return tf.reduce_mean(tf.square(real - tf.cast(fake_features, tf.float32)))
