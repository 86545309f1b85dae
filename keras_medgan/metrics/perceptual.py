"""A perceptual distance between images, shared by the StyleGAN2 projector and the perceptual path length.

Both NVIDIA tools measure with LPIPS on VGG16 (Zhang et al. 2018): the projector of Karras et al. 2020
("Analyzing and improving the image quality of StyleGAN", Sec. 5 / Appendix D, reference
``NVlabs/stylegan2-ada-pytorch`` ``projector.py``) and PPL (Karras et al. 2019, Sec. 4.1; reference
``metrics/perceptual_path_length.py``). Paper 003 (Carrasco Limeros et al. 2022, Sec. 3.2 / 4.3) projects real
skin-lesion images with "VGG16 as a feature extractor since this is the one used by default in the StyleGAN2
model by NVIDIA".

Here the distance is LPIPS without its learned per-channel weights (the "lin" layers, which are not part of
the Keras VGG16 weights): at each of several conv layers, unit-normalise the channel vector of every pixel, take
the squared difference, sum over channels, average over space, and sum over layers::

    d(a, b) = sum_l mean_hw || f_l(a)_hw / |f_l(a)_hw| - f_l(b)_hw / |f_l(b)_hw| ||^2

Feature networks, in order of preference:

- ``vgg16``: Keras's VGG16 with ImageNet weights, layers relu1_2, relu2_2, relu3_3, relu4_3 (the LPIPS/VGG
  layers up to conv4; conv5 is left out because at the small sizes medical GANs train at its maps are 1-2 px).
  Keras downloads ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` to ``~/.keras/models`` on first use.
- ``classifier``: the dataset's own domain classifier (``metrics.domain_classifier``, the metrics' ruler), its
  last activation at every spatial resolution (for our ``domain_classifier``: ``block{i}_relu2``). Used when the
  VGG16 weights cannot be had (an offline machine), or on request; ``origin`` says which and why.

Values from different feature networks are not comparable; every result records ``origin``.

Example:

>>> fn, origin = perceptual_features(32, 3, data_dir="data/demo-derm")
>>> d = perceptual_distance(fn, images_a, images_b)     # [B]
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier
from keras_medgan.metrics.features import float32_policy, match_channels
from keras_medgan.networks.applications import (APPLICATIONS, VGG16_STYLE_LAYERS, PretrainedWeightsUnavailable,
                                                vgg16_style_features)

PREFERENCES = ("vgg16", "classifier")
VGG16_MIN_SIZE = 32  # keras.applications.VGG16 refuses smaller inputs
VGG16_MAX_SIZE = 256  # NVIDIA's projector and PPL downsample larger images to 256 px
_UNIT_EPS = 1e-10


class PerceptualFeaturesUnavailable(RuntimeError):
    """No perceptual feature network could be built; the message says what to copy or pass."""


class PerceptualFeatures:
    """Images in [-1, 1] -> list of channel-unit-normalised feature maps ``[B, h, w, c]`` (differentiable TF ops).

    Built by ``perceptual_features``; attributes ``kind`` (``vgg16`` or ``classifier``), ``input_size`` (the side
    images are resized to), ``layers`` (names of the layers read) and ``origin``.
    """

    def __init__(self, model: keras.Model, kind: str, input_size: int, channels: int, layers, origin: str):
        self.model = model
        self.kind = kind
        self.input_size = int(input_size)
        self.channels = int(channels)
        self.layers = list(layers)
        self.origin = origin

    def __call__(self, images) -> list:
        x = tf.cast(tf.convert_to_tensor(images), tf.float32)
        x = match_channels(x, self.channels)
        if x.shape[1] != self.input_size or x.shape[2] != self.input_size:
            # bilinear + antialias is differentiable (ScaleAndTranslate has a gradient; area resizing has none)
            x = tf.image.resize(x, (self.input_size, self.input_size), method="bilinear", antialias=True)
        outputs = self.model(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [unit_normalize(tf.cast(f, tf.float32)) for f in outputs]

    def record(self) -> dict:
        """JSON-ready description for result files."""
        return {"kind": self.kind, "origin": self.origin, "input_size": self.input_size, "channels": self.channels,
                "layers": self.layers,
                "distance": "sum over layers of the spatial mean of the squared difference of channel-unit-normalised "
                            "features (LPIPS without learned weights)"}


def unit_normalize(features: tf.Tensor) -> tf.Tensor:
    """Divides every pixel's channel vector by its Euclidean norm (LPIPS, Zhang et al. 2018, Eq. 1)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True) + _UNIT_EPS)
    return features / norm


