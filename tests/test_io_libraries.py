"""Spectral libraries from files: ENVI .sli, USGS splib07 ASCII (measured and convolved
layouts), ECOSTRESS / ASTER text spectra, the package's CSV; units, deleted values and
resampling to a scene's bands."""

import zipfile

import numpy as np
import pytest
import spectral.io.envi as spy_envi

import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError
from hyperunmix.spectra import SpectralLibrary, resample

WAVELENGTHS_UM = np.linspace(0.4, 2.4, 21)
SPECTRA = np.random.default_rng(1).uniform(0.05, 0.9, size=(3, 21))
NAMES = ["Alunite GDS84 Na03", "Kaolinite CM9", "Calcite WS272"]


def _write_lines(path, title, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([f" {title}", *(f"{v: .7e}" for v in values)]) + "\n")
    return path


def _usgs_archive(root, deleted=()):
    """A splib07a-like folder: wavelength files at the top (an ASD grid in micrometres and
    a Beckman one of another size), spectra in chapter folders, one transmittance spectrum,
    and an errorbars folder."""
    _write_lines(
        root / "splib07a_Wavelengths_ASD_0.35-2.5_microns_21_ch.txt",
        "splib07a Record=4: Wavelengths ASD 0.35-2.5 microns 21 ch",
        WAVELENGTHS_UM,
    )
    _write_lines(
        root / "splib07a_Wavelengths_BECK_Beckman_0.2-3.0_microns.txt",
        "splib07a Record=11: Wavelengths BECK Beckman 0.2-3.0 microns",
        np.linspace(0.2, 3.0, 15),
    )
    _write_lines(
        root / "splib07a_Bandpass_(FWHM)_ASDFR_StandardResolution.txt",
        "splib07a Record=17: Bandpass (FWHM) ASDFR SR",
        np.full(21, 0.01),
    )
    for k, (name, values) in enumerate(zip(NAMES, SPECTRA)):
        values = values.copy()
        if k == 0:
            values[list(deleted)] = -1.23e34
        chapter = "ChapterM_Minerals"
        stem = name.replace(" ", "_")
        _write_lines(
            root / chapter / f"splib07a_{stem}_ASDFRb_AREF.txt",
            f"splib07a Record={100 + k}: {name}        ASDFRb AREF",
            values,
        )
    _write_lines(
        root / "ChapterM_Minerals" / "splib07a_Quartz_GDS31_ASDFRa_TRAN.txt",
        "splib07a Record=200: Quartz GDS31        ASDFRa TRAN",
        np.full(21, 0.5),
    )
    _write_lines(
        root / "errorbars" / "errorbars_for_Calcite.txt",
        "splib07a Record=300: Calcite WS272 errorbars  ASDFRb AREF",
        np.full(21, 0.01),
    )
    return root


def test_usgs_splib07_archive_folder(tmp_path):
    root = _usgs_archive(tmp_path / "ASCIIdata_splib07a", deleted=(0, 5))
    library = hio.read_library(root)
    assert library.names == sorted(NAMES)  # files in name order, transmittance left out
    np.testing.assert_allclose(library.wavelengths, WAVELENGTHS_UM * 1000)
    order = [NAMES.index(name) for name in library.names]
    expected = SPECTRA[order].copy()
    expected[library.names.index(NAMES[0]), [0, 5]] = np.nan  # deleted channels
    np.testing.assert_allclose(library.spectra, expected, rtol=1e-6)
    # A chapter folder and a single spectrum file find the wavelengths above them.
    chapter = hio.read_library(root / "ChapterM_Minerals")
    np.testing.assert_array_equal(chapter.spectra, library.spectra)
    one = hio.read_library(root / "ChapterM_Minerals" / "splib07a_Kaolinite_CM9_ASDFRb_AREF.txt")
    assert one.names == ["Kaolinite CM9"]
    np.testing.assert_allclose(one.spectra[0], SPECTRA[1], rtol=1e-6)


def test_usgs_zip_archive_reads_as_its_folder(tmp_path):
    root = _usgs_archive(tmp_path / "ASCIIdata_splib07a", deleted=(3,))
    archive = tmp_path / "ASCIIdata_splib07a.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        for file in sorted(root.rglob("*.txt")):
            stream.write(file, file.relative_to(tmp_path))
    from_zip, from_folder = hio.read_library(archive), hio.read_library(root)
    assert from_zip.names == from_folder.names
    np.testing.assert_array_equal(from_zip.spectra, from_folder.spectra)
    np.testing.assert_array_equal(from_zip.wavelengths, from_folder.wavelengths)
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(FileFormatError, match="cannot extract the zip archive"):
        hio.read_library(tmp_path / "broken.zip")


