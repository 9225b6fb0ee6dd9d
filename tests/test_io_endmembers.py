"""Endmember spectra files: the CSV writer and reading CSV, .npy, .npz and .mat."""

import numpy as np
import pytest
import scipy.io

import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError

SPECTRA = np.random.default_rng(0).uniform(0.01, 0.9, size=(3, 6))  # (P, L)
WAVELENGTHS = np.array([400.5, 450.0, 500.25, 550.0, 600.0, 650.125])


def test_csv_round_trip_is_exact(tmp_path):
    path = hio.write_endmembers_csv(
        tmp_path / "e.csv", SPECTRA, WAVELENGTHS, ["soil", "tree", "water"]
    )
    lines = path.read_text().splitlines()
    assert lines[0] == "wavelength_nm,soil,tree,water"
    assert len(lines) == 1 + 6 and lines[1].startswith("400.5,")
    endmembers, wavelengths, names = hio.read_endmembers(path)
    np.testing.assert_array_equal(endmembers, SPECTRA)
    np.testing.assert_array_equal(wavelengths, WAVELENGTHS)
    assert names == ["soil", "tree", "water"]


def test_csv_without_wavelengths_has_a_band_column(tmp_path):
    path = hio.write_endmembers_csv(tmp_path / "e.csv", SPECTRA)
    assert path.read_text().splitlines()[0] == "band,endmember_1,endmember_2,endmember_3"
    endmembers, wavelengths, names = hio.read_endmembers(path)
    np.testing.assert_array_equal(endmembers, SPECTRA)
    assert wavelengths is None and names == ["endmember_1", "endmember_2", "endmember_3"]


def test_foreign_csvs(tmp_path):
    (tmp_path / "um.csv").write_text("Wavelength (um),a,b\n0.4,0.1,0.2\n0.5,0.3,0.4\n0.6,0.5,0.6\n")
    endmembers, wavelengths, names = hio.read_endmembers(tmp_path / "um.csv")
    np.testing.assert_allclose(wavelengths, [400, 500, 600])
    np.testing.assert_array_equal(endmembers, [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]])
    assert names == ["a", "b"]
    (tmp_path / "bare.csv").write_text("0.1,0.2\n0.3,0.4\n0.5,0.6\n")  # no header
    endmembers, wavelengths, names = hio.read_endmembers(tmp_path / "bare.csv")
    np.testing.assert_array_equal(endmembers, [[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]])
    assert wavelengths is None and names is None


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("band,a\n0,0.1\n1,oops\n", "non-numeric value"),
        ("band,a,b\n0,0.1,0.2\n1,0.3\n", "rows of different lengths"),
        ("band,a\n0,0.1\n1,nan\n", "non-finite"),
    ],
)
def test_broken_csvs(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(FileFormatError, match=message):
        hio.read_endmembers(tmp_path / "bad.csv")


def test_band_by_endmember_arrays_are_transposed(tmp_path):
    np.save(tmp_path / "lp.npy", SPECTRA.T)  # (L, P)
    np.testing.assert_array_equal(hio.read_endmembers(tmp_path / "lp.npy")[0], SPECTRA)
    square = np.arange(9.0).reshape(3, 3) + 1
    np.save(tmp_path / "square.npy", square)  # ambiguous: kept
    np.testing.assert_array_equal(hio.read_endmembers(tmp_path / "square.npy")[0], square)


def test_npz_with_wavelengths_deciding_the_layout(tmp_path):
    wide = np.random.default_rng(1).random((6, 4))  # (P=6, L=4): more endmembers than bands
    np.savez(
        tmp_path / "e.npz",
        endmembers=wide,
        wavelengths=[400, 500, 600, 700],
        names=np.array(list("abcdef")),
    )
    endmembers, _wavelengths, names = hio.read_endmembers(tmp_path / "e.npz")
    np.testing.assert_array_equal(endmembers, wide)  # not transposed: L is known
    assert names == list("abcdef")
    np.savez(tmp_path / "odd.npz", endmembers=wide, wavelengths=[400, 500])
    with pytest.raises(FileFormatError, match="2 wavelengths for endmembers of shape"):
        hio.read_endmembers(tmp_path / "odd.npz")
    np.savez(tmp_path / "none.npz", spectra=wide)
    with pytest.raises(FileFormatError, match=r"no endmember array .*it holds: spectra"):
        hio.read_endmembers(tmp_path / "none.npz")
    np.testing.assert_array_equal(
        hio.read_endmembers(tmp_path / "none.npz", key="spectra")[0], wide.T
    )


def test_mat_in_matlab_layout_with_names_and_micrometres(tmp_path):
    scipy.io.savemat(
        tmp_path / "e.mat",
        {
            "M": SPECTRA.T,
            "A": np.ones((3, 100)),
            "cood": np.array(["soil", "tree", "water"], dtype=object),
            "waveLength": WAVELENGTHS[None, :] / 1000,
        },
    )
    endmembers, wavelengths, names = hio.read_endmembers(tmp_path / "e.mat")
    np.testing.assert_array_equal(endmembers, SPECTRA)
    np.testing.assert_allclose(wavelengths, WAVELENGTHS)
    assert names == ["soil", "tree", "water"]


def test_real_samson_endmembers(data_dir):
    endmembers, wavelengths, names = hio.read_endmembers(data_dir / "samson" / "end3.mat")
    assert endmembers.shape == (3, 156) and wavelengths is None
    assert names == ["1-rock", "2-Tree", "3-water"]
    assert endmembers.max(axis=1) == pytest.approx(1.0, abs=1e-3)  # max-normalised


def test_reading_errors(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        hio.read_endmembers(tmp_path / "missing.csv")
    (tmp_path / "e.xlsx").write_bytes(b"PK")
    with pytest.raises(FileFormatError, match=r"unknown extension '\.xlsx'"):
        hio.read_endmembers(tmp_path / "e.xlsx")


def test_writing_errors(tmp_path):
    with pytest.raises(InputError, match=r"\(P, L\) matrix"):
        hio.write_endmembers_csv(tmp_path / "e.csv", np.ones(4))
    with pytest.raises(InputError, match="2 wavelengths given for 6 bands"):
        hio.write_endmembers_csv(tmp_path / "e.csv", SPECTRA, [1, 2])
    with pytest.raises(InputError, match="1 names given for 3 endmembers"):
        hio.write_endmembers_csv(tmp_path / "e.csv", SPECTRA, names=["x"])
    assert not (tmp_path / "e.csv").exists()
