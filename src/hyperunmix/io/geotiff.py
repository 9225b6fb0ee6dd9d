"""GeoTIFF cubes and maps through rasterio: CRS, affine transform, nodata, band names,
wavelengths and bad bands are read and written; GDAL masks and alpha bands (into the
scene's mask) and band scales and offsets (applied) are read.

Band metadata written: the description (band name), the GDAL ``IMAGERY`` items
``CENTRAL_WAVELENGTH_UM`` / ``FWHM_UM``, and a ``bbl`` tag ("0" for a bad band, as ENVI's
bad-band list).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.enums import Interleaving

from .._atomic import atomic_path
from ..errors import FileFormatError
from ._common import CubeData, CubeHeader, library_errors
from ._raster import (
    band_axis,
    create_raster,
    geo_from_dataset,
    open_quietly,
    spectral_bands,
    valid_pixels,
)

_BAD_BAND_TAG = "bbl"


def band_scaling(dataset, bands: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """GDAL's scales and offsets of ``bands`` (float32 vectors); None when every band has
    scale 1 and offset 0."""
    scales = np.array([dataset.scales[b - 1] for b in bands], dtype=np.float32)
    offsets = np.array([dataset.offsets[b - 1] for b in bands], dtype=np.float32)
    if np.all(scales == 1) and np.all(offsets == 0):
        return None
    return scales, offsets


def apply_scaling(
    raw: np.ndarray, scales: np.ndarray, offsets: np.ndarray, nodata: float | None
) -> np.ndarray:
    """``raw * scales + offsets`` per band (raw (..., L)), as float32 with NaN at the no-data
    pixels.

    No-data pixels (all bands at the nodata value) are found before scaling: the value is
    one of the stored encoding.
    """
    cube = raw.astype(np.float32) * scales + offsets
    if nodata is not None and not np.isnan(nodata):
        cube[np.all(raw == nodata, axis=-1)] = np.nan
    return cube


def bad_bands(dataset, bands: list[int]) -> np.ndarray:
    """Indices into ``bands`` of those whose ``bbl`` tag is "0"."""
    flags = [dataset.tags(band).get(_BAD_BAND_TAG) for band in bands]
    return np.flatnonzero(np.array([flag == "0" for flag in flags], dtype=bool))


def read(path: Path) -> CubeData:
    """The cube (H, W, L) of a GeoTIFF (or any raster GDAL reads) with its metadata.

    Alpha bands are left out of the cube and, with GDAL's per-dataset mask, make the
    mask. GDAL band scales and offsets are applied (a float32 cube in physical units).
    """
    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        bands = checked_bands(dataset, path)
        cube = np.moveaxis(dataset.read(bands), 0, 2)
        nodata = dataset.nodata
        metadata = {"driver": dataset.driver}
        scaling = band_scaling(dataset, bands)
        if scaling is not None:
            cube = apply_scaling(cube, *scaling, nodata)
            # The scaled cube holds NaN at no-data; the stored value means nothing on the
            # new scale, so the scene is not given it, only told it as metadata.
            if nodata is not None and not np.isnan(nodata):
                metadata["nodata"] = nodata
            nodata = None
        wavelengths, fwhm = band_axis(dataset, bands)
        descriptions = [dataset.descriptions[b - 1] for b in bands]
        return CubeData(
            cube=cube,
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=bad_bands(dataset, bands),
            band_names=descriptions if all(descriptions) else None,
            geo=geo_from_dataset(dataset),
            nodata=nodata,
            mask=valid_pixels(dataset, bands),
            metadata=metadata,
        )


def checked_bands(dataset, path: Path) -> list[int]:
    """The bands of the cube (:func:`spectral_bands`), once the file is known whole: both
    read and describe report a truncated file, in the same words."""
    _check_not_truncated(dataset, path)
    bands = spectral_bands(dataset)
    if not bands:
        raise FileFormatError(f"{path} holds alpha bands only, no spectral band")
    return bands


def _check_not_truncated(dataset, path: Path) -> None:
    """A GeoTIFF whose last block (strip or tile) of a band ends past the end of the file
    is truncated. GDAL writes each band's blocks in order, so a file cut short loses the
    last ones; checking those few keeps describe instant on any size."""
    if dataset.driver != "GTiff":
        return
    size = path.stat().st_size
    planes = range(1, dataset.count + 1) if dataset.interleaving == Interleaving.band else [1]
    end = 0
    for band in planes:
        *_, ((row, col), _) = dataset.block_windows(band)
        offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
        length = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
        if offset:  # none for a block never written (a sparse file)
            end = max(end, int(offset) + int(length or 0))
    if end > size:
        raise FileFormatError(
            f"{path} is truncated: its data run to byte {end} but the file holds {size} bytes"
        )


def describe(path: Path) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing from the GeoTIFF's header (alpha
    bands are no bands of the cube)."""
    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        bands = checked_bands(dataset, path)
        return CubeHeader(
            shape=(dataset.height, dataset.width, len(bands)),
            dtype=dataset.dtypes[bands[0] - 1],
            wavelengths=band_axis(dataset, bands)[0],
            geo=geo_from_dataset(dataset),
        )


def write(path: Path, data: CubeData) -> None:
    """Write ``data`` as a float32, deflate-compressed GeoTIFF with NaN as nodata."""
    bad = set() if data.bad_bands is None else set(np.asarray(data.bad_bands).tolist())
    with (
        atomic_path(path) as tmp,
        create_raster(
            tmp, data, "GTiff", nodata=np.nan, compress="deflate", predictor=3, BIGTIFF="IF_SAFER"
        ) as dataset,
    ):
        for band in range(data.cube.shape[2]):
            if data.wavelengths is not None:
                imagery = {"CENTRAL_WAVELENGTH_UM": f"{data.wavelengths[band] / 1e3:.9g}"}
                if data.fwhm is not None:
                    imagery["FWHM_UM"] = f"{data.fwhm[band] / 1e3:.9g}"
                dataset.update_tags(band + 1, ns="IMAGERY", **imagery)
            if bad:
                dataset.update_tags(band + 1, **{_BAD_BAND_TAG: "0" if band in bad else "1"})
