"""Reading windows of a file in physical units: the conversion every chunk goes through,
ENVI windows read through a memory map that lives for one read only, GDAL raster
(GeoTIFF) windows read through rasterio, and sensor products in HDF5 (EMIT, PRISMA)
through h5py.

Both readers apply what the in-memory readers (:mod:`hyperunmix.io.envi`,
:mod:`hyperunmix.io.geotiff`) apply, with the same functions: GDAL masks and alpha bands,
GDAL band scales and offsets, no-data values and scale factors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rasterio.windows import Window

from ..io._raster import open_quietly, valid_pixels
from ..io.envi import gdal_mask, has_gdal_mask, open_spectral
from ..io.geotiff import apply_scaling


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


def select_bands(block: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """The (h, w, k) bands ``bands`` (increasing indices) of an (h, w, L) block, copied
    run by run: a run of consecutive bands (bad bands come in a few ranges) is one strided
    copy, where indexing by the array gathers value by value, 2 to 3 times slower."""
    out = np.empty(block.shape[:-1] + (len(bands),), dtype=block.dtype)
    starts = np.flatnonzero(np.diff(bands, prepend=-2) != 1)
    for start, stop in zip(starts, [*starts[1:], len(bands)]):
        first = bands[start]
        out[..., start:stop] = block[..., first : first + stop - start]
    return out


class EnviWindows:
    """Array-like view of an ENVI image as (rows, cols, bands) float32 physical values, for
    ``dask.array.from_array``.

    Any interleave (BSQ, BIL, BIP), byte order and header offset, as ``spectral`` maps them;
    pixels GDAL's mask side-car of the data file (``x.img.msk``) marks invalid are NaN.
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
        self.masked = has_gdal_mask(Path(data))
        image = self._image()
        self.shape = (image.nrows, image.ncols, image.nbands)
        self.stored_dtype = np.dtype(image.dtype)

    def _image(self):
        image = self.__dict__.get("_cached_image")
        if image is None:
            image = self._cached_image = open_spectral(Path(self.header), Path(self.data))
        return image

    def __getitem__(self, key: Any) -> np.ndarray:
        mapped = self._image().open_memmap(interleave="bip")
        try:
            block = to_physical(mapped[key], self.scale, self.nodata)
        finally:
            del mapped  # the last reference: the file is unmapped here
        if self.masked:  # GDAL's .msk side-car of the data file
            window, inside = bounding_window(key, self.shape)
            valid = gdal_mask(Path(self.data), window)
            assert valid is not None  # the side-car was there when the cube was opened
            _mask_out(block, valid[inside])
        return block

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
            self.masked,
        )

    def __repr__(self) -> str:
        return f"EnviWindows({self.data!r}, shape={self.shape}, stored as {self.stored_dtype})"


def bounding_window(key: Any, shape: tuple[int, ...]) -> tuple[Window, tuple]:
    """The rows and columns a (rows, cols[, bands]) ``key`` reads, as the window that holds
    them, and the key picking them out of that window (rows and columns only).

    Slices with a positive step read their span; anything else (an index, a reversed
    slice) reads the whole extent of its axis and picks from it.
    """
    key = key if isinstance(key, tuple) else (key,)
    spans, inside = [], []
    for part, size in zip((*key, slice(None), slice(None))[:2], shape[:2]):
        if isinstance(part, slice) and (part.step or 1) > 0:
            start, stop, step = part.indices(size)
            spans.append((start, max(start, stop)))
            inside.append(slice(None, None, step))
        else:
            spans.append((0, size))
            inside.append(part)
    return Window.from_slices(*spans), tuple(inside)


def _mask_out(block: np.ndarray, valid: np.ndarray) -> None:
    """NaN, in place, at the pixels of a (h, w, L) block where ``valid`` (h, w) is False."""
    block[~valid] = np.nan


