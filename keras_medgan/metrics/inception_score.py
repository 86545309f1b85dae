"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs", Sec. 4).

``IS = exp(E_x KL(p(y|x) || p(y)))``, computed on ``splits`` disjoint splits and reported as mean and
standard deviation, like the reference ``inception_score.py`` of OpenAI's improved-gan code and TF-GAN's
``classifier_score_from_logits``. DermGAN (Sec. 4) notes why it is a poor fit for medical images: it
assumes the ImageNet classes; with ``classifier:PATH`` features it uses the domain classifier's classes.
"""

from __future__ import annotations

import numpy as np


def inception_score(probs, splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """Inception Score of class-probability rows ``probs [n, num_classes]``.

    Args:
        probs: array. Softmax outputs, one row per generated image; rows are renormalised to sum to 1.
        splits: int. Disjoint consecutive splits (reference code: 10).
        eps: float. Guards log(0).

    Returns:
        ``(mean, std)`` of the per-split scores (std with ddof=0, as the reference code).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probs must be [num_images, num_classes]. Received shape {p.shape}.")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite and non-negative (softmax outputs, not logits)")
    if not 1 <= splits <= p.shape[0]:
        raise ValueError(f"splits must be between 1 and the number of images ({p.shape[0]}). Received {splits}.")
    p = p / p.sum(axis=1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part + eps) - np.log(marginal + eps)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
