"""Statistics of the augmentation / anonymization study: classifier measures with bootstrap intervals, and the
paired comparisons of each arm with its baseline.

The critical review (Bissoto et al. 2021, Sec. 2) lists "ignoring performance fluctuations, e.g. by performing a
single run, or by failing to report the deviation statistics" among the flaws that make GAN augmentation look
better than it is. Its protocol (Sec. 3.1, "Analyses") trains every configuration ten times, redrawing the real
images; here that spread is tested, not only plotted:

- ``paired_t_test``: replicate ``r`` of an arm against replicate ``r`` of its baseline (same real subset, same
  initial weights), the paired t-test across replicates; equals ``scipy.stats.ttest_rel``.
- ``paired_bootstrap``: the same test images resampled for both models (percentile bootstrap of the difference,
  Efron & Tibshirani 1993, Ch. 13); it measures the test-set sampling spread that the t-test ignores. Its interval
  equals ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` with the same generator.
- ``holm``: Holm's step-down correction (Holm 1979) across the arms compared with a baseline on one test set.
- ``classification_report``: AUC (binary or one-vs-rest macro), accuracy (top-1), balanced accuracy, per-class
  precision / recall / F1, each with percentile-bootstrap 95% intervals over the test images (DermGAN, Sec. 5,
  reports its per-class F1 this way), and the same measures per Fitzpatrick type.

Pure float64 numpy / scipy; no TensorFlow.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from keras_medgan.metrics.classification import roc_auc

SCALAR_MEASURES = ("auc", "accuracy", "balanced_accuracy")


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, n]`` bootstrap row indices, drawn exactly as ``scipy.stats.bootstrap`` draws them."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_resampling(resamples: int, confidence: float) -> None:
    if not (isinstance(resamples, (int, np.integer)) and resamples >= 2):
        raise ValueError(f"`resamples` must be an integer >= 2. Received: resamples={resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")


def bootstrap_interval(statistic: Callable[..., float], *samples, resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict:
    """Percentile-bootstrap interval of ``statistic(*samples)``, the samples resampled together (paired rows).

    Args:
        statistic: callable taking one array per sample (rows resampled with the same indices) -> float.
        *samples: arrays with the same length on their first axis (e.g. labels and probabilities).
        resamples: int. Bootstrap resamples (>= 2).
        confidence: float. Interval mass; 0.95 gives the 2.5th and 97.5th percentiles.
        seed: int. Seed of ``numpy.random.default_rng``.

    Returns:
        ``{"value", "ci_low", "ci_high", "confidence", "resamples"}``; ``value`` is the statistic on the full
        samples. Resamples where the statistic is undefined (NaN, e.g. an AUC with one class) are left out.

    Example:

    >>> bootstrap_interval(np.mean, np.array([1.0, 2.0, 3.0, 4.0]), resamples=2000)["ci_low"]
    """
    _check_resampling(resamples, confidence)
    samples = [np.asarray(s) for s in samples]
    if not samples:
        raise ValueError("bootstrap_interval needs at least one sample")
    n = len(samples[0])
    if any(len(s) != n for s in samples):
        raise ValueError(f"paired samples need the same length. Received lengths {[len(s) for s in samples]}")
    draws = np.array([statistic(*(s[i] for s in samples)) for i in _indices(n, resamples, seed)], np.float64)
    low, high = _percentiles(draws, confidence)
    return {"value": float(statistic(*samples)), "ci_low": low, "ci_high": high, "confidence": float(confidence),
            "resamples": int(resamples)}


# ---------------------------------------------------------------------------------------------- measures


def _check_predictions(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be [n, num_classes] with one row per label. Received: probs {probs.shape}, "
                         f"labels {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {probs.shape[1]}). Received values from "
                         f"{labels.min()} to {labels.max()}")
    return labels, probs


def auc(labels, probs) -> float:
    """Binary ROC AUC of class 1's probability for two classes; else the macro mean of the one-vs-rest AUCs of
    the classes present (the critical review's metric, Sec. 3.1 "Analyses": melanoma vs benign)."""
    labels, probs = _check_predictions(labels, probs)
    if probs.shape[1] == 2:
        return roc_auc(labels == 1, probs[:, 1])
    values = [roc_auc(labels == c, probs[:, c]) for c in range(probs.shape[1])]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def confusion(labels, predicted, num_classes: int) -> np.ndarray:
    """``[K, K]`` counts, rows = true class, columns = predicted class."""
    return np.bincount(np.asarray(labels) * num_classes + np.asarray(predicted),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(labels, probs) -> dict:
    """``{"precision", "recall", "f1", "support"}`` arrays over classes from the argmax predictions.

    A class never predicted has precision 0, a class absent from the labels recall NaN (and F1 NaN), so an
    undefined value is never shown as a score.
    """
    labels, probs = _check_predictions(labels, probs)
    k = probs.shape[1]
    cm = confusion(labels, probs.argmax(axis=1), k).astype(np.float64)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        f1 = np.where(support > 0, np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                                            0.0), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def accuracy(labels, probs) -> float:
    """Top-1 accuracy."""
    labels, probs = _check_predictions(labels, probs)
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def balanced_accuracy(labels, probs) -> float:
    """Mean recall over the classes present in ``labels``."""
    recall = per_class_scores(labels, probs)["recall"]
    recall = recall[np.isfinite(recall)]
    return float(recall.mean()) if len(recall) else float("nan")


MEASURES = {"auc": auc, "accuracy": accuracy, "balanced_accuracy": balanced_accuracy}


def _measures(labels, probs, class_names) -> dict:
    out = {name: fn(labels, probs) for name, fn in MEASURES.items()}
    scores = per_class_scores(labels, probs)
    out["per_class"] = {name: {key: (None if not np.isfinite(scores[key][c]) else float(scores[key][c]))
                               for key in ("precision", "recall", "f1")} | {"support": int(scores["support"][c])}
                        for c, name in enumerate(class_names)}
    return out


def classification_report(labels, probs, class_names: Sequence[str], fitzpatrick=None, bootstrap: int = 0,
                          confidence: float = 0.95, seed: int = 0, min_group: int = 10) -> dict:
    """Every measure of one model on one test set, with bootstrap intervals and a Fitzpatrick breakdown.

    Args:
        labels: ``[n]`` int class indices.
        probs: ``[n, K]`` class probabilities (after test-time augmentation, if any).
        class_names: K names.
        fitzpatrick: optional ``[n]`` int skin types 1..6 (0 = unknown); when given and not all unknown, the
            measures are repeated per type with at least ``min_group`` images.
        bootstrap: int. Resamples of the test images for 95% intervals (0 = none). DermGAN Sec. 5 reports
            bootstrap intervals for its per-class F1; we give them for every measure.
        confidence, seed: see ``bootstrap_interval``.
        min_group: int. Smallest Fitzpatrick group reported (smaller groups are listed with their size only).

    Returns:
        ``{"n", "auc", "accuracy", "balanced_accuracy", "per_class": {name: {precision, recall, f1, support}},
        "ci": {measure: [low, high], "f1/<class>": [low, high]}, "fitzpatrick": {"I".."VI": {...}}}``.

    Example:

    >>> report = classification_report(labels, probs, ["benign", "melanoma"], bootstrap=1000)
    >>> report["auc"], report["ci"]["auc"]
    """
    labels, probs = _check_predictions(labels, probs)
    class_names = list(class_names)
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"class_names has {len(class_names)} names for {probs.shape[1]} probability columns")
    out = {"n": int(len(labels)), **_measures(labels, probs, class_names)}
    if bootstrap:
        _check_resampling(bootstrap, confidence)
        idx = _indices(len(labels), bootstrap, seed)
        draws = {m: np.empty(bootstrap) for m in MEASURES}
        f1 = np.empty((bootstrap, len(class_names)))
        for b, i in enumerate(idx):
            lab, pr = labels[i], probs[i]
            for m, fn in MEASURES.items():
                draws[m][b] = fn(lab, pr)
            f1[b] = per_class_scores(lab, pr)["f1"]
        out["ci"] = {m: list(_percentiles(v, confidence)) for m, v in draws.items()}
        out["ci"].update({f"f1/{name}": list(_percentiles(f1[:, c], confidence))
                          for c, name in enumerate(class_names)})
    if fitzpatrick is not None:
        fitzpatrick = np.asarray(fitzpatrick).astype(np.int64).ravel()
        if len(fitzpatrick) != len(labels):
            raise ValueError(f"fitzpatrick needs one skin type per label. Received {len(fitzpatrick)} for "
                             f"{len(labels)} labels")
        groups = {}
        for t in sorted(set(fitzpatrick.tolist()) - {0}):
            rows = fitzpatrick == t
            key = FITZPATRICK_NAMES[t - 1] if 1 <= t <= 6 else str(t)
            if rows.sum() < min_group:
                groups[key] = {"n": int(rows.sum())}
                continue
            groups[key] = {"n": int(rows.sum()), **{m: fn(labels[rows], probs[rows]) for m, fn in MEASURES.items()}}
        if groups:
            out["fitzpatrick"] = groups
    return out


FITZPATRICK_NAMES = ("I", "II", "III", "IV", "V", "VI")


# ---------------------------------------------------------------------------------------------- comparisons


def paired_t_test(treatment, baseline, confidence: float = 0.95) -> dict:
    """Paired t-test of ``treatment - baseline`` across replicates (two-sided), as ``scipy.stats.ttest_rel``.

    Replicate ``r`` of both arms shares its real-image subset and initial weights (critical review Sec. 3.2:
    "in each one, we vary the real images, but keep the synthetics the same"), so the pairs are matched.

    Args:
        treatment, baseline: ``[R]`` one value per replicate, in replicate order.
        confidence: float. Mass of the interval of the mean difference.

    Returns:
        ``{"n", "mean_difference", "statistic", "df", "p_value", "ci_low", "ci_high"}``. With fewer than two
        pairs every field but ``n`` and ``mean_difference`` is NaN. With zero spread in the differences the
        test is degenerate: p = 1 for a zero difference, 0 otherwise (scipy returns NaN / inf there).
    """
    a, b = np.asarray(treatment, np.float64).ravel(), np.asarray(baseline, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_t_test needs one treatment value per baseline value. Received {a.shape} and "
                         f"{b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    nan = float("nan")
    out = {"n": int(n), "mean_difference": float(d.mean()) if n else nan, "statistic": nan, "df": nan,
           "p_value": nan, "ci_low": nan, "ci_high": nan}
    if n < 2:
        return out
    mean, df = float(d.mean()), n - 1
    se = float(d.std(ddof=1)) / np.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2.0, df)) * se
    out.update(df=int(df), ci_low=mean - half, ci_high=mean + half)
    if se == 0.0:
        out.update(statistic=0.0 if mean == 0 else float(np.sign(mean) * np.inf), p_value=1.0 if mean == 0 else 0.0)
        return out
    t = mean / se
    out.update(statistic=float(t), p_value=float(2.0 * sps.t.sf(abs(t), df)))
    return out


