"""Vertex component analysis (Nascimento & Bioucas-Dias, IEEE TGRS 43(4), 2005)."""

from __future__ import annotations

import numpy as np

from ._arrays import leading_axes, picked, search_space, unit_scaled


def vca(Y, p: int, seed: int = 0, *, snr_db: float | None = None, return_indices: bool = False):
    """Extract ``p`` endmembers as pixels of ``Y`` by vertex component analysis.

    The data are projected on a p-dimensional subspace: when the signal-to-noise ratio is
    above 15 + 10 log10(p) dB, the first p singular vectors of the raw data with a
    projective (perspective) scaling that maps the simplex to a hyperplane; below it, the
    first p - 1 principal components plus a constant coordinate. Then p times: draw a
    random direction orthogonal to the endmembers found so far and take the pixel with the
    largest absolute projection on it, which is a vertex of the data simplex.

    Parameters
    ----------
    Y : (..., L) array
        Pixels; rows with a non-finite value are ignored.
    p : int
        Number of endmembers.
    seed : int
        Seed of the random directions: the same seed gives the same endmembers.
    snr_db : float, optional
        Known SNR in dB; estimated from the data when not given (as in the paper).
    return_indices : bool
        Also return the flat indices (into ``Y.reshape(-1, L)``) of the chosen pixels.

    Returns
    -------
    E : (p, L) float64
        Pixel spectra of the image itself (not their projections).
    indices : (p,) int, only with ``return_indices``
    """
    pixels, index, p = search_space(Y, p)
    rng = np.random.default_rng(seed)
    projected = _project(unit_scaled(pixels), p, snr_db)

    # Columns of `found` are the projected endmembers so far; the first direction is drawn
    # orthogonally to e_p, the constant coordinate of the low-SNR projection (as in the paper).
    found = np.zeros((p, p))
    found[p - 1, 0] = 1.0
    chosen = np.empty(p, dtype=np.intp)
    for i in range(p):
        w = rng.standard_normal(p)
        f = w - found @ (np.linalg.pinv(found) @ w)
        f /= np.linalg.norm(f)
        chosen[i] = np.argmax(np.abs(projected @ f))
        found[:, i] = projected[chosen[i]]
    return picked(pixels, index, chosen, return_indices, "VCA")


def estimate_snr(pixels: np.ndarray, p: int) -> float:
    """SNR (dB) of (N, L) ``pixels`` with a p-dimensional signal, as in VCA's eq. (13)."""
    n_bands = pixels.shape[1]
    mean = pixels.mean(axis=0)
    centred = pixels - mean
    basis = leading_axes(centred, p)
    signal_power = np.sum((centred @ basis) ** 2) / len(pixels) + mean @ mean
    total_power = np.sum(pixels**2) / len(pixels)
    noise_power = total_power - signal_power
    clean_power = signal_power - p / n_bands * total_power
    if noise_power <= 0:
        return np.inf
    if clean_power <= 0:
        return -np.inf
    return float(10 * np.log10(clean_power / noise_power))


def _project(pixels: np.ndarray, p: int, snr_db: float | None) -> np.ndarray:
    """Pixels (N, L) projected to (N, p) coordinates where the simplex vertices are extreme."""
    snr = estimate_snr(pixels, p) if snr_db is None else snr_db
    if snr > 15 + 10 * np.log10(p):
        basis = leading_axes(pixels, p)
        coords = pixels @ basis
        mean_direction = coords.mean(axis=0)
        # Perspective projection onto the hyperplane <x, mean> = 1; pixels orthogonal to the
        # mean direction (zero spectra) cannot be vertices and are left at the origin.
        scale = coords @ mean_direction
        return np.divide(
            coords, scale[:, None], out=np.zeros_like(coords), where=scale[:, None] > 0
        )
    mean = pixels.mean(axis=0)
    coords = (pixels - mean) @ leading_axes(pixels - mean, p - 1)
    radius = np.sqrt(np.max(np.sum(coords**2, axis=1)))
    return np.hstack([coords, np.full((len(pixels), 1), radius)])
