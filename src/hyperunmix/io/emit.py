"""NASA EMIT granules: L2A surface reflectance (RFL) and L1B at-sensor radiance (RDN).

The layout read is the one NASA's EMIT L2A RFL product user guide documents and its LP
DAAC examples read (``python/modules/emit_tools.py`` of github.com/nasa/EMIT-Data-Resources:
``emit_xarray``, ``apply_glt``, ``coord_vects``):

- a NetCDF-4 (HDF5) file; at its root the cube ``reflectance`` (L2A) or ``radiance``
  (L1B), float32 with dims (downtrack, crosstrack, bands) and ``_FillValue`` -9999;
- group ``sensor_band_parameters``: ``wavelengths`` and ``fwhm`` in nm, and in L2A
  ``good_wavelengths``, 1 for a good band and 0 for a bad one (the water-vapour bands);
- group ``location``: the geometry lookup table (GLT) ``glt_x`` / ``glt_y`` (rows and
  columns of a north-up grid), giving at each cell the 1-based crosstrack / downtrack index
  of the swath pixel seen there, 0 where none is; ``lat``, ``lon``, ``elev`` per swath pixel;
- root attributes ``geotransform``, the GDAL 6-tuple (x of the upper-left corner, cell
  width, 0, y of the upper-left corner, 0, -cell height) of the GLT grid, and
  ``spatial_ref``, its CRS as WKT (EPSG:4326).

``ortho=True`` (the default) returns the north-up cube the GLT defines, georeferenced by
``geotransform`` and ``spatial_ref``, so maps unmixed from it overlay other data;
``ortho=False`` keeps the swath (no georeferencing: its pixels follow the flight line).
Fill values and GLT cells without a pixel are NaN, so invalid. Bands with
``good_wavelengths`` 0 are the scene's bad bands. Radiance is read as radiance, with a
ScalingWarning: the unmixing models expect reflectance.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rasterio.crs import CRS

from ..errors import FileFormatError, ScalingWarning
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader, band_axis_in_nm, library_errors
from ._products import (
    EMIT_BANDS,
    EMIT_CUBES,
    EMIT_LOCATION,
    open_product,
    product_data,
    product_header,
)
from ._raster import crs_string

#: Product names by cube variable.
_PRODUCTS = {"reflectance": "EMIT L2A RFL", "radiance": "EMIT L1B RDN"}


def _text(value: Any) -> str:
    """An HDF5 string attribute (bytes, str or a 1-element array) as str."""
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _cube(file: h5py.File, path: Path) -> h5py.Dataset:
    """The root reflectance or radiance variable."""
    for name in EMIT_CUBES:
        if name in file and isinstance(file[name], h5py.Dataset) and file[name].ndim == 3:
            return file[name]
    raise FileFormatError(
        f"{path} holds no 3-D root variable {' or '.join(EMIT_CUBES)}: not an EMIT L2A RFL "
        "or L1B RDN granule"
    )


def _fill_value(cube: h5py.Dataset) -> float | None:
    fill = cube.attrs.get("_FillValue")
    return None if fill is None else float(np.asarray(fill).ravel()[0])


def _band_vector(file: h5py.File, name: str, n_bands: int, path: Path) -> np.ndarray | None:
    key = f"{EMIT_BANDS}/{name}"
    if key not in file:
        return None
    values = np.asarray(file[key][()]).ravel()
    if values.size != n_bands:
        raise FileFormatError(f"{path}: {key} has {values.size} values for {n_bands} bands")
    return values


def _band_axis(file: h5py.File, n_bands: int, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    wavelengths = _band_vector(file, "wavelengths", n_bands, path)
    if wavelengths is None:
        raise FileFormatError(f"{path} has no {EMIT_BANDS}/wavelengths")
    units = file[f"{EMIT_BANDS}/wavelengths"].attrs.get("units")
    converted, fwhm = band_axis_in_nm(
        wavelengths,
        _band_vector(file, "fwhm", n_bands, path),
        None if units is None else _text(units),
    )
    assert converted is not None  # wavelengths are given, in length units
    return converted, fwhm


def _bad_bands(file: h5py.File, n_bands: int, path: Path) -> np.ndarray:
    good = _band_vector(file, "good_wavelengths", n_bands, path)
    return np.zeros(0, dtype=np.intp) if good is None else np.flatnonzero(good == 0)


def _glt_shape(file: h5py.File, path: Path) -> tuple[int, int]:
    shapes = {file[f"{EMIT_LOCATION}/{name}"].shape for name in ("glt_x", "glt_y")}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise FileFormatError(f"{path}: location/glt_x and glt_y must be 2-D of one shape")
    rows, cols = next(iter(shapes))
    return rows, cols


def glt_indices(
    file: h5py.File,
    path: Path,
    swath_shape: tuple[int, int],
    rows: slice = slice(None),
    cols: slice = slice(None),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The swath pixel of each GLT cell in ``rows`` x ``cols`` (slices; all by default).

    Returns
    -------
    downtrack, crosstrack : (h, w) intp
        0-based swath row and column of each cell (0 where ``valid`` is False).
    valid : (h, w) bool
        Cells a swath pixel falls in (both GLT entries nonzero).
    """
    key = (rows, cols)
    glt_x = np.asarray(file[f"{EMIT_LOCATION}/glt_x"][key]).astype(np.intp)
    glt_y = np.asarray(file[f"{EMIT_LOCATION}/glt_y"][key]).astype(np.intp)
    valid = (glt_x != 0) & (glt_y != 0)
    # Read by magnitude: a negative entry, which the published layout does not define,
    # must not index the swath from its end.
    down = np.where(valid, np.abs(glt_y) - 1, 0)
    cross = np.where(valid, np.abs(glt_x) - 1, 0)
    if down.max(initial=0) >= swath_shape[0] or cross.max(initial=0) >= swath_shape[1]:
        raise FileFormatError(
            f"{path}: the geometry lookup table points past the {swath_shape[0]} x "
            f"{swath_shape[1]} swath (glt_y up to {down.max() + 1}, glt_x up to "
            f"{cross.max() + 1})"
        )
    return down, cross, valid


