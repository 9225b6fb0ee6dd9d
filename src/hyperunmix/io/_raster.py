"""rasterio (GDAL) pieces shared by the GeoTIFF and ENVI formats: GeoInfo <-> CRS and
Affine, band wavelengths from GDAL metadata, GDAL masks and alpha bands, and creating a
float32 raster."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window

from ..scene import GeoInfo
from ._common import CubeData, band_axis_in_nm

#: A wavelength written in a band description, e.g. "Band 12 (452.3 nm)" or "0.45 um".
_DESCRIPTION_WAVELENGTH = re.compile(
    r"(\d+(?:\.\d*)?)\s*(nm|nanometers?|um|µm|μm|micrometers?|microns?)\b", re.IGNORECASE
)


def to_affine(geo: GeoInfo) -> Affine:
    """The rasterio Affine of ``geo.transform`` (same coefficient order)."""
    return Affine(*geo.transform)


def to_crs(geo: GeoInfo) -> CRS | None:
    return None if geo.crs is None else CRS.from_user_input(geo.crs)


def crs_string(crs: CRS) -> str:
    """``EPSG:<code>`` when the CRS has an EPSG code, else its WKT.

    Not ``CRS.to_string()``, which names the CRS by any authority PROJ knows (``IGNF:LAMB93``),
    codes many readers of the maps cannot resolve.
    """
    epsg = crs.to_epsg()
    return crs.to_wkt() if epsg is None else f"EPSG:{epsg}"


def geo_from_dataset(dataset: rasterio.io.DatasetReader) -> GeoInfo | None:
    """The georeferencing of an open dataset; None when it has neither CRS nor transform."""
    if dataset.crs is None and dataset.transform.is_identity:
        return None
    crs = None if dataset.crs is None else crs_string(dataset.crs)
    # + 0.0 turns GDAL's -0.0 rotation terms into 0.0
    return GeoInfo(crs=crs, transform=tuple(v + 0.0 for v in dataset.transform[:6]))


def open_quietly(path: str | Path) -> rasterio.io.DatasetReader:
    """``rasterio.open`` without the warning for rasters that are not georeferenced
    (plain hyperspectral cubes often are not; :func:`geo_from_dataset` reports it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def spectral_bands(dataset: rasterio.io.DatasetReader) -> list[int]:
    """The 1-based indices of the bands that hold the spectrum: all but alpha bands
    (the transparency of RGBA images), which :func:`valid_pixels` reads as a mask."""
    return [
        band
        for band, colour in enumerate(dataset.colorinterp, start=1)
        if colour != ColorInterp.alpha
    ]


def valid_pixels(
    dataset: rasterio.io.DatasetReader, bands: list[int], window: Window | None = None
) -> np.ndarray | None:
    """(H, W) bool (of ``window``, or the whole raster), False where GDAL's per-dataset mask
    (internal, or a ``.msk`` side-car) or an alpha band marks a pixel invalid; None when
    the dataset has neither.

    A nodata value is left out: the scene compares the cube with it.
    """
    if not bands:
        return None
    flags = dataset.mask_flag_enums[bands[0] - 1]
    if MaskFlags.per_dataset not in flags and MaskFlags.alpha not in flags:
        return None
    # One mask for all bands (per dataset); an alpha band's values, where 0 is transparent.
    return dataset.read_masks(bands[0], window=window) != 0


def band_axis(
    dataset: rasterio.io.DatasetReader, bands: list[int] | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Wavelengths and FWHM (nm) of a dataset's ``bands`` (1-based; default all), or None
    where GDAL has none.

    Looked for in the GDAL 3.10 ``IMAGERY`` band metadata (``CENTRAL_WAVELENGTH_UM``,
    ``FWHM_UM``), then in ``wavelength`` / ``wavelength_units`` band tags (GDAL's ENVI
    driver, many GeoTIFF exports), then in band descriptions such as "452.3 nm".
    """
    if bands is None:
        bands = list(range(1, dataset.count + 1))
    imagery = [dataset.tags(b, ns="IMAGERY") for b in bands]
    if all("CENTRAL_WAVELENGTH_UM" in tags for tags in imagery):
        fwhm = (
            [tags["FWHM_UM"] for tags in imagery]
            if all("FWHM_UM" in tags for tags in imagery)
            else None
        )
        return band_axis_in_nm(
            [tags["CENTRAL_WAVELENGTH_UM"] for tags in imagery], fwhm, units="um"
        )
    tags = [{k.lower(): v for k, v in dataset.tags(b).items()} for b in bands]
    if all("wavelength" in t for t in tags):
        fwhm = [t["fwhm"] for t in tags] if all("fwhm" in t for t in tags) else None
        return band_axis_in_nm(
            [t["wavelength"] for t in tags], fwhm, units=tags[0].get("wavelength_units")
        )
    descriptions = [dataset.descriptions[b - 1] for b in bands]
    found = [_DESCRIPTION_WAVELENGTH.search(d or "") for d in descriptions]
    matches = [m for m in found if m is not None]
    if len(matches) == len(found):
        in_nm = []
        for m in matches:
            wavelength = band_axis_in_nm([m.group(1)], units=m.group(2))[0]
            assert wavelength is not None  # the pattern matches length units only
            in_nm.append(wavelength)
        return np.concatenate(in_nm), None
    return None, None


@contextlib.contextmanager
def create_raster(
    path: str | Path, data: CubeData, driver: str, **options
) -> Iterator[rasterio.io.DatasetWriter]:
    """Write ``data.cube`` as float32 bands with band names and georeferencing, and yield
    the open dataset so the format can add its own band metadata.

    No ``.aux.xml`` side-car is written: whatever a format cannot hold is left out.
    """
    n_rows, n_cols, n_bands = data.cube.shape
    geo_options = (
        {} if data.geo is None else {"crs": to_crs(data.geo), "transform": to_affine(data.geo)}
    )
    with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver=driver,
            width=n_cols,
            height=n_rows,
            count=n_bands,
            dtype="float32",
            **geo_options,
            **options,
        ) as dataset:
            dataset.write(np.moveaxis(data.cube.astype(np.float32, copy=False), 2, 0))
            for band, name in enumerate(data.band_names or (), start=1):
                dataset.set_band_description(band, name)
            yield dataset
