"""The downstream classifiers of the seed papers, by name.

| name | paper | model |
|---|---|---|
| ``small_cnn`` | paper 001 (Bingol et al.), its real-data classifier: three conv blocks with batch norm, then dropout | ``networks.classifiers.domain_classifier`` |
| ``mobilenet`` | DermGAN (Ghorbani et al. 2020, Sec. 5): MobileNet | ``keras.applications.MobileNet`` |
| ``resnet50`` | XRAY-GAN (paper 004, Sec. 5.4): ResNet-50 | ``keras.applications.ResNet50`` |
| ``efficientnet_b2`` | paper 003 (Carrasco Limeros et al.): EfficientNet-B2 | ``keras.applications.EfficientNetB2`` |
| ``inception_v3`` | the critical review's Inception-v4 (Sec. 3.2), which Keras does not ship | ``keras.applications.InceptionV3`` |

The ImageNet networks come from ``networks.applications.imagenet_classifier``: with ``weights="auto"`` they load
ImageNet weights when Keras can have them and otherwise train from scratch; the returned origin says which,
and the study report repeats it.
"""

from __future__ import annotations

import dataclasses

import keras

from keras_medgan.networks.applications import APPLICATIONS, imagenet_classifier
from keras_medgan.networks.classifiers import domain_classifier

CLASSIFIERS = ("small_cnn", *sorted(APPLICATIONS))


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Which target model a study trains.

    Args:
        name: str. One of ``CLASSIFIERS`` (see the module table). Defaults to ``small_cnn``.
        weights: str. ``auto`` (ImageNet when available, else random init; the review fine-tunes an ImageNet
            model, Sec. 3.2), ``imagenet`` (fail without them) or ``none``. Ignored by ``small_cnn``.
        dropout: float. Dropout before the softmax (paper 001's CNN uses dropout; 0.3 is ours).
        filters: tuple of int. ``small_cnn`` block widths (paper 001 does not give them; 32, 64, 128 is ours).
    """

    name: str = "small_cnn"
    weights: str = "auto"
    dropout: float = 0.3
    filters: tuple = (32, 64, 128)

    def __post_init__(self):
        if isinstance(self.filters, list):
            object.__setattr__(self, "filters", tuple(self.filters))
        if self.name not in CLASSIFIERS:
            raise ValueError(f"classifier.name must be one of {CLASSIFIERS}. Received: {self.name!r}")
        if self.weights not in ("auto", "imagenet", "none"):
            raise ValueError(f"classifier.weights must be auto, imagenet or none. Received: {self.weights!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"classifier.dropout must be in [0, 1). Received: {self.dropout!r}")
        if not self.filters or not all(isinstance(f, int) and f >= 1 for f in self.filters):
            raise ValueError(f"classifier.filters must be positive integers. Received: {self.filters!r}")


def build_classifier(cfg: ClassifierConfig, image_size: int, channels: int, num_classes: int
                     ) -> tuple[keras.Model, str]:
    """The model named by ``cfg``, mapping images in [-1, 1] to class probabilities.

    Returns:
        ``(model, origin)``; ``origin`` says whether ImageNet weights were loaded (and why not).

    Example:

    >>> model, origin = build_classifier(ClassifierConfig("mobilenet"), 128, 3, num_classes=2)
    >>> origin   # "imagenet (mobilenet_1_0_224_tf_no_top.h5)" or "random init (ImageNet weights unavailable: ...)"
    """
    if cfg.name == "small_cnn":
        model = domain_classifier(image_size, channels, num_classes, filters=cfg.filters, dropout_rate=cfg.dropout,
                                  name="small_cnn")
        return model, "random init (small CNN, trained from scratch)"
    weights = None if cfg.weights == "none" else cfg.weights
    model, origin = imagenet_classifier(cfg.name, image_size, channels, num_classes, weights=weights,
                                        dropout_rate=cfg.dropout)
    return model, origin
