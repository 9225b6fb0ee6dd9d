"""ENVI reading: interleaves, byte order, header fields, georeferencing, broken files.
Test files are written by `spectral` or by hand, independently of our writer."""

import numpy as np
import pytest
import rasterio
import spectral.io.envi as spectral_envi
from rasterio.crs import CRS

import hyperunmix.io as hio
from hyperunmix import FileFormatError, GeoInfo, InputError, ScalingWarning, Scene


def known_cube(dtype=np.float32) -> np.ndarray:
    """(3, 4, 5) cube whose value encodes its position: 100*row + 10*col + band + 1."""
    rows, cols, bands = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    return (100 * rows + 10 * cols + bands + 1).astype(dtype)


def write_envi(path, cube, **metadata):
    spectral_envi.save_image(
        str(path),
        cube,
        force=True,
        ext=".img",
        interleave=metadata.pop("interleave", "bsq"),
        metadata=metadata,
    )
    return path


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_every_interleave_reads_the_same_image(tmp_path, interleave):
    path = write_envi(tmp_path / "x.hdr", known_cube(), interleave=interleave)
    scene = hio.open_scene(path)
    np.testing.assert_array_equal(scene.cube, known_cube())
    assert scene.metadata["interleave"] == interleave


def test_big_endian_data_with_header_offset(tmp_path):
    cube = known_cube()
    offset = 128
    with open(tmp_path / "be.raw", "wb") as data:
        data.write(b"\0" * offset)
        data.write(np.ascontiguousarray(cube.transpose(2, 0, 1)).astype(">f4").tobytes())
    (tmp_path / "be.hdr").write_text(
        f"ENVI\nsamples = 4\nlines = 3\nbands = 5\nheader offset = {offset}\n"
        "data type = 4\ninterleave = bsq\nbyte order = 1\n"
    )
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "be.hdr").cube, cube)
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "be.raw").cube, cube)


def test_header_fields_become_scene_metadata(tmp_path):
    cube = known_cube()
    cube[0, 1] = -9999.0  # a no-data pixel
    path = write_envi(
        tmp_path / "x.hdr",
        cube,
        **{
            "wavelength": [0.45, 0.55, 0.65, 0.75, 0.85],
            "wavelength units": "Micrometers",
            "fwhm": [0.01, 0.01, 0.02, 0.02, 0.02],
            "bbl": [1, 1, 0, 1, 0],
            "data ignore value": -9999,
            "band names": ["a", "b", "c", "d", "e"],
        },
    )
    scene = hio.open_scene(path)
    np.testing.assert_allclose(scene.wavelengths, [450, 550, 650, 750, 850])
    np.testing.assert_allclose(scene.fwhm, [10, 10, 20, 20, 20])
    np.testing.assert_array_equal(scene.bad_bands, [2, 4])
    assert not scene.mask[0, 1] and scene.mask.sum() == 11
    assert scene.metadata["nodata"] == -9999.0
    assert scene.metadata["band_names"] == ["a", "b", "c", "d", "e"]


def test_wavelengths_without_units_below_30_are_micrometres(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube(), wavelength=[0.4, 0.5, 0.6, 0.7, 2.5])
    np.testing.assert_allclose(hio.open_scene(path).wavelengths, [400, 500, 600, 700, 2500])
    path = write_envi(tmp_path / "y.hdr", known_cube(), wavelength=[400, 500, 600, 700, 2500])
    np.testing.assert_allclose(hio.open_scene(path).wavelengths, [400, 500, 600, 700, 2500])


def test_reflectance_scale_factor_scales_integer_data(tmp_path):
    path = write_envi(
        tmp_path / "x.hdr", known_cube(np.uint16), **{"reflectance scale factor": 1000}
    )
    scene = hio.open_scene(path)
    np.testing.assert_allclose(scene.cube, known_cube() / 1000, rtol=1e-6)


def test_no_data_value_is_the_stored_one_whatever_the_scale(tmp_path):
    cube = known_cube(np.uint16)
    cube[2, 3] = 65535  # no-data, in the file's encoding
    path = write_envi(
        tmp_path / "x.hdr", cube, **{"reflectance scale factor": 1000, "data ignore value": 65535}
    )
    scene = hio.open_scene(path)
    assert not scene.mask[2, 3] and scene.mask.sum() == 11
    from hyperunmix.scale import open_cube  # the chunked reader masks the same pixels

    np.testing.assert_array_equal(np.isfinite(open_cube(path).values).all(-1), scene.mask)


def test_integer_data_without_scale_warn(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube(np.int16))
    with pytest.warns(ScalingWarning, match="digital numbers"):
        hio.open_scene(path)


