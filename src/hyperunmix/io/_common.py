"""Pieces every format shares: the cube-with-metadata record readers return and writers
take, wavelength units, the conversion to and from :class:`~hyperunmix.scene.Scene`, and
turning a library's exception into one clear :class:`~hyperunmix.errors.FileFormatError`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from ..errors import FileFormatError, HyperunmixError, InputError
from ..scene import GeoInfo, Scene, Truth

#: Length units (lower case, as ENVI headers, NetCDF attributes and GDAL spell them) -> nm.
_NM_PER_UNIT = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micrometre": 1e3,
    "micrometres": 1e3,
    "mm": 1e6,
    "millimeters": 1e6,
    "cm": 1e7,
    "centimeters": 1e7,
    "m": 1e9,
    "meters": 1e9,
    "angstrom": 0.1,
    "angstroms": 0.1,
}
#: Band axes labelled in units that are not lengths: their values are no wavelengths.
_NOT_WAVELENGTH_UNITS = {"index", "wavenumber", "ghz", "mhz"}
#: Below this a wavelength axis without units is taken to be in micrometres.
_MICROMETRE_HEURISTIC_LIMIT = 30.0


@dataclass
class CubeData:
    """A cube and the metadata a file can carry, in the package's conventions.

    Readers return it, writers take it; :func:`to_scene` and :func:`from_scene` convert
    from and to a :class:`~hyperunmix.scene.Scene`.

    Attributes
    ----------
    cube : (H, W, L) array
        The file's dtype on reading; float32 with NaN at invalid pixels on writing.
    wavelengths, fwhm : (L,) float64 in nm, or None
    bad_bands : (k,) int indices, or None
    band_names : list of L str, or None
    geo : GeoInfo or None
    nodata : float or None
        Value the file declares for missing pixels.
    scale : float or None
        Factor to physical units the file declares (e.g. an ENVI reflectance scale factor).
    mask : (H, W) bool array or None
        False at pixels the file marks invalid apart from its nodata value (a GDAL mask
        or alpha band).
    truth : Truth or None
    array_name : str
        Name of the array in formats that name it (NetCDF variable, .npz / .mat key).
    metadata : dict
        Format-specific extras (the .mat key read, the ENVI interleave, ...).
    """

    cube: np.ndarray
    wavelengths: np.ndarray | None = None
    fwhm: np.ndarray | None = None
    bad_bands: np.ndarray | None = None
    band_names: list[str] | None = None
    geo: GeoInfo | None = None
    nodata: float | None = None
    scale: float | None = None
    mask: np.ndarray | None = None
    truth: Truth | None = None
    array_name: str = "cube"
    metadata: dict[str, Any] = field(default_factory=dict)


#: :attr:`CubeHeader.kind` of an image.
IMAGE = "image"
#: :attr:`CubeHeader.kind` of a file of spectra (an ENVI spectral library), which
#: :func:`~hyperunmix.io.describe` describes and :func:`~hyperunmix.io.open_scene` refuses.
SPECTRAL_LIBRARY = "spectral library"


@dataclass
class CubeHeader:
    """What :func:`hyperunmix.io.describe` learns from a file without loading its cube.

    Attributes
    ----------
    shape : tuple of int
        (H, W, L) of an image; (N, L), N spectra of L bands, of a spectral library.
    dtype : str
        The stored dtype.
    wavelengths : (L,) float64 in nm, or None
    geo : GeoInfo or None
    kind : {IMAGE, SPECTRAL_LIBRARY}
    mapped : bool
        Whether the reader memory-maps the data (ENVI) rather than loading them.
    details : dict
        What else ``hyperunmix info`` lists, name -> printable value: a sensor product's
        FWHM, bad bands, scale to reflectance, no-data value, ...
    """

    shape: tuple[int, ...]
    dtype: str
    wavelengths: np.ndarray | None = None
    geo: GeoInfo | None = None
    kind: str = IMAGE
    mapped: bool = False
    details: dict[str, str] = field(default_factory=dict)


# -- files and errors --------------------------------------------------------------------
def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a FileFormatError when there is no such file."""
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory, not a file")
    if not path.is_file():
        raise FileFormatError(f"{path} does not exist")
    return path


