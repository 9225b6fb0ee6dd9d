"""The chunked reader (hyperunmix.scale.open_cube) reads what hyperunmix.open reads: GDAL
masks and alpha bands, GDAL band scales and offsets, ENVI mask side-cars, Latin-1 headers,
EMIT granules (grid and swath) and PRISMA products, and refuses what it refuses, in the
same words. Each file is read both ways in chunks smaller than the image, so windows are
cut across the masks."""

import warnings

import numpy as np
import pytest
import rasterio
from sensor_products import write_emit, write_prisma
from test_io_envi import known_cube, write_envi, write_library, write_masked_envi
from test_io_geotiff import INVALID, write_scaled_tiff, write_tiff

import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError, ScalingWarning
from hyperunmix.scale import open_cube


def _in_memory(path, **options) -> np.ndarray:
    """The cube hyperunmix.open reads, NaN at its invalid pixels (the chunked convention)."""
    scene = hio.open_scene(path, **options)
    return np.where(scene.mask[..., None], scene.cube, np.float32(np.nan))


def _assert_same(path, chunks=(2, 1), **options):
    lazy = open_cube(path, chunks=chunks, **options)
    assert lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.values, _in_memory(path, **options))
    return lazy


@pytest.mark.parametrize("internal", [True, False], ids=["internal", "msk-side-car"])
def test_gdal_per_dataset_mask(tmp_path, internal):
    path = tmp_path / "m.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal):
        write_tiff(path, np.ones((3, 3, 2), np.float32), mask=np.where(INVALID, 255, 0))
    lazy = _assert_same(path)
    np.testing.assert_array_equal(np.isfinite(lazy.values).all(axis=2), INVALID)


def test_alpha_band_is_a_mask_not_a_band(tmp_path):
    rgb = np.arange(3 * 3 * 2, dtype=np.uint8).reshape(3, 3, 2) + 1
    alpha = np.where(INVALID, 255, 0).astype(np.uint8)[None]
    path = write_tiff(
        tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES"
    )
    lazy = _assert_same(path, scale=1 / 255)
    assert lazy.sizes["band"] == 3
    np.testing.assert_array_equal(np.isfinite(lazy.values).all(axis=2), INVALID)


