"""EMIT L2A RFL / L1B RDN granules (hyperunmix.io.emit): detection by structure, the 285
bands and their good-band flags, the swath, the cube the geometry lookup table defines and
its georeferencing, radiance, and broken files. Files follow the published layout
(tests/sensor_products.py)."""

import shutil

import numpy as np
import pytest
import rasterio
from sensor_products import (
    EMIT_BANDS,
    EMIT_WAVELENGTHS,
    emit_good_wavelengths,
    ortho_expected,
    swath_glt,
    write_emit,
)

import hyperunmix as hu
import hyperunmix.io as hio
from hyperunmix import FileFormatError
from hyperunmix.errors import ScalingWarning

N_DOWN, N_CROSS = 4, 3


@pytest.fixture
def swath():
    """(downtrack, crosstrack, 285) reflectance with one fill pixel."""
    cube = np.random.default_rng(0).uniform(0.01, 0.6, (N_DOWN, N_CROSS, EMIT_BANDS))
    cube = cube.astype(np.float32)
    cube[2, 1] = np.nan  # written as -9999
    return cube


@pytest.fixture
def granule(tmp_path, swath):
    return write_emit(tmp_path / "EMIT_L2A_RFL_001.nc", swath)


def test_detected_by_structure_whatever_the_name(tmp_path, granule):
    assert hio.format_of(granule) == "emit"
    renamed = shutil.copy(granule, tmp_path / "scene.h5")  # no extension claims .h5
    assert hio.format_of(renamed) == "emit"
    # an ordinary NetCDF cube stays NetCDF
    plain = hio.write_scene(tmp_path / "plain.nc", hu.Scene(np.ones((2, 2, 3), np.float32)))
    assert hio.format_of(plain) == "netcdf"


def test_ortho_is_the_cube_the_glt_defines_georeferenced(granule, swath):
    scene = hu.open(granule)
    glt_x, glt_y = swath_glt(N_DOWN, N_CROSS)
    expected = ortho_expected(swath, glt_x, glt_y)
    assert scene.cube.shape == (*glt_x.shape, EMIT_BANDS)
    valid = np.isfinite(expected).all(axis=2)
    np.testing.assert_array_equal(scene.mask, valid)  # empty cells and the fill pixel
    np.testing.assert_array_equal(scene.cube[valid], expected[valid])
    np.testing.assert_allclose(scene.wavelengths, EMIT_WAVELENGTHS, rtol=1e-6)
    np.testing.assert_allclose(scene.fwhm, 8.5)
    np.testing.assert_array_equal(
        scene.bad_bands, np.flatnonzero(emit_good_wavelengths(EMIT_WAVELENGTHS) == 0)
    )
    assert scene.geo.crs == "EPSG:4326"
    # GDAL's (x0, dx, 0, y0, 0, dy) in rasterio's order
    assert scene.geo.transform == (0.000542232, 0.0, -118.5, 0.0, -0.000542232, 34.2)
    assert scene.metadata["product"] == "EMIT L2A RFL"


def test_swath_without_ortho(granule, swath):
    scene = hu.open(granule, ortho=False)
    assert scene.cube.shape == swath.shape and scene.geo is None
    valid = np.isfinite(swath).all(axis=2)
    np.testing.assert_array_equal(scene.mask, valid)
    np.testing.assert_array_equal(scene.cube[valid], swath[valid])


def test_maps_of_an_ortho_scene_carry_its_crs_and_transform(tmp_path, granule):
    scene = hu.open(granule)
    path = hio.write_maps(tmp_path / "maps.tif", scene.cube[:, :, :2], geo=scene.geo)
    with rasterio.open(path) as maps:
        assert maps.crs.to_epsg() == 4326
        assert tuple(maps.transform)[:6] == pytest.approx(scene.geo.transform)
    with pytest.raises(FileFormatError, match="read, not written"):
        hio.write_maps(tmp_path / "maps", scene.cube, fmt="emit")


def test_radiance_is_read_with_a_warning(tmp_path, swath):
    path = write_emit(tmp_path / "EMIT_L1B_RAD.nc", swath * 10, variable="radiance")
    with pytest.warns(ScalingWarning, match="radiance"):
        scene = hu.open(path)
    assert scene.metadata["product"] == "EMIT L1B RDN"
    assert scene.bad_bands.size == 0  # radiance granules flag no band


def test_describe_lists_the_product_facts(granule):
    info = hio.describe(granule)
    assert info["format"] == "emit" and info["shape"] == (N_DOWN + 1, N_CROSS + N_DOWN, 285)
    assert info["georef"]["crs"] == "EPSG:4326"
    n_bad = int((emit_good_wavelengths(EMIT_WAVELENGTHS) == 0).sum())
    assert info["bad bands"].startswith(f"{n_bad} of 285")
    assert info["no-data"] == "_FillValue -9999" and info["product"] == "EMIT L2A RFL"
    swath = hio.describe(granule, ortho=False)
    assert swath["shape"] == (N_DOWN, N_CROSS, 285) and swath["georef"] is None


def test_a_glt_pointing_past_the_swath_is_refused(tmp_path, swath):
    glt_x, glt_y = swath_glt(N_DOWN, N_CROSS)
    glt_y[glt_y == N_DOWN] = N_DOWN + 5
    path = write_emit(tmp_path / "bad_glt.nc", swath, glt=(glt_x, glt_y))
    with pytest.raises(FileFormatError, match="points past the 4 x 3 swath"):
        hu.open(path)
    assert hu.open(path, ortho=False).cube.shape == swath.shape  # the swath is fine


def test_missing_georeferencing_points_to_the_swath(tmp_path, granule):
    import h5py

    with h5py.File(granule, "a") as file:
        del file.attrs["spatial_ref"]
    with pytest.raises(FileFormatError, match=r"no spatial_ref attribute.*ortho=False"):
        hu.open(granule)


def test_info_and_unmix_on_the_command_line(tmp_path, granule):
    from typer.testing import CliRunner

    from hyperunmix.cli import app

    runner = CliRunner()
    info = runner.invoke(app, ["info", str(granule)])
    assert info.exit_code == 0, info.output
    text = " ".join(info.stdout.replace("│", " ").split())
    assert "EMIT L2A RFL" in text and "bad bands" in text and "_FillValue -9999" in text
    out = tmp_path / "out"
    run = runner.invoke(
        app,
        ["unmix", str(granule), "-m", "fcls", "-p", "3", "--out", str(out), "--no-figures"],
    )
    assert run.exit_code == 0, run.output
    with rasterio.open(out / "abundances.tif") as maps:  # a product's maps: GeoTIFF
        assert maps.crs.to_epsg() == 4326 and maps.count == 3
        assert maps.shape == (N_DOWN + 1, N_CROSS + N_DOWN)


def test_a_negative_glt_entry_is_read_by_its_magnitude(tmp_path, swath):
    glt_x, glt_y = swath_glt(N_DOWN, N_CROSS)
    glt_x[1, 1], glt_y[1, 1] = -glt_x[1, 1], -glt_y[1, 1]  # swath pixel (0, 1)
    scene = hu.open(write_emit(tmp_path / "negative.nc", swath, glt=(glt_x, glt_y)))
    np.testing.assert_array_equal(scene.cube[1, 1], swath[0, 1])
