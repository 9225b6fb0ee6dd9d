"""ASI PRISMA L2D products (surface reflectance, geocoded): HDF-EOS5 ``.he5`` files.

The layout read is that of ASI's PRISMA product specification as two open-source readers
follow it: ``prismaread`` (R, github.com/IREA-CNR-MI/prismaread: ``pr_create_vnir.R``,
``pr_get_geoloc.R``, ``pr_setext_L2D.R``, ``pr_rastwrite_lines.R``) and the EnMAP-Box's
``ImportPrismaL2DAlgorithm`` (``enmapboxprocessing``):

- the cubes ``HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/VNIR_Cube`` and ``.../SWIR_Cube``,
  uint16 digital numbers stored (rows, bands, cols), rows from north to south;
- root attributes ``List_Cw_Vnir`` / ``List_Cw_Swir`` (band centres, nm, one per stored
  band, 0 for a band not delivered) and ``List_Fwhm_Vnir`` / ``List_Fwhm_Swir``; the
  bands are stored from the longest wavelength down;
- reflectance = ``L2ScaleVnirMin + DN (L2ScaleVnirMax - L2ScaleVnirMin) / 65535`` (and
  ``L2ScaleSwir...`` for SWIR), as ``prismaread`` scales it;
- map geometry: ``Epsg_Code`` (WGS 84 / UTM) and ``Product_ULcorner_easting`` /
  ``Product_ULcorner_northing``, the centre of the upper-left pixel, of 30 m pixels (both
  readers put the grid's edge half a pixel, 15 m, beyond the corner coordinates).

What the reader makes of it: the bands with a centre of 0 are dropped, the rest joined in
increasing wavelength. Where the two spectrometers overlap (about 920-1010 nm), the SWIR
bands are kept and the VNIR bands from the first SWIR centre up are dropped: the VNIR's
silicon detector loses its sensitivity towards 1 µm, where the SWIR detector keeps it. A
pixel whose digital numbers are 0 in every band is no-data (as the EnMAP-Box masks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader, library_errors
from ._products import PRISMA_CUBES, PRISMA_FIELDS, band_details

#: Side of a PRISMA L2D hyperspectral pixel, in metres.
PIXEL_SIZE = 30.0
#: The largest digital number: L2ScaleMax maps to it.
_DN_MAX = 65535.0
_REQUIRED = (
    "List_Cw_Vnir",
    "List_Cw_Swir",
    "List_Fwhm_Vnir",
    "List_Fwhm_Swir",
    "L2ScaleVnirMin",
    "L2ScaleVnirMax",
    "L2ScaleSwirMin",
    "L2ScaleSwirMax",
    "Epsg_Code",
    "Product_ULcorner_easting",
    "Product_ULcorner_northing",
)


def _attributes(file: h5py.File, path: Path) -> dict[str, Any]:
    missing = [key for key in _REQUIRED if key not in file.attrs]
    if missing:
        raise FileFormatError(
            f"{path} is a PRISMA L2D product without the attributes {', '.join(missing)}"
        )
    return {key: np.asarray(file.attrs[key]) for key in _REQUIRED}


def _cubes(file: h5py.File, path: Path) -> tuple[h5py.Dataset, h5py.Dataset]:
    cubes = tuple(file.get(f"{PRISMA_FIELDS}/{name}") for name in PRISMA_CUBES)
    for name, cube in zip(PRISMA_CUBES, cubes):
        if not isinstance(cube, h5py.Dataset) or cube.ndim != 3:
            raise FileFormatError(
                f"{path} is no PRISMA L2D product: it has no 3-D {PRISMA_FIELDS}/{name}"
            )
    vnir, swir = cubes
    if (vnir.shape[0], vnir.shape[2]) != (swir.shape[0], swir.shape[2]):
        raise FileFormatError(
            f"{path}: the VNIR cube is {vnir.shape[0]} x {vnir.shape[2]} px and the SWIR "
            f"cube {swir.shape[0]} x {swir.shape[2]}: they cannot be joined"
        )
    return vnir, swir


def _bands(attrs: dict[str, Any], vnir: h5py.Dataset, swir: h5py.Dataset, path: Path):
    """The stored band indices to read from each cube, in increasing wavelength, and the
    wavelengths and FWHM of the joined cube."""
    chosen = []
    for name, cube in (("Vnir", vnir), ("Swir", swir)):
        centres = attrs[f"List_Cw_{name}"].astype(np.float64).ravel()
        fwhm = attrs[f"List_Fwhm_{name}"].astype(np.float64).ravel()
        if centres.size != cube.shape[1] or fwhm.size != cube.shape[1]:
            raise FileFormatError(
                f"{path}: List_Cw_{name} and List_Fwhm_{name} have {centres.size} and "
                f"{fwhm.size} values for the {cube.shape[1]} bands of the cube"
            )
        used = np.flatnonzero(centres > 0)
        used = used[np.argsort(centres[used], kind="stable")]
        chosen.append((used, centres[used], fwhm[used]))
    (vnir_idx, vnir_cw, vnir_fwhm), (swir_idx, swir_cw, swir_fwhm) = chosen
    if swir_cw.size:  # the overlap goes to the SWIR detector
        below = vnir_cw < swir_cw[0]
        vnir_idx, vnir_cw, vnir_fwhm = vnir_idx[below], vnir_cw[below], vnir_fwhm[below]
    if vnir_idx.size + swir_idx.size == 0:
        raise FileFormatError(f"{path}: every band centre in List_Cw_Vnir / List_Cw_Swir is 0")
    return (
        (vnir_idx, swir_idx),
        np.concatenate([vnir_cw, swir_cw]),
        np.concatenate([vnir_fwhm, swir_fwhm]),
    )


def _geo(attrs: dict[str, Any]) -> GeoInfo:
    east = float(attrs["Product_ULcorner_easting"].ravel()[0])
    north = float(attrs["Product_ULcorner_northing"].ravel()[0])
    half = PIXEL_SIZE / 2
    return GeoInfo(
        crs=f"EPSG:{int(attrs['Epsg_Code'].ravel()[0])}",
        transform=(PIXEL_SIZE, 0.0, east - half, 0.0, -PIXEL_SIZE, north + half),
    )


def _scale(attrs: dict[str, Any], name: str) -> tuple[float, float]:
    low = float(attrs[f"L2Scale{name}Min"].ravel()[0])
    high = float(attrs[f"L2Scale{name}Max"].ravel()[0])
    return low, (high - low) / _DN_MAX


def _read_cube(cube: h5py.Dataset, indices: np.ndarray) -> np.ndarray:
    """(rows, cols, len(indices)) digital numbers of the stored bands ``indices``."""
    if indices.size == 0:
        return np.zeros((cube.shape[0], cube.shape[2], 0), dtype=cube.dtype)
    # h5py reads increasing indices only; put them back in wavelength order after.
    order = np.argsort(indices)
    stored = cube[:, indices[order], :]
    return np.moveaxis(stored, 1, 2)[:, :, np.argsort(order)]


def read(path: Path) -> CubeData:
    """The reflectance cube (rows, cols, bands) of a PRISMA L2D product, bands in
    increasing wavelength (float32, NaN at no-data pixels), on its UTM grid."""
    with _open(path) as file, library_errors(path, "read the PRISMA product"):
        vnir, swir = _cubes(file, path)
        attrs = _attributes(file, path)
        (vnir_idx, swir_idx), wavelengths, fwhm = _bands(attrs, vnir, swir, path)
        parts = [_read_cube(vnir, vnir_idx), _read_cube(swir, swir_idx)]
    empty = np.all(parts[0] == 0, axis=2) & np.all(parts[1] == 0, axis=2)
    scaled = []
    for dn, name in zip(parts, ("Vnir", "Swir")):
        low, step = _scale(attrs, name)
        scaled.append(np.float32(low) + dn.astype(np.float32) * np.float32(step))
    cube = np.concatenate(scaled, axis=2)
    cube[empty] = np.nan
    return CubeData(
        cube=cube,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=np.zeros(0, dtype=np.intp),
        geo=_geo(attrs),
        metadata={"product": "PRISMA L2D", "vnir_bands": int(vnir_idx.size)},
    )


def _open(path: Path) -> h5py.File:
    with library_errors(path, "open the PRISMA product"):
        return h5py.File(path, "r")


def describe(path: Path) -> CubeHeader:
    """Shape, wavelengths and georeferencing of the joined cube, and the product's FWHM,
    scaling, no-data and overlap handling."""
    with _open(path) as file, library_errors(path, "read the PRISMA product"):
        vnir, swir = _cubes(file, path)
        attrs = _attributes(file, path)
        (vnir_idx, swir_idx), wavelengths, fwhm = _bands(attrs, vnir, swir, path)
        shape = (vnir.shape[0], vnir.shape[2], wavelengths.size)
        dtype = vnir.dtype.name
    scales = ", ".join(
        f"{name.upper()} {low:g} + DN x {step:.6g}"
        for name in ("Vnir", "Swir")
        for low, step in [_scale(attrs, name)]
    )
    return CubeHeader(
        shape=shape,
        dtype=dtype,
        wavelengths=wavelengths,
        geo=_geo(attrs),
        details={
            "product": "PRISMA L2D",
            **band_details(fwhm, np.zeros(0, dtype=np.intp), wavelengths.size),
            "scale": f"to reflectance: {scales}",
            "no-data": "DN 0 in every band",
            "bands": f"{vnir_idx.size} VNIR + {swir_idx.size} SWIR (overlap kept from SWIR)",
        },
    )
