"""Precision, recall, density and coverage of generated features against real features.

- Precision and recall: Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
  generative models": a generated sample counts as precise when it falls inside the k-NN ball of some
  real sample; a real sample is recalled when it falls inside the k-NN ball of some generated sample.
- Density and coverage: Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative
  models": density counts how many real k-NN balls contain each generated sample (divided by k);
  coverage is the fraction of real samples whose k-NN ball contains at least one generated sample.

Matches the reference implementation of Naeem et al. (the ``prdc`` package, ``compute_prdc``): Euclidean
distances, the k-th neighbour radius excluding the point itself, strict ``<`` comparisons.
"""

from __future__ import annotations

import numpy as np


def pairwise_distances(x, y) -> np.ndarray:
    """Euclidean distances ``[len(x), len(y)]`` in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.clip(sq, 0.0, None))


def knn_radii(x, k: int) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    d = pairwise_distances(x, x)
    return np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)


def prdc_per_sample(real, fake, k: int = 5) -> dict:
    """The per-sample terms whose means are the four metrics.

    Returns:
        ``precision`` (per fake: inside some real k-NN ball), ``density`` (per fake: number of real balls it is
        in, divided by k), ``recall`` (per real: inside some fake k-NN ball) and ``coverage`` (per real: its own
        ball holds a fake), as float64 arrays. Bootstrapping these means with the other set held fixed gives
        intervals without duplicating points inside the k-NN radii.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must be [n, d] with the same d. Received {real.shape} and {fake.shape}.")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must be >= 1 and smaller than both sample counts ({real.shape[0]} real, "
                         f"{fake.shape[0]} fake). Received k={k}.")
    real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)
    d = pairwise_distances(real, fake)  # [n_real, n_fake]
    inside_real = d < real_radii[:, None]
    return {
        "precision": inside_real.any(axis=0).astype(np.float64),
        "recall": (d < fake_radii[None, :]).any(axis=1).astype(np.float64),
        "density": inside_real.sum(axis=0) / k,
        "coverage": (d.min(axis=1) < real_radii).astype(np.float64),
    }


def precision_recall_density_coverage(real, fake, k: int = 5) -> dict:
    """``{"precision", "recall", "density", "coverage"}`` of ``fake`` against ``real``.

    Args:
        real, fake: arrays ``[n, d]`` of features.
        k: int. Neighbourhood size (Naeem et al. recommend 5; Kynkäänniemi et al. use 3).
    """
    return {name: float(np.mean(values)) for name, values in prdc_per_sample(real, fake, k).items()}
