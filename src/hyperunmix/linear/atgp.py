"""ATGP, the automatic target generation process (Ren & Chang 2003)."""

from __future__ import annotations

import numpy as np

from ._arrays import picked, search_space, unit_scaled


def atgp(Y, p: int, *, return_indices: bool = False):
    """Extract ``p`` endmembers by successive orthogonal projections.

    The first target is the pixel of largest norm; each next one is the pixel of largest
    norm after projecting the data onto the orthogonal complement of the targets found so
    far. Deterministic (no seed).

    Parameters
    ----------
    Y : (..., L) array
        Pixels; rows with a non-finite value are ignored.
    p : int
        Number of endmembers.
    return_indices : bool
        Also return the flat indices (into ``Y.reshape(-1, L)``) of the chosen pixels.

    Returns
    -------
    E : (p, L) float64 pixel spectra, and (p,) indices with ``return_indices``.
    """
    pixels, index, p = search_space(Y, p)
    residual = unit_scaled(pixels)  # a copy, in units where the energies cannot overflow
    chosen = np.empty(p, dtype=np.intp)
    for i in range(p):
        energy = np.einsum("ij,ij->i", residual, residual)
        chosen[i] = np.argmax(energy)
        if energy[chosen[i]] == 0.0:  # the data are spanned already: repeat the last target
            chosen[i:] = chosen[max(i - 1, 0)]
            break
        # Gram-Schmidt: the new target's residual is orthogonal to the earlier targets, so
        # removing its direction keeps the residual orthogonal to all of them.
        direction = residual[chosen[i]] / np.sqrt(energy[chosen[i]])
        residual -= np.outer(residual @ direction, direction)
    return picked(pixels, index, chosen, return_indices, "ATGP")