def _geo(file: h5py.File, path: Path) -> GeoInfo:
    """The CRS and transform of the GLT grid, from the root attributes."""
    missing = [key for key in ("geotransform", "spatial_ref") if key not in file.attrs]
    if missing:
        raise FileFormatError(
            f"{path} has no {' or '.join(missing)} attribute: the orthorectified grid cannot "
            "be georeferenced (ortho=False reads the swath)"
        )
    gt = np.asarray(file.attrs["geotransform"], dtype=np.float64).ravel()
    if gt.size != 6:
        raise FileFormatError(f"{path}: geotransform has {gt.size} values, GDAL's has 6")
    with library_errors(path, "read the spatial_ref (WKT) of"):
        crs = crs_string(CRS.from_wkt(_text(file.attrs["spatial_ref"])))
    # GDAL (x0, dx, rx, y0, ry, dy) -> rasterio / Affine (dx, rx, x0, ry, dy, y0)
    return GeoInfo(crs=crs, transform=(gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]))


def orthorectify(swath: np.ndarray, down: np.ndarray, cross: np.ndarray, valid: np.ndarray):
    """(h, w, L) float32 cube of the GLT cells: each valid cell's swath pixel, NaN elsewhere.

    One gather of whole pixels (``take`` along the flattened swath's rows) into the output,
    then NaN at the empty cells: a window of a chunked run allocates the cube once, where
    filling it with NaN first and then assigning a gathered copy allocated it twice, and the
    gather by two index arrays is about 5 times slower.
    """
    n_cross, n_bands = swath.shape[1:]
    flat = swath.reshape(-1, n_bands)
    cells = np.where(valid, down * n_cross + cross, 0).ravel()
    out = flat.take(cells, axis=0).reshape(*valid.shape, n_bands).astype(np.float32, copy=False)
    out[~valid] = np.nan
    return out


@dataclass(frozen=True)
class Granule:
    """What an EMIT granule says about its cube, read without its pixels.

    Attributes
    ----------
    variable : {"reflectance", "radiance"}
    swath_shape : (downtrack, crosstrack, bands)
    shape : (H, W, L)
        Of the cube read: the GLT grid's rows and columns with ``ortho=True``, else the swath.
    ortho : bool
    wavelengths, fwhm : (L,) float64 in nm (FWHM may be None)
    bad_bands : (k,) int
    fill : float or None
        The cube's ``_FillValue``.
    geo : GeoInfo or None
        Of the GLT grid with ``ortho=True``.
    """

    variable: str
    swath_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    ortho: bool
    wavelengths: np.ndarray
    fwhm: np.ndarray | None
    bad_bands: np.ndarray
    fill: float | None
    geo: GeoInfo | None

    @property
    def product(self) -> str:
        return _PRODUCTS[self.variable]


