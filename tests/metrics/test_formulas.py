"""The formulas on constructed features, checked against closed forms and against estimators
written independently (eigenvalues instead of a matrix root, explicit pair loops)."""
import itertools

import numpy as np
import pytest

from sg2_container.metrics import formulas


def exact_gaussian_sample(n, mean, std, seed):
    """n points whose sample mean is exactly `mean` and biased covariance exactly diag(std^2)."""
    x = np.random.default_rng(seed).standard_normal([n, len(mean)])
    x -= x.mean(axis=0)
    cov = x.T @ x / n
    whiten = np.linalg.inv(np.linalg.cholesky(cov)).T
    return x @ whiten * std + mean


def test_fid_of_a_set_against_itself_is_zero():
    x = np.random.default_rng(0).standard_normal([300, 16]) * 3 + 1
    assert abs(formulas.fid(x, x)) < 1e-6


def test_fid_equals_the_closed_form_for_gaussians():
    dim = 8
    mean_a, mean_b = np.arange(dim) * 0.5, np.zeros(dim)
    std_a, std_b = np.linspace(0.5, 2.0, dim), np.linspace(1.5, 0.7, dim)
    a = exact_gaussian_sample(500, mean_a, std_a, 1)
    b = exact_gaussian_sample(700, mean_b, std_b, 2)
    # Diagonal covariances: Tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (std_a - std_b)^2.
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
    assert formulas.fid(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_matches_an_eigenvalue_computation_for_full_covariances():
    rng = np.random.default_rng(3)
    a = rng.standard_normal([400, 6]) @ rng.standard_normal([6, 6])
    b = rng.standard_normal([500, 6]) @ rng.standard_normal([6, 6]) + 0.3
    ma, mb = a.mean(0), b.mean(0)
    ca = np.cov(a, rowvar=False, bias=True)
    cb = np.cov(b, rowvar=False, bias=True)
    # Sa Sb is similar to the PSD matrix Sa^1/2 Sb Sa^1/2: the trace of its root is the sum of
    # the square roots of its (real, non-negative) eigenvalues.
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvals(ca @ cb).real, 0, None)))
    expected = np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb) - 2 * trace_root
    assert formulas.fid(a, b) == pytest.approx(expected, rel=1e-7)


def test_fid_with_fewer_images_than_dimensions_equals_the_covariance_form():
    rng = np.random.default_rng(8)
    a = rng.standard_normal([7, 40])
    b = rng.standard_normal([9, 40]) * 0.5 + 0.2
    expected = formulas.frechet_distance(*formulas.mean_and_covariance(a),
                                         *formulas.mean_and_covariance(b))
    # rel 1e-6: the covariance form takes square roots of rounding-level eigenvalues
    assert formulas.fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert abs(formulas.fid(a, a)) < 1e-9


def unbiased_mmd2_by_pairs(x, y):
    d = x.shape[1]

    def k(u, v):
        return (np.dot(u, v) / d + 1) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_equals_the_unbiased_mmd_computed_pair_by_pair():
    rng = np.random.default_rng(4)
    x = rng.standard_normal([20, 5])
    y = rng.standard_normal([20, 5]) * 1.3 + 0.4
    # Subsets as large as the sets: every subset is the whole set, so no sampling is involved.
    assert formulas.kid(x, y, subsets=3, subset_size=20) == pytest.approx(
        unbiased_mmd2_by_pairs(x, y), rel=1e-10)


def test_kid_closed_form_for_point_masses_and_near_zero_for_one_distribution():
    # All x equal to a, all y equal to b: every kernel value is known in closed form.
    d = 4
    a, b = np.full(d, 1.0), np.full(d, -0.5)
    x, y = np.tile(a, (10, 1)), np.tile(b, (10, 1))
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    assert formulas.kid(x, y, subsets=2, subset_size=10) == pytest.approx(
        k(a, a) + k(b, b) - 2 * k(a, b))
    rng = np.random.default_rng(5)
    same = formulas.kid(rng.standard_normal([1000, 8]), rng.standard_normal([1000, 8]),
                        subsets=10, subset_size=500)
    far = formulas.kid(rng.standard_normal([1000, 8]), rng.standard_normal([1000, 8]) + 2,
                       subsets=10, subset_size=500)
    assert abs(same) < 0.05 < far


def test_precision_recall_on_constructed_sets():
    rng = np.random.default_rng(6)
    x = rng.standard_normal([50, 3])
    assert formulas.precision_recall(x, x, block=7) == (1.0, 1.0)
    assert formulas.precision_recall(x, x + 1000.0, block=7) == (0.0, 0.0)


def test_precision_recall_with_a_known_partial_overlap():
    # Reals: 10 tight clusters of 4 points. Generated: copies of the first 6 clusters' points
    # plus 4 points far from everything. Precision = 24 / 28 (the far ones are outside every
    # real ball); recall = 24 / 40 (the 4 unmatched clusters are far from generated points).
    rng = np.random.default_rng(7)
    centres = np.arange(10)[:, None] * np.array([[100.0, 0.0]])
    real = (centres[:, None, :] + rng.standard_normal([10, 4, 2]) * 0.1).reshape(-1, 2)
    far = np.array([[0.0, 500.0], [0.0, 600.0], [0.0, 700.0], [0.0, 800.0]])
    gen = np.concatenate([real[:24], far])
    precision, recall = formulas.precision_recall(gen, real, block=5)
    assert precision == pytest.approx(24 / 28)
    assert recall == pytest.approx(24 / 40)


def test_inception_score_limits():
    # Confident and evenly spread over c classes -> c; identical predictions -> 1.
    c = 5
    logits = np.tile(np.eye(c) * 50.0, (4, 1))
    mean, std = formulas.inception_score(logits, splits=2)
    assert mean == pytest.approx(c, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    mean, _ = formulas.inception_score(np.tile([1.0, 2.0, 3.0], (20, 1)), splits=4)
    assert mean == pytest.approx(1.0)
