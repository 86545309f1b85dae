"""Golden values for the metric maths: closed forms, hand-computed cases and the reference prdc package."""

import numpy as np
import pytest
import scipy.linalg

from keras_medgan.metrics.frechet import frechet_distance, frechet_distance_from_moments, sqrtm_psd
from keras_medgan.metrics.inception_score import inception_score
from keras_medgan.metrics.intervals import bootstrap_ci, grouped, select_checkpoint, subset_trials
from keras_medgan.metrics.kernel import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from keras_medgan.metrics.precision_recall import precision_recall_density_coverage


def exact_samples(mean, cov, n, seed=0):
    """n samples whose sample mean and unbiased covariance are exactly ``mean`` and ``cov``."""
    d = len(mean)
    z = np.random.default_rng(seed).normal(size=(n, d))
    z -= z.mean(axis=0)
    white = np.linalg.cholesky(np.cov(z, rowvar=False))
    z = np.linalg.solve(white, z.T).T  # sample covariance now exactly I
    return z @ np.linalg.cholesky(cov).T + mean


def closed_form_diagonal(m1, v1, m2, v2):
    """FD of N(m1, diag v1) and N(m2, diag v2) = |m1 - m2|^2 + sum (sqrt v1 - sqrt v2)^2."""
    return float(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2))


def test_frechet_equals_closed_form_for_diagonal_gaussians():
    m1, m2 = np.array([0.0, 1.0, 2.0, -1.0]), np.array([0.5, 1.0, 0.0, 1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 1.0, 2.0])
    expected = closed_form_diagonal(m1, v1, m2, v2)  # 0.25+0+4+4 + 4+1+0.25+0 = 13.5
    assert expected == pytest.approx(13.5)
    assert frechet_distance_from_moments(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(expected, rel=1e-6)
    a, b = exact_samples(m1, np.diag(v1), 50, 1), exact_samples(m2, np.diag(v2), 70, 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [12, 400])  # fewer samples than dims (cross-Gram path) and more (moment path)
def test_frechet_equals_closed_form_for_full_covariances(n):
    rng = np.random.default_rng(3)
    d = 16 if n > 16 else 8
    if n == 12:
        d = 30  # n < d: rank-deficient covariances, exact trace via the cross-Gram nuclear norm
        a, b = rng.normal(size=(n, d)), rng.normal(1.0, 2.0, size=(n + 5, d))
        mu_a, mu_b = a.mean(0), b.mean(0)
        s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    else:
        q = rng.normal(size=(d, d))
        s_a, s_b = q @ q.T / d + 0.1 * np.eye(d), np.diag(rng.uniform(0.5, 2.0, d))
        mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
        a, b = exact_samples(mu_a, s_a, n, 4), exact_samples(mu_b, s_b, n + 10, 5)
    # Reference: the textbook formula with scipy's general matrix square root of the product.
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_from_moments(mu_a, s_a, mu_b, s_b) == pytest.approx(expected, rel=1e-6)


def test_frechet_of_a_set_with_itself_is_zero_and_symmetric():
    a = np.random.default_rng(0).normal(size=(300, 20))
    b = np.random.default_rng(1).normal(0.3, 1.0, size=(200, 20))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_sqrtm_psd_squares_back():
    q = np.random.default_rng(0).normal(size=(6, 6))
    s = q @ q.T
    r = sqrtm_psd(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-9)
    np.testing.assert_allclose(r, r.T)


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_mmd2_unbiased_by_hand():
    # 1-D features with a linear kernel k(x, y) = x y: MMD^2_u = mean_{i!=j} x_i x_j + mean_{i!=j} y_i y_j - 2 mean x y
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [3.0]])
    kxx, kyy, kxy = x @ x.T, y @ y.T, x @ y.T
    # xx: (2 + 2) / 2 = 2; yy: (0 + 0) / 2 = 0; xy: (0 + 3 + 0 + 6) / 4 = 2.25 -> 2 + 0 - 4.5 = -2.5
    assert mmd2_unbiased(kxx, kyy, kxy) == pytest.approx(-2.5)


def test_polynomial_kernel_is_cubic_with_gamma_one_over_d():
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    assert polynomial_kernel(x, y)[0, 0] == pytest.approx((0.5 * (3.0 - 2.0) + 1.0) ** 3)  # 3.375


