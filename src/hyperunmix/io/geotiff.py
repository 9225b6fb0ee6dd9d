"""GeoTIFF cubes and maps through rasterio: CRS, affine transform, nodata, band names,
wavelengths and bad bands are read and written.

Band metadata written: the description (band name), the GDAL ``IMAGERY`` items
``CENTRAL_WAVELENGTH_UM`` / ``FWHM_UM``, and a ``bbl`` tag ("0" for a bad band, as ENVI's
bad-band list).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ._common import CubeData, CubeHeader, library_errors
from ._raster import band_axis, create_raster, geo_from_dataset, open_quietly

_BAD_BAND_TAG = "bbl"


def read(path: Path) -> CubeData:
    """The cube (H, W, L) of a GeoTIFF (or any raster GDAL reads) with its metadata."""
    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        cube = np.moveaxis(dataset.read(), 0, 2)
        wavelengths, fwhm = band_axis(dataset)
        bad_bands = [
            band
            for band in range(dataset.count)
            if dataset.tags(band + 1).get(_BAD_BAND_TAG) == "0"
        ]
        descriptions = list(dataset.descriptions)
        return CubeData(
            cube=cube,
            wavelengths=wavelengths,
            fwhm=fwhm,
            bad_bands=np.asarray(bad_bands, dtype=np.intp),
            band_names=descriptions if all(descriptions) else None,
            geo=geo_from_dataset(dataset),
            nodata=dataset.nodata,
            metadata={"driver": dataset.driver},
        )


def describe(path: Path) -> CubeHeader:
    """Shape, dtype, wavelengths and georeferencing from the GeoTIFF's header."""
    with library_errors(path, "read the raster"), open_quietly(path) as dataset:
        return CubeHeader(
            shape=(dataset.height, dataset.width, dataset.count),
            dtype=dataset.dtypes[0],
            wavelengths=band_axis(dataset)[0],
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
