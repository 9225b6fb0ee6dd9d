"""NetCDF cubes through xarray; georeferencing through rioxarray (CF ``grid_mapping``).

A cube is a 3-D variable with a band dimension (named ``band``, ``wavelength``,
``channel``, ... or carrying a ``wavelength`` coordinate) and two spatial dimensions
(``y`` / ``x``, ``lat`` / ``lon``, ``row`` / ``col``, ...). Band coordinates read and
written: ``wavelength`` (with a ``units`` attribute), ``fwhm``, ``bbl`` (0 for a bad band)
and ``band_name``. ``_FillValue`` pixels are decoded to NaN and so masked.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .._atomic import atomic_path
from ..errors import FileFormatError
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader, band_axis_in_nm, library_errors
from ._raster import crs_string, to_affine

_BAND_DIMS = {
    "band",
    "bands",
    "wavelength",
    "wavelengths",
    "lambda",
    "spectral",
    "channel",
    "channels",
    "z",
}
_Y_DIMS = {"y", "row", "rows", "line", "lines", "lat", "latitude", "northing"}
_X_DIMS = {
    "x",
    "col",
    "cols",
    "column",
    "columns",
    "sample",
    "samples",
    "lon",
    "longitude",
    "easting",
}
_WAVELENGTH_COORDS = ("wavelength", "wavelengths", "lambda")


# -- reading -----------------------------------------------------------------------------
def _open(path: Path) -> xr.Dataset:
    with library_errors(path, "read the NetCDF file"):
        return xr.open_dataset(path, decode_coords="all")


def _variable(dataset: xr.Dataset, key: str | None, path: Path) -> xr.DataArray:
    """The cube variable: ``key``, else ``cube``, else the only 3-D data variable."""
    cubes = [name for name, var in dataset.data_vars.items() if var.ndim == 3]
    name: Hashable | None = key
    if name is None:
        name = "cube" if "cube" in dataset.data_vars else (cubes[0] if len(cubes) == 1 else None)
    if name is None or name not in dataset.data_vars:
        listed = ", ".join(map(str, dataset.data_vars)) or "none"
        wanted = "a 3-D variable" if name is None else f"a variable {name!r}"
        raise FileFormatError(
            f"{path} holds no single cube: expected {wanted}; its data "
            f"variables are {listed} (choose one with key=)"
        )
    variable = dataset[name]
    if variable.ndim != 3:
        raise FileFormatError(
            f"variable {name!r} of {path} has dims {variable.dims}; a cube needs 3 (y, x, band)"
        )
    return variable


def _wavelength_coord(variable: xr.DataArray) -> xr.DataArray | None:
    for name in _WAVELENGTH_COORDS:
        if name in variable.coords and variable[name].ndim == 1:
            return variable[name]
    return None


def _dims(variable: xr.DataArray, path: Path) -> tuple[Hashable, Hashable, Hashable]:
    """The (y, x, band) dimension names of a 3-D variable."""
    wavelength = _wavelength_coord(variable)
    band = next((d for d in variable.dims if str(d).lower() in _BAND_DIMS), None)
    if band is None and wavelength is not None:
        band = wavelength.dims[0]
    if band is None:
        raise FileFormatError(
            f"cannot tell the band dimension of {variable.name!r} in {path} (dims "
            f"{variable.dims}): name it 'band' or give it a 'wavelength' coordinate"
        )
    y, x = (d for d in variable.dims if d != band)
    if str(y).lower() in _X_DIMS or str(x).lower() in _Y_DIMS:
        y, x = x, y
    return y, x, band


def _geo(variable: xr.DataArray, y: Hashable, x: Hashable) -> GeoInfo | None:
    spatial = variable.rio.set_spatial_dims(x_dim=x, y_dim=y)
    if spatial.rio.crs is None:
        return None
    with warnings.catch_warnings():  # rioxarray's own use of a deprecated Affine operator
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        transform = spatial.rio.transform()
    return GeoInfo(crs=crs_string(spatial.rio.crs), transform=tuple(transform)[:6])


def _band_coord(variable: xr.DataArray, name: str) -> np.ndarray | None:
    return variable[name].values if name in variable.coords else None


def _band_axis(variable: xr.DataArray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Wavelengths and FWHM in nm, from the coordinates and their ``units``."""
    wavelength = _wavelength_coord(variable)
    if wavelength is None:
        return None, None
    return band_axis_in_nm(
        wavelength.values, _band_coord(variable, "fwhm"), wavelength.attrs.get("units")
    )


