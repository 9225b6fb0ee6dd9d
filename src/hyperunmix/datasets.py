"""Named real datasets and spectral libraries: where their files live, checksums, readers.

The files are the public MATLAB copies listed in :data:`FILES` (source and md5 of each).
They are looked for under a data directory: the ``data_dir`` argument, else the environment
variable ``HYPERUNMIX_DATA``, else the user data directory
(``platformdirs.user_data_dir("hyperunmix")``, e.g. ``~/.local/share/hyperunmix``), laid
out as ``samson/``, ``jasper_ridge/``, ``libraries/``, ``synthetic_abundances/``.

MATLAB stores a pixel matrix (L, N) with the N pixels in column-major (Fortran) image order;
:func:`_matlab_pixels_to_image` turns it into an (H, W, L) image. Reading it in C order gives
the transposed image, whose spatial neighbourhoods and maps are wrong while every per-pixel
check still passes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs
import scipy.io

from .errors import DataNotFoundError, FileFormatError, InputError
from .scene import Scene, Truth
from .spectra import SpectralLibrary

#: Environment variable naming the data directory.
DATA_ENV = "HYPERUNMIX_DATA"


@dataclass(frozen=True)
class DataFile:
    """One file a dataset needs: its path under the data directory, md5 and origin."""

    path: str
    md5: str
    source: str


_MAXVOL = "github.com/mabdolali/MaxVol_Dual @ 2ceb4f74"
_MUA = "github.com/ricardoborsoi/MUA_SparseUnmixing @ 089f5d61"
_VARIABILITY = "github.com/ricardoborsoi/unmixing_spectral_variability @ d069df8e"

#: Every file the loaders read, by path relative to the data directory.
FILES: dict[str, DataFile] = {f.path: f for f in (
    DataFile("samson/samson_1.mat", "1d2e99de9b28d9503b74ed28c11d6bee",
             f"{_MAXVOL}, data/Samson/samson_1.mat"),
    DataFile("samson/end3.mat", "470f5164cd884a8ff6fb121b52fcf0ba",
             f"{_MAXVOL}, data/Samson/end3.mat"),
    DataFile("jasper_ridge/jasperRidge2_R198.mat", "c78ec18ba657e63a403a70b14daa36da",
             f"{_MAXVOL}, data/jasper/jasperRidge2_R198.mat"),
    DataFile("jasper_ridge/end4.mat", "cc0e792f4b7da8dc1db37c74be13f780",
             f"{_MAXVOL}, data/jasper/end4.mat"),
    DataFile("libraries/USGS_1995_Library.mat", "bf3e449183f3bd0d5aa3f335d68c0897",
             f"{_MUA}, USGS_1995_Library.mat"),
    DataFile("libraries/spectral_library_samson.mat", "2e9289df57ebe1e96bd557f7fbcf4c5b",
             f"{_MUA}, real_data/spectral_library_samson.mat"),
    DataFile("libraries/spectral_library_jasperRidge.mat", "b2d58e85f83f696573352be8db5df5f9",
             f"{_MUA}, real_data/spectral_library_jasperRidge.mat"),
    DataFile("libraries/AVIRIS_wavelengths.mat", "6a59ecb35df356fdd414756a0bacc729",
             f"{_VARIABILITY}, synthetic_data_generation/AVIRIS_wavelengths.mat"),
    DataFile("synthetic_abundances/spatial2.mat", "c5177888a71f7f4a04adf55a3f394066",
             f"{_MUA}, spatial2.mat"),
    DataFile("synthetic_abundances/abundance_spatial_3em.mat",
             "f450047c9d179db0cee030ad830a3a40", f"{_VARIABILITY}, abundance_spatial_3em.mat"),
    DataFile("synthetic_abundances/abundance_squares_3em.mat",
             "293b5c86eb9edab3aed188796cdccada", f"{_VARIABILITY}, abundance_squares_3em.mat"),
)}

_AVIRIS_WAVELENGTHS = "libraries/AVIRIS_wavelengths.mat"

#: dataset name -> the files :func:`load` reads (image first, then the ground truth).
DATASET_FILES: dict[str, tuple[str, ...]] = {
    "samson": ("samson/samson_1.mat", "samson/end3.mat"),
    "jasper_ridge": ("jasper_ridge/jasperRidge2_R198.mat", "jasper_ridge/end4.mat",
                     _AVIRIS_WAVELENGTHS),
}

#: library name -> the files :func:`load_library` reads.
LIBRARY_FILES: dict[str, tuple[str, ...]] = {
    "samson": ("libraries/spectral_library_samson.mat",),
    # The Jasper Ridge bundles take their wavelengths from the image's band selection.
    "jasper_ridge": ("libraries/spectral_library_jasperRidge.mat",
                     "jasper_ridge/jasperRidge2_R198.mat", _AVIRIS_WAVELENGTHS),
    "usgs": ("libraries/USGS_1995_Library.mat",),
}

#: abundance map set name -> (file, MATLAB variable holding the (H, W, P) cube).
ABUNDANCE_MAP_FILES: dict[str, tuple[str, str]] = {
    "spatial2": ("synthetic_abundances/spatial2.mat", "Xim"),
    "spatial_3em": ("synthetic_abundances/abundance_spatial_3em.mat", "A_cube"),
    "squares_3em": ("synthetic_abundances/abundance_squares_3em.mat", "A_cube"),
}

# end3.mat calls Samson's first material "rock"; the literature and the image's own bundle
# library (spectral_library_samson.mat) call it Soil, and so do we.
_MATERIAL_ALIASES = {"rock": "Soil"}

# Samson: "156 channels covering the wavelengths from 401 nm to 889 nm" (Zhu 2017,
# arXiv:1708.05125). The files carry no wavelengths; even spacing is assumed.
_SAMSON_RANGE_NM = (401.0, 889.0)


class DatasetStatus(NamedTuple):
    """Whether a dataset's files are all present, and the folder they belong in."""

    name: str
    present: bool
    path: Path


