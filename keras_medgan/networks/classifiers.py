"""Image classifiers used as rulers and as downstream models.

``domain_classifier`` is the small CNN the metrics suite trains on a dataset's real training split and
uses as its feature extractor (``classifier:PATH``): ImageNet features are a questionable ruler for
X-rays and dermoscopy (critical review, Sec. 2), and this one works offline.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

FEATURES_LAYER = "features"


def domain_classifier(image_size: int, channels: int, num_classes: int, filters: Sequence[int] = (32, 64, 128),
                      feature_dim: int = 128, dropout_rate: float = 0.3, name: str = "domain_classifier"
                      ) -> keras.Model:
    """A small VGG-style CNN: per block two 3x3 conv + BN + ReLU and a 2x2 max-pool; global average pooling;
    a ``features`` dense layer (the embedding the metrics use); dropout; a softmax over the classes.

    Args:
        image_size: int. Input side in pixels (>= 2**len(filters)).
        channels: int. 1 or 3.
        num_classes: int. >= 2.
        filters: widths of the conv blocks.
        feature_dim: int. Width of the ``features`` layer.
        dropout_rate: float in [0, 1).

    Returns:
        ``keras.Model`` mapping images in [-1, 1] to class probabilities (float32 under any policy).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for a classifier. Received: num_classes={num_classes}")
    if not filters or image_size < 2 ** len(filters):
        raise ValueError(f"image_size={image_size} is too small for {len(filters)} pooling blocks; it must be "
                         f">= {2 ** len(filters)}.")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1). Received: dropout_rate={dropout_rate}")
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = inputs
    for i, width in enumerate(filters):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv{j + 1}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{i + 1}_bn{j + 1}")(x)
            x = layers.ReLU(name=f"block{i + 1}_relu{j + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    features = layers.Dense(feature_dim, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(dropout_rate, name="dropout")(features)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)
