"""Name endmembers after the library materials they match.

Two scores compare an endmember with each library spectrum, both in degrees and both blind
to brightness (an endmember's scale is not its material's):

- the **spectral angle** between the spectra;
- the **continuum-removed angle**: the angle between their mean-centred absorption-depth
  spectra ``1 - r / c``, with ``c`` the convex-hull continuum of ``r`` (Clark & Roush 1984;
  computed by ``spectral.remove_continuum``), i.e. the arccosine of the correlation of the
  depths, the fit measure of feature-matching codes such as Tetracorder. It compares the
  absorption features alone, the diagnostic part of mineral spectra, and is also blind to a
  featureless material mixed in (which scales the depths); it is undefined (NaN) for a
  spectrum without features. Centring was chosen over the plain angle between the depths
  on tuning scenes of USGS spectra (scene seeds 100-105, VCA endmembers): top-1 53 % against
  27 % at 20 dB, 83 % against 53 % at 30 dB.

Library spectra are resampled to the endmembers' bands first (Gaussian band responses of the
given FWHM, :func:`hyperunmix.io.libraries.resample_library`); bands outside a library
spectrum's range or at its deleted values are left out of its comparison, and a spectrum
covering less than ``min_coverage`` of the bands is not compared at all.

>>> library = hu.datasets.load_library("usgs")                        # doctest: +SKIP
>>> found = hu.identify(result.endmembers, library, result.wavelengths)  # doctest: +SKIP
>>> found.labels, found.best_angles_deg, found.margins_deg           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import InputError
from .scene import default_names
from .spectra import SpectralLibrary

if TYPE_CHECKING:
    from .base import Result

__all__ = [
    "Identification",
    "Match",
    "continuum_removed",
    "identify",
    "identify_endmembers",
    "identify_result",
    "reference_library",
]

RankBy = Literal["angle", "continuum"]
RANK_BY: tuple[str, ...] = ("angle", "continuum")
#: Default largest spectral angle (degrees) of a match; above it an endmember stays unnamed.
MAX_ANGLE_DEG = 10.0
# Floor (relative to a spectrum's maximum) below which values are raised before the
# continuum is drawn: extracted endmembers can dip below zero in noisy bands, where a ratio
# to the continuum means nothing.
_CONTINUUM_FLOOR = 1e-3
# Characters that map formats use as separators in their band-name lists (ENVI's
# "band names = {a, b}"): kept out of the labels.
_LABEL_SEPARATORS = str.maketrans({",": " ", "{": "(", "}": ")"})


@dataclass(frozen=True)
class Match:
    """One library material matched to an endmember, by its best spectrum.

    Attributes
    ----------
    material : str
        The library's material name.
    spectrum : int
        Index of that material's best-matching spectrum in the library.
    angle_deg : float
        Spectral angle to it, degrees.
    continuum_angle_deg : float
        Angle between the mean-centred continuum-removed absorption depths (arccos of
        their correlation), degrees; NaN when either spectrum has no absorption feature.
    """

    material: str
    spectrum: int
    angle_deg: float
    continuum_angle_deg: float


@dataclass(frozen=True)
class Identification:
    """What :func:`identify` found, for P endmembers against K library spectra.

    Attributes
    ----------
    matches : list of P lists of Match
        For each endmember, the best-scoring spectrum of each of its ``n_matches`` best
        materials, best first.
    labels : list of P str
        The best material's name (separators ``,{}`` replaced) when its score is within
        ``max_angle_deg``, else ``endmember_k`` (1-based); a material matched by several
        endmembers names the closest, the others get `` (2)``, `` (3)``, ... appended.
    matched : (P,) bool
        Whether the endmember's best score is within ``max_angle_deg``.
    margins_deg : (P,) float
        Score of the second-best material minus that of the best (degrees): how clearly the
        best one wins; NaN with fewer than two materials.
    angles_deg, continuum_angles_deg : (P, K) float
        Every score (NaN: spectrum not compared, or no absorption feature).
    rank_by : {"angle", "continuum"}
        The score the matches are ranked and thresholded by.
    max_angle_deg : float
    duplicates : dict of str -> list of int
        Materials that more than one endmember matched, with those endmembers (0-based).
    library : str or None
        Where the library came from (a path or a built-in name), when known.
    """

    matches: list[list[Match]]
    labels: list[str]
    matched: np.ndarray
    margins_deg: np.ndarray
    angles_deg: np.ndarray
    continuum_angles_deg: np.ndarray
    rank_by: str
    max_angle_deg: float
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    library: str | None = None

    @property
    def best_angles_deg(self) -> np.ndarray:
        """(P,) the ranking score of each endmember's best material (NaN: none compared)."""
        return np.array([_score(m[0], self.rank_by) if m else np.nan for m in self.matches])

    def record(self) -> dict[str, Any]:
        """A JSON-ready summary (as ``run.json`` stores it): the rule, then per endmember
        its label, whether it matched, its margin and its matches; an undefined score
        (NaN) is None, so that the record is strict JSON that any reader takes."""
        return {
            "library": self.library,
            "rank_by": self.rank_by,
            "max_angle_deg": self.max_angle_deg,
            "duplicates": self.duplicates,
            "endmembers": [
                {
                    "endmember": k + 1,
                    "label": self.labels[k],
                    "matched": bool(self.matched[k]),
                    "margin_deg": _defined(self.margins_deg[k]),
                    "matches": [
                        {
                            **vars(match),
                            "angle_deg": _defined(match.angle_deg),
                            "continuum_angle_deg": _defined(match.continuum_angle_deg),
                        }
                        for match in self.matches[k]
                    ],
                }
                for k in range(len(self.labels))
            ],
        }


