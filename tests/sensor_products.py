"""Small files in the published layouts of sensor products, for the readers' tests (and for
benchmarks that need a product-shaped scene): EMIT L2A RFL / L1B RDN (NetCDF-4) and PRISMA
L2D (HDF-EOS5). See the reader modules, hyperunmix.io.emit and hyperunmix.io.prisma, for
the layouts and their sources.
"""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import h5py
import numpy as np

#: EMIT's band count and approximate band centres (nm).
EMIT_BANDS = 285
EMIT_WAVELENGTHS = np.linspace(381.0, 2493.0, EMIT_BANDS)
#: WKT of EPSG:4326, the CRS of EMIT's GLT grid.
WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)
EMIT_FILL = -9999.0


def emit_good_wavelengths(wavelengths: np.ndarray = EMIT_WAVELENGTHS) -> np.ndarray:
    """1 for a good band, 0 in the water-vapour absorptions (as EMIT flags them)."""
    bad = ((wavelengths > 1320) & (wavelengths < 1440)) | (
        (wavelengths > 1770) & (wavelengths < 1960)
    )
    return (~bad).astype(np.int8)


def swath_glt(n_down: int, n_cross: int) -> tuple[np.ndarray, np.ndarray]:
    """A GLT (glt_x, glt_y, 1-based, 0 = empty) placing a swath on a north-up grid one
    cell wider and taller, each pixel shifted right by its row (a skewed flight line)."""
    rows, cols = n_down + 1, n_cross + n_down
    glt_x = np.zeros((rows, cols), dtype=np.int32)
    glt_y = np.zeros((rows, cols), dtype=np.int32)
    for down in range(n_down):
        for cross in range(n_cross):
            glt_x[down + 1, cross + down] = cross + 1
            glt_y[down + 1, cross + down] = down + 1
    return glt_x, glt_y


def write_emit(
    path: str | Path,
    swath: np.ndarray,
    *,
    glt: tuple[np.ndarray, np.ndarray] | None = None,
    variable: str = "reflectance",
    wavelengths: np.ndarray | None = None,
    good_wavelengths: np.ndarray | None = None,
    geotransform: tuple[float, ...] = (-118.5, 0.000542232, 0.0, 34.2, 0.0, -0.000542232),
) -> Path:
    """An EMIT-layout granule of ``swath`` (downtrack, crosstrack, bands); NaN pixels are
    written as the fill value -9999. ``glt`` defaults to :func:`swath_glt`."""
    path = Path(path)
    n_down, n_cross, n_bands = swath.shape
    if wavelengths is None:
        wavelengths = np.linspace(381.0, 2493.0, n_bands)
    if good_wavelengths is None:
        good_wavelengths = emit_good_wavelengths(wavelengths)
    glt_x, glt_y = swath_glt(n_down, n_cross) if glt is None else glt
    data = np.where(np.isnan(swath), EMIT_FILL, swath).astype(np.float32)
    with h5netcdf.File(path, "w") as file:
        file.dimensions = {"downtrack": n_down, "crosstrack": n_cross, "bands": n_bands}
        file.attrs["geotransform"] = np.asarray(geotransform, dtype=np.float64)
        file.attrs["spatial_ref"] = WGS84_WKT
        cube = file.create_variable(
            variable, ("downtrack", "crosstrack", "bands"), np.float32, fillvalue=EMIT_FILL
        )
        cube[...] = data
        bands = file.create_group("sensor_band_parameters")
        bands.create_variable("wavelengths", ("bands",), data=wavelengths.astype(np.float32))
        bands["wavelengths"].attrs["units"] = "nm"
        bands.create_variable("fwhm", ("bands",), data=np.full(n_bands, 8.5, np.float32))
        if variable == "reflectance":
            bands.create_variable("good_wavelengths", ("bands",), data=good_wavelengths)
        location = file.create_group("location")
        location.dimensions = {"ortho_y": glt_x.shape[0], "ortho_x": glt_x.shape[1]}
        for name, values in (("glt_x", glt_x), ("glt_y", glt_y)):
            location.create_variable(name, ("ortho_y", "ortho_x"), data=values)
        for name in ("lat", "lon", "elev"):
            location.create_variable(
                name, ("downtrack", "crosstrack"), data=np.zeros((n_down, n_cross), np.float64)
            )
    return path


def ortho_expected(swath: np.ndarray, glt_x: np.ndarray, glt_y: np.ndarray) -> np.ndarray:
    """The north-up cube a GLT defines, computed cell by cell (NaN where it is 0)."""
    out = np.full((*glt_x.shape, swath.shape[2]), np.nan, dtype=np.float32)
    for row in range(glt_x.shape[0]):
        for col in range(glt_x.shape[1]):
            if glt_x[row, col] and glt_y[row, col]:
                out[row, col] = swath[glt_y[row, col] - 1, glt_x[row, col] - 1]
    return out


# -- PRISMA L2D --------------------------------------------------------------------------
PRISMA_SWATH = "HDFEOS/SWATHS/PRS_L2D_HCO"


def write_prisma(
    path: str | Path,
    vnir_dn: np.ndarray,
    swir_dn: np.ndarray,
    *,
    vnir_cw: np.ndarray,
    swir_cw: np.ndarray,
    scale: dict[str, float] | None = None,
    ul: tuple[float, float] = (500015.0, 4000015.0),
    epsg: int = 32632,
) -> Path:
    """A PRISMA L2D-layout product: uint16 cubes (rows, bands, cols) in the swath's data
    fields, band centres (0 for an unused band) and FWHM in root attributes, scaling and
    map geometry as product attributes. ``vnir_dn`` / ``swir_dn`` are (rows, cols, bands);
    ``ul`` is the centre of the upper-left pixel."""
    path = Path(path)
    scale = scale or {}
    rows, cols = vnir_dn.shape[:2]
    with h5py.File(path, "w") as file:
        fields = file.create_group(f"{PRISMA_SWATH}/Data Fields")
        fields["VNIR_Cube"] = np.ascontiguousarray(np.moveaxis(vnir_dn, 2, 1), dtype=np.uint16)
        fields["SWIR_Cube"] = np.ascontiguousarray(np.moveaxis(swir_dn, 2, 1), dtype=np.uint16)
        file.create_group(f"{PRISMA_SWATH}/Geolocation Fields")
        file.attrs["Processing_Level"] = np.bytes_("2D")
        file.attrs["List_Cw_Vnir"] = vnir_cw.astype(np.float32)
        file.attrs["List_Cw_Swir"] = swir_cw.astype(np.float32)
        file.attrs["List_Fwhm_Vnir"] = np.where(vnir_cw > 0, 10.0, 0.0).astype(np.float32)
        file.attrs["List_Fwhm_Swir"] = np.where(swir_cw > 0, 12.0, 0.0).astype(np.float32)
        for key, default in (
            ("L2ScaleVnirMin", 0.0),
            ("L2ScaleVnirMax", 1.0),
            ("L2ScaleSwirMin", 0.0),
            ("L2ScaleSwirMax", 1.0),
        ):
            file.attrs[key] = np.float32(scale.get(key, default))
        east, north = ul
        file.attrs["Epsg_Code"] = np.int32(epsg)
        file.attrs["Product_ULcorner_easting"] = np.float64(east)
        file.attrs["Product_ULcorner_northing"] = np.float64(north)
        file.attrs["Product_LRcorner_easting"] = np.float64(east + 30 * (cols - 1))
        file.attrs["Product_LRcorner_northing"] = np.float64(north - 30 * (rows - 1))
    return path