class RasterWindows:
    """Array-like view of a GDAL raster (GeoTIFF) as (rows, cols, bands) float32 physical
    values, for ``dask.array.from_array``.

    Each read opens the file, reads the window of the spectral ``bands`` and closes it
    (GDAL datasets are not shared between threads); the object pickles as its path and
    conversion. A read goes as :func:`hyperunmix.io.geotiff.read` goes: GDAL band scales
    and offsets applied, NaN at no-data pixels and where GDAL's per-dataset mask (internal
    or a ``.msk`` side-car) or an alpha band marks a pixel invalid; then ``scale``.

    Parameters
    ----------
    path : path
        The raster.
    bands : list of int
        Its 1-based spectral bands (alpha bands left out).
    shape : (int, int)
        Rows and columns of the raster.
    scaling : (scales, offsets), optional
        GDAL's per-band scales and offsets, when not all 1 and 0.
    nodata : float, optional
        Stored value of every band at a missing pixel.
    scale : float, optional
        Factor to physical units, applied last.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        path: str | os.PathLike,
        bands: list[int],
        shape: tuple[int, int],
        scaling: tuple[np.ndarray, np.ndarray] | None = None,
        nodata: float | None = None,
        scale: float | None = None,
    ):
        self.path = str(path)
        self.bands = list(bands)
        self.shape = (*shape, len(self.bands))
        self.scaling = scaling
        self.nodata = nodata
        self.scale = scale

    def __getitem__(self, key: Any) -> np.ndarray:
        window, inside = bounding_window(key, self.shape)
        with open_quietly(self.path) as dataset:
            raw = np.moveaxis(dataset.read(self.bands, window=window), 0, 2)
            valid = valid_pixels(dataset, self.bands, window)
        if self.scaling is None:
            block = to_physical(raw, self.scale, self.nodata)
        else:
            block = apply_scaling(raw, *self.scaling, self.nodata)
            if self.scale is not None:
                block *= np.float32(self.scale)
        if valid is not None:
            _mask_out(block, valid)
        bands = key[2:3] if isinstance(key, tuple) else ()
        return block[inside + bands]

    def __dask_tokenize__(self) -> tuple:
        stat = Path(self.path).stat()
        scaling = None if self.scaling is None else [v.tolist() for v in self.scaling]
        return (
            type(self).__name__,
            self.path,
            stat.st_size,
            stat.st_mtime_ns,
            self.bands,
            scaling,
            self.nodata,
            self.scale,
        )

    def __repr__(self) -> str:
        return f"RasterWindows({self.path!r}, shape={self.shape})"


class ProductWindows:
    """Array-like view of a sensor product in HDF5 (EMIT, PRISMA) as (rows, cols, bands)
    float32, for ``dask.array.from_array``.

    Each read opens the file and reads the window with the product reader's
    ``read_window(file, path, meta, rows, cols)`` (EMIT's grid: the GLT window, then the
    block of swath rows and columns it points to; PRISMA: the window of both cubes), so a
    window holds what ``hyperunmix.open`` reads there; then ``scale``. The object pickles as
    its path, the product's metadata and the reader function.

    Parameters
    ----------
    path : path
        The product.
    meta : hyperunmix.io.emit.Granule or hyperunmix.io.prisma.Product
        Its metadata (with ``shape``, the (H, W, L) of the cube read).
    read_window : callable
        ``hyperunmix.io.emit.read_window`` or ``hyperunmix.io.prisma.read_window``.
    scale : float, optional
        Factor to physical units.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Any,
        read_window: Callable[..., np.ndarray],
        scale: float | None = None,
    ):
        self.path = Path(path)
        self.meta = meta
        self.read_window = read_window
        self.shape = meta.shape
        self.scale = scale

    def __getitem__(self, key: Any) -> np.ndarray:
        window, inside = bounding_window(key, self.shape)
        rows, cols = window.toslices()
        with h5py.File(self.path, "r") as file:
            block = self.read_window(file, self.path, self.meta, rows, cols)
        if self.scale is not None:
            block *= np.float32(self.scale)
        bands = key[2:3] if isinstance(key, tuple) else ()
        return block[inside + bands]

    def __dask_tokenize__(self) -> tuple:
        stat = self.path.stat()
        return (
            type(self).__name__,
            str(self.path),
            stat.st_size,
            stat.st_mtime_ns,
            self.read_window.__module__,
            self.shape,
            self.scale,
        )

    def __repr__(self) -> str:
        return f"ProductWindows({str(self.path)!r}, shape={self.shape})"
