"""SUnSAL: ADMM sparse regression, constraints of the returned primal variable."""

import numpy as np
import pytest

from hyperunmix.errors import ConvergenceWarning, InputError
from hyperunmix.linear import fcls, nnls, sunsal


def problem(n_spectra=5, n_bands=50, n_pixels=500, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.random((n_spectra, n_bands)) + 0.1
    A = rng.dirichlet(np.ones(n_spectra), n_pixels)
    return A @ E + noise * rng.standard_normal((n_pixels, n_bands)), E


def test_asc_holds_exactly_and_solution_approaches_fcls():
    Y, E = problem()
    X = sunsal(Y, E, asc=True, tol=1e-7, max_iter=5000)
    np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(X, fcls(Y, E), atol=1e-4)


def test_without_sparsity_anc_is_nnls():
    Y, E = problem(seed=1)
    X = sunsal(Y, E, tol=1e-7, max_iter=5000)
    np.testing.assert_allclose(X, nnls(Y, E), atol=1e-4)


def sre_db(true, estimate):
    return 20 * np.log10(np.linalg.norm(true) / np.linalg.norm(true - estimate))


def test_sparsity_improves_recovery_from_a_coherent_library():
    rng = np.random.default_rng(2)
    grid = np.linspace(0, 1, 40)
    bumps = np.array([np.exp(-(((grid - c) / 0.2) ** 2)) for c in np.linspace(0, 1, 8)])
    library = 0.1 + rng.random((60, 8)) @ bumps  # 60 smooth, strongly correlated spectra
    A = np.zeros((200, 60))
    for row in A:
        row[rng.choice(60, 2, replace=False)] = rng.dirichlet([1.0, 1.0])
    X = A @ library
    Y = X + np.sqrt(np.mean(X**2) / 1e3) * rng.standard_normal(X.shape)  # 30 dB
    dense = sunsal(Y, library, tol=1e-5, max_iter=3000)
    sparse = sunsal(Y, library, lam=1e-2, tol=1e-5, max_iter=3000)
    assert sre_db(A, sparse) > sre_db(A, dense) + 1.0
    off_support = A == 0
    assert np.abs(sparse[off_support]).mean() < 0.75 * np.abs(dense[off_support]).mean()


def test_nan_pixels_and_shapes():
    Y, E = problem(n_pixels=12)
    image = Y.reshape(3, 4, -1).copy()
    image[0, 1, 3] = np.nan
    out = sunsal(image, E, asc=True)
    assert out.shape == (3, 4, 5)
    assert np.all(np.isnan(out[0, 1]))
    assert np.all(np.isfinite(np.delete(out.reshape(12, 5), 1, axis=0)))


def test_iteration_limit_warns_and_bad_parameters_raise():
    Y, E = problem(seed=3)
    with pytest.warns(ConvergenceWarning):
        sunsal(Y, E, tol=1e-12, max_iter=20)
    with pytest.raises(InputError, match="lam"):
        sunsal(Y, E, lam=-1.0)
    with pytest.raises(InputError, match="bands"):
        sunsal(Y[:, :-1], E)
