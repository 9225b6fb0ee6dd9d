"""Cubes larger than memory as lazy, chunked xarray DataArrays with dims (y, x, band).

:func:`open_cube` opens a file without reading its pixels: ENVI through a memory map per
chunk (:class:`~hyperunmix.scale._windows.EnviWindows`), GeoTIFF through rasterio windows
(:class:`~hyperunmix.scale._windows.RasterWindows`), EMIT granules and PRISMA L2D products
through h5py (:class:`~hyperunmix.scale._windows.ProductWindows`; EMIT's lookup table
applied window by window), Zarr and NetCDF through xarray.
:func:`as_cube` also wraps an in-memory Scene, array or DataArray. A chunk holds what
:func:`hyperunmix.open` reads at its pixels: the readers share their code.

Every cube follows one convention, so a chunk carries all a worker needs:

- float32 in physical units (GDAL band scales and offsets, the file's scale factor, or
  ``scale=``, applied the way :class:`~hyperunmix.scene.Scene` applies it);
- NaN at invalid pixels (non-finite, every band equal to the file's no-data value, or
  masked by a GDAL mask or alpha band), so a chunk's validity mask is
  ``np.all(np.isfinite(chunk), axis=-1)``; alpha bands are no bands of the cube;
- the band axis in one chunk; rows and columns in chunks of ``chunks`` pixels;
- coordinates ``band`` (index), and ``wavelength`` / ``fwhm`` (nm) when known;
- attributes ``name``, ``format``, ``path``, ``bad_bands`` (list of band indices), and, when
  the source is georeferenced, ``crs`` (WKT or EPSG string) and ``transform`` (6 floats,
  rasterio order) - plain values, so ``cube.to_zarr(...)`` converts a cube to Zarr.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import FileFormatError, InputError, ScalingWarning
from ..io import emit, envi, format_of, geotiff, prisma
from ..io._common import check_band_vector, library_errors, require_file
from ..io._raster import band_axis, geo_from_dataset, open_quietly
from ..io.netcdf import _band_axis, _band_coord, _dims, _geo, _variable
from ..scene import GeoInfo, Scene
from ._windows import EnviWindows, ProductWindows, RasterWindows, to_physical

DIMS = ("y", "x", "band")
#: Input bytes per chunk aimed at when ``chunks`` is not given (see :func:`chunk_shape`).
#: Chosen on the synthetic EMIT-layout scene of ``benchmarks/scene_scale.py`` (768 x 768
#: px, 243 bands, 2 worker threads): chunks of 128 px (16 MiB) against 256 px (64 MiB)
#: took FCLS's apply from 664 to 376 MB of peak memory and 14.7 to 10.8 s, DEQ-Unmix's
#: from 1585 to 821 MB and 61 to 46 s; 64 px took DEQ-Unmix (a halo of 8 px) 73 s.
AUTO_CHUNK_BYTES = 16 * 2**20
#: Chunk sides chosen automatically are multiples of this (GeoTIFF tiles, Zarr chunks).
_AUTO_CHUNK_STEP = 64
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def chunk_shape(chunks: int | tuple[int, int] | None, n_bands: int) -> tuple[int, int]:
    """(rows, cols) of a chunk: ``chunks`` as given (one int for square chunks), or, for
    None, the square of side a multiple of 64 (at least 64) nearest to holding
    ``AUTO_CHUNK_BYTES`` (16 MiB) of float32 input: 128 px for 200 to 425 bands (EMIT's
    285, or 243 without its bad bands), 192 px for 128 bands."""
    if chunks is None:
        side = round(np.sqrt(AUTO_CHUNK_BYTES / (4 * n_bands)) / _AUTO_CHUNK_STEP)
        return (max(side, 1) * _AUTO_CHUNK_STEP,) * 2
    sides = tuple(chunks) if isinstance(chunks, Iterable) else (chunks, chunks)
    if len(sides) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sides
    ):
        raise InputError(f"chunks must be a positive int or (rows, cols), got {chunks!r}")
    return int(sides[0]), int(sides[1])


def open_cube(
    path: str | os.PathLike,
    *,
    chunks: int | tuple[int, int] | None = None,
    key: str | None = None,
    scale: float | None = None,
    ortho: bool | None = None,
) -> xr.DataArray:
    """Open an image file as a lazy (y, x, band) cube; no pixel is read.

    Parameters
    ----------
    path : path
        ENVI header or data file, GeoTIFF, Zarr store (directory), NetCDF file, EMIT
        granule or PRISMA L2D product.
    chunks : int or (int, int), optional
        Rows and columns per chunk; see :func:`chunk_shape` for the default.
    key : str, optional
        Zarr / NetCDF: the cube variable (default: ``cube`` or the only 3-D variable).
    scale : float, optional
        Factor to physical units, overriding the file's (ENVI ``reflectance scale factor``).
    ortho : bool, optional
        EMIT: the north-up grid of the geometry lookup table (True, the default, as
        ``hyperunmix.open``) or the swath (False).

    Returns
    -------
    xarray.DataArray
        (H, W, L) float32, dask-backed; see the module documentation for its coordinates
        and attributes.
    """
    path = Path(path)
    if path.is_dir() and any((path / marker).exists() for marker in _ZARR_MARKERS):
        return _open_xarray(path, "zarr", key, chunks, scale)
    path = require_file(path)
    fmt = format_of(path)
    if key is not None and fmt not in ("netcdf",):
        raise InputError(f"key= selects a variable of a Zarr or NetCDF cube; {path} is {fmt}")
    if ortho is not None and fmt != "emit":
        raise InputError(f"ortho= applies to EMIT granules; {path} is {fmt}")
    if fmt == "envi":
        return _open_envi(path, chunks, scale)
    if fmt == "gtiff":
        return _open_gtiff(path, chunks, scale)
    if fmt == "netcdf":
        return _open_xarray(path, "h5netcdf", key, chunks, scale)
    if fmt in ("emit", "prisma"):
        return _open_product(path, fmt, chunks, scale, ortho=True if ortho is None else ortho)
    raise FileFormatError(
        f"{path} ({fmt}) cannot be read chunk by chunk: its format has no windowed access. "
        "Convert it once to Zarr, e.g. hyperunmix.scale.as_cube(hyperunmix.open(path))"
        ".to_zarr('cube.zarr'), or to ENVI / GeoTIFF"
    )


def as_cube(
    source: Any, *, chunks: int | tuple[int, int] | None = None, **options: Any
) -> xr.DataArray:
    """A lazy (y, x, band) cube from a path (:func:`open_cube`, with ``options``), a
    :class:`~hyperunmix.scene.Scene`, an (H, W, L) array or a DataArray with dims
    y, x and band (in any order)."""
    if isinstance(source, (str, os.PathLike)):
        return open_cube(source, chunks=chunks, **options)
    if options:
        raise InputError(f"options {sorted(options)} apply to files only")
    if isinstance(source, xr.DataArray):
        return _from_dataarray(source, chunks)
    scene = source if isinstance(source, Scene) else Scene(source)
    cube = np.where(scene.mask[..., None], scene.cube, np.float32(np.nan))
    return _cube_array(
        da.from_array(cube, chunks=chunk_shape(chunks, scene.n_bands) + (-1,)),
        name=scene.name,
        fmt=scene.metadata.get("format"),
        path=scene.metadata.get("path"),
        wavelengths=scene.wavelengths,
        fwhm=scene.fwhm,
        bad_bands=scene.bad_bands,
        geo=scene.geo,
        chunks=chunks,
    )


def geo_of(cube: xr.DataArray) -> GeoInfo | None:
    """The georeferencing recorded in a cube's (or a map's) attributes."""
    transform = cube.attrs.get("transform")
    return (
        None
        if transform is None
        else GeoInfo(crs=cube.attrs.get("crs"), transform=tuple(transform))
    )


def good_bands(cube: xr.DataArray) -> np.ndarray | None:
    """(k,) indices of the bands not listed in the cube's ``bad_bands`` attribute, None
    when none is listed; an InputError when every band is."""
    bad = list(cube.attrs.get("bad_bands", []))
    if not bad:
        return None
    good = np.setdiff1d(np.arange(cube.sizes["band"]), bad)
    if good.size == 0:
        raise InputError(
            f"every band of {cube.attrs.get('path', cube.name)} is flagged bad: "
            "nothing is left to unmix (keep_bad_bands=True unmixes them)"
        )
    return good


def drop_bad_bands(cube: xr.DataArray) -> xr.DataArray:
    """The cube without the bands listed in its ``bad_bands`` attribute (lazy); an
    InputError when that leaves none."""
    good = good_bands(cube)
    if good is None:
        return cube
    kept = cube.isel(band=good)
    kept.attrs = {**cube.attrs, "bad_bands": []}
    return kept


def cube_chunks(cube: xr.DataArray) -> tuple[tuple[int, ...], ...]:
    """The chunk sizes along each axis of a cube of :func:`open_cube` or :func:`as_cube`
    (an InputError for a DataArray held in memory)."""
    if cube.chunks is None:
        raise InputError("the cube is not chunked: open it with open_cube or wrap it with as_cube")
    return cube.chunks


def cube_wavelengths(cube: xr.DataArray) -> np.ndarray | None:
    """(L,) wavelengths in nm of a cube, or None."""
    return cube["wavelength"].values if "wavelength" in cube.coords else None


def cube_fwhm(cube: xr.DataArray) -> np.ndarray | None:
    """(L,) band widths (FWHM) in nm of a cube, or None."""
    return cube["fwhm"].values if "fwhm" in cube.coords else None


# -- formats -----------------------------------------------------------------------------
def _open_envi(path: Path, chunks, scale: float | None) -> xr.DataArray:
    # From the header alone first: an empty image cannot even be memory-mapped.
    _check_not_empty(envi.describe(path).shape, path)
    data = envi.read(path)  # the header's metadata; its memory map is dropped unread
    header, data_file = envi._header_and_data(path)
    scale = data.scale if scale is None else scale
    windows = EnviWindows(header, data_file, scale=scale, nodata=_finite_or_none(data.nodata))
    _warn_if_unscaled(windows.stored_dtype, scale, path)
    return _cube_array(
        _lazy(windows, chunks),
        name=path.stem,
        fmt="envi",
        path=path,
        wavelengths=data.wavelengths,
        fwhm=data.fwhm,
        bad_bands=data.bad_bands,
        geo=data.geo,
        chunks=chunks,
    )


def _open_gtiff(path: Path, chunks, scale: float | None) -> xr.DataArray:
    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        bands = geotiff.checked_bands(dataset, path)  # alpha bands are no spectral bands
        wavelengths, fwhm = band_axis(dataset, bands)
        scaling = geotiff.band_scaling(dataset, bands)
        windows = RasterWindows(
            path,
            bands,
            (dataset.height, dataset.width),
            scaling=scaling,
            nodata=_finite_or_none(dataset.nodata),
            scale=scale,
        )
        bad_bands = geotiff.bad_bands(dataset, bands)
        geo = geo_from_dataset(dataset)
        stored = np.dtype(dataset.dtypes[bands[0] - 1])
    if scaling is None:  # GDAL's scales put integers in physical units
        _warn_if_unscaled(stored, scale, path)
    return _cube_array(
        _lazy(windows, chunks),
        name=path.stem,
        fmt="gtiff",
        path=path,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=bad_bands,
        geo=geo,
        chunks=chunks,
    )


def _open_product(path: Path, fmt: str, chunks, scale: float | None, ortho: bool) -> xr.DataArray:
    """An EMIT granule (its GLT grid, or with ``ortho=False`` its swath) or a PRISMA L2D
    product, read window by window by the product's reader."""
    meta: emit.Granule | prisma.Product
    read_window: Callable[..., np.ndarray]
    if fmt == "emit":
        meta, read_window = emit.granule(path, ortho), emit.read_window
        if meta.variable == "radiance":
            emit.warn_radiance(path)
    else:
        meta, read_window = prisma.product(path), prisma.read_window
    return _cube_array(
        _lazy(ProductWindows(path, meta, read_window, scale), chunks),
        name=path.stem,
        fmt=fmt,
        path=path,
        wavelengths=meta.wavelengths,
        fwhm=meta.fwhm,
        bad_bands=meta.bad_bands,
        geo=meta.geo,
        chunks=chunks,
    )