def identify(
    endmembers: Any,
    library: SpectralLibrary,
    wavelengths: Any = None,
    *,
    fwhm: Any = None,
    n_matches: int = 3,
    max_angle_deg: float = MAX_ANGLE_DEG,
    rank_by: RankBy = "angle",
    min_coverage: float = 0.9,
) -> Identification:
    """Match each endmember to the library materials it resembles most.

    Parameters
    ----------
    endmembers : (P, L) array
        Endmember spectra (any scale).
    library : SpectralLibrary
        E.g. :func:`hyperunmix.io.read_library` or :func:`hyperunmix.datasets.load_library`.
    wavelengths : (L,) array in nm, optional
        The endmembers' band centres; the library is resampled to them. Without them the
        library must already be on the endmembers' L bands.
    fwhm : (L,) array or scalar in nm, optional
        The endmembers' band widths, for the resampling (default None: interpolation).
    n_matches : int, default=3
        Materials listed per endmember.
    max_angle_deg : float, default=10.0
        Largest score of a match (degrees); an endmember whose best is above stays
        ``endmember_k``. Set a priori (the usual rule of thumb for a strong spectral-angle
        match); ``benchmarks/identification.py`` measures what it keeps (93 % of right
        matches on USGS scenes at 20-40 dB) and lets through (52 % of endmembers of
        materials absent from the library). It applies to the ranking score: the
        continuum-removed angle runs larger (median 19 deg for matches in that benchmark),
        so raise it with ``rank_by="continuum"``.
    rank_by : {"angle", "continuum"}, default="angle"
        Rank by the spectral angle, or by the continuum-removed angle (for minerals,
        whose absorption features tell them apart).
    min_coverage : float, default=0.9
        Fraction of the L bands a library spectrum must cover to be compared: one compared
        on a part of the range only can win by leaving out where it differs.

    Returns
    -------
    Identification
    """
    spectra = np.atleast_2d(np.asarray(endmembers, dtype=np.float64))
    if spectra.ndim != 2 or not np.all(np.isfinite(spectra)):
        raise InputError(f"endmembers must be a finite (P, L) matrix, got shape {spectra.shape}")
    if rank_by not in RANK_BY:
        raise InputError(f"rank_by must be one of {', '.join(RANK_BY)}, got {rank_by!r}")
    if not 0 < min_coverage <= 1:
        raise InputError(f"min_coverage must be in (0, 1], got {min_coverage}")
    if n_matches < 1:
        raise InputError(f"n_matches must be at least 1, got {n_matches}")
    if not max_angle_deg > 0:
        raise InputError(f"max_angle_deg must be positive, got {max_angle_deg}")
    reference, bands = _on_bands(library, spectra.shape[1], wavelengths, fwhm)
    covered = np.isfinite(reference).mean(axis=1) >= min_coverage
    angles = _angles(spectra, reference, covered)
    depths = 1.0 - continuum_removed(spectra, bands)
    library_depths = 1.0 - continuum_removed(reference, bands)
    continuum_angles = _angles(depths, library_depths, covered, centred=True)
    scores = angles if rank_by == "angle" else continuum_angles
    matches = [
        _best_materials(library, scores[k], angles[k], continuum_angles[k], n_matches)
        for k in range(spectra.shape[0])
    ]
    best = np.array([_score(m[0], rank_by) if m else np.nan for m in matches])
    matched = best <= max_angle_deg  # NaN (nothing compared) is no match
    margins = np.array([_margin(m, rank_by) for m in matches])
    labels, duplicates = _labels(matches, matched, best)
    return Identification(
        matches=matches,
        labels=labels,
        matched=matched,
        margins_deg=margins,
        angles_deg=angles,
        continuum_angles_deg=continuum_angles,
        rank_by=rank_by,
        max_angle_deg=float(max_angle_deg),
        duplicates=duplicates,
    )


