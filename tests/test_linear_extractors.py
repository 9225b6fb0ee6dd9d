"""Endmember extraction (VCA, N-FINDR, ATGP): recovery of planted pure pixels, seeding."""

import numpy as np
import pytest

from hyperunmix.errors import InputError
from hyperunmix.linear import vca


def sad(a, b):
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def matched_sads(found, true):
    """SAD of each true endmember to its closest found one."""
    return np.array([min(sad(f, t) for f in found) for t in true])


def planted_scene(n_endmembers=5, n_bands=80, n_pixels=3000, noise=0.0, seed=0):
    """Smooth positive spectra, Dirichlet mixtures with abundances capped below 0.8 and
    one pure pixel per endmember at a random position. Returns Y, E, pure positions."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, n_bands)
    centres = rng.random((n_endmembers, 3))
    E = 0.1 + sum(np.exp(-((grid - centres[:, [j]]) / 0.15) ** 2) for j in range(3))
    A = rng.dirichlet(np.ones(n_endmembers), n_pixels)
    A = A[A.max(axis=1) < 0.8]
    pure = rng.choice(len(A), n_endmembers, replace=False)
    A[pure] = np.eye(n_endmembers)
    Y = A @ E + noise * rng.standard_normal((len(A), n_bands))
    return Y, E, pure


@pytest.mark.parametrize("n_endmembers", [3, 6])
def test_vca_recovers_planted_pure_pixels(n_endmembers):
    Y, E, pure = planted_scene(n_endmembers, seed=n_endmembers)
    found, indices = vca(Y, n_endmembers, seed=0, return_indices=True)
    assert found.shape == E.shape
    assert np.all(matched_sads(found, E) < 1e-3)
    assert sorted(indices) == sorted(pure)
    np.testing.assert_array_equal(found, Y[indices])  # image pixels, not projections


def test_vca_low_snr_branch_finds_the_vertices():
    Y, E, _ = planted_scene(4, seed=1, noise=0.03)
    found = vca(Y, 4, seed=0, snr_db=5.0)  # forces the projection kept for noisy data
    assert np.all(matched_sads(found, E) < 0.05)


def test_vca_same_seed_same_result():
    Y, _, _ = planted_scene(5, seed=2, noise=0.01)
    first = vca(Y, 5, seed=3)
    np.testing.assert_array_equal(first, vca(Y, 5, seed=3))


def test_vca_masks_nan_pixels_and_reports_flat_indices():
    Y, E, pure = planted_scene(3, seed=4)
    image = np.vstack([np.full((1, Y.shape[1]), np.nan), Y])
    found, indices = vca(image, 3, seed=0, return_indices=True)
    assert sorted(indices) == sorted(pure + 1)
    np.testing.assert_array_equal(found, image[indices])


def test_vca_rejects_bad_counts():
    Y, _, _ = planted_scene(3, seed=5)
    with pytest.raises(InputError, match="bands"):
        vca(Y[:, :2], 3)
    with pytest.raises(InputError, match="integer"):
        vca(Y, 2.5)
