"""EnMAP L2A and DESIS L2A products (GeoTIFF + XML metadata + quality layers), built in
tmp_path after the layouts documented in hyperunmix.io.enmap and hyperunmix.io.desis:
detection by structure, wavelengths, FWHM, reflectance scale, no-data, bad bands, quality
masks, georeferencing, `info`, and the errors for broken metadata."""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from test_io_geotiff import TRANSFORM, write_tiff
from typer.testing import CliRunner

import hyperunmix as hu
import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError, ScalingWarning
from hyperunmix.cli import app

ROWS, COLS, BANDS = 4, 5, 6
NODATA = -32768
WAVELENGTHS = np.array([420.1, 480.5, 560.25, 910.0, 1650.75, 2200.5])
FWHM = np.array([6.5, 6.9, 7.3, 9.1, 10.2, 8.8])
#: Per-band gains and offsets, all different, so that a reader applying one scene-wide
#: factor, or the bands in another order, fails.
GAINS = np.array([1e-4, 2e-4, 1e-4, 5e-5, 1e-4, 1e-4])
OFFSETS = np.array([0.0, 0.01, -0.005, 0.0, 0.002, 0.0])
BAD_BAND = 3  # delivered as no-data everywhere
CLOUD = [(0, 1), (2, 3)]
EMPTY = (3, 0)  # no-data in every band


def digital_numbers():
    """(L, H, W) int16: positive DN, no-data at EMPTY and throughout BAD_BAND."""
    rng = np.random.default_rng(7)
    dn = rng.integers(200, 6000, size=(BANDS, ROWS, COLS)).astype(np.int16)
    dn[BAD_BAND] = NODATA
    dn[:, EMPTY[0], EMPTY[1]] = NODATA
    return dn


def add_band_values(element, band, tags):
    """Children ``tags`` (centre, FWHM, gain, offset) of a band element, with band
    ``band``'s values (band numbers past the arrays' end repeat them)."""
    for tag, values in zip(tags, (WAVELENGTHS, FWHM, GAINS, OFFSETS)):
        ElementTree.SubElement(element, tag).text = repr(float(values[band % BANDS]))


def enmap_xml(path, n_bands=BANDS, level="L2A"):
    """METADATA.XML after the EnMAP layout: level_X / specific / bandCharacterisation /
    bandID[@number], written in reverse band order (the number, not the position, counts)."""
    root = ElementTree.Element("level_X")
    ElementTree.SubElement(ElementTree.SubElement(root, "base"), "level").text = level
    specific = ElementTree.SubElement(root, "specific")
    ElementTree.SubElement(specific, "backgroundValue").text = str(NODATA)
    table = ElementTree.SubElement(specific, "bandCharacterisation")
    tags = ("wavelengthCenterOfBand", "FWHMOfBand", "GainOfBand", "OffsetOfBand")
    for band in reversed(range(n_bands)):
        add_band_values(ElementTree.SubElement(table, "bandID", number=str(band + 1)), band, tags)
    ElementTree.ElementTree(root).write(path)
    return path


def desis_xml(path, n_bands=BANDS, background=NODATA):
    """METADATA.xml after the DESIS layout: hsi_doc / specific / bandCharacterisation /
    band with bandNumber; a geometric <band> table elsewhere, as in the real files."""
    root = ElementTree.Element("hsi_doc")
    specific = ElementTree.SubElement(root, "specific")
    ElementTree.SubElement(specific, "backgroundValue").text = str(background)
    interior = ElementTree.SubElement(specific, "interiorOrientation")
    ElementTree.SubElement(ElementTree.SubElement(interior, "band"), "bandNumber").text = "1"
    table = ElementTree.SubElement(specific, "bandCharacterisation")
    tags = ("wavelengthCenterOfBand", "wavelengthWidthOfBand", "gainOfBand", "offsetOfBand")
    for band in range(n_bands):
        element = ElementTree.SubElement(table, "band")
        ElementTree.SubElement(element, "bandNumber").text = str(band + 1)
        add_band_values(element, band, tags)
    ElementTree.ElementTree(root).write(path)
    return path


def flags(cells, value=1, dtype=np.uint8):
    """(1, H, W) quality raster with ``value`` at ``cells``."""
    layer = np.zeros((1, ROWS, COLS), dtype=dtype)
    for row, col in cells:
        layer[0, row, col] = value
    return layer


@pytest.fixture
def enmap(tmp_path):
    """An EnMAP L2A product: image, XML, cloud (value 1), cirrus (2: medium) and a
    per-band pixel mask with one defective pixel and background 255 elsewhere."""
    prefix = tmp_path / "ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z"
    image = write_tiff(f"{prefix}-SPECTRAL_IMAGE.TIF", digital_numbers(), crs="EPSG:32633")
    enmap_xml(f"{prefix}-METADATA.XML")
    write_tiff(f"{prefix}-QL_QUALITY_CLOUD.TIF", flags(CLOUD))
    write_tiff(f"{prefix}-QL_QUALITY_CIRRUS.TIF", flags([(1, 4)], value=2))
    pixelmask = np.zeros((BANDS, ROWS, COLS), dtype=np.uint8)
    pixelmask[5, 0, 4] = 1
    pixelmask[:, EMPTY[0], EMPTY[1]] = 255
    write_tiff(f"{prefix}-QL_PIXELMASK.TIF", pixelmask)
    return Path(image)


