"""Feature extractors: the "ruler" every set-level metric measures with.

A metric value is only comparable with another computed by the same extractor, at the same input
resolution, with the same resize filter (Parmar et al. 2022, "On aliased resizing and surprising
subtleties in GAN evaluation"). Every extractor therefore describes itself (``describe()``): its
registry name, where its weights came from, its input size, its resize filter and its channel handling,
and every result and feature cache records that description.

Input convention: images are ``uint8`` in [0, 255] or floats in [-1, 1] (what our generators output and
``make_dataset`` yields). Floats are quantised to the 256 levels an image file would hold before anything
else, so generated and real images go through identical arithmetic. Grey images are repeated to three
channels for a 3-channel extractor (InceptionV3); colour images are converted to luma
(``tf.image.rgb_to_grayscale``) for a 1-channel classifier. Images are then resized to the extractor's
input size with ``tf.image.resize(method="bilinear", antialias=True)`` and scaled to [-1, 1].

Extractors:
    - ``inception_v3``: ``keras.applications.InceptionV3`` with ImageNet weights (Keras downloads them
      on first use to ``~/.keras/models``), 2048-d ``avg_pool`` features and 1000-class softmax at 299 px.
      These are Keras's ImageNet weights, not the 2015 TF graph that pytorch-fid / clean-fid use, so the
      values are not comparable with FIDs published with those tools.
    - ``classifier:PATH``: the penultimate layer (or a layer named ``features``) of any saved Keras
      classifier, and its class probabilities. ``train_domain_classifier`` trains the recommended one on a
      dataset's real training split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

RESIZE_FILTER = "bilinear+antialias (tf.image.resize)"
INCEPTION_SIZE = 299


@contextlib.contextmanager
def float32_policy():
    """Builds / loads rulers in float32 whatever the run's mixed-precision policy: a metric must not depend on
    the precision the GAN happened to train in."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class FeatureExtractorError(RuntimeError):
    """An extractor cannot be built (missing weights, unreadable model); the message says what to do."""


@dataclasses.dataclass
class Features:
    """Extracted features ``[n, d]`` and class probabilities ``[n, num_classes]`` (float32)."""

    features: np.ndarray
    probs: np.ndarray


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def quantize(images) -> np.ndarray | tf.Tensor:
    """uint8 images or floats in [-1, 1] -> float32 in [0, 255] holding integer levels (as a saved file would)."""
    x = tf.convert_to_tensor(images)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32)
    x = tf.cast(x, tf.float32)
    return tf.round(tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0))


def match_channels(x: tf.Tensor, channels: int) -> tf.Tensor:
    """Grey -> repeated to 3 channels; RGB -> luma for 1-channel models."""
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return tf.repeat(x, 3, axis=-1)
    if have == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(x)
    raise ValueError(f"images have {have} channels; the extractor takes {channels}. Use 1- or 3-channel images.")


