"""SUnSAL: sparse unmixing by variable splitting and augmented Lagrangian (ADMM).

Bioucas-Dias & Figueiredo, "Alternating direction algorithms for constrained sparse
regression: application to hyperspectral unmixing", WHISPERS 2010.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConvergenceWarning, InputError
from ._arrays import as_endmembers, as_pixels, warn_zero_pixels

#: Iterations between two checks of the residuals (and possible updates of the penalty).
_CHECK_EVERY = 10


def sunsal(
    Y,
    library,
    *,
    lam: float = 0.0,
    anc: bool = True,
    asc: bool = False,
    mu: float = 0.01,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> np.ndarray:
    """Sparse regression of the pixels on a spectral library.

    Solves, for every pixel y, min_x ||y - M^T x||^2 / 2 + lam ||x||_1 with x >= 0 (``anc``)
    and sum(x) = 1 (``asc``), by ADMM on the splitting x = u: the x-step is a linear solve
    (with the sum-to-one constraint eliminated exactly), the u-step a soft threshold and a
    projection on x >= 0. All pixels are iterated together.

    The primal variable x is returned, so the sum-to-one constraint holds to round-off; the
    non-negativity holds to the primal residual tolerance (x - u -> 0). The reference code
    returns u, whose sum is off by up to ~1e-2.

    Parameters
    ----------
    Y : (..., L) array
        Pixels; rows with a non-finite value give NaN.
    library : (m, L) array
        Library spectra (or endmembers), m may exceed L.
    lam : float
        Weight of the l1 (sparsity) term, for data and library scaled so that the library
        has unit mean power (so that ``lam`` and ``mu`` mean the same on any data, and a
        tiled run gives the same answer as a whole one).
    anc, asc : bool
        Abundance non-negativity / sum-to-one constraints.
    mu : float
        Initial ADMM penalty (adapted every ten iterations to balance the residuals).
    tol : float
        Stop when the primal and dual residuals are both below tol * sqrt(N m).
    max_iter : int
        Iteration limit (a ConvergenceWarning past it).

    Returns
    -------
    (..., m) float64 coefficients, NaN at masked pixels.

    Warns
    -----
    ScalingWarning
        When pixels are zero in every band (their coefficients do not depend on the data).
    ConvergenceWarning
        When ``max_iter`` is reached before ``tol``.
    """
    pixels, lead_shape, valid = as_pixels(Y)
    M = as_endmembers(library, pixels.shape[1], what="library")
    if lam < 0 or mu <= 0 or tol <= 0 or max_iter < 1:
        raise InputError(
            f"sunsal needs lam >= 0, mu > 0, tol > 0 and max_iter >= 1; got "
            f"lam={lam}, mu={mu}, tol={tol}, max_iter={max_iter}"
        )
    warn_zero_pixels(pixels, "SUnSAL")
    out = np.full((pixels.shape[0], len(M)), np.nan)
    data = pixels[valid]
    if len(data):
        # The reference code scales by the data's power; the library's does not change from
        # one tile of an image to the next.
        power = float(np.mean(M**2)) or 1.0
        out[valid] = _admm(
            data / np.sqrt(power), M / np.sqrt(power), lam / power, anc, asc, mu, tol, max_iter
        )
    return out.reshape(lead_shape + (len(M),))


def _admm(
    Y: np.ndarray,
    M: np.ndarray,
    lam: float,
    anc: bool,
    asc: bool,
    mu: float,
    tol: float,
    max_iter: int,
) -> np.ndarray:
    n_pixels, n_spectra = len(Y), len(M)
    gram = M @ M.T
    correlations = Y @ M.T  # (N, m): M y for every pixel
    x_step = _XStep(gram, mu, asc)
    x = x_step(correlations, np.zeros((n_pixels, n_spectra)))
    u = _shrink(x, lam / mu, anc)
    d = np.zeros_like(x)
    threshold = tol * np.sqrt(n_pixels * n_spectra)
    for iteration in range(1, max_iter + 1):
        x = x_step(correlations, mu * (u + d))
        u_old = u
        u = _shrink(x - d, lam / mu, anc)
        d -= x - u
        if iteration % _CHECK_EVERY == 0:
            primal = np.linalg.norm(x - u)
            dual = mu * np.linalg.norm(u - u_old)
            if primal < threshold and dual < threshold:
                return x
            # Boyd et al. (2011, 3.4.1): rebalance the penalty; the scaled dual d follows.
            if primal > 10 * dual or dual > 10 * primal:
                factor = 2.0 if primal > 10 * dual else 0.5
                mu *= factor
                d /= factor
                x_step = _XStep(gram, mu, asc)
    warnings.warn(
        f"SUnSAL stopped at max_iter={max_iter} before reaching tol={tol}",
        ConvergenceWarning,
        stacklevel=3,
    )
    return x


class _XStep:
    """x = argmin ||y - M^T x||^2 / 2 + mu/2 ||x - v||^2 [s.t. 1^T x = 1], for all pixels:
    x = B^-1 (M y + mu v) with B = M M^T + mu I, then the sum-to-one correction
    x - B^-1 1 (1^T x - 1) / (1^T B^-1 1).

    B^-1 is formed once per mu (B is well conditioned: mu > 0), so that each iteration is
    one matrix product; triangular solves are much slower on many right-hand sides.
    """

    def __init__(self, gram: np.ndarray, mu: float, asc: bool):
        self.inverse = np.linalg.inv(gram + mu * np.eye(len(gram)))
        self.asc = asc
        if asc:
            ones_solved = self.inverse.sum(axis=1)
            self.correction = ones_solved / ones_solved.sum()

    def __call__(self, correlations: np.ndarray, penalty_target: np.ndarray) -> np.ndarray:
        x = (correlations + penalty_target) @ self.inverse  # B^-1 is symmetric
        if self.asc:
            x -= (x.sum(axis=1) - 1.0)[:, None] * self.correction
        return x


def _shrink(v: np.ndarray, threshold: float, anc: bool) -> np.ndarray:
    """Soft threshold, then projection on v >= 0 when ``anc``."""
    shrunk = np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)
    return np.maximum(shrunk, 0.0) if anc else shrunk
