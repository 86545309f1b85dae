"""Golden values for ROC AUC, one-vs-rest AUC with intervals, and paper 001's detection rate."""

import numpy as np
import pytest

from keras_medgan.metrics import classification as cl


def test_roc_auc_hand_computed():
    # positives 0.8, 0.4; negatives 0.6, 0.2, 0.1: pairs won 3 of 3 by 0.8 and 2 of 3 by 0.4 -> 5/6
    assert cl.roc_auc([1, 0, 1, 0, 0], [0.8, 0.6, 0.4, 0.2, 0.1]) == pytest.approx(5 / 6)


def test_roc_auc_ties_count_half_and_perfect_and_reversed_scores():
    # positives 0.5, 0.9 vs negative 0.5: the tied pair counts 1/2, the other 1 -> 1.5 / 2
    assert cl.roc_auc([1, 1, 0], [0.5, 0.9, 0.5]) == pytest.approx((0.5 + 1.0) / 2)
    assert cl.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert cl.roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert cl.roc_auc([0, 1, 0, 1], [0.7, 0.7, 0.7, 0.7]) == 0.5


def test_roc_auc_equals_the_trapezoidal_roc_area_on_random_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    tpr, fpr = [0.0], [0.0]
    for threshold in np.unique(s)[::-1]:
        pred = s >= threshold
        tpr.append((pred & y).sum() / y.sum())
        fpr.append((pred & ~y).sum() / (~y).sum())
    area = np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr)
    assert cl.roc_auc(y, s) == pytest.approx(area, abs=1e-12)


def test_roc_auc_is_nan_for_one_class_and_rejects_mismatched_lengths():
    assert np.isnan(cl.roc_auc([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="same length"):
        cl.roc_auc([1, 0], [0.2])


def test_one_vs_rest_auc_per_class_macro_and_intervals():
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1],
                      [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]])  # the -1 row is left out
    out = cl.one_vs_rest_auc(labels, probs, ["a", "b", "c"], bootstrap=50, seed=1)
    # class a: positives 0.8, 0.6 vs negatives 0.2, 0.5, 0.1, 0.3 -> all 8 pairs won
    assert out["a"]["auc"] == 1.0 and out["a"]["positives"] == 2 and out["a"]["negatives"] == 4
    # class b: positives 0.7, 0.4 vs 0.1, 0.3, 0.2, 0.3: 0.7 wins 4, 0.4 wins 4 -> 1.0
    assert out["b"]["auc"] == 1.0
    # class c: positives 0.7, 0.4 vs 0.1 0.1 0.1 0.1 -> 1.0
    assert out["c"]["auc"] == 1.0 and out["macro"]["auc"] == 1.0
    assert out["a"]["ci_low"] <= out["a"]["auc"] <= out["a"]["ci_high"]
    no_ci = cl.one_vs_rest_auc(labels, probs)
    assert no_ci["0"]["ci_low"] is None and set(no_ci) == {"0", "1", "2", "macro"}


def test_one_vs_rest_auc_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"probs must be \[n, K\]"):
        cl.one_vs_rest_auc([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="class_names has 1 names for 2"):
        cl.one_vs_rest_auc([0, 1], np.zeros((2, 2)), ["a"])


def test_detection_rates_match_table_iii_definitions():
    detector = ["nv", "bcc", "mel", "bkl", "akiec"]
    # four images meant as "mel" (generator class 1), detector columns by name
    probs = np.array([
        [0.05, 0.05, 0.80, 0.05, 0.05],   # detected, top 0.80
        [0.60, 0.05, 0.25, 0.05, 0.05],   # -> nv
        [0.05, 0.05, 0.90, 0.00, 0.00],   # detected, top 0.90
        [0.70, 0.10, 0.10, 0.05, 0.05],   # -> nv
        [0.10, 0.70, 0.10, 0.05, 0.05],   # generator class 0 ("bcc"), detected
    ])
    out = cl.detection_rates([1, 1, 1, 1, 0], probs, ["bcc", "mel"], detector, bootstrap=20)
    mel = out["mel"]
    assert mel["n"] == 4 and mel["detection_rate"] == 0.5
    assert mel["mean_confidence"] == pytest.approx((0.80 + 0.25 + 0.90 + 0.10) / 4)
    assert mel["mean_confidence_detected"] == pytest.approx(0.85)
    assert mel["most_confused_with"] == "nv"
    assert 0.0 <= mel["ci_low"] <= 0.5 <= mel["ci_high"] <= 1.0
    assert out["bcc"]["detection_rate"] == 1.0 and out["bcc"]["most_confused_with"] is None


def test_detection_rates_name_unknown_classes_and_bad_shapes():
    with pytest.raises(ValueError, match=r"does not know the classes \['zzz'\]"):
        cl.detection_rates([0], np.ones((1, 2)) / 2, ["zzz"], ["a", "b"])
    with pytest.raises(ValueError, match=r"probs must be \[n, 2\]"):
        cl.detection_rates([0, 0], np.ones((2, 3)) / 3, ["a"], ["a", "b"])