def feature_distance(features_a: list, features_b: list) -> tf.Tensor:
    """``[B]`` distance between two lists of unit-normalised feature maps (from one ``PerceptualFeatures``)."""
    if len(features_a) != len(features_b):
        raise ValueError(f"feature lists differ in length: {len(features_a)} and {len(features_b)}")
    total = 0.0
    for fa, fb in zip(features_a, features_b):
        total += tf.reduce_mean(tf.reduce_sum(tf.square(fa - fb), axis=-1), axis=[1, 2])
    return total


def perceptual_distance(fn: PerceptualFeatures, a, b) -> tf.Tensor:
    """Perceptual distance ``[B]`` between image batches ``a`` and ``b`` (``[B, H, W, C]`` in [-1, 1]).

    Example:

    >>> fn, _ = perceptual_features(32, 3, data_dir=data_dir)
    >>> perceptual_distance(fn, x, x)   # zeros
    """
    return feature_distance(fn(a), fn(b))


def as_distance_fn(distance_fn):
    """A ``(a, b) -> [B]`` callable from a ``PerceptualFeatures`` (wrapped) or such a callable (as is)."""
    if isinstance(distance_fn, PerceptualFeatures):
        return lambda a, b: perceptual_distance(distance_fn, a, b)
    if not callable(distance_fn):
        raise TypeError(f"`distance_fn` must be a PerceptualFeatures (perceptual_features) or a callable "
                        f"(a, b) -> [B]. Received: {type(distance_fn).__name__}")
    return distance_fn


def _resolution_layers(model: keras.Model) -> list:
    """Names of the last activation (ReLU/Activation, else Conv2D) at each spatial resolution of a CNN."""
    by_size: dict = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4:
            continue
        is_act = isinstance(layer, (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU))
        is_conv = isinstance(layer, keras.layers.Conv2D)
        if not (is_act or is_conv):
            continue
        size = int(shape[1])
        best = by_size.get(size)
        if is_act or best is None or not best[1]:
            by_size[size] = (layer.name, is_act)
    return [name for _, (name, _) in sorted(by_size.items(), key=lambda kv: -kv[0])]


def classifier_features(path: str, origin_note: str = "") -> PerceptualFeatures:
    """``PerceptualFeatures`` from a saved Keras classifier (``.keras``, loaded in safe mode) taking [-1, 1] images.

    Reads the last activation at every spatial resolution (``_resolution_layers``).
    """
    if not os.path.isfile(path):
        raise PerceptualFeaturesUnavailable(f"classifier {path!r}: no such file. Train the domain classifier with "
                                            "`python -m keras_medgan.metrics train-classifier --data DATASET --out "
                                            f"{path}` or pass data_dir so it is trained and cached.")
    with float32_policy():
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        shape = model.inputs[0].shape
        if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
            raise PerceptualFeaturesUnavailable(f"classifier {path!r} takes inputs of shape {shape}; perceptual "
                                                "features need a CNN on square 1- or 3-channel images of fixed size.")
        names = _resolution_layers(model)
        if not names:
            raise PerceptualFeaturesUnavailable(f"classifier {path!r} has no 4-D conv activations to compare.")
        features = keras.Model(model.inputs, [model.get_layer(n).output for n in names], name="classifier_features")
    origin = f"domain classifier {os.path.abspath(path)} (conv activations {', '.join(names)})"
    if origin_note:
        origin += f"; {origin_note}"
    return PerceptualFeatures(features, "classifier", int(shape[1]), int(shape[3]), names, origin)


