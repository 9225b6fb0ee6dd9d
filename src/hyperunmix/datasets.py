"""Named real datasets and spectral libraries: where their files live, checksums, readers.

The files are public MATLAB copies, listed in :data:`FILES` with the md5 of each and its
source: a GitHub repository pinned at a commit. :func:`download` (the command
``hyperunmix datasets download``) fetches them, from those repositories or from a mirror
named by ``$HYPERUNMIX_DATA_URL``. Every reader, the command line, the benchmark and the
tests look for them in one data directory, chosen in this order:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. else the environment variable ``HYPERUNMIX_DATA``;
3. else the user data directory, ``platformdirs.user_data_dir("hyperunmix")`` (e.g.
   ``~/.local/share/hyperunmix``),

laid out as ``samson/``, ``jasper_ridge/``, ``libraries/``, ``synthetic_abundances/``.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs
import scipy.io

from ._atomic import _UMASK
from .base import ProgressCallback
from .errors import DataNotFoundError, FileFormatError, InputError
from .scene import Scene, Truth
from .spectra import SpectralLibrary

#: Environment variable naming the data directory.
DATA_ENV = "HYPERUNMIX_DATA"
#: Environment variable naming a mirror: a base URL under which the files are served in the
#: data directory's layout (``$HYPERUNMIX_DATA_URL/samson/samson_1.mat``), downloaded from
#: instead of their public sources.
MIRROR_ENV = "HYPERUNMIX_DATA_URL"


class Repository(NamedTuple):
    """A public GitHub repository, pinned at a full commit hash so its files cannot change."""

    name: str  # owner/name
    commit: str

    def raw_url(self, path: str) -> str:
        """The download URL of the file ``path`` of the repository at its commit."""
        return f"https://raw.githubusercontent.com/{self.name}/{self.commit}/{path}"


_MAXVOL = Repository("mabdolali/MaxVol_Dual", "2ceb4f74f119163163a1851e24a4c7d71d1015f7")
_MUA = Repository("ricardoborsoi/MUA_SparseUnmixing", "089f5d61162807a5304759e293b132ed9d0d6ab4")
_VARIABILITY = Repository(
    "ricardoborsoi/unmixing_spectral_variability", "d069df8ef6f0e5641f9fcf346121931e0c23bc21"
)


@dataclass(frozen=True)
class DataFile:
    """One file a dataset needs: its path under the data directory, md5 and origin (the
    repository and the file's path in it)."""

    path: str
    md5: str
    repository: Repository
    source_path: str

    @property
    def url(self) -> str:
        """Where :func:`download` fetches the file: under ``$HYPERUNMIX_DATA_URL`` when that
        mirror is set, else from its repository."""
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            return f"{mirror.rstrip('/')}/{self.path}"
        return self.repository.raw_url(self.source_path)


#: Every file the loaders read, by path relative to the data directory.
FILES: dict[str, DataFile] = {
    f.path: f
    for f in (
        DataFile(
            "samson/samson_1.mat",
            "1d2e99de9b28d9503b74ed28c11d6bee",
            _MAXVOL,
            "data/Samson/samson_1.mat",
        ),
        DataFile(
            "samson/end3.mat", "470f5164cd884a8ff6fb121b52fcf0ba", _MAXVOL, "data/Samson/end3.mat"
        ),
        DataFile(
            "jasper_ridge/jasperRidge2_R198.mat",
            "c78ec18ba657e63a403a70b14daa36da",
            _MAXVOL,
            "data/jasper/jasperRidge2_R198.mat",
        ),
        DataFile(
            "jasper_ridge/end4.mat",
            "cc0e792f4b7da8dc1db37c74be13f780",
            _MAXVOL,
            "data/jasper/end4.mat",
        ),
        DataFile(
            "libraries/USGS_1995_Library.mat",
            "bf3e449183f3bd0d5aa3f335d68c0897",
            _MUA,
            "USGS_1995_Library.mat",
        ),
        DataFile(
            "libraries/spectral_library_samson.mat",
            "2e9289df57ebe1e96bd557f7fbcf4c5b",
            _MUA,
            "real_data/spectral_library_samson.mat",
        ),
        DataFile(
            "libraries/spectral_library_jasperRidge.mat",
            "b2d58e85f83f696573352be8db5df5f9",
            _MUA,
            "real_data/spectral_library_jasperRidge.mat",
        ),
        DataFile(
            "libraries/AVIRIS_wavelengths.mat",
            "6a59ecb35df356fdd414756a0bacc729",
            _VARIABILITY,
            "synthetic_data_generation/AVIRIS_wavelengths.mat",
        ),
        DataFile(
            "synthetic_abundances/spatial2.mat",
            "c5177888a71f7f4a04adf55a3f394066",
            _MUA,
            "spatial2.mat",
        ),
        DataFile(
            "synthetic_abundances/abundance_spatial_3em.mat",
            "f450047c9d179db0cee030ad830a3a40",
            _VARIABILITY,
            "synthetic_data_generation/abundance_spatial_3em.mat",
        ),
        DataFile(
            "synthetic_abundances/abundance_squares_3em.mat",
            "293b5c86eb9edab3aed188796cdccada",
            _VARIABILITY,
            "synthetic_data_generation/abundance_squares_3em.mat",
        ),
    )
}

_AVIRIS_WAVELENGTHS = "libraries/AVIRIS_wavelengths.mat"

#: dataset name -> the files :func:`load` reads (image first, then the ground truth).
DATASET_FILES: dict[str, tuple[str, ...]] = {
    "samson": ("samson/samson_1.mat", "samson/end3.mat"),
    "jasper_ridge": (
        "jasper_ridge/jasperRidge2_R198.mat",
        "jasper_ridge/end4.mat",
        _AVIRIS_WAVELENGTHS,
    ),
}

#: library name -> the files :func:`load_library` reads.
LIBRARY_FILES: dict[str, tuple[str, ...]] = {
    "samson": ("libraries/spectral_library_samson.mat",),
    # The Jasper Ridge bundles take their wavelengths from the image's band selection.
    "jasper_ridge": (
        "libraries/spectral_library_jasperRidge.mat",
        "jasper_ridge/jasperRidge2_R198.mat",
        _AVIRIS_WAVELENGTHS,
    ),
    "usgs": ("libraries/USGS_1995_Library.mat",),
}

#: abundance map set name -> (file, MATLAB variable holding the (H, W, P) cube).
ABUNDANCE_MAP_FILES: dict[str, tuple[str, str]] = {
    "spatial2": ("synthetic_abundances/spatial2.mat", "Xim"),
    "spatial_3em": ("synthetic_abundances/abundance_spatial_3em.mat", "A_cube"),
    "squares_3em": ("synthetic_abundances/abundance_squares_3em.mat", "A_cube"),
}

#: What :func:`download` takes, name -> files: each dataset by its name, each library as
#: ``library:NAME`` and each set of abundance maps as ``maps:NAME``.
DOWNLOADS: dict[str, tuple[str, ...]] = {
    **DATASET_FILES,
    **{f"library:{name}": files for name, files in LIBRARY_FILES.items()},
    **{f"maps:{name}": (path,) for name, (path, _) in ABUNDANCE_MAP_FILES.items()},
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
    return [
        DatasetStatus(name, all((root / f).is_file() for f in files), root / Path(files[0]).parent)
        for name, files in DATASET_FILES.items()
    ]


def _require(name: str, data_dir, what: str) -> list[Path]:
    """Absolute paths of the files of ``DOWNLOADS[name]``, all present and with the right
    md5, or an error naming the command that downloads them."""
    root, origin = _data_home_and_origin(data_dir)
    command = f"hyperunmix datasets download {name}"
    if data_dir is not None:
        command += f" --data-dir {root}"
    paths = [root / rel for rel in DOWNLOADS[name]]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{what} is not in the data directory {root} (taken from {origin}): download it "
            f"with `{command}`, or point data_dir= or the environment variable {DATA_ENV} "
            f"to a directory holding its files. Missing: {', '.join(missing)}"
        )
    for rel, path in zip(DOWNLOADS[name], paths):
        actual = _file_md5(path)
        if actual != FILES[rel].md5:
            raise FileFormatError(
                f"{path} has md5 {actual}, expected {FILES[rel].md5}: the file is corrupt, "
                f"truncated or a different version; `{command}` replaces it"
            )
    return paths


def _file_md5(path: Path) -> str:
    """md5 of the file at ``path``, cached until it changes."""
    stat = path.stat()
    return _md5(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """md5 of a file, computed once per process for each (path, size, mtime)."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- downloading ----------------------------------------------------------------------------
#: Further attempts after a failed download or a wrong md5 (a transfer cut short).
DOWNLOAD_RETRIES = 2


class Fetched(NamedTuple):
    """A file :func:`download` made sure of: its path and size, and whether it was
    downloaded (False: it was already present with the right md5)."""

    path: Path
    size: int
    downloaded: bool


def download(
    names: str | Iterable[str] = (),
    data_dir: str | os.PathLike | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_file: Callable[[Fetched], None] | None = None,
) -> list[Fetched]:
    """Download the files of the named datasets, libraries and abundance maps.

    Parameters
    ----------
    names : str or iterable of str
        Keys of :data:`DOWNLOADS`: a dataset (``"samson"``, ``"jasper_ridge"``), a library
        (``"library:samson"``, ``"library:jasper_ridge"``, ``"library:usgs"``) or a set of
        abundance maps (``"maps:spatial2"``, ``"maps:spatial_3em"``,
        ``"maps:squares_3em"``). Empty (the default): all of them.
    data_dir : path, optional
        Where to put them (see the module docstring for the default).
    progress : callable, optional
        ``progress(path, bytes_done, bytes_total, {})`` during each download, ``path``
        relative to the data directory (the estimators' progress convention).
    on_file : callable, optional
        Called with the :class:`Fetched` of each file as soon as it is in place.

    Returns
    -------
    list of Fetched
        One per file, each once, in the order of ``names``.

    Each file comes from ``$HYPERUNMIX_DATA_URL/<path>`` when that mirror is set, else from
    its repository (:attr:`DataFile.url`), through pooch: retried on failure, written under a
    temporary name and moved to its path only once its md5 is right, so a failed download
    leaves nothing under the final name. A file already present with the right md5 is not
    downloaded again; one with another md5 is replaced.

    Raises
    ------
    InputError
        An unknown name (before anything is downloaded), or a data directory that cannot
        be written.
    FileFormatError
        A downloaded file whose md5 is not the documented one.
    DataNotFoundError
        A file that cannot be downloaded (no network, or missing from the mirror).
    """
    import pooch  # with requests: imported only to download, so that imports stay quick
    import requests

    if isinstance(names, str):
        names = [names]
    keys = [_known(name, DOWNLOADS) for name in names] or list(DOWNLOADS)
    relpaths = list(dict.fromkeys(rel for key in keys for rel in DOWNLOADS[key]))
    root = data_home(data_dir)
    fetcher = pooch.create(
        path=root,
        base_url="",
        retry_if_failed=DOWNLOAD_RETRIES,
        registry={rel: f"md5:{FILES[rel].md5}" for rel in relpaths},
        urls={rel: FILES[rel].url for rel in relpaths},
    )
    fetched = []
    # pooch logs each download and retry on its own stderr handler, past any progress
    # display; `progress`, `on_file` and the errors below say the same.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        for rel in relpaths:
            path = root / rel
            present = path.is_file() and _file_md5(path) == FILES[rel].md5
            if not present:
                try:
                    bar = False if progress is None else _ProgressBar(progress, rel)
                    fetcher.fetch(rel, progressbar=bar)
                    # pooch's temporary file is made 0600: give the file a plain open()'s
                    # permissions, so that a shared data directory stays readable to all.
                    os.chmod(path, 0o666 & ~_UMASK)
                except ValueError as exc:  # pooch's refusal of a wrong md5
                    raise FileFormatError(f"{fetcher.get_url(rel)}: {exc}") from exc
                except requests.RequestException as exc:  # before OSError, its base class
                    hint = (
                        ""
                        if os.environ.get(MIRROR_ENV)
                        else (f" (without access to GitHub, name a mirror with ${MIRROR_ENV})")
                    )
                    raise DataNotFoundError(
                        f"cannot download {fetcher.get_url(rel)}{hint}: {exc}"
                    ) from exc
                except OSError as exc:
                    raise InputError(f"cannot write {path} in the data directory: {exc}") from exc
            fetched.append(Fetched(path, path.stat().st_size, downloaded=not present))
            if on_file is not None:
                on_file(fetched[-1])
    finally:
        logger.setLevel(level)
    return fetched


class _ProgressBar:
    """pooch's progress bar interface (``total``, ``update``, ``reset``, ``close``) passing
    the bytes of one download on to ``progress(stage, done, total, {})``."""

    def __init__(self, progress: ProgressCallback, stage: str):
        self.progress, self.stage = progress, stage
        self.total = self.done = 0  # pooch sets total to the Content-Length (0: unknown)

    def update(self, n_bytes: int) -> None:
        self.done += n_bytes
        # pooch counts whole chunks, so the last one overshoots a known total.
        self.progress(self.stage, min(self.done, self.total or self.done), self.total, {})

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


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
            f"a matrix of {matrix.shape[1]} pixels cannot be a {n_rows} x {n_cols} image"
        )
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
    return Truth(
        abundances=_matlab_pixels_to_image(content["A"], n_rows, n_cols),
        endmembers=content["M"].T,
        names=[_material_name(label) for label in _strings(content["cood"])],
        endmember_scale=endmember_scale,
        convention="shares",
    )


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
        metadata={
            "format": "mat",
            "dataset": "samson",
            "path": str(image_path),
            "files": [str(p) for p in paths],
        },
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
        metadata={
            "format": "mat",
            "dataset": "jasper_ridge",
            "path": str(image_path),
            "files": [str(p) for p in paths],
        },
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
    paths = _require(key, data_dir, f"dataset {key!r}")
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
    paths = _require(f"library:{key}", data_dir, f"library {key!r}")
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
    names = [bytes(row).decode("latin-1").strip() for row in raw_names[_USGS_FIRST_SPECTRUM:]]
    return SpectralLibrary(spectra, np.arange(len(names)), names, 1000.0 * table[order, 0])


def load_abundance_maps(name: str, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Spatially structured synthetic abundance maps, (H, W, P) float64 summing to one.

    ``spatial2``: (100, 100, 9); ``spatial_3em``: (50, 50, 3); ``squares_3em``: (70, 70, 3).
    The files store them as MATLAB images (H, W, P), so no reordering is needed. Each pixel
    is renormalised to sum to one: ``squares_3em`` stores thirds as 0.3333 (sums of 0.9999).
    """
    key = _known(name, ABUNDANCE_MAP_FILES)
    variable = ABUNDANCE_MAP_FILES[key][1]
    (path,) = _require(f"maps:{key}", data_dir, f"abundance maps {key!r}")
    maps = _loadmat(path, (variable,))[variable]
    if maps.ndim != 3:
        raise FileFormatError(f"{path}: {variable} should be (H, W, P), got {maps.shape}")
    return maps / maps.sum(axis=-1, keepdims=True)
