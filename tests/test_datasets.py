"""Real datasets and libraries: shapes, scaling, pixel order (F vs C), checksums, errors."""

import hashlib
import os
from pathlib import Path

import numpy as np
import platformdirs
import pytest
import scipy.io

from hyperunmix import datasets
from hyperunmix.errors import DataNotFoundError, FileFormatError, InputError
from hyperunmix.metrics import sad_matrix


def relative_residual(cube, abundances, endmembers):
    """|Y - A E| / |Y| over all pixels."""
    pixels = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    residual = pixels - abundances.reshape(-1, abundances.shape[-1]) @ endmembers
    return np.linalg.norm(residual) / np.linalg.norm(pixels)


def check_simplex(abundances):
    assert abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(axis=-1), 1.0, atol=1e-9)


@pytest.fixture(scope="module")
def jasper(data_dir):
    return datasets.load("jasper_ridge", data_dir)


@pytest.fixture(scope="module")
def samson(data_dir):
    return datasets.load("samson", data_dir)


# -- loading ---------------------------------------------------------------------------------
def test_jasper_ridge_shapes_scale_and_wavelengths(jasper):
    assert jasper.cube.shape == (100, 100, 198)
    assert jasper.cube.dtype == np.float32
    assert jasper.truth.abundances.shape == (100, 100, 4)
    assert jasper.truth.endmembers.shape == (4, 198)
    assert jasper.truth.names == ["Tree", "Water", "Dirt", "Road"]
    assert jasper.truth.endmember_scale == "absolute"
    assert jasper.metadata["format"] == "mat"
    # uint16 / 5000: reflectance up to about 1.09, not digital numbers.
    assert 1.0 < jasper.cube.max() < 1.1
    # SlectBands 4..219 (1-based) of the AVIRIS table: 399.37 to 2457.24 nm.
    assert jasper.wavelengths[0] == pytest.approx(399.37, abs=0.01)
    assert jasper.wavelengths[-1] == pytest.approx(2457.24, abs=0.01)
    check_simplex(jasper.truth.abundances)


def test_samson_shapes_wavelengths_and_shape_only_endmembers(samson):
    assert samson.cube.shape == (95, 95, 156)
    assert samson.truth.abundances.shape == (95, 95, 3)
    assert samson.truth.names == ["Soil", "Tree", "Water"]
    np.testing.assert_allclose(samson.wavelengths[[0, 1, -1]], [401.0, 404.148387, 889.0])
    # Each truth endmember is max-normalised to 1, hence compared by angle only.
    assert samson.truth.endmember_scale == "shape"
    np.testing.assert_allclose(samson.truth.endmembers.max(axis=1), 1.0, atol=1e-3)
    check_simplex(samson.truth.abundances)


def test_jasper_ridge_pixel_order_matches_truth(jasper, data_dir):
    """The F-order proof: the truth reconstructs the loaded cube to 0.175 relative error;
    the same file read in C order (what a naive reshape gives) does not fit at all."""
    truth = jasper.truth
    assert relative_residual(jasper.cube, truth.abundances, truth.endmembers) == pytest.approx(
        0.1745, abs=0.002)
    raw = scipy.io.loadmat(data_dir / "jasper_ridge" / "jasperRidge2_R198.mat")["Y"]
    c_order = (raw.T / 5000.0).reshape(100, 100, 198)
    np.testing.assert_allclose(c_order, jasper.cube.transpose(1, 0, 2), rtol=1e-6)
    assert relative_residual(c_order, truth.abundances, truth.endmembers) > 0.6


def test_samson_pixel_order_matches_truth(samson):
    """Samson's truth endmembers are only shapes, so fit their scale: the truth abundances
    explain the loaded cube far better than its transpose."""
    abundances = samson.truth.abundances.reshape(-1, 3)

    def fitted_residual(cube):
        pixels = cube.reshape(-1, 156).astype(np.float64)
        endmembers = np.linalg.lstsq(abundances, pixels, rcond=None)[0]
        return np.linalg.norm(pixels - abundances @ endmembers) / np.linalg.norm(pixels)

    assert fitted_residual(samson.cube) < 0.35
    assert fitted_residual(samson.cube.transpose(1, 0, 2)) > 0.45


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(InputError, match="samson, jasper_ridge"):
        datasets.load("indian_pines")