def test_map_info_from_gdal_written_file(tmp_path):
    """An ENVI file georeferenced by GDAL (UTM map info + coordinate system string)."""
    transform = rasterio.transform.Affine(2.5, 0, 350000, 0, -2.5, 4100000)
    with rasterio.open(
        tmp_path / "g.img",
        "w",
        driver="ENVI",
        width=4,
        height=3,
        count=5,
        dtype="float32",
        crs="EPSG:32633",
        transform=transform,
    ) as dataset:
        dataset.write(np.moveaxis(known_cube(), 2, 0))
    scene = hio.open_scene(tmp_path / "g.hdr")
    np.testing.assert_array_equal(scene.cube, known_cube())
    assert CRS.from_user_input(scene.geo.crs) == CRS.from_epsg(32633)
    assert scene.geo.transform == tuple(transform)[:6]


def test_our_envi_output_is_standard_for_gdal_and_spectral(tmp_path):
    """Map info and band fields we write are read back by GDAL and spectral themselves."""
    geo = GeoInfo("EPSG:4326", (0.001, 0.0, 10.0, 0.0, -0.001, 50.0))
    scene = Scene(known_cube(), [400, 500, 600, 700, 800], bad_bands=[1], geo=geo)
    hio.write_scene(tmp_path / "out.hdr", scene)
    with rasterio.open(tmp_path / "out.img") as dataset:
        assert dataset.crs == CRS.from_epsg(4326)
        assert tuple(dataset.transform)[:6] == pytest.approx(geo.transform)
        np.testing.assert_array_equal(np.moveaxis(dataset.read(), 0, 2), known_cube())
    header = spectral_envi.open(str(tmp_path / "out.hdr")).metadata
    assert [float(w) for w in header["wavelength"]] == [400, 500, 600, 700, 800]
    assert [int(b) for b in header["bbl"]] == [1, 0, 1, 1, 1]
    assert "part" not in (tmp_path / "out.hdr").read_text()  # no temporary name leaks in


def test_data_file_path_finds_its_header(tmp_path):
    write_envi(tmp_path / "x.hdr", known_cube())
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "x.img").cube, known_cube())


# -- broken files ------------------------------------------------------------------------
def test_truncated_data_file(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube())
    with open(tmp_path / "x.img", "r+b") as data:
        data.truncate(100)
    with pytest.raises(FileFormatError, match=r"x\.img is truncated: .*240 bytes.* 100 bytes"):
        hio.open_scene(path)
    with pytest.raises(FileFormatError, match=r"x\.img is truncated"):  # describe checks too
        hio.describe(path)


@pytest.mark.parametrize(
    ("samples", "error", "message"),
    [
        (
            -4,
            FileFormatError,
            r"x\.hdr describes an image of 3 lines x -4 samples x 5 bands: a size",
        ),
        (0, InputError, r"x\.hdr: a scene cube cannot have an empty axis, got shape \(3, 0, 5\)"),
    ],
)
def test_impossible_and_empty_sizes_are_refused_by_open_and_describe(
    tmp_path, samples, error, message
):
    (tmp_path / "x.hdr").write_text(
        f"ENVI\nsamples = {samples}\nlines = 3\nbands = 5\ndata type = 4\n"
        "interleave = bsq\nbyte order = 0\n"
    )
    (tmp_path / "x.img").write_bytes(b"")
    with pytest.raises(error, match=message):
        hio.open_scene(tmp_path / "x.hdr")
    with pytest.raises(error, match=message):
        hio.describe(tmp_path / "x.hdr")


@pytest.mark.parametrize("factor", ["0", "nan"])
def test_a_reflectance_scale_factor_of_zero_is_refused(tmp_path, factor):
    path = write_envi(tmp_path / "x.hdr", known_cube(), **{"reflectance scale factor": factor})
    message = r"x\.hdr has a reflectance scale factor of (0|nan): it must be a finite, nonzero"
    with pytest.raises(FileFormatError, match=message):
        hio.open_scene(path)
    with pytest.raises(FileFormatError, match=message):
        hio.describe(path)


def test_a_failed_memory_map_gives_its_reason(tmp_path, monkeypatch):
    path = write_envi(tmp_path / "x.hdr", known_cube())

    def no_memory(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(np, "memmap", no_memory)
    with pytest.raises(
        FileFormatError, match=r"cannot map the ENVI data file .*x\.img: .*Cannot allocate memory"
    ):
        hio.open_scene(path)


def test_wavelength_count_differs_from_band_count(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube(), wavelength=[400, 500, 600])
    with pytest.raises(FileFormatError, match=r"x\.hdr lists 3 wavelengths for 5 bands"):
        hio.open_scene(path)
    with pytest.raises(FileFormatError, match="lists 3 wavelengths for 5 bands"):
        hio.describe(path)


def test_bad_band_list_of_the_wrong_length(tmp_path):
    path = write_envi(tmp_path / "x.hdr", known_cube(), bbl=[1, 0])
    with pytest.raises(FileFormatError, match=r"bad-band list \(bbl\) of 2 entries for 5"):
        hio.open_scene(path)


def test_not_an_envi_header(tmp_path):
    (tmp_path / "x.hdr").write_text("this is not a header\n")
    (tmp_path / "x.img").write_bytes(b"\0" * 16)
    with pytest.raises(FileFormatError, match=r"cannot read the ENVI header .*x\.hdr"):
        hio.open_scene(tmp_path / "x.hdr")


def test_header_without_data_file_and_data_without_header(tmp_path):
    (tmp_path / "lonely.hdr").write_text(
        "ENVI\nsamples = 1\nlines = 1\nbands = 1\ndata type = 4\ninterleave = bsq\n"
    )
    with pytest.raises(FileFormatError, match=r"no ENVI data file beside .*lonely\.hdr"):
        hio.open_scene(tmp_path / "lonely.hdr")
    (tmp_path / "orphan.bsq").write_bytes(b"\0" * 16)
    with pytest.raises(FileFormatError, match="cannot tell the format"):
        hio.open_scene(tmp_path / "orphan.bsq")


def test_a_data_file_with_the_cal_extension_is_found_from_its_header(tmp_path):
    spectral_envi.save_image(str(tmp_path / "x.hdr"), known_cube(), ext=".cal")
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "x.hdr").cube, known_cube())