def paired_bootstrap(metric: Callable, labels, treatment_probs: Sequence, baseline_probs: Sequence,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap of ``mean_r metric(treatment_r) - mean_r metric(baseline_r)`` on the same test images.

    Every resample draws the test images once and scores every replicate of both arms on them, so the
    difference carries the test-set sampling spread (the t-test carries the training spread).

    Args:
        metric: callable ``(labels, probs) -> float``, e.g. ``auc``.
        labels: ``[n]`` test labels.
        treatment_probs, baseline_probs: sequences of ``[n, K]`` probabilities, one per replicate.
        resamples, confidence, seed: see ``bootstrap_interval``.

    Returns:
        ``{"difference", "ci_low", "ci_high", "p_value", "resamples"}``; ``p_value`` is two-sided: twice the
        smaller share of resampled differences at or beyond zero on either side (capped at 1).
    """
    _check_resampling(resamples, confidence)
    labels = np.asarray(labels)
    treatment = [np.asarray(p, np.float64) for p in treatment_probs]
    baseline = [np.asarray(p, np.float64) for p in baseline_probs]
    if not treatment or not baseline:
        raise ValueError("paired_bootstrap needs at least one replicate of each arm")
    if any(len(p) != len(labels) for p in treatment + baseline):
        raise ValueError("every probability array must have one row per test label (the same test images)")

    def difference(idx):
        lab = labels[idx]
        return (np.mean([metric(lab, p[idx]) for p in treatment]) - np.mean([metric(lab, p[idx]) for p in baseline]))

    draws = np.array([difference(i) for i in _indices(len(labels), resamples, seed)])
    finite = draws[np.isfinite(draws)]
    low, high = _percentiles(draws, confidence)
    p = float(min(1.0, 2.0 * min((finite <= 0).mean(), (finite >= 0).mean()))) if len(finite) else float("nan")
    return {"difference": float(difference(np.arange(len(labels)))), "ci_low": low, "ci_high": high,
            "p_value": p, "resamples": int(resamples)}


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), family-wise error across the given tests.

    ``p_(i)`` in ascending order is multiplied by ``m - i`` (i from 0), made non-decreasing, capped at 1.
    NaN p-values (tests that could not run) stay NaN and do not count in ``m``.

    Example:

    >>> holm([0.01, 0.04, 0.03, 0.005])
    array([0.03, 0.06, 0.06, 0.02])
    """
    p = np.asarray(p_values, np.float64).ravel()
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if not len(finite):
        return out
    if (p[finite] < 0).any() or (p[finite] > 1).any():
        raise ValueError(f"p-values must lie in [0, 1]. Received: {p.tolist()}")
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def mean_f1_interval(labels, probs_list: Sequence, resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict:
    """Per-class F1 averaged over replicates, with a percentile-bootstrap interval over the test images.

    DermGAN's Fig. 8 (per-class F1, baseline against augmented, with bootstrap intervals) for models trained
    several times: every resample scores all replicates on the same resampled test images.

    Returns:
        ``{"f1": [K], "ci_low": [K], "ci_high": [K]}`` (NaN for a class absent from the test labels).
    """
    _check_resampling(resamples, confidence)
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs_list = [np.asarray(p, np.float64) for p in probs_list]
    if not probs_list:
        raise ValueError("mean_f1_interval needs at least one replicate's probabilities")

    def mean_f1(idx):
        return np.mean([per_class_scores(labels[idx], p[idx])["f1"] for p in probs_list], axis=0)

    draws = np.array([mean_f1(i) for i in _indices(len(labels), resamples, seed)])
    bounds = [_percentiles(draws[:, c], confidence) for c in range(draws.shape[1])]
    return {"f1": mean_f1(np.arange(len(labels))).tolist(), "ci_low": [b[0] for b in bounds],
            "ci_high": [b[1] for b in bounds]}
