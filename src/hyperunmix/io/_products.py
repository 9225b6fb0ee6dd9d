"""Sensor products stored in HDF5 (EMIT NetCDF-4, PRISMA HDF-EOS5): telling them by their
structure (which datasets and groups a file holds, not what it is called), and what their
readers share: opening the file, the cube record, the band facts ``hyperunmix info`` lists.

Apart from the readers so that recognising a product costs an ``h5py`` open and a few
look-ups, and detection never fails: a file ``h5py`` cannot open is no product.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._common import CubeData, CubeHeader, library_errors

#: EMIT: the cube variables of L2A RFL and L1B RDN, at the root.
EMIT_CUBES = ("reflectance", "radiance")
#: EMIT: the groups of band parameters and of geolocation.
EMIT_BANDS = "sensor_band_parameters"
EMIT_LOCATION = "location"
#: PRISMA L2D: the swath of the hyperspectral cubes, and their names in it.
PRISMA_FIELDS = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields"
PRISMA_CUBES = ("VNIR_Cube", "SWIR_Cube")


def _holds(path: Path, check: Callable[[Any], bool]) -> bool:
    """Whether the HDF5 file ``path`` opens and passes ``check(file)``."""
    import h5py  # here: detection of other formats does not pay for it

    try:
        with h5py.File(path, "r") as file:
            return bool(check(file))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _emit_layout(file: Any) -> bool:
    cube = next((file[name] for name in EMIT_CUBES if name in file), None)
    return (
        cube is not None
        and getattr(cube, "ndim", 0) == 3
        and f"{EMIT_BANDS}/wavelengths" in file
        and f"{EMIT_LOCATION}/glt_x" in file
    )


def is_emit(path: Path) -> bool:
    """Whether ``path`` is an EMIT L2A RFL or L1B RDN granule: a 3-D root ``reflectance``
    or ``radiance``, ``sensor_band_parameters/wavelengths`` and ``location/glt_x``."""
    return _holds(path, _emit_layout)


def is_prisma_l2d(path: Path) -> bool:
    """Whether ``path`` is a PRISMA L2D product: the VNIR and SWIR cubes of its
    ``PRS_L2D_HCO`` swath."""
    return _holds(
        path, lambda file: all(f"{PRISMA_FIELDS}/{cube}" in file for cube in PRISMA_CUBES)
    )


def _band_details(fwhm: np.ndarray | None, bad_bands: np.ndarray, n_bands: int) -> dict[str, str]:
    """The FWHM range and bad bands of a product, as ``info`` rows."""
    rows = {"fwhm": "none" if fwhm is None else f"{fwhm.min():.2f} - {fwhm.max():.2f} nm"}
    rows["bad bands"] = f"{len(bad_bands)} of {n_bands}"
    if len(bad_bands):
        rows["bad bands"] += f" (indices {_runs(np.asarray(bad_bands))})"
    return rows


def _runs(indices: np.ndarray) -> str:
    """Sorted integers as runs: [0, 1, 2, 7, 9, 10] -> "0-2, 7, 9-10"."""
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    runs = np.split(indices, breaks)
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


@contextlib.contextmanager
def open_product(path: Path, what: str) -> Iterator[Any]:
    """``path`` open with ``h5py``; what the library raises, there or while the file is
    read, becomes a FileFormatError ("cannot read the {what} ...")."""
    import h5py

    with library_errors(path, f"open the {what}"):
        file = h5py.File(path, "r")
    with file, library_errors(path, f"read the {what}"):
        yield file


def product_data(meta: Any, cube: np.ndarray, **metadata: Any) -> CubeData:
    """The record of a product's ``cube`` with the band axis, bad bands and georeferencing
    of its metadata ``meta`` (an EMIT Granule or a PRISMA Product)."""
    return CubeData(
        cube=cube,
        wavelengths=meta.wavelengths,
        fwhm=meta.fwhm,
        bad_bands=meta.bad_bands,
        geo=meta.geo,
        metadata=metadata,
    )


def product_header(meta: Any, dtype: str, product: str, details: dict[str, str]) -> CubeHeader:
    """The header of a product's cube: the shape, wavelengths and georeferencing of its
    metadata ``meta``, and for ``hyperunmix info`` the product, its FWHM range and bad bands,
    then ``details``."""
    return CubeHeader(
        shape=meta.shape,
        dtype=dtype,
        wavelengths=meta.wavelengths,
        geo=meta.geo,
        details={
            "product": product,
            **_band_details(meta.fwhm, meta.bad_bands, meta.shape[2]),
            **details,
        },
    )
