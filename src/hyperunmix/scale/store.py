"""A Zarr store of maps written chunk by chunk: resumable, and marked complete last.

Layout (xarray-readable, ``xr.open_zarr(path)``)::

    abundances          (y, x, endmember) float32, NaN where invalid or not yet written
    <extra map>         e.g. uncertainty (y, x, endmember), nonlinearity (y, x)
    endmembers          (endmember, band) float64, when the method has endmembers
    endmember           index coordinate; its attribute ``names`` lists the materials the
                        endmembers were identified as, when they were (``identify``)
    y, x, spatial_ref   map coordinates and CF grid mapping, when the source is georeferenced
    progress/chunks_done  (chunk rows, chunk cols) uint8 zarr array: 1 once a chunk is written

The store's chunks are the processing chunks, so no two tasks ever write the same Zarr
chunk. A chunk is marked done only after all its maps are written, and each marker is its
own file, written atomically by Zarr, so a killed run loses at most the chunks in flight.
The root attribute ``hyperunmix`` records the run (source, method, parameters, a
fingerprint of the fitted model) and ``complete``, set true only once every chunk is done.
A store is reused only by the run with the same fingerprint.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from .._atomic import atomic_dir
from ..errors import FileFormatError, InputError
from ..io.netcdf import _georeference
from ..scene import GeoInfo
from .apply import MapLayout
from .grid import Chunk

#: Root attribute holding the run record.
RUN_ATTR = "hyperunmix"
#: Zarr array of the per-chunk completion markers.
MARKERS = "progress/chunks_done"
#: Compression of the maps: LZ4 with byte shuffle compresses a chunk of float32 maps about
#: as well as Zarr's default Zstandard and four times faster, which keeps writing a small
#: share of a chunk's time.
MAP_COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


@dataclass(frozen=True)
class StoreSpec:
    """What a map store holds: everything needed to create it, and the run it records.

    Attributes
    ----------
    shape : (H, W)
    chunks : (rows, cols)
        Regular chunk size (the last row and column of chunks may be smaller).
    layout : MapLayout
    run : dict
        JSON-able run record, with a ``fingerprint`` string.
    endmembers : (P, L) array or None
    wavelengths : (L,) array or None
    geo : GeoInfo or None
    names : list of P str or None
        The endmembers' names (library materials they were identified as), None for
        ``endmember_k``.
    """

    shape: tuple[int, int]
    chunks: tuple[int, int]
    layout: MapLayout
    run: dict
    endmembers: np.ndarray | None = None
    wavelengths: np.ndarray | None = None
    geo: GeoInfo | None = None
    names: list[str] | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """Chunks along rows and columns."""
        (n_rows, n_cols), (rows, cols) = self.shape, self.chunks
        return -(-n_rows // rows), -(-n_cols // cols)


class MapStore:
    """A map store on disk (see the module documentation)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def prepare(cls, path: str | Path, spec: StoreSpec, overwrite: bool = False) -> MapStore:
        """The store at ``path`` for the run ``spec``: the existing one when it records
        the same run (to resume), else a new, empty one.

        Raises InputError when ``path`` holds anything else, unless ``overwrite``.
        """
        store = cls(path)
        if store.path.exists() and not overwrite:
            try:
                recorded = store.run_record()
            except FileFormatError:
                raise InputError(
                    f"{store.path} exists and is not a hyperunmix map store; "
                    "remove it or choose another output path"
                ) from None
            if recorded.get("fingerprint") != spec.run["fingerprint"]:
                raise InputError(
                    f"{store.path} holds the output of another run (a different source, "
                    f"method, parameters, fitted model or chunking: "
                    f"{_differences(recorded, spec.run)}); "
                    "remove it, choose another output path, or overwrite it (overwrite=True, "
                    "--overwrite)"
                )
            return store
        with atomic_dir(store.path) as tmp, warnings.catch_warnings():
            # Consolidated metadata (xarray's default) is not yet in the Zarr v3 spec.
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            _template(spec).to_zarr(tmp, mode="w", compute=False)
            markers = zarr.open_group(tmp, mode="r+").require_group(MARKERS.split("/")[0])
            markers.create_array(
                MARKERS.split("/")[1], shape=spec.grid, chunks=(1, 1), dtype="uint8", fill_value=0
            )
            zarr.consolidate_metadata(tmp)
        return store

    def run_record(self) -> dict:
        """The ``hyperunmix`` root attribute; FileFormatError when there is no such store."""
        try:
            return _run_attribute(zarr.open_group(self.path, mode="r"))
        except Exception as exc:
            raise FileFormatError(f"{self.path} is not a hyperunmix map store: {exc}") from exc

    def done(self) -> np.ndarray:
        """(chunk rows, chunk cols) bool: the chunks already written."""
        return np.asarray(zarr.open_array(self.path, path=MARKERS, mode="r")[:]).astype(bool)

    @property
    def complete(self) -> bool:
        return bool(self.run_record().get("complete"))

    def writer(self, layout: MapLayout) -> ChunkWriter:
        return ChunkWriter(str(self.path), layout.names)

    def mark_complete(self) -> None:
        """Record that every chunk is written (checked from the markers)."""
        if not self.done().all():
            raise InputError(f"{self.path}: {int((~self.done()).sum())} chunks are not written")
        group = zarr.open_group(self.path, mode="r+")
        group.attrs[RUN_ATTR] = {**_run_attribute(group), "complete": True}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            zarr.consolidate_metadata(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path)


