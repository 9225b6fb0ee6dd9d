"""NumPy reading: pixel matrices, .npz keys, no-data, broken files."""

import numpy as np
import pytest

import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError

IMAGE = (np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) + 1) / 100  # (H, W, L)


def test_row_major_pixel_matrix_needs_and_uses_rows_cols(tmp_path):
    np.save(tmp_path / "pixels.npy", IMAGE.reshape(12, 5))  # (N, L)
    np.testing.assert_array_equal(
        hio.open_scene(tmp_path / "pixels.npy", rows=3, cols=4).cube, IMAGE
    )
    with pytest.raises(InputError, match="12 x 5 pixel matrix with no image size"):
        hio.open_scene(tmp_path / "pixels.npy")
    with pytest.raises(InputError, match="rows must be a positive integer"):
        hio.open_scene(tmp_path / "pixels.npy", rows=0, cols=4)


def test_column_major_pixel_matrix_in_npz(tmp_path):
    np.savez(tmp_path / "f.npz", cube=IMAGE.reshape(12, 5, order="F").T)  # (L, N)
    np.testing.assert_array_equal(
        hio.open_scene(tmp_path / "f.npz", rows=3, cols=4, order="F").cube, IMAGE
    )


def test_npz_keys_and_nodata(tmp_path):
    cube = IMAGE.copy()
    cube[0, 0] = -1
    np.savez(tmp_path / "k.npz", radiance=cube, wavelengths=[1.0, 1.1, 1.2, 1.3, 1.4], nodata=-1.0)
    with pytest.raises(
        FileFormatError,
        match=r"k\.npz has no 'cube' array \(it holds: "
        r"radiance, wavelengths, nodata\); .*key=",
    ):
        hio.open_scene(tmp_path / "k.npz")
    scene = hio.open_scene(tmp_path / "k.npz", key="radiance")
    assert not scene.mask[0, 0] and scene.mask.sum() == 11
    np.testing.assert_allclose(scene.wavelengths, [1000, 1100, 1200, 1300, 1400])  # from um
    assert hio.describe(tmp_path / "k.npz", key="radiance")["wavelength_range"] == (1000, 1400)


def test_wavelength_count_differs_from_band_count(tmp_path):
    np.savez(tmp_path / "w.npz", cube=IMAGE, wavelengths=[400.0, 500.0])
    with pytest.raises(FileFormatError, match=r"w\.npz lists 2 wavelengths for 5 bands"):
        hio.open_scene(tmp_path / "w.npz")


def test_one_dimensional_array_is_not_a_cube(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(7))
    with pytest.raises(FileFormatError, match=r"v\.npy has shape \(7,\)"):
        hio.open_scene(tmp_path / "v.npy")


def test_truncated_npy_garbage_npz_and_pickles_are_refused(tmp_path):
    np.save(tmp_path / "cut.npy", np.ones((10, 10, 10)))
    content = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(content[: len(content) // 2])
    with pytest.raises(FileFormatError, match=r"cannot read the NumPy array .*cut\.npy"):
        hio.open_scene(tmp_path / "cut.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + b"x" * 100)
    with pytest.raises(FileFormatError, match=r"junk\.npz"):
        hio.open_scene(tmp_path / "junk.npz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match="allow_pickle=False"):
        hio.open_scene(tmp_path / "objects.npy")