def test_usgs_deleted_values_are_skipped_when_resampling(tmp_path):
    root = _usgs_archive(tmp_path / "lib", deleted=(0, 1, 10))
    target = np.array([420.0, 1000.0, 1500.0, 2300.0])
    library = hio.read_library(root, wavelengths=target)
    alunite = library.spectra[library.names.index(NAMES[0])]
    # 420 nm lies below the first channel left (500 nm): not extrapolated.
    assert np.isnan(alunite[0])
    # 1500 nm falls in the gap of the deleted 1400 nm channel: interpolated across it.
    keep = np.ones(21, bool)
    keep[[0, 1, 10]] = False
    expected = np.interp(target[1:], WAVELENGTHS_UM[keep] * 1000, SPECTRA[0][keep])
    np.testing.assert_allclose(alunite[1:], expected, rtol=1e-6)
    kaolinite = library.spectra[library.names.index(NAMES[1])]
    np.testing.assert_allclose(
        kaolinite, np.interp(target, WAVELENGTHS_UM * 1000, SPECTRA[1]), rtol=1e-6
    )


def test_usgs_convolved_layout(tmp_path):
    """ASCIIdata_splib07b_cvAVIRISc2014: one instrument's wavelengths, in a file titled by
    the convolved library, the spectra convolved to those channels."""
    root = tmp_path / "ASCIIdata_splib07b_cvAVIRISc2014"
    _write_lines(
        root / "s07_AV14_AVIRIS_2014_Wavelengths_(microns)_21ch.txt",
        "s07_AV14 Record=1: AVIRIS 2014 Wavelengths in microns 21 channels",
        WAVELENGTHS_UM,
    )
    _write_lines(
        root / "ChapterM_Minerals" / "s07_AV14_Kaolinite_CM9_BECKb_AREF.txt",
        "s07_AV14 Record=6285: Kaolinite CM9        BECKb AREF",
        SPECTRA[1],
    )
    library = hio.read_library(root)
    assert library.names == ["Kaolinite CM9"]
    np.testing.assert_allclose(library.wavelengths, WAVELENGTHS_UM * 1000)


def test_usgs_spectra_on_different_grids_need_target_bands(tmp_path):
    root = _usgs_archive(tmp_path / "lib")
    _write_lines(
        root / "ChapterS_SoilsAndMixtures" / "splib07a_Soil_X_BECKa_AREF.txt",
        "splib07a Record=500: Soil X        BECKa AREF",
        np.linspace(0.1, 0.4, 15),
    )
    with pytest.raises(InputError, match=r"2 different band sets.*wavelengths="):
        hio.read_library(root)
    library = hio.read_library(root, wavelengths=[500.0, 1000.0], fwhm=20.0)
    assert library.spectra.shape == (4, 2) and np.all(np.isfinite(library.spectra))
    soil = library.spectra[library.names.index("Soil X")]
    np.testing.assert_allclose(
        soil, resample(np.linspace(0.1, 0.4, 15), np.linspace(200, 3000, 15), [500, 1000], 20.0)[0]
    )


def test_usgs_folder_leaves_out_a_spectrum_it_cannot_place_and_says_so(tmp_path):
    root = _usgs_archive(tmp_path / "lib")
    odd = _write_lines(
        root / "ChapterM_Minerals" / "splib07a_Odd_X_ASDFRb_AREF.txt",
        "splib07a Record=900: Odd X        ASDFRb AREF",
        np.full(9, 0.3),
    )
    with pytest.warns(UserWarning, match=r"1 USGS spectra of .* left out, e\.g\. .*Odd_X"):
        library = hio.read_library(root)
    assert "Odd X" not in library.names and len(library.names) == 3
    with pytest.raises(FileFormatError, match="9 values"):
        hio.read_library(odd)


def test_usgs_spectrum_without_its_wavelength_file(tmp_path):
    path = _write_lines(
        tmp_path / "ChapterM" / "splib07a_X_ASDFRb_AREF.txt",
        "splib07a Record=1: X        ASDFRb AREF",
        SPECTRA[0],
    )
    with pytest.raises(FileFormatError, match="no USGS wavelength file"):
        hio.read_library(path)
    _write_lines(
        tmp_path / "splib07a_Wavelengths_ASD_9_ch.txt",
        "splib07a Record=4: Wavelengths ASD 9 ch",
        WAVELENGTHS_UM[:9],
    )
    with pytest.raises(FileFormatError, match=r"21 values.*no wavelength file of that size"):
        hio.read_library(path)


ECOSTRESS = """Name: Kaolinite KGa-1
Type: Mineral
Class: Silicate
Subclass: Phyllosilicate
Particle Size: 0-125 um
Sample No.: KGa-1
Owner: JHU
Wavelength Range: VSWIR
Origin: Source Clays
Collection Date: N/A
Description: Well-crystallized kaolinite.
Measurement: Directional (10 Degree) Hemispherical Reflectance
First Column: X
Second Column: Y
X Units: Wavelength (micrometers)
Y Units: Reflectance (percent)
First X Value: 2.4
Last X Value: 0.4
Number of X Values: 21
Additional Information: none

"""