def _run_attribute(group: zarr.Group) -> dict[str, Any]:
    """The run record of a store's root ``group``."""
    record = group.attrs[RUN_ATTR]
    if not isinstance(record, Mapping):
        raise TypeError(f"its {RUN_ATTR!r} attribute is not a mapping: {record!r}")
    return dict(record)


class ChunkWriter:
    """Writes one chunk's maps into a store, then its completion marker.

    Picklable (the path and map names), so workers write directly; each process opens
    the Zarr arrays once.
    """

    def __init__(self, path: str, names: tuple[str, ...]):
        self.path = path
        self.names = names

    def _arrays(self) -> dict[str, Any]:
        arrays = self.__dict__.get("_open")
        if arrays is None:
            arrays = self._open = {
                name: zarr.open_array(self.path, path=name, mode="r+")
                for name in self.names + (MARKERS,)
            }
        return arrays

    def write(self, chunk: Chunk, maps: dict[str, np.ndarray]) -> None:
        arrays = self._arrays()
        region = (slice(*chunk.rows), slice(*chunk.cols))
        for name in self.names:
            arrays[name][region] = maps[name]
        arrays[MARKERS][chunk.index] = 1

    def __getstate__(self) -> dict:
        return {"path": self.path, "names": self.names}


def open_maps(path: str | Path) -> xr.Dataset:
    """The maps of a store as a lazy Dataset, with the grid mapping decoded so that
    ``.rio.crs`` and ``.rio.transform()`` work on every map."""
    return xr.open_zarr(path, decode_coords="all")


# -- creation ----------------------------------------------------------------------------
def _template(spec: StoreSpec) -> xr.Dataset:
    """The store's Dataset with placeholder maps (never computed: only metadata and
    coordinates are written on creation)."""
    n_endmembers = spec.layout.shapes[0][0]
    variables = {}
    for name, shape in zip(spec.layout.names, spec.layout.shapes):
        placeholder = da.empty(spec.shape + shape, chunks=spec.chunks + shape, dtype=np.float32)
        variables[name] = (spec.layout.dims(name), placeholder)
    coords: dict[str, Any] = {"endmember": np.arange(n_endmembers)}
    if spec.names is not None:
        # A string coordinate would need Zarr v3's still experimental string dtype.
        coords["endmember"] = ("endmember", coords["endmember"], {"names": list(spec.names)})
    if spec.endmembers is not None:
        variables["endmembers"] = (
            ("endmember", "band"),
            np.asarray(spec.endmembers, dtype=np.float64),
        )
        if spec.wavelengths is not None:
            coords["wavelength"] = ("band", np.asarray(spec.wavelengths), {"units": "nm"})
    dataset = xr.Dataset(
        variables, coords=coords, attrs={RUN_ATTR: json.loads(json.dumps(spec.run))}
    )
    if spec.geo is not None:
        dataset = _georeference(dataset, spec.geo, *spec.shape)
    for name, shape in zip(spec.layout.names, spec.layout.shapes):
        # Updated in place: rioxarray keeps each map's grid_mapping in its encoding.
        dataset[name].encoding.update(
            {
                "chunks": spec.chunks + shape,
                "_FillValue": np.float32(np.nan),
                "compressors": MAP_COMPRESSORS,
            }
        )
    return dataset


def _differences(recorded: dict, wanted: dict) -> str:
    keys = [
        key
        for key in wanted
        if key not in ("fingerprint", "complete")
        and recorded.get(key) != json.loads(json.dumps(wanted[key]))
    ]
    return ", ".join(keys) if keys else "the fitted model differs"
