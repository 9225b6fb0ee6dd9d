"""Reading windows of a file in physical units: the conversion every chunk goes through,
and ENVI windows read through a memory map that lives for one read only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import spectral.io.envi as spectral_envi


def to_physical(block: np.ndarray, scale: float | None, nodata: float | None) -> np.ndarray:
    """A raw (h, w, L) block as float32 physical values with NaN at no-data pixels.

    The arithmetic is :class:`~hyperunmix.scene.Scene`'s (cast to float32, then multiply
    by float32(scale)), so a chunk holds the values the whole scene would. A pixel is
    no-data when every band equals ``nodata`` in the stored (unscaled) values.
    """
    out = block.astype(np.float32)
    if scale is not None:
        out *= np.float32(scale)
    if nodata is not None:
        out[np.all(block == nodata, axis=-1)] = np.nan
    return out


class EnviWindows:
    """Array-like view of an ENVI image as (rows, cols, bands) float32 physical values, for
    ``dask.array.from_array``.

    Any interleave (BSQ, BIL, BIP), byte order and header offset, as ``spectral`` maps them.
    Each read maps the data file, converts the window (:func:`to_physical`) and unmaps the
    file: pages of a memory map left open count in the resident memory of the process
    until the kernel reclaims them, which on a long run over a large file reads as a leak.
    The object pickles as its paths and conversion, so dask workers (threads or processes,
    on any machine that sees the file) open the file themselves.

    Parameters
    ----------
    header, data : path
        The ENVI header and its binary data file.
    scale : float, optional
        Factor to physical units.
    nodata : float, optional
        Stored value of every band at a missing pixel.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        header: str | os.PathLike,
        data: str | os.PathLike,
        scale: float | None = None,
        nodata: float | None = None,
    ):
        self.header = str(header)
        self.data = str(data)
        self.scale = scale
        self.nodata = nodata
        image = self._image()
        self.shape = (image.nrows, image.ncols, image.nbands)
        self.stored_dtype = np.dtype(image.dtype)

    def _image(self):
        image = self.__dict__.get("_cached_image")
        if image is None:
            image = self._cached_image = spectral_envi.open(self.header, self.data)
        return image

    def __getitem__(self, key: Any) -> np.ndarray:
        mapped = self._image().open_memmap(interleave="bip")
        try:
            return to_physical(mapped[key], self.scale, self.nodata)
        finally:
            del mapped  # the last reference: the file is unmapped here

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_cached_image"}

    def __dask_tokenize__(self) -> tuple:
        stat = Path(self.data).stat()
        return (
            type(self).__name__,
            self.header,
            self.data,
            stat.st_size,
            stat.st_mtime_ns,
            self.scale,
            self.nodata,
        )

    def __repr__(self) -> str:
        return f"EnviWindows({self.data!r}, shape={self.shape}, stored as {self.stored_dtype})"