def continuum_removed(spectra: Any, wavelengths: Any) -> np.ndarray:
    """Spectra divided by their convex-hull continuum (1 outside absorption features).

    Parameters
    ----------
    spectra : (K, L) array
        NaN values are left out of the hull and stay NaN.
    wavelengths : (L,) array
        Band centres, any order (the hull is drawn in wavelength order).

    Returns
    -------
    (K, L) float64 in (0, 1]
    """
    from spectral.algorithms.continuum import remove_continuum

    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    bands = np.asarray(wavelengths, dtype=np.float64).ravel()
    order = np.argsort(bands, kind="stable")
    out = np.full(spectra.shape, np.nan)
    for k, spectrum in enumerate(spectra):
        good = order[np.isfinite(spectrum[order])]
        if good.size < 2:
            continue
        values = spectrum[good]
        floor = _CONTINUUM_FLOOR * max(np.abs(values).max(), np.finfo(float).tiny)
        out[k, good] = remove_continuum(np.maximum(values, floor), bands[good])
    return out


def reference_library(
    source: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    wavelengths: Any = None,
    fwhm: Any = None,
) -> SpectralLibrary:
    """The library ``source`` names: a file or folder :func:`hyperunmix.io.read_library`
    reads (resampled to ``wavelengths`` with ``fwhm`` when given, so that spectra on
    different band sets can share it), else a built-in library of
    :func:`hyperunmix.datasets.load_library` (``usgs``, ``samson``, ``jasper_ridge``), read
    from ``data_dir`` (:func:`identify` resamples it)."""
    from . import datasets
    from .io.libraries import read_library

    if Path(source).exists():
        return read_library(source, wavelengths=wavelengths, fwhm=fwhm)
    name = str(source)
    if name.lower().replace("-", "_") in datasets.LIBRARY_FILES:
        return datasets.load_library(name, data_dir)
    raise InputError(
        f"{name}: no such library file or folder, and not a built-in library "
        f"({', '.join(datasets.LIBRARY_FILES)})"
    )


def identify_result(
    result: Result,
    library: SpectralLibrary,
    *,
    fwhm: Any = None,
    max_angle_deg: float = MAX_ANGLE_DEG,
    library_name: str | None = None,
) -> tuple[Result, Identification]:
    """``result`` with its endmembers named after the library materials they match
    (``result.names`` set to :attr:`Identification.labels`), and the identification.

    A material matched by several endmembers is said in a warning (and in
    :attr:`Identification.duplicates`). ``fwhm`` are the widths of the result's bands.
    """
    found = identify_endmembers(
        result.endmembers,
        library,
        result.wavelengths,
        fwhm=fwhm,
        max_angle_deg=max_angle_deg,
        library_name=library_name,
        method=result.method,
    )
    return dataclasses.replace(result, names=list(found.labels)), found


def identify_endmembers(
    endmembers: np.ndarray | None,
    library: SpectralLibrary,
    wavelengths: Any = None,
    *,
    fwhm: Any = None,
    max_angle_deg: float = MAX_ANGLE_DEG,
    library_name: str | None = None,
    method: str,
) -> Identification:
    """:func:`identify` for a method's (P, L) ``endmembers`` (None: a method without
    spectra, an error naming ``method``), with the library's name recorded and a warning
    for each material that several endmembers matched."""
    if endmembers is None:
        raise InputError(
            f"the {method} result has no endmember spectra, so there is nothing to identify"
        )
    found = identify(endmembers, library, wavelengths, fwhm=fwhm, max_angle_deg=max_angle_deg)
    found = dataclasses.replace(found, library=library_name)
    for material, matching in found.duplicates.items():
        numbers = ", ".join(str(k + 1) for k in matching)
        warnings.warn(
            f"endmembers {numbers} all match {material!r}: named "
            f"{', '.join(found.labels[k] for k in matching)} (closest first)",
            UserWarning,
            stacklevel=3,
        )
    return found


# -- internals ---------------------------------------------------------------------------
def _defined(value: float) -> float | None:
    """``value`` as a float, None when it is NaN."""
    return None if np.isnan(value) else float(value)