def _open_xarray(
    path: Path, engine: str, key: str | None, chunks, scale: float | None
) -> xr.DataArray:
    """Zarr or NetCDF: ``_FillValue`` pixels are decoded to NaN by xarray."""
    what = "Zarr store" if engine == "zarr" else "NetCDF file"
    with library_errors(path, f"open the {what}"):
        dataset = xr.open_dataset(path, engine=engine, chunks={}, decode_coords="all")
    variable = _variable(dataset, key, path)
    y, x, band = _dims(variable, path)
    variable = variable.transpose(y, x, band)
    with library_errors(path, f"read the coordinates of {variable.name!r} in"):
        wavelengths, fwhm = _band_axis(variable)
        good = _band_coord(variable, "bbl")
        geo = _geo(variable, y, x)
    return _cube_array(
        _converted(variable.data, scale, None, path),
        name=path.stem,
        fmt="zarr" if engine == "zarr" else "netcdf",
        path=path,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=None if good is None else np.flatnonzero(good == 0),
        geo=geo,
        chunks=chunks,
    )


def _lazy(windows: EnviWindows | RasterWindows | ProductWindows, chunks) -> da.Array:
    """The dask array of a window reader, with the band axis in one chunk."""
    # meta= lets dask read a window (a chunk and its halo) without reading whole chunks.
    return da.from_array(
        windows,
        chunks=chunk_shape(chunks, windows.shape[2]) + (-1,),
        asarray=False,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )


def _from_dataarray(array: xr.DataArray, chunks) -> xr.DataArray:
    if set(array.dims) != set(DIMS):
        raise InputError(
            f"a cube DataArray needs dims {DIMS}, got {array.dims}; rename them with .rename(...)"
        )
    array = array.transpose(*DIMS)
    _check_not_empty(array.shape, "the DataArray")
    rows, cols = chunk_shape(chunks, array.sizes["band"])
    array = array.chunk({"y": rows, "x": cols, "band": -1})
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return array


# -- the common form ---------------------------------------------------------------------
def _check_not_empty(shape: tuple[int, ...], source: Any) -> None:
    """An InputError for a cube with no row, column or band (e.g. ``bands = 0``)."""
    if min(shape) == 0:
        rows, cols, bands = shape
        raise InputError(
            f"{source} holds an empty cube ({rows} rows x {cols} columns x "
            f"{bands} bands): nothing to unmix"
        )


def _finite_or_none(nodata: float | None) -> float | None:
    """NaN no-data needs no marking: NaN pixels are invalid anyway."""
    return None if nodata is None or np.isnan(nodata) else float(nodata)


def _warn_if_unscaled(stored: np.dtype, scale: float | None, source: Any) -> None:
    if np.dtype(stored).kind in "biu" and scale is None:
        warnings.warn(
            f"{source} holds {np.dtype(stored).name} digital numbers, unmixed "
            "unscaled; pass scale= (e.g. 1/10000 for reflectance x 10000) to get "
            "physical units",
            ScalingWarning,
            stacklevel=4,
        )