def _vgg16(image_size: int, channels: int) -> PerceptualFeatures:
    size = min(max(int(image_size), VGG16_MIN_SIZE), VGG16_MAX_SIZE)
    with float32_policy():
        model, weights = vgg16_style_features(size, channels, weights="imagenet")
    origin = f"vgg16 {weights}, layers {', '.join(VGG16_STYLE_LAYERS)} at {size} px"
    return PerceptualFeatures(model, "vgg16", size, channels, VGG16_STYLE_LAYERS, origin)


def perceptual_features(image_size: int, channels: int, data_dir: str | None = None, prefer: str = "vgg16",
                        fallback: bool = True, classifier_path: str | None = None, ruler_settings=None,
                        ) -> tuple[PerceptualFeatures, str]:
    """The perceptual feature function of the projector and PPL, and a string saying which network it uses.

    Args:
        image_size: int. Side of the images that will be compared (the generator's resolution). VGG16 sees them
            resized to ``clip(image_size, 32, 256)`` (NVIDIA's tools downsample to 256 px; Keras's VGG16 needs
            >= 32); the classifier at its own input size.
        channels: int. 1 or 3.
        data_dir: str or None. Dataset whose domain classifier (``metrics.domain_classifier.ensure_domain_
            classifier``, trained and cached on first use) is the fallback / ``classifier`` network.
        prefer: ``"vgg16"`` (paper 003 Sec. 4.3 and NVIDIA's projector/PPL; the default) or ``"classifier"``.
        fallback: bool. With ``prefer="vgg16"``, fall back to the classifier when the ImageNet weights cannot be
            loaded (True, the default) or raise ``PerceptualFeaturesUnavailable`` naming the file to copy (False).
        classifier_path: str or None. A saved classifier to use instead of training one on ``data_dir``.
        ruler_settings: ``RulerSettings`` or None (defaults) for ``ensure_domain_classifier``.

    Returns:
        ``(fn, origin)``: ``fn(images [B, H, W, C] in [-1, 1]) -> list of feature tensors``, a
        ``PerceptualFeatures``; ``origin`` names the network and its weights and, after a fallback, why VGG16
        was not used.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"`prefer` must be one of {PREFERENCES}. Received: prefer={prefer!r}")
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    note = ""
    if prefer == "vgg16":
        try:
            fn = _vgg16(image_size, channels)
            return fn, fn.origin
        except PretrainedWeightsUnavailable as e:
            filename = APPLICATIONS["vgg16"][2]
            if not fallback:
                raise PerceptualFeaturesUnavailable(
                    f"VGG16 ImageNet weights are not available on this machine: copy {filename} into "
                    f"~/.keras/models/ (from a machine with internet: it is what keras.applications.VGG16 "
                    "downloads), or use the dataset's domain classifier instead (prefer='classifier', or "
                    f"--features auto / classifier on the command line). Cause: {e}") from None
            note = (f"VGG16 ImageNet weights unavailable ({filename} not in ~/.keras/models and could not be "
                    "downloaded), fell back to the domain classifier")
    else:
        note = "requested (prefer='classifier')"
    if classifier_path is None:
        if data_dir is None:
            raise PerceptualFeaturesUnavailable(
                "no perceptual feature network: " + (note or "the classifier was requested") + " but no data_dir "
                "(dataset to train the domain classifier on) or classifier_path was given. Pass one, or copy "
                f"{APPLICATIONS['vgg16'][2]} into ~/.keras/models/.")
        classifier_path = ensure_domain_classifier(data_dir, ruler_settings or RulerSettings())
    fn = classifier_features(classifier_path, note)
    return fn, fn.origin
