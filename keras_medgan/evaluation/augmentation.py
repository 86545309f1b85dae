"""Conventional data augmentation for the downstream classifiers, at training and at test time.

The critical review (Bissoto et al. 2021, Sec. 3.2) gives the baseline the best conventional practice, so that
GAN augmentation competes with it and not with an under-trained model: "random horizontal and vertical flips,
resized crops containing 75-100% of the original image area, rotations from -45 to 45 degrees, and hue changes
of -10 to 10%", applied "on both train and test", with test predictions averaged over 50 augmented replicas
(Perez et al. 2018). Built from Keras preprocessing layers, so the pipeline saves and loads with the model.
"""

from __future__ import annotations

import dataclasses
import math

import keras


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Conventional augmentation (critical review Sec. 3.2; the defaults are its values).

    Args:
        flips: bool. Random horizontal and vertical flips.
        rotation_degrees: float. Rotations drawn from [-d, d] degrees (review: 45).
        min_crop_area: float in (0, 1]. Resized crops keep 100*a..100% of the image area (review: 0.75);
            1 disables them.
        hue: float in [0, 0.5]. Hue shifts drawn from [-h, h] of the hue circle (review: 0.1, "-10 to 10%").
        enabled: bool. False trains and tests on the images as they are.
    """

    flips: bool = True
    rotation_degrees: float = 45.0
    min_crop_area: float = 0.75
    hue: float = 0.1
    enabled: bool = True

    def __post_init__(self):
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"augmentation.rotation_degrees must be in [0, 180]. Received: {self.rotation_degrees!r}")
        if not 0.0 < self.min_crop_area <= 1.0:
            raise ValueError(f"augmentation.min_crop_area must be in (0, 1]. Received: {self.min_crop_area!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augmentation.hue must be in [0, 0.5]. Received: {self.hue!r}")


def conventional_augmentation(cfg: AugmentationConfig = AugmentationConfig(), channels: int = 3, seed: int = 0,
                              name: str = "conventional_augmentation") -> keras.Sequential:
    """A ``keras.Sequential`` of random flips, rotation, zoom-in (the resized crop) and hue, on images in [-1, 1].

    The layers act only when called with ``training=True``; test-time augmentation calls them that way too
    (``training.predict_probabilities``). Hue needs colour and is skipped for 1-channel images.

    Args:
        cfg: AugmentationConfig.
        channels: int. 1 or 3.
        seed: int. Seeds each layer's random stream.

    Example:

    >>> augment = conventional_augmentation(AugmentationConfig(), channels=3, seed=0)
    >>> augmented = augment(images, training=True)
    """
    stack = []
    if cfg.enabled:
        if cfg.flips:
            stack.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed, name="flip"))
        if cfg.rotation_degrees:
            stack.append(keras.layers.RandomRotation(cfg.rotation_degrees / 360.0, fill_mode="reflect",
                                                     seed=seed + 1, name="rotation"))
        if cfg.min_crop_area < 1.0:
            # A crop of area a (side sqrt(a)) resized back to the full size is a zoom-in by 1 - sqrt(a).
            zoom = 1.0 - math.sqrt(cfg.min_crop_area)
            stack.append(keras.layers.RandomZoom((-zoom, 0.0), fill_mode="reflect", seed=seed + 2,
                                                 name="resized_crop"))
        if cfg.hue and channels == 3:
            # Keras rotates the hue by +-factor/2 of the circle.
            stack.append(keras.layers.RandomHue(2.0 * cfg.hue, value_range=(-1.0, 1.0), seed=seed + 3, name="hue"))
    return keras.Sequential(stack, name=name)
