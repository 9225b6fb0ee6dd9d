"""hyperunmix.io: round trips through every format family, maps, dispatch, describe and
atomic writes. Format-specific reading is tested in the other tests/test_io_*.py files."""

import contextlib
import os

import numpy as np
import psutil
import pytest
import rasterio
import scipy.io
import xarray as xr
from rasterio.crs import CRS

import hyperunmix.io as hio
from hyperunmix import FileFormatError, GeoInfo, InputError, Scene, Truth
from hyperunmix.io import envi, geotiff

SCENE_EXTENSIONS = [".hdr", ".img", ".tif", ".nc", ".npz", ".mat"]
FAMILY = {
    ".hdr": "envi",
    ".img": "envi",
    ".tif": "gtiff",
    ".nc": "netcdf",
    ".npz": "npy",
    ".mat": "mat",
}
UTM_NORTH_UP = GeoInfo("EPSG:32610", (30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0))
# 20 degrees of rotation: every coefficient non-zero, so none can be dropped or swapped.
UTM_ROTATED = GeoInfo("EPSG:32610", (28.19, 10.26, 500000.0, 10.26, -28.19, 4200000.0))


def make_scene(geo=UTM_NORTH_UP) -> Scene:
    """A 5 x 6 x 4 scene with distinct values, one NaN pixel, one masked pixel, a bad band."""
    rng = np.random.default_rng(0)
    cube = rng.uniform(0.05, 0.9, size=(5, 6, 4)).astype(np.float32)
    cube[1, 2] = np.nan
    mask = np.ones((5, 6), bool)
    mask[4, 0] = False
    return Scene(
        cube,
        [412.5, 500.0, 610.25, 700.0],
        fwhm=[10.0, 10.5, 12.0, 12.0],
        bad_bands=[2],
        mask=mask,
        geo=geo,
        name="small",
    )


def assert_same_geo(read: GeoInfo, written: GeoInfo) -> None:
    assert read is not None
    assert CRS.from_user_input(read.crs) == CRS.from_user_input(written.crs)
    np.testing.assert_allclose(read.transform, written.transform, rtol=0, atol=1e-6)


@pytest.mark.parametrize("extension", SCENE_EXTENSIONS)
@pytest.mark.parametrize("geo", [UTM_NORTH_UP, UTM_ROTATED], ids=["north-up", "rotated"])
def test_scene_round_trip_keeps_cube_and_metadata(tmp_path, extension, geo):
    scene = make_scene(geo)
    path = hio.write_scene(tmp_path / f"scene{extension}", scene)
    back = hio.open_scene(path)
    np.testing.assert_array_equal(back.mask, scene.mask)
    np.testing.assert_array_equal(back.cube[back.mask], scene.cube[scene.mask])
    np.testing.assert_allclose(back.wavelengths, scene.wavelengths, rtol=1e-9)
    np.testing.assert_allclose(back.fwhm, scene.fwhm, rtol=1e-9)
    np.testing.assert_array_equal(back.bad_bands, [2])
    assert_same_geo(back.geo, geo)
    assert back.metadata["format"] == FAMILY[extension] == hio.format_of(path)
    assert back.metadata["path"] == str(path)


def test_npz_round_trip_keeps_truth_and_band_names(tmp_path):
    scene = make_scene()
    abundances = np.random.default_rng(1).dirichlet(np.ones(2), size=(5, 6))
    scene.truth = Truth(
        abundances=abundances, endmembers=np.full((2, 4), 0.3), names=["soil", "water"]
    )
    scene.metadata["band_names"] = ["b1", "b2", "b3", "b4"]
    back = hio.open_scene(hio.write_scene(tmp_path / "scene.npz", scene))
    np.testing.assert_allclose(back.truth.abundances, abundances)
    np.testing.assert_array_equal(back.truth.endmembers, scene.truth.endmembers)
    assert back.truth.names == ["soil", "water"]
    assert back.metadata["band_names"] == ["b1", "b2", "b3", "b4"]


def test_npy_path_gets_the_bare_cube_with_nan_at_invalid_pixels(tmp_path):
    scene = make_scene()
    hio.write_scene(tmp_path / "cube.npy", scene)
    array = np.load(tmp_path / "cube.npy")
    assert array.shape == (5, 6, 4) and array.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(array).all(axis=2), ~scene.mask)


