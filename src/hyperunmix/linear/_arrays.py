"""Input checks shared by the classical solvers: pixel matrices, endmembers, valid pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base import check_n_endmembers
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


def pixel_matrix(Y: Any, min_ndim: int = 1) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flatten ``Y`` (..., L) to an (N, L) float64 matrix (no copy when it already is one);
    also returns the leading shape (...) to restore outputs."""
    Y = np.asarray(Y)
    if Y.ndim < min_ndim:
        raise InputError(f"pixels must have at least {min_ndim} dimension(s) (..., L), "
                         f"got shape {Y.shape}")
    if Y.dtype.kind not in "biuf":
        raise InputError(f"pixels must be numeric, got dtype {Y.dtype}")
    if Y.ndim == 0 or Y.shape[-1] == 0:
        raise InputError(f"pixels have no band axis (shape {Y.shape})")
    return np.ascontiguousarray(Y.reshape(-1, Y.shape[-1]), dtype=np.float64), Y.shape[:-1]


def as_pixels(Y: Any, min_ndim: int = 1) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """:func:`pixel_matrix`, and the (N,) bool mask of valid rows (every value finite);
    invalid rows are masked, not errors."""
    flat, lead_shape = pixel_matrix(Y, min_ndim)
    return flat, lead_shape, np.all(np.isfinite(flat), axis=1)


def valid_pixels(Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The finite rows of ``Y`` (..., L) as an (n, L) matrix, and their flat indices into
    ``Y.reshape(-1, L)``; at least one is required."""
    flat, _, valid = as_pixels(Y, min_ndim=2)
    index = np.flatnonzero(valid)
    if index.size == 0:
        raise InputError("no valid pixel: every pixel has a non-finite value")
    return flat[index], index


def search_space(Y: Any, p: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """What an extractor searches: :func:`valid_pixels` of ``Y``, and ``p`` checked
    against them."""
    pixels, index = valid_pixels(Y)
    return pixels, index, check_count(p, pixels.shape[1], len(pixels))


def picked(pixels: np.ndarray, index: np.ndarray, chosen: np.ndarray, return_indices: bool):
    """An extractor's answer: the chosen pixel spectra (p, L), and their flat indices."""
    return (pixels[chosen], index[chosen]) if return_indices else pixels[chosen]


def check_count(p: Any, n_bands: int, n_pixels: int) -> int:
    """Validate a number of endmembers to extract: an integer, 2 <= p <= min(L, N)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
        raise InputError(f"the number of endmembers must be an integer, got {p!r}")
    return check_n_endmembers(p, n_bands, n_pixels)


def leading_axes(X: np.ndarray, k: int) -> np.ndarray:
    """The (L, k) leading eigenvectors of X^T X / N for X (N, L), largest eigenvalue first."""
    _, vectors = np.linalg.eigh(X.T @ X / len(X))
    return vectors[:, ::-1][:, :k]