def read(path: Path, key: str | None = None) -> CubeData:
    """The cube (H, W, L) of variable ``key`` (default: ``cube`` or the only 3-D one)."""
    with _open(path) as dataset:
        variable = _variable(dataset, key, path)
        y, x, band = _dims(variable, path)
        variable = variable.transpose(y, x, band)
        with library_errors(path, f"read variable {variable.name!r} of"):
            cube = variable.values
            wavelengths, fwhm = _band_axis(variable)
            good = _band_coord(variable, "bbl")
            names = _band_coord(variable, "band_name")
            geo = _geo(variable, y, x)
    return CubeData(
        cube=cube,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=None if good is None else np.flatnonzero(good == 0),
        band_names=None if names is None else [str(n) for n in names],
        geo=geo,
        metadata={"variable": str(variable.name), "dims": [str(y), str(x), str(band)]},
    )


def describe(path: Path, key: str | None = None) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing without loading the cube."""
    with _open(path) as dataset:
        variable = _variable(dataset, key, path)
        y, x, band = _dims(variable, path)
        with library_errors(path, "read the coordinates of"):
            return CubeHeader(
                shape=(variable.sizes[y], variable.sizes[x], variable.sizes[band]),
                dtype=variable.dtype.name,
                wavelengths=_band_axis(variable)[0],
                geo=_geo(variable, y, x),
            )


# -- writing -----------------------------------------------------------------------------
def _band_coords(data: CubeData) -> dict[str, tuple]:
    coords: dict[str, tuple] = {}
    if data.wavelengths is not None:
        coords["wavelength"] = ("band", np.asarray(data.wavelengths), {"units": "nm"})
    if data.fwhm is not None:
        coords["fwhm"] = ("band", np.asarray(data.fwhm), {"units": "nm"})
    if data.bad_bands is not None and len(data.bad_bands):
        good = np.ones(data.cube.shape[2], dtype=np.int8)
        good[np.asarray(data.bad_bands)] = 0
        coords["bbl"] = ("band", good, {"long_name": "bad band list (0 = bad band)"})
    if data.band_names is not None:
        coords["band_name"] = ("band", np.asarray(data.band_names, dtype=str))
    return coords


def _georeference(dataset: xr.Dataset, geo: GeoInfo, n_rows: int, n_cols: int) -> xr.Dataset:
    """Pixel-centre x / y coordinates (north-up grids) plus a CF grid mapping with the
    exact transform, so rotated grids survive too."""
    transform = to_affine(geo)
    if transform.b == 0 and transform.d == 0:
        dataset = dataset.assign_coords(
            x=transform.c + transform.a * (np.arange(n_cols) + 0.5),
            y=transform.f + transform.e * (np.arange(n_rows) + 0.5),
        )
    if geo.crs is not None:
        dataset = dataset.rio.write_crs(geo.crs)
    return dataset.rio.write_transform(transform)


def write(path: Path, data: CubeData) -> None:
    """Write ``data`` as variable ``data.array_name`` (y, x, band), float32, NaN fill."""
    n_rows, n_cols, _ = data.cube.shape
    dataset = xr.Dataset(
        {data.array_name: (("y", "x", "band"), data.cube.astype(np.float32, copy=False))},
        coords=_band_coords(data),
    )
    if data.geo is not None:
        dataset = _georeference(dataset, data.geo, n_rows, n_cols)
    # Updated in place: rioxarray keeps the variable's grid_mapping in its encoding.
    dataset[data.array_name].encoding.update({"_FillValue": np.float32(np.nan), "zlib": True})
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
