"""Kernel Inception Distance (KID): the unbiased MMD^2 with a cubic polynomial kernel.

Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4 / App. (the KID of TF-GAN's
``kernel_classifier_distance`` and of StyleGAN2-ADA's ``metrics/kernel_inception_distance.py``):
``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` samples
drawn without replacement from each set. Unlike FID it is unbiased, so its expectation is 0 when both
sets come from one distribution and small samples can be compared.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x, y, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> np.ndarray:
    """``(gamma x.y + coef0)^degree`` with ``gamma = 1 / d`` by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(k_xx, k_yy, k_xy) -> float:
    """Unbiased MMD^2 from kernel matrices (Gretton et al. 2012, Lemma 6): diagonals of k_xx and k_yy excluded."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples in each set")
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kid_subset_values(a, b, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> np.ndarray:
    """The unbiased MMD^2 on each of ``subsets`` random subsets (without replacement) of ``subset_size`` samples
    from each set; ``kernel_inception_distance`` is their mean and std."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be [n, d] with the same d. Received {a.shape} and {b.shape}.")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1. Received {subsets}.")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set. Received {a.shape[0]} and {b.shape[0]}.")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    return values


def kernel_inception_distance(a, b, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID between feature sets ``a`` and ``b``: (mean, std) of the unbiased MMD^2 over random subsets.

    Args:
        a, b: arrays ``[n, d]``.
        subsets: int. Number of random subsets (Bińkowski et al. and StyleGAN2-ADA: 100).
        subset_size: int. Samples per subset and set (StyleGAN2-ADA: 1000); clipped to the smaller set.
        seed: int. Subset sampling seed.

    Returns:
        ``(mean, std)`` over the subsets (std with ddof=0; 0 when ``subsets == 1``).
    """
    values = kid_subset_values(a, b, subsets, subset_size, seed)
    return float(values.mean()), float(values.std())
