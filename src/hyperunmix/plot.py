"""Figures: abundance maps and endmember spectra, estimate beside truth or method beside method.

Built on :class:`matplotlib.figure.Figure` directly (not ``pyplot``), so nothing touches a
GUI backend or global figure state, and figures are freed with their last reference.
The comparison functions take a mapping ``label -> array`` so the benchmark can put several
methods (and the truth) side by side with the same code.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import PIL.Image
from matplotlib.figure import Figure

from ._atomic import atomic_path
from .errors import InputError
from .scene import default_names

#: The entry drawn as reference (dashed, black) in spectra comparisons.
TRUTH = "truth"
ESTIMATE = "estimate"

_PANEL_INCHES = 2.2
#: Spectra comparisons with more entries than this get their legend below the panels.
_LEGEND_INSIDE = 6


def plot_abundance_comparison(
    maps: Mapping[str, np.ndarray], names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """A grid of abundance maps: one row per entry of ``maps``, one column per material.

    Parameters
    ----------
    maps : mapping of label -> (H, W, P) array
        E.g. ``{"truth": A, "fcls": A1, "deq": A2}``, all in the same material order.
        NaN (masked) pixels are drawn grey.
    names : list of P str, optional
        Material names for the column titles.
    title : str, optional

    Returns
    -------
    Figure
        Every map on the same 0-1 colour scale, with one shared colour bar.
    """
    if not maps:
        raise InputError("no abundance maps to plot")
    shapes = {label: np.shape(image) for label, image in maps.items()}
    first = next(iter(shapes.values()))
    if len(first) != 3 or any(shape != first for shape in shapes.values()):
        raise InputError(f"abundance maps must all be (H, W, P) of one shape, got {shapes}")
    n_materials = first[2]
    names = _material_names(names, n_materials)

    fig = Figure(
        figsize=(_PANEL_INCHES * n_materials + 1.2, _PANEL_INCHES * len(maps) + 0.4),
        layout="constrained",
    )
    axes = fig.subplots(len(maps), n_materials, squeeze=False)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.8")
    for row, (label, image) in enumerate(maps.items()):
        for k in range(n_materials):
            ax = axes[row, k]
            shown = ax.imshow(
                np.asarray(image[..., k], dtype=np.float32),
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(names[k])
            if k == 0:
                ax.set_ylabel(label)
    # A thin bar: the default width is a share of the whole grid, too wide for many columns.
    fig.colorbar(shown, ax=axes, shrink=0.9, fraction=0.03, aspect=40, label="abundance")
    if title:
        fig.suptitle(title)
    return fig


def plot_abundances(
    abundances: np.ndarray,
    names: Sequence[str] | None = None,
    truth: np.ndarray | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Estimated abundance maps (H, W, P), with the true ones (H, W, P, same material order)
    in a row above when given."""
    maps = {} if truth is None else {TRUTH: truth}
    maps[ESTIMATE] = abundances
    return plot_abundance_comparison(maps, names, title=title)


def plot_spectra_comparison(
    spectra: Mapping[str, np.ndarray],
    wavelengths: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """One panel per material, one line per entry of ``spectra``.

    Parameters
    ----------
    spectra : mapping of label -> (P, L) array
        E.g. ``{"truth": E, "vca": E1}``, all in the same material order. The entry
        labelled ``"truth"`` is drawn dashed in black.
    wavelengths : (L,) array, optional
        Band centres in nm for the x axis; band indices without them.
    names : list of P str, optional
    title : str, optional
    """
    if not spectra:
        raise InputError("no spectra to plot")
    shapes = {label: np.shape(values) for label, values in spectra.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise InputError(f"spectra must all be (P, L) of one shape, got {shapes}")
    n_materials, n_bands = first
    names = _material_names(names, n_materials)
    if wavelengths is None:
        x, x_label = np.arange(n_bands), "band"
    else:
        x, x_label = np.asarray(wavelengths, dtype=np.float64), "wavelength (nm)"
        if x.shape != (n_bands,):
            raise InputError(f"{x.size} wavelengths for spectra of {n_bands} bands")

    n_cols = min(n_materials, 4)
    n_rows = -(-n_materials // n_cols)
    fig = Figure(figsize=(3.0 * n_cols, 2.4 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True).ravel()
    for k, ax in enumerate(axes[:n_materials]):
        for label, values in spectra.items():
            style = {"color": "black", "linestyle": "--"} if label == TRUTH else {"linestyle": "-"}
            ax.plot(x, np.asarray(values[k], dtype=np.float64), label=label, **style)
        ax.set_title(names[k])
        ax.set_xlabel(x_label)
    for ax in axes[n_materials:]:
        ax.set_visible(False)
    axes[0].set_ylabel("reflectance")
    if len(spectra) <= _LEGEND_INSIDE:
        axes[0].legend(fontsize="small")
    else:  # a long legend does not fit in a panel: one for the figure, below the panels
        fig.legend(
            *axes[0].get_legend_handles_labels(),
            loc="outside lower center",
            ncols=min(len(spectra), 4),
            fontsize="small",
        )
    if title:
        fig.suptitle(title)
    return fig


def plot_endmembers(
    endmembers: np.ndarray,
    wavelengths: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    truth: np.ndarray | None = None,
    *,
    rescale_truth: bool = False,
    title: str | None = None,
) -> Figure:
    """Estimated endmember spectra (P, L), with the true ones (P, L, same material order)
    dashed in the same panels when given.

    ``rescale_truth`` multiplies each true spectrum by the least-squares factor that fits it
    to its estimate: for a truth known only in shape (Samson's spectra are max-normalised),
    so the curves can be compared by eye.
    """
    spectra = {ESTIMATE: endmembers}
    if truth is not None:
        spectra[TRUTH] = _fit_scale(truth, endmembers) if rescale_truth else truth
    return plot_spectra_comparison(spectra, wavelengths, names, title=title)


def save_figure(
    fig: Figure, path: str | os.PathLike, *, dpi: int = 120, palette: bool = False
) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; return the path.

    ``palette``: store 256 indexed colours instead of RGBA, about a third of the size for
    grids of maps, whose colour map has 256 colours anyway.
    """
    with atomic_path(path, suffix=".png") as tmp:
        if not palette:
            fig.savefig(tmp, format="png", dpi=dpi)
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=dpi)
            image = PIL.Image.open(buffer).convert("RGB").quantize(256)
            image.save(tmp, format="png", optimize=True)
    return Path(path)


def _material_names(names: Sequence[str] | None, n_materials: int) -> list[str]:
    if names is None:
        return default_names(n_materials)
    if len(names) != n_materials:
        raise InputError(f"{len(names)} names for {n_materials} materials")
    return [str(name) for name in names]


def _fit_scale(reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows of ``reference`` (P, L), each scaled by the c minimising |c r - t|^2."""
    reference = np.asarray(reference, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if reference.shape != target.shape:
        raise InputError(f"true spectra {reference.shape} and estimates {target.shape} differ")
    energy = np.sum(reference * reference, axis=1, keepdims=True)
    factor = np.sum(reference * target, axis=1, keepdims=True) / np.where(energy > 0, energy, 1)
    return reference * factor
