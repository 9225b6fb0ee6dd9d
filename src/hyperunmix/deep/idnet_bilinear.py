"""ID-Net's nonlinearity map: the posterior share of bilinear interactions in each pixel.

The paper's degree of nonlinearity, the share of the nonlinear stream h in the Dirichlet
parameters, did not track the true bilinear share of synthetic bilinear scenes (rank
correlation 0.21 +- 0.28 on the GBM scenes of ``benchmarks/idnet_quality.py``): h and g are
free networks, and they absorb whatever the linear stream misses, endmember variability
included. The map here asks the pixel a narrower question: how much of it do
multiplicative interactions of ID-Net's own per-pixel endmembers explain?

Given the pixel y (L,), the spectra M (P, L) the linear stream mixes and the abundances
a (P,), the generalised bilinear model (Halimi et al. 2011) with a free brightness c::

    y = c M^T a + gamma b + noise,    b = sum_{i<j} a_i a_j m_i * m_j

is linear in (c, gamma). Least squares gives gamma_hat with standard error tau (the noise
variance estimated from the pixel's own residual over L - 2 degrees of freedom); with the
GBM's prior gamma ~ U[0, 1] the posterior of gamma is N(gamma_hat, tau^2) truncated to
[0, 1], whose moments are closed form. The map is the posterior mean of the bilinear share
E[gamma^2] ||b||^2 / ||y_hat||^2, the quantity the synthetic scenes report as their truth
(energy of the nonlinear part over the energy of the noiseless pixel). Variability by
scaling (each m_k brighter or darker in a pixel) lies in the span of M and changes c and a,
not gamma; where the pixel carries no evidence (b below the noise) the map returns the
prior's share ||b||^2 / 3 ||y_hat||^2, so it is an expectation under the bilinear model,
not a detection test.
"""

from __future__ import annotations

import math

import torch
from torch.special import log_ndtr

#: Smallest 1 - cos^2 between the linear part and the interactions for which gamma is
#: estimated; below it the interactions cannot be told from a change of brightness (share 0).
MIN_SINE2 = 1e-4


