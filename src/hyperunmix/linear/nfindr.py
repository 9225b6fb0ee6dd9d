"""N-FINDR (Winter 1999): the pixels spanning the simplex of largest volume."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConvergenceWarning, InputError
from ._arrays import leading_axes, picked, search_space, unit_scaled

#: A replacement must grow the volume by this relative amount (guards against round-off ties).
_MIN_GAIN = 1e-9


def nfindr(Y, p: int, seed: int = 0, *, max_sweeps: int = 50, return_indices: bool = False):
    """Extract ``p`` endmembers as the image pixels spanning a simplex of maximum volume.

    The pixels are reduced to their p - 1 leading principal components; the simplex of p
    pixels x_1..x_p has volume proportional to |det S| with S = [1 ... 1; x_1 ... x_p].
    Starting from p pixels drawn with ``seed``, each vertex in turn is replaced by the pixel
    that maximises the volume, until a whole sweep changes nothing. Replacing column i of S
    by v multiplies the determinant by (S^-1 v)_i, so one sweep scores every pixel for every
    vertex with one (N, p) product per vertex (the adjugate is used, which stays defined
    when the starting simplex is flat).

    Parameters
    ----------
    Y : (..., L) array
        Pixels; rows with a non-finite value are ignored.
    p : int
        Number of endmembers.
    seed : int
        Seed of the starting pixels.
    max_sweeps : int
        Upper bound on the sweeps over the vertices (a ConvergenceWarning past it).
    return_indices : bool
        Also return the flat indices (into ``Y.reshape(-1, L)``) of the chosen pixels.

    Returns
    -------
    E : (p, L) float64 pixel spectra, and (p,) indices with ``return_indices``.
    """
    pixels, index, p = search_space(Y, p)
    data = unit_scaled(pixels)
    centred = data - data.mean(axis=0)
    lifted = np.hstack([np.ones((len(pixels), 1)), centred @ leading_axes(centred, p - 1)])
    chosen = _starting_vertices(lifted, p, np.random.default_rng(seed))
    for _ in range(max_sweeps):
        changed = False
        for i in range(p):
            adjugate_row = _adjugate(lifted[chosen].T)[i]
            volumes = np.abs(lifted @ adjugate_row)  # |det S| with column i replaced, per pixel
            best = int(np.argmax(volumes))
            if volumes[best] > volumes[chosen[i]] * (1 + _MIN_GAIN) + np.finfo(float).tiny:
                chosen[i] = best
                changed = True
        if not changed:
            break
    else:
        warnings.warn(
            f"N-FINDR did not settle in {max_sweeps} sweeps", ConvergenceWarning, stacklevel=2
        )
    return picked(pixels, index, chosen, return_indices, "N-FINDR")


def _starting_vertices(lifted: np.ndarray, p: int, rng: np.random.Generator) -> np.ndarray:
    """p distinct random pixels whose simplex is at most flat in one direction (rank >= p-1),
    so that the adjugate scores are informative."""
    for _ in range(100):
        chosen = rng.choice(len(lifted), size=p, replace=False)
        if np.linalg.matrix_rank(lifted[chosen]) >= p - 1:
            return chosen
    raise InputError(
        f"the pixels span fewer than {p - 1} dimensions: N-FINDR cannot "
        f"find {p} endmembers (lower the number of endmembers)"
    )


def _adjugate(S: np.ndarray) -> np.ndarray:
    """adj(S) = det(S) S^-1, from the SVD so that it is defined for singular S too."""
    U, sigma, Vt = np.linalg.svd(S)
    others = np.array([np.prod(np.delete(sigma, j)) for j in range(len(sigma))])
    sign = np.linalg.det(U) * np.linalg.det(Vt)
    return sign * (Vt.T * others) @ U.T
