"""Confidence intervals and breakdowns for set-level metrics.

- ``subset_trials``: the metric on ``trials`` random subsets of both sets, reported as mean ± 1.96 std —
  DermGAN Table 1 (Sec. 4, "confidence intervals are for 50 trials").
- ``bootstrap_ci``: percentile bootstrap (Efron & Tibshirani 1993, Ch. 13) resampling both sets with
  replacement; the interval DermGAN uses for its F1 scores, applied to every metric here. For FID the
  bootstrap estimate is biased upwards (duplicated samples shrink the covariance), so the point value is
  the full-sample FID and the interval shows its sampling spread, not an unbiased correction.
- ``grouped``: the metric per class or per Fitzpatrick type, on the samples of that group in both sets.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Z_95 = 1.959963984540054


def subset_trials(metric_fn: Callable, real, fake, trials: int = 50, subset_fraction: float = 0.8,
                  seed: int = 0) -> dict:
    """Mean ± 1.96 std of ``metric_fn(real_subset, fake_subset)`` over random subsets without replacement.

    Args:
        metric_fn: callable ``(real, fake) -> float``.
        real, fake: arrays indexed on their first axis.
        trials: int. Number of subsets (DermGAN: 50).
        subset_fraction: float in (0, 1]. Share of each set drawn per trial (1 = the whole sets, which
            makes every trial identical; DermGAN does not publish its value, 0.8 is ours).
        seed: int.

    Returns:
        ``{"mean", "std", "ci_low", "ci_high", "trials", "subset_fraction", "values"}``.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1. Received {trials}.")
    if not 0.0 < subset_fraction <= 1.0:
        raise ValueError(f"subset_fraction must be in (0, 1]. Received {subset_fraction}.")
    real, fake = np.asarray(real), np.asarray(fake)
    rng = np.random.default_rng(seed)
    n_real = max(2, int(round(subset_fraction * len(real))))
    n_fake = max(2, int(round(subset_fraction * len(fake))))
    values = []
    for _ in range(trials):
        r = real[np.sort(rng.choice(len(real), n_real, replace=False))]
        f = fake[np.sort(rng.choice(len(fake), n_fake, replace=False))]
        values.append(float(metric_fn(r, f)))
    values = np.asarray(values)
    mean, std = float(values.mean()), float(values.std(ddof=1)) if trials > 1 else 0.0
    return {"mean": mean, "std": std, "ci_low": mean - Z_95 * std, "ci_high": mean + Z_95 * std,
            "trials": int(trials), "subset_fraction": float(subset_fraction), "values": values.tolist()}


def bootstrap_ci(metric_fn: Callable, *arrays, resamples: int = 200, confidence: float = 0.95,
                 seed: int = 0) -> dict:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, each array resampled independently.

    Args:
        metric_fn: callable taking one resampled array per input array and returning a float.
        *arrays: one or more arrays indexed on their first axis (e.g. real and fake features).
        resamples: int. Bootstrap resamples.
        confidence: float. Interval mass (0.95 -> 2.5th and 97.5th percentiles).
        seed: int.

    Returns:
        ``{"value", "ci_low", "ci_high", "confidence", "resamples"}``; ``value`` is the metric on the full arrays.
    """
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2. Received {resamples}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1). Received {confidence}.")
    arrays = [np.asarray(a) for a in arrays]
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        stats[i] = metric_fn(*(a[rng.integers(0, len(a), len(a))] for a in arrays))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return {"value": float(metric_fn(*arrays)), "ci_low": float(low), "ci_high": float(high),
            "confidence": float(confidence), "resamples": int(resamples)}


def grouped(metric_fn: Callable, real, fake, real_groups, fake_groups, names=None, min_samples: int = 2) -> dict:
    """``metric_fn`` on each group present in both sets, keyed by group name.

    Groups with fewer than ``min_samples`` in either set are reported with ``value`` None and the counts, so a
    missing row is visible instead of silently absent.
    """
    real, fake = np.asarray(real), np.asarray(fake)
    real_groups, fake_groups = np.asarray(real_groups), np.asarray(fake_groups)
    if len(real_groups) != len(real) or len(fake_groups) != len(fake):
        raise ValueError("each sample needs one group id: len(real_groups) must equal len(real) and "
                         "len(fake_groups) len(fake)")
    out = {}
    for g in sorted(set(real_groups.tolist()) | set(fake_groups.tolist())):
        r, f = real[real_groups == g], fake[fake_groups == g]
        key = names[g] if names is not None and 0 <= int(g) < len(names) else str(g)
        value = float(metric_fn(r, f)) if min(len(r), len(f)) >= min_samples else None
        out[key] = {"value": value, "num_real": int(len(r)), "num_fake": int(len(f))}
    return out


def select_checkpoint(scores, tolerance: float = 0.3) -> int:
    """The checkpoint to keep: the latest step whose FID is within ``tolerance`` of the best.

    The critical review's rule (Sec. 3.2: "preferring later checkpoints (longer training) for similar FID
    (< 0.3 difference)").

    Args:
        scores: mapping or iterable of ``(step, fid)``.
        tolerance: float. FIDs within this of the minimum count as equal.

    Returns:
        The chosen step.
    """
    items = sorted(dict(scores).items())
    if not items:
        raise ValueError("select_checkpoint needs at least one (step, fid) pair")
    finite = [(s, v) for s, v in items if np.isfinite(v)]
    if not finite:
        raise ValueError("every checkpoint's FID is NaN or Inf; none can be selected")
    best = min(v for _, v in finite)
    return max(s for s, v in finite if v - best < tolerance)
