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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader
from ._products import (
    PRISMA_CUBES,
    PRISMA_FIELDS,
    open_product,
    product_data,
    product_header,
)

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
    """(reflectance at DN 0, reflectance per DN) of one spectrometer."""
    low = float(attrs[f"L2Scale{name}Min"].ravel()[0])
    high = float(attrs[f"L2Scale{name}Max"].ravel()[0])
    return low, (high - low) / _DN_MAX


@dataclass(frozen=True)
class Product:
    """What a PRISMA L2D product says about its joined cube, read without its pixels.

    Attributes
    ----------
    shape : (rows, cols, L)
    indices : (vnir, swir) int arrays
        The stored bands of each cube that make the joined one, in increasing wavelength.
    scales : ((low, step), (low, step))
        Reflectance at DN 0 and per DN, of VNIR and SWIR.
    wavelengths, fwhm : (L,) float64 in nm
    bad_bands : (0,) int
        None: the product flags no band.
    geo : GeoInfo
    """

    shape: tuple[int, int, int]
    indices: tuple[np.ndarray, np.ndarray]
    scales: tuple[tuple[float, float], tuple[float, float]]
    wavelengths: np.ndarray
    fwhm: np.ndarray
    bad_bands: np.ndarray
    geo: GeoInfo


def _product(file: h5py.File, path: Path) -> Product:
    vnir, swir = _cubes(file, path)
    attrs = _attributes(file, path)
    indices, wavelengths, fwhm = _bands(attrs, vnir, swir, path)
    return Product(
        shape=(int(vnir.shape[0]), int(vnir.shape[2]), int(wavelengths.size)),
        indices=indices,
        scales=(_scale(attrs, "Vnir"), _scale(attrs, "Swir")),
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=np.zeros(0, dtype=np.intp),
        geo=_geo(attrs),
    )


def product(path: Path) -> Product:
    """The :class:`Product` of the file ``path``."""
    with open_product(path, "PRISMA product") as file:
        return _product(file, path)


def _read_cube(cube: h5py.Dataset, indices: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """(h, w, len(indices)) digital numbers of the stored bands ``indices``."""
    if indices.size == 0:
        return np.zeros((*cube[rows, 0, cols].shape, 0), dtype=cube.dtype)
    # h5py reads increasing indices only; put them back in wavelength order after.
    order = np.argsort(indices)
    stored = cube[rows, indices[order], cols]
    return np.moveaxis(stored, 1, 2)[:, :, np.argsort(order)]


def read_window(file: h5py.File, path: Path, meta: Product, rows: slice, cols: slice) -> np.ndarray:
    """(h, w, L) float32 reflectance of the joined cube in ``rows`` x ``cols``, NaN at the
    pixels whose digital numbers are 0 in every band."""
    vnir, swir = _cubes(file, path)
    parts = [
        _read_cube(cube, indices, rows, cols) for cube, indices in zip((vnir, swir), meta.indices)
    ]
    empty = np.all(parts[0] == 0, axis=2) & np.all(parts[1] == 0, axis=2)
    block = np.concatenate(
        [
            np.float32(low) + dn.astype(np.float32) * np.float32(step)
            for dn, (low, step) in zip(parts, meta.scales)
        ],
        axis=2,
    )
    block[empty] = np.nan
    return block


def read(path: Path) -> CubeData:
    """The reflectance cube (rows, cols, bands) of a PRISMA L2D product, bands in
    increasing wavelength (float32, NaN at no-data pixels), on its UTM grid."""
    with open_product(path, "PRISMA product") as file:
        meta = _product(file, path)
        cube = read_window(file, path, meta, slice(None), slice(None))
    return product_data(meta, cube, product="PRISMA L2D", vnir_bands=int(meta.indices[0].size))


def describe(path: Path) -> CubeHeader:
    """Shape, wavelengths and georeferencing of the joined cube, and the product's FWHM,
    scaling, no-data and overlap handling."""
    with open_product(path, "PRISMA product") as file:
        meta = _product(file, path)
        dtype = _cubes(file, path)[0].dtype.name
    scales = ", ".join(
        f"{name} {low:g} + DN x {step:.6g}"
        for name, (low, step) in zip(("VNIR", "SWIR"), meta.scales)
    )
    n_vnir, n_swir = (indices.size for indices in meta.indices)
    return product_header(
        meta,
        dtype,
        "PRISMA L2D",
        {
            "scale": f"to reflectance: {scales}",
            "no-data": "DN 0 in every band",
            "bands": f"{n_vnir} VNIR + {n_swir} SWIR (overlap kept from SWIR)",
        },
    )