def _converted(raw: da.Array, scale: float | None, nodata: float | None, source: Any) -> da.Array:
    """``raw`` in physical float32 units with NaN at no-data pixels (:func:`to_physical`)."""
    _warn_if_unscaled(raw.dtype, scale, source)
    nodata = _finite_or_none(nodata)
    if raw.dtype == np.dtype(np.float32) and scale is None and nodata is None:
        return raw
    return da.map_blocks(to_physical, raw, scale=scale, nodata=nodata, dtype=np.float32)


def _cube_array(
    data: da.Array,
    *,
    name: str,
    fmt: str | None,
    path: Any,
    wavelengths: Any,
    fwhm: Any,
    bad_bands: Any,
    geo: GeoInfo | None,
    chunks,
) -> xr.DataArray:
    """The cube of float32 ``data`` (H, W, L), rechunked, with coordinates and attributes;
    its band vectors are checked against L as when the file is read in memory."""
    source = name if path is None else path
    _check_not_empty(data.shape, source)
    n_bands = data.shape[2]
    data = data.rechunk(chunk_shape(chunks, n_bands) + (-1,))
    coords: dict[str, Any] = {"band": np.arange(n_bands)}
    for key, values, what in (
        ("wavelength", wavelengths, "wavelengths"),
        ("fwhm", fwhm, "FWHM values"),
    ):
        values = check_band_vector(source, what, values, n_bands)
        if values is not None:
            coords[key] = ("band", values, {"units": "nm"})
    attrs: dict[str, Any] = {
        "name": str(name),
        "bad_bands": [] if bad_bands is None else [int(b) for b in np.asarray(bad_bands)],
    }
    if fmt is not None:
        attrs["format"] = fmt
    if path is not None:
        attrs["path"] = str(path)
    if geo is not None:
        attrs["transform"] = list(geo.transform)
        if geo.crs is not None:
            attrs["crs"] = geo.crs
    return xr.DataArray(data, dims=DIMS, coords=coords, attrs=attrs, name=str(name))
