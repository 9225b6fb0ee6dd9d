"""Scenes larger than memory, and larger than one machine: tiled unmixing on Dask.

>>> from hyperunmix import scale
>>> run = scale.unmix_large("flightline.hdr", "fcls", "maps.zarr",           # doctest: +SKIP
...                         params={"n_endmembers": 6, "endmembers": "vca"})
>>> cube = scale.open_cube("flightline.hdr")      # lazy (y, x, band)       # doctest: +SKIP
>>> maps = scale.unmix_lazy(model, cube)           # lazy Dataset            # doctest: +SKIP

- :func:`open_cube` / :func:`as_cube`: ENVI, GeoTIFF, Zarr, NetCDF or in-memory cubes as
  lazy, chunked DataArrays (band axis whole), in physical units with NaN at invalid pixels.
- :func:`sample_scene` / :func:`fit_on_sample`: a seeded sample stratified in space, to fit
  endmember extraction or a deep model on a scene that does not fit in memory.
- :func:`unmix_lazy`: a fitted model applied chunk by chunk as a lazy computation.
- :func:`unmix_large`: the whole run, resumable, with progress over chunks, on the threaded
  scheduler or a ``dask.distributed`` cluster; output Zarr, GeoTIFF or ENVI.
"""

from .apply import MapLayout, unmix_lazy
from .lazy import as_cube, chunk_shape, drop_bad_bands, geo_of, open_cube
from .run import ChunkedRun, ChunkFailures, unmix_large
from .sample import fit_on_sample, sample_scene
from .store import open_maps

__all__ = [
    "ChunkFailures",
    "ChunkedRun",
    "MapLayout",
    "as_cube",
    "chunk_shape",
    "drop_bad_bands",
    "fit_on_sample",
    "geo_of",
    "open_cube",
    "open_maps",
    "sample_scene",
    "unmix_large",
    "unmix_lazy",
]
