"""Golden values for the study statistics: they must agree with scipy on the same inputs."""

import numpy as np
import pytest
from scipy import stats as sps

from keras_medgan.evaluation import statistics
from keras_medgan.metrics.classification import roc_auc

TREATMENT = np.array([0.812, 0.795, 0.830, 0.801, 0.822, 0.808, 0.790, 0.826, 0.815, 0.803])
BASELINE = np.array([0.805, 0.799, 0.818, 0.790, 0.820, 0.801, 0.794, 0.812, 0.806, 0.800])


def test_paired_t_test_matches_scipy_ttest_rel():
    ours = statistics.paired_t_test(TREATMENT, BASELINE)
    ref = sps.ttest_rel(TREATMENT, BASELINE)
    ci = ref.confidence_interval(0.95)
    assert ours["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours["df"] == 9 and ours["n"] == 10
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert ours["mean_difference"] == pytest.approx(0.0057, abs=1e-12)


def test_paired_t_test_edge_cases():
    one = statistics.paired_t_test([0.8], [0.7])
    assert one["n"] == 1 and one["mean_difference"] == pytest.approx(0.1) and np.isnan(one["p_value"])
    same = statistics.paired_t_test([0.8, 0.9], [0.8, 0.9])
    assert same["p_value"] == 1.0 and same["statistic"] == 0.0
    shifted = statistics.paired_t_test([1.5, 2.5], [1.0, 2.0])  # every difference exactly 0.5
    assert shifted["p_value"] == 0.0 and shifted["statistic"] == np.inf
    with pytest.raises(ValueError, match="one treatment value per baseline value"):
        statistics.paired_t_test([1, 2, 3], [1, 2])


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(3).gamma(2.0, size=40)
    ours = statistics.bootstrap_interval(np.mean, x, resamples=2000, seed=7)
    ref = sps.bootstrap((x,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(7),
                        vectorized=False)
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert ours["value"] == pytest.approx(x.mean())


def test_bootstrap_interval_of_a_paired_statistic_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = labels * 0.8 + rng.normal(0, 0.6, 60)
    ours = statistics.bootstrap_interval(lambda y, s: roc_auc(y, s), labels, scores, resamples=500, seed=1)
    ref = sps.bootstrap((labels, scores), lambda y, s: roc_auc(y, s), paired=True, vectorized=False,
                        n_resamples=500, method="percentile", rng=np.random.default_rng(1))
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)


def _probs(labels, strength, seed, k=2):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(labels), k))
    logits[np.arange(len(labels)), labels] += strength
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_paired_bootstrap_on_the_same_test_set_matches_scipy_and_finds_a_real_gain():
    labels = np.random.default_rng(5).integers(0, 2, 80)
    better, worse = _probs(labels, 2.5, 1), _probs(labels, 0.5, 2)
    ours = statistics.paired_bootstrap(statistics.auc, labels, [better], [worse], resamples=400, seed=3)

    def diff(y, a, b):
        return statistics.auc(y, np.stack([1 - a, a], 1)) - statistics.auc(y, np.stack([1 - b, b], 1))

    ref = sps.bootstrap((labels, better[:, 1], worse[:, 1]), diff, paired=True, vectorized=False, n_resamples=400,
                        method="percentile", rng=np.random.default_rng(3))
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert ours["difference"] == pytest.approx(diff(labels, better[:, 1], worse[:, 1]))
    assert ours["difference"] > 0.2 and ours["ci_low"] > 0 and ours["p_value"] < 0.01
    null = statistics.paired_bootstrap(statistics.auc, labels, [better], [better], resamples=200, seed=3)
    assert null["difference"] == 0.0 and null["p_value"] == 1.0


