"""Perceptual path length (Karras et al. 2019, "A style-based generator architecture for GANs", Sec. 4.1).

PPL measures how much the image changes under a tiny step in the latent space: for latent pairs ``(w0, w1)``,

    l = d(g(lerp(w0, w1, t)), g(lerp(w0, w1, t + eps))) / eps^2

averaged over pairs. The settings here are those of the StyleGAN papers' W-space metric and of NVIDIA's
reference implementation (``NVlabs/stylegan2-ada-pytorch``, ``metrics/perceptual_path_length.py``, metric
``ppl_wend``):

- interpolation in W (``space="w"``, Sec. 4.1: "we perform the interpolation in W"), linear (lerp);
- end-point sampling (``sampling="end"``: ``t = 0``, the reference code's ``t * 0``; Sec. 4.1 "path endpoints");
- ``epsilon = 1e-4`` (Sec. 4.1);
- the 1st and 99th percentiles of the per-pair values are bounds: values outside them are discarded before the
  mean (the reference's ``np.percentile(..., 1, interpolation='lower')`` / ``(99, 'higher')``);
- images are compared with the noise inputs fixed (``training=False``: the reference's ``noise_mode='const'``).

``d`` is any ``(a, b) -> [B]`` distance; ``metrics.perceptual.perceptual_features`` gives the LPIPS-like VGG16
distance of the paper (or the domain-classifier fallback) and the result must say which one was used: PPL values
are comparable only under the same distance. Paper 003 (Table 1) reports PPL for its StyleGAN2-ADA models.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.metrics.intervals import bootstrap_ci
from keras_medgan.metrics.perceptual import as_distance_fn

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0


def map_w(generator, z, c=None) -> tf.Tensor:
    """``w [B, w_dim]`` of latents ``z`` (and one-hot ``c`` for a conditional generator), without truncation."""
    z = tf.convert_to_tensor(z, tf.float32)
    inputs = [z, tf.convert_to_tensor(c, tf.float32)] if generator.num_classes else z
    return tf.cast(generator.mapping(inputs, training=False), tf.float32)


def tile_ws(generator, w) -> tf.Tensor:
    """``[B, w_dim]`` -> ``[B, num_ws, w_dim]`` (the same w for every synthesis layer)."""
    return tf.tile(tf.convert_to_tensor(w, tf.float32)[:, None, :], [1, generator.num_ws, 1])


def synthesize(generator, ws) -> tf.Tensor:
    """Images (float32) of ``ws [B, num_ws, w_dim]`` with the fixed noise buffers."""
    return tf.cast(generator.synthesis(ws, training=False), tf.float32)


def class_labels(generator, labels, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """int class indices ``[count]`` for a conditional generator (uniform when ``labels`` is None), else None."""
    if not generator.num_classes:
        if labels is not None:
            raise ValueError("`labels` were given but the generator is unconditional (num_classes=0); pass None.")
        return None
    if labels is None:
        return rng.integers(0, generator.num_classes, count)
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be {count} integer class indices (one per sample). Received shape "
                         f"{labels.shape}, dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= generator.num_classes:
        raise ValueError(f"`labels` must be in [0, {generator.num_classes}). Received {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def filtered_mean(distances) -> tuple[float, float, float, np.ndarray]:
    """``(mean, low, high, kept mask)``: the mean of the values within the 1st-99th percentile bounds
    (low with ``method="lower"``, high with ``method="higher"``, as the reference implementation)."""
    d = np.asarray(distances, np.float64)
    low = float(np.percentile(d, LOW_PERCENTILE, method="lower"))
    high = float(np.percentile(d, HIGH_PERCENTILE, method="higher"))
    keep = (d >= low) & (d <= high)
    return float(np.mean(d[keep])), low, high, keep


def perceptual_path_length(generator, distance_fn, num_samples: int = 2000, epsilon: float = 1e-4,
                           batch_size: int = 32, seed: int = 0, labels=None, bootstrap: int = 1000,
                           return_distances: bool = False, progress: bool = False) -> dict:
    """PPL of ``generator`` in W with end-point sampling (Karras et al. 2019, Sec. 4.1).

    Latent pairs are ``z = np.random.default_rng(seed).standard_normal((num_samples, 2, z_dim))`` (pair ``i`` is
    ``z[i, 0], z[i, 1]``); both ends are mapped with the same class. Per pair
    ``d(g(w0), g(w0 + eps (w1 - w0))) / eps^2``; the result is the mean over the pairs inside the
    [1st, 99th] percentile bounds.

    Args:
        generator: a StyleGAN2 generator (``.mapping``, ``.synthesis``, ``.num_ws``, ``.z_dim``, ``.num_classes``;
            pass the EMA generator, ``StyleGAN2ADA.g_ema``).
        distance_fn: ``metrics.perceptual.PerceptualFeatures`` or a callable ``(a, b) -> [B]``.
        num_samples: int. Latent pairs (reference: 50,000 for ``ppl_wend``; paper 003 does not say).
        epsilon: float. Step along the path (Sec. 4.1: 1e-4).
        batch_size: int. Pairs per forward pass (the value does not depend on it).
        seed: int. Seed of the latents and labels.
        labels: None (uniform random classes for a conditional generator, none otherwise) or ``num_samples``
            class indices. The reference draws labels from the training set.
        bootstrap: int. Resamples of the 95% interval of the mean over the kept values (0 = none).
        return_distances: bool. Add the per-pair values (``distances``, float64 array) to the result.
        progress: bool. A progress bar.

    Returns:
        ``{"ppl", "n", "n_kept", "low", "high", "percentiles", "epsilon", "space": "w", "sampling": "end",
        "seed", "ci_low", "ci_high", "confidence", "resamples"}`` (interval fields when ``bootstrap >= 2``).

    Example:

    >>> fn, origin = perceptual_features(64, 3, data_dir=data_dir)
    >>> result = perceptual_path_length(model.g_ema, fn, num_samples=2000)
    >>> result["ppl"], origin
    """
    num_samples = _check_int("num_samples", num_samples, 2)
    batch_size = _check_int("batch_size", batch_size, 1)
    if not (isinstance(epsilon, numbers.Real) and epsilon > 0):
        raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon!r}")
    distance = as_distance_fn(distance_fn)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((num_samples, 2, generator.z_dim)).astype(np.float32)
    classes = class_labels(generator, labels, num_samples, rng)
    eps = float(epsilon)

    @tf.function(reduce_retracing=True)
    def step(z0, z1, c):
        w0, w1 = map_w(generator, z0, c), map_w(generator, z1, c)
        wt0 = w0  # end-point sampling: t = 0
        wt1 = w0 + eps * (w1 - w0)  # lerp(w0, w1, t + eps)
        images = synthesize(generator, tf.concat([tile_ws(generator, wt0), tile_ws(generator, wt1)], axis=0))
        a, b = tf.split(images, 2, axis=0)
        return tf.cast(distance(a, b), tf.float32) / (eps * eps)

    out = []
    bar = keras.utils.Progbar(num_samples, unit_name="pair") if progress else None
    for start in range(0, num_samples, batch_size):
        stop = min(start + batch_size, num_samples)
        c = None if classes is None else tf.one_hot(classes[start:stop], generator.num_classes)
        out.append(step(z[start:stop, 0], z[start:stop, 1], c).numpy().astype(np.float64))
        if bar is not None:
            bar.update(stop)
    distances = np.concatenate(out)
    if not np.all(np.isfinite(distances)):
        raise FloatingPointError(f"{int(np.sum(~np.isfinite(distances)))} path lengths are NaN/Inf; the generator "
                                 "or the distance produced non-finite values")
    ppl, low, high, keep = filtered_mean(distances)
    result = {"ppl": ppl, "n": int(num_samples), "n_kept": int(np.sum(keep)), "low": low, "high": high,
              "percentiles": [LOW_PERCENTILE, HIGH_PERCENTILE], "epsilon": eps, "space": "w", "sampling": "end",
              "seed": int(seed), "labels": "uniform random classes" if generator.num_classes and labels is None
              else ("given" if generator.num_classes else None)}
    if bootstrap and bootstrap >= 2:
        ci = bootstrap_ci(np.mean, distances[keep], resamples=int(bootstrap), seed=int(seed))
        result.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], confidence=ci["confidence"],
                      resamples=ci["resamples"])
    if return_distances:
        result["distances"] = distances
    return result
