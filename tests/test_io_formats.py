"""hyperunmix.io.formats: a format added by one registration reaches detection, reading,
describing and writing, and the registry refuses clashes.

This file is also the toy format's reader module: ``read``, ``describe`` and ``write``
below are what the registered :class:`~hyperunmix.io.formats.Format` names.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import hyperunmix as hu
import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError
from hyperunmix.io import formats
from hyperunmix.io._common import CubeData, CubeHeader

TOY = formats.Format(
    name="toy",
    description="toy text cube (.toy)",
    module=__name__,
    extensions=(".toy",),
    magic=(b"# toy",),
    default_suffix=".toy",
)
#: As registered on import (the general formats, then the sensor products): the toy is
#: registered by its fixture only.
BUILT_IN = list(formats.FORMATS)


# -- the toy format: a line "# toy H W L", then one pixel's L values per line ----------------
def read(path: Path) -> CubeData:
    return CubeData(cube=np.loadtxt(path, ndmin=2).reshape(_shape(path)))


def describe(path: Path) -> CubeHeader:
    return CubeHeader(shape=_shape(path), dtype="float64")


def write(path: Path, data: CubeData) -> None:
    rows, cols, bands = data.cube.shape
    np.savetxt(path, data.cube.reshape(-1, bands), header=f"toy {rows} {cols} {bands}")


def _shape(path: Path) -> tuple[int, int, int]:
    with open(path) as stream:
        rows, cols, bands = (int(n) for n in stream.readline().split()[2:])
    return rows, cols, bands


@pytest.fixture
def toy_format():
    """The toy format, registered for one test and removed after it."""
    formats.register(TOY)
    yield TOY
    del formats.FORMATS[TOY.name]


# -- tests --------------------------------------------------------------------------------
def test_a_registered_format_is_detected_read_described_and_written(tmp_path, toy_format):
    maps = np.linspace(0.1, 0.9, 24).reshape(2, 3, 4)
    path = hio.write_maps(tmp_path / "maps", maps, fmt="toy")
    assert path == tmp_path / "maps.toy"  # the format's default suffix

    assert hio.format_of(path) == "toy"
    scene = hu.open(path)
    np.testing.assert_allclose(scene.cube, maps, rtol=1e-6)  # written as float32
    assert scene.metadata["format"] == "toy"
    info = hio.describe(path)
    assert info["format"] == "toy" and info["shape"] == (2, 3, 4)
    assert hio.FAMILIES["toy"] == "toy text cube (.toy)"  # as `hyperunmix info` prints it

    # By its first bytes when the extension names no format (.dat, without an ENVI header).
    unnamed = path.rename(tmp_path / "maps.dat")
    assert hio.format_of(unnamed) == "toy"
    copy = hio.write_scene(tmp_path / "copy.toy", hio.open_scene(unnamed))
    np.testing.assert_allclose(hu.open(copy).cube, maps, rtol=1e-6)

    with pytest.raises(InputError, match=r"option key does not apply .*\(toy text cube"):
        hio.open_scene(copy, key="cube")


def test_only_the_built_in_formats_remain_after_that_test(tmp_path):
    assert list(formats.FORMATS) == BUILT_IN == list(hio.FAMILIES)
    path = tmp_path / "maps.toy"
    path.write_text("# toy 1 1 1\n0.5\n")
    with pytest.raises(FileFormatError, match=r"cannot tell the format of .*maps\.toy"):
        hio.open_scene(path)
    with pytest.raises(InputError, match="unknown format 'toy'"):
        hio.write_maps(tmp_path / "maps", np.ones((1, 1)), fmt="toy")


def test_register_refuses_a_taken_name_or_extension():
    with pytest.raises(ValueError, match="'npy' is already registered"):
        formats.register(dataclasses.replace(TOY, name="npy"))
    with pytest.raises(ValueError, match=r"\.tif already name the format 'gtiff'"):
        formats.register(dataclasses.replace(TOY, extensions=(".toy", ".tif")))
    assert list(formats.FORMATS) == BUILT_IN
