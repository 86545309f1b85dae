"""Fréchet distance between two sets of features (FID when the features are Inception-v3 pool3).

Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium":
``FD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``. Matches TF-GAN's
``frechet_classifier_distance_from_activations`` and pytorch-fid's ``calculate_frechet_distance``
(unbiased covariances, ddof=1), computed in float64.

The trace of the matrix square root is taken without forming a non-symmetric product:
``tr (S_a S_b)^{1/2} = tr (S_a^{1/2} S_b S_a^{1/2})^{1/2}``, a symmetric PSD matrix whose eigenvalues are
real and non-negative up to rounding. When there are fewer samples than feature dimensions (the usual
case for per-class FID on 2048-d features) the same trace is the nuclear norm of the centred cross-Gram
matrix ``X_a X_b^T / sqrt((n_a - 1)(n_b - 1))``, which costs O(n_a n_b d) instead of O(d^3).
"""

from __future__ import annotations

import numpy as np


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_samples, feature_dim]. Received shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance. Received {x.shape[0]}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf values; check the images and the feature extractor.")
    return x


def sqrtm_psd(matrix) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigendecomposition; negative
    eigenvalues from rounding are clipped to 0)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    matrix = (matrix + matrix.T) / 2.0
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma_a, sigma_b) -> float:
    """``tr((sigma_a sigma_b)^{1/2})`` for symmetric PSD covariances."""
    root_a = sqrtm_psd(sigma_a)
    inner = root_a @ np.asarray(sigma_b, dtype=np.float64) @ root_a
    values = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance_from_moments(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Fréchet distance between the Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise ValueError(f"mismatched moments: mu {mu_a.shape} vs {mu_b.shape}, sigma {sigma_a.shape} vs "
                         f"{sigma_b.shape}")
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sigma_a, sigma_b)
    return float(max(value, 0.0))


def feature_moments(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1) of features ``[n, d]``, float64."""
    x = _as_features(x, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def frechet_distance(a, b) -> float:
    """Fréchet distance between feature sets ``a [n_a, d]`` and ``b [n_b, d]`` (float64).

    Returns 0 (up to rounding) for identical sets; grows with the squared mean shift and with any
    difference of covariances.
    """
    a, b = _as_features(a, "a"), _as_features(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature dimension. Received {a.shape[1]} and {b.shape[1]}.")
    n_a, n_b, d = a.shape[0], b.shape[0], a.shape[1]
    if min(n_a, n_b) >= d:
        return frechet_distance_from_moments(*feature_moments(a), *feature_moments(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    trace_a = np.sum(xa * xa) / (n_a - 1)
    trace_b = np.sum(xb * xb) / (n_b - 1)
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt((n_a - 1) * (n_b - 1))
    diff = mu_a - mu_b
    return float(max(diff @ diff + trace_a + trace_b - 2.0 * cross, 0.0))
