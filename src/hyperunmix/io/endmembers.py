"""Endmember spectra files: CSV (one row per band), .npy, .npz, .mat and ENVI spectral
libraries (.sli + .hdr).

The CSV written has a header row, then one row per band: the wavelength in nm (column
``wavelength_nm``; ``band``, the 0-based band index, when wavelengths are unknown), then
one column per endmember, headed by its name.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._atomic import write_text
from ..errors import FileFormatError, InputError
from ..scene import default_names
from ._common import band_axis_in_nm, library_errors, require_file
from .matfile import MatFile
from .matlab import WAVELENGTH_NAMES, band_vector

#: Names under which endmember matrices, their names and wavelengths are looked for.
_MATRIX_KEYS = ("endmembers", "E", "M")
_NAME_KEYS = ("names", "cood", "material_names")

#: (endmembers (P, L), wavelengths (L,) or None, names or None)
Spectra = tuple[np.ndarray, np.ndarray | None, list[str] | None]


# -- writing -----------------------------------------------------------------------------
def write_endmembers_csv(
    path: str | os.PathLike,
    endmembers: Any,
    wavelengths: Any = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Write endmembers (P, L) as a CSV with one row per band, atomically.

    Parameters
    ----------
    endmembers : (P, L) array
    wavelengths : (L,) array in nm, optional
    names : P str, optional
        Column headers; ``endmember_1`` ... by default.
    """
    spectra = np.asarray(endmembers, dtype=np.float64)
    if spectra.ndim != 2:
        raise InputError(f"endmembers must be a (P, L) matrix, got shape {spectra.shape}")
    n_endmembers, n_bands = spectra.shape
    axis: NDArray[np.number]
    if wavelengths is None:
        axis_name, axis = "band", np.arange(n_bands)
    else:
        axis_name, axis = "wavelength_nm", np.asarray(wavelengths, dtype=np.float64).ravel()
        if axis.size != n_bands:
            raise InputError(f"{axis.size} wavelengths given for {n_bands} bands")
    names = default_names(n_endmembers) if names is None else list(names)
    if len(names) != n_endmembers:
        raise InputError(f"{len(names)} names given for {n_endmembers} endmembers")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([axis_name, *names])
    for band in range(n_bands):
        writer.writerow([repr(axis[band].item()), *(repr(v) for v in spectra[:, band].tolist())])
    return write_text(path, text.getvalue())


# -- reading -----------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> Spectra:
    """A CSV of one row per band. A header row, when present, names the endmembers; a
    first column headed ``wavelength...`` / ``band`` is the band axis, not a spectrum."""
    with library_errors(path, "read the CSV file"):
        rows = [row for row in csv.reader(path.read_text().splitlines()) if row]
    if not rows:
        raise FileFormatError(f"{path} is empty")
    header = None if all(_is_number(cell) for cell in rows[0]) else [c.strip() for c in rows.pop(0)]
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise FileFormatError(f"{path} has rows of different lengths ({sorted(widths)} columns)")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise FileFormatError(f"{path} has a non-numeric value below its header: {exc}") from exc
    axis_name = "" if header is None else header[0].lower()
    wavelengths = None
    if header is not None and axis_name.startswith(("wavelength", "lambda", "band")):
        units = "um" if ("um" in axis_name or "µm" in axis_name) else None
        if not axis_name.startswith("band"):
            wavelengths = band_axis_in_nm(table[:, 0], units=units)[0]
        table, header = table[:, 1:], header[1:]
    return table.T, wavelengths, header


def _read_npy(path: Path, key: str | None) -> Spectra:
    if not zipfile.is_zipfile(path):
        with library_errors(path, "read the NumPy array"):
            return np.load(path, allow_pickle=False), None, None
    with (
        library_errors(path, "read the NumPy archive"),
        np.load(path, allow_pickle=False) as archive,
    ):
        key = key or next((k for k in _MATRIX_KEYS if k in archive.files), None)
        if key is None or key not in archive.files:
            raise FileFormatError(
                f"{path} has no endmember array (looked for "
                f"{', '.join(_MATRIX_KEYS)}; it holds: "
                f"{', '.join(archive.files)}); choose one with key="
            )
        wavelengths = archive["wavelengths"] if "wavelengths" in archive.files else None
        names = [str(n) for n in archive["names"]] if "names" in archive.files else None
        return archive[key], band_axis_in_nm(wavelengths)[0], names


