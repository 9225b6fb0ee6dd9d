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
                                 files

Maps keep the estimator's band order; with a truth, each band is named after the true
material it was matched to, and the figures are drawn in truth order.
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
from .conventions import MEANINGS
from .errors import InputError
from .metrics import _json_safe, default_names, evaluate
from .plot import plot_abundances, plot_endmembers, save_figure

if TYPE_CHECKING:
    from .base import Result
    from .scene import Scene, Truth

#: Output format -> suffix of the map files (an ENVI header gets its .img data file beside).
MAP_SUFFIXES = {"gtiff": ".tif", "envi": ".hdr", "netcdf": ".nc", "npz": ".npz"}
#: Output format -> the :func:`hyperunmix.io.write_maps` family that writes it.
_IO_FAMILIES = {"gtiff": "gtiff", "envi": "envi", "netcdf": "netcdf", "npz": "npy"}


def map_format(source_format: str | None, fmt: str | None = None) -> str:
    """The format family maps are written in: ``fmt`` when given, else the source's family
    (GeoTIFF, ENVI, NetCDF), else ``"npz"`` (for .mat, .npy and unknown sources)."""
    if fmt is not None:
        key = fmt.lower().lstrip(".")
        if key not in MAP_SUFFIXES:
            raise InputError(f"unknown output format {fmt!r}; choose one of "
                             f"{', '.join(MAP_SUFFIXES)}")
        return key
    return source_format if source_format in MAP_SUFFIXES else "npz"


def check_output_directory(directory: str | os.PathLike) -> Path:
    """``directory`` as a Path, if it can hold the outputs (it is a directory or does not
    exist yet); checked before a long fit as well as when writing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"output path {directory} exists and is not a directory")
    return directory


def save_result(result: "Result", directory: str | os.PathLike, *,
                truth: "Truth | None" = None, scene: "Scene | None" = None,
                fmt: str | None = None, figures: bool = True) -> dict[str, Path]:
    """Write ``result`` to ``directory`` (created if needed; files there are replaced).

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

    Returns
    -------
    dict of str -> Path
        What was written, by role (``"abundances"``, ``"abundances_npy"``, ``"endmembers"``,
        ``"metrics"``, ``"run"``, ``"figure_abundances"``, ..., and one key per extra map).
    """
    directory = check_output_directory(directory)
    family = map_format(result.source_format, fmt)
    suffix = MAP_SUFFIXES[family]

    metrics = None if truth is None else evaluate(result, truth, scene)
    order = None if metrics is None else metrics["matching"]["permutation"]
    names = _band_names(result, metrics)

    written = {
        "abundances": _write_maps(directory / f"abundances{suffix}", result.abundances,
                                  result, names, family),
        "abundances_npy": _write_npy(directory / "abundances.npy",
                                     result.abundances.astype(np.float32, copy=False)),
    }
    if result.endmembers is not None:
        written["endmembers"] = hio.write_endmembers_csv(
            directory / "endmembers.csv", result.endmembers, wavelengths=result.wavelengths,
            names=names)
    for key, values in result.extras.items():
        written[key] = _write_extra(directory, key, np.asarray(values), result, names, family)
    if metrics is not None:
        written["metrics"] = _write_json(directory / "metrics.json", metrics)
    if figures:
        written.update(_write_figures(directory, result, truth, order, names))
    written["run"] = _write_json(directory / "run.json", _run_record(result, family, written))
    return {key: Path(path) for key, path in written.items()}


def _band_names(result: "Result", metrics: dict | None) -> list[str] | None:
    """Names of the result's bands, in its own order: the true material each band was
    matched to, else the result's names, else ``endmember_1`` ..."""
    if metrics is None:
        return result.names or default_names(result.n_endmembers)
    names = [""] * result.n_endmembers
    for true_index, estimated_index in enumerate(metrics["matching"]["permutation"]):
        names[estimated_index] = metrics["names"][true_index]
    return names


def _write_maps(path: Path, image: np.ndarray, result: "Result",
                band_names: list[str] | None, family: str) -> Path:
    """Maps (H, W, K) via :func:`hyperunmix.io.write_maps`, georeferenced like the input."""
    return hio.write_maps(path, image, geo=result.geo, band_names=band_names,
                          fmt=_IO_FAMILIES[family])


def _write_extra(directory: Path, key: str, values: np.ndarray, result: "Result",
                 names: list[str] | None, family: str) -> Path:
    """One extra map: (H, W) and (H, W, K) in the map format, anything else as .npy."""
    if values.ndim == 2:
        return _write_maps(directory / f"{key}{MAP_SUFFIXES[family]}", values[..., None],
                           result, [key], family)
    if values.ndim == 3:
        band_names = names if values.shape[2] == result.n_endmembers else None
        return _write_maps(directory / f"{key}{MAP_SUFFIXES[family]}", values, result,
                           band_names, family)
    return _write_npy(directory / f"{key}.npy", values)


def _write_npy(path: Path, values: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, values)
    return path


def _write_json(path: Path, record: dict) -> Path:
    return write_text(path, json.dumps(_json_safe(record), indent=2, allow_nan=False,
                                       default=str) + "\n")


def _write_figures(directory: Path, result: "Result", truth: "Truth | None",
                   order: list[int] | None, names: list[str] | None) -> dict[str, Path]:
    """Abundance maps and endmember spectra, in truth order beside the truth when given."""
    abundances, endmembers = result.abundances, result.endmembers
    true_abundances = true_endmembers = None
    rescale_truth = False
    if order is not None:
        abundances = abundances[..., order]
        endmembers = None if endmembers is None else endmembers[order]
        names = [names[j] for j in order]
        true_abundances, true_endmembers = truth.abundances, truth.endmembers
        rescale_truth = truth.endmember_scale == "shape"
    title = f"{result.method} on {result.scene_name}"
    figures = {"figure_abundances": save_figure(
        plot_abundances(abundances, names, truth=true_abundances, title=title),
        directory / "abundances.png")}
    if endmembers is not None:
        if true_endmembers is not None and true_endmembers.shape != endmembers.shape:
            true_endmembers = None     # truth on other bands (bad bands dropped): no overlay
        figures["figure_endmembers"] = save_figure(
            plot_endmembers(endmembers, result.wavelengths, names, truth=true_endmembers,
                            rescale_truth=rescale_truth, title=title),
            directory / "endmembers.png")
    return figures


def _run_record(result: "Result", family: str, written: dict[str, Path]) -> dict[str, Any]:
    from . import __version__  # at call time: the package may still be initialising at import

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
        "versions": {"hyperunmix": __version__, "python": platform.python_version(),
                     "numpy": np.__version__},
        "files": sorted(Path(path).name for path in written.values()),
    }
