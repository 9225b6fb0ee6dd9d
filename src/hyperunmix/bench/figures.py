"""Benchmark figures: each method's maps and spectra beside the truth, accuracy vs time.

Maps and spectra are drawn by :mod:`hyperunmix.plot`; this module chooses what to show.
For each method it shows its *representative* run, the successful seed with the median
aRMSE (mSAD when the scene has no abundance truth), so a lucky or unlucky seed does not
stand for the method. Estimates are put in the truth's material order with the matching
the metrics used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..plot import TRUTH, plot_abundance_comparison, plot_spectra_comparison, save_figure
from ..scene import Scene
from .store import RunStore
from .tables import COLUMN, Group

FIGURES_DIR = "figures"
#: Resolution of the saved figures: enough to read, small enough to embed in one HTML file.
DPI = 80


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its path, a caption, and an anchor for the report."""

    path: Path
    caption: str
    anchor: str


def representative(found: Group) -> dict[str, Any] | None:
    """The successful run with the median score (aRMSE, else mSAD; lowest seed on ties)."""
    for key in ("armse", "msad"):
        scored = [(COLUMN[key].value(r), r["seed"], r) for r in found.ok]
        scored = [s for s in scored if s[0] is not None]
        if scored:
            scored.sort(key=lambda s: (s[0], s[1]))
            return scored[(len(scored) - 1) // 2][2]
    return None


def _matched_estimates(found: Group, store: RunStore) -> tuple[str, dict[str, np.ndarray]] | None:
    """Label and arrays (in truth material order) of the representative run."""
    record = representative(found)
    if record is None:
        return None
    arrays = store.load_arrays(record["key"])
    if arrays is None:
        return None
    perm = np.asarray(record["metrics"]["matching"]["permutation"])
    matched = {"abundances": arrays["abundances"][..., perm]}
    if "endmembers" in arrays:
        matched["endmembers"] = arrays["endmembers"][perm]
    return f"{found.method} (seed {record['seed']})", matched


def abundance_figure(
    dataset: str, by_method: dict[str, Group], scene: Scene, store: RunStore
) -> Figure | None:
    """Rows: the true maps, then each method's representative maps; columns: materials."""
    truth = scene.truth
    if truth is None or truth.abundances is None:
        return None
    maps = {TRUTH: truth.abundances}
    for found in by_method.values():
        estimate = _matched_estimates(found, store)
        if estimate is not None and estimate[1]["abundances"].shape == truth.abundances.shape:
            # Two lines: a long label would not fit one map's height written vertically.
            maps[estimate[0].replace(" (", "\n(", 1)] = estimate[1]["abundances"]
    if len(maps) == 1:
        return None
    return plot_abundance_comparison(maps, truth.names, title=f"{dataset}: abundance maps")


def spectra_figure(
    dataset: str, by_method: dict[str, Group], scene: Scene, store: RunStore
) -> Figure | None:
    """One panel per material: the true spectrum (dashed) and each method's estimate.

    When the truth is known in shape only (``endmember_scale="shape"``, e.g. Samson's
    max-normalised spectra) every curve is scaled to a peak of 1.
    """
    truth = scene.truth
    if truth is None or truth.endmembers is None:
        return None
    spectra = {TRUTH: truth.endmembers}
    for found in by_method.values():
        estimate = _matched_estimates(found, store)
        if estimate is not None and "endmembers" in estimate[1]:
            spectra[estimate[0]] = estimate[1]["endmembers"]
    if len(spectra) == 1:
        return None
    if truth.endmember_scale == "shape":
        spectra = {label: _peak_normalised(values) for label, values in spectra.items()}
    return plot_spectra_comparison(
        spectra, scene.wavelengths, truth.names, title=f"{dataset}: endmember spectra"
    )


def accuracy_time_figure(groups: dict[str, dict[str, Group]]) -> Figure | None:
    """One panel per scene: mean aRMSE (mSAD without abundance truth) against mean wall
    time, error bars one standard deviation, one colour per method."""
    panels = []
    for dataset, by_method in groups.items():
        key = "armse" if any(g.stat(COLUMN["armse"]).n for g in by_method.values()) else "msad"
        points = [
            (g.method, g.stat(COLUMN["time_s"]), g.stat(COLUMN[key])) for g in by_method.values()
        ]
        points = [p for p in points if p[1].mean is not None and p[2].mean is not None]
        if points:
            panels.append((dataset, COLUMN[key].label, points))
    if not panels:
        return None
    methods = list(dict.fromkeys(m for by_method in groups.values() for m in by_method))
    colours = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    n_cols = min(len(panels), 4)
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(3.4 * n_cols, 3.0 * n_rows + 0.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, label, points) in zip(axes, panels):
        for method, time_stat, score in points:
            assert time_stat.mean is not None  # points without a mean are left out above
            spread = time_stat.std or 0.0
            # On the log axis a bar reaching zero or below cannot be drawn: stop it short.
            xerr = [[min(spread, 0.9 * time_stat.mean)], [spread]]
            ax.errorbar(
                time_stat.mean,
                score.mean,
                xerr=xerr,
                yerr=score.std or 0.0,
                fmt="o",
                capsize=2,
                color=colours(methods.index(method)),
                label=method,
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel(label)
        ax.set_title(dataset)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="outside lower center",
        ncols=min(len(handles), 6),
        fontsize="small",
    )
    fig.suptitle("Accuracy versus time (lower left is better)")
    return fig


OVERVIEW = "accuracy_vs_time"
#: Caption of each figure kind; per-scene figures are named ``<scene>_<kind>.png``.
CAPTIONS = {
    OVERVIEW: "Accuracy versus wall time, mean ± std over seeds",
    "abundances": "abundance maps, truth and each method's median-aRMSE run",
    "endmembers": "endmember spectra, truth (dashed) and each method's median-aRMSE run",
}
_SCENE_FIGURES = {"abundances": abundance_figure, "endmembers": spectra_figure}


def caption(stem: str) -> str:
    """The caption of the figure file named ``stem`` (without ``.png``)."""
    if stem == OVERVIEW:
        return CAPTIONS[OVERVIEW]
    scene, _, kind = stem.rpartition("_")
    return f"{scene}: {CAPTIONS[kind]}" if kind in _SCENE_FIGURES else stem


def write_figures(
    out: str | Path, groups: dict[str, dict[str, Group]], scenes: dict[str, Scene]
) -> list[FigureFile]:
    """Write every figure under ``<out>/figures`` (removing figures of earlier benchmarks
    there); ``scenes`` maps dataset names to the built scenes (a dataset without one gets
    no map or spectra figure)."""
    store = RunStore(out)
    folder = Path(out) / FIGURES_DIR
    written = []
    overview = accuracy_time_figure(groups)
    if overview is not None:
        written.append(_save(overview, folder, OVERVIEW, "figure-accuracy-time"))
    for dataset, by_method in groups.items():
        scene = scenes.get(dataset)
        if scene is None:
            continue
        for kind, make in _SCENE_FIGURES.items():
            fig = make(dataset, by_method, scene, store)
            if fig is not None:
                written.append(_save(fig, folder, f"{dataset}_{kind}", f"figure-{dataset}-{kind}"))
    for stale in set(folder.glob("*.png")) - {f.path for f in written}:
        stale.unlink()  # from an earlier benchmark in the same directory
    return written


def _save(fig: Figure, folder: Path, stem: str, anchor: str) -> FigureFile:
    path = save_figure(fig, folder / f"{stem}.png", dpi=DPI, palette=True)
    return FigureFile(path, caption(stem), anchor)


def _peak_normalised(spectra: np.ndarray) -> np.ndarray:
    spectra = np.asarray(spectra, dtype=np.float64)
    peak = np.max(np.abs(spectra), axis=1, keepdims=True)
    return spectra / np.where(peak > 0, peak, 1.0)
