"""Apply a fitted unmixer to a lazy cube, chunk by chunk.

A chunk is unmixed by :meth:`hyperunmix.base.Unmixer.transform` on its (h, w, L) block,
with the block's own validity mask; spatial methods (``spatial_context`` > 0) see their
context around the chunk (``dask.array.map_overlap``, no padding at the scene's edges, so a
chunk at the border sees the border as the whole image does). A pixel-wise method gives
every pixel the result it has in the whole image: the chunking changes nothing but which
pixels share a call.

The maps a method returns (abundances, and extras such as uncertainty) travel packed in the
channels of one (h, w, K) float32 block; :class:`MapLayout` packs and unpacks them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..base import Unmixer
from ..conventions import check_convention, convert_maps
from ..errors import InputError
from .threads import thread_share, torch_threads

#: A block of packed maps, in memory or lazy.
_Block = TypeVar("_Block", np.ndarray, da.Array)
#: Fractions of the image height / width where :meth:`MapLayout.probe` looks for valid pixels.
_PROBE_CENTRES = ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25))
#: Side of the probe window for pixel-wise methods.
_PROBE_SIDE = 8
#: Maps an unmixer computes only when a parameter of it is true: map name -> parameter.
#: ID-Net's per-pixel endmembers (h, w, P, L), as large as the chunk itself and never
#: written unless asked for, took 525 of the 596 MB its transform added to the memory on a
#: 256 x 256 x 285 chunk, P = 5.
_OPTIONAL_MAPS = {"pixel_endmembers": "return_pixel_endmembers"}


@dataclass(frozen=True)
class MapLayout:
    """The maps an unmixer writes and how they pack into the K channels of one block.

    Attributes
    ----------
    names : tuple of str
        Map names, ``"abundances"`` first.
    shapes : tuple of tuple of int
        Per-pixel shape of each map: ``(P,)`` for abundances, ``()`` for a single map.
    convention : {"absolute", "shares"} or None
        Abundance convention the maps are written in (:mod:`hyperunmix.conventions`);
        None: the unmixer's own.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    convention: str | None = None

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    @property
    def channels(self) -> int:
        """K, the packed channels per pixel."""
        return sum(self.sizes)

    def pack(self, maps: dict[str, np.ndarray]) -> np.ndarray:
        """{name: (h, w, *shape)} -> (h, w, K) float32."""
        first = maps[self.names[0]]
        flat = []
        for name, shape in zip(self.names, self.shapes):
            if name not in maps or maps[name].shape[2:] != shape:
                got = None if name not in maps else maps[name].shape[2:]
                raise InputError(
                    f"the unmixer returned map {name!r} with per-pixel shape "
                    f"{got} in one chunk, {shape} in the probe"
                )
            flat.append(maps[name].reshape(first.shape[:2] + (-1,)))
        return np.concatenate(flat, axis=2).astype(np.float32, copy=False)

    def unpack(self, block: _Block) -> dict[str, _Block]:
        """(h, w, K) -> {name: (h, w, *shape)} (views of ``block``, a NumPy or dask array)."""
        bounds = np.cumsum([0] + self.sizes)
        return {
            name: block[:, :, start:stop].reshape(block.shape[:2] + shape)
            for name, shape, start, stop in zip(self.names, self.shapes, bounds[:-1], bounds[1:])
        }

    def dims(self, name: str) -> tuple[str, ...]:
        """xarray dims of map ``name``: (y, x), then ``endmember`` for an axis of P values
        (abundances, uncertainties), ``<name>_<axis>`` for any other axis."""
        n_endmembers = self.shapes[0][0]
        shape = self.shapes[self.names.index(name)]
        return (
            "y",
            "x",
            *(
                "endmember" if (size, axis) == (n_endmembers, 0) else f"{name}_{axis}"
                for axis, size in enumerate(shape)
            ),
        )

    def empty(self, n_rows: int, n_cols: int) -> np.ndarray:
        """An all-NaN packed block: the result for a chunk without valid pixel."""
        return np.full((n_rows, n_cols, self.channels), np.nan, dtype=np.float32)

    def maps(self, unmixer: Unmixer, block: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """``unmixer``'s maps of an (h, w, L) block, in this layout's convention."""
        maps = unmixer.transform(block, mask)
        if self.convention is None:
            return maps
        return convert_maps(maps, unmixer.endmembers_out(), unmixer.convention, self.convention)

    @classmethod
    def probe(
        cls,
        unmixer: Unmixer,
        cube: xr.DataArray,
        outputs: Sequence[str] | None = None,
        convention: str | None = None,
    ) -> MapLayout:
        """Run ``unmixer`` on a small window of ``cube`` to learn which maps it returns.

        The window is the first of a few spread over the image that holds a valid pixel.
        ``outputs`` selects maps by name; by default, every map but the 4-D ones (per-pixel
        endmembers (h, w, P, L), as large as the scene itself). ``convention``: see the
        class attributes.
        """
        if convention is not None:
            check_convention(convention)
        maps = unmixer.transform(_probe_block(cube, unmixer.spatial_context))
        if outputs is None:
            names = [name for name, values in maps.items() if values.ndim <= 3]
        else:
            names = list(dict.fromkeys(outputs))
            unknown = [name for name in names if name not in maps]
            if unknown:
                raise InputError(
                    f"{type(unmixer).__name__} gives no map {unknown}; it gives {', '.join(maps)}"
                )
        names.sort(key=lambda name: name != "abundances")
        return cls(tuple(names), tuple(tuple(maps[name].shape[2:]) for name in names), convention)


def _probe_block(cube: xr.DataArray, context: int) -> np.ndarray:
    height, width, _ = cube.shape
    side = max(_PROBE_SIDE, 2 * int(context) + 1)
    rows, cols = min(side, height), min(side, width)
    for row_share, col_share in _PROBE_CENTRES:
        top = min(int(row_share * height), height - rows)
        left = min(int(col_share * width), width - cols)
        block = cube.data[top : top + rows, left : left + cols].compute()
        if np.isfinite(block).all(axis=-1).any():
            return block
    raise InputError(
        f"found no valid pixel in {len(_PROBE_CENTRES)} windows of "
        f"{cube.attrs.get('name', 'the cube')} to learn the maps the method "
        "returns; is the scene all no-data?"
    )


def unmix_block(
    block: np.ndarray, unmixer: Unmixer, layout: MapLayout, task_threads: int | None = None
) -> np.ndarray:
    """Unmix one (h, w, L) float32 block (NaN at invalid pixels) -> (h, w, K) packed maps,
    with this thread's share of the cores among ``task_threads`` threads running such
    tasks (default: the scheduler's, :func:`~hyperunmix.scale.threads.thread_share`)."""
    mask = np.isfinite(block).all(axis=-1)
    if not mask.any():
        return layout.empty(*block.shape[:2])
    with torch_threads(thread_share(task_threads)):
        return layout.pack(layout.maps(unmixer, block, mask))


def shippable(unmixer: Unmixer, maps: Sequence[str] | None = None) -> Unmixer:
    """A shallow copy of a fitted ``unmixer`` without its progress callback, which may hold
    a live progress bar that neither pickles nor belongs on a worker; with ``maps``, the
    names of the maps written, a map that its unmixer computes only on request
    (``_OPTIONAL_MAPS``) and that is not among them is not requested."""
    unmixer._check_fitted()
    clone = copy.copy(unmixer)
    clone.progress = None
    for name, switch in _OPTIONAL_MAPS.items():
        if maps is not None and name not in maps and getattr(clone, switch, False):
            setattr(clone, switch, False)
    return clone


def unmix_lazy(
    unmixer: Unmixer,
    cube: xr.DataArray,
    outputs: Sequence[str] | None = None,
    convention: str | None = None,
) -> xr.Dataset:
    """The maps of a fitted ``unmixer`` on ``cube`` as a lazy Dataset; nothing is computed.

    Parameters
    ----------
    unmixer : Unmixer
        Fitted, on as many bands as ``cube`` has.
    cube : xarray.DataArray
        Lazy (y, x, band) cube from :func:`~hyperunmix.scale.open_cube` / ``as_cube``.
    outputs : sequence of str, optional
        Maps to compute (see :meth:`MapLayout.probe`).
    convention : {"absolute", "shares"}, optional
        Abundance convention of the maps (:mod:`hyperunmix.conventions`); default: the
        unmixer's own.

    Returns
    -------
    xarray.Dataset
        ``abundances`` (y, x, endmember) float32 and the extra maps, chunked as the cube;
        NaN at invalid pixels; the ``convention`` attribute names theirs. Compute it, or
        write it with ``.to_zarr``; for a resumable write with progress, use
        :func:`~hyperunmix.scale.unmix_large`.
    """
    unmixer._check_fitted()
    unmixer._check_bands(cube.sizes["band"])
    layout = MapLayout.probe(unmixer, cube, outputs, convention)
    packed = packed_maps(shippable(unmixer, layout.names), cube.data, layout)
    variables = {
        name: (layout.dims(name), values) for name, values in layout.unpack(packed).items()
    }
    attrs = {k: v for k, v in cube.attrs.items() if k in ("crs", "transform")}
    attrs["convention"] = convention or unmixer.convention
    return xr.Dataset(variables, coords={"endmember": np.arange(layout.shapes[0][0])}, attrs=attrs)


def packed_maps(unmixer: Unmixer, cube: da.Array, layout: MapLayout) -> da.Array:
    """The (H, W, K) lazy packed maps of ``cube`` (H, W, L), one task per chunk."""
    options = {
        "unmixer": dask.delayed(unmixer, pure=True),  # one copy in the graph
        "layout": layout,
        "dtype": np.float32,
        "chunks": cube.chunks[:2] + ((layout.channels,),),
        "meta": np.empty((0, 0, 0), np.float32),
    }
    context = int(unmixer.spatial_context)
    if context == 0:
        return da.map_blocks(unmix_block, cube, **options)
    return da.map_overlap(
        unmix_block, cube, depth=(context, context, 0), boundary="none", **options
    )