def _read_mat(path: Path, key: str | None) -> Spectra:
    with MatFile(path) as mat:
        if key is None:
            key = mat.find(_MATRIX_KEYS)
            matrices = mat.numeric((2,))
            key = key or (matrices[0] if len(matrices) == 1 else None)
        if key is None:
            raise FileFormatError(
                f"{path} has no endmember matrix (looked for "
                f"{', '.join(_MATRIX_KEYS)} or a single 2-D array; it "
                f"holds: {', '.join(mat.variables)}); choose one with key="
            )
        matrix = mat.load(key)
        names_key = mat.find(_NAME_KEYS)
        names = None if names_key is None else mat.strings(names_key)
        if names is not None and len(names) not in matrix.shape:
            names = None  # they name something else, e.g. the groups of a bundle library
        return matrix, band_axis_in_nm(band_vector(mat, WAVELENGTH_NAMES))[0], names


def _as_pl(
    matrix: np.ndarray, wavelengths: np.ndarray | None, names: list[str] | None, path: Path
) -> np.ndarray:
    """``matrix`` as (P, L): transposed from (L, P) when the wavelengths or names say so,
    or, lacking both, when it has more rows than columns (P > L cannot be unmixed)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise FileFormatError(
            f"the endmembers in {path} have shape {matrix.shape}; expected a (P, L) matrix"
        )
    if wavelengths is not None:
        if matrix.shape[1] != wavelengths.size and matrix.shape[0] == wavelengths.size:
            matrix = matrix.T
        if matrix.shape[1] != wavelengths.size:
            raise FileFormatError(
                f"{path} lists {wavelengths.size} wavelengths for "
                f"endmembers of shape {matrix.shape}"
            )
    elif names is not None:
        if matrix.shape[0] != len(names) and matrix.shape[1] == len(names):
            matrix = matrix.T
    elif matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    if names is not None and len(names) != matrix.shape[0]:
        raise FileFormatError(f"{path} names {len(names)} endmembers but holds {matrix.shape[0]}")
    if not np.all(np.isfinite(matrix)):
        raise FileFormatError(f"the endmembers in {path} contain non-finite values")
    return matrix


def read_endmembers(path: str | os.PathLike, key: str | None = None) -> Spectra:
    """Endmember spectra from a CSV, .npy, .npz or .mat file, or an ENVI spectral library
    (its ``.sli`` data file or its ``.hdr`` header; ``spectra names`` are the names).

    Parameters
    ----------
    path : path
    key : str, optional
        Array to read from an .npz / .mat (default: ``endmembers``, ``E`` or ``M``, or
        the only 2-D array of a .mat).

    Returns
    -------
    endmembers : (P, L) float64
        An (L, P) matrix (MATLAB's usual layout) is transposed when the wavelengths, the
        names or its shape make the layout unambiguous.
    wavelengths : (L,) float64 in nm, or None
    names : list of P str, or None
    """
    path = require_file(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        matrix, wavelengths, names = _read_csv(path)
    elif suffix in (".npy", ".npz"):
        matrix, wavelengths, names = _read_npy(path, key)
    elif suffix == ".mat":
        matrix, wavelengths, names = _read_mat(path, key)
    elif suffix in (".sli", ".hdr"):
        from .envi import read_library  # imports spectral and rasterio: only when needed

        matrix, wavelengths, names = read_library(path)
    else:
        raise FileFormatError(
            f"cannot read endmembers from {path}: unknown extension "
            f"{suffix or '(none)'!r} (use .csv, .npy, .npz, .mat, or an ENVI spectral "
            "library's .sli or .hdr)"
        )
    return _as_pl(matrix, wavelengths, names, path), wavelengths, names