MAP_EXTENSIONS = [".hdr", ".tif", ".nc", ".npz", ".mat"]
# Formats that name their arrays store maps under "maps", not "cube".
KEY_OF_MAPS = {".nc": {"key": "maps"}, ".npz": {"key": "maps"}, ".mat": {"key": "maps"}}


@pytest.mark.parametrize("extension", MAP_EXTENSIONS)
def test_maps_round_trip_with_nan_names_and_georeferencing(tmp_path, extension):
    maps = np.random.default_rng(2).dirichlet(np.ones(3), size=(4, 7)).astype(np.float32)
    maps[0, 0] = np.nan
    path = hio.write_maps(
        tmp_path / f"abundances{extension}",
        maps,
        geo=UTM_ROTATED,
        band_names=["soil", "tree", "water"],
    )
    back = hio.open_scene(path, **KEY_OF_MAPS.get(extension, {}))
    valid = ~np.isnan(maps[..., 0])
    np.testing.assert_array_equal(back.mask, valid)
    np.testing.assert_array_equal(back.cube[valid], maps[valid])
    assert back.metadata["band_names"] == ["soil", "tree", "water"]
    assert_same_geo(back.geo, UTM_ROTATED)


@pytest.mark.parametrize(
    "fmt,suffix",
    [("gtiff", ".tif"), ("envi", ".hdr"), ("netcdf", ".nc"), ("npy", ".npz"), ("mat", ".mat")],
)
def test_write_maps_fmt_adds_the_family_extension(tmp_path, fmt, suffix):
    path = hio.write_maps(tmp_path / "uncertainty", np.ones((2, 3)), fmt=fmt)
    assert path == tmp_path / f"uncertainty{suffix}" and path.is_file()
    assert hio.describe(path, **KEY_OF_MAPS.get(suffix, {}))["shape"] == (2, 3, 1)


def test_geotiff_maps_overlay_the_input_scene(tmp_path):
    """GeoTIFF in -> GeoTIFF maps out with the same CRS and transform, NaN as nodata."""
    scene_path = hio.write_scene(tmp_path / "scene.tif", make_scene())
    scene = hio.open_scene(scene_path)
    maps_path = hio.write_maps(tmp_path / "maps.tif", np.zeros((5, 6, 2)), geo=scene.geo)
    with rasterio.open(scene_path) as source, rasterio.open(maps_path) as maps:
        assert maps.crs == source.crs and maps.transform == source.transform
        assert np.isnan(maps.nodata)


def test_write_maps_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="H, W, K"):
        hio.write_maps(tmp_path / "m.tif", np.ones(5))
    with pytest.raises(InputError, match="2 band names given for 3 maps"):
        hio.write_maps(tmp_path / "m.tif", np.ones((2, 2, 3)), band_names=["a", "b"])
    with pytest.raises(InputError, match="unknown format 'jpeg'"):
        hio.write_maps(tmp_path / "m", np.ones((2, 2)), fmt="jpeg")
    with pytest.raises(InputError, match="needs a Scene"):
        hio.write_scene(tmp_path / "s.tif", np.ones((2, 2, 3)))


# -- dispatch ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,family",
    [
        ("a.HDR", "envi"),
        ("a.tiff", "gtiff"),
        ("a.nc4", "netcdf"),
        ("a.mat", "mat"),
        ("a.npz", "npy"),
        ("a.npy", "npy"),
        ("new.img", "envi"),
        ("new.bsq", "envi"),
    ],
)
def test_format_of_by_extension(tmp_path, name, family):
    assert hio.format_of(tmp_path / name) == family


