"""GeoTIFF reading: nodata, band wavelengths from tags or descriptions, broken files.
Test files are written with rasterio directly, independently of our writer."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

import hyperunmix.io as hio
from hyperunmix import FileFormatError

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0)


def write_tiff(
    path,
    bands,
    *,
    nodata=None,
    descriptions=None,
    band_tags=None,
    crs="EPSG:32632",
    mask=None,
    **options,
):
    """Write (L, H, W) ``bands`` with rasterio, and a GDAL per-dataset ``mask`` (H, W) of
    0 / 255 when given; ``options`` are creation options. Returns the path."""
    count, height, width = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=bands.dtype,
        crs=crs,
        transform=TRANSFORM,
        nodata=nodata,
        **options,
    ) as dataset:
        dataset.write(bands)
        if mask is not None:
            dataset.write_mask(mask)
        for band in range(count):
            if descriptions:
                dataset.set_band_description(band + 1, descriptions[band])
            if band_tags:
                dataset.update_tags(band + 1, **band_tags[band])
    return path


def test_pixels_crs_transform_and_band_order(tmp_path):
    bands = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) / 100
    scene = hio.open_scene(write_tiff(tmp_path / "a.tif", bands))
    np.testing.assert_array_equal(scene.cube, np.moveaxis(bands, 0, 2))
    assert CRS.from_user_input(scene.geo.crs) == CRS.from_epsg(32632)
    assert scene.geo.transform == tuple(TRANSFORM)[:6]
    assert scene.wavelengths is None


def test_nodata_pixels_are_masked(tmp_path):
    bands = np.full((3, 2, 2), 1200, dtype=np.uint16)
    bands[:, 0, 1] = 0
    scene = hio.open_scene(write_tiff(tmp_path / "dn.tif", bands, nodata=0), scale=1e-4)
    np.testing.assert_array_equal(scene.mask, [[True, False], [True, True]])
    np.testing.assert_allclose(scene.cube[scene.mask], 0.12, rtol=1e-6)
    assert scene.metadata["nodata"] == 0


def test_wavelengths_from_band_tags_with_units(tmp_path):
    tags = [
        {"wavelength": w, "wavelength_units": "Micrometers", "fwhm": "0.01"}
        for w in ("0.45", "0.55", "0.65")
    ]
    scene = hio.open_scene(
        write_tiff(tmp_path / "t.tif", np.ones((3, 2, 2), np.float32), band_tags=tags)
    )
    np.testing.assert_allclose(scene.wavelengths, [450, 550, 650])
    np.testing.assert_allclose(scene.fwhm, [10, 10, 10])


def test_wavelengths_from_band_descriptions(tmp_path):
    names = ["Band 1 (452.5 nm)", "Band 2 (0.55 um)", "Band 3 (650 nm)"]
    scene = hio.open_scene(
        write_tiff(tmp_path / "d.tif", np.ones((3, 2, 2), np.float32), descriptions=names)
    )
    np.testing.assert_allclose(scene.wavelengths, [452.5, 550, 650])
    assert scene.metadata["band_names"] == names


def test_descriptions_without_units_give_no_wavelengths(tmp_path):
    """ "Band 1" is a name, not a 1 nm band."""
    scene = hio.open_scene(
        write_tiff(
            tmp_path / "n.tif", np.ones((2, 2, 2), np.float32), descriptions=["Band 1", "Band 2"]
        )
    )
    assert scene.wavelengths is None


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_truncated_geotiff(tmp_path, interleave):
    bands = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    path = write_tiff(tmp_path / "cut.tif", bands, interleave=interleave)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = r"cut\.tif is truncated: its data run to byte \d+ but the file holds \d+ bytes"
    with pytest.raises(FileFormatError, match=message):
        hio.open_scene(path)
    with pytest.raises(FileFormatError, match=message):  # `hyperunmix info` as `open`
        hio.describe(path)


def test_garbage_geotiff(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    with pytest.raises(FileFormatError, match=r"cannot read the raster .*junk\.tif"):
        hio.open_scene(path)
    with pytest.raises(FileFormatError, match=r"junk\.tif"):
        hio.describe(path)


# -- GDAL masks, alpha bands, scale and offset -------------------------------------------
INVALID = np.array([[True, False], [True, True], [False, True]])  # (3, 2): False is masked


@pytest.mark.parametrize("internal", [True, False], ids=["internal", "msk-side-car"])
def test_gdal_per_dataset_mask_makes_pixels_invalid(tmp_path, internal):
    path = tmp_path / "m.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal):
        write_tiff(path, np.ones((3, 3, 2), np.float32), mask=np.where(INVALID, 255, 0))
    assert (tmp_path / "m.tif.msk").is_file() != internal
    scene = hio.open_scene(path)
    np.testing.assert_array_equal(scene.mask, INVALID)


def test_alpha_band_is_a_mask_not_a_band(tmp_path):
    """An RGBA GeoTIFF: three spectral bands, and transparency (alpha 0) as no-data."""
    rgb = np.arange(3 * 3 * 2, dtype=np.uint8).reshape(3, 3, 2) + 1
    alpha = np.where(INVALID, 255, 0).astype(np.uint8)[None]
    path = write_tiff(
        tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES"
    )
    scene = hio.open_scene(path, scale=1 / 255)
    assert scene.n_bands == 3 and hio.describe(path)["shape"] == (3, 2, 3)
    np.testing.assert_array_equal(scene.mask, INVALID)
    np.testing.assert_allclose(scene.cube[scene.mask], np.moveaxis(rgb, 0, 2)[INVALID] / 255)


def write_scaled_tiff(path):
    """An EnMAP-like tile (3 bands of 3 x 2 px): int16 reflectance x 10000 with GDAL scale
    1e-4, an offset of 0.01 on the last band, nodata -32768 at pixel (0, 1)."""
    stored = np.full((3, 3, 2), 7432, dtype=np.int16)
    stored[:, 0, 1] = -32768
    write_tiff(path, stored, nodata=-32768)
    with rasterio.open(path, "r+") as dataset:
        dataset.scales = (1e-4, 1e-4, 1e-4)
        dataset.offsets = (0.0, 0.0, 0.01)
    return path


def test_band_scale_and_offset_are_applied(tmp_path):
    """Nodata -32768 is found before scaling, and a per-band offset is added."""
    path = write_scaled_tiff(tmp_path / "enmap.tif")
    scene = hio.open_scene(path)
    np.testing.assert_array_equal(scene.mask, [[True, False], [True, True], [True, True]])
    np.testing.assert_allclose(scene.cube[scene.mask], [[0.7432, 0.7432, 0.7532]] * 5, rtol=1e-6)
    assert scene.metadata["nodata"] == -32768
