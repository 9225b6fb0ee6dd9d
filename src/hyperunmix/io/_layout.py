"""Pixel matrices (L x N or N x L) to images (H, W, L): the step where MATLAB's
column-major pixel order is easily lost, giving transposed maps.

Pixel n of an ``order="F"`` matrix (MATLAB) is image pixel (n % H, n // H); of an
``order="C"`` matrix (NumPy) it is (n // W, n % W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import FileFormatError, InputError


def _check_size(rows: int | None, cols: int | None) -> None:
    for what, value in (("rows", rows), ("cols", cols)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{what} must be a positive integer, got {value!r}")


def _quotient(n_pixels: int, side: int) -> int:
    """The other side of an image of ``n_pixels`` with one side ``side``; 0 when none."""
    return n_pixels // side if n_pixels % side == 0 else 0


def matrix_layout(
    shape: tuple[int, int], rows: int | None, cols: int | None, source: str
) -> tuple[int, int, int, bool]:
    """``(H, W, L, bands_first)`` of a 2-D pixel matrix of ``shape``.

    The pixel axis is the one of size ``rows * cols`` (one of the two may be omitted
    and is then derived); when both axes fit, MATLAB's L x N layout wins. ``source``
    names the array in messages.
    """
    height, width = shape
    _check_size(rows, cols)
    if rows is None and cols is None:
        raise InputError(
            f"{source} is a {height} x {width} pixel matrix with no image size: pass "
            f"rows= and cols= (rows x cols = the number of pixels) to make it an image"
        )
    for n_pixels, n_bands, bands_first in ((width, height, True), (height, width, False)):
        if rows is not None:
            n_rows, n_cols = rows, (cols if cols is not None else _quotient(n_pixels, rows))
        else:
            assert cols is not None  # both missing is refused above
            n_rows, n_cols = _quotient(n_pixels, cols), cols
        if n_rows * n_cols == n_pixels:
            return int(n_rows), int(n_cols), n_bands, bands_first
    raise InputError(
        f"{source} is a {height} x {width} pixel matrix, but rows={rows} x "
        f"cols={cols} pixels match neither of its dimensions"
    )


def matrix_to_image(
    matrix: np.ndarray, rows: int | None, cols: int | None, order: str, source: str | Path
) -> np.ndarray:
    """The (H, W, L) image of an (L, N) or (N, L) pixel matrix in ``order`` ("F" / "C")."""
    if order not in ("C", "F"):
        raise InputError(
            f"order must be 'F' (MATLAB, column-major) or 'C' (row-major), got {order!r}"
        )
    n_rows, n_cols, n_bands, bands_first = matrix_layout(matrix.shape, rows, cols, str(source))
    pixels = matrix.T if bands_first else matrix  # (N, L)
    pixel_order: Literal["C", "F"] = "F" if order == "F" else "C"
    return pixels.reshape(n_rows, n_cols, n_bands, order=pixel_order)


def as_image(
    array: np.ndarray, rows: int | None, cols: int | None, order: str, source: str | Path
) -> np.ndarray:
    """``array`` as an (H, W, L) image: a 3-D array as it is, a 2-D pixel matrix
    through :func:`matrix_to_image`."""
    if array.ndim == 3:
        return array
    if array.ndim == 2:
        return matrix_to_image(array, rows, cols, order, source)
    raise FileFormatError(
        f"{source} has shape {array.shape}; a cube is (H, W, L) or a pixel matrix (L x N or N x L)"
    )
