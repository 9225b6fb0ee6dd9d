"""MATLAB reading: column-major pixel matrices, v7.3 (HDF5) files, variable choice,
broken files, and the real Samson file. Files are written with scipy.io / h5py directly."""

import h5py
import numpy as np
import pytest
import scipy.io

import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError, ScalingWarning

H, W, L = 3, 4, 5  # H != W: a transposed read cannot even have the right shape


def known_image() -> np.ndarray:
    """(H, W, L) image whose value encodes its position: 100*row + 10*col + band + 1."""
    rows, cols, bands = np.meshgrid(np.arange(H), np.arange(W), np.arange(L), indexing="ij")
    return (100 * rows + 10 * cols + bands + 1).astype(np.float64)


def matlab_matrix(image: np.ndarray) -> np.ndarray:
    """The L x N matrix MATLAB's reshape(image, [], L)' gives: column n is the pixel at
    row n mod H, column n div H (column-major). Built pixel by pixel, not by reshape."""
    n_rows, n_cols, n_bands = image.shape
    matrix = np.empty((n_bands, n_rows * n_cols))
    for n in range(n_rows * n_cols):
        matrix[:, n] = image[n % n_rows, n // n_rows]
    return matrix


def write_mat73(path, variables: dict, strings: dict | None = None, cells: dict | None = None):
    """A MATLAB v7.3 file: HDF5 behind MATLAB's 512-byte header, arrays stored with their
    axes reversed (column-major), cell arrays of strings (``strings``) or of numbers
    (``cells``) as object references."""
    with h5py.File(path, "w", userblock_size=512) as file:
        for name, value in variables.items():
            dataset = file.create_dataset(name, data=np.asarray(value, dtype=np.float64).T)
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
        entries = {
            name: [(np.array([[ord(c)] for c in text], np.uint16), "char") for text in texts]
            for name, texts in (strings or {}).items()
        }
        entries.update(
            {
                name: [(np.array([[number]]), "double") for number in numbers]
                for name, numbers in (cells or {}).items()
            }
        )
        for name, items in entries.items():
            refs = []
            for k, (data, matlab_class) in enumerate(items):
                entry = file.create_dataset(f"#refs#/{name}{k}", data=data)
                entry.attrs["MATLAB_class"] = np.bytes_(matlab_class)
                refs.append(entry.ref)
            cell = file.create_dataset(name, data=np.array([refs], dtype=h5py.ref_dtype).T)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as stream:
        stream.write(header.ljust(116) + b" " * 8 + b"\x00\x02" + b"IM")
    return path


def test_column_major_matrix_with_nrow_ncol_reads_the_image(tmp_path):
    scipy.io.savemat(
        tmp_path / "y.mat", {"Y": matlab_matrix(known_image()), "nRow": H, "nCol": W, "nBand": L}
    )
    scene = hio.open_scene(tmp_path / "y.mat")
    np.testing.assert_array_equal(scene.cube, known_image())
    assert scene.metadata["key"] == "Y" and scene.metadata["mat_version"] == "5"


def test_pixels_as_rows_and_explicit_size(tmp_path):
    """An N x L matrix, no size in the file: rows= given, cols derived."""
    scipy.io.savemat(tmp_path / "p.mat", {"X": matlab_matrix(known_image()).T})
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "p.mat", rows=H).cube, known_image())
    assert hio.describe(tmp_path / "p.mat", cols=W)["shape"] == (H, W, L)


def test_row_major_order_option(tmp_path):
    image = known_image()
    row_major = image.reshape(H * W, L)  # NumPy's pixel order
    scipy.io.savemat(tmp_path / "c.mat", {"Y": row_major.T})
    np.testing.assert_array_equal(
        hio.open_scene(tmp_path / "c.mat", rows=H, cols=W, order="C").cube, image
    )
    transposed = hio.open_scene(tmp_path / "c.mat", rows=H, cols=W).cube  # order="F"
    assert not np.array_equal(transposed, image)


def test_matrix_without_image_size_asks_for_rows_and_cols(tmp_path):
    scipy.io.savemat(tmp_path / "m.mat", {"Y": matlab_matrix(known_image())})
    with pytest.raises(
        InputError,
        match=r"'Y' in .*m\.mat is a 5 x 12 pixel matrix .*rows= "
        r"and cols=",
    ):
        hio.open_scene(tmp_path / "m.mat")
    with pytest.raises(InputError, match="rows=5 x cols=5 pixels match neither"):
        hio.open_scene(tmp_path / "m.mat", rows=5, cols=5)
    with pytest.raises(InputError, match="order must be 'F'"):
        hio.open_scene(tmp_path / "m.mat", rows=H, cols=W, order="K")


def test_three_d_array_and_wavelengths_in_micrometres(tmp_path):
    scipy.io.savemat(
        tmp_path / "cube.mat", {"img": known_image(), "waveLength": [[0.4, 0.5, 0.6, 0.7, 0.8]]}
    )
    scene = hio.open_scene(tmp_path / "cube.mat")
    np.testing.assert_array_equal(scene.cube, known_image())
    np.testing.assert_allclose(scene.wavelengths, [400, 500, 600, 700, 800])


def test_largest_array_is_the_cube_unless_key_is_given(tmp_path):
    image = known_image()
    scipy.io.savemat(
        tmp_path / "k.mat",
        {"small": np.ones((2, 2)), "Y": matlab_matrix(image), "nRow": H, "nCol": W},
    )
    np.testing.assert_array_equal(hio.open_scene(tmp_path / "k.mat").cube, image)
    with pytest.raises(FileFormatError, match=r"has no variable 'Z' \(it holds: .*small"):
        hio.open_scene(tmp_path / "k.mat", key="Z")