def mixture_terms(
    endmembers: torch.Tensor, abundances: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear part sum_i a_i m_i and the interactions b = sum_{i<j} a_i a_j m_i * m_j,
    both (..., L), of spectra (..., P, L) and abundances (..., P).

    b is accumulated as sum_j a_j m_j * (sum_{i<j} a_i m_i), whose running sum ends as the
    linear part: O(P) work, and a sum of products without the cancellation of
    ((sum_i a_i m_i)^2 - sum_i (a_i m_i)^2) / 2, so float32 keeps the small interactions'
    digits for non-negative spectra and abundances.
    """
    earlier = abundances[..., 0, None] * endmembers[..., 0, :]  # sum_{i<j} a_i m_i
    total = torch.zeros_like(earlier)
    for j in range(1, endmembers.shape[-2]):
        weighted = abundances[..., j, None] * endmembers[..., j, :]
        total.addcmul_(weighted, earlier)
        earlier.add_(weighted)
    return earlier, total


def unit_truncated_normal_moments(
    mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x] and E[x^2] of N(mean, std^2) truncated to [0, 1], elementwise (float64).

    Stable far outside the interval and for a vanishing ``std``: a mean below 1/2 is
    reflected (x -> 1 - x), so the standardised interval [l, u] has l < 0; the density
    terms phi(t) / (Phi(u) - Phi(l)) are written with the Mills ratio
    phi(t) / Phi(t) = sqrt(2 / pi) / erfcx(-t / sqrt(2)) and the ratio Phi(l) / Phi(u)
    from log-CDFs, never as differences of huge exponents.
    """
    reflect = mean < 0.5
    mu = torch.where(reflect, 1 - mean, mean)
    lower, upper = -mu / std, (1 - mu) / std

    def mills(t: torch.Tensor) -> torch.Tensor:  # phi(t) / Phi(t)
        return math.sqrt(2 / math.pi) / torch.special.erfcx(-t / math.sqrt(2))

    log_ratio = log_ndtr(lower) - log_ndtr(upper)  # log Phi(l) / Phi(u), below 0
    mass = -torch.expm1(log_ratio)  # (Phi(u) - Phi(l)) / Phi(u)
    pdf_lower = mills(lower) * torch.exp(log_ratio) / mass
    pdf_upper = mills(upper) / mass
    shift = pdf_lower - pdf_upper
    first = mu + std * shift
    # t phi(t) -> 0 as t -> -inf: 0 * inf where the density term underflows is 0.
    lower_term = torch.where(pdf_lower > 0, lower * pdf_lower, torch.zeros_like(lower))
    var = std**2 * (1 + lower_term - upper * pdf_upper - shift**2)
    first = torch.where(reflect, 1 - first, first)
    return first, var.clamp_min(0) + first**2


def bilinear_share(
    pixels: torch.Tensor,
    endmembers: torch.Tensor,
    abundances: torch.Tensor,
    unit: float = 1.0,
) -> torch.Tensor:
    """Posterior mean of the bilinear share (B,) of pixels (B, L), in [0, 1].

    ``endmembers`` (B, P, L) are the (non-negative) spectra the linear part mixes with
    ``abundances`` (B, P); pixels and spectra are ``unit`` times the scene's values (gamma's
    prior range [0, 1] refers to the scene's units: with y, M -> s y, s M, b -> s^2 b and
    gamma -> gamma / s). The least squares run on the Gram matrix of (linear part, b, y),
    formed in the inputs' precision (at least float32, which the share comes in) and
    solved in float64. The linear part and b are nearly collinear (1 - cos^2 was 1e-3 to
    0.2 on the synthetic scenes of ``benchmarks/idnet_quality.py``); where
    1 - cos^2 < MIN_SINE2 they cannot be told apart and the share is 0. Above it a float32
    Gram matrix (entries within about 2e-7, measured) moves the determinant by a few 1e-3
    at most.
    """
    # At least float32, also under mixed-precision inference: the Gram matrix needs digits.
    dtype = torch.promote_types(pixels.dtype, torch.float32)
    with torch.autocast(pixels.device.type, enabled=False):
        terms = mixture_terms(endmembers.to(dtype), abundances.to(dtype))
        features = torch.stack([*terms, pixels.to(dtype)], -2)  # (B, 3, L)
        gram = (features @ features.transpose(-1, -2)).double()
    to_scene = torch.tensor([1 / unit, 1 / unit**2, 1 / unit], dtype=torch.float64)
    gram = gram * (to_scene[:, None] * to_scene).to(gram.device)
    ll, lb, ly = gram[:, 0, 0], gram[:, 0, 1], gram[:, 0, 2]
    bb, by, yy = gram[:, 1, 1], gram[:, 1, 2], gram[:, 2, 2]
    det = ll * bb - lb**2
    ok = det > MIN_SINE2 * ll * bb
    det = torch.where(ok, det, torch.ones_like(det))
    scale = (bb * ly - lb * by) / det
    gamma = (ll * by - lb * ly) / det
    # The residual is orthogonal to the fit: ||y - fit||^2 = y^T y - fit^T y.
    noise_var = (yy - scale * ly - gamma * by).clamp_min(0) / max(pixels.shape[-1] - 2, 1)
    # Beyond a standard error of 100 the posterior is the prior to 1e-5, and the moments
    # lose digits to cancellation.
    std = torch.sqrt(noise_var * ll / det).clamp(1e-12, 100.0)
    mean_gamma, second = unit_truncated_normal_moments(gamma, std)
    energy = scale**2 * ll + 2 * scale * mean_gamma * lb + mean_gamma**2 * bb
    share = second * bb / energy.clamp_min(1e-300)
    return torch.where(ok & (energy > 0), share.clamp(0, 1), torch.zeros_like(share)).to(dtype)