class FeatureExtractor:
    """A model mapping images to (features, class probabilities), with the facts that decide its values.

    Args:
        name: str. Registry name (``inception_v3``, ``classifier:PATH``).
        model: keras.Model with one image input in [-1, 1] and two outputs: features ``[B, d]`` and
            probabilities ``[B, K]``.
        input_size: int. Side the images are resized to.
        channels: int. Channels the model consumes.
        weights: str. Where the weights came from (e.g. ``imagenet (keras.applications)``, ``sha256:...``).
        source: optional str. The file the model was loaded from (informational: two copies of one file at
            different paths are the same ruler, so the path is not part of the fingerprint).
    """

    def __init__(self, name: str, model: keras.Model, input_size: int, channels: int, weights: str,
                 source: str | None = None):
        self.name = name
        self.source = source
        self.model = model
        self.input_size = int(input_size)
        self.channels = int(channels)
        self.weights = weights
        self.resize_filter = RESIZE_FILTER
        self.feature_dim = int(model.outputs[0].shape[-1])
        self.num_classes = int(model.outputs[1].shape[-1])
        self._predict = tf.function(self._forward, reduce_retracing=True)

    def describe(self) -> dict:
        """Everything that changes this extractor's values; stored with every result and cache key."""
        return {"name": self.name, "weights": self.weights, "input_size": self.input_size,
                "resize_filter": self.resize_filter, "channels": self.channels, "feature_dim": self.feature_dim,
                "num_classes": self.num_classes,
                "input_handling": "quantised to uint8 levels; grey repeated to 3 channels / RGB to luma as needed; "
                                  "scaled to [-1, 1]"}

    def fingerprint(self) -> str:
        """Short hash of ``describe()``: equal fingerprints mean values that may be compared."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]

    def record(self) -> dict:
        """``describe()`` plus the fingerprint and source file, for result files."""
        return {**self.describe(), "fingerprint": self.fingerprint(), "source": self.source}

    def preprocess(self, images) -> tf.Tensor:
        x = match_channels(quantize(images), self.channels)
        if x.shape[1] != self.input_size or x.shape[2] != self.input_size:
            x = tf.image.resize(x, (self.input_size, self.input_size), method="bilinear", antialias=True)
        return x / 127.5 - 1.0

    def _forward(self, x):
        features, probs = self.model(x, training=False)
        return tf.cast(features, tf.float32), tf.cast(probs, tf.float32)

    def __call__(self, images, batch_size: int = 64, verbose: bool = False) -> Features:
        """Features of an array of images ``[N, H, W, C]``, in batches."""
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C]. Received shape {images.shape}.")
        return self.extract(
            (images[i:i + batch_size] for i in range(0, len(images), batch_size)), total=len(images),
            verbose=verbose)

    def extract(self, batches: Iterable, total: int | None = None, verbose: bool = False) -> Features:
        """Features of a stream of image batches (arrays or tensors), with a progress bar when ``verbose``."""
        progbar = keras.utils.Progbar(total, unit_name="image") if verbose else None
        feats, probs, seen = [], [], 0
        for batch in batches:
            # Preprocess eagerly: inside the retrace-reducing tf.function the channel and size axes of mixed
            # inputs (grey then RGB, two resolutions) would relax to None and break match_channels / the resize test.
            f, p = self._predict(self.preprocess(tf.convert_to_tensor(batch)))
            feats.append(f.numpy())
            probs.append(p.numpy())
            seen += len(feats[-1])
            if progbar is not None:
                progbar.update(seen)
        if not feats:
            raise ValueError("no images to extract features from")
        return Features(np.concatenate(feats), np.concatenate(probs))


# ---------------------------------------------------------------------------
# inception_v3
# ---------------------------------------------------------------------------


def inception_v3(weights: str | None = "imagenet") -> FeatureExtractor:
    """InceptionV3 ``avg_pool`` features (2048-d) and ImageNet softmax at 299 px.

    Args:
        weights: ``"imagenet"`` (downloaded by Keras on first use), a path to a local copy of
            ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``, or None (random weights; only for tests,
            never a valid ruler).
    """
    if weights not in ("imagenet", None) and not os.path.isfile(str(weights)):
        raise FeatureExtractorError(f"inception_v3 weights file {weights!r} does not exist.")
    try:
        with float32_policy():
            base = keras.applications.InceptionV3(include_top=True, weights=weights)
    except Exception as e:  # Keras raises a bare Exception when the download fails
        raise FeatureExtractorError(
            "could not load the InceptionV3 ImageNet weights (Keras downloads "
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5 to ~/.keras/models on first use; this machine "
            f"appears to be offline: {type(e).__name__}: {str(e)[:200]}). Alternatives: copy that file into "
            "~/.keras/models/ from a machine with internet, or measure with a domain classifier, the recommended ruler "
            "for medical images anyway: --features classifier:auto (metrics CLI) or --set eval.features=classifier:auto "
            "(recipes), or train one with python -m keras_medgan.metrics train-classifier --data DATASET --out "
            "ruler.keras and use classifier:ruler.keras.") from None
    with float32_policy():
        model = keras.Model(base.inputs, [base.get_layer("avg_pool").output, base.output],
                            name="inception_v3_features")
    if weights == "imagenet":
        origin = "imagenet (keras.applications.InceptionV3, inception_v3_weights_tf_dim_ordering_tf_kernels.h5)"
    elif weights is None:
        origin = "random (untrained; not a valid ruler)"
    else:
        origin = f"file sha256:{file_sha256(weights)[:16]}"
    source = os.path.abspath(weights) if weights not in ("imagenet", None) else None
    return FeatureExtractor("inception_v3", model, INCEPTION_SIZE, 3, origin, source=source)


# ---------------------------------------------------------------------------
# classifier:PATH
# ---------------------------------------------------------------------------


def _penultimate(model: keras.Model):
    """(features tensor, probabilities tensor) of a single-output classifier."""
    if len(model.outputs) != 1:
        raise FeatureExtractorError(f"{model.name} has {len(model.outputs)} outputs; a classifier extractor needs a "
                                    "model with one class-score output.")
    probs = model.outputs[0]
    names = [layer.name for layer in model.layers]
    if "features" in names:
        features = model.get_layer("features").output
    else:
        last = model.layers[-1]
        if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)):
            last = model.layers[-2]
        features = last.input
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if not (isinstance(last, keras.layers.Softmax) or activation == "softmax"):  # logits: IS needs probabilities
        probs = keras.layers.Softmax(name="probs_from_logits", dtype="float32")(probs)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="features_pool")(features)
    if len(features.shape) != 2:
        raise FeatureExtractorError(f"the penultimate activation of {model.name} has shape {features.shape}; "
                                    "expected [batch, dim]. Name the embedding layer 'features'.")
    return features, probs


def classifier_extractor(path: str) -> FeatureExtractor:
    """Features from a saved Keras classifier (``.keras``), loaded in safe mode.

    The model must take images in [-1, 1] (keras-medgan's convention) of a fixed square size.
    """
    if not os.path.isfile(path):
        raise FeatureExtractorError(
            f"classifier:{path}: no such file. Train a domain classifier with "
            f"`python -m keras_medgan.metrics train-classifier --data DATASET --out {path}`.")
    try:
        with float32_policy():
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        raise FeatureExtractorError(f"classifier:{path} could not be loaded as a Keras model: {e}") from None
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise FeatureExtractorError(f"classifier:{path} takes inputs of shape {shape}; a feature extractor needs "
                                    "square images with 1 or 3 channels and a fixed size.")
    with float32_policy():
        features, probs = _penultimate(model)
        wrapped = keras.Model(model.inputs, [features, probs], name=f"{model.name}_features")
    return FeatureExtractor("classifier", wrapped, int(shape[1]), int(shape[3]), f"sha256:{file_sha256(path)[:16]}",
                            source=os.path.abspath(path))
