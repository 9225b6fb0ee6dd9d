"""NumPy cubes: a bare ``.npy`` array, or an ``.npz`` archive of named arrays.

Keys of an ``.npz`` scene, read and written: ``cube`` (H, W, L), or a pixel matrix
shaped with ``rows=`` / ``cols=``, row-major unless ``order="F"``; optional
``wavelengths`` (nm; values all below 30 are taken as micrometres), ``fwhm``,
``bad_bands`` (indices), ``band_names``, ``crs`` and ``transform`` (6 affine
coefficients), ``nodata``, and ground truth as ``truth_abundances`` (H, W, P),
``truth_endmembers`` (P, L), ``truth_names``, ``truth_convention`` (``"absolute"``, the
default, or ``"shares"``: see :mod:`hyperunmix.conventions`). A ``.npy`` file holds the
array alone.
Nothing is unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from .._atomic import atomic_path
from ..errors import FileFormatError
from ..scene import GeoInfo, Truth
from ._common import CubeData, CubeHeader, band_axis_in_nm, library_errors
from ._layout import as_image, matrix_layout

_TRUTH_KEYS = {"truth_abundances": "abundances", "truth_endmembers": "endmembers"}


def _open_archive(path: Path) -> np.lib.npyio.NpzFile:
    with library_errors(path, "read the NumPy archive"):
        return np.load(path, allow_pickle=False)


def _cube_key(archive: np.lib.npyio.NpzFile, key: str | None, path: Path) -> str:
    key = "cube" if key is None else key
    if key not in archive.files:
        listed = ", ".join(archive.files) or "nothing"
        raise FileFormatError(
            f"{path} has no {key!r} array (it holds: {listed}); choose the cube with key="
        )
    return key


def _optional(archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray | None:
    return archive[key] if key in archive.files else None


def _geo(archive: np.lib.npyio.NpzFile) -> GeoInfo | None:
    transform = _optional(archive, "transform")
    if transform is None:
        return None
    crs = _optional(archive, "crs")
    return GeoInfo(crs=None if crs is None else str(crs), transform=tuple(transform.ravel()))


def _truth(archive: np.lib.npyio.NpzFile) -> Truth | None:
    parts = {field: archive[key] for key, field in _TRUTH_KEYS.items() if key in archive.files}
    names = _optional(archive, "truth_names")
    if not parts and names is None:
        return None
    convention = _optional(archive, "truth_convention")
    return Truth(
        abundances=parts.get("abundances"),
        endmembers=parts.get("endmembers"),
        names=None if names is None else [str(n) for n in names],
        convention="absolute" if convention is None else str(convention),
    )


def read(
    path: Path,
    key: str | None = None,
    rows: int | None = None,
    cols: int | None = None,
    order: str = "C",
) -> CubeData:
    """The cube of a ``.npy`` file, or of array ``key`` (default ``cube``) of an ``.npz``."""
    if not zipfile.is_zipfile(path):
        with library_errors(path, "read the NumPy array"):
            array = np.load(path, allow_pickle=False)
        return CubeData(cube=as_image(array, rows, cols, order, path))
    with _open_archive(path) as archive, library_errors(path, "read the NumPy archive"):
        key = _cube_key(archive, key, path)
        names = _optional(archive, "band_names")
        nodata = _optional(archive, "nodata")
        wavelengths, fwhm = band_axis_in_nm(
            _optional(archive, "wavelengths"), _optional(archive, "fwhm")
        )
        return CubeData(
            cube=as_image(archive[key], rows, cols, order, f"{key!r} in {path}"),
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=_optional(archive, "bad_bands"),
            band_names=None if names is None else [str(n) for n in names],
            geo=_geo(archive),
            nodata=None if nodata is None else float(nodata),
            truth=_truth(archive),
            metadata={"key": key},
        )


def _member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of an .npz, from its header alone."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(stream)
    return shape, dtype


def describe(
    path: Path, key: str | None = None, rows: int | None = None, cols: int | None = None
) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing without loading the cube."""
    wavelengths, geo = None, None
    with library_errors(path, "read the NumPy file"):
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as archive:
                key = _cube_key(archive, key, path)
                wavelengths = band_axis_in_nm(_optional(archive, "wavelengths"))[0]
                geo = _geo(archive)
            shape, dtype = _member_header(path, key)
        else:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, dtype = array.shape, array.dtype
    if len(shape) == 2:
        shape = matrix_layout(shape, rows, cols, str(path))[:3]
    if len(shape) != 3:
        raise FileFormatError(
            f"{path} has shape {shape}; a cube is (H, W, L) or a pixel matrix (L x N or N x L)"
        )
    return CubeHeader(shape=shape, dtype=np.dtype(dtype).name, wavelengths=wavelengths, geo=geo)


def _archive_content(data: CubeData) -> dict[str, np.ndarray]:
    content = {data.array_name: np.asarray(data.cube, dtype=np.float32)}
    optional: dict[str, ArrayLike | None] = {
        "wavelengths": data.wavelengths,
        "fwhm": data.fwhm,
        "bad_bands": data.bad_bands if data.bad_bands is not None and len(data.bad_bands) else None,
        "band_names": None if data.band_names is None else np.asarray(data.band_names, str),
        "nodata": data.nodata,
    }
    if data.geo is not None:
        optional["transform"] = np.asarray(data.geo.transform)
        optional["crs"] = data.geo.crs
    if data.truth is not None:
        optional.update({key: getattr(data.truth, field) for key, field in _TRUTH_KEYS.items()})
        optional["truth_names"] = (
            None if data.truth.names is None else np.asarray(data.truth.names, str)
        )
        optional["truth_convention"] = np.asarray(data.truth.convention, str)
    content.update({key: np.asarray(value) for key, value in optional.items() if value is not None})
    return content


def write(path: Path, data: CubeData) -> None:
    """Write the cube alone to a ``.npy`` path; the cube and its metadata otherwise."""
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        if path.suffix.lower() == ".npy":
            np.save(stream, np.asarray(data.cube, dtype=np.float32))
        else:
            # No object arrays: the readers load with allow_pickle=False.
            np.savez_compressed(stream, allow_pickle=False, **_archive_content(data))