@pytest.fixture
def desis(tmp_path):
    """A DESIS L2A product: image (with the no-data value as its GDAL nodata, which
    overrides the XML's other background value), XML and the ten-band QL_QUALITY-2 with
    cloud over water (band 7) at CLOUD and the water flag (band 8, not a mask) elsewhere."""
    prefix = tmp_path / "DESIS-HSI-L2A-DT0483531728_001-20200627T144624-V0210"
    dn = digital_numbers()
    image = write_tiff(f"{prefix}-SPECTRAL_IMAGE.tif", dn, crs="EPSG:32611", nodata=NODATA)
    desis_xml(f"{prefix}-METADATA.xml", background=-9999)
    quality = np.zeros((10, ROWS, COLS), dtype=np.uint8)
    quality[6] = flags(CLOUD)[0]
    quality[7, 3, 3] = 1  # water: no reason to mask
    quality[8] = 12  # aerosol optical thickness, a value
    write_tiff(f"{prefix}-QL_QUALITY-2.tif", quality)
    return Path(image)


def expected_reflectance():
    """(H, W, L) the layouts define: DN * gain + offset per band."""
    dn = np.moveaxis(digital_numbers(), 0, 2).astype(np.float64)
    return dn * GAINS + OFFSETS


def check_product(scene, extra_masked=()):
    assert scene.wavelengths.tolist() == WAVELENGTHS.tolist()
    assert scene.fwhm.tolist() == FWHM.tolist()
    assert scene.bad_bands.tolist() == [BAD_BAND]
    good = [b for b in range(BANDS) if b != BAD_BAND]
    valid = np.ones((ROWS, COLS), dtype=bool)
    for cell in [EMPTY, *CLOUD, *extra_masked]:
        valid[cell] = False
    np.testing.assert_array_equal(scene.mask, valid)
    np.testing.assert_allclose(
        scene.cube[valid][:, good], expected_reflectance()[valid][:, good], rtol=1e-6, atol=1e-7
    )
    assert np.all(scene.cube[:, :, BAD_BAND] == 0)
    assert scene.geo.transform == tuple(TRANSFORM)[:6]


def test_enmap_l2a_reads_as_reflectance_with_its_masks(enmap):
    assert hio.format_of(enmap) == "enmap"
    scene = hu.open(enmap)
    check_product(scene, extra_masked=[(1, 4), (0, 4)])  # cirrus, defective pixel
    assert CRS.from_user_input(scene.geo.crs) == CRS.from_epsg(32633)
    assert scene.metadata["format"] == "enmap"
    assert scene.metadata["nodata"] == NODATA
    assert scene.metadata["quality_masked"] == {"cloud": 2, "cirrus": 1, "pixelmask": 1}


def test_desis_l2a_reads_as_reflectance_with_its_masks(desis):
    assert hio.format_of(desis) == "desis"
    scene = hu.open(desis)
    check_product(scene)  # the water and aerosol bands mask nothing
    assert CRS.from_user_input(scene.geo.crs) == CRS.from_epsg(32611)
    assert scene.metadata["quality_masked"] == {"shadow": 0, "snow": 0, "haze": 0, "cloud": 2}


def test_quality_option_selects_the_masking_layers(enmap, desis):
    scene = hu.open(enmap, quality="cloud")
    assert scene.mask[1, 4] and scene.mask[0, 4] and not scene.mask[CLOUD[0]]
    assert hu.open(desis, quality="none").mask[CLOUD[0]]
    assert hu.open(desis, quality=[]).mask[CLOUD[1]]
    with pytest.raises(InputError, match="DESIS has no quality layer cirrus; its layers: shadow"):
        hu.open(desis, quality="cloud,cirrus")


def test_the_structure_not_the_name_tells_the_product(tmp_path, enmap):
    # Renamed, the image is still EnMAP by the XML beside it ...
    image = write_tiff(tmp_path / "site-SPECTRAL_IMAGE.tif", digital_numbers())
    enmap_xml(tmp_path / "site-METADATA.XML")
    assert hio.format_of(image) == "enmap"
    assert hu.open(image).bad_bands.tolist() == [BAD_BAND]
    # ... DESIS by a DESIS XML, and a GeoTIFF beside an XML of neither is a GeoTIFF.
    desis_xml(tmp_path / "site-METADATA.XML")
    assert hio.format_of(image) == "desis"
    (tmp_path / "site-METADATA.XML").write_text("<catalogue><item/></catalogue>")
    assert hio.format_of(image) == "gtiff"
    with pytest.warns(ScalingWarning, match="negative"):  # -32768, not known as no-data
        assert hu.open(image, scale=1e-4).wavelengths is None


