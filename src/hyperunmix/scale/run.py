"""Unmix a scene larger than memory: fit on a sample, unmix chunk by chunk, write as it goes.

:func:`unmix_large` is the whole pipeline, and what ``hyperunmix unmix --out x.zarr`` /
``--chunks`` runs. Each chunk is one task that reads its window, unmixes it, writes its maps
and marks itself done, retrying on failure; a chunk that keeps failing is reported with its
location while the others go on. Tasks run on dask's threaded scheduler, or on any
``dask.distributed`` cluster (the files and the output must then be on storage every
worker sees).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.callbacks import Callback

from .. import __version__
from .._guard import claim, output_lock, recorded_files, writable_directory
from ..base import ProgressCallback, Unmixer
from ..conventions import check_convention
from ..errors import HyperunmixError, InputError
from ..identification import (
    MAX_ANGLE_DEG,
    Identification,
    identify_endmembers,
    reference_library,
)
from ..io import envi
from ..params import summarise
from ..registry import make_method
from ..spectra import SpectralLibrary
from ._windows import select_bands
from .apply import MapLayout, shippable, unmix_block
from .export import export_rasters, hidden_path, output_files, output_format, record_path
from .grid import Chunk, chunk_grid
from .lazy import (
    as_cube,
    cube_chunks,
    cube_fwhm,
    cube_wavelengths,
    drop_bad_bands,
    geo_of,
    good_bands,
)
from .sample import DEFAULT_SAMPLE, fit_on_sample
from .store import ChunkWriter, MapStore, StoreSpec

log = logging.getLogger("hyperunmix")

#: Attempts after the first one for a failing chunk.
DEFAULT_RETRIES = 2
#: Failed chunks listed in the error message (all of them are in the exception).
_LISTED_FAILURES = 10


class ChunkFailures(HyperunmixError):
    """Chunks failed after their retries; the finished ones are kept, and running the same
    command again retries only the missing ones.

    Attributes
    ----------
    failures : list of ChunkOutcome
    """

    def __init__(self, failures: list[ChunkOutcome], out: Path):
        self.failures = failures
        listed = "; ".join(f"{f.chunk.location}: {f.error}" for f in failures[:_LISTED_FAILURES])
        more = len(failures) - _LISTED_FAILURES
        super().__init__(
            f"{len(failures)} chunk(s) failed after their retries, {out} is incomplete "
            f"(rerun the same command to retry them): {listed}"
            + (f"; and {more} more" if more > 0 else "")
        )


@dataclass(frozen=True)
class ChunkOutcome:
    """How one chunk went: ``error`` is None on success; ``attempts`` made."""

    chunk: Chunk
    attempts: int
    error: str | None = None


@dataclass
class ChunkedRun:
    """What :func:`unmix_large` did.

    Attributes
    ----------
    out : Path
        The output (Zarr store, or the abundance raster).
    files : dict of str -> Path
        Every file written, by map name (rasters, and ``endmembers`` CSV and ``run``
        record for raster outputs).
    unmixer : Unmixer
        The fitted model.
    shape : (H, W, L)
    n_chunks, n_skipped : int
        Chunks in the scene, and chunks found already written (resumed run).
    seconds : float
        Wall time of the whole call.
    convention : {"absolute", "shares"}
        Abundance convention of the maps written.
    endmembers : (P, L) array or None
        The endmember spectra written, when the method has them.
    identification : Identification or None
        The library materials the endmembers were named after (``identify``).
    """

    out: Path
    files: dict[str, Path]
    unmixer: Unmixer
    shape: tuple[int, int, int]
    n_chunks: int
    n_skipped: int
    seconds: float
    convention: str = "absolute"
    endmembers: np.ndarray | None = field(default=None, repr=False)
    identification: Identification | None = field(default=None, repr=False)


class _LazyWindow:
    """A window of the cube to be read inside the task that unmixes it, so that a failed
    read is retried and reported with its chunk. A plain object: ``dask.delayed`` leaves
    it alone instead of computing it as a dependency.

    ``array`` is the window of the cube with all its bands and ``bands`` the indices kept
    (None: all), selected after the read: dask fuses a window's rows and columns into the
    file reader's calls, so that only the window is read, but not through a selection of
    bands by index, after which it reads every chunk the window touches whole (nine for
    a chunk and its halo).
    """

    def __init__(self, array: da.Array, bands: np.ndarray | None = None):
        # One block, culled to this window's reads; computing a Delayed of one block
        # returns it as it is, where computing an Array copies it once more.
        (self.block,) = array.rechunk(array.shape).to_delayed(optimize_graph=True).ravel()
        self.bands = bands

    def read(self) -> np.ndarray:
        block = self.block.compute(scheduler="sync")
        return block if self.bands is None else select_bands(block, self.bands)


def run_chunk(
    chunk: Chunk,
    window: _LazyWindow,
    core: tuple[slice, slice],
    unmixer: Unmixer,
    layout: MapLayout,
    writer: ChunkWriter,
    retries: int,
    task_threads: int | None = None,
) -> ChunkOutcome:
    """Read, unmix and write one chunk, with up to ``retries`` more attempts, on this
    thread's share of the cores among ``task_threads`` (default: the scheduler's)."""
    error = None
    for attempt in range(1, retries + 2):
        try:
            packed = unmix_block(window.read(), unmixer, layout, task_threads)[core]
            writer.write(chunk, layout.unpack(packed))
            return ChunkOutcome(chunk, attempt)
        except Exception as exc:  # anything: the run goes on and reports it with the chunk
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "%s failed (attempt %d of %d): %s", chunk.location, attempt, retries + 1, error
            )
    return ChunkOutcome(chunk, retries + 1, error)


def unmix_large(
    source: Any,
    method: str | Unmixer,
    out: str | os.PathLike,
    *,
    params: dict | None = None,
    chunks: int | tuple[int, int] | None = None,
    client: Any = None,
    num_workers: int | None = None,
    fit_sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    outputs: Sequence[str] | None = None,
    keep_bad_bands: bool = False,
    retries: int = DEFAULT_RETRIES,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    open_options: dict | None = None,
    convention: str | None = None,
    identify: SpectralLibrary | str | os.PathLike | None = None,
    identify_max_angle: float = MAX_ANGLE_DEG,
    data_dir: str | os.PathLike | None = None,
) -> ChunkedRun:
    """Unmix a scene of any size chunk by chunk, writing the maps as chunks finish.

    Parameters
    ----------
    source : path, Scene, array or DataArray
        ENVI, GeoTIFF, Zarr or NetCDF file (opened lazily), or an in-memory cube.
    method : str or Unmixer
        A registry name (built with ``params``), an unfitted estimator (fitted on a sample
        of the scene) or a fitted one (used as it is).
    out : path
        ``.zarr``: a Zarr store (resumable while it is written). ``.tif`` / ``.hdr`` /
        ``.img``: georeferenced rasters, one per map (``<stem>_<map>.tif`` for the extras)
        plus ``<stem>_endmembers.csv`` and the run record ``<stem>_run.json``, made from a
        hidden Zarr store beside them (:mod:`hyperunmix.scale.export`). One run at a time
        writes an output (a lock file ``.<name>.lock`` beside it); the input is never
        replaced.
    params : dict, optional
        Hyper-parameters of ``method`` when it is a name.
    chunks : int or (int, int), optional
        Pixels per chunk side; default: about 16 MiB of input per chunk
        (:func:`~hyperunmix.scale.chunk_shape`). Peak memory is about
        ``workers x 6 x chunk bytes`` plus the model, more for the deep methods.
    client : dask.distributed.Client or str, optional
        A client, or a scheduler address (``tcp://host:8786``) to connect to; default:
        dask's threaded scheduler in this process.
    num_workers : int, optional
        Threads of the threaded scheduler (default: dask's ``num_workers`` setting, else
        one per core). Each chunk task runs torch (deep methods) on its thread's share of
        the cores (:mod:`hyperunmix.scale.threads`), so that the workers do not
        oversubscribe them; NumPy's BLAS threads are its own: set
        ``OPENBLAS_NUM_THREADS=1`` / ``OMP_NUM_THREADS=1`` for those, as dask.distributed
        does for its workers.
    fit_sample : int
        Pixels sampled (stratified in space) to fit an unfitted model on.
    seed : int
        Seed of the sample.
    outputs : sequence of str, optional
        Maps to write (default: abundances and the method's other 2-D / 3-D maps).
    keep_bad_bands : bool
        Unmix the bands flagged bad too (dropped by default, as ``hyperunmix unmix``).
    retries : int
        Attempts after the first for a failing chunk.
    overwrite : bool
        Replace an output holding another run, or existing files no hyperunmix run wrote
        (never needed to resume or repeat the same run). Without it such an output is
        refused before the fit.
    progress : callable, optional
        ``progress(stage, done, total, info)``: stages ``"sample"``, the model's own while
        it fits (``"epoch"`` for the deep methods), ``"unmix"`` (chunks) and ``"export"``
        (map files).
    open_options : dict, optional
        Options of :func:`~hyperunmix.scale.open_cube` (``key``, ``scale``) for a path.
    convention : {"absolute", "shares"}, optional
        Abundance convention of the maps (:mod:`hyperunmix.conventions`); default: the
        method's own. Part of the run's identity: a resumed run keeps it.
    identify : SpectralLibrary, path or str, optional
        Name the endmembers after the library materials they match (as ``hyperunmix unmix
        --identify``, :func:`hyperunmix.identification.identify_endmembers`): a library, a
        library file or folder (read on the scene's bands), or a built-in library name
        (``usgs``, ``samson``, ``jasper_ridge``, read from ``data_dir``). The maps' bands,
        the endmember CSV's columns and the ``endmember`` coordinate's ``names`` take the
        names; the run record holds the matches and their angles.
    identify_max_angle : float
        Largest spectral angle (degrees) at which ``identify`` names an endmember.
    data_dir : path, optional
        Where a built-in ``identify`` library is read from (default: as
        :func:`hyperunmix.datasets.load_library`).

    Returns
    -------
    ChunkedRun

    Raises
    ------
    ChunkFailures
        When chunks still fail after their retries; the output is left incomplete and
        the same call resumes it.
    InputError
        When ``out`` would replace the input, holds files of another run or none (unless
        ``overwrite``), cannot be written, or is being written by another run.
    """
    start = time.perf_counter()
    out = Path(out)
    fmt = output_format(out)
    report = progress or (lambda *args: None)
    if int(retries) < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    if convention is not None:
        check_convention(convention)
    all_bands = as_cube(source, chunks=chunks, **(open_options or {}))
    cube = all_bands if keep_bad_bands else drop_bad_bands(all_bands)
    bands = None if keep_bad_bands else good_bands(all_bands)
    library = None
    if identify is not None:  # read before the fit: a bad library fails now
        library = (
            identify
            if isinstance(identify, SpectralLibrary)
            else reference_library(
                identify, data_dir, wavelengths=cube_wavelengths(cube), fwhm=cube_fwhm(cube)
            )
        )
    store_path = out if fmt == "zarr" else hidden_path(out, fmt, "chunks.zarr")
    writable_directory(out.parent)
    with output_lock(hidden_path(out, fmt, "lock"), out):
        # Before the fit, what can be known without it: the abundance files. The other
        # maps and the run's fingerprint come with the fitted model, checked before the
        # first write.
        _claim_outputs(out, fmt, store_path, cube, None, overwrite)
        with _connected(client) as dask_client:
            scheduler = dask_client if dask_client is not None else "threads"
            unmixer = _fitted_unmixer(method, params, cube, fit_sample, seed, scheduler, progress)
            maps_convention = convention or unmixer.convention
            layout = MapLayout.probe(unmixer, cube, outputs, maps_convention)
            identification = None
            if library is not None:
                identification = identify_endmembers(
                    unmixer.endmembers_out(),
                    library,
                    cube_wavelengths(cube),
                    fwhm=cube_fwhm(cube),
                    max_angle_deg=identify_max_angle,
                    library_name=None if isinstance(identify, SpectralLibrary) else str(identify),
                    method=unmixer.name,
                )
            spec = _store_spec(cube, unmixer, layout, identification)
            _claim_outputs(out, fmt, store_path, cube, spec, overwrite)
            store = MapStore.prepare(store_path, spec, overwrite=overwrite)
            done = store.done()
            pending = [
                chunk for chunk in chunk_grid(*cube_chunks(cube)[:2]) if not done[chunk.index]
            ]
            n_chunks, n_skipped = done.size, int(done.sum())
            report("unmix", n_skipped, n_chunks, {"skipped": n_skipped})
            failures = _run_chunks(
                pending,
                cube,
                all_bands.data,
                bands,
                unmixer,
                layout,
                store.writer(layout),
                retries,
                dask_client,
                num_workers,
                lambda finished, failed: report(
                    "unmix", n_skipped + finished, n_chunks, {"failed": failed}
                ),
            )
        if failures:
            raise ChunkFailures(failures, out)
        store.mark_complete()
        files = {name: store_path for name in layout.names}
        if fmt != "zarr":
            report("export", 0, 1, {})
            files = export_rasters(store_path, out, fmt, spec)
            store.remove()
            report("export", 1, 1, {})
    n_rows, n_cols, n_bands = cube.shape
    return ChunkedRun(
        out=out,
        files=files,
        unmixer=unmixer,
        shape=(n_rows, n_cols, n_bands),
        n_chunks=n_chunks,
        n_skipped=n_skipped,
        seconds=time.perf_counter() - start,
        convention=maps_convention,
        endmembers=spec.endmembers,
        identification=identification,
    )


# -- steps -------------------------------------------------------------------------------
def _claim_outputs(
    out: Path,
    fmt: str,
    store_path: Path,
    cube: xr.DataArray,
    spec: StoreSpec | None,
    overwrite: bool,
) -> None:
    """Refuse an output that would replace the input (ever) or an existing file that is
    not this run's own (unless ``overwrite``): one the run record of a finished identical
    export lists, or any while an unfinished run's store is there (:meth:`MapStore.prepare`
    checks that it is this run's). Before the fit (``spec`` None) the abundance files only
    are known, and any earlier run's files may turn out to be this run's."""
    if fmt == "zarr":  # the store is the output, and MapStore.prepare checks whose it is
        planned = owned = {store_path}
    else:
        names = ("abundances",) if spec is None else spec.layout.names
        planned = output_files(out, names, spec is not None and spec.endmembers is not None)
        planned.add(store_path)
        owned = (
            planned
            if store_path.exists()
            else recorded_files(record_path(out), None if spec is None else spec.run["fingerprint"])
        )
    claim(
        planned,
        owned,
        overwrite=overwrite,
        inputs=_source_files(cube),
        rule=f"not listed as this run's output in {record_path(out).name}",
    )


def _source_files(cube: xr.DataArray) -> list[Path]:
    """The files the cube is read from: its path, and an ENVI header's data file."""
    if "path" not in cube.attrs:
        return []
    path = Path(cube.attrs["path"])
    return list(envi._header_and_data(path)) if cube.attrs.get("format") == "envi" else [path]


@contextlib.contextmanager
def _connected(client: Any) -> Iterator[Any]:
    """The distributed client to use: ``client`` itself, one connected to an address
    (closed afterwards), or None for the threaded scheduler."""
    if client is None or not isinstance(client, (str, os.PathLike)):
        yield client
        return
    from distributed import Client

    try:
        connected = Client(str(client), timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {client}: {exc}") from exc
    with connected:
        yield connected


def _fitted_unmixer(
    method: str | Unmixer,
    params: dict | None,
    cube: xr.DataArray,
    fit_sample: int,
    seed: int,
    scheduler: Any,
    progress: ProgressCallback | None,
) -> Unmixer:
    if isinstance(method, str):
        unmixer = make_method(method, **(params or {}))
    elif isinstance(method, Unmixer):
        if params:
            raise InputError("params= applies to a method given by name, not to an estimator")
        unmixer = method
    else:
        raise InputError(f"method must be a name or an Unmixer, got {type(method).__name__}")
    if hasattr(unmixer, "n_bands_"):
        unmixer._check_bands(cube.sizes["band"])
        return unmixer
    if progress is not None:
        progress("sample", 0, 1, {"pixels": fit_sample})
    unmixer.set_progress(progress)
    try:
        fit_on_sample(unmixer, cube, fit_sample, seed=seed, scheduler=scheduler)
    finally:
        unmixer.set_progress(None)
    if progress is not None:
        progress("sample", 1, 1, {"pixels": fit_sample})
    return unmixer


def _store_spec(
    cube: xr.DataArray,
    unmixer: Unmixer,
    layout: MapLayout,
    identification: Identification | None = None,
) -> StoreSpec:
    """The store of this run, with the run record and its fingerprint (which covers the
    fitted model itself, so how it was fitted needs no entry, and the endmembers' names)."""
    row_chunks, col_chunks = cube_chunks(cube)[:2]
    chunks = (row_chunks[0], col_chunks[0])
    n_rows, n_cols, _ = cube.shape
    record: dict[str, Any] = {
        "source": _source_identity(cube),
        "shape": list(cube.shape),
        "chunks": list(chunks),
        "method": unmixer.name,
        "params": summarise(unmixer.get_params()),
        "model": fitted_state_digest(unmixer),
        "outputs": {name: list(shape) for name, shape in zip(layout.names, layout.shapes)},
        "convention": layout.convention,
    }
    if identification is not None:
        record["identification"] = identification.record()
    record["fingerprint"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    record.update(complete=False, hyperunmix_version=__version__)
    return StoreSpec(
        shape=(n_rows, n_cols),
        chunks=chunks,
        layout=layout,
        run=record,
        endmembers=unmixer.endmembers_out(),
        wavelengths=cube_wavelengths(cube),
        geo=geo_of(cube),
        names=None if identification is None else list(identification.labels),
    )


def _source_identity(cube: xr.DataArray) -> dict:
    """The source's path, and dask's token of the cube, which follows the file (path,
    size, modification time), the bands selected and the chunking, or the content of an
    in-memory array; the same in every process."""
    identity = {"content": cube.data.name}
    if "path" in cube.attrs:
        identity["path"] = str(Path(cube.attrs["path"]).resolve())
    return identity


def fitted_state_digest(unmixer: Unmixer) -> str:
    """SHA-256 of a fitted model's learned state: the arrays, tensors, network weights and
    scalars in its attributes ending in ``_`` (timings excluded). Two fits that give the
    same maps give the same digest; a resumed run checks it before adding chunks."""
    digest = hashlib.sha256()
    for key in sorted(vars(unmixer)):
        if not key.endswith("_") or key.startswith("_") or key.endswith("seconds_"):
            continue
        value = getattr(unmixer, key)
        if hasattr(value, "state_dict"):  # a torch module: its weights and buffers
            value = value.state_dict()
        items = value.items() if isinstance(value, dict) else [("", value)]
        for name, item in items:
            if hasattr(item, "detach"):  # a torch tensor
                item = item.detach().cpu().numpy()
            if isinstance(item, np.ndarray):
                digest.update(f"{key}.{name}:{item.dtype}{item.shape}".encode())
                digest.update(np.ascontiguousarray(item).tobytes())
            elif isinstance(item, (bool, int, float, str, np.generic)):
                digest.update(f"{key}.{name}={item!r}".encode())
    return digest.hexdigest()


# -- execution ---------------------------------------------------------------------------
def _run_chunks(
    pending: list[Chunk],
    cube: xr.DataArray,
    source: da.Array,
    bands: np.ndarray | None,
    unmixer: Unmixer,
    layout: MapLayout,
    writer: ChunkWriter,
    retries: int,
    client: Any,
    num_workers: int | None,
    on_progress,
) -> list[ChunkOutcome]:
    """Run the chunk tasks of ``cube``, whose windows are read from ``source`` (the cube
    with all its bands) keeping ``bands`` (see :class:`_LazyWindow`); returns the failed
    outcomes. ``on_progress(finished, failed)`` is called in this thread after each chunk."""
    # Shipped once, not once per task.
    model = dask.delayed(shippable(unmixer, layout.names), pure=True)
    context = int(unmixer.spatial_context)
    token = dask.base.tokenize(writer.path, cube.data.name)
    n_rows, n_cols, _ = cube.shape
    tasks = {}
    for chunk in pending:
        read, core = chunk.window(context, (n_rows, n_cols))
        key = f"unmix-chunk-{token}-{chunk.index[0]}-{chunk.index[1]}"
        tasks[key] = dask.delayed(run_chunk, pure=False)(
            chunk,
            _LazyWindow(source[read], bands),
            core,
            model,
            layout,
            writer,
            retries,
            # The threaded scheduler's threads, known here; a distributed worker's, there.
            None if client is not None else num_workers,
            dask_key_name=key,
        )
    failures: list[ChunkOutcome] = []
    n_finished = 0

    def finished(outcome: ChunkOutcome) -> None:
        nonlocal n_finished
        if outcome.error is not None:
            failures.append(outcome)
        n_finished += 1
        on_progress(n_finished, len(failures))

    if client is None:
        with _ChunkCallback(set(tasks), finished):
            dask.compute(list(tasks.values()), scheduler="threads", num_workers=num_workers)
    else:
        _run_distributed(client, tasks, pending, finished)
    return sorted(failures, key=lambda outcome: outcome.chunk.index)


class _ChunkCallback(Callback):
    """Reports each finished chunk task of the threaded scheduler (called in the thread
    that called ``dask.compute``)."""

    def __init__(self, keys: set[str], on_outcome):
        super().__init__()
        self.keys = keys
        self.on_outcome = on_outcome

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if key in self.keys:
            self.on_outcome(result)


def _run_distributed(client: Any, tasks: dict, pending: list[Chunk], on_outcome) -> None:
    """Submit the chunk tasks to a distributed cluster and report them as they finish; a
    task lost with its worker more often than the cluster allows counts as failed."""
    from distributed import as_completed

    futures = client.compute(list(tasks.values()))
    chunk_of = {future.key: chunk for future, chunk in zip(futures, pending)}
    for future in as_completed(futures):
        try:
            outcome = future.result()
        except Exception as exc:
            outcome = ChunkOutcome(chunk_of[future.key], 0, f"{type(exc).__name__}: {exc}")
        on_outcome(outcome)
        future.release()
