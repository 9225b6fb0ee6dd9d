"""Accuracy metrics of an unmixing against ground truth, after Hungarian matching.

Blind methods return endmembers in an arbitrary order, so estimates are first matched to the
true materials (:func:`match`): the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on the P x P cost of abundance-map RMSEs, or of spectral angles when the truth has no
abundances. Every metric below takes arrays that are already in matched order.

Shapes: abundances (N, P) (or (..., P), flattened over the leading axes); endmembers (P, L);
pixels (N, L).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._json import json_safe
from .conventions import check_convention, convert, unit_peak
from .errors import InputError
from .scene import default_names

if TYPE_CHECKING:
    from .base import Result
    from .scene import Scene, Truth

#: Matching criteria, as reported in :attr:`Match.criterion`.
ABUNDANCE_RMSE = "abundance_rmse"
SAD = "sad"


@dataclass(frozen=True)
class Match:
    """How estimated endmembers correspond to the true ones.

    Attributes
    ----------
    permutation : (P,) int array
        ``permutation[k]`` is the index of the estimated endmember matched to true
        endmember ``k``; ``estimate[..., permutation]`` puts an estimate in truth order.
    criterion : {"abundance_rmse", "sad"}
        What the assignment minimised.
    cost : (P, P) float array
        ``cost[k, j]``: distance between true endmember ``k`` and estimated endmember ``j``.
    """

    permutation: np.ndarray
    criterion: str
    cost: np.ndarray


# -- distances between all pairs ---------------------------------------------------------
def abundance_rmse_matrix(true: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """(P, Q) RMSE between every true abundance map (column of ``true`` (N, P)) and every
    estimated one (column of ``estimate`` (N, Q))."""
    true, estimate = _as_columns(true), _as_columns(estimate)
    _check_rows(true, estimate, "abundances")
    # One estimated column at a time: an (N, P, Q) broadcast would not fit for large scenes.
    return np.stack(
        [
            np.sqrt(np.mean((true - estimate[:, [j]]) ** 2, axis=0))
            for j in range(estimate.shape[1])
        ],
        axis=1,
    )


def sad_matrix(true: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """(P, Q) spectral angle (radians) between every true endmember (row of ``true`` (P, L))
    and every estimated one (row of ``estimate`` (Q, L))."""
    true, estimate = _as_spectra(true), _as_spectra(estimate)
    _check_bands(true, estimate)
    return _angle(_unit(true)[:, None, :], _unit(estimate)[None, :, :])


def hungarian(cost: np.ndarray) -> np.ndarray:
    """The permutation minimising the total of a square ``cost`` (P, P): ``perm[k]`` is the
    column assigned to row ``k``."""
    cost = np.asarray(cost, dtype=np.float64)
    # A NaN cost (a zero-norm estimated spectrum) would make the assignment fail: rank it last.
    cost = np.where(np.isfinite(cost), cost, np.nanmax(cost, initial=0.0) + 1.0)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def match(truth: Truth, result: Result) -> Match:
    """Match ``result``'s endmembers to ``truth``'s: by abundance-map RMSE over the valid
    pixels when the truth has abundances, else by spectral angle between endmembers."""
    _check_counts(truth, result)
    if truth.abundances is not None:
        true_a, est_a = _valid_abundances(truth, result)
        cost, criterion = abundance_rmse_matrix(true_a, est_a), ABUNDANCE_RMSE
    elif truth.endmembers is not None and result.endmembers is not None:
        cost, criterion = sad_matrix(truth.endmembers, result.endmembers), SAD
    else:
        raise InputError(
            "cannot match endmembers: the truth has no abundances, and no "
            "endmembers to compare with the result's"
        )
    return Match(permutation=hungarian(cost), criterion=criterion, cost=cost)


# -- metrics on matched arrays ---------------------------------------------------------
def armse_per_endmember(true: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """(P,) RMSE of each abundance map, over the N pixels."""
    true, estimate = _as_columns(true), _as_columns(estimate)
    _check_same_shape(true, estimate, "abundances")
    return np.sqrt(np.mean((estimate - true) ** 2, axis=0))


def armse(true: np.ndarray, estimate: np.ndarray) -> float:
    """Abundance RMSE: sqrt of the mean over all N * P entries of (A_hat - A)^2."""
    return float(np.sqrt(np.mean(armse_per_endmember(true, estimate) ** 2)))


def sad(true: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Spectral angle (radians, in [0, pi]) between matching rows of ``true`` and
    ``estimate`` (P, L), or between two (L,) vectors (then a 0-d array).

    Scale invariant: a spectrum and any positive multiple of it have angle 0. NaN for a
    zero spectrum, whose direction is undefined.
    """
    true, estimate = np.asarray(true, np.float64), np.asarray(estimate, np.float64)
    _check_same_shape(true, estimate, "endmembers")
    return _angle(_unit(true), _unit(estimate))


