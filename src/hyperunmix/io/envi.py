"""ENVI images: a text header (.hdr) beside a raw binary data file.

Reading goes through ``spectral`` (any interleave, byte order, header offset), with the
header fields ``wavelength`` / ``wavelength units``, ``fwhm``, ``bbl`` (bad-band list),
``data ignore value``, ``reflectance scale factor`` and ``band names``; ``map info`` and
``coordinate system string`` become a GeoInfo through GDAL, which knows every ENVI
projection name. Writing goes through GDAL's ENVI driver, which writes standard ``map
info`` / ``coordinate system string`` for any CRS and rotation (``spectral`` has no
georeferencing writer).
"""

from __future__ import annotations

import contextlib
import locale
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import spectral.io.envi as spectral_envi
from rasterio.windows import Window
from spectral.io.envi import SpectralLibrary
from spectral.io.spyfile import SpyFile

from .._atomic import atomic_path
from ..errors import FileFormatError
from ..scene import GeoInfo
from ._common import SPECTRAL_LIBRARY, CubeData, CubeHeader, band_axis_in_nm, library_errors
from ._envi_paths import ENVI_DATA_EXTENSIONS, ENVI_LIBRARY_EXTENSION, envi_header_of
from ._raster import (
    create_raster,
    geo_from_dataset,
    open_quietly,
    spectral_bands,
    valid_pixels,
)

#: Header keys whose presence means the image is georeferenced.
_GEOREFERENCE_KEYS = ("map info", "coordinate system string")
#: Interleave -> (axes of the data file, r(ows) c(olumns) b(ands); its transpose to bip).
_INTERLEAVE_AXES = {
    "bsq": ("brc", (1, 2, 0)),
    "bil": ("rbc", (0, 2, 1)),
    "bip": ("rcb", (0, 1, 2)),
}


# -- reading -----------------------------------------------------------------------------
def _header_and_data(path: Path) -> tuple[Path, Path]:
    """The (header, data file) pair of ``path``, which may name either."""
    if path.suffix.lower() == ".hdr":
        stem = path.with_suffix("")
        extensions = (*ENVI_DATA_EXTENSIONS, ENVI_LIBRARY_EXTENSION)
        candidates = [stem] + [
            stem.with_name(stem.name + ext) for base in extensions for ext in (base, base.upper())
        ]
        data = next((c for c in candidates if c.is_file()), None)
        if data is None:
            raise FileFormatError(
                f"no ENVI data file beside {path} (looked for {stem.name} with no "
                f"extension or one of {', '.join(extensions)})"
            )
        return path, data
    header = envi_header_of(path)
    if header is None:
        raise FileFormatError(
            f"no ENVI header beside {path} (looked for "
            f"{path.with_suffix('.hdr').name} and {path.name}.hdr)"
        )
    return header, path


@contextlib.contextmanager
def _decodable(header: Path) -> Iterator[Path]:
    """``header``, or a copy of it that ``spectral`` can decode.

    ``spectral`` reads headers in the locale's encoding (UTF-8) and takes any other byte
    for a binary file, while ENVI and GDAL write descriptions in Latin-1 too: such a
    header is decoded as Latin-1 (every byte is a character there) into a temporary copy.
    """
    encoding = locale.getpreferredencoding(False)
    raw = header.read_bytes()
    try:
        raw.decode(encoding)
        text = None
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if text is None:
        yield header
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / header.name
        copy.write_text(text, encoding=encoding, errors="replace")
        yield copy


def open_spectral(header: Path, data: Path) -> SpyFile | SpectralLibrary:
    """The image or spectral library ``spectral`` makes of a header and its data file."""
    with library_errors(header, "read the ENVI header"), _decodable(header) as readable:
        return spectral_envi.open(str(readable), str(data))


def _open(path: Path) -> tuple[SpyFile | SpectralLibrary, Path, Path]:
    """The image or spectral library ``spectral`` makes of ``path``, its header and data file."""
    header, data = _header_and_data(path)
    return open_spectral(header, data), header, data


def _checked_image(
    image: SpyFile | SpectralLibrary, header: Path, data: Path
) -> tuple[SpyFile, Path, Path]:
    """What :func:`_open` returned, for an image whose header agrees with its data file:
    anything else is a FileFormatError, a spectral library included."""
    if isinstance(image, SpectralLibrary):
        n_spectra, n_bands = image.spectra.shape
        raise FileFormatError(
            f"{data} is an ENVI spectral library ({n_spectra} spectra of {n_bands} bands), "
            "not an image: read its spectra with hyperunmix.io.read_endmembers"
        )
    _check_size(image, header, data)
    _scale(image.metadata, header)  # a broken factor fails describe as it fails read
    return image, header, data