@contextlib.contextmanager
def library_errors(path: str | os.PathLike, action: str) -> Iterator[None]:
    """Re-raise whatever a reading library throws as one FileFormatError sentence.

    ``action`` completes "cannot ...", e.g. ``"read it as a GeoTIFF"``. Our own errors
    pass through unchanged; so does MemoryError, which says something else entirely.
    """
    try:
        yield
    except (HyperunmixError, MemoryError):
        raise
    except Exception as exc:  # the libraries raise anything from EOFError to CPLE_* errors
        raise FileFormatError(f"cannot {action} {path}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The most specific message of an exception chain: rasterio, for one, raises "Read
    failed. See previous exception for details" from the GDAL error that says why."""
    while exc.__cause__ is not None and str(exc.__cause__).strip():
        exc = exc.__cause__
    return str(exc).strip().rstrip(".") or type(exc).__name__


# -- memory ------------------------------------------------------------------------------
#: Bytes per value a scene takes besides the array read: its float32 cube, and the
#: boolean array of the finite-value check made while it is built.
_SCENE_BYTES_PER_VALUE = 4 + 1
#: Bytes per value read assumed for a dtype NumPy does not name (GDAL's complex integers).
_UNKNOWN_ITEMSIZE = 8
#: Where a cube too large for memory can be unmixed.
CHUNKED_PATH = (
    "unmix it in chunks instead: hyperunmix unmix {path} ... --chunks 512 "
    "(hyperunmix.scale.unmix_large in Python; see docs/scaling.md)"
)


def check_memory(path: Path, header: CubeHeader) -> None:
    """An InputError, pointing to the chunked path, when loading the cube ``header``
    describes would take more memory than is available.

    Counted: the array read (unless memory-mapped), the scene's float32 cube and the
    boolean array of its finite-value check, which all live at once.
    """
    try:
        itemsize = np.dtype(header.dtype).itemsize
    except TypeError:
        itemsize = _UNKNOWN_ITEMSIZE
    if header.mapped:
        itemsize = 0  # the pages of a memory map are the system's cache, given back at need
    needed = math.prod(header.shape) * (itemsize + _SCENE_BYTES_PER_VALUE)
    available = psutil.virtual_memory().available
    if needed > available:
        raise InputError(
            f"{path} ({' x '.join(map(str, header.shape))} {header.dtype} values) takes about "
            f"{needed / 2**30:.1f} GiB to load, more than the {available / 2**30:.1f} GiB of "
            f"memory available: {CHUNKED_PATH.format(path=path)}"
        )


# -- band metadata -----------------------------------------------------------------------
def band_axis_in_nm(
    wavelengths: Any, fwhm: Any = None, units: str | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Wavelengths and FWHM (same units) converted to nanometres from ``units``.

    ``units`` is an ENVI / CF / GDAL unit name. Without units, wavelengths all below 30
    are taken as micrometres (no imaging spectrometer measures at 30 nm). A band axis in
    non-length units (``Index``, wavenumbers) gives ``(None, None)``, as do missing
    wavelengths.
    """
    unit = (units or "").strip().lower()
    if wavelengths is None or unit in _NOT_WAVELENGTH_UNITS:
        return None, None
    wavelengths = np.asarray(wavelengths, dtype=np.float64).ravel()
    if unit in _NM_PER_UNIT:
        factor = _NM_PER_UNIT[unit]
    elif wavelengths.size and np.nanmax(wavelengths) < _MICROMETRE_HEURISTIC_LIMIT:
        factor = _NM_PER_UNIT["um"]
    else:
        factor = 1.0
    fwhm = None if fwhm is None else np.asarray(fwhm, dtype=np.float64).ravel() * factor
    return wavelengths * factor, fwhm


def check_band_vector(
    path: str | os.PathLike, what: str, values: Any, n_bands: int
) -> np.ndarray | None:
    """``values`` as a float vector, or a FileFormatError when its length is not L."""
    if values is None:
        return None
    vector = np.asarray(values, dtype=np.float64).ravel()
    if vector.size != n_bands:
        raise FileFormatError(f"{path} lists {vector.size} {what} for {n_bands} bands")
    return vector


# -- Scene <-> CubeData ------------------------------------------------------------------
def to_scene(
    data: CubeData,
    path: Path,
    fmt: str,
    *,
    wavelengths: Any = None,
    scale: float | None = None,
    name: str | None = None,
) -> Scene:
    """Build the Scene of a file from what its reader found.

    ``wavelengths``, ``scale`` and ``name`` override what the file says (the file's
    wavelengths may be missing, e.g. in .mat files).
    """
    n_bands = data.cube.shape[-1]
    if wavelengths is None:
        wavelengths = check_band_vector(path, "wavelengths", data.wavelengths, n_bands)
    else:
        wavelengths = np.asarray(wavelengths, dtype=np.float64).ravel()
        if wavelengths.size != n_bands:
            raise InputError(
                f"{wavelengths.size} wavelengths were given for {path}, which has {n_bands} bands"
            )
    fwhm = check_band_vector(path, "FWHM values", data.fwhm, n_bands)
    if data.band_names is not None and len(data.band_names) != n_bands:
        raise FileFormatError(f"{path} lists {len(data.band_names)} band names for {n_bands} bands")
    metadata = {"format": fmt, "path": str(path), **data.metadata}
    if data.band_names is not None:
        metadata["band_names"] = list(data.band_names)
    nodata = None if data.nodata is None or np.isnan(data.nodata) else float(data.nodata)
    if nodata is not None:
        metadata["nodata"] = nodata
    try:
        return Scene(
            data.cube,
            wavelengths,
            fwhm=fwhm,
            bad_bands=data.bad_bands,
            geo=data.geo,
            truth=data.truth,
            name=name or path.stem,
            scale=data.scale if scale is None else scale,
            mask=data.mask,
            nodata=nodata,
            metadata=metadata,
        )
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc


def from_scene(scene: Scene) -> CubeData:
    """The writable content of ``scene``: float32 cube with NaN at invalid pixels."""
    cube = np.array(scene.cube, dtype=np.float32)
    cube[~scene.mask] = np.nan
    names = scene.metadata.get("band_names")
    if names is not None and len(names) != scene.n_bands:
        names = None  # stale after a band selection
    return CubeData(
        cube=cube,
        wavelengths=scene.wavelengths,
        fwhm=scene.fwhm,
        bad_bands=scene.bad_bands,
        band_names=names,
        geo=scene.geo,
        truth=scene.truth,
    )
