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

from pathlib import Path

import numpy as np
import spectral.io.envi as spectral_envi
from spectral.io.spyfile import SpyFile

from .._atomic import atomic_path
from ..errors import FileFormatError
from ..scene import GeoInfo
from ._common import CubeData, CubeHeader, band_axis_in_nm, library_errors
from ._envi_paths import ENVI_DATA_EXTENSIONS, envi_header_of
from ._raster import create_raster, geo_from_dataset, open_quietly

#: Header keys whose presence means the image is georeferenced.
_GEOREFERENCE_KEYS = ("map info", "coordinate system string")


# -- reading -----------------------------------------------------------------------------
def _header_and_data(path: Path) -> tuple[Path, Path]:
    """The (header, data file) pair of ``path``, which may name either."""
    if path.suffix.lower() == ".hdr":
        stem = path.with_suffix("")
        candidates = [stem] + [
            stem.with_name(stem.name + ext)
            for base in ENVI_DATA_EXTENSIONS
            for ext in (base, base.upper())
        ]
        data = next((c for c in candidates if c.is_file()), None)
        if data is None:
            raise FileFormatError(
                f"no ENVI data file beside {path} (looked for {stem.name} with no "
                f"extension or one of {', '.join(ENVI_DATA_EXTENSIONS)})"
            )
        return path, data
    header = envi_header_of(path)
    if header is None:
        raise FileFormatError(
            f"no ENVI header beside {path} (looked for "
            f"{path.with_suffix('.hdr').name} and {path.name}.hdr)"
        )
    return header, path


def _open(path: Path) -> tuple[SpyFile, Path, Path]:
    header, data = _header_and_data(path)
    with library_errors(header, "read the ENVI header"):
        image = spectral_envi.open(str(header), str(data))
    return image, header, data


def _check_size(image: SpyFile, header: Path, data: Path) -> None:
    """A data file shorter than its header says would be read past its end."""
    expected = image.offset + image.nrows * image.ncols * image.nbands * image.sample_size
    actual = data.stat().st_size
    if actual < expected:
        raise FileFormatError(
            f"{data} is truncated: {header.name} describes {image.nrows} x {image.ncols} x "
            f"{image.nbands} {np.dtype(image.dtype).name} values ({expected} bytes with the "
            f"offset) but the file holds {actual} bytes"
        )


def _band_axis(image: SpyFile, header: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    meta = image.metadata
    with library_errors(header, "parse the wavelengths of"):
        return band_axis_in_nm(
            meta.get("wavelength"), meta.get("fwhm"), meta.get("wavelength units")
        )


def _geo(image: SpyFile, data: Path) -> GeoInfo | None:
    if not any(key in image.metadata for key in _GEOREFERENCE_KEYS):
        return None
    with library_errors(data, "read the ENVI map info of"), open_quietly(data) as dataset:
        return geo_from_dataset(dataset)


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


def _optional_float(image: SpyFile, header: Path, key: str) -> float | None:
    if key not in image.metadata:
        return None
    with library_errors(header, f"parse the {key!r} of"):
        return float(image.metadata[key])


def read(path: Path) -> CubeData:
    """The cube (H, W, L) of an ENVI image (``path`` names the header or the data file).

    The cube is a read-only memory map of the data file, in the file's dtype.
    """
    image, header, data = _open(path)
    _check_size(image, header, data)
    with library_errors(data, "map the ENVI data file"):
        cube = image.open_memmap(interleave="bip")
    wavelengths, fwhm = _band_axis(image, header)
    reflectance_factor = _optional_float(image, header, "reflectance scale factor")
    return CubeData(
        cube=cube,
        wavelengths=wavelengths,
        fwhm=fwhm,
        bad_bands=_bad_bands(image, header),
        band_names=image.metadata.get("band names"),
        geo=_geo(image, data),
        nodata=_optional_float(image, header, "data ignore value"),
        scale=None if reflectance_factor is None else 1.0 / reflectance_factor,
        metadata={
            "interleave": image.metadata.get("interleave", "bsq").lower(),
            "data_file": str(data),
        },
    )


def describe(path: Path) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing from the header alone."""
    image, header, data = _open(path)
    return CubeHeader(
        shape=(image.nrows, image.ncols, image.nbands),
        dtype=np.dtype(image.dtype).name,
        wavelengths=_band_axis(image, header)[0],
        geo=_geo(image, data),
    )


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