def _granule(file: h5py.File, path: Path, ortho: bool) -> Granule:
    cube = _cube(file, path)
    down, cross, n_bands = (int(n) for n in cube.shape)
    wavelengths, fwhm = _band_axis(file, n_bands, path)
    return Granule(
        variable=cube.name.lstrip("/"),
        swath_shape=(down, cross, n_bands),
        shape=(*_glt_shape(file, path), n_bands) if ortho else (down, cross, n_bands),
        ortho=ortho,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=_bad_bands(file, n_bands, path),
        fill=_fill_value(cube),
        geo=_geo(file, path) if ortho else None,
    )


def granule(path: Path, ortho: bool = True) -> Granule:
    """The :class:`Granule` of the file ``path``."""
    with open_product(path, "EMIT granule") as file:
        return _granule(file, path, ortho)


def read_window(file: h5py.File, path: Path, meta: Granule, rows: slice, cols: slice) -> np.ndarray:
    """(h, w, L) float32 of the cube in ``rows`` x ``cols`` (of the GLT grid, or of the
    swath), NaN at fill values and empty cells. With ``ortho=True`` only the swath rows and
    columns the window's cells point to are read."""
    variable = file[meta.variable]
    if meta.ortho:
        down, cross, valid = glt_indices(file, path, meta.swath_shape[:2], rows, cols)
        if valid.any():
            top, left = down[valid].min(), cross[valid].min()
            swath = np.asarray(
                variable[top : down[valid].max() + 1, left : cross[valid].max() + 1],
                dtype=np.float32,
            )
            block = orthorectify(swath, down - top, cross - left, valid)
        else:
            block = np.full((*valid.shape, meta.shape[2]), np.nan, dtype=np.float32)
    else:
        block = np.asarray(variable[rows, cols], dtype=np.float32)
    if meta.fill is not None:
        block[block == np.float32(meta.fill)] = np.nan
    return block


def read(path: Path, ortho: bool = True) -> CubeData:
    """The cube of an EMIT granule: (rows, cols, bands) of the north-up GLT grid with
    ``ortho=True``, (downtrack, crosstrack, bands) of the swath with ``ortho=False``.

    Float32, NaN at fill values and empty cells; wavelengths, FWHM and bad bands
    (``good_wavelengths`` 0) from ``sensor_band_parameters``.
    """
    with open_product(path, "EMIT granule") as file:
        meta = _granule(file, path, ortho)
        cube = read_window(file, path, meta, slice(None), slice(None))
    if meta.variable == "radiance":
        warn_radiance(path)
    return product_data(meta, cube, product=meta.product, ortho=ortho, fill_value=meta.fill)


def warn_radiance(path: Path) -> None:
    """The ScalingWarning of a radiance granule: unmixing expects reflectance."""
    warnings.warn(
        f"{path} is an EMIT L1B radiance granule, read as radiance: the unmixing models "
        "expect reflectance (EMIT L2A RFL)",
        ScalingWarning,
        stacklevel=3,
    )


def describe(path: Path, ortho: bool = True) -> CubeHeader:
    """Shape (of the GLT grid with ``ortho=True``, else of the swath), wavelengths,
    georeferencing, and the product's FWHM, bad bands, fill value and geometry."""
    with open_product(path, "EMIT granule") as file:
        meta = _granule(file, path, ortho)
        dtype = file[meta.variable].dtype.name
    down, cross, _ = meta.swath_shape
    return product_header(
        meta,
        dtype,
        meta.product,
        {
            "scale": "none: reflectance as stored"
            if meta.variable == "reflectance"
            else "none: radiance (not reflectance; unmixing expects reflectance)",
            "no-data": "none" if meta.fill is None else f"_FillValue {meta.fill:g}",
            "geometry": f"north-up grid of the geometry lookup table; swath {down} x {cross} "
            "(ortho=False reads it)"
            if ortho
            else "swath (downtrack x crosstrack), not georeferenced",
        },
    )
