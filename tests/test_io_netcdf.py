"""NetCDF reading: dimension names and order, wavelength coordinates, fill values, CF
georeferencing, variable choice and broken files. Files are written with xarray directly."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.crs import CRS

import hyperunmix.io as hio
from hyperunmix import FileFormatError

IMAGE = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) / 100 + 0.01  # (y, x, band)


def test_band_first_lat_lon_file_with_micrometre_wavelengths(tmp_path):
    """(wavelength, lat, lon) order and names, as many Earth-observation products."""
    data = xr.DataArray(
        np.moveaxis(IMAGE, 2, 0),
        dims=("wavelength", "lat", "lon"),
        coords={
            "wavelength": ("wavelength", [0.4, 0.5, 0.6, 0.7, 0.8], {"units": "micrometers"}),
            "lat": [45.2, 45.1, 45.0],
            "lon": [7.0, 7.1, 7.2, 7.3],
        },
    )
    data.to_dataset(name="reflectance").to_netcdf(tmp_path / "eo.nc")
    scene = hio.open_scene(tmp_path / "eo.nc")
    np.testing.assert_array_equal(scene.cube, IMAGE)
    np.testing.assert_allclose(scene.wavelengths, [400, 500, 600, 700, 800])
    assert scene.metadata["dims"] == ["lat", "lon", "wavelength"]


def test_x_before_y_is_transposed_back(tmp_path):
    data = xr.DataArray(IMAGE.transpose(1, 0, 2), dims=("x", "y", "band"))
    data.to_dataset(name="cube").to_netcdf(tmp_path / "xy.nc")
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "xy.nc").cube, IMAGE)


def test_fill_value_pixels_are_masked(tmp_path):
    cube = IMAGE.copy()
    cube[2, 3] = -1.0
    data = xr.DataArray(cube, dims=("y", "x", "band"))
    data.to_dataset(name="cube").to_netcdf(
        tmp_path / "fill.nc", encoding={"cube": {"_FillValue": -1.0}}
    )
    scene = hio.open_scene(tmp_path / "fill.nc")
    assert not scene.mask[2, 3] and scene.mask.sum() == 11


def test_cf_grid_mapping_gives_crs_and_transform(tmp_path):
    data = xr.DataArray(
        IMAGE,
        dims=("y", "x", "band"),
        coords={"y": 5000015.0 - 30 * np.arange(3), "x": 300015.0 + 30 * np.arange(4)},
    )
    data = data.rio.write_crs("EPSG:32631")
    data.to_dataset(name="cube").to_netcdf(tmp_path / "cf.nc")
    geo = hio.open_scene(tmp_path / "cf.nc").geo
    assert CRS.from_user_input(geo.crs) == CRS.from_epsg(32631)
    np.testing.assert_allclose(geo.transform, (30, 0, 300000, 0, -30, 5000030))


def test_variable_choice(tmp_path):
    dataset = xr.Dataset(
        {"radiance": (("y", "x", "band"), IMAGE), "reflectance": (("y", "x", "band"), IMAGE / 2)}
    )
    dataset.to_netcdf(tmp_path / "two.nc")
    with pytest.raises(FileFormatError, match=r"radiance, reflectance .*key="):
        hio.open_scene(tmp_path / "two.nc")
    np.testing.assert_array_equal(
        hio.open_scene(tmp_path / "two.nc", key="reflectance").cube, IMAGE / 2
    )
    with pytest.raises(FileFormatError, match="expected a variable 'cube'"):
        hio.open_scene(tmp_path / "two.nc", key="cube")


def test_unidentifiable_band_dimension(tmp_path):
    xr.Dataset({"cube": (("a", "b", "c"), IMAGE)}).to_netcdf(tmp_path / "anon.nc")
    with pytest.raises(FileFormatError, match=r"cannot tell the band dimension .*'wavelength'"):
        hio.open_scene(tmp_path / "anon.nc")


def test_wavelength_coordinate_of_another_dimension_is_ignored(tmp_path):
    dataset = xr.Dataset(
        {"cube": (("y", "x", "band"), IMAGE)}, coords={"wavelength": ("w", [400.0, 500.0, 600.0])}
    )
    dataset.to_netcdf(tmp_path / "wl.nc")
    scene = hio.open_scene(tmp_path / "wl.nc")  # not a band coordinate: ignored
    assert scene.wavelengths is None


def test_garbage_and_truncated_netcdf(tmp_path):
    (tmp_path / "junk.nc").write_bytes(b"CDF\x01" + b"\xff" * 200)
    with pytest.raises(FileFormatError, match=r"cannot read the NetCDF file .*junk\.nc"):
        hio.open_scene(tmp_path / "junk.nc")
    big = np.random.default_rng(0).random((40, 40, 30)).astype(np.float32)
    xr.Dataset({"cube": (("y", "x", "band"), big)}).to_netcdf(
        tmp_path / "cut.nc", engine="h5netcdf"
    )
    content = (tmp_path / "cut.nc").read_bytes()
    (tmp_path / "cut.nc").write_bytes(content[: len(content) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.nc"):
        hio.open_scene(tmp_path / "cut.nc")
