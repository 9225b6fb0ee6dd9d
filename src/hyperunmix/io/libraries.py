"""Spectral libraries from files: ENVI spectral libraries, USGS splib07 ASCII, ECOSTRESS /
ASTER text spectra and the package's own CSV, each as a
:class:`~hyperunmix.spectra.SpectralLibrary` in nm and reflectance fractions.

Layouts read (``spectral``'s readers parse the USGS, ECOSTRESS and ASTER files):

- **ENVI spectral library**: ``file type = ENVI Spectral Library``, a ``.sli`` data file and
  its ``.hdr``; ``spectra names``, ``wavelength`` (with ``wavelength units``) and the
  ``reflectance scale factor`` are applied.
- **USGS splib07** (Kokaly et al. 2017, USGS Data Series 1035, the ``ASCIIdata`` archives):
  one file per spectrum, a title line ``splib07a Record=69: Actinolite HS116.3B  ASDFRb
  AREF`` (library, record, sample name, spectrometer + purity letter, measurement type),
  then one value per line; values of deleted channels are ``-1.23e34``. The band centres
  are in separate files beside the chapter folders, titled ``... Wavelengths ...`` (e.g.
  ``splib07a_Wavelengths_ASD_0.35-2.5_microns_2151_ch.txt``, or
  ``s07_AV14_AVIRIS_2014_Wavelengths_(microns)_224ch.txt`` in the convolved
  ``ASCIIdata_splib07b_cvAVIRISc2014``), in micrometres unless the title says ``nm``. A
  spectrum goes with the wavelength file of as many values, of its spectrometer when
  several have that count. Give the archive's folder (chapter folders ``Chapter*`` below
  it; ``errorbars`` is skipped), its ``.zip`` archive, one chapter folder, or one spectrum
  file. Transmittance spectra (``TRAN``) are left out: they are no reflectance. In a
  folder, a spectrum that cannot be read or placed (no wavelength file of its size and
  spectrometer, or several) is left out with a warning; read alone, it is an error.
- **ECOSTRESS (v1) and ASTER (2.x)** ``*.spectrum.txt``: ``key: value`` metadata lines
  (``Name``, ``X Units: Wavelength (micrometers)``, ``Y Units: Reflectance (percent)``, ...),
  then (wavelength, value) pairs; percent is divided by 100, micrometres become nm.
- **CSV** as :func:`~hyperunmix.io.write_endmembers_csv` writes it (``wavelength_nm``, then
  one column per spectrum headed by its material; columns sharing a name form one material
  of a bundle library), also ``.npy`` / ``.npz`` / ``.mat`` endmember files.

Deleted or missing values become NaN: :func:`resample_library` resamples each spectrum over
the channels it has, and leaves NaN where a target band lies outside them. Spectra on
different band sets (splib07a's ASD, Beckman and Nicolet spectra; ECOSTRESS files) can only
share a library once resampled to common bands: pass ``wavelengths=`` (and ``fwhm=``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, InputError
from ..spectra import SpectralLibrary, resample
from ._common import band_axis_in_nm, library_errors

__all__ = ["read_library", "resample_library", "write_library"]

#: Value of deleted channels in the USGS library.
USGS_DELETED = -1.23e34
# Anything below this is a deletion marker, whatever its printed precision.
_DELETED_BELOW = -1e30
_USGS_TITLE = re.compile(r"^\s*\S+\s+Record=\s*\d+\s*:")
# Titles of the USGS band-axis files, which are not spectra.
_USGS_AXIS_WORDS = ("wavelength", "waves", "bandpass", "fwhm", "resolution", "wavenumber", "srf")
_USGS_SKIPPED_FOLDERS = {"errorbars"}
_USGS_TRANSMITTANCE = "TRAN"
_ENDMEMBER_SUFFIXES = (".csv", ".npy", ".npz", ".mat")


def read_library(
    path: str | os.PathLike,
    *,
    wavelengths: Any = None,
    fwhm: Any = None,
    key: str | None = None,
) -> SpectralLibrary:
    """Read a spectral library file or folder (layouts: see the module documentation).

    Parameters
    ----------
    path : path
        An ENVI library (``.sli`` or ``.hdr``), a USGS splib07 folder or spectrum file, an
        ECOSTRESS / ASTER ``.spectrum.txt`` file or a folder of them (either folder also
        as a ``.zip`` archive, as the USGS distributes splib07), a CSV, .npy, .npz or .mat
        file of spectra.
    wavelengths : (L,) array in nm, optional
        Resample every spectrum to these band centres (:func:`resample_library`); needed
        when the spectra come on different band sets.
    fwhm : (L,) array or scalar in nm, optional
        Widths of those bands (Gaussian responses); linear interpolation without them.
    key : str, optional
        The array of an .npz / .mat file (see :func:`~hyperunmix.io.read_endmembers`).

    Returns
    -------
    SpectralLibrary
        ``spectra`` (K, L) reflectance as a fraction, NaN at deleted values; ``names`` the
        materials (spectra of the same name share one); ``wavelengths`` (L,) in nm.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path} does not exist")
    spectra = _read_folder(path) if path.is_dir() else _read_file(path, key)
    if wavelengths is not None:
        target, widths = _bands(wavelengths, fwhm)
        values = np.stack([_resample_one(s.values, s.wavelengths, target, widths) for s in spectra])
        return _library(values, [s.name for s in spectra], target)
    grids = {s.wavelengths.tobytes() if s.wavelengths is not None else b"" for s in spectra}
    if len(grids) > 1:
        counts = sorted({len(s.values) for s in spectra})
        raise InputError(
            f"the {len(spectra)} spectra of {path} come on {len(grids)} different band sets "
            f"({', '.join(map(str, counts))} bands): give wavelengths= (e.g. a scene's, with "
            "its fwhm=) to resample them to common bands"
        )
    return _library(
        np.stack([s.values for s in spectra]), [s.name for s in spectra], spectra[0].wavelengths
    )