def _check_size(image: SpyFile, header: Path, data: Path) -> None:
    """Negative sizes, and a data file shorter than its header says (which would be read
    past its end), are FileFormatErrors. An empty image is left to the scene (or the
    chunked reader) to refuse, in its own words."""
    sizes = (image.nrows, image.ncols, image.nbands)
    if min(sizes) < 0:
        raise FileFormatError(
            f"{header} describes an image of {image.nrows} lines x {image.ncols} samples x "
            f"{image.nbands} bands: a size cannot be negative"
        )
    expected = image.offset + image.nrows * image.ncols * image.nbands * image.sample_size
    actual = data.stat().st_size
    if actual < expected:
        raise FileFormatError(
            f"{data} is truncated: {header.name} describes {image.nrows} x {image.ncols} x "
            f"{image.nbands} {np.dtype(image.dtype).name} values ({expected} bytes with the "
            f"offset) but the file holds {actual} bytes"
        )


def _memmap(image: SpyFile, data: Path) -> np.ndarray:
    """A read-only (H, W, L) memory map of the data file (an empty array for an empty
    image, which the scene refuses).

    Made here rather than by ``spectral``'s ``open_memmap``, which swallows the reason a
    map fails and then reports "axes don't match array".
    """
    interleave = image.metadata.get("interleave", "bsq").lower()
    stored, to_bip = _INTERLEAVE_AXES.get(interleave, _INTERLEAVE_AXES["bsq"])
    sizes = {"r": image.nrows, "c": image.ncols, "b": image.nbands}
    if 0 in sizes.values():  # nothing to map, and an empty data file cannot be mapped
        return np.zeros((image.nrows, image.ncols, image.nbands), dtype=image.dtype)
    with library_errors(data, "map the ENVI data file"):
        mapped = np.memmap(
            data,
            dtype=image.dtype,
            mode="r",
            offset=image.offset,
            shape=tuple(sizes[axis] for axis in stored),
        )
    return mapped.transpose(to_bip)


