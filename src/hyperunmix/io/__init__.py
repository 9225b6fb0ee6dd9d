"""Reading and writing hyperspectral scenes, abundance maps and endmember spectra.

Five format families, chosen by extension (or by content when the extension is
ambiguous): ENVI (``"envi"``), GeoTIFF (``"gtiff"``), NetCDF (``"netcdf"``), MATLAB v5 /
v7.3 (``"mat"``) and NumPy .npy / .npz (``"npy"``). Wavelengths, FWHM, bad bands, no-data
pixels and georeferencing travel with the cube wherever the format can hold them.
Every write is atomic: a failure leaves no file under the final name.

>>> scene = open_scene("scene.hdr")                                    # doctest: +SKIP
>>> scene = open_scene("samson_1.mat")       # L x N matrix + nRow / nCol  # doctest: +SKIP
>>> write_maps("abundances.tif", result.abundances, geo=scene.geo)     # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import InputError
from ..scene import GeoInfo, Scene
from ._common import CubeData, check_band_vector, from_scene, require_file, to_scene
from ._detect import FAMILIES, format_of
from .endmembers import read_endmembers, write_endmembers_csv

__all__ = [
    "FAMILIES",
    "describe",
    "format_of",
    "open_scene",
    "read_endmembers",
    "write_endmembers_csv",
    "write_maps",
    "write_scene",
]

#: Family -> module with ``read``, ``describe`` and ``write``. Imported on first use:
#: rasterio and xarray take seconds to import, which ``import hyperunmix`` should not pay.
_MODULE_NAMES = {
    "envi": "envi",
    "gtiff": "geotiff",
    "netcdf": "netcdf",
    "mat": "matlab",
    "npy": "numpy_io",
}
#: Extension given to a ``write_maps`` path that has none, per family.
_DEFAULT_SUFFIX = {"envi": ".hdr", "gtiff": ".tif", "netcdf": ".nc", "mat": ".mat", "npy": ".npz"}


def _module(fmt: str) -> ModuleType:
    return importlib.import_module(f".{_MODULE_NAMES[fmt]}", __name__)


def _check_options(function: Callable, options: dict[str, Any], path: Path, fmt: str) -> None:
    """Name the options a format does not take, instead of a TypeError from inside."""
    accepted = [name for name in inspect.signature(function).parameters if name != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise InputError(
            f"option {', '.join(unknown)} does not apply to {path} "
            f"({FAMILIES[fmt]}); it takes: {takes}"
        )


def open_scene(
    path: str | os.PathLike,
    *,
    wavelengths: Any = None,
    scale: float | None = None,
    name: str | None = None,
    **options: Any,
) -> Scene:
    """Read a hyperspectral image file into a :class:`~hyperunmix.scene.Scene`.

    Parameters
    ----------
    path : path
        ENVI header or data file, GeoTIFF, NetCDF, .mat, .npy or .npz.
    wavelengths : (L,) array in nm, optional
        Replace (or supply) the file's wavelengths.
    scale : float, optional
        Factor to physical units (e.g. ``1/10000``), overriding one the file declares.
    name : str, optional
        Scene name; the file's stem by default.
    **options
        Format-specific: ``key=`` (NetCDF variable, .npz / .mat array), and for pixel
        matrices in .mat / .npy / .npz: ``rows=``, ``cols=``, ``order=`` ("F" for
        MATLAB's column-major pixel order, the .mat default; "C" for .npy / .npz).

    Returns
    -------
    Scene
        With ``metadata["format"]`` (the family) and ``metadata["path"]``.
    """
    path = require_file(path)
    fmt = format_of(path)
    reader = _module(fmt).read
    _check_options(reader, options, path, fmt)
    data = reader(path, **options)
    return to_scene(data, path, fmt, wavelengths=wavelengths, scale=scale, name=name)


def describe(path: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Shape, dtype, wavelength range, georeferencing and format of an image file, read
    from its header (or a memory map) without loading the cube.

    Returns a dict: ``path``, ``format``, ``shape`` (H, W, L), ``dtype``,
    ``wavelength_range`` ((min, max) nm or None), ``georef`` ({"crs", "transform"} or None).
    Takes the same format options as :func:`open_scene`.
    """
    path = require_file(path)
    fmt = format_of(path)
    reader = _module(fmt).describe
    _check_options(reader, options, path, fmt)
    header = reader(path, **options)
    wavelengths = check_band_vector(path, "wavelengths", header.wavelengths, header.shape[2])
    geo = header.geo
    return {
        "path": str(path),
        "format": fmt,
        "shape": tuple(int(n) for n in header.shape),
        "dtype": header.dtype,
        "wavelength_range": None
        if wavelengths is None
        else (float(wavelengths.min()), float(wavelengths.max())),
        "georef": None if geo is None else {"crs": geo.crs, "transform": list(geo.transform)},
    }


def write_scene(path: str | os.PathLike, scene: Scene) -> Path:
    """Write ``scene`` in the format family of ``path``'s extension, atomically.

    The cube is written as float32 with NaN at invalid pixels, with its wavelengths,
    FWHM, bad bands, band names and georeferencing (and, in .npz, its ground truth).
    A ``.npy`` path gets the bare cube.
    """
    if not isinstance(scene, Scene):
        raise InputError(f"write_scene needs a Scene, got {type(scene).__name__}")
    path = Path(path)
    _module(format_of(path)).write(path, from_scene(scene))
    return path


def write_maps(
    path: str | os.PathLike,
    image: Any,
    *,
    geo: GeoInfo | None = None,
    band_names: Sequence[str] | None = None,
    fmt: str | None = None,
) -> Path:
    """Write per-pixel maps (abundances, uncertainties) as a georeferenced image.

    Parameters
    ----------
    path : path
        A path without extension gets the family's default (.hdr, .tif, .nc, .mat, .npz).
    image : (H, W, K) or (H, W) array
        NaN marks no-data pixels (written as the format's nodata).
    geo : GeoInfo, optional
        CRS and transform of the source scene, so the maps overlay it.
    band_names : K str, optional
        E.g. material names.
    fmt : {"envi", "gtiff", "netcdf", "mat", "npy"}, optional
        Format family; from the extension when None.

    Returns
    -------
    Path
        The path written, with the extension added when it had none.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.dtype.kind not in "biuf":
        raise InputError(
            f"maps must be a numeric (H, W, K) array, got {image.dtype} of shape {image.shape}"
        )
    if band_names is not None and len(band_names) != image.shape[2]:
        raise InputError(f"{len(band_names)} band names given for {image.shape[2]} maps")
    path = Path(path)
    if fmt is None:
        fmt = format_of(path)
    elif fmt not in _MODULE_NAMES:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(_MODULE_NAMES)}")
    elif not path.suffix:
        path = path.with_suffix(_DEFAULT_SUFFIX[fmt])
    data = CubeData(
        cube=image.astype(np.float32),
        geo=geo,
        array_name="maps",
        band_names=None if band_names is None else [str(n) for n in band_names],
    )
    _module(fmt).write(path, data)
    return path