def write_library(path: str | os.PathLike, library: SpectralLibrary) -> Path:
    """Write ``library`` as the package's CSV (one row per band, one column per spectrum
    headed by its material name), which :func:`read_library` reads back, atomically."""
    from .endmembers import write_endmembers_csv

    return write_endmembers_csv(
        path, library.spectra, library.wavelengths, library.spectrum_names()
    )


def resample_library(
    library: SpectralLibrary, wavelengths: Any, fwhm: Any = None
) -> SpectralLibrary:
    """``library`` at the band centres ``wavelengths`` (nm), band by band through
    :func:`hyperunmix.spectra.resample` (Gaussian responses of ``fwhm`` when given).

    Unlike :meth:`SpectralLibrary.resample`, NaN values and bands outside the library's
    range are allowed: each spectrum is resampled over the channels it has (its finite
    values), and a target band that these do not reach is NaN.

    Returns
    -------
    SpectralLibrary
        (K, L) spectra, the same labels and names.
    """
    if library.wavelengths is None:
        raise InputError("the library has no wavelengths, so it cannot be resampled")
    target, widths = _bands(wavelengths, fwhm)
    spectra = np.stack(
        [_resample_one(s, library.wavelengths, target, widths) for s in library.spectra]
    )
    return SpectralLibrary(spectra, library.labels, library.names, target)


