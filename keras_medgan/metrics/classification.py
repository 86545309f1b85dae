"""Classifier measures on numpy arrays: ROC AUC (binary and one-vs-rest) with bootstrap intervals, and the
"detection rate" of generated images (paper 001, Table III).

Pure float64 functions; no TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from keras_medgan.metrics.intervals import bootstrap_ci


def roc_auc(positive, scores) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2.

    Computed as the Mann-Whitney U statistic from mid-ranks, which equals the trapezoidal area under the
    ROC curve.

    Args:
        positive: ``[n]`` bool or {0, 1}. True for the positive class.
        scores: ``[n]`` float. Higher means more likely positive.

    Returns:
        float in [0, 1], or NaN when ``positive`` holds only one class (the AUC is undefined).
    """
    positive = np.asarray(positive).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if positive.shape != scores.shape:
        raise ValueError(f"positive and scores need the same length. Received: {positive.shape} and {scores.shape}")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def one_vs_rest_auc(labels, probs, class_names: Sequence[str] | None = None, bootstrap: int = 0,
                    seed: int = 0) -> dict:
    """Per-class one-vs-rest ROC AUC of class probabilities, with percentile-bootstrap 95% intervals.

    Args:
        labels: ``[n]`` int class indices (rows with a negative label are left out).
        probs: ``[n, K]`` class probabilities (or any per-class scores).
        class_names: K names; default ``"0" .. "K-1"``.
        bootstrap: int. Resamples of the test images for the intervals (0 = no intervals). Resamples that
            contain a single class for some column are dropped for that column.
        seed: int.

    Returns:
        ``{name: {"auc", "ci_low", "ci_high", "positives", "negatives"}}`` plus ``"macro"`` (mean of the defined
        per-class AUCs, with its own interval from the same resamples).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be [n, K] with one row per label. Received: probs {probs.shape}, "
                         f"labels {labels.shape}")
    keep = labels >= 0
    labels, probs = labels[keep], probs[keep]
    k = probs.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for {k} probability columns")

    def aucs(idx):
        return np.array([roc_auc(labels[idx] == c, probs[idx, c]) for c in range(k)])

    point = aucs(np.arange(len(labels)))
    draws = np.empty((0, k))
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = np.array([aucs(rng.integers(0, len(labels), len(labels))) for _ in range(bootstrap)])

    def interval(values):
        values = values[np.isfinite(values)]
        if len(values) < 2:
            return None, None
        return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))

    out = {}
    for c, name in enumerate(names):
        low, high = interval(draws[:, c]) if bootstrap else (None, None)
        out[name] = {"auc": float(point[c]), "ci_low": low, "ci_high": high,
                     "positives": int((labels == c).sum()), "negatives": int((labels != c).sum())}
    macro_low, macro_high = (interval(np.nanmean(draws, axis=1)) if bootstrap and len(draws) else (None, None))
    out["macro"] = {"auc": float(np.nanmean(point)) if np.isfinite(point).any() else float("nan"),
                    "ci_low": macro_low, "ci_high": macro_high, "positives": len(labels), "negatives": 0}
    return out


def detection_rates(intended, probs, class_names: Sequence[str], detector_classes: Sequence[str] | None = None,
                    bootstrap: int = 0, seed: int = 0) -> dict:
    """Paper 001's Table III: how often a real-data classifier assigns generated images to their intended class.

    Args:
        intended: ``[n]`` int. The class each image was generated for (index into ``class_names``).
        probs: ``[n, K']`` the detector's class probabilities.
        class_names: names of the generator's classes.
        detector_classes: the detector's K' class names (default: ``class_names``); intended classes are
            matched to the detector's columns by name, so a detector trained on all of a dataset's classes can
            judge a generator trained on a subset.
        bootstrap: int. Resamples for the detection-rate interval (0 = none).
        seed: int.

    Returns:
        ``{class name: {"n", "detection_rate", "ci_low", "ci_high", "mean_confidence",
        "mean_confidence_detected", "most_confused_with"}}`` where ``detection_rate`` is the share whose argmax is
        the intended class ("Successful Detection"), ``mean_confidence`` the mean probability of the intended
        class over all images, and ``mean_confidence_detected`` the mean top probability over the detected
        images (our reading of Table III's "Average Accuracy": 99.90% at 29.73% detection cannot be a mean over
        all images). Classes with no images are left out.
    """
    intended = np.asarray(intended).astype(np.int64).ravel()
    probs = np.asarray(probs, np.float64)
    detector_classes = list(detector_classes) if detector_classes is not None else list(class_names)
    missing = [c for c in class_names if c not in detector_classes]
    if missing:
        raise ValueError(f"the detector does not know the classes {missing}; its classes are {detector_classes}")
    if probs.ndim != 2 or probs.shape[1] != len(detector_classes) or len(probs) != len(intended):
        raise ValueError(f"probs must be [n, {len(detector_classes)}] with one row per image. Received: "
                         f"{probs.shape} for {len(intended)} images")
    column = np.array([detector_classes.index(c) for c in class_names])
    predicted = probs.argmax(axis=1)
    out = {}
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(intended == c)
        if not len(rows):
            continue
        hit = predicted[rows] == column[c]
        others = predicted[rows][~hit]
        confused = None
        if len(others):
            values, counts = np.unique(others, return_counts=True)
            confused = detector_classes[int(values[counts.argmax()])]
        row = {"n": int(len(rows)), "detection_rate": float(hit.mean()),
               "mean_confidence": float(probs[rows, column[c]].mean()),
               "mean_confidence_detected": float(probs[rows[hit]].max(axis=1).mean()) if hit.any() else None,
               "most_confused_with": confused, "ci_low": None, "ci_high": None}
        if bootstrap:
            ci = bootstrap_ci(lambda h: float(np.mean(h)), hit.astype(np.float64), resamples=bootstrap, seed=seed)
            row["ci_low"], row["ci_high"] = ci["ci_low"], ci["ci_high"]
        out[name] = row
    return out