def _on_bands(
    library: SpectralLibrary, n_bands: int, wavelengths: Any, fwhm: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The library's spectra (K, L) on the endmembers' bands, and those bands' centres
    (their indices when no wavelengths are known). A library without wavelengths, or
    endmembers without, are taken to be on the same bands when their band counts agree."""
    from .io.libraries import resample_library

    if not isinstance(library, SpectralLibrary):
        raise InputError(f"library must be a SpectralLibrary, got {type(library).__name__}")
    if wavelengths is not None:
        bands = np.asarray(wavelengths, dtype=np.float64).ravel()
        if bands.size != n_bands:
            raise InputError(f"{bands.size} wavelengths given for endmembers of {n_bands} bands")
        if library.wavelengths is not None and not np.array_equal(library.wavelengths, bands):
            return resample_library(library, bands, fwhm).spectra, bands
    if library.n_bands != n_bands:
        raise InputError(
            f"the library has {library.n_bands} bands and the endmembers {n_bands}, and "
            "without wavelengths for both the library cannot be resampled to theirs"
        )
    if wavelengths is None:  # the library's bands are the endmembers' bands
        known = library.wavelengths
        return library.spectra, np.arange(n_bands, dtype=np.float64) if known is None else known
    return library.spectra, bands


def _angles(
    spectra: np.ndarray, reference: np.ndarray, compared: np.ndarray, centred: bool = False
) -> np.ndarray:
    """(P, K) angles in degrees between ``spectra`` (P, L) and ``reference`` (K, L), each
    pair over the bands where both are finite (``centred``: each vector minus its mean over
    those bands, so the cosine is their correlation); NaN for references not ``compared``
    and where either is constant (centred) or zero over those bands."""
    valid_e, valid_r = np.isfinite(spectra), np.isfinite(reference)
    e, r = np.where(valid_e, spectra, 0.0), np.where(valid_r, reference, 0.0)
    vr, ve = valid_r.astype(float), valid_e.astype(float)
    # Sums over each pair's common bands, as products with the other side's validity.
    dot, e_squares, r_squares = e @ r.T, (e**2) @ vr.T, ve @ (r**2).T
    if centred:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = ve @ vr.T
            e_sums, r_sums = e @ vr.T, ve @ r.T
            dot = dot - e_sums * r_sums / n
            e_squares = e_squares - e_sums**2 / n
            r_squares = r_squares - r_sums**2 / n
    norms = np.sqrt(np.maximum(e_squares, 0.0) * np.maximum(r_squares, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.clip(dot / norms, -1.0, 1.0)
    angles = np.degrees(np.arccos(cosine))
    angles[:, ~compared] = np.nan
    angles[~(norms > 0)] = np.nan
    return angles


def _score(match: Match, rank_by: str) -> float:
    return match.angle_deg if rank_by == "angle" else match.continuum_angle_deg


def _best_materials(
    library: SpectralLibrary,
    scores: np.ndarray,
    angles: np.ndarray,
    continuum_angles: np.ndarray,
    n_matches: int,
) -> list[Match]:
    """The best spectrum of each of the ``n_matches`` best-scoring materials."""
    matches: list[Match] = []
    seen: set[int] = set()
    for index in np.argsort(scores, kind="stable"):  # NaN sort last
        if np.isnan(scores[index]):
            break
        label = int(library.labels[index])
        if label in seen:
            continue
        seen.add(label)
        matches.append(
            Match(
                material=library.names[label],
                spectrum=int(index),
                angle_deg=float(angles[index]),
                continuum_angle_deg=float(continuum_angles[index]),
            )
        )
        if len(matches) == n_matches:
            break
    return matches


def _margin(matches: list[Match], rank_by: str) -> float:
    if len(matches) < 2:
        return float("nan")
    return _score(matches[1], rank_by) - _score(matches[0], rank_by)


def _labels(
    matches: list[list[Match]], matched: np.ndarray, best: np.ndarray
) -> tuple[list[str], dict[str, list[int]]]:
    """Output names: the material (suffixed when several endmembers share it, closest
    first) or ``endmember_k``; and the shared materials with their endmembers."""
    labels = default_names(len(matches))
    by_material: dict[str, list[int]] = {}
    for k in np.flatnonzero(matched).tolist():
        by_material.setdefault(matches[k][0].material, []).append(k)
    duplicates = {}
    for material, endmembers in by_material.items():
        name = " ".join(material.translate(_LABEL_SEPARATORS).split())
        ranked = sorted(endmembers, key=lambda j: best[j])
        for rank, j in enumerate(ranked):
            labels[j] = name if rank == 0 else f"{name} ({rank + 1})"
        if len(ranked) > 1:
            duplicates[material] = ranked
    return labels, duplicates
