"""Fully constrained least squares (FCLS): abundances with ANC and ASC, exact and batched."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._active_set import BLOCK as _BLOCK
from ._active_set import project_simplex, solve_pixels
from ._arrays import as_endmembers, as_pixels, warn_zero_pixels


def fcls(Y, E) -> np.ndarray:
    """Fully constrained least-squares abundances.

    Solves min ||y - E^T a||^2 subject to a >= 0 and sum(a) = 1 for every pixel, exactly
    (KKT conditions to round-off), with a batched active-set method in the P x P space
    (see :mod:`hyperunmix.linear._active_set`). The cost per pixel does not depend on L.

    Parameters
    ----------
    Y : (..., L) array
        Pixels, e.g. (N, L) or an (H, W, L) image. Pixels with a non-finite value are masked.
    E : (P, L) array
        Endmember spectra. Rank-deficient E (duplicated or dependent spectra) is solved with
        a tiny Tikhonov term, documented in :mod:`hyperunmix.linear._active_set`.

    Returns
    -------
    (..., P) float64 abundances; NaN at masked pixels.

    Warns
    -----
    ScalingWarning
        When pixels are zero in every band (their abundances do not depend on the data).
    """
    abundances = solve_pixels(Y, E, sum_to_one=True)
    warn_zero_pixels(Y, "FCLS")
    return abundances


def kkt_residual(Y, E, A, *, sum_to_one: bool = True) -> float:
    """Largest KKT violation of abundances ``A`` (..., P) for pixels ``Y`` (..., L).

    The measure is the projected-gradient fixed-point residual
    max |a - proj_C(a - grad f(a) / lambda_max(E E^T))| over pixels and endmembers, where
    f(a) = ||y - E^T a||^2 / 2 and C is the simplex (``sum_to_one``) or the non-negative
    orthant (NNLS). It is zero exactly when a satisfies the KKT conditions (feasibility,
    stationarity, dual feasibility, complementarity), is in abundance units and does not
    depend on the scale of the data. Masked (non-finite) pixels are ignored.
    """
    pixels, lead_shape, valid = as_pixels(Y)
    E = as_endmembers(E, pixels.shape[1])
    A = np.asarray(A, dtype=np.float64)
    if A.shape != lead_shape + (E.shape[0],):
        raise InputError(
            f"A must have shape {lead_shape + (E.shape[0],)} (one row of "
            f"abundances per pixel), got {A.shape}"
        )
    A = A.reshape(-1, E.shape[0])
    if not valid.all():
        A, pixels = A[valid], pixels[valid]
    G = E @ E.T
    step = 1.0 / np.linalg.eigvalsh(G)[-1]
    worst = [0.0]  # np.max of the list keeps a NaN (NaN abundances at valid pixels)
    for first in range(0, len(A), _BLOCK):  # by blocks: bounded temporaries on large images
        a, y = A[first : first + _BLOCK], pixels[first : first + _BLOCK]
        moved = a - step * (a @ G - y @ E.T)
        projected = project_simplex(moved) if sum_to_one else np.maximum(moved, 0.0)
        worst.append(np.max(np.abs(a - projected)))
    return float(np.max(worst))