def test_a_header_with_latin1_bytes_is_read(tmp_path):
    """GDAL reads it; ENVI writes descriptions in the system's encoding."""
    path = write_envi(tmp_path / "x.hdr", known_cube(), wavelength=[400, 500, 600, 700, 800])
    text = path.read_bytes().replace(
        b"ENVI\n", "ENVI\ndescription = {Température}\n".encode("latin-1"), 1
    )
    path.write_bytes(text)
    scene = hio.open_scene(path)
    np.testing.assert_array_equal(scene.cube, known_cube())
    np.testing.assert_allclose(scene.wavelengths, [400, 500, 600, 700, 800])
    assert hio.describe(path)["shape"] == (3, 4, 5)


def write_masked_envi(directory):
    """``known_cube`` as ENVI ``m.img`` / ``m.hdr`` written by GDAL, with its mask side-car
    ``m.img.msk`` marking pixel (1, 2) invalid; returns the mask (255 = valid)."""
    mask = np.full((3, 4), 255, dtype=np.uint8)
    mask[1, 2] = 0
    with (
        rasterio.Env(GDAL_PAM_ENABLED="NO"),
        rasterio.open(
            directory / "m.img", "w", driver="ENVI", width=4, height=3, count=5, dtype="float32"
        ) as dataset,
    ):
        dataset.write(np.moveaxis(known_cube(), 2, 0))
        dataset.write_mask(mask)
    return mask


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_gdal_mask_side_car_makes_pixels_invalid(tmp_path):
    mask = write_masked_envi(tmp_path)
    assert (tmp_path / "m.img.msk").is_file()
    scene = hio.open_scene(tmp_path / "m.hdr")
    np.testing.assert_array_equal(scene.mask, mask > 0)


# -- spectral libraries ------------------------------------------------------------------
def write_library(path, spectra, **header):
    """An ENVI spectral library (``path`` without extension -> .sli + .hdr) by spectral."""
    spectral_envi.SpectralLibrary(spectra, header, {}).save(str(path))
    return path.with_suffix(".sli")


def test_a_spectral_library_is_refused_as_a_scene_and_read_as_endmembers(tmp_path):
    spectra = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    sli = write_library(
        tmp_path / "lib",
        spectra,
        wavelength=[0.4, 0.5, 0.6, 0.7, 0.8],
        **{"wavelength units": "Micrometers", "spectra names": ["grass", "soil", "water"]},
    )
    for path in (sli, sli.with_suffix(".hdr")):
        with pytest.raises(
            FileFormatError,
            match=r"lib\.sli is an ENVI spectral library \(3 spectra of 5 bands\), not an "
            r"image: read its spectra with hyperunmix\.io\.read_endmembers",
        ):
            hio.open_scene(path)
        info = hio.describe(path)
        assert info["kind"] == "spectral library" and info["shape"] == (3, 5)
        assert info["wavelength_range"] == pytest.approx((400, 800))
        endmembers, wavelengths, names = hio.read_endmembers(path)
        np.testing.assert_allclose(endmembers, spectra)
        np.testing.assert_allclose(wavelengths, [400, 500, 600, 700, 800])
        assert names == ["grass", "soil", "water"]
    assert hio.describe(write_envi(tmp_path / "image.hdr", known_cube()))["kind"] == "image"
    with pytest.raises(FileFormatError, match=r"image\.hdr describes an image, not an ENVI"):
        hio.read_endmembers(tmp_path / "image.hdr")


def test_a_library_reflectance_scale_factor_scales_its_spectra(tmp_path):
    sli = write_library(
        tmp_path / "lib", np.full((2, 3), 5000, np.int16), **{"reflectance scale factor": 10000}
    )
    np.testing.assert_allclose(hio.read_endmembers(sli)[0], np.full((2, 3), 0.5))
