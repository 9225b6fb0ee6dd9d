"""MATLAB .mat scenes: v5 through scipy.io, v7.3 (HDF5) through h5py.

The cube is either a 3-D array (H, W, L) or a pixel matrix, L x N (the convention of
unmixing codes and datasets) or N x L, whose pixels are in MATLAB's column-major order
(``order="F"``) unless ``order="C"`` is given. A matrix's image size comes from
``rows=`` / ``cols=``, else from ``nRow`` / ``nCol`` variables in the file.

Also read when present: wavelengths (a variable named like ``wavelengths``,
``waveLength``, ``wavlen``; micrometres converted), ``fwhm``, ``bbl`` (0 for a bad band)
and georeferencing as ``crs`` (text) and ``transform`` (6 affine coefficients).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.io

from .._atomic import atomic_path
from ..errors import FileFormatError, ScalingWarning
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader, band_axis_in_nm
from ._layout import as_image, matrix_layout
from .matfile import MatFile

ROW_NAMES = ("nRow", "nRows", "n_rows")
COL_NAMES = ("nCol", "nCols", "n_cols")
WAVELENGTH_NAMES = ("wavelengths", "wavelength", "wavlen", "AVIRIS_wavlen", "wavelength_nm")


def _cube_key(mat: MatFile, key: str | None, path: Path) -> str:
    """``key``, else the largest 2-D or 3-D numeric variable."""
    if key is not None:
        return mat.require(key)
    candidates = mat.numeric((2, 3))
    if not candidates:
        listed = ", ".join(mat.variables) or "none"
        raise FileFormatError(
            f"{path} holds no 2-D or 3-D numeric array to read as a cube (its variables: {listed})"
        )
    return max(candidates, key=lambda name: int(np.prod(mat.variables[name][0])))


def _image_size(mat: MatFile, rows: int | None, cols: int | None) -> tuple[int | None, int | None]:
    """Explicit rows / cols, else the file's nRow / nCol."""
    return (
        mat.scalar(ROW_NAMES) if rows is None else rows,
        mat.scalar(COL_NAMES) if cols is None else cols,
    )


def band_vector(mat: MatFile, names: tuple[str, ...]) -> np.ndarray | None:
    """The numbers stored under one of ``names`` (any case), as an array or a cell array,
    as a float vector; None, with a ScalingWarning, when that variable holds something else
    (text, a struct), and None when there is no such variable."""
    key = mat.find(names)
    if key is None:
        return None
    matlab_class = mat.variables[key][1]
    if matlab_class not in ("char", "cell", "struct"):
        return mat.load(key).ravel().astype(np.float64)
    vector = mat.cell_numbers(key) if matlab_class == "cell" else None
    if vector is None:
        warnings.warn(
            f"{key!r} in {mat.path} is a MATLAB {matlab_class}, not numbers: not "
            "read (store it as a numeric vector)",
            ScalingWarning,
            stacklevel=2,
        )
    return vector


def _geo(mat: MatFile) -> GeoInfo | None:
    transform = band_vector(mat, ("transform",))
    if transform is None:
        return None
    crs_key = mat.find(("crs",))
    return GeoInfo(
        crs=None if crs_key is None else mat.strings(crs_key)[0], transform=tuple(transform)
    )


def read(
    path: Path,
    key: str | None = None,
    rows: int | None = None,
    cols: int | None = None,
    order: str = "F",
) -> CubeData:
    """The cube (H, W, L) stored under ``key`` (default: the largest numeric array)."""
    with MatFile(path) as mat:
        key = _cube_key(mat, key, path)
        array = mat.load(key)
        cube = as_image(array, *_image_size(mat, rows, cols), order, f"{key!r} in {path}")
        wavelengths, fwhm = band_axis_in_nm(
            band_vector(mat, WAVELENGTH_NAMES), band_vector(mat, ("fwhm",))
        )
        good = band_vector(mat, ("bbl",))
        names_key = mat.find(("band_names",))
        return CubeData(
            cube=cube,
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=None if good is None else np.flatnonzero(good == 0),
            band_names=None if names_key is None else mat.strings(names_key),
            geo=_geo(mat),
            metadata={"key": key, "mat_version": mat.version},
        )


def describe(
    path: Path, key: str | None = None, rows: int | None = None, cols: int | None = None
) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing, loading only the small variables."""
    with MatFile(path) as mat:
        key = _cube_key(mat, key, path)
        shape = mat.variables[key][0]
        if len(shape) == 2:
            shape = matrix_layout(shape, *_image_size(mat, rows, cols), f"{key!r} in {path}")[:3]
        return CubeHeader(
            shape=tuple(shape),
            dtype=mat.dtype_name(key),
            wavelengths=band_axis_in_nm(band_vector(mat, WAVELENGTH_NAMES))[0],
            geo=_geo(mat),
        )


def write(path: Path, data: CubeData) -> None:
    """Write ``data`` as MATLAB v5: the cube as an L x N matrix of column-major pixels
    with ``nRow``, ``nCol``, ``nBand``, as the unmixing datasets are distributed."""
    n_rows, n_cols, n_bands = data.cube.shape
    content = {
        data.array_name: data.cube.reshape(-1, n_bands, order="F").T.astype(np.float32),
        "nRow": n_rows,
        "nCol": n_cols,
        "nBand": n_bands,
    }
    if data.wavelengths is not None:
        content["wavelengths"] = np.asarray(data.wavelengths, dtype=np.float64)
    if data.fwhm is not None:
        content["fwhm"] = np.asarray(data.fwhm, dtype=np.float64)
    if data.bad_bands is not None and len(data.bad_bands):
        good = np.ones(n_bands, dtype=np.uint8)
        good[np.asarray(data.bad_bands)] = 0
        content["bbl"] = good
    if data.band_names is not None:
        content["band_names"] = np.asarray(data.band_names, dtype=object)
    if data.geo is not None:
        content["transform"] = np.asarray(data.geo.transform)
        if data.geo.crs is not None:
            content["crs"] = data.geo.crs
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        scipy.io.savemat(stream, content, do_compression=True)
