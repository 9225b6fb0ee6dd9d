"""Least-squares abundances: non-negative (NNLS), normalised non-negative on unit-peak
spectra (SNNLS) and unconstrained (LS)."""

from __future__ import annotations

import warnings

import numpy as np

from ..conventions import normalise_rows, unit_peak
from ..errors import ScalingWarning
from ._active_set import solve_pixels
from ._arrays import as_endmembers, as_pixels


def nnls(Y, E) -> np.ndarray:
    """Non-negative least-squares abundances: min ||y - E^T a||^2 subject to a >= 0.

    Exact and batched, by the same active-set engine as :func:`~hyperunmix.linear.fcls`
    without the sum-to-one constraint. Y (..., L), E (P, L) -> (..., P); NaN at pixels with
    a non-finite value.
    """
    return solve_pixels(Y, E, sum_to_one=False)


def snnls(Y, E) -> np.ndarray:
    """Shares of unit-peak spectra: NNLS on the peak-normalised endmembers, each pixel's
    abundances then divided by their sum.

    The ``"shares"`` counterpart of :func:`~hyperunmix.linear.fcls` (see
    :mod:`hyperunmix.conventions`): ``y ~ b sum_k s_k e_k / max(e_k)`` with a free
    brightness ``b >= 0`` per pixel, ``s >= 0`` and ``sum(s) = 1``. Exact and batched like
    :func:`nnls`. Y (..., L), E (P, L) with positive peaks -> (..., P); NaN at pixels with a
    non-finite value. A pixel with no positive projection on any endmember (zero or
    negative spectrum) has no shares: it gets 1/P each, with a ScalingWarning.
    """
    coefficients = nnls(Y, unit_peak(as_endmembers(E)))
    unexplained = np.sum(np.all(coefficients <= 0, axis=-1))
    if unexplained:
        warnings.warn(
            f"{unexplained} pixel(s) have no positive least-squares share on any "
            "endmember (zero or negative spectra); their shares are set to 1/P",
            ScalingWarning,
            stacklevel=2,
        )
    return normalise_rows(coefficients)


def ls(Y, E) -> np.ndarray:
    """Unconstrained least-squares abundances: min ||y - E^T a||^2.

    Y (..., L), E (P, L) -> (..., P); NaN at pixels with a non-finite value. Rank-deficient
    E gives the minimum-norm solution (pseudo-inverse).
    """
    pixels, lead_shape, valid = as_pixels(Y)
    E = as_endmembers(E, pixels.shape[1])
    out = np.full((pixels.shape[0], E.shape[0]), np.nan)
    out[valid] = pixels[valid] @ np.linalg.pinv(E)
    return out.reshape(lead_shape + (E.shape[0],))