# -- where the data are ---------------------------------------------------------------------
def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$HYPERUNMIX_DATA``, else the user data dir."""
    return _data_home_and_origin(data_dir)[0]


def _data_home_and_origin(data_dir) -> tuple[Path, str]:
    if data_dir is not None:
        return Path(data_dir).expanduser(), "the data_dir argument"
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser(), f"${DATA_ENV}"
    return Path(platformdirs.user_data_dir("hyperunmix")), "the default user data directory"


def available(data_dir: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """Each dataset :func:`load` knows, whether all its files are present, and its folder."""
    root = data_home(data_dir)
    return [DatasetStatus(name, all((root / f).is_file() for f in files),
                          root / Path(files[0]).parent)
            for name, files in DATASET_FILES.items()]


def _require(relpaths: tuple[str, ...], data_dir, what: str) -> list[Path]:
    """Absolute paths of ``relpaths``, all present and with the right md5, or an error
    that lists every missing file and where to put it."""
    root, origin = _data_home_and_origin(data_dir)
    paths = [root / rel for rel in relpaths]
    missing = [rel for rel, path in zip(relpaths, paths) if not path.is_file()]
    if missing:
        lines = "\n".join(f"  {root / rel}   (from {FILES[rel].source})" for rel in missing)
        raise DataNotFoundError(
            f"{what} needs files that are missing from the data directory {root} "
            f"(taken from {origin}):\n{lines}\n"
            f"Put them at these paths, or point data_dir= or the environment variable "
            f"{DATA_ENV} to a directory holding them in this layout.")
    for rel, path in zip(relpaths, paths):
        _verify_md5(path, FILES[rel].md5)
    return paths


def _verify_md5(path: Path, expected: str) -> None:
    stat = path.stat()
    actual = _md5(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if actual != expected:
        raise FileFormatError(
            f"{path} has md5 {actual}, expected {expected}: the file is corrupt, truncated "
            "or a different version; replace it with the documented copy")


@functools.lru_cache(maxsize=None)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """md5 of a file, computed once per process for each (path, size, mtime)."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- reading ----------------------------------------------------------------------------
def _loadmat(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The variables ``keys`` of a MATLAB v5 file."""
    try:
        content = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise FileFormatError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    missing = [k for k in keys if k not in content]
    if missing:
        raise FileFormatError(f"{path} lacks the variables {missing}")
    return {k: content[k] for k in keys}


def _matlab_pixels_to_image(matrix: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """(K, N) MATLAB matrix, pixels in column-major image order -> (H, W, K) image."""
    if matrix.shape[1] != n_rows * n_cols:
        raise FileFormatError(
            f"a matrix of {matrix.shape[1]} pixels cannot be a {n_rows} x {n_cols} image")
    return matrix.T.reshape(n_rows, n_cols, matrix.shape[0], order="F")


def _scalar(value: np.ndarray) -> int:
    return int(np.asarray(value).ravel()[0])


def _strings(cell: np.ndarray) -> list[str]:
    """The strings of a MATLAB cell array of char arrays, in MATLAB order."""
    return [str(np.asarray(item).ravel()[0]).strip() for item in cell.ravel(order="F")]


def _material_name(label: str) -> str:
    """'1-rock' -> 'Soil', '2-Tree' -> 'Tree', '3-dirt' -> 'Dirt'."""
    bare = re.sub(r"^\s*\d+\s*-\s*", "", label).strip()
    return _MATERIAL_ALIASES.get(bare.lower(), bare.capitalize())


def _read_truth(path: Path, n_rows: int, n_cols: int, endmember_scale: str) -> Truth:
    """Ground truth of Zhu's ``endP.mat`` files: ``A`` (P, N), ``M`` (L, P), ``cood``.

    The abundances are shares of unit-peak spectra (``convention="shares"``): normalised
    NNLS of the image on the peak-normalised reference endmembers reproduces them to aRMSE
    0.002 (Samson) and 0.005 (Jasper Ridge), FCLS on the same endmembers only to 0.42 and
    0.085 (``benchmarks/conventions.py``)."""
    content = _loadmat(path, ("A", "M", "cood"))
    return Truth(abundances=_matlab_pixels_to_image(content["A"], n_rows, n_cols),
                 endmembers=content["M"].T,
                 names=[_material_name(label) for label in _strings(content["cood"])],
                 endmember_scale=endmember_scale, convention="shares")


def samson_wavelengths() -> np.ndarray:
    """(156,) Samson band centres in nm: 401 to 889 nm evenly spaced (3.15 nm apart).

    The data files carry no wavelengths. Zhu (2017, arXiv:1708.05125) describes the scene as
    156 channels covering 401-889 nm; the spacing is assumed even.
    """
    return np.linspace(*_SAMSON_RANGE_NM, 156)


def _aviris_wavelengths(path: Path) -> np.ndarray:
    """(224,) AVIRIS channel centres in nm, in channel order (not monotonic: the spectrometers
    overlap, so the wavelength drops by about 10 nm after channels 32, 96 and 160)."""
    return _loadmat(path, ("AVIRIS_wavlen",))["AVIRIS_wavlen"].ravel().astype(np.float64)


def _jasper_wavelengths(image_path: Path, aviris_path: Path) -> np.ndarray:
    """Band centres of the 198 retained Jasper Ridge bands: ``SlectBands`` are 1-based
    AVIRIS channel numbers. In channel order, hence not monotonic (see AVIRIS)."""
    selected = _loadmat(image_path, ("SlectBands",))["SlectBands"]
    return _aviris_wavelengths(aviris_path)[selected.ravel().astype(np.intp) - 1]


def _load_samson(paths: list[Path]) -> Scene:
    image_path, truth_path = paths
    image = _loadmat(image_path, ("V", "nRow", "nCol"))
    n_rows, n_cols = _scalar(image["nRow"]), _scalar(image["nCol"])
    return Scene(
        _matlab_pixels_to_image(image["V"], n_rows, n_cols),
        samson_wavelengths(),
        # end3.mat's endmembers are each max-normalised to 1: right in shape, not in scale.
        truth=_read_truth(truth_path, n_rows, n_cols, endmember_scale="shape"),
        name="samson",
        metadata={"format": "mat", "dataset": "samson", "path": str(image_path),
                  "files": [str(p) for p in paths]},
    )


def _load_jasper_ridge(paths: list[Path]) -> Scene:
    image_path, truth_path, aviris_path = paths
    image = _loadmat(image_path, ("Y", "nRow", "nCol", "maxValue"))
    n_rows, n_cols = _scalar(image["nRow"]), _scalar(image["nCol"])
    return Scene(
        _matlab_pixels_to_image(image["Y"], n_rows, n_cols),
        _jasper_wavelengths(image_path, aviris_path),
        # Y is uint16 reflectance x maxValue (5000); end4.mat's endmembers are on Y / 5000.
        scale=1.0 / _scalar(image["maxValue"]),
        truth=_read_truth(truth_path, n_rows, n_cols, endmember_scale="absolute"),
        name="jasper_ridge",
        metadata={"format": "mat", "dataset": "jasper_ridge", "path": str(image_path),
                  "files": [str(p) for p in paths]},
    )


_READERS = {"samson": _load_samson, "jasper_ridge": _load_jasper_ridge}


def _known(name: str, table: dict) -> str:
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key not in table:
        raise InputError(f"unknown name {name!r}; available: {', '.join(table)}")
    return key


def load(name: str, data_dir: str | os.PathLike | None = None) -> Scene:
    """A real dataset with its ground truth.

    Parameters
    ----------
    name : {"samson", "jasper_ridge"}
    data_dir : path, optional
        Folder holding the files (see the module docstring for the default).

    Returns
    -------
    Scene
        ``samson``: cube (95, 95, 156) in [0, 1], 401-889 nm; truth abundances (95, 95, 3)
        and endmembers (3, 156) of Soil, Tree, Water. The truth endmembers are each
        max-normalised to 1 (``truth.endmember_scale == "shape"``): compare them by angle
        (SAD) only, and rescale them before using them for supervised unmixing.
        ``jasper_ridge``: cube (100, 100, 198), the uint16 data divided by 5000 (reflectance
        in [0, 1.09]), wavelengths from the AVIRIS channel table (in channel order, so not
        monotonic); truth (100, 100, 4) and (4, 198) of Tree, Water, Dirt, Road on the same
        scale. Abundance truths are non-negative and sum to one; both are shares of
        unit-peak spectra (``truth.convention == "shares"``, see
        :mod:`hyperunmix.conventions`).
    """
    key = _known(name, DATASET_FILES)
    paths = _require(DATASET_FILES[key], data_dir, f"dataset {key!r}")
    return _READERS[key](paths)


def load_library(name: str, data_dir: str | os.PathLike | None = None) -> SpectralLibrary:
    """A spectral library.

    Parameters
    ----------
    name : {"samson", "jasper_ridge", "usgs"}
        ``samson`` / ``jasper_ridge``: the endmember bundles extracted from each image
        (105 spectra of 3 materials / 529 of 4), on the scale of the loaded cube. Material
        ``k`` of the bundle is material ``k`` of the dataset's truth (Samson: Soil, Tree,
        Water; Jasper Ridge: Tree, Water, Dirt, Road): every bundle spectrum has its
        smallest spectral angle to the truth endmember of the same index.
        ``usgs``: the USGS 1995 library at the 224 AVIRIS channels, 498 spectra, one material
        each, reflectance in [0.005, 1.02], with bands sorted by wavelength (383-2508 nm).
    data_dir : path, optional

    Returns
    -------
    SpectralLibrary
    """
    key = _known(name, LIBRARY_FILES)
    paths = _require(LIBRARY_FILES[key], data_dir, f"library {key!r}")
    if key == "usgs":
        return _read_usgs(paths[0])
    if key == "samson":
        return _read_bundles(paths[0], samson_wavelengths())
    return _read_bundles(paths[0], _jasper_wavelengths(paths[1], paths[2]))


def _read_bundles(path: Path, wavelengths: np.ndarray) -> SpectralLibrary:
    """``lib1 .. libK`` (L, n_k) bundles, one per material, and ``material_names``."""
    names = _strings(_loadmat(path, ("material_names",))["material_names"])
    bundles = _loadmat(path, tuple(f"lib{k + 1}" for k in range(len(names))))
    spectra = [bundles[f"lib{k + 1}"].T for k in range(len(names))]
    labels = np.concatenate([np.full(len(s), k) for k, s in enumerate(spectra)])
    return SpectralLibrary(np.concatenate(spectra), labels, names, wavelengths)


# USGS_1995_Library.mat, datalib (224, 501): wavelength (um), resolution (um), channel number,
# then one reflectance spectrum per column; names (501, 29) uint8, one padded row per column.
_USGS_FIRST_SPECTRUM = 3


def _read_usgs(path: Path) -> SpectralLibrary:
    content = _loadmat(path, ("datalib", "names"))
    table, raw_names = content["datalib"], content["names"]
    order = np.argsort(table[:, 0], kind="stable")  # channels overlap: sort by wavelength
    spectra = table[order, _USGS_FIRST_SPECTRUM:].T
    names = [bytes(row).decode("latin-1").strip()
             for row in raw_names[_USGS_FIRST_SPECTRUM:]]
    return SpectralLibrary(spectra, np.arange(len(names)), names, 1000.0 * table[order, 0])


def load_abundance_maps(name: str, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Spatially structured synthetic abundance maps, (H, W, P) float64 summing to one.

    ``spatial2``: (100, 100, 9); ``spatial_3em``: (50, 50, 3); ``squares_3em``: (70, 70, 3).
    The files store them as MATLAB images (H, W, P), so no reordering is needed. Each pixel
    is renormalised to sum to one: ``squares_3em`` stores thirds as 0.3333 (sums of 0.9999).
    """
    key = _known(name, ABUNDANCE_MAP_FILES)
    relpath, variable = ABUNDANCE_MAP_FILES[key]
    (path,) = _require((relpath,), data_dir, f"abundance maps {key!r}")
    maps = _loadmat(path, (variable,))[variable]
    if maps.ndim != 3:
        raise FileFormatError(f"{path}: {variable} should be (H, W, P), got {maps.shape}")
    return maps / maps.sum(axis=-1, keepdims=True)
