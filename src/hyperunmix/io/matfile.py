"""One read-only view of MATLAB .mat files, v4-v7 (scipy.io) and v7.3 (HDF5, h5py).

Arrays come back in MATLAB's own shape: an L x N matrix is (L, N) from either backend.
(h5py sees MATLAB's column-major arrays with their axes reversed; the view transposes
them back, so element positions are those MATLAB shows.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ..errors import FileFormatError
from ._common import library_errors

#: MATLAB class -> NumPy dtype name, where they differ.
_DTYPE_OF_CLASS = {"double": "float64", "single": "float32", "logical": "bool"}
_NUMERIC_CLASSES = {
    "double",
    "single",
    "logical",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
}


class MatFile:
    """A .mat file opened for reading; use as a context manager.

    Attributes
    ----------
    variables : dict of str -> (shape, MATLAB class)
        Every top-level variable, read from the headers only.
    version : str
        ``"7.3"`` (HDF5) or ``"5"`` (the older formats scipy reads).
    """

    def __init__(self, path: Path):
        self.path = path
        self._h5: h5py.File | None = None
        with library_errors(path, "read the MATLAB file"):
            if h5py.is_hdf5(path):
                self.version = "7.3"
                self._h5 = h5py.File(path, "r")
                self.variables = {
                    name: (obj.shape[::-1], _h5_class(obj))
                    for name, obj in self._h5.items()
                    if isinstance(obj, h5py.Dataset) and not name.startswith("#")
                }
            else:
                self.version = "5"
                self.variables = {
                    name: (tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(path)
                }

    def __enter__(self) -> MatFile:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._h5 is not None:
            self._h5.close()

    def dtype_name(self, name: str) -> str:
        cls = self.variables[name][1]
        return _DTYPE_OF_CLASS.get(cls, cls)

    def numeric(self, ndims: Iterable[int] = (2, 3)) -> list[str]:
        """Names of the numeric variables with one of ``ndims`` dimensions."""
        return [
            name
            for name, (shape, cls) in self.variables.items()
            if cls in _NUMERIC_CLASSES and len(shape) in tuple(ndims)
        ]

    def find(self, names: Iterable[str]) -> str | None:
        """The first variable whose name matches one of ``names``, ignoring case."""
        by_lower = {name.lower(): name for name in self.variables}
        return next((by_lower[n.lower()] for n in names if n.lower() in by_lower), None)

    def require(self, name: str) -> str:
        """``name``, or a FileFormatError listing the variables when there is none of it."""
        if name not in self.variables:
            listed = ", ".join(self.variables) or "none"
            raise FileFormatError(f"{self.path} has no variable {name!r} (it holds: {listed})")
        return name

    def load(self, name: str) -> np.ndarray:
        """A numeric variable, in MATLAB's shape."""
        self.require(name)
        with library_errors(self.path, f"read variable {name!r} of"):
            if self._h5 is not None:
                return np.asarray(self._h5[name][()]).T
            array = scipy.io.loadmat(self.path, variable_names=[name])[name]
        if array.dtype.kind not in "biuf":
            raise FileFormatError(
                f"variable {name!r} of {self.path} is not numeric "
                f"(MATLAB class {self.variables[name][1]})"
            )
        return array

    def scalar(self, names: Iterable[str]) -> int | None:
        """An integer scalar variable under one of ``names`` (e.g. ``nRow``), or None."""
        key = self.find(names)
        if key is None or int(np.prod(self.variables[key][0])) != 1:
            return None
        return int(self.load(key).ravel()[0])

    def cell_numbers(self, name: str) -> np.ndarray | None:
        """A cell array of numbers (e.g. ``num2cell(wavelengths)``) as a float vector, in
        MATLAB's (column-major) order; None when an entry is not one real number."""
        with library_errors(self.path, f"read the cell array {name!r} of"):
            if self._h5 is not None:
                entries = _h5_cell(self._h5, self._h5[name])
                if any(_h5_class(entry) not in _NUMERIC_CLASSES for entry in entries):
                    return None  # text is stored as numbers too, tagged "char"
                values = [np.asarray(entry[()]) for entry in entries]
            else:
                cell = scipy.io.loadmat(self.path, variable_names=[name])[name]
                values = [np.asarray(entry) for entry in cell.ravel(order="F")]
        if not values or any(v.dtype.kind not in "biuf" or v.size != 1 for v in values):
            return None
        return np.array([v.item() for v in values], dtype=np.float64)

    def strings(self, name: str) -> list[str]:
        """A cell array of strings or a char array (one string per row)."""
        with library_errors(self.path, f"read the strings {name!r} of"):
            if self._h5 is not None:
                return _h5_strings(self._h5, self._h5[name])
            value = scipy.io.loadmat(self.path, variable_names=[name], simplify_cells=True)[name]
        if isinstance(value, str):
            return [value]
        return [str(item) for item in np.asarray(value, dtype=object).ravel()]


def _h5_class(obj: h5py.Dataset) -> str:
    cls = obj.attrs.get("MATLAB_class", obj.dtype.name)
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _h5_char(dataset: h5py.Dataset) -> str:
    """A MATLAB char array stored as uint16 code units (one column per character)."""
    codes = np.asarray(dataset[()], dtype=np.uint16).T
    return "".join(map(chr, codes.ravel(order="F")))


def _h5_cell(file: h5py.File, obj: h5py.Dataset) -> list[h5py.Dataset]:
    """The entries of a MATLAB cell array (object references), in column-major order."""
    return [file[ref] for ref in np.asarray(obj[()]).T.ravel(order="F")]


def _h5_strings(file: h5py.File, obj: h5py.Dataset) -> list[str]:
    if _h5_class(obj) == "cell":
        return [_h5_char(entry) for entry in _h5_cell(file, obj)]
    codes = np.asarray(obj[()], dtype=np.uint16).T  # (rows, chars) in MATLAB
    return ["".join(map(chr, row)).rstrip() for row in np.atleast_2d(codes)]
