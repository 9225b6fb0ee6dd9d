"""HySime: noise estimation by multiple regression, subspace and its dimension."""

import numpy as np
import pytest

from hyperunmix import Scene
from hyperunmix.errors import InputError
from hyperunmix.linear import estimate_n_endmembers, hysime
from hyperunmix.linear.hysime import estimate_noise


def low_rank_pixels(n_endmembers, n_pixels=3000, n_bands=60, snr_db=35.0, seed=0):
    """Dirichlet mixtures of random smooth positive spectra, white noise at ``snr_db``."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, n_bands)
    E = 0.2 + np.array(
        [
            np.sin(2 * np.pi * (f * grid + phase)) ** 2
            for f, phase in rng.random((n_endmembers, 2)) * [2, 1]
        ]
    )
    X = rng.dirichlet(np.ones(n_endmembers), n_pixels) @ E
    sigma = np.sqrt(np.mean(X**2) / 10 ** (snr_db / 10))
    return X + sigma * rng.standard_normal(X.shape), E, sigma


@pytest.mark.parametrize("n_endmembers", [3, 5])
def test_hysime_finds_the_number_of_endmembers(n_endmembers):
    Y, E, _ = low_rank_pixels(n_endmembers, seed=n_endmembers)
    p, subspace = hysime(Y)
    assert p == n_endmembers
    assert subspace.shape == (Y.shape[1], p)
    np.testing.assert_allclose(subspace.T @ subspace, np.eye(p), atol=1e-10)
    # the endmembers lie in the subspace (up to the noise)
    kept = np.linalg.norm(E @ subspace, axis=1) / np.linalg.norm(E, axis=1)
    assert np.all(kept > 0.999)


def test_noise_estimate_matches_the_added_noise():
    Y, _, sigma = low_rank_pixels(4, snr_db=25.0, seed=1)
    noise = estimate_noise(Y)
    assert np.std(noise) == pytest.approx(sigma, rel=0.1)


def test_hysime_masks_nan_pixels_and_accepts_scenes():
    Y, _, _ = low_rank_pixels(4, n_pixels=2500, seed=2)
    image = Y.reshape(50, 50, -1).copy()
    image[3, 4, 0] = np.nan
    expected = hysime(np.delete(Y, 3 * 50 + 4, axis=0))[0]
    assert hysime(image)[0] == expected == 4
    assert estimate_n_endmembers(Scene(image)) == 4


def test_hysime_needs_more_pixels_than_bands():
    Y, _, _ = low_rank_pixels(3, n_pixels=50, n_bands=60)
    with pytest.raises(InputError, match="more valid pixels than bands"):
        hysime(Y)