def test_kid_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    mean, std = kernel_inception_distance(a, b, subsets=50, subset_size=200)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-3
    shifted_mean, shifted_std = kernel_inception_distance(a, b + 0.5, subsets=50, subset_size=200)
    assert shifted_mean > 10 * max(abs(mean), shifted_std / np.sqrt(50))
    assert shifted_mean > 0.05


def test_inception_score_golden_values():
    confident_uniform = np.eye(4)[np.arange(100) % 4]  # every image certain, classes balanced -> IS = 4
    assert inception_score(confident_uniform, splits=1)[0] == pytest.approx(4.0, rel=1e-6)
    uninformative = np.full((50, 4), 0.25)  # p(y|x) = p(y) -> KL = 0 -> IS = 1
    assert inception_score(uninformative, splits=5) == (pytest.approx(1.0), pytest.approx(0.0))
    # Two classes, p(y|x) = (0.9, 0.1) for half and (0.1, 0.9) for the other half: marginal (0.5, 0.5),
    # KL = 0.9 ln 1.8 + 0.1 ln 0.2 = 0.36806 -> IS = exp(0.36806) = 1.44496
    probs = np.array([[0.9, 0.1], [0.1, 0.9]] * 10)
    assert inception_score(probs, splits=1)[0] == pytest.approx(np.exp(0.9 * np.log(1.8) + 0.1 * np.log(0.2)))
    with pytest.raises(ValueError, match="softmax outputs"):
        inception_score(-probs)


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_reference_package(k):
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(300, 16)), rng.normal(0.3, 1.2, size=(250, 16))
    ours = precision_recall_density_coverage(real, fake, k)
    ref = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    assert set(ours) == {"precision", "recall", "density", "coverage"}
    for name in ours:
        assert ours[name] == pytest.approx(ref[name], abs=1e-6), name


def test_prdc_identical_sets_are_perfect():
    real = np.random.default_rng(0).normal(size=(100, 8))
    out = precision_recall_density_coverage(real, real.copy(), 5)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
    with pytest.raises(ValueError, match="k must be"):
        precision_recall_density_coverage(real[:4], real, 5)


def test_subset_trials_gives_mean_and_196_std():
    real = np.arange(100.0)
    out = subset_trials(lambda r, f: r.mean() - f.mean(), real, real + 10.0, trials=20, subset_fraction=0.5, seed=1)
    values = np.asarray(out["values"])
    assert len(values) == 20 and out["mean"] == pytest.approx(values.mean())
    assert out["ci_high"] - out["mean"] == pytest.approx(1.959963984540054 * values.std(ddof=1))
    assert -14 < out["mean"] < -6
    full = subset_trials(lambda r, f: r.mean() - f.mean(), real, real + 10.0, trials=3, subset_fraction=1.0)
    assert full["std"] == 0.0 and full["mean"] == pytest.approx(-10.0)


def test_bootstrap_ci_of_a_mean_matches_the_normal_approximation():
    x = np.random.default_rng(0).normal(5.0, 2.0, size=400)
    out = bootstrap_ci(np.mean, x, resamples=2000, seed=0)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert out["value"] == pytest.approx(x.mean())
    assert out["ci_low"] == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert out["ci_high"] == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_grouped_reports_each_group_and_marks_small_ones():
    real, fake = np.arange(10.0), np.arange(10.0) + 1
    groups = np.array([0] * 6 + [1] * 3 + [2])
    out = grouped(lambda r, f: f.mean() - r.mean(), real, fake, groups, groups, ["a", "b", "c"], min_samples=2)
    assert out["a"] == {"value": pytest.approx(1.0), "num_real": 6, "num_fake": 6}
    assert out["c"]["value"] is None and out["c"]["num_real"] == 1


def test_select_checkpoint_prefers_later_within_tolerance():
    # the review's rule: FIDs within 0.3 of the best count as equal; take the longest-trained one
    assert select_checkpoint({1000: 30.0, 2000: 25.1, 3000: 25.3, 4000: 27.0}) == 3000
    assert select_checkpoint({1000: 30.0, 2000: 25.0, 3000: 25.3}) == 2000  # 0.3 apart is not "within"
    assert select_checkpoint([(5, 10.0), (6, float("nan"))]) == 5
    with pytest.raises(ValueError, match="at least one"):
        select_checkpoint({})