def test_wavelength_count_differs_from_band_count(tmp_path):
    scipy.io.savemat(tmp_path / "w.mat", {"img": known_image(), "wavelengths": [400, 500]})
    with pytest.raises(FileFormatError, match=r"w\.mat lists 2 wavelengths for 5 bands"):
        hio.open_scene(tmp_path / "w.mat")


def test_wavelengths_in_a_cell_array_are_read(tmp_path):
    cell = np.empty((1, L), dtype=object)
    cell[0, :] = [0.4, 0.5, 0.6, 0.7, 0.8]  # num2cell(wavelengths), in micrometres
    scipy.io.savemat(tmp_path / "cell.mat", {"img": known_image(), "wavelengths": cell})
    path73 = write_mat73(
        tmp_path / "cell73.mat", {"cube": known_image()}, cells={"wavelengths": list(cell[0])}
    )
    for path in (tmp_path / "cell.mat", path73):
        np.testing.assert_allclose(hio.open_scene(path).wavelengths, [400, 500, 600, 700, 800])


def test_wavelengths_that_are_not_numbers_are_not_dropped_silently(tmp_path):
    texts = [f"{w} nm" for w in (400, 500, 600, 700, 800)]
    scipy.io.savemat(
        tmp_path / "text.mat", {"img": known_image(), "wavelengths": np.array(texts, dtype=object)}
    )
    path73 = write_mat73(
        tmp_path / "text73.mat", {"cube": known_image()}, strings={"wavelengths": texts}
    )
    for path in (tmp_path / "text.mat", path73):
        with pytest.warns(
            ScalingWarning,
            match=r"'wavelengths' in .*text(73)?\.mat is a "
            r"MATLAB cell, not numbers: not read",
        ):
            assert hio.open_scene(path).wavelengths is None


# -- v7.3 ----------------------------------------------------------------------------------
def test_v73_column_major_matrix(tmp_path):
    path = write_mat73(
        tmp_path / "y73.mat",
        {
            "Y": matlab_matrix(known_image()),
            "nRow": [[H]],
            "nCol": [[W]],
            "wavelengths": [[0.4, 0.5, 0.6, 0.7, 0.8]],
        },
    )
    scene = hio.open_scene(path)
    np.testing.assert_array_equal(scene.cube, known_image())
    np.testing.assert_allclose(scene.wavelengths, [400, 500, 600, 700, 800])
    assert scene.metadata["mat_version"] == "7.3"
    assert hio.describe(path)["shape"] == (H, W, L)


def test_v73_three_d_array(tmp_path):
    path = write_mat73(tmp_path / "c73.mat", {"cube": known_image()})
    np.testing.assert_array_equal(hio.open_scene(path).cube, known_image())


def test_v73_under_an_hdf5_extension_is_recognised_by_its_header(tmp_path):
    path = write_mat73(tmp_path / "c73.h5", {"cube": known_image()})
    assert hio.format_of(path) == "mat"
    np.testing.assert_array_equal(hio.open_scene(path).cube, known_image())


def test_v73_endmembers_with_cell_names(tmp_path):
    spectra = np.random.default_rng(0).random((L, 2))  # MATLAB's L x P
    path = write_mat73(
        tmp_path / "e73.mat", {"M": spectra}, strings={"names": ["soil", "vegetation"]}
    )
    endmembers, wavelengths, names = hio.read_endmembers(path)
    np.testing.assert_array_equal(endmembers, spectra.T)
    assert names == ["soil", "vegetation"] and wavelengths is None


# -- broken files --------------------------------------------------------------------------
def test_garbage_mat(tmp_path):
    (tmp_path / "junk.mat").write_bytes(bytes(range(256)) * 2)
    with pytest.raises(FileFormatError, match=r"cannot read the MATLAB file .*junk\.mat"):
        hio.open_scene(tmp_path / "junk.mat")


def test_truncated_mat(tmp_path):
    rng = np.random.default_rng(0)
    scipy.io.savemat(
        tmp_path / "cut.mat",
        {"Y": rng.random((30, 400)), "nRow": 20, "nCol": 20},
        do_compression=True,
    )
    content = (tmp_path / "cut.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(content[: len(content) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.mat"):
        hio.open_scene(tmp_path / "cut.mat")


def test_truncated_v73(tmp_path):
    path = write_mat73(tmp_path / "cut73.mat", {"cube": np.ones((20, 20, 30))})
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(FileFormatError, match=r"cut73\.mat"):
        hio.open_scene(path)


def test_mat_without_numeric_array(tmp_path):
    scipy.io.savemat(tmp_path / "text.mat", {"note": "hello"})
    with pytest.raises(FileFormatError, match=r"no 2-D or 3-D numeric array .*note"):
        hio.open_scene(tmp_path / "text.mat")


# -- real data -----------------------------------------------------------------------------
def test_real_samson_is_read_column_major(data_dir):
    path = data_dir / "samson" / "samson_1.mat"
    scene = hio.open_scene(path)
    assert scene.shape == (95, 95, 156)
    matrix = scipy.io.loadmat(path)["V"]  # 156 x 9025
    np.testing.assert_array_equal(scene.cube[1, 0], matrix[:, 1].astype(np.float32))
    np.testing.assert_array_equal(scene.cube[0, 1], matrix[:, 95].astype(np.float32))
    assert hio.describe(path)["shape"] == (95, 95, 156)