def test_format_of_sniffs_content_when_the_extension_is_ambiguous(tmp_path):
    scene = make_scene()
    hio.write_scene(tmp_path / "scene.tif", scene)
    os.rename(tmp_path / "scene.tif", tmp_path / "scene.dat")  # no header beside it
    hio.write_scene(tmp_path / "cube.npz", scene)
    os.rename(tmp_path / "cube.npz", tmp_path / "cube")  # no extension
    hio.write_scene(tmp_path / "envi.img", scene)  # header beside it
    hio.write_scene(tmp_path / "grid.nc", scene)
    os.rename(tmp_path / "grid.nc", tmp_path / "grid.h5")  # netCDF-4 is HDF5
    assert hio.format_of(tmp_path / "scene.dat") == "gtiff"
    assert hio.format_of(tmp_path / "cube") == "npy"
    assert hio.format_of(tmp_path / "envi.img") == "envi"
    assert hio.format_of(tmp_path / "grid.h5") == "netcdf"
    for name in ("scene.dat", "cube", "envi.img", "grid.h5"):
        np.testing.assert_array_equal(hio.open_scene(tmp_path / name).mask, scene.mask)


def test_unknown_extension_and_content_is_one_clear_error(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("just text")
    with pytest.raises(FileFormatError, match=r"cannot tell the format of .*notes\.xyz"):
        hio.open_scene(path)


def test_missing_file_and_directory_are_file_format_errors(tmp_path):
    with pytest.raises(FileFormatError, match=r"missing\.tif does not exist"):
        hio.open_scene(tmp_path / "missing.tif")
    with pytest.raises(FileFormatError, match="is a directory"):
        hio.describe(tmp_path)


def test_options_a_format_does_not_take_are_named(tmp_path):
    path = hio.write_scene(tmp_path / "scene.tif", make_scene())
    with pytest.raises(InputError, match=r"option rows does not apply .* takes: no options"):
        hio.open_scene(path, rows=5)


def test_open_scene_overrides_wavelengths_scale_and_name(tmp_path):
    path = hio.write_scene(tmp_path / "scene.npz", make_scene())
    scene = hio.open_scene(path, wavelengths=[1000, 1100, 1200, 1300], scale=2.0, name="x")
    np.testing.assert_array_equal(scene.wavelengths, [1000, 1100, 1200, 1300])
    original = make_scene()
    np.testing.assert_allclose(scene.cube[scene.mask], 2 * original.cube[original.mask])
    assert scene.name == "x"
    with pytest.raises(InputError, match=r"3 wavelengths were given for .*scene\.npz"):
        hio.open_scene(path, wavelengths=[1, 2, 3])


def test_scene_validation_errors_name_the_file(tmp_path):
    path = tmp_path / "empty.npy"
    np.save(path, np.full((2, 2, 3), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match=r"empty\.npy: the scene has no valid pixel"):
        hio.open_scene(path)


# -- describe ----------------------------------------------------------------------------
@pytest.mark.parametrize("extension", SCENE_EXTENSIONS)
def test_describe_reports_header_facts(tmp_path, extension):
    path = hio.write_scene(tmp_path / f"scene{extension}", make_scene())
    info = hio.describe(path)
    assert info["format"] == FAMILY[extension]
    assert info["shape"] == (5, 6, 4) and info["dtype"] == "float32"
    assert info["wavelength_range"] == pytest.approx((412.5, 700.0))
    assert CRS.from_user_input(info["georef"]["crs"]) == CRS.from_epsg(32610)
    assert info["georef"]["transform"] == pytest.approx(UTM_NORTH_UP.transform)


def test_describe_does_not_read_the_cube(tmp_path):
    """Headers of 24 GB cubes whose data are sparse files: loading them would exhaust
    memory and time, reading the header takes milliseconds."""
    header = tmp_path / "huge.hdr"
    header.write_text(
        "ENVI\nsamples = 20000\nlines = 1500\nbands = 200\nheader offset = 0\n"
        "data type = 4\ninterleave = bil\nbyte order = 0\n"
        "wavelength units = Micrometers\n"
        "wavelength = {" + ", ".join(f"{0.4 + 0.01 * b:.2f}" for b in range(200)) + "}\n"
    )
    with open(tmp_path / "huge.img", "wb") as data:
        data.truncate(20000 * 1500 * 200 * 4)
    info = hio.describe(header)
    assert info["shape"] == (1500, 20000, 200)
    assert info["wavelength_range"] == pytest.approx((400.0, 2390.0))
    big = np.lib.format.open_memmap(
        tmp_path / "huge.npy", mode="w+", dtype=np.uint16, shape=(1500, 20000, 200)
    )
    del big
    assert hio.describe(tmp_path / "huge.npy")["shape"] == (1500, 20000, 200)


@pytest.mark.parametrize("extension", [".hdr", ".tif", ".nc"])
def test_a_crs_is_read_as_epsg_or_wkt_never_another_authority(tmp_path, extension):
    """Lambert-93 by its IGNF code, which GDAL and PROJ give back as ``IGNF:LAMB93``."""
    scene = make_scene(GeoInfo("IGNF:LAMB93", UTM_NORTH_UP.transform))
    crs = hio.open_scene(hio.write_scene(tmp_path / f"l93{extension}", scene)).geo.crs
    assert crs.startswith(("PROJCS", "PROJCRS"))  # WKT 1 or 2
    assert CRS.from_wkt(crs) == CRS.from_user_input("IGNF:LAMB93")
    utm = hio.write_scene(tmp_path / f"utm{extension}", make_scene())
    assert hio.open_scene(utm).geo.crs == "EPSG:32610"


# -- memory ------------------------------------------------------------------------------
def _available_memory(monkeypatch, available: int) -> None:
    """Make ``psutil`` report ``available`` bytes of free memory to the readers."""
    memory = psutil.virtual_memory()._replace(available=available)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)


def test_a_cube_larger_than_memory_points_to_the_chunked_path(tmp_path, monkeypatch):
    """The size is read from the header, so the cube is never loaded: the data file here
    is sparse, 3 GiB of float32 that the scene would copy."""
    header = tmp_path / "big.hdr"
    header.write_text(
        "ENVI\nsamples = 4000\nlines = 1000\nbands = 200\ndata type = 4\n"
        "interleave = bil\nbyte order = 0\n"
    )
    with open(tmp_path / "big.img", "wb") as data:
        data.truncate(4000 * 1000 * 200 * 4)
    _available_memory(monkeypatch, 2 * 2**30)
    with pytest.raises(
        InputError,
        match=r"big\.hdr \(1000 x 4000 x 200 float32 values\) takes about 3\.7 GiB to load, "
        r"more than the 2\.0 GiB of memory available: unmix it in chunks instead: "
        r"hyperunmix unmix .*big\.hdr \.\.\. --chunks 512 .*docs/scaling\.md",
    ):
        hio.open_scene(header)
    assert hio.describe(header)["shape"] == (1000, 4000, 200)  # describing needs no memory


def test_a_memory_error_while_reading_points_to_the_chunked_path(tmp_path, monkeypatch):
    path = hio.write_scene(tmp_path / "scene.tif", make_scene())

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(geotiff, "read", out_of_memory)
    with pytest.raises(InputError, match=r"scene\.tif does not fit in the memory .*--chunks"):
        hio.open_scene(path)


# -- atomic writes -----------------------------------------------------------------------
def _fail_after(function):
    """``function`` that does all its work, then fails as a full disk would."""

    def failing(*args, **kwargs):
        function(*args, **kwargs)
        raise OSError("No space left on device")

    return failing


def _fail_after_raster(create_raster):
    @contextlib.contextmanager
    def failing(*args, **kwargs):
        with create_raster(*args, **kwargs) as dataset:
            yield dataset
        raise OSError("No space left on device")

    return failing


@pytest.mark.parametrize("extension", [".hdr", ".tif", ".nc", ".npz", ".mat"])
def test_failed_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch, extension):
    monkeypatch.setattr(envi, "create_raster", _fail_after_raster(envi.create_raster))
    monkeypatch.setattr(geotiff, "create_raster", _fail_after_raster(geotiff.create_raster))
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _fail_after(xr.Dataset.to_netcdf))
    monkeypatch.setattr(np, "savez_compressed", _fail_after(np.savez_compressed))
    monkeypatch.setattr(scipy.io, "savemat", _fail_after(scipy.io.savemat))
    with pytest.raises(OSError, match="No space left"):
        hio.write_scene(tmp_path / f"scene{extension}", make_scene())
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = hio.write_maps(tmp_path / "maps.tif", np.ones((2, 2, 1)))
    before = path.read_bytes()
    monkeypatch.setattr(geotiff, "create_raster", _fail_after_raster(geotiff.create_raster))
    with pytest.raises(OSError):
        hio.write_maps(path, np.zeros((2, 2, 1)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.tif"]
