"""Abundance conventions: what an abundance is a fraction of.

Two readings of "the abundance of material k in a pixel" meet in practice, and a map made in
one scores badly against a truth made in the other (Samson: FCLS with the reference
endmembers is 0.42 aRMSE away from the reference maps, normalised NNLS 0.002):

``"absolute"``
    a_k is the fraction of material k at the scale of its endmember spectrum e_k:
    ``y ~ sum_k a_k e_k`` with ``a >= 0``, ``sum_k a_k = 1``. The linear mixing model, as
    FCLS solves it; the truth of scenes mixed from library spectra.
``"shares"``
    s_k is material k's share of the pixel's signal measured in unit-peak spectra
    ``u_k = e_k / p_k``, ``p_k = max_l e_kl``: ``y ~ b sum_k s_k u_k`` with a free per-pixel
    brightness ``b > 0`` (illumination, topography, shadow), ``s >= 0``, ``sum_k s_k = 1``.
    Normalised NNLS on unit-peak spectra (:func:`hyperunmix.linear.snnls`); how the
    Samson and Jasper Ridge reference maps were made.

Given the endmembers, each converts into the other (``p`` the endmember peaks)::

    shares    s_k = a_k p_k / sum_j a_j p_j
    absolute  a_k = (s_k / p_k) / sum_j (s_j / p_j)

For a pixel with ``y = sum_k a_k e_k`` exactly, the shares of ``y`` are the first line; a
brightness ``b`` cancels in the normalisation. Shapes: abundances (..., P), endmembers (P, L).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

CONVENTIONS = ("absolute", "shares")

#: One line on each convention, for summaries and reports.
MEANINGS = {
    "absolute": "fractions of the endmember spectra at their own scale, summing to one "
    "(the linear mixing model, as FCLS solves it)",
    "shares": "shares of unit-peak endmember spectra in each pixel's signal, summing to one "
    "whatever the pixel's brightness (normalised NNLS)",
}


def check_convention(convention: Any) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`, else an InputError."""
    if convention not in CONVENTIONS:
        raise InputError(
            f"abundance convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
        )
    return convention


def endmember_peaks(endmembers: Any) -> np.ndarray:
    """(P,) peak (largest value) of each endmember spectrum (P, L); all must be positive."""
    endmembers = np.asarray(endmembers, dtype=np.float64)
    if endmembers.ndim != 2:
        raise InputError(f"endmembers must be (P, L), got shape {endmembers.shape}")
    peaks = endmembers.max(axis=1)
    if not np.all(np.isfinite(peaks) & (peaks > 0)):
        bad = [k + 1 for k in np.flatnonzero(~(np.isfinite(peaks) & (peaks > 0)))]
        raise InputError(
            "converting abundance conventions needs endmember spectra with a "
            f"positive finite peak; the peaks are {peaks.tolist()}: endmember(s) "
            f"{', '.join(map(str, bad))} have none. An extractor picks such a spectrum from "
            "an all-zero or negative pixel (unmasked no-data, deep shadow): declare the "
            "no-data value or mask those pixels, or give the endmembers"
        )
    return peaks


def unit_peak(endmembers: Any) -> np.ndarray:
    """(P, L) endmembers divided by their peaks (:func:`endmember_peaks`)."""
    endmembers = np.asarray(endmembers, dtype=np.float64)
    return endmembers / endmember_peaks(endmembers)[:, None]


def normalise_rows(values: Any) -> np.ndarray:
    """Rows of ``values`` (..., P) divided by their sums; rows whose sum is not positive
    become uniform (1/P), rows with a NaN stay NaN. Float64."""
    values = np.asarray(values, dtype=np.float64)
    total = values.sum(axis=-1, keepdims=True)
    positive = total > 0
    uniform = np.full_like(values, 1.0 / values.shape[-1])
    normalised = np.where(positive, values / np.where(positive, total, 1.0), uniform)
    return np.where(np.isnan(total), np.nan, normalised)


def _weights(endmembers: Any, source: str, target: str) -> np.ndarray | None:
    """(P,) factors taking ``source`` abundances to unnormalised ``target`` ones."""
    check_convention(source)
    check_convention(target)
    if source == target:
        return None
    peaks = endmember_peaks(endmembers)
    return peaks if target == "shares" else 1.0 / peaks


def convert(abundances: Any, endmembers: Any, source: str, target: str) -> np.ndarray:
    """Abundances (..., P) in convention ``source`` -> the same pixels in ``target``.

    See the module notes for the formulas; ``endmembers`` (P, L) are the spectra the
    abundances refer to (a result's own endmembers). Rows summing to one stay on the simplex;
    a row of zeros becomes uniform, NaN rows stay NaN. Float64; a copy even when
    ``source == target``.
    """
    abundances = np.asarray(abundances, dtype=np.float64)
    weights = _weights(endmembers, source, target)
    if weights is None:
        return abundances.copy()
    if abundances.shape[-1] != len(weights):
        raise InputError(f"{abundances.shape[-1]} abundance maps but {len(weights)} endmembers")
    return normalise_rows(abundances * weights)


def convert_std(std: Any, abundances: Any, endmembers: Any, source: str, target: str) -> np.ndarray:
    """Per-abundance standard deviations (..., P) carried from ``source`` to ``target`` to
    first order, the errors of the P abundances taken as independent.

    With ``c = convert(abundances)`` and the conversion's Jacobian
    ``J_kj = (delta_kj w_k - c_k w_j) / sum_i a_i w_i`` (``w`` the factors of :func:`convert`),
    ``std'_k = sqrt(sum_j J_kj^2 std_j^2)``.
    """
    std = np.asarray(std, dtype=np.float64)
    weights = _weights(endmembers, source, target)
    if weights is None:
        return std.copy()
    abundances = np.asarray(abundances, dtype=np.float64)
    converted = convert(abundances, endmembers, source, target)
    total = (abundances * weights).sum(axis=-1, keepdims=True)
    scaled = std * weights / np.where(total > 0, total, np.nan)  # (..., P): w_j std_j / T
    # J_kj std_j = (delta_kj - c_k) w_j std_j / T
    variance = scaled**2 * (1 - 2 * converted) + converted**2 * (scaled**2).sum(
        axis=-1, keepdims=True
    )
    return np.sqrt(np.maximum(variance, 0.0))


def convert_maps(
    maps: dict[str, np.ndarray], endmembers: Any, source: str, target: str
) -> dict[str, np.ndarray]:
    """An unmixing's maps ``{"abundances": (..., P), ...}`` in convention ``target``.

    ``abundances`` go through :func:`convert`, an ``uncertainty`` map (..., P) through
    :func:`convert_std`; the other maps are returned as they are. Each converted map keeps
    its dtype.
    """
    if check_convention(source) == check_convention(target):
        return dict(maps)
    abundances = maps["abundances"]
    out = dict(maps)
    out["abundances"] = convert(abundances, endmembers, source, target).astype(
        abundances.dtype, copy=False
    )
    if "uncertainty" in maps:
        std = maps["uncertainty"]
        out["uncertainty"] = convert_std(std, abundances, endmembers, source, target).astype(
            std.dtype, copy=False
        )
    return out