def _band_axis(
    metadata: dict[str, Any], header: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    with library_errors(header, "parse the wavelengths of"):
        return band_axis_in_nm(
            metadata.get("wavelength"), metadata.get("fwhm"), metadata.get("wavelength units")
        )


def _geo(image: SpyFile, data: Path) -> GeoInfo | None:
    if not any(key in image.metadata for key in _GEOREFERENCE_KEYS):
        return None
    with library_errors(data, "read the ENVI map info of"), open_quietly(data) as dataset:
        return geo_from_dataset(dataset)


def has_gdal_mask(data: Path) -> bool:
    """Whether GDAL's mask side-car of the data file (``x.img.msk``) is there."""
    return data.with_name(data.name + ".msk").is_file()


def gdal_mask(data: Path, window: Window | None = None) -> np.ndarray | None:
    """Valid pixels (H, W) of GDAL's mask side-car of the data file (``x.img.msk``), if
    any, over ``window`` (default: the whole image)."""
    if not has_gdal_mask(data):
        return None
    with library_errors(data, "read the GDAL mask of"), open_quietly(data) as dataset:
        return valid_pixels(dataset, spectral_bands(dataset), window)


def _bad_bands(image: SpyFile, header: Path) -> np.ndarray:
    if "bbl" not in image.metadata:
        return np.zeros(0, dtype=np.intp)
    with library_errors(header, "parse the bad-band list (bbl) of"):
        good = np.asarray(image.metadata["bbl"], dtype=np.float64)
    if good.size != image.nbands:
        raise FileFormatError(
            f"{header} has a bad-band list (bbl) of {good.size} entries for {image.nbands} bands"
        )
    return np.flatnonzero(good == 0)


def _optional_float(metadata: dict[str, Any], header: Path, key: str) -> float | None:
    if key not in metadata:
        return None
    with library_errors(header, f"parse the {key!r} of"):
        return float(metadata[key])


def _scale(metadata: dict[str, Any], header: Path) -> float | None:
    """The factor to physical units: 1 / ``reflectance scale factor``, None without one."""
    factor = _optional_float(metadata, header, "reflectance scale factor")
    if factor is None:
        return None
    if factor == 0 or not np.isfinite(factor):
        raise FileFormatError(
            f"{header} has a reflectance scale factor of {factor:g}: it must be a finite, "
            "nonzero number (the stored value of reflectance 1)"
        )
    return 1.0 / factor


def read(path: Path) -> CubeData:
    """The cube (H, W, L) of an ENVI image (``path`` names the header or the data file).

    The cube is a read-only memory map of the data file, in the file's dtype. The mask is
    GDAL's side-car mask (``x.img.msk``) when there is one.
    """
    image, header, data = _checked_image(*_open(path))
    cube = _memmap(image, data)
    wavelengths, fwhm = _band_axis(image.metadata, header)
    return CubeData(
        cube=cube,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=_bad_bands(image, header),
        band_names=image.metadata.get("band names"),
        geo=_geo(image, data),
        nodata=_optional_float(image.metadata, header, "data ignore value"),
        scale=_scale(image.metadata, header),
        mask=gdal_mask(data),
        metadata={
            "interleave": image.metadata.get("interleave", "bsq").lower(),
            "data_file": str(data),
        },
    )


def describe(path: Path) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing from the header alone; for a spectral
    library, its (spectra, bands) shape and wavelengths.

    An image's header is checked against its data file as :func:`read` checks it.
    """
    opened = _open(path)
    library = opened[0]
    if isinstance(library, SpectralLibrary):
        return CubeHeader(
            shape=library.spectra.shape,
            dtype=library.spectra.dtype.name,
            wavelengths=_library_wavelengths(library, opened[1]),
            kind=SPECTRAL_LIBRARY,
        )
    image, header, data = _checked_image(*opened)
    return CubeHeader(
        shape=(image.nrows, image.ncols, image.nbands),
        dtype=np.dtype(image.dtype).name,
        wavelengths=_band_axis(image.metadata, header)[0],
        geo=_geo(image, data),
        mapped=True,
    )


def _library_wavelengths(library: SpectralLibrary, header: Path) -> np.ndarray | None:
    """The band centres of a library in nm (``spectral`` keeps them apart from its metadata)."""
    bands = library.bands
    fields = {"wavelength": bands.centers, "wavelength units": bands.band_unit}
    return _band_axis(fields, header)[0]


def read_library(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The spectra of an ENVI spectral library (``path`` names the header or the ``.sli``).

    Returns
    -------
    spectra : (N, L) float64
        Divided by the ``reflectance scale factor`` when the header has one.
    wavelengths : (L,) float64 in nm, or None
    names : list of N str
        The ``spectra names``, else ``"1"`` ... ``"N"`` (as ``spectral`` numbers them).
    """
    library, header, _ = _open(path)
    if not isinstance(library, SpectralLibrary):
        raise FileFormatError(
            f"{header} describes an image, not an ENVI spectral library: open it with "
            "hyperunmix.open"
        )
    scale = _scale(library.metadata, header)
    spectra = np.asarray(library.spectra, dtype=np.float64)
    if scale is not None:
        spectra = spectra * scale
    return spectra, _library_wavelengths(library, header), [str(n) for n in library.names]


# -- writing -----------------------------------------------------------------------------
def _envi_list(values: np.ndarray) -> str:
    return "{" + ", ".join(f"{float(v):.10g}" for v in values) + "}"


def _header_fields(data: CubeData) -> dict[str, str]:
    """Band metadata as ENVI header fields (GDAL writes its "ENVI" metadata domain there)."""
    fields = {}
    if data.wavelengths is not None:
        fields["wavelength"] = _envi_list(data.wavelengths)
        fields["wavelength_units"] = "Nanometers"
    if data.fwhm is not None:
        fields["fwhm"] = _envi_list(data.fwhm)
    if data.bad_bands is not None and len(data.bad_bands):
        good = np.ones(data.cube.shape[2])
        good[np.asarray(data.bad_bands)] = 0
        fields["bbl"] = _envi_list(good)
    return fields


def output_paths(path: Path) -> tuple[Path, Path]:
    """(data file, header) written for ``path``: ``x.hdr`` -> ``x.img`` + ``x.hdr``;
    ``x.img`` (or .dat, .bsq, ...) -> itself + ``x.hdr``."""
    if path.suffix.lower() == ".hdr":
        return path.with_suffix(".img"), path
    return path, path.with_suffix(".hdr")


def write(path: Path, data: CubeData) -> None:
    """Write ``data`` as a float32 BSQ ENVI image, the data file first, the header last.

    Each file is written under a temporary name and renamed when complete, so a failure
    leaves no file under either final name, and a header never describes missing data.
    """
    data_path, header_path = output_paths(path)
    fields = _header_fields(data)
    with atomic_path(header_path) as tmp_header, atomic_path(data_path) as tmp_data:
        gdal_header = tmp_data.with_suffix(".hdr")
        try:
            with create_raster(tmp_data, data, "ENVI") as dataset:
                if fields:
                    dataset.update_tags(ns="ENVI", **fields)
            # GDAL's header describes the image by its (temporary) data file name.
            tmp_header.write_text(gdal_header.read_text().replace(tmp_data.name, data_path.name))
        finally:
            gdal_header.unlink(missing_ok=True)
