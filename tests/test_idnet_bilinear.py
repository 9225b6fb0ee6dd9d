"""ID-Net's nonlinearity map: bilinear interactions, truncated-normal moments, the share."""

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr, truncnorm

from hyperunmix import synthetic
from hyperunmix.deep.idnet_bilinear import (
    bilinear_share,
    mixture_terms,
    unit_truncated_normal_moments,
)

U64 = np.finfo(np.float64).eps / 2


def test_mixture_terms_are_the_linear_part_and_the_sum_over_endmember_pairs():
    torch.manual_seed(0)
    endmembers, abundances = torch.rand(7, 4, 11, dtype=torch.float64), torch.rand(7, 4)
    abundances = abundances.double()
    pairs = sum(
        abundances[:, i, None] * abundances[:, j, None] * endmembers[:, i] * endmembers[:, j]
        for i, j in itertools.combinations(range(4), 2)
    )
    linear, interactions = mixture_terms(endmembers, abundances)
    torch.testing.assert_close(linear, (abundances.unsqueeze(-2) @ endmembers).squeeze(-2))
    torch.testing.assert_close(interactions, pairs)


@pytest.mark.parametrize(
    "mean, std",
    [
        (-50.0, 1.0),
        (-3.0, 0.5),
        (-0.2, 0.1),
        (0.1, 2.0),
        (0.5, 0.01),
        (0.9, 0.3),
        (4.0, 1.0),
        (80.0, 3.0),
        (0.3, 50.0),
    ],
)
def test_truncated_normal_moments_match_scipy(mean, std):
    # Far outside [0, 1] (mean -50, 80) the normaliser is exp(-1250) or so: the reflection and
    # log-CDF keep it; scipy computes the same moments its own way.
    first, second = unit_truncated_normal_moments(
        torch.tensor([mean], dtype=torch.float64), torch.tensor([std], dtype=torch.float64)
    )
    law = truncnorm(-mean / std, (1 - mean) / std, loc=mean, scale=std)
    np.testing.assert_allclose(first.item(), law.mean(), rtol=1e-9)
    np.testing.assert_allclose(second.item(), law.moment(2), rtol=1e-6)


def gbm_pixels(scale, gamma, n_pixels=6, n_bands=40, seed=0):
    """Noiseless pixels c M^T a + gamma b of random spectra and abundances."""
    rng = np.random.default_rng(seed)
    endmembers = torch.from_numpy(rng.uniform(0.05, 0.9, (n_pixels, 3, n_bands)))
    abundances = torch.from_numpy(rng.dirichlet(np.ones(3), n_pixels))
    linear, b = mixture_terms(endmembers, abundances)
    return scale * linear + gamma * b, endmembers, abundances, b


@pytest.mark.parametrize("scale, gamma", [(1.0, 0.0), (1.0, 0.3), (0.7, 0.8), (1.2, 1.0)])
def test_a_noiseless_gbm_pixel_gives_its_own_share(scale, gamma):
    # Without noise the residual vanishes, the posterior of gamma is a point mass at the
    # true value (the prior's [0, 1] contains it) and the share is exact up to the
    # rounding of the 3 x 3 Gram matrix and its 2 x 2 solve.
    y, endmembers, abundances, b = gbm_pixels(scale, gamma)
    share = bilinear_share(y, endmembers, abundances)
    expected = gamma**2 * (b * b).sum(-1) / (y * y).sum(-1)
    torch.testing.assert_close(share, expected, rtol=1e-6, atol=1e-9)


def test_the_share_is_zero_for_negative_interactions_and_is_scale_covariant():
    # A gamma below the prior's range puts the posterior at 0 (within the point mass's
    # rounding); the same pixels in other units (y, M -> s y, s M, so b -> s^2 b and
    # gamma -> gamma / s) give the same share.
    y, endmembers, abundances, _ = gbm_pixels(1.0, -0.5)
    assert bilinear_share(y, endmembers, abundances).max() < 1e-12
    y, endmembers, abundances, b = gbm_pixels(1.0, 0.4)
    share = bilinear_share(y, endmembers, abundances)
    scaled = bilinear_share(2 * y, 2 * endmembers, abundances)  # b -> 4 b, gamma 0.4 -> 0.2
    torch.testing.assert_close(scaled, share)
    torch.testing.assert_close(share, 0.16 * (b * b).sum(-1) / (y * y).sum(-1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_given_the_truth_the_share_ranks_like_the_true_share(seed):
    # GBM scenes at 30 dB with a per-pixel gamma uniform in [0, 1]: given the true
    # endmembers and abundances, only the noise limits the estimate. Measured on 12 x 12
    # pixels, 24 bands, seeds 0 to 5: Spearman 0.53 to 0.85 with the true share.
    gamma = np.random.default_rng(seed).uniform(0, 1, (12, 12))
    scene = synthetic.make_scene(
        12,
        12,
        3,
        wavelengths=np.linspace(400, 2400, 24),
        mixing="gbm",
        nonlinearity=gamma,
        snr_db=30.0,
        seed=seed,
    )
    abundances = torch.from_numpy(scene.truth.abundances.reshape(-1, 3))
    endmembers = torch.from_numpy(scene.truth.endmembers).expand(len(abundances), -1, -1)
    share = bilinear_share(torch.from_numpy(scene.pixels(np.float64)), endmembers, abundances)
    truth = scene.truth.extras["nonlinear_share"].ravel()
    assert spearmanr(share.numpy(), truth)[0] > 0.4
