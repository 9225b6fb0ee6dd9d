"""Endmember extraction (VCA, N-FINDR, ATGP): recovery of planted pure pixels, seeding."""

import numpy as np
import pytest

from hyperunmix.errors import InputError
from hyperunmix.linear import atgp, nfindr, vca
from hyperunmix.synthetic import make_scene


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
    E = 0.1 + sum(np.exp(-(((grid - centres[:, [j]]) / 0.15) ** 2)) for j in range(3))
    A = rng.dirichlet(np.ones(n_endmembers), n_pixels)
    A = A[A.max(axis=1) < 0.8]
    pure = rng.choice(len(A), n_endmembers, replace=False)
    A[pure] = np.eye(n_endmembers)
    Y = A @ E + noise * rng.standard_normal((len(A), n_bands))
    return Y, E, pure


EXTRACTORS = {
    "vca": lambda Y, p, seed=0, **kw: vca(Y, p, seed=seed, **kw),
    "nfindr": lambda Y, p, seed=0, **kw: nfindr(Y, p, seed=seed, **kw),
    "atgp": lambda Y, p, seed=0, **kw: atgp(Y, p, **kw),
}


@pytest.mark.parametrize("method", ["vca", "nfindr", "atgp"])
@pytest.mark.parametrize("n_endmembers", [3, 6])
def test_extractors_recover_planted_pure_pixels(method, n_endmembers):
    Y, E, pure = planted_scene(n_endmembers, seed=n_endmembers)
    found, indices = EXTRACTORS[method](Y, n_endmembers, return_indices=True)
    assert found.shape == E.shape
    assert np.all(matched_sads(found, E) < 1e-3)
    assert sorted(indices) == sorted(pure)
    np.testing.assert_array_equal(found, Y[indices])  # image pixels, not projections


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nfindr_finds_the_planted_simplex_from_any_start(seed):
    Y, _E, pure = planted_scene(5, seed=7, noise=0.002)
    indices = nfindr(Y, 5, seed=seed, return_indices=True)[1]
    assert sorted(indices) == sorted(pure)


def test_vca_low_snr_branch_finds_the_vertices():
    Y, E, _ = planted_scene(4, seed=1, noise=0.03)
    found = vca(Y, 4, seed=0, snr_db=5.0)  # forces the projection kept for noisy data
    assert np.all(matched_sads(found, E) < 0.05)


@pytest.mark.parametrize("method", ["vca", "nfindr"])
def test_same_seed_same_result(method):
    Y, _, _ = planted_scene(5, seed=2, noise=0.02)
    first = EXTRACTORS[method](Y, 5, seed=3)
    np.testing.assert_array_equal(first, EXTRACTORS[method](Y, 5, seed=3))


@pytest.mark.parametrize("method", ["vca", "nfindr", "atgp"])
def test_nan_pixels_are_masked_and_indices_are_flat(method):
    Y, _E, pure = planted_scene(3, seed=4)
    image = np.vstack([np.full((1, Y.shape[1]), np.nan), Y])
    image[5, 3] = np.inf
    found, indices = EXTRACTORS[method](image, 3, return_indices=True)
    assert sorted(indices) == sorted(pure + 1)
    np.testing.assert_array_equal(found, image[indices])


@pytest.mark.parametrize("method", ["vca", "nfindr", "atgp"])
def test_extractors_reject_bad_counts(method):
    Y, _, _ = planted_scene(3, seed=5)
    with pytest.raises(InputError, match="bands"):
        EXTRACTORS[method](Y[:, :2], 3)
    with pytest.raises(InputError, match="integer"):
        EXTRACTORS[method](Y, 2.5)
    with pytest.raises(InputError, match="no valid pixel"):
        EXTRACTORS[method](np.full((4, 10), np.nan), 2)


def test_nfindr_rejects_data_flatter_than_the_simplex():
    Y, _, _ = planted_scene(3, seed=6)  # a triangle: no tetrahedron of positive volume
    with pytest.raises(InputError, match="dimensions"):
        nfindr(Y, 5)


@pytest.mark.parametrize("method", ["vca", "nfindr", "atgp"])
def test_extractors_do_not_depend_on_the_data_units(method):
    """Volumes, energies and projections scale as powers of the data: N-FINDR returned
    duplicated pixels at x1e20..x1e30 and failed at x1e-16; all three failed at x1e300."""
    Y = make_scene(30, 30, 6, seed=0).pixels().astype(np.float64)
    expected = sorted(EXTRACTORS[method](Y, 6, return_indices=True)[1])
    assert len(set(expected)) == 6
    for scale in (1e-300, 1e-16, 1e16, 1e30, 1e300):
        found = EXTRACTORS[method](Y * scale, 6, return_indices=True)[1]
        assert sorted(found) == expected, scale
