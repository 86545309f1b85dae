"""Pieces of one GAN update that every model in ``gans/`` shares.

- Replica and loss scaling (DESIGN.md, "GAN models"): a per-example mean is divided
  by ``num_replicas_in_sync`` before the gradient (the replicas' gradients are summed)
  and multiplied by the loss scale under ``mixed_float16``; the gradient norm that is
  logged undoes both.
- Gradient-norm logging that ignores the steps a ``LossScaleOptimizer`` skips.
- Noise that differs across replicas: a ``keras.random.SeedGenerator`` is mirrored under
  ``MirroredStrategy``, so every replica would draw the same numbers from it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def global_norm(grads) -> tf.Tensor:
    """L2 norm over all gradients (None entries ignored), float32."""
    grads = [tf.cast(g, tf.float32) for g in grads if g is not None]
    return tf.linalg.global_norm(grads) if grads else tf.constant(0.0)


def scaled_loss(optimizer, loss):
    """Per-replica share of ``loss``, times the loss scale under mixed_float16; compute it inside the tape."""
    return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)


def apply_scaled_gradients(optimizer, tape, loss, variables, skip_missing: bool = False) -> tf.Tensor:
    """One optimiser update from a loss made by ``scaled_loss``; returns the unscaled gradient norm.

    ``skip_missing``: variables the loss does not depend on (a penalty on ``grad_x D`` has no gradient for D's
    output bias) are left out of the update, as PyTorch's Adam skips parameters without ``.grad``; otherwise
    Keras warns about them.
    """
    return apply_gradients_with_norm(optimizer, tape.gradient(loss, variables), variables, skip_missing)


def apply_gradients_with_norm(optimizer, grads, variables, skip_missing: bool = False) -> tf.Tensor:
    """``apply_scaled_gradients`` for gradients already taken (of a loss made by ``scaled_loss``)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None or not skip_missing]
    optimizer.apply_gradients(pairs)
    norm = global_norm(grads) * tf.distribute.get_strategy().num_replicas_in_sync
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        norm = norm / tf.cast(optimizer.dynamic_scale, tf.float32)
    return norm


def track_grad_norm(tracker, norm) -> None:
    """Adds ``norm`` to a Mean tracker unless it is inf/NaN.

    Under mixed_float16 a step whose scaled gradients overflow is skipped by the
    loss-scale optimizer (and the scale lowered); its norm is inf by design and
    must not trip the NaN stop.
    """
    finite = tf.math.is_finite(norm)
    tracker.update_state(tf.where(finite, norm, 0.0), sample_weight=tf.cast(finite, tf.float32))


def replica_random(draw, batch_size, seed):
    """``draw(n, seed)`` for this replica's ``batch_size`` rows, different on every replica.

    One draw for the whole global batch from the shared seed, then this replica's
    slice of it, so replicas never repeat each other's noise and the seed state
    advances identically everywhere.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return draw(batch_size, seed)
    start = tf.distribute.get_replica_context().replica_id_in_sync_group * batch_size
    return draw(batch_size * replicas, seed)[start:start + batch_size]


def replica_normal(batch_size, dim, seed):
    """Standard normal ``[batch_size, dim]`` float32 (latent codes), different on every replica."""
    return replica_random(lambda n, s: keras.random.normal((n, dim), seed=s, dtype="float32"), batch_size, seed)


def replica_uniform(batch_size, seed):
    """U[0, 1) ``[batch_size]`` float32 (per-sample interpolation weights), different on every replica."""
    return replica_random(lambda n, s: keras.random.uniform((n,), seed=s, dtype="float32"), batch_size, seed)


def check_generate_labels(labels, num_classes: int) -> tuple:
    """``generate``'s ``labels`` argument: ``(count, int32 class tensor)`` for a conditional model (one index per
    image, each in ``[0, num_classes)``), ``(count, None)`` for an unconditional one (the number of images).

    >>> check_generate_labels(3, 0)
    (3, None)
    """
    if num_classes:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"`labels` must be a 1-D sequence of class indices. Received: labels={labels!r}")
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(f"`labels` must be in [0, {num_classes}) (num_classes={num_classes}). "
                             f"Received: {sorted(set(bad.tolist()))}")
        return len(labels), tf.constant(labels, tf.int32)
    if isinstance(labels, bool) or not isinstance(labels, (int, np.integer)) or labels < 0:
        raise ValueError("An unconditional model (num_classes=0) takes the number of images as `labels`. "
                         f"Received: labels={labels!r}")
    return int(labels), None


def generate_in_batches(generate_fn, z, batch_size: int, output_shape) -> np.ndarray:
    """``generate_fn(z_chunk, start)`` over ``batch_size`` chunks of the noise ``z``, concatenated as float32 numpy
    (an empty ``[0, *output_shape]`` array for no noise). ``start`` lets the caller slice matching labels."""
    count = int(z.shape[0])
    chunks = [keras.ops.convert_to_numpy(generate_fn(z[i:i + batch_size], i)) for i in range(0, count, batch_size)]
    if not chunks:
        return np.zeros((0, *output_shape), "float32")
    return np.concatenate(chunks).astype("float32")
