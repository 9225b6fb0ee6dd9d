"""Input checks shared by the classical solvers: pixel matrices, endmembers, valid pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def as_endmembers(E: Any, n_bands: int | None = None, what: str = "E") -> np.ndarray:
    """``E`` as a finite (P, L) float64 array, checked against ``n_bands`` when given."""
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2:
        raise InputError(f"{what} must be a 2-D (P, L) array of spectra, got shape {E.shape}")
    if min(E.shape) == 0:
        raise InputError(f"{what} is empty (shape {E.shape})")
    if n_bands is not None and E.shape[1] != n_bands:
        raise InputError(
            f"{what} has {E.shape[1]} bands but the pixels have {n_bands}; "
            "endmembers must be sampled on the same bands as the image")
    if not np.all(np.isfinite(E)):
        raise InputError(f"{what} contains non-finite values")
    return E


def as_pixels(Y: Any, min_ndim: int = 1) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """Flatten ``Y`` (..., L) to an (N, L) float64 matrix.

    Returns the matrix, the leading shape (...) to restore outputs, and the (N,) bool mask
    of valid rows (every value finite); invalid rows are masked, not errors.
    """
    Y = np.asarray(Y)
    if Y.ndim < min_ndim:
        raise InputError(f"pixels must have at least {min_ndim} dimension(s) (..., L), "
                         f"got shape {Y.shape}")
    if Y.dtype.kind not in "biuf":
        raise InputError(f"pixels must be numeric, got dtype {Y.dtype}")
    if Y.ndim == 0 or Y.shape[-1] == 0:
        raise InputError(f"pixels have no band axis (shape {Y.shape})")
    lead_shape = Y.shape[:-1]
    flat = np.ascontiguousarray(Y.reshape(-1, Y.shape[-1]), dtype=np.float64)
    valid = np.all(np.isfinite(flat), axis=1)
    return flat, lead_shape, valid


def valid_pixels(Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The finite rows of ``Y`` (..., L) as an (n, L) matrix, and their flat indices.

    For the extractors and the subspace estimator, which need at least one valid pixel.
    """
    flat, _, valid = as_pixels(Y, min_ndim=2)
    index = np.flatnonzero(valid)
    if index.size == 0:
        raise InputError("no valid pixel: every pixel has a non-finite value")
    return flat[index], index


def check_count(p: Any, n_bands: int, n_pixels: int) -> int:
    """Validate a number of endmembers to extract: 1 <= p <= min(L, N)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
        raise InputError(f"the number of endmembers must be an integer, got {p!r}")
    p = int(p)
    if p < 1:
        raise InputError(f"the number of endmembers must be at least 1, got {p}")
    if p > n_bands:
        raise InputError(f"cannot extract {p} endmembers from {n_bands} bands (P > L)")
    if p > n_pixels:
        raise InputError(f"cannot extract {p} endmembers from {n_pixels} valid pixels")
    return p