def test_band_scale_and_offset_are_applied_without_a_scaling_warning(tmp_path):
    path = write_scaled_tiff(tmp_path / "enmap.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScalingWarning)  # GDAL's scales are the scale
        lazy = _assert_same(path)
    np.testing.assert_allclose(lazy.values[2, 1], [0.7432, 0.7432, 0.7532], rtol=1e-6)
    assert np.isnan(lazy.values[0, 1]).all()  # no-data, found before scaling


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_envi_gdal_mask_side_car(tmp_path):
    mask = write_masked_envi(tmp_path)
    lazy = _assert_same(tmp_path / "m.hdr")
    np.testing.assert_array_equal(np.isfinite(lazy.values).all(axis=2), mask > 0)


def test_envi_header_with_latin1_bytes(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube(), wavelength=[400, 500, 600, 700, 800])
    path.write_bytes(
        path.read_bytes().replace(
            b"ENVI\n", "ENVI\ndescription = {Température}\n".encode("latin-1"), 1
        )
    )
    lazy = _assert_same(path)
    np.testing.assert_allclose(lazy["wavelength"].values, [400, 500, 600, 700, 800])


@pytest.mark.parametrize("factor", ["0", "nan"])
def test_a_reflectance_scale_factor_of_zero_is_refused(tmp_path, factor):
    path = write_envi(tmp_path / "x.hdr", known_cube(), **{"reflectance scale factor": factor})
    with pytest.raises(FileFormatError, match=r"reflectance scale factor of (0|nan): it must be"):
        open_cube(path)


def test_an_envi_spectral_library_is_refused_with_the_reader_to_use(tmp_path):
    sli = write_library(tmp_path / "lib", np.random.default_rng(0).random((3, 5)))
    for path in (sli, sli.with_suffix(".hdr")):
        with pytest.raises(
            FileFormatError, match=r"is an ENVI spectral library .* hyperunmix\.io\.read_endmembers"
        ):
            open_cube(path)


# -- sensor products ---------------------------------------------------------------------
@pytest.fixture
def granule(tmp_path):
    swath = np.random.default_rng(1).uniform(0.01, 0.6, (5, 4, 12)).astype(np.float32)
    swath[3, 2] = np.nan  # written as the fill value
    return write_emit(tmp_path / "emit.nc", swath), swath


@pytest.mark.parametrize("ortho", [True, False])
def test_emit_granule_in_chunks_equals_the_in_memory_read(granule, ortho):
    path, swath = granule
    lazy = _assert_same(path, chunks=(2, 3), ortho=ortho)
    assert lazy.attrs["format"] == "emit"
    assert lazy.attrs["bad_bands"] == [int(b) for b in hio.open_scene(path).bad_bands]
    if ortho:
        assert lazy.shape == (6, 9, 12) and lazy.attrs["crs"] == "EPSG:4326"
    else:
        assert lazy.shape == swath.shape and "crs" not in lazy.attrs


def test_prisma_product_in_chunks_equals_the_in_memory_read(tmp_path):
    rng = np.random.default_rng(4)
    vnir = rng.integers(1, 65535, (5, 4, 3), dtype=np.uint16)
    swir = rng.integers(1, 65535, (5, 4, 4), dtype=np.uint16)
    vnir[2, 1] = swir[2, 1] = 0  # no-data
    path = write_prisma(
        tmp_path / "p.he5",
        vnir,
        swir,
        vnir_cw=np.array([960.0, 0.0, 450.0]),  # 960 nm overlaps SWIR: dropped
        swir_cw=np.array([2200.0, 1500.0, 0.0, 950.0]),
        scale={"L2ScaleVnirMax": 0.9, "L2ScaleSwirMin": -0.01},
    )
    lazy = _assert_same(path, chunks=(2, 3))
    assert lazy.shape == (5, 4, 4) and lazy.attrs["crs"] == "EPSG:32632"
    np.testing.assert_array_equal(lazy["wavelength"].values, [450, 950, 1500, 2200])
    assert np.isnan(lazy.values[2, 1]).all()


def test_ortho_applies_to_emit_only(tmp_path):
    tif = write_tiff(tmp_path / "x.tif", np.ones((2, 3, 3), np.float32))
    with pytest.raises(InputError, match="ortho= applies to EMIT granules"):
        open_cube(tif, ortho=False)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # swath maps
def test_chunked_unmix_of_an_emit_granule_writes_georeferenced_maps(tmp_path):
    from typer.testing import CliRunner

    from hyperunmix.cli import app

    swath = np.random.default_rng(2).uniform(0.01, 0.6, (20, 18, 12)).astype(np.float32)
    path = write_emit(tmp_path / "emit.nc", swath)  # a 21 x 38 grid: 2 x 3 chunks of 16
    out = tmp_path / "maps.tif"
    args = ["unmix", str(path), "-m", "fcls", "--endmembers", "vca", "-p", "3"]
    run = CliRunner().invoke(app, [*args, "--chunks", "16", "--out", str(out)])
    assert run.exit_code == 0, run.output
    with rasterio.open(out) as maps:
        assert maps.crs.to_epsg() == 4326 and maps.shape == (21, 38) and maps.count == 3
        assert tuple(maps.transform)[:6] == pytest.approx(hio.describe(path)["georef"]["transform"])
    swath_out = tmp_path / "swath.tif"
    run = CliRunner().invoke(
        app, [*args, "--chunks", "16", "--read", "ortho=false", "--out", str(swath_out)]
    )
    assert run.exit_code == 0, run.output
    with rasterio.open(swath_out) as maps:
        assert maps.shape == (20, 18) and maps.crs is None
