"""Write a :class:`~hyperunmix.base.Result` to a directory: maps, spectra, metrics, figures.

Layout of the directory (every file written atomically, so an interrupted run never leaves a
half-written file under its final name)::

    abundances.<tif|hdr|nc|npz>  abundance maps in the input's format family, georeferenced
    abundances.npy               (H, W, P) float32, the scene's pixel order, always
    endmembers.csv               (P, L) spectra with wavelengths, when the method has them
    <extra>.<ext>                each extra map (uncertainty, nonlinearity, ...);
                                 4-D ones (pixel_endmembers (H, W, P, L)) as <extra>.npy
    metrics.json                 evaluate(result, truth), when a truth is given
    abundances.png, endmembers.png   figures (truth beside estimate, in matched order)
    run.json                     method, parameters, abundance convention, timings, versions,
                                 files (every file above), complete (false while writing),
                                 identification (the library matches, when identified)

Maps keep the estimator's band order; with a truth, each band is named after the true
material it was matched to, and the figures are drawn in truth order. With an
identification (:func:`hyperunmix.identification.identify_result`), the bands, the CSV columns and
the figures are named after the library materials matched instead.

A directory is written by one run at a time (a lock file ``.hyperunmix.lock`` in it while
the files are written). Rewriting it replaces the files its run.json lists and removes
those the new run does not write, so that no map of an earlier run is left beside the new
ones; any other file the new run would replace makes it refuse, unless ``overwrite``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import io as hio
from ._atomic import atomic_path, write_text
from ._guard import (
    claim,
    output_lock,
    recorded_files,
    remove_stale,
    with_companions,
    writable_directory,
)
from ._json import json_safe
from .conventions import MEANINGS
from .errors import InputError
from .io.formats import FORMATS
from .metrics import evaluate
from .plot import plot_abundances, plot_endmembers, save_figure
from .scene import default_names

if TYPE_CHECKING:
    from .base import Result
    from .identification import Identification
    from .scene import Scene, Truth

#: Output format -> the :func:`hyperunmix.io.write_maps` family that writes it, whose
#: default suffix names the map files (an ENVI header gets its .img data file beside).
_IO_FAMILIES = {"gtiff": "gtiff", "envi": "envi", "netcdf": "netcdf", "npz": "npy"}
#: The run record, written first as incomplete and last as complete.
RUN_FILE = "run.json"
#: Held in the directory while a run writes it.
LOCK_FILE = ".hyperunmix.lock"


def map_format(source_format: str | None, fmt: str | None = None) -> str:
    """The format family maps are written in: ``fmt`` when given, else the source's family
    (GeoTIFF, ENVI, NetCDF), GeoTIFF for a sensor product (EMIT, PRISMA, ...: read, not
    written), else ``"npz"`` (for .mat, .npy and unknown sources)."""
    if fmt is not None:
        key = fmt.lower().lstrip(".")
        if key not in _IO_FAMILIES:
            raise InputError(
                f"unknown output format {fmt!r}; choose one of {', '.join(_IO_FAMILIES)}"
            )
        return key
    if source_format in _IO_FAMILIES:
        return source_format
    product = FORMATS.get(source_format or "")
    return "gtiff" if product is not None and product.refines is not None else "npz"


def save_result(
    result: Result,
    directory: str | os.PathLike,
    *,
    truth: Truth | None = None,
    scene: Scene | None = None,
    fmt: str | None = None,
    figures: bool = True,
    overwrite: bool = False,
    identification: Identification | None = None,
) -> dict[str, Path]:
    """Write ``result`` to ``directory`` (created if needed).

    Files an earlier run wrote there (those its run.json lists) are replaced, or removed
    when this run does not write them; see the module documentation.

    Parameters
    ----------
    result : Result
    directory : path
    truth : Truth, optional
        Adds ``metrics.json`` (from :func:`hyperunmix.metrics.evaluate`), material names for
        the bands, and the truth beside the estimate in the figures.
    scene : Scene, optional
        The scene unmixed; adds the reconstruction RMSE to the metrics.
    fmt : {"gtiff", "envi", "netcdf", "npz"}, optional
        Format of the map files; default: the family of ``result.source_format``.
    figures : bool
        Write the PNG figures.
    overwrite : bool
        Replace existing files that no run.json in ``directory`` lists, instead of refusing.
    identification : Identification, optional
        Names the bands after its labels (the matched materials, over the truth's names)
        and goes into run.json.

    Returns
    -------
    dict of str -> Path
        What was written, by role (``"abundances"``, ``"abundances_npy"``, ``"endmembers"``,
        ``"metrics"``, ``"run"``, ``"figure_abundances"``, ..., and one key per extra map).

    Raises
    ------
    InputError
        When ``directory`` cannot be written, holds a file this run would replace that no
        run.json lists (unless ``overwrite``), or is being written by another run.
    """
    directory = writable_directory(directory)
    family = map_format(result.source_format, fmt)

    metrics = None if truth is None else evaluate(result, truth, scene)
    order = None if metrics is None else metrics["matching"]["permutation"]
    names = _band_names(result, metrics) if identification is None else identification.labels
    paths = _output_paths(directory, result, family, metrics is not None, figures)
    record = directory / RUN_FILE
    files = sorted(path.name for path in with_companions(paths.values()))
    planned = [*paths.values(), record]

    with output_lock(directory / LOCK_FILE, directory):
        previous = recorded_files(record)
        claim(planned, previous, overwrite=overwrite, rule=f"no {RUN_FILE} in {directory} lists it")
        remove_stale(previous, planned)
        # Incomplete until the last file is written: a directory left by an interrupted
        # write says so, and still lists every file the next run may replace.
        _write_json(record, _run_record(result, family, files, identification, complete=False))
        _write_maps(paths["abundances"], result.abundances, result, names, family)
        _write_npy(paths["abundances_npy"], result.abundances.astype(np.float32, copy=False))
        if "endmembers" in paths:
            hio.write_endmembers_csv(
                paths["endmembers"], result.endmembers, wavelengths=result.wavelengths, names=names
            )
        for key, values in result.extras.items():
            _write_extra(paths[key], key, np.asarray(values), result, names, family)
        if metrics is not None:
            _write_json(paths["metrics"], metrics)
        if figures:
            _write_figures(paths, result, truth, order, names)
        _write_json(record, _run_record(result, family, files, identification, complete=True))
    return {**paths, "run": record}


def _output_paths(
    directory: Path, result: Result, family: str, with_metrics: bool, figures: bool
) -> dict[str, Path]:
    """Every file :func:`save_result` writes but run.json, by role, known before any is
    written (an ENVI map is named by its header; its data file goes beside)."""
    suffix = FORMATS[_IO_FAMILIES[family]].default_suffix
    paths = {
        "abundances": directory / f"abundances{suffix}",
        "abundances_npy": directory / "abundances.npy",
    }
    if result.endmembers is not None:
        paths["endmembers"] = directory / "endmembers.csv"
    for key, values in result.extras.items():
        # (H, W) and (H, W, K) maps in the map format, anything else as .npy
        paths[key] = directory / f"{key}{suffix if np.ndim(values) in (2, 3) else '.npy'}"
    if with_metrics:
        paths["metrics"] = directory / "metrics.json"
    if figures:
        paths["figure_abundances"] = directory / "abundances.png"
        if result.endmembers is not None:
            paths["figure_endmembers"] = directory / "endmembers.png"
    return paths


def _band_names(result: Result, metrics: dict | None) -> list[str] | None:
    """Names of the result's bands, in its own order: the true material each band was
    matched to, else the result's names, else ``endmember_1`` ..."""
    if metrics is None:
        return result.names or default_names(result.n_endmembers)
    names = [""] * result.n_endmembers
    for true_index, estimated_index in enumerate(metrics["matching"]["permutation"]):
        names[estimated_index] = metrics["names"][true_index]
    return names


def _write_maps(
    path: Path, image: np.ndarray, result: Result, band_names: list[str] | None, family: str
) -> None:
    """Maps (H, W, K) via :func:`hyperunmix.io.write_maps`, georeferenced like the input."""
    hio.write_maps(path, image, geo=result.geo, band_names=band_names, fmt=_IO_FAMILIES[family])


def _write_extra(
    path: Path, key: str, values: np.ndarray, result: Result, names: list[str] | None, family: str
) -> None:
    """One extra map to its path from :func:`_output_paths`: an array of another rank
    as .npy, (H, W) and (H, W, K) maps as maps."""
    if path.suffix == ".npy":
        _write_npy(path, values)
    elif values.ndim == 2:
        _write_maps(path, values[..., None], result, [key], family)
    else:
        band_names = names if values.shape[2] == result.n_endmembers else None
        _write_maps(path, values, result, band_names, family)


def _write_npy(path: Path, values: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, values)


def _write_json(path: Path, record: dict) -> None:
    write_text(path, json.dumps(json_safe(record), indent=2, allow_nan=False, default=str) + "\n")


def _write_figures(
    paths: dict[str, Path],
    result: Result,
    truth: Truth | None,
    order: list[int] | None,
    names: list[str] | None,
) -> None:
    """Abundance maps and endmember spectra (to ``paths["figure_abundances"]`` and
    ``paths["figure_endmembers"]``), in truth order beside the truth when given."""
    abundances, endmembers = result.abundances, result.endmembers
    true_abundances = true_endmembers = None
    rescale_truth = False
    if order is not None and truth is not None:  # matched to the truth
        abundances = abundances[..., order]
        endmembers = None if endmembers is None else endmembers[order]
        names = None if names is None else [names[j] for j in order]
        true_abundances, true_endmembers = truth.abundances, truth.endmembers
        rescale_truth = truth.endmember_scale == "shape"
    title = f"{result.method} on {result.scene_name}"
    save_figure(
        plot_abundances(abundances, names, truth=true_abundances, title=title),
        paths["figure_abundances"],
    )
    if endmembers is not None:
        if true_endmembers is not None and true_endmembers.shape != endmembers.shape:
            true_endmembers = None  # truth on other bands (bad bands dropped): no overlay
        save_figure(
            plot_endmembers(
                endmembers,
                result.wavelengths,
                names,
                truth=true_endmembers,
                rescale_truth=rescale_truth,
                title=title,
            ),
            paths["figure_endmembers"],
        )


def _run_record(
    result: Result,
    family: str,
    files: list[str],
    identification: Identification | None,
    complete: bool,
) -> dict[str, Any]:
    from . import __version__  # at call time: the package may still be initialising at import

    extra = {} if identification is None else {"identification": identification.record()}
    return {
        "method": result.method,
        "params": result.params,
        "convention": result.convention,
        "convention_meaning": MEANINGS[result.convention],
        "scene": result.scene_name,
        "shape": list(result.abundances.shape),
        "n_bands": None if result.endmembers is None else result.endmembers.shape[1],
        "source_format": result.source_format,
        "map_format": family,
        "fit_seconds": result.fit_seconds,
        "unmix_seconds": result.unmix_seconds,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "hyperunmix": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "files": files,
        **extra,
        "complete": complete,
    }