def _bands(wavelengths: Any, fwhm: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Target band centres (L,) and widths (L,) or None, checked."""
    target = np.asarray(wavelengths, dtype=np.float64).ravel()
    if target.size == 0 or not np.all(np.isfinite(target) & (target > 0)):
        raise InputError("wavelengths must be a non-empty vector of positive finite values (nm)")
    if fwhm is None:
        return target, None
    widths = np.asarray(fwhm, dtype=np.float64).ravel()
    if widths.size not in (1, target.size):
        raise InputError(f"fwhm has {widths.size} values for {target.size} bands")
    return target, np.broadcast_to(widths, target.shape)


def _resample_one(
    values: np.ndarray, source: np.ndarray | None, target: np.ndarray, widths: np.ndarray | None
) -> np.ndarray:
    """One spectrum at ``target`` (L,) (band widths (L,) or None), NaN where its finite
    channels do not reach."""
    if source is None:
        raise InputError("a spectrum without wavelengths cannot be resampled")
    good = np.isfinite(values) & np.isfinite(source)
    out = np.full(target.shape, np.nan)
    if good.sum() < 2:
        return out
    lo, hi = source[good].min(), source[good].max()
    inside = (target >= lo) & (target <= hi)
    if inside.any():
        inside_widths = None if widths is None else widths[inside]
        out[inside] = resample(values[good], source[good], target[inside], inside_widths)[0]
    return out


def _library(spectra: np.ndarray, names: Sequence[str], wavelengths) -> SpectralLibrary:
    """A library whose materials are the distinct ``names``, in order of appearance."""
    materials = list(dict.fromkeys(names))
    labels = [materials.index(name) for name in names]
    return SpectralLibrary(spectra, np.asarray(labels), materials, wavelengths)


class _Spectrum:
    """One spectrum as read: its name, values (M,) and band centres (M,) in nm or None."""

    def __init__(self, name: str, values: Any, wavelengths: np.ndarray | None):
        self.name = name
        self.values = np.array(values, dtype=np.float64).ravel()  # a copy: NaN set below
        self.values[self.values < _DELETED_BELOW] = np.nan
        self.wavelengths = wavelengths
        if wavelengths is not None and wavelengths.size != self.values.size:
            raise FileFormatError(
                f"spectrum {name!r} has {self.values.size} values for {wavelengths.size} "
                "wavelengths"
            )


# -- dispatch ----------------------------------------------------------------------------
def _read_file(path: Path, key: str | None) -> list[_Spectrum]:
    suffix = path.suffix.lower()
    if suffix in (".sli", ".hdr"):
        from .envi import read_library as read_envi_library

        values, wavelengths, names = read_envi_library(path)
        return [_Spectrum(n, v, wavelengths) for n, v in zip(names, values)]
    if suffix in _ENDMEMBER_SUFFIXES:
        from .endmembers import read_endmembers

        values, wavelengths, found = read_endmembers(path, key)
        names = found or [f"spectrum_{k + 1}" for k in range(len(values))]
        return [_Spectrum(n, v, wavelengths) for n, v in zip(names, values)]
    if suffix == ".zip":
        return _read_zip(path)
    if suffix == ".txt":
        title = _first_line(path)
        if _USGS_TITLE.match(title):
            return [_read_usgs_spectrum(path, _usgs_axes(path.parent))]
        if title.lower().startswith("name:"):
            return [_read_ecostress(path)]
        raise FileFormatError(
            f"{path} is neither a USGS splib07 spectrum (title line 'LIB Record=N: ...') "
            "nor an ECOSTRESS / ASTER spectrum (first line 'Name: ...')"
        )
    raise FileFormatError(
        f"cannot read a spectral library from {path}: unknown extension {suffix or '(none)'!r} "
        "(use an ENVI .sli / .hdr, a USGS or ECOSTRESS .txt, a .zip of them, or .csv, "
        ".npy, .npz, .mat)"
    )


def _read_folder(path: Path) -> list[_Spectrum]:
    """Every USGS spectrum below ``path`` (a splib07 archive folder or one chapter), else
    every ECOSTRESS / ASTER ``*.spectrum.txt`` in it."""
    ecostress = sorted(path.glob("*.spectrum.txt"))
    if ecostress:
        return [_read_ecostress(file) for file in ecostress]
    axes = _usgs_axes(path)
    spectra, skipped = [], []
    for file in sorted(path.rglob("*.txt")):
        if _USGS_SKIPPED_FOLDERS & {part.lower() for part in file.relative_to(path).parts}:
            continue
        title = _first_line(file)
        if not _USGS_TITLE.match(title) or _is_axis_title(title):
            continue
        if title.split()[-1].upper() == _USGS_TRANSMITTANCE:
            continue
        try:
            spectra.append(_read_usgs_spectrum(file, axes))
        except FileFormatError as exc:  # one odd file of thousands: said, not fatal
            skipped.append(str(exc))
    if skipped:
        warnings.warn(
            f"{len(skipped)} USGS spectra of {path} left out, e.g. {skipped[0]}",
            UserWarning,
            stacklevel=3,
        )
    if not spectra:
        raise FileFormatError(
            f"{path} holds no readable USGS splib07 spectrum (.txt files titled 'LIB "
            "Record=N: ...' in chapter folders) and no ECOSTRESS / ASTER *.spectrum.txt file"
        )
    return spectra


def _read_zip(path: Path) -> list[_Spectrum]:
    """The library in a zip archive (as the USGS distributes splib07: its folder inside),
    read as :func:`_read_folder` reads the folder it holds."""
    with tempfile.TemporaryDirectory() as folder:
        with library_errors(path, "extract the zip archive"), zipfile.ZipFile(path) as archive:
            archive.extractall(folder)  # zipfile keeps members inside the folder
        root = Path(folder)
        while True:  # down through wrapping folders, to the one the library is in
            entries = [e for e in root.iterdir() if not e.name.startswith((".", "__MACOSX"))]
            if len(entries) != 1 or not entries[0].is_dir():
                return _read_folder(root)
            root = entries[0]


def _first_line(path: Path) -> str:
    with library_errors(path, "read"), open(path, encoding="latin-1") as stream:
        return stream.readline().strip()


# -- USGS --------------------------------------------------------------------------------
def _is_axis_title(title: str) -> bool:
    text = title.lower()
    return any(word in text for word in _USGS_AXIS_WORDS)


def _usgs_axes(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(spectrometer name, wavelengths in nm) of the USGS wavelength files in ``folder`` or
    the two folders above it (a spectrum file sits in a chapter folder of the archive)."""
    from spectral.database.usgs import SpectrometerData

    for candidate in (folder, folder.parent, folder.parent.parent):
        axes = []
        for file in sorted(candidate.glob("*.txt")):
            title = _first_line(file)
            if not _USGS_TITLE.match(title) or "wavelength" not in title.lower():
                continue
            with library_errors(file, "read the USGS wavelength file"):
                data = SpectrometerData.read_from_file(str(file))
            units = "nm" if data.unit == "nanometer" else "um"
            grid = band_axis_in_nm(data.values, units=units)[0]
            assert grid is not None  # a length unit, so a band axis
            axes.append((data.spectrometer_name, grid))
        if axes:
            return axes
    raise FileFormatError(
        f"no USGS wavelength file (titled '... Wavelengths ...') in {folder} or the two "
        "folders above it: the splib07 archive keeps them beside its chapter folders"
    )


def _read_usgs_spectrum(path: Path, axes: list[tuple[str, np.ndarray]]) -> _Spectrum:
    """A splib07 spectrum file with the band centres of its spectrometer."""
    from spectral.database.usgs import SampleData

    with library_errors(path, "read the USGS spectrum"):
        sample = SampleData.read_from_file(str(path))
    # The title ends with the spectrometer + purity code and the measurement type.
    name = " ".join(sample.description.split()[:-2]) or path.stem
    fitting = [(spec, grid) for spec, grid in axes if grid.size == len(sample.values)]
    if len(fitting) > 1:
        prefix = sample.spectrometer[:3].upper()
        fitting = [(spec, grid) for spec, grid in fitting if spec.upper().startswith(prefix)]
    if len(fitting) != 1:
        sizes = ", ".join(f"{spec} ({grid.size})" for spec, grid in axes)
        raise FileFormatError(
            f"{path}: {len(sample.values)} values ({sample.spectrometer}), and "
            f"{'no' if not fitting else 'more than one'} wavelength file of that size "
            f"and spectrometer among {sizes}"
        )
    return _Spectrum(name, sample.values, fitting[0][1])


# -- ECOSTRESS / ASTER -------------------------------------------------------------------
def _read_ecostress(path: Path) -> _Spectrum:
    """An ECOSTRESS v1 file, or an ASTER 2.x one (whose metadata values run over several
    lines, which ECOSTRESS's reader does not take)."""
    from spectral.database.aster import read_aster_file
    from spectral.database.ecostress import read_ecostress_file

    with library_errors(path, "read"), open(path, encoding="latin-1") as stream:
        header = []
        for line in stream:
            if line.strip().lower().startswith("measurement"):
                break
            header.append(line)
    reader = read_ecostress_file if all(":" in line for line in header) else read_aster_file
    # spectral prints its complaints about odd lines on stdout: keep them off ours.
    with (
        library_errors(path, "read the ECOSTRESS / ASTER spectrum"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        signature = reader(str(path))
    measurement = signature.measurement
    x_units = measurement.get("x units", "").lower()
    y_units = measurement.get("y units", "").lower()
    if "wavelength" not in x_units:
        raise FileFormatError(
            f"{path}: X Units {x_units or '(none)'!r} are not wavelengths; only spectra "
            "against wavelength are read"
        )
    units = "nm" if "nanomet" in x_units else "um"
    wavelengths = band_axis_in_nm(signature.x, units=units)[0]
    values = np.asarray(signature.y, dtype=np.float64)
    if "percent" in y_units:
        values = values / 100.0
    # The name as written (the ASTER reader lower-cases every value).
    name = header[0].split(":", 1)[1] if header else path.name
    return _Spectrum(" ".join(name.split()), values, wavelengths)
