"""Reading and writing hyperspectral scenes, abundance maps and endmember spectra.

Five format families, chosen by extension (or by content when the extension is
ambiguous): ENVI (``"envi"``), GeoTIFF (``"gtiff"``), NetCDF (``"netcdf"``), MATLAB v5 /
v7.3 (``"mat"``) and NumPy .npy / .npz (``"npy"``), each a
:class:`~hyperunmix.io.formats.Format` in :data:`~hyperunmix.io.formats.FORMATS`, where
more can be registered. Wavelengths, FWHM, bad bands, no-data pixels and georeferencing
travel with the cube wherever the format can hold them.
Every write is atomic: a failure leaves no file under the final name.

>>> scene = open_scene("scene.hdr")                                    # doctest: +SKIP
>>> scene = open_scene("samson_1.mat")       # L x N matrix + nRow / nCol  # doctest: +SKIP
>>> write_maps("abundances.tif", result.abundances, geo=scene.geo)     # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HyperunmixError, InputError
from ..scene import GeoInfo, Scene
from ._common import (
    CHUNKED_PATH,
    CubeData,
    check_band_vector,
    check_memory,
    from_scene,
    require_file,
    to_scene,
)
from ._xml_products import spectral_image
from .endmembers import read_endmembers, write_endmembers_csv
from .formats import FAMILIES, FORMATS, Format, format_of
from .libraries import read_library, resample_library, write_library

__all__ = [
    "FAMILIES",
    "describe",
    "format_of",
    "open_scene",
    "read_endmembers",
    "read_library",
    "resample_library",
    "write_endmembers_csv",
    "write_library",
    "write_maps",
    "write_scene",
]


def _check_options(function: Callable, options: dict[str, Any], path: Path, family: Format) -> None:
    """Name the options a format does not take, instead of a TypeError from inside."""
    accepted = [name for name in inspect.signature(function).parameters if name != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise InputError(
            f"option {', '.join(unknown)} does not apply to {path} "
            f"({family.description}); it takes: {takes}"
        )


def _scene_file(path: str | os.PathLike) -> Path:
    """The file to read for ``path``: the spectral image of a product given by its metadata
    XML or its folder (EnMAP, DESIS), else ``path``; a FileFormatError when it is missing."""
    return require_file(spectral_image(Path(path)))


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
        ENVI header or data file, GeoTIFF, NetCDF, .mat, .npy or .npz; a sensor product
        (EMIT, PRISMA, EnMAP, DESIS; the last two also by their METADATA.XML or folder).
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
    path = _scene_file(path)
    family = FORMATS[format_of(path)]
    _check_options(family.read, options, path, family)
    # The size from the header, before reading: past the memory available, a read ends
    # in a MemoryError at best, in the system killing the process at worst.
    try:
        header = family.describe(path, **_describe_options(family, options))
    except HyperunmixError:
        header = None  # a broken file: the read below says what is wrong, in its own words
    if header is not None:
        check_memory(path, header)
    try:
        data = family.read(path, **options)
        return to_scene(data, path, family.name, wavelengths=wavelengths, scale=scale, name=name)
    except MemoryError as exc:  # the estimate fell short, or others took the memory since
        raise InputError(
            f"{path} does not fit in the memory available: {CHUNKED_PATH.format(path=path)}"
        ) from exc


def _describe_options(family: Format, options: dict[str, Any]) -> dict[str, Any]:
    """The reader ``options`` that the format's describe takes too (those that locate the
    cube; ``order=`` only arranges it)."""
    accepted = inspect.signature(family.describe).parameters
    return {name: value for name, value in options.items() if name in accepted}


def describe(path: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Shape, dtype, wavelength range, georeferencing and format of an image file, read
    from its header (or a memory map) without loading the cube.

    Returns a dict: ``path``, ``format``, ``kind`` (``"image"``, or ``"spectral library"``
    for an ENVI spectral library, which :func:`open_scene` does not read), ``shape``
    ((H, W, L) of an image, (N, L) of N spectra), ``dtype`` (as stored),
    ``wavelength_range`` ((min, max) nm or None), ``georef`` ({"crs", "transform"} or None),
    then what else the format reports (a sensor product's bad bands, scale, no-data, ...).
    Takes the same format options as :func:`open_scene`. A header its data contradict
    (a truncated ENVI data file) is a FileFormatError, as :func:`open_scene` reports it.
    """
    path = _scene_file(path)
    family = FORMATS[format_of(path)]
    _check_options(family.describe, options, path, family)
    header = family.describe(path, **options)
    if min(header.shape) == 0:  # refused as open_scene refuses it, in the scene's words
        shape = header.shape
        raise InputError(f"{path}: a scene cube cannot have an empty axis, got shape {shape}")
    wavelengths = check_band_vector(path, "wavelengths", header.wavelengths, header.shape[-1])
    geo = header.geo
    return {
        "path": str(path),
        "format": family.name,
        "kind": header.kind,
        "shape": tuple(int(n) for n in header.shape),
        "dtype": header.dtype,
        "wavelength_range": None
        if wavelengths is None
        else (float(wavelengths.min()), float(wavelengths.max())),
        "georef": None if geo is None else {"crs": geo.crs, "transform": list(geo.transform)},
        **header.details,
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
    FORMATS[format_of(path)].write(path, from_scene(scene))
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
    fmt : {"envi", "gtiff", "netcdf", "mat", "npy"} or another registered name, optional
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
    elif fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    elif not path.suffix:
        path = path.with_suffix(FORMATS[fmt].default_suffix)
    data = CubeData(
        cube=image.astype(np.float32),
        geo=geo,
        array_name="maps",
        band_names=None if band_names is None else [str(n) for n in band_names],
    )
    FORMATS[fmt].write(path, data)
    return path
