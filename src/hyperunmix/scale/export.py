"""GeoTIFF and ENVI outputs of a chunked run: a complete map store copied out window by
window, georeferenced, each file written under a temporary name and renamed when whole.

Files of an output ``x.tif`` (or ``x.hdr`` / ``x.img``: an ENVI header and data pair each)::

    x.tif                 abundances
    x_<map>.tif           each other map
    x_endmembers.csv      the endmember spectra, when the method has them
    x_run.json            the run record (source, method, parameters, fingerprint of the run,
                          the files above), written last: a finished export
    .x.tif.chunks.zarr    the map store while the run is unfinished, removed after the export
    .x.tif.lock           while a run writes the output

The run record and the store tell a rerun which existing files are its own to replace:
those of a finished identical run (same fingerprint in ``x_run.json``) or of an
unfinished one (its store, checked by :meth:`MapStore.prepare`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
import zarr
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from .._atomic import atomic_path, write_text
from .._guard import recorded_files, remove_stale, with_companions
from ..errors import InputError
from ..io import envi, write_endmembers_csv
from ..io._raster import to_affine, to_crs
from ..scene import GeoInfo
from .store import StoreSpec

#: Output suffix -> format of a chunked run's output.
OUTPUT_FORMATS = {
    ".zarr": "zarr",
    ".tif": "gtiff",
    ".tiff": "gtiff",
    ".hdr": "envi",
    ".img": "envi",
}
#: GeoTIFF tile side (GDAL wants a multiple of 16).
_TILE = 256
_GTIFF_OPTIONS = {
    "tiled": True,
    "blockxsize": _TILE,
    "blockysize": _TILE,
    "compress": "deflate",
    "predictor": 3,
    "BIGTIFF": "IF_SAFER",
    "nodata": np.nan,
}


def output_format(path: str | Path) -> str:
    """``"zarr"``, ``"gtiff"`` or ``"envi"``, from the output path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(
            f"the output of a chunked run is a Zarr store (.zarr), a GeoTIFF "
            f"(.tif) or an ENVI image (.hdr / .img); got {path}"
        )
    return OUTPUT_FORMATS[suffix]


def map_paths(out: Path, names: Sequence[str]) -> dict[str, Path]:
    """Output file of each map: ``out`` for the abundances, ``<stem>_<map><suffix>`` for
    the others."""
    return {
        name: out if name == "abundances" else out.with_name(f"{out.stem}_{name}{out.suffix}")
        for name in names
    }


def endmembers_path(out: Path) -> Path:
    """The endmember spectra of a raster output, ``<stem>_endmembers.csv``."""
    return out.with_name(f"{out.stem}_endmembers.csv")


def record_path(out: Path) -> Path:
    """The run record of a raster output, ``<stem>_run.json``, written when its export is
    finished."""
    return out.with_name(f"{out.stem}_run.json")


def hidden_path(out: Path, fmt: str, what: str) -> Path:
    """``.<name>.<what>`` beside ``out``: its chunk store, its lock. ``x.hdr`` and ``x.img``
    name one ENVI output, so they share them."""
    if fmt == "envi":
        out = out.with_suffix(".hdr")
    return out.with_name(f".{out.name}.{what}")


def output_files(out: Path, names: Sequence[str], endmembers: bool) -> set[Path]:
    """Every file an export of the maps ``names`` writes (an ENVI pair for each), with the
    endmember CSV when there are ``endmembers``, and the run record."""
    files = [*map_paths(out, names).values(), record_path(out)]
    if endmembers:
        files.append(endmembers_path(out))
    return with_companions(files)


def band_names(
    name: str, shape: tuple[int, ...], endmember_names: Sequence[str] | None = None
) -> list[str]:
    """Band descriptions of a map with per-pixel ``shape`` (at most 1-D): the
    ``endmember_names`` when it has one band per endmember, as the in-memory outputs name
    them, else ``<name> k``."""
    if len(shape) > 1:
        raise InputError(
            f"map {name!r} has per-pixel shape {shape}: a raster holds maps of "
            "at most one band axis; write it to a Zarr store (.zarr)"
        )
    if not shape:
        return [name]
    if endmember_names is not None and shape[0] == len(endmember_names):
        return list(endmember_names)
    return [f"{name} {k + 1}" for k in range(shape[0])]


def export_rasters(store_path: Path, out: Path, fmt: str, spec: StoreSpec) -> dict[str, Path]:
    """Copy every map of the complete store of the run ``spec`` to a raster file, and its
    endmembers to ``<stem>_endmembers.csv`` (bands and columns named after
    ``spec.names`` when set); then remove the files of an earlier export to ``out`` that
    this one did not write, and write the run record with the list of files
    (``<stem>_run.json``). Returns the files written, by map name, and ``"run"``."""
    layout = spec.layout
    written = {}
    for name, shape in zip(layout.names, layout.shapes):
        array = zarr.open_array(store_path, path=name, mode="r")
        target = map_paths(out, layout.names)[name]
        with _raster_target(target, fmt) as tmp:
            _copy_by_rows(array, tmp, fmt, spec.geo, band_names(name, shape, spec.names))
        written[name] = target
    if spec.endmembers is not None:
        written["endmembers"] = write_endmembers_csv(
            endmembers_path(out), spec.endmembers, spec.wavelengths, names=spec.names
        )
    record = record_path(out)
    files = output_files(out, layout.names, spec.endmembers is not None)
    remove_stale(recorded_files(record), files)
    listed = sorted(path.name for path in files - {record})
    written["run"] = write_text(
        record, json.dumps({**spec.run, "complete": True, "files": listed}, indent=2) + "\n"
    )
    return written


@contextlib.contextmanager
def _raster_target(target: Path, fmt: str) -> Iterator[Path]:
    """A temporary data file that becomes ``target`` when the block succeeds; for ENVI,
    the header GDAL writes beside it becomes ``target``'s header, renamed after the data
    so that a header never describes missing data."""
    if fmt == "gtiff":
        with atomic_path(target) as tmp:
            yield tmp
        return
    data_path, header_path = envi.output_paths(target)
    with atomic_path(header_path) as tmp_header, atomic_path(data_path) as tmp_data:
        gdal_header = tmp_data.with_suffix(".hdr")
        try:
            yield tmp_data
            # GDAL's header names the (temporary) data file in its description.
            tmp_header.write_text(gdal_header.read_text().replace(tmp_data.name, data_path.name))
        finally:
            gdal_header.unlink(missing_ok=True)


def _copy_by_rows(
    array: zarr.Array, path: Path, fmt: str, geo: GeoInfo | None, names: list[str]
) -> None:
    """Write the (H, W[, K]) Zarr ``array`` to a float32 raster, one row of chunks at a time."""
    n_rows, n_cols = array.shape[:2]
    options = dict(_GTIFF_OPTIONS) if fmt == "gtiff" else {}
    if geo is not None:
        options.update(crs=to_crs(geo), transform=to_affine(geo))
    step = array.chunks[0]
    with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff" if fmt == "gtiff" else "ENVI",
            width=n_cols,
            height=n_rows,
            count=len(names),
            dtype="float32",
            **options,
        ) as dataset:
            for top in range(0, n_rows, step):
                rows = np.asarray(array[top : top + step]).reshape(-1, n_cols, len(names))
                dataset.write(np.moveaxis(rows, 2, 0), window=Window(0, top, n_cols, rows.shape[0]))
            for band, name in enumerate(names, start=1):
                dataset.set_band_description(band, name)