def test_paired_bootstrap_averages_replicates():
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    a = [_probs(labels, 1.0, s) for s in (1, 2, 3)]
    b = [_probs(labels, 1.0, s) for s in (4, 5)]
    out = statistics.paired_bootstrap(statistics.accuracy, labels, a, b, resamples=50)
    expected = np.mean([statistics.accuracy(labels, p) for p in a]) - np.mean([statistics.accuracy(labels, p)
                                                                               for p in b])
    assert out["difference"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="one row per test label"):
        statistics.paired_bootstrap(statistics.auc, labels, [a[0][:5]], b)


def test_holm_golden_values():
    np.testing.assert_allclose(statistics.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(statistics.holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    np.testing.assert_allclose(statistics.holm([0.6, 0.9]), [1.0, 1.0])
    assert statistics.holm([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        statistics.holm([1.5])


def test_measures_golden_values():
    labels = np.array([0, 0, 1, 1, 2, 2])
    # predictions: 0, 1, 1, 1, 0, 2
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.1, .7, .2], [.2, .5, .3], [.5, .2, .3], [.1, .2, .7]])
    scores = statistics.per_class_scores(labels, probs)
    np.testing.assert_allclose(scores["precision"], [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(scores["recall"], [1 / 2, 1.0, 1 / 2])
    np.testing.assert_allclose(scores["f1"], [0.5, 0.8, 2 / 3])
    assert statistics.accuracy(labels, probs) == pytest.approx(4 / 6)
    assert statistics.balanced_accuracy(labels, probs) == pytest.approx((0.5 + 1 + 0.5) / 3)
    ovr = [roc_auc(labels == c, probs[:, c]) for c in range(3)]
    assert statistics.auc(labels, probs) == pytest.approx(np.mean(ovr))
    binary = probs[:, :2] / probs[:, :2].sum(1, keepdims=True)
    binary_labels = np.array([0, 0, 1, 1, 1, 0])
    assert statistics.auc(binary_labels, binary) == pytest.approx(roc_auc(binary_labels == 1, binary[:, 1]))
    # a class absent from the labels has undefined recall / F1, never 0
    absent = statistics.per_class_scores([0, 0], np.array([[.9, .1], [.4, .6]]))
    assert np.isnan(absent["recall"][1]) and absent["precision"][1] == 0.0


def test_classification_report_intervals_and_fitzpatrick_breakdown():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    probs = _probs(labels, 1.5, 9, k=3)
    fitz = np.repeat([1, 5, 6, 0], 30)
    fitz[-25:] = 2  # 5 unknown, 25 of type II
    report = statistics.classification_report(labels, probs, ["a", "b", "c"], fitzpatrick=fitz, bootstrap=200,
                                              min_group=26)
    assert report["n"] == 120 and report["accuracy"] == pytest.approx(statistics.accuracy(labels, probs))
    for m in ("auc", "accuracy", "balanced_accuracy", "f1/a", "f1/c"):
        low, high = report["ci"][m]
        value = report[m] if "/" not in m else report["per_class"][m[3:]]["f1"]
        assert low <= value <= high, m
    assert set(report["fitzpatrick"]) == {"I", "II", "V", "VI"}
    assert report["fitzpatrick"]["II"] == {"n": 25}  # below min_group: size only
    rows = fitz == 5
    assert report["fitzpatrick"]["V"]["auc"] == pytest.approx(statistics.auc(labels[rows], probs[rows]))
    with pytest.raises(ValueError, match="class_names has 2 names for 3"):
        statistics.classification_report(labels, probs, ["a", "b"])
    with pytest.raises(ValueError, match=r"probs must be \[n, num_classes\]"):
        statistics.classification_report(labels[:5], probs, ["a", "b", "c"])


def test_mean_f1_interval_of_one_replicate_is_its_f1():
    labels = np.random.default_rng(1).integers(0, 2, 50)
    probs = _probs(labels, 1.0, 4)
    out = statistics.mean_f1_interval(labels, [probs], resamples=100)
    np.testing.assert_allclose(out["f1"], statistics.per_class_scores(labels, probs)["f1"])
    assert all(lo <= f <= hi for lo, f, hi in zip(out["ci_low"], out["f1"], out["ci_high"]))