# -- where the files are ---------------------------------------------------------------------
def test_missing_files_error_says_where_to_put_them(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        datasets.load("jasper_ridge", data_dir=tmp_path)
    message = str(info.value)
    for relpath in ("jasper_ridge/jasperRidge2_R198.mat", "jasper_ridge/end4.mat",
                    "libraries/AVIRIS_wavelengths.mat"):
        assert str(tmp_path / relpath) in message
    assert "HYPERUNMIX_DATA" in message
    assert "the data_dir argument" in message
    assert "MaxVol_Dual" in message  # where to get them


def test_data_directory_comes_from_env_then_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(tmp_path))
    assert datasets.data_home() == tmp_path
    assert datasets.data_home("/elsewhere") == Path("/elsewhere")
    with pytest.raises(DataNotFoundError, match=r"\$HYPERUNMIX_DATA"):
        datasets.load("samson")
    monkeypatch.delenv("HYPERUNMIX_DATA")
    assert str(datasets.data_home()) == platformdirs.user_data_dir("hyperunmix")


def test_wrong_checksum_names_file_and_both_hashes(tmp_path, data_dir):
    (tmp_path / "samson").mkdir()
    os.symlink(data_dir / "samson" / "samson_1.mat", tmp_path / "samson" / "samson_1.mat")
    damaged = tmp_path / "samson" / "end3.mat"
    damaged.write_bytes(b"not the ground truth")
    with pytest.raises(FileFormatError) as info:
        datasets.load("samson", data_dir=tmp_path)
    message = str(info.value)
    assert str(damaged) in message
    assert hashlib.md5(b"not the ground truth").hexdigest() in message
    assert datasets.FILES["samson/end3.mat"].md5 in message


def test_checksum_is_computed_once_per_file(data_dir):
    datasets.load("samson", data_dir)
    misses = datasets._md5.cache_info().misses
    datasets.load("samson", data_dir)
    assert datasets._md5.cache_info().misses == misses


def test_available_reports_presence(data_dir, tmp_path):
    present = {status.name: status for status in datasets.available(data_dir)}
    assert set(present) == {"samson", "jasper_ridge"}
    assert all(status.present for status in present.values())
    assert present["samson"].path == data_dir / "samson"
    name, is_present, path = datasets.available(tmp_path)[1]
    assert (name, is_present, path) == ("jasper_ridge", False, tmp_path / "jasper_ridge")


# -- libraries and abundance maps --------------------------------------------------------------
@pytest.mark.parametrize("name, n_spectra", [("samson", 105), ("jasper_ridge", 529)])
def test_bundle_library_follows_truth_order(data_dir, name, n_spectra):
    scene = datasets.load(name, data_dir)
    library = datasets.load_library(name, data_dir)
    assert library.spectra.shape == (n_spectra, scene.n_bands)
    assert library.names == scene.truth.names
    np.testing.assert_array_equal(library.wavelengths, scene.wavelengths)
    # Every bundle spectrum is closest in angle to the truth endmember of its label.
    nearest = sad_matrix(library.spectra, scene.truth.endmembers).argmin(axis=1)
    np.testing.assert_array_equal(nearest, library.labels)


def test_usgs_library_sorted_and_named(data_dir):
    library = datasets.load_library("usgs", data_dir)
    assert library.spectra.shape == (498, 224)
    assert np.all(np.diff(library.wavelengths) > 0)
    assert library.wavelengths[0] == pytest.approx(383.15, abs=0.01)
    assert library.wavelengths[-1] == pytest.approx(2508.2, abs=0.01)
    assert 0.004 < library.spectra.min() and library.spectra.max() < 1.03
    assert library.names[0] == "Acmite NMNH133746"
    assert library.names[-1] == "Walnut_Leaf SUN (Green)"
    np.testing.assert_array_equal(library.labels, np.arange(498))
    # Row 32 of the file (664.3 nm, the second spectrometer's first channel) follows the
    # first spectrometer's channel 29 (657.3 nm) and precedes its 29th (667.3 nm).
    raw = scipy.io.loadmat(data_dir / "libraries" / "USGS_1995_Library.mat")["datalib"]
    assert library.wavelengths[29] == pytest.approx(1000 * raw[32, 0])
    np.testing.assert_array_equal(library.spectra[:, 29], raw[32, 3:])
    np.testing.assert_array_equal(library.spectra[:, 30], raw[29, 3:])


@pytest.mark.parametrize("name, shape", [("spatial2", (100, 100, 9)),
                                         ("spatial_3em", (50, 50, 3)),
                                         ("squares_3em", (70, 70, 3))])
def test_abundance_maps(data_dir, name, shape):
    maps = datasets.load_abundance_maps(name, data_dir)
    assert maps.shape == shape
    check_simplex(maps)