def msad(true: np.ndarray, estimate: np.ndarray) -> float:
    """Mean spectral angle (radians) over the P endmembers."""
    return float(np.mean(sad(true, estimate)))


def sre(true: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-reconstruction error of the abundances, in dB:
    20 log10(|A|_F / |A - A_hat|_F); infinite for an exact estimate."""
    true, estimate = _as_columns(true), _as_columns(estimate)
    _check_same_shape(true, estimate, "abundances")
    error = np.linalg.norm(true - estimate)
    with np.errstate(divide="ignore"):
        return float(20.0 * np.log10(np.linalg.norm(true) / error))


def reconstruction_rmse(
    pixels: np.ndarray, abundances: np.ndarray, endmembers: np.ndarray
) -> float:
    """RMSE over all N * L entries between ``pixels`` (N, L) and the linear reconstruction
    ``abundances`` (N, P) @ ``endmembers`` (P, L)."""
    pixels = np.asarray(pixels, np.float64)
    abundances, endmembers = _as_columns(abundances), _as_spectra(endmembers)
    if abundances.shape[1] != endmembers.shape[0]:
        raise InputError(
            f"{abundances.shape[1]} abundance maps but {endmembers.shape[0]} endmembers"
        )
    if pixels.shape != (abundances.shape[0], endmembers.shape[1]):
        raise InputError(
            f"pixels {pixels.shape} do not match abundances {abundances.shape} "
            f"and endmembers {endmembers.shape}"
        )
    return float(np.sqrt(np.mean((pixels - abundances @ endmembers) ** 2)))


# -- the whole protocol ------------------------------------------------------------------
def evaluate(
    result: Result, truth: Truth, scene: Scene | None = None, *, convention: str | None = None
) -> dict[str, Any]:
    """Score ``result`` against ``truth`` after Hungarian matching, in one abundance
    convention.

    Only valid pixels count (the result's mask, and pixels finite in both estimate and
    truth). Abundances are compared in the truth's convention (``truth.convention``, see
    :mod:`hyperunmix.conventions`): a result in the other one is converted first through its
    own endmembers (:meth:`~hyperunmix.base.Result.in_convention`). Endmembers are compared
    by spectral angle only, which is scale invariant, so a truth with
    ``endmember_scale="shape"`` (normalised spectra) is scored the same way.

    Parameters
    ----------
    result : Result
    truth : Truth
    scene : Scene, optional
        The scene ``result`` was computed from; adds the reconstruction RMSE of its pixels
        by the result's own model: ``A E`` for absolute abundances, ``b A U`` for shares
        (``U`` the unit-peak endmembers, ``b`` each pixel's least-squares brightness).
    convention : {"absolute", "shares"}, optional
        Score in this convention instead of the truth's; the truth is then converted too,
        which needs its endmembers at their own scale.

    Returns
    -------
    dict, JSON-able
        ``convention`` the abundances were scored in and ``result_convention`` they came
        in; ``armse``, ``armse_per_endmember`` and ``sre_db`` (None without true
        abundances); ``msad``, ``msad_deg``, ``sad_per_endmember`` (radians; None without
        endmembers on both sides); ``reconstruction_rmse`` (only when ``scene`` is given;
        None without endmembers); ``matching`` with the ``criterion`` and the
        ``permutation`` (``permutation[k]``: estimated index matched to true endmember
        ``k``); ``names`` of the true materials; ``n_pixels`` scored. Keys per endmember
        are material names. An undefined value (infinite SRE of an exact estimate, the
        angle of a zero spectrum) is None.
    """
    if truth is None:
        raise InputError(
            "there is no ground truth to evaluate against (the scene has no "
            "truth: load a dataset, or give a Truth with abundances and/or "
            "endmembers)"
        )
    target = truth.convention if convention is None else check_convention(convention)
    scored_truth = truth_in_convention(truth, target)
    scored = result.in_convention(target) if truth.abundances is not None else result
    found = match(scored_truth, scored)
    perm = found.permutation
    names = _material_names(truth, result)
    metrics: dict[str, Any] = {
        "names": names,
        "convention": target,
        "result_convention": result.convention,
    }

    if truth.abundances is not None:
        true_a, est_a = _valid_abundances(scored_truth, scored)
        est_a = est_a[:, perm]
        metrics["n_pixels"] = int(true_a.shape[0])
        metrics["armse"] = armse(true_a, est_a)
        metrics["armse_per_endmember"] = _by_name(names, armse_per_endmember(true_a, est_a))
        metrics["sre_db"] = sre(true_a, est_a)
    else:
        metrics.update(n_pixels=None, armse=None, armse_per_endmember=None, sre_db=None)

    if truth.endmembers is not None and result.endmembers is not None:
        angles = sad(truth.endmembers, _as_spectra(result.endmembers)[perm])
        metrics["msad"] = float(np.mean(angles))
        metrics["msad_deg"] = math.degrees(metrics["msad"])
        metrics["sad_per_endmember"] = _by_name(names, angles)
    else:
        metrics.update(msad=None, msad_deg=None, sad_per_endmember=None)

    if scene is not None:
        metrics["reconstruction_rmse"] = _scene_reconstruction_rmse(result, scene)

    metrics["matching"] = {"criterion": found.criterion, "permutation": perm.tolist()}
    return json_safe(metrics)


def truth_in_convention(truth: Truth, convention: str) -> Truth:
    """``truth`` with its abundances in ``convention``: itself when already there, else
    converted through its endmembers, which must be known at their own scale."""
    if check_convention(convention) == truth.convention or truth.abundances is None:
        return truth
    if truth.endmembers is None or truth.endmember_scale != "absolute":
        raise InputError(
            f"the truth's abundances are {truth.convention!r} and its "
            "endmembers are not known at their own scale, so they cannot be "
            f"converted to {convention!r}; score in {truth.convention!r}"
        )
    return dataclasses.replace(
        truth,
        convention=convention,
        abundances=convert(truth.abundances, truth.endmembers, truth.convention, convention),
    )


def _scene_reconstruction_rmse(result: Result, scene: Scene) -> float | None:
    """Reconstruction RMSE of the scene's valid pixels by the result's own mixing model
    (see :func:`evaluate`)."""
    if result.endmembers is None:
        return None
    if scene.shape[:2] != result.abundances.shape[:2]:
        raise InputError(
            f"the scene is {scene.shape[:2]} pixels, the result {result.abundances.shape[:2]}"
        )
    if scene.n_bands != result.endmembers.shape[1]:
        raise InputError(
            f"the scene has {scene.n_bands} bands, the result's endmembers "
            f"{result.endmembers.shape[1]}"
        )
    valid = scene.mask & np.all(np.isfinite(result.abundances), axis=-1)
    pixels, abundances = scene.cube[valid].astype(np.float64), result.abundances[valid]
    if result.convention == "absolute":
        return reconstruction_rmse(pixels, abundances, result.endmembers)
    mixtures = abundances @ unit_peak(result.endmembers)  # (N, L)
    energy = np.einsum("nl,nl->n", mixtures, mixtures)
    brightness = np.einsum("nl,nl->n", pixels, mixtures) / np.where(energy > 0, energy, 1.0)
    return reconstruction_rmse(
        pixels, abundances * brightness[:, None], unit_peak(result.endmembers)
    )


# -- helpers -------------------------------------------------------------------------------
def _check_counts(truth: Truth, result: Result) -> None:
    p_true, p_est = truth.n_endmembers, result.n_endmembers
    if p_true != p_est:
        raise InputError(
            f"the result has {p_est} endmembers but the truth has {p_true}; "
            "unmix with the true number of endmembers to compare them"
        )


def _valid_abundances(truth: Truth, result: Result) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) true and estimated abundances at the pixels valid in both."""
    true_a, est_a = np.asarray(truth.abundances), np.asarray(result.abundances)
    if true_a.shape[:2] != est_a.shape[:2]:
        raise InputError(
            f"true abundances are {true_a.shape[:2]} pixels, the result's {est_a.shape[:2]}"
        )
    valid = np.all(np.isfinite(true_a), axis=-1) & np.all(np.isfinite(est_a), axis=-1)
    if result.mask is not None:
        valid &= result.mask
    if not valid.any():
        raise InputError("no pixel is valid in both the result and the truth")
    return true_a[valid].astype(np.float64), est_a[valid].astype(np.float64)


def _material_names(truth: Truth, result: Result) -> list[str]:
    if truth.names is not None:
        return [str(n) for n in truth.names]
    return default_names(result.n_endmembers)


def _by_name(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values)}


def _as_columns(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2:
        raise InputError(f"abundances must be (N, P) or (H, W, P), got shape {values.shape}")
    return values.reshape(-1, values.shape[-1])


def _as_spectra(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise InputError(f"endmembers must be (P, L), got shape {values.shape}")
    return values


def _check_rows(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise InputError(f"{what} cover {a.shape[0]} and {b.shape[0]} pixels")


def _check_bands(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise InputError(f"endmembers have {a.shape[-1]} and {b.shape[-1]} bands")


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"true and estimated {what} differ in shape: {a.shape} vs {b.shape}")


def _unit(spectra: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (NaN rows for zero spectra)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return spectra / np.linalg.norm(spectra, axis=-1, keepdims=True)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between unit vectors along the last axis.

    2 atan2(|u - v|, |u + v|) rather than arccos(<u, v>): arccos loses half the digits
    near 0 (an exact match would read 1e-8 rad instead of 0).
    """
    return 2.0 * np.arctan2(np.linalg.norm(u - v, axis=-1), np.linalg.norm(u + v, axis=-1))
