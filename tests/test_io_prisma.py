"""PRISMA L2D products (hyperunmix.io.prisma): detection, VNIR and SWIR joined in
wavelength order without the empty bands and with the overlap taken from SWIR, digital
numbers scaled to reflectance, no-data, and the UTM grid. Files follow the published layout
(tests/sensor_products.py)."""

import shutil

import numpy as np
import pytest
from sensor_products import write_prisma

import hyperunmix as hu
import hyperunmix.io as hio
from hyperunmix import FileFormatError

ROWS, COLS = 3, 4
#: Stored from the longest wavelength down, a 0 for a band not delivered (as PRISMA does);
#: the last two VNIR bands (940, 980 nm) overlap SWIR, which starts at 930 nm.
VNIR_CW = np.array([980.0, 940.0, 0.0, 700.0, 550.0, 0.0, 420.0])
SWIR_CW = np.array([0.0, 2400.0, 1600.0, 1200.0, 930.0])
SCALE = {"L2ScaleVnirMin": 0.0, "L2ScaleVnirMax": 0.8, "L2ScaleSwirMin": -0.01}


@pytest.fixture
def product(tmp_path):
    rng = np.random.default_rng(3)
    vnir = rng.integers(1, 65535, (ROWS, COLS, VNIR_CW.size), dtype=np.uint16)
    swir = rng.integers(1, 65535, (ROWS, COLS, SWIR_CW.size), dtype=np.uint16)
    vnir[0, 3] = swir[0, 3] = 0  # a pixel outside the scene
    path = write_prisma(
        tmp_path / "PRS_L2D_STD_20200101_0001.he5",
        vnir,
        swir,
        vnir_cw=VNIR_CW,
        swir_cw=SWIR_CW,
        scale=SCALE,
        ul=(399015.0, 5000025.0),
    )
    return path, vnir, swir


def test_detected_by_structure_whatever_the_name(tmp_path, product):
    path = product[0]
    assert hio.format_of(path) == "prisma"
    assert hio.format_of(shutil.copy(path, tmp_path / "scene.h5")) == "prisma"


def test_bands_joined_in_wavelength_order_and_scaled_to_reflectance(product):
    path, vnir, swir = product
    scene = hu.open(path)
    # VNIR 420, 550, 700 (940, 980 overlap SWIR and are dropped), then SWIR 930 ... 2400
    np.testing.assert_array_equal(scene.wavelengths, [420, 550, 700, 930, 1200, 1600, 2400])
    np.testing.assert_array_equal(scene.fwhm, [10, 10, 10, 12, 12, 12, 12])
    expected = np.concatenate(
        [
            np.float32(0.8 / 65535) * vnir[:, :, [6, 4, 3]].astype(np.float32),
            np.float32(-0.01)
            + np.float32(1.01 / 65535) * swir[:, :, [4, 3, 2, 1]].astype(np.float32),
        ],
        axis=2,
    )
    valid = np.ones((ROWS, COLS), dtype=bool)
    valid[0, 3] = False  # DN 0 in every band
    np.testing.assert_array_equal(scene.mask, valid)
    # the scale in float32: a few units in the last place of values up to 1
    np.testing.assert_allclose(scene.cube[valid], expected[valid], rtol=0, atol=4e-7)


def test_utm_grid_from_the_corner_pixel_centre(product):
    scene = hu.open(product[0])
    assert scene.geo.crs == "EPSG:32632"
    # the upper-left pixel is centred on (399015, 5000025): its corner 15 m up and left
    assert scene.geo.transform == (30.0, 0.0, 399000.0, 0.0, -30.0, 5000040.0)


def test_describe_lists_the_product_facts(product):
    info = hio.describe(product[0])
    assert info["format"] == "prisma" and info["shape"] == (ROWS, COLS, 7)
    assert info["wavelength_range"] == (420.0, 2400.0)
    assert info["bands"] == "3 VNIR + 4 SWIR (overlap kept from SWIR)"
    assert info["no-data"] == "DN 0 in every band" and "VNIR 0 + DN" in info["scale"]


def test_missing_attributes_are_named(tmp_path, product):
    import h5py

    with h5py.File(product[0], "a") as file:
        del file.attrs["L2ScaleSwirMax"]
    with pytest.raises(FileFormatError, match="without the attributes L2ScaleSwirMax"):
        hu.open(product[0])