# ASTER 2.x: Origin over 2 lines and Description over 6, which ECOSTRESS's reader rejects.
ASTER = """Name: Calcite C-3A
Type: Mineral
Class: Carbonate
Subclass: none
Particle Size: 125-500 um
Sample No.: C-3A
Owner: JPL
Wavelength Range: All
Origin: Mexico
 Chihuahua
Description: Calcite, coarse.
 line 2
 line 3
 line 4
 line 5
 line 6
Measurement: Bidirectional reflectance
First Column: X
Second Column: Y
X Units: Wavelength (micrometers)
Y Units: Reflectance (percent)
First X Value: 0.4
Last X Value: 2.4
Number of X Values: 21
Additional Information:
 none

"""


def test_ecostress_and_aster_spectra(tmp_path):
    descending = WAVELENGTHS_UM[::-1]
    rows = "\n".join(f"{w:.4f}\t{100 * v:.6f}" for w, v in zip(descending, SPECTRA[1][::-1]))
    (tmp_path / "mineral.silicate.kaolinite.vswir.kga1.jhu.becknic.spectrum.txt").write_text(
        ECOSTRESS + rows + "\n"
    )
    rows = "\n".join(f"{w:.4f}\t{100 * v:.6f}" for w, v in zip(WAVELENGTHS_UM, SPECTRA[2]))
    (tmp_path / "jpl.nicolet.mineral.carbonate.none.coarse.c03a.spectrum.txt").write_text(
        ASTER + rows + "\n"
    )
    library = hio.read_library(tmp_path)
    assert library.names == ["Calcite C-3A", "Kaolinite KGa-1"]
    np.testing.assert_allclose(library.wavelengths, WAVELENGTHS_UM * 1000)
    # percent -> fraction, rows put in ascending wavelength order
    np.testing.assert_allclose(library.spectra, SPECTRA[[2, 1]], atol=1e-6)


def test_ecostress_against_wavenumbers_is_refused(tmp_path):
    text = ECOSTRESS.replace("Wavelength (micrometers)", "Wavenumber (cm-1)")
    (tmp_path / "x.spectrum.txt").write_text(text + "400 10\n500 20\n")
    with pytest.raises(FileFormatError, match="not wavelengths"):
        hio.read_library(tmp_path / "x.spectrum.txt")


def test_envi_spectral_library(tmp_path):
    header = {
        "wavelength": list(WAVELENGTHS_UM),
        "wavelength units": "Micrometers",
        "spectra names": NAMES,
        "reflectance scale factor": 10000,
    }
    library = spy_envi.SpectralLibrary((SPECTRA * 10000).astype(np.float32), header, {})
    library.save(str(tmp_path / "lib"))
    read = hio.read_library(tmp_path / "lib.sli")
    assert read.names == NAMES
    np.testing.assert_allclose(read.wavelengths, WAVELENGTHS_UM * 1000)
    np.testing.assert_allclose(read.spectra, SPECTRA, rtol=1e-6)


def test_csv_round_trip_groups_a_bundle(tmp_path):
    bundle = SpectralLibrary(SPECTRA, [0, 0, 1], ["soil", "water"], WAVELENGTHS_UM * 1000)
    path = hio.write_library(tmp_path / "bundle.csv", bundle)
    assert path.read_text().splitlines()[0] == "wavelength_nm,soil,soil,water"
    read = hio.read_library(path)
    assert read.names == ["soil", "water"]
    np.testing.assert_array_equal(read.labels, [0, 0, 1])
    np.testing.assert_array_equal(read.spectra, SPECTRA)
    np.testing.assert_array_equal(read.wavelengths, bundle.wavelengths)


def test_resample_library_matches_resample_inside_the_range():
    library = SpectralLibrary(SPECTRA, [0, 1, 2], NAMES, WAVELENGTHS_UM * 1000)
    target = np.array([350.0, 800.0, 1600.0, 2400.0, 2500.0])
    out = hio.resample_library(library, target, fwhm=15.0)
    assert np.all(np.isnan(out.spectra[:, [0, 4]]))  # outside 400-2400 nm
    np.testing.assert_allclose(out.spectra[:, 1:4], library.resample(target[1:4], 15.0).spectra)


def test_resample_library_refuses_bad_bands():
    library = SpectralLibrary(SPECTRA, [0, 1, 2], NAMES, WAVELENGTHS_UM * 1000)
    with pytest.raises(InputError, match="fwhm has 2 values for 3 bands"):
        hio.resample_library(library, [500.0, 600.0, 700.0], fwhm=[10.0, 10.0])
    with pytest.raises(InputError, match="positive finite"):
        hio.resample_library(library, [500.0, np.nan])


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("x.txt", "hello\n1\n", "neither a USGS"),
        ("x.dat", "1\n", "unknown extension"),
    ],
)
def test_unreadable_libraries(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(FileFormatError, match=message):
        hio.read_library(tmp_path / name)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(FileFormatError, match="no USGS wavelength file"):
        hio.read_library(tmp_path)
    with pytest.raises(FileFormatError, match="does not exist"):
        hio.read_library(tmp_path / "nothing.sli")
