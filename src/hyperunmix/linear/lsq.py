"""Non-negative (NNLS) and unconstrained (LS) least-squares abundances."""

from __future__ import annotations

import numpy as np

from ._active_set import solve_pixels
from ._arrays import as_endmembers, as_pixels


def nnls(Y, E) -> np.ndarray:
    """Non-negative least-squares abundances: min ||y - E^T a||^2 subject to a >= 0.

    Exact and batched, by the same active-set engine as :func:`~hyperunmix.linear.fcls`
    without the sum-to-one constraint. Y (..., L), E (P, L) -> (..., P); NaN at pixels with
    a non-finite value.
    """
    return solve_pixels(Y, E, sum_to_one=False)


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
