"""FCLS, NNLS and LS against independent solvers, invariants (ANC, ASC, KKT) and bad input."""

import itertools

import numpy as np
import pytest
import scipy.optimize

from hyperunmix.errors import InputError
from hyperunmix.linear import fcls, kkt_residual, ls, nnls


def mixed_pixels(n_endmembers, n_bands=40, n_pixels=300, noise=0.05, seed=0, spread=0.5):
    """Random endmembers and noisy pixels, many of them outside the simplex so that the
    abundance constraints are active."""
    rng = np.random.default_rng(seed)
    E = rng.random((n_endmembers, n_bands)) + 0.05
    A = rng.dirichlet(np.full(n_endmembers, spread), n_pixels)
    Y = A @ E + noise * rng.standard_normal((n_pixels, n_bands))
    return Y, E


def face_enumeration(y, E, sum_to_one):
    """Exact reference for small P: the optimum is the least-squares solution on the face
    (support) where it is feasible and the objective is least."""
    n = len(E)
    best_cost, best = np.inf, None
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            S = list(support)
            G, b = E[S] @ E[S].T, E[S] @ y
            if sum_to_one:
                kkt = np.block([[G, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
                z = np.linalg.solve(kkt, np.append(b, 1.0))[:k]
            else:
                z = np.linalg.solve(G, b)
            if z.min() < 0:
                continue
            a = np.zeros(n)
            a[S] = z
            cost = np.sum((y - a @ E) ** 2)
            if cost < best_cost:
                best_cost, best = cost, a
    return best if best is not None else np.zeros(n)


def weighted_nnls(y, E, weight=1e4):
    """FCLS by scipy's NNLS with a heavily weighted sum-to-one row (approximate to ~1/w^2)."""
    scale = np.sqrt(np.linalg.eigvalsh(E @ E.T)[-1])
    M = np.vstack([E.T, weight * scale * np.ones(len(E))])
    return scipy.optimize.nnls(M, np.append(y, weight * scale), maxiter=1000)[0]


def cost(Y, E, A):
    return np.sum((Y - A @ E) ** 2, axis=1)


@pytest.mark.parametrize("n_endmembers", [3, 5])
@pytest.mark.parametrize("sum_to_one", [True, False])
def test_matches_exact_face_enumeration(n_endmembers, sum_to_one):
    Y, E = mixed_pixels(n_endmembers, n_pixels=150, seed=n_endmembers, spread=0.3)
    A = fcls(Y, E) if sum_to_one else nnls(Y, E)
    reference = np.array([face_enumeration(y, E, sum_to_one) for y in Y])
    assert np.mean(reference == 0) > 0.1  # constraints are active in this test
    np.testing.assert_allclose(A, reference, atol=1e-10)


@pytest.mark.parametrize("near_degenerate", [False, True])
def test_fcls_matches_scipy_nnls_with_sum_row(near_degenerate):
    Y, E = mixed_pixels(10, n_bands=60, n_pixels=200, seed=3)
    if near_degenerate:  # two spectra 1e-3 rad apart: G has condition number ~1e6
        rng = np.random.default_rng(4)
        E[1] = E[0] + 1e-3 * np.linalg.norm(E[0]) * rng.standard_normal(60) / np.sqrt(60)
    A = fcls(Y, E)
    reference = np.array([weighted_nnls(y, E) for y in Y])
    assert np.mean(A == 0) > 0.1
    np.testing.assert_allclose(A, reference, atol=1e-6)
    assert kkt_residual(Y, E, A) <= 1e-8


def test_nnls_matches_scipy():
    Y, E = mixed_pixels(8, seed=5, noise=0.2)
    A = nnls(Y, E)
    reference = np.array([scipy.optimize.nnls(E.T, y)[0] for y in Y])
    assert np.mean(A == 0) > 0.1
    np.testing.assert_allclose(A, reference, atol=1e-10)
    assert kkt_residual(Y, E, A, sum_to_one=False) <= 1e-8


def test_fcls_thirty_endmembers_meets_kkt_and_constraints():
    Y, E = mixed_pixels(30, n_bands=100, n_pixels=2000, seed=6, noise=0.02, spread=0.2)
    A = fcls(Y, E)
    assert kkt_residual(Y, E, A) <= 1e-8
    assert A.min() >= 0.0
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    # optimality against a feasible competitor: the projected-gradient fixed point is the
    # optimum, so no perturbation inside the simplex lowers the cost
    other = 0.9 * A + 0.1 / 30
    assert np.all(cost(Y, E, A) <= cost(Y, E, other) + 1e-12)


def test_fcls_rank_deficient_endmembers_reach_the_optimal_cost():
    Y, E = mixed_pixels(4, n_pixels=200, seed=7)
    E_dup = np.vstack([E, E[0], 0.5 * (E[1] + E[2])])  # 6 spectra of rank 4
    A = fcls(Y, E_dup)
    reference = np.array([face_enumeration(y, E, True) for y in Y])
    np.testing.assert_allclose(cost(Y, E_dup, A), cost(Y, E, reference), rtol=1e-9, atol=1e-12)
    assert A.min() >= 0.0
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    assert kkt_residual(Y, E_dup, A) <= 1e-8


def test_batched_solution_does_not_depend_on_the_batch():
    Y, E = mixed_pixels(6, n_pixels=400, seed=8)
    together = fcls(Y, E)
    alone = np.array([fcls(y, E) for y in Y[:40]])
    np.testing.assert_allclose(together[:40], alone, atol=1e-12)


def test_pure_and_far_pixels_give_vertices():
    _, E = mixed_pixels(4, seed=9)
    far = 10.0 * E[2] - 9.0 * E.mean(axis=0)  # beyond vertex 2, outside the simplex
    A = fcls(np.vstack([E, far]), E)
    np.testing.assert_allclose(A, np.vstack([np.eye(4), np.eye(4)[2]]), atol=1e-12)


def test_kkt_residual_detects_non_optimal_abundances():
    Y, E = mixed_pixels(5, seed=10)
    uniform = np.full((len(Y), 5), 0.2)
    assert kkt_residual(Y, E, uniform) > 1e-3
    assert kkt_residual(Y, E, fcls(Y, E) + 1e-4) > 1e-5  # infeasible (sum > 1)
    broken = fcls(Y, E)
    broken[3, 1] = np.nan
    assert np.isnan(kkt_residual(Y, E, broken))


def test_image_shapes_and_nan_pixels_are_masked():
    Y, E = mixed_pixels(3, n_pixels=20, seed=11)
    image = Y.reshape(4, 5, -1).copy()
    image[1, 2, 7] = np.nan
    for solver in (fcls, nnls, ls):
        out = solver(image, E)
        assert out.shape == (4, 5, 3)
        assert np.all(np.isnan(out[1, 2]))
        valid = np.ones((4, 5), bool)
        valid[1, 2] = False
        np.testing.assert_allclose(out[valid], solver(Y[valid.ravel()], E), atol=1e-12)


def test_ls_is_the_least_squares_solution():
    Y, E = mixed_pixels(5, seed=12)
    expected = np.linalg.lstsq(E.T, Y.T, rcond=None)[0].T
    np.testing.assert_allclose(ls(Y, E), expected, atol=1e-10)


@pytest.mark.parametrize("solver", [fcls, nnls, ls])
def test_bad_input_raises_input_error(solver):
    Y, E = mixed_pixels(3, seed=13)
    with pytest.raises(InputError, match="bands"):
        solver(Y[:, :-1], E)
    with pytest.raises(InputError, match="2-D"):
        solver(Y, E[0])
    bad = E.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        solver(Y, bad)


def test_more_endmembers_than_bands_and_than_64():
    # P > L: E is rank deficient by shape; P > 64: free sets no longer fit one machine word
    for n_endmembers, n_bands in ((30, 20), (70, 100)):
        Y, E = mixed_pixels(
            n_endmembers, n_bands=n_bands, n_pixels=200, seed=n_endmembers, noise=0.01, spread=0.3
        )
        A = fcls(Y, E)
        assert kkt_residual(Y, E, A) <= 1e-8
        assert A.min() >= 0.0
        np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)


def test_nnls_of_pixels_opposite_to_every_endmember_is_zero():
    _, E = mixed_pixels(4, seed=14)
    A = nnls(np.vstack([-E[0], -np.ones(E.shape[1]), 0.5 * E[1]]), E)
    np.testing.assert_allclose(A, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0.5, 0, 0]], atol=1e-12)


def test_iteration_limit_warns_and_returns_feasible_abundances():
    from hyperunmix.errors import ConvergenceWarning
    from hyperunmix.linear._active_set import factorise, solve

    Y, E = mixed_pixels(12, n_pixels=300, seed=15, spread=0.2)
    factor = factorise(E)
    with pytest.warns(ConvergenceWarning, match="iteration limit"):
        A = solve(factor, Y @ factor.Q, sum_to_one=True, max_iter=1)
    assert A.min() >= 0.0
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
