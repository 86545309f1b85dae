"""Training a downstream classifier the way the critical review trains every arm, baseline included.

Critical review (Bissoto et al. 2021) Sec. 3.2: "fine-tuned with stochastic gradient descent with momentum of
0.9, weight decay of 0.001 and learning rate of 0.001, which we reduce by 10 on each validation plateau after a
10-epoch patience until a minimum of 1e-5. We use a batch size of 32, shuffling the data before each epoch ...
We train for a maximum of 100 epochs, and an early stopping with a patience of 22 epochs", with conventional
augmentation at train and test time and predictions averaged over 50 augmented replicas. Every value below
defaults to that. Model selection (the plateau, early stopping and the restored best epoch) reads the
validation split only: Sec. 2 names "choosing hyperparameters directly on the test set" as the first flaw of
earlier work, and ``study.StudyConfig`` refuses configurations that would do it.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

MONITORS = ("val_loss", "val_accuracy")
CLASS_BALANCE = ("none", "weights", "oversample")
BUDGETS = ("steps", "epochs")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How every arm of a study trains its classifier (critical review Sec. 3.2 unless noted).

    Args:
        learning_rate: float. SGD learning rate (1e-3).
        momentum: float. SGD momentum (0.9).
        weight_decay: float. 1e-3. Keras applies it decoupled (as AdamW does), PyTorch's SGD as an L2 term; at
            this size the two differ little.
        batch_size: int. 32.
        max_epochs: int. 100.
        plateau_patience: int. Epochs without validation improvement before the learning rate drops (10).
        plateau_factor: float. Learning-rate multiplier on a plateau (0.1, "reduce by 10").
        min_learning_rate: float. 1e-5.
        early_stopping_patience: int. 22; the weights of the best validation epoch are restored at the end.
        monitor: str. ``val_loss`` or ``val_accuracy``: what the plateau, early stopping and the best epoch read.
            The review does not name it; the validation loss is ours.
        selection_split: str. The split model selection reads. Only ``val`` is accepted (``study`` refuses the
            rest with the reason).
        budget: str. ``steps`` (ours, the default): an epoch is ``ceil(real training set / batch)`` steps for every
            arm, so an arm with synthetic images gets the same number of updates as the baseline; ``epochs``: an
            epoch is a pass over the arm's own training set (the review's reading, which gives augmented arms
            more updates).
        class_balance: str. ``none`` (the review), ``weights`` (loss weights n / (K n_c)) or ``oversample``
            (equal class frequencies in each batch stream).
        tta: int. Augmented replicas averaged per test image (50); 1 = no test-time augmentation.
        verbose: int. Keras fit verbosity.
    """

    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 100
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 22
    monitor: str = "val_loss"
    selection_split: str = "val"
    budget: str = "steps"
    class_balance: str = "none"
    tta: int = 50
    verbose: int = 0

    def __post_init__(self):
        for field in ("learning_rate", "min_learning_rate"):
            if not getattr(self, field) > 0:
                raise ValueError(f"training.{field} must be > 0. Received: {getattr(self, field)!r}")
        for field in ("batch_size", "max_epochs", "plateau_patience", "early_stopping_patience", "tta"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"training.{field} must be an integer >= 1. Received: {value!r}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"training.plateau_factor must be in (0, 1). Received: {self.plateau_factor!r}")
        if not 0.0 <= self.momentum < 1.0 or self.weight_decay < 0:
            raise ValueError(f"training.momentum must be in [0, 1) and training.weight_decay >= 0. Received: "
                             f"momentum={self.momentum!r}, weight_decay={self.weight_decay!r}")
        if self.budget not in BUDGETS:
            raise ValueError(f"training.budget must be one of {BUDGETS}. Received: {self.budget!r}")
        if self.class_balance not in CLASS_BALANCE:
            raise ValueError(f"training.class_balance must be one of {CLASS_BALANCE}. Received: "
                             f"{self.class_balance!r}")


@dataclasses.dataclass
class TrainResult:
    """What ``train_classifier`` did: epochs run, the restored (best validation) epoch and its value."""

    epochs_run: int
    best_epoch: int
    best_value: float
    steps_per_epoch: int
    seconds: float
    history: dict


def scale(images) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the keras-medgan image range)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def class_weights(labels, num_classes: int) -> dict:
    """``{c: n / (K * n_c)}`` for the classes present (sklearn's "balanced" weights)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    present = counts > 0
    return {int(c): float(len(labels) / (present.sum() * counts[c])) for c in np.flatnonzero(present)}


def _augmenter(augmentation):
    if augmentation is None or not augmentation.layers:
        return lambda x: x
    return lambda x: augmentation(x, training=True)


class Rows:
    """Several uint8 arrays (or chosen rows of them) read as one ``[n, ...]`` array, without copying them.

    A study cell trains on a real subset plus a synthetic sample. Concatenating them would copy the real images
    (4 GB at the review's paper scale, Sec. 3.1: 14,805 images at 299 px) for every model; ``Rows`` keeps the
    study's arrays and gathers only the rows of each batch.

    Args:
        *parts: ``array`` or ``(array, rows)``; ``rows`` (int indices into ``array``) picks and orders them.

    Example:

    >>> x = Rows((train_images, real_idx), synthetic_images)
    >>> x[np.array([0, len(x) - 1])].shape   # the first real and the last synthetic image
    """

    def __init__(self, *parts):
        self.parts = []
        for part in parts:
            array, rows = part if isinstance(part, tuple) else (part, None)
            array = np.asarray(array)
            rows = None if rows is None else np.asarray(rows, np.int64)
            self.parts.append((array, rows))
        if not self.parts:
            raise ValueError("Rows needs at least one array")
        shapes = {a.shape[1:] for a, _ in self.parts}
        dtypes = {a.dtype for a, _ in self.parts}
        if len(shapes) != 1 or len(dtypes) != 1:
            raise ValueError(f"Rows: every part must have the same image shape and dtype. Received shapes "
                             f"{sorted(map(str, shapes))}, dtypes {sorted(map(str, dtypes))}")
        self.shape = (sum(len(a) if r is None else len(r) for a, r in self.parts), *shapes.pop())
        self.dtype = dtypes.pop()
        self.offsets = np.cumsum([0] + [len(a) if r is None else len(r) for a, r in self.parts])
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.asarray(idx, np.int64)
        if len(self.parts) == 1:
            array, rows = self.parts[0]
            return array[idx if rows is None else rows[idx]]
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        for m, (array, rows) in enumerate(self.parts):
            pick = which == m
            if pick.any():
                local = idx[pick] - self.offsets[m]
                out[pick] = array[local if rows is None else rows[local]]
        return out


def _host_array(images):
    return images if isinstance(images, Rows) else np.asarray(images)


def host_images(indices: tf.data.Dataset, images, labels=None) -> tf.data.Dataset:
    """Batches of int64 indices -> batches of ``images[idx]`` (and ``labels[idx]``) gathered from host memory.

    Nothing is embedded in the dataset graph: the pixels and the labels stay numpy arrays (or ``Rows``) read by
    ``tf.numpy_function``, and the index streams are ``Dataset.range`` (no constant), so the graph is the same
    few kilobytes for 100 images or for the review's 14,805 at 299 px (Sec. 3.1; 4 GB), far from tf.data's 2 GB
    limit on constants (which ``from_tensor_slices(images)`` hits). A batch is gathered by one numpy fancy index,
    so small runs lose nothing: 1,400 images at 32 px, batches of 32, on 2 shared CPU cores, this stream, one
    with the labels as a graph constant and one with the images as a graph constant all delivered a batch in
    0.4-0.8 ms (run-to-run noise larger than their differences), while a training step of the demo's small CNN
    takes tens of milliseconds (recipe card: 42-88 s per model of ~20 epochs), and ``prefetch`` overlaps the two.
    """
    images = _host_array(images)
    dtype, shape = tf.as_dtype(images.dtype), tuple(images.shape[1:])
    if labels is None:
        def gather(idx):
            x = tf.numpy_function(lambda i: images[i], [idx], dtype, stateful=False)
            x.set_shape((None, *shape))
            return x
    else:
        labels = np.asarray(labels, np.int64)

        def gather(idx):
            x, y = tf.numpy_function(lambda i: (images[i], labels[i]), [idx], (dtype, tf.int64), stateful=False)
            x.set_shape((None, *shape))
            y.set_shape((None,))
            return x, y

    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def _train_order(labels, cfg: TrainingConfig, num_classes: int, seed: int) -> tf.data.Dataset:
    """Batches of training indices: each epoch a fresh shuffle of all images, or (``oversample``) a stream drawing
    every class equally often. Built from ``Dataset.range`` so no index array enters the graph."""
    if cfg.class_balance != "oversample":
        n = len(labels)
        return tf.data.Dataset.range(n).shuffle(n, seed=seed).repeat().batch(cfg.batch_size)
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    present = [c for c in range(num_classes) if len(by_class[c])]
    order = np.concatenate([by_class[c] for c in present])  # host array: position -> image index
    offsets = np.cumsum([0] + [len(by_class[c]) for c in present])
    parts = [tf.data.Dataset.range(len(by_class[c])).shuffle(len(by_class[c]), seed=seed + c).repeat()
             .map(lambda p, o=int(offsets[k]): p + o) for k, c in enumerate(present)]
    positions = tf.data.Dataset.sample_from_datasets(parts, seed=seed).batch(cfg.batch_size)

    def to_index(p):
        idx = tf.numpy_function(lambda q: order[q], [p], tf.int64, stateful=False)
        idx.set_shape((None,))
        return idx

    return positions.map(to_index)


def _train_stream(images, labels, cfg: TrainingConfig, num_classes: int, augmentation, seed: int) -> tf.data.Dataset:
    """Shuffled, repeated, batched, scaled and augmented training batches (oversampled when asked)."""
    labels = np.asarray(labels, np.int64)
    augment = _augmenter(augmentation)
    ds = host_images(_train_order(labels, cfg, num_classes, seed), images, labels)
    ds = ds.map(lambda x, y: (augment(scale(x)), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_classifier(model: keras.Model, train_images, train_labels, val_images, val_labels, cfg: TrainingConfig,
                     *, augmentation: keras.Sequential | None = None, reference_size: int | None = None,
                     seed: int = 0) -> TrainResult:
    """Compiles ``model`` with SGD + momentum and fits it with plateau LR drops and early stopping on validation.

    Args:
        model: a classifier mapping images in [-1, 1] to probabilities (``build_classifier``).
        train_images, train_labels: uint8 ``[n, S, S, C]`` (an array or ``Rows``) and int ``[n]``: real and
            synthetic images together.
        val_images, val_labels: the validation split (never a test set), scored without augmentation.
        cfg: TrainingConfig.
        augmentation: ``conventional_augmentation(...)`` or None.
        reference_size: int. Images an epoch stands for under ``budget="steps"`` (the whole real training set,
            the same for every arm). Defaults to ``len(train_labels)``.
        seed: int. Order of the training stream.

    Returns:
        TrainResult. ``model`` holds the weights of the best validation epoch.
    """
    train_labels = np.asarray(train_labels, np.int64)
    if len(train_labels) == 0:
        raise ValueError("train_classifier got no training images")
    if len(val_labels) == 0:
        raise ValueError("train_classifier needs validation images: model selection reads the validation split")
    num_classes = int(model.output_shape[-1])
    size = reference_size if (cfg.budget == "steps" and reference_size) else len(train_labels)
    steps = max(1, math.ceil(size / cfg.batch_size))
    model.compile(keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum,
                                       weight_decay=cfg.weight_decay or None),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = _train_stream(_host_array(train_images), train_labels, cfg, num_classes, augmentation, seed)
    val_index = tf.data.Dataset.range(len(val_labels)).batch(max(cfg.batch_size, 64))
    val_ds = host_images(val_index, val_images, val_labels).cache().map(lambda x, y: (scale(x), y))
    mode = "min" if cfg.monitor.endswith("loss") else "max"
    stopper = keras.callbacks.EarlyStopping(cfg.monitor, patience=cfg.early_stopping_patience, mode=mode,
                                            restore_best_weights=True)
    callbacks = [keras.callbacks.ReduceLROnPlateau(cfg.monitor, factor=cfg.plateau_factor, mode=mode,
                                                   patience=cfg.plateau_patience, min_lr=cfg.min_learning_rate),
                 stopper]
    t0 = time.time()
    history = model.fit(train_ds, epochs=cfg.max_epochs, steps_per_epoch=steps, validation_data=val_ds,
                        class_weight=class_weights(train_labels, num_classes) if cfg.class_balance == "weights"
                        else None, callbacks=callbacks, verbose=cfg.verbose).history
    values = history[cfg.monitor]
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))
    return TrainResult(epochs_run=len(values), best_epoch=best + 1, best_value=float(values[best]),
                       steps_per_epoch=steps, seconds=time.time() - t0,
                       history={k: [float(v) for v in vs] for k, vs in history.items()})


def prediction_stream(images, augmentation: keras.Sequential | None = None, tta: int = 1,
                      batch_size: int = 64) -> tf.data.Dataset:
    """Scaled (and, with ``tta > 1``, augmented) batches of ``images`` in order, repeated ``tta`` times: replica
    ``r`` of image ``i`` is element ``r * n + i``. Gathered from host memory (``host_images``)."""
    images = _host_array(images)
    index = tf.data.Dataset.range(len(images))
    if tta <= 1 or augmentation is None or not augmentation.layers:
        return host_images(index.batch(batch_size), images).map(scale)
    augment = _augmenter(augmentation)
    return host_images(index.repeat(tta).batch(batch_size), images).map(lambda x: augment(scale(x)))


def predict_probabilities(model: keras.Model, images, augmentation: keras.Sequential | None = None, tta: int = 1,
                          batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``[n, K]`` (float64), averaged over ``tta`` augmented replicas of each image.

    The review (Sec. 3.2) applies "the same augmentations on both train and test" and averages "the predictions
    of 50 augmented replicas of each sample" (Perez et al. 2018). ``tta=1`` or no augmentation: one plain pass.
    One traced ``predict`` over the images repeated ``tta`` times (not ``tta`` calls), then the mean per image.
    """
    images = _host_array(images)
    replicas = tta if (tta > 1 and augmentation is not None and augmentation.layers) else 1
    probs = np.asarray(model.predict(prediction_stream(images, augmentation, tta, batch_size), verbose=0), np.float64)
    return probs.reshape(replicas, len(images), -1).mean(axis=0)
