"""Input checks shared by the classical solvers: pixel matrices, endmembers, valid pixels;
what the endmember extractors share: the search space, scaling, and the answer's checks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..base import check_n_endmembers
from ..errors import InputError, ScalingWarning


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
            "endmembers must be sampled on the same bands as the image"
        )
    if not np.all(np.isfinite(E)):
        raise InputError(f"{what} contains non-finite values")
    return E


def pixel_matrix(Y: Any, min_ndim: int = 1) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flatten ``Y`` (..., L) to an (N, L) float64 matrix (no copy when it already is one);
    also returns the leading shape (...) to restore outputs."""
    Y = np.asarray(Y)
    if Y.ndim < min_ndim:
        raise InputError(
            f"pixels must have at least {min_ndim} dimension(s) (..., L), got shape {Y.shape}"
        )
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


def warn_zero_pixels(Y: Any, method: str) -> None:
    """A ScalingWarning when pixels of ``Y`` (..., L) are zero in every band.

    Their abundances do not depend on the data (the point of the simplex nearest the
    origin for FCLS, zeros for SUnSAL), and such pixels are most often no-data that the
    mask missed.
    """
    zero = np.count_nonzero(~np.any(np.asarray(Y) != 0, axis=-1))
    if zero:
        warnings.warn(
            f"{zero} pixel(s) are zero in every band: their {method} abundances do "
            "not depend on the data (no-data? mask them, e.g. Scene(..., nodata=0))",
            ScalingWarning,
            stacklevel=3,
        )


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
    return pixels, index, check_n_endmembers(p, pixels.shape[1], len(pixels))


def unit_scaled(X: np.ndarray) -> np.ndarray:
    """A copy of ``X`` divided by the power of two just above its largest absolute value
    (so without rounding), which brings every value into (-1, 1).

    Extractors compare sums of squares, projections and volumes, which scale as powers of
    the data (N-FINDR's volumes as its (p-1)-th power), with constants (N-FINDR's constant
    coordinate, VCA's first direction, rank tolerances): on data in units far from 1
    (x1e-16, x1e30) they overflow, underflow or lose to the constants long before the
    data themselves would. On unit-scaled data the choice does not depend on the units.
    """
    return np.ldexp(X, -np.frexp(np.max(np.abs(X)))[1])  # frexp(0) = (0, 0): a plain copy


def picked(
    pixels: np.ndarray, index: np.ndarray, chosen: np.ndarray, return_indices: bool, method: str
):
    """An extractor's answer: the chosen pixel spectra (p, L), and their flat indices;
    checked by :func:`warn_if_degenerate`."""
    endmembers = pixels[chosen]
    warn_if_degenerate(endmembers, method)
    return (endmembers, index[chosen]) if return_indices else endmembers


def warn_if_degenerate(endmembers: np.ndarray, method: str) -> None:
    """A ScalingWarning when the extracted ``endmembers`` (p, L) are the vertices of no
    simplex of p vertices: some are the same spectrum, or they span fewer than p - 1
    dimensions. Abundances on them are not determined by the data (which of two equal
    endmembers a pixel holds is arbitrary)."""
    edges = unit_scaled(endmembers[1:] - endmembers[0])
    rank = np.linalg.matrix_rank(edges)
    if rank == len(edges):
        return
    _, first, group = np.unique(endmembers, axis=0, return_index=True, return_inverse=True)
    same = [
        np.flatnonzero(group == k) for k in np.argsort(first) if np.count_nonzero(group == k) > 1
    ]
    if same:
        detail = (
            "endmembers "
            + ", ".join(" = ".join(map(str, s)) for s in same)
            + " are the same spectrum"
        )
    else:
        detail = (
            f"they span {rank} dimension(s) where a simplex of {len(endmembers)} "
            f"vertices needs {len(edges)}"
        )
    warnings.warn(
        f"the {len(endmembers)} {method} endmembers are degenerate: {detail}; the "
        "pixels hold fewer distinct vertices (a constant or all-zero scene?): lower "
        "the number of endmembers",
        ScalingWarning,
        stacklevel=4,
    )


def leading_axes(X: np.ndarray, k: int) -> np.ndarray:
    """The (L, k) leading eigenvectors of X^T X / N for X (N, L), largest eigenvalue first.

    With fewer pixels than bands (``k <= N < L``: VCA in the 5 x 5 blocks of EGU-Net's
    pseudo-pure set) they are the leading right singular vectors of X, from its thin SVD,
    which costs O(N^2 L) where the L x L eigendecomposition costs O(L^3): 25 pixels of 243
    bands, about 0.1 ms against 6 ms. The two agree to rounding up to the sign of each
    axis, which LAPACK leaves arbitrary and VCA's random directions depend on, so on this
    path each axis is signed to make its largest-magnitude component positive, and the
    answer depends on neither the routine nor the LAPACK build. With N >= L the signs stay
    LAPACK's eigh's, which every extractor run on a whole image has used (fixing them
    there too would change the pixels VCA picks on images where they differ).
    """
    n_pixels, n_bands = X.shape
    if k <= n_pixels < n_bands:
        axes = np.linalg.svd(X, full_matrices=False)[2][:k].T
        return signed_by_largest(axes)
    _, vectors = np.linalg.eigh(X.T @ X / n_pixels)
    return vectors[:, ::-1][:, :k]


def signed_by_largest(axes: np.ndarray) -> np.ndarray:
    """``axes`` (L, k) with each column's sign flipped so that its largest-magnitude
    component is positive."""
    largest = axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])]
    return axes * np.where(largest < 0, -1.0, 1.0)