def test_a_product_opens_by_its_metadata_or_its_folder(tmp_path, enmap):
    expected = hu.open(enmap).cube
    xml = next(enmap.parent.glob("*-METADATA.XML"))
    for path in (xml, enmap.parent):
        np.testing.assert_array_equal(hu.open(path).cube, expected)
        assert hio.describe(path)["path"] == str(enmap)
    # Two products in one folder: which one is meant is not guessed.
    other = write_tiff(
        tmp_path / "ENMAP01-____L2A-DT0000009999-SPECTRAL_IMAGE.TIF", digital_numbers()
    )
    with pytest.raises(InputError, match="holds several spectral images"):
        hu.open(tmp_path)
    Path(other).unlink()
    enmap.unlink()
    with pytest.raises(FileFormatError, match=r"metadata, and its spectral image .* not beside"):
        hu.open(xml)


def test_info_describes_the_products(enmap, desis):
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(enmap)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "enmap: DLR EnMAP L2A product" in text and f"{ROWS} x {COLS} px, {BANDS} bands" in text
    assert "420.1 - 2200.5 nm" in text and "EPSG:32633" in text
    assert "cloud, cirrus, pixelmask" in text and "-32768" in text
    description = hio.describe(desis)
    assert description["format"] == "desis" and description["dtype"] == "int16"
    assert description["fwhm"] == "6.50 - 10.20 nm"
    scale = "DN x gain + offset by band (gains 5e-05 - 0.0002, offsets -0.005 - 0.01)"
    assert description["scale to reflectance"] == scale
    assert description["quality layers"] == "shadow, snow, haze, cloud"
    assert description["no-data"] == str(NODATA)  # the GeoTIFF's, over the XML's -9999


def test_broken_metadata_is_a_clear_error(enmap, desis):
    xml = enmap.with_name(enmap.name.replace("SPECTRAL_IMAGE.TIF", "METADATA.XML"))
    enmap_xml(xml, n_bands=BANDS - 1)
    for read in (hu.open, hio.describe):
        with pytest.raises(FileFormatError, match=r"METADATA\.XML lists 5 bands, but .* holds 6"):
            read(enmap)
    enmap_xml(xml, level="L1C")
    with pytest.raises(FileFormatError, match="EnMAP L1C product; hyperunmix reads the L2A"):
        hu.open(enmap)
    enmap_xml(xml)
    xml.write_text(xml.read_text().replace("<GainOfBand>0.0001<", "<GainOfBand>n/a<", 1))
    with pytest.raises(FileFormatError, match="<GainOfBand> holds 'n/a', not a number"):
        hu.open(enmap)
    xml.write_text(xml.read_text().replace("<GainOfBand>n/a</GainOfBand>", "", 1))
    with pytest.raises(FileFormatError, match="a band element has no <GainOfBand>"):
        hu.open(enmap)
    xml.write_text("<catalogue><item/></catalogue>")  # named as EnMAP names its images
    with pytest.raises(FileFormatError, match="root element is <catalogue>, not <level_X>"):
        hu.open(enmap)
    xml.unlink()  # named as EnMAP names its images, without its XML: not a plain GeoTIFF
    with pytest.raises(FileFormatError, match=r"without its metadata: .*-METADATA\.XML is not"):
        hu.open(enmap)
    cloud = next(desis.parent.glob("*QL_QUALITY-2.tif"))
    write_tiff(cloud, np.zeros((10, ROWS + 1, COLS), dtype=np.uint8))
    with pytest.raises(FileFormatError, match=r"is 5 x 5 px, but the image .* is 4 x 5"):
        hu.open(desis)
    assert hu.open(desis, quality="none").n_pixels == ROWS * COLS - 1
    with rasterio.open(desis, "r+") as dataset:  # scales of its own: which ones hold?
        dataset.scales = [1e-4] * BANDS
    with pytest.raises(FileFormatError, match="declares GDAL band scales or offsets besides"):
        hu.open(desis, quality="none")


def test_the_chunked_reader_refuses_them_with_the_way_round(enmap):
    from hyperunmix.scale import open_cube

    with pytest.raises(FileFormatError, match=r"\(enmap\) cannot be read chunk by chunk"):
        open_cube(enmap)


def test_unmix_writes_georeferenced_maps_without_the_masked_pixels(tmp_path, enmap):
    out = tmp_path / "out"
    args = ["unmix", enmap, "-m", "fcls", "-p", 2, "--out", out, "--no-figures"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "abundances.tif") as maps:  # GeoTIFF: the product is read only
        assert maps.crs == CRS.from_epsg(32633) and maps.transform == TRANSFORM
        first = maps.read(1)
    masked = [EMPTY, *CLOUD, (1, 4), (0, 4)]
    assert all(np.isnan(first[cell]) for cell in masked)
    assert np.isfinite(first).sum() == ROWS * COLS - len(masked)
