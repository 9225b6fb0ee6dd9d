"""A reference re-estimated from the pixels called purest (EGU-Net, ID-Net, DEQ-Unmix).

An extractor's reference (N-FINDR, VCA) is one pixel per material, the most extreme one,
so it carries that pixel's noise whole, and every label computed against it inherits the
error (on the 20 dB tuning scenes N-FINDR's spectra are 0.22 rad from the truth). The mean
of the pixels that the label rule calls most of a material averages that noise out
(:func:`confident_means`); :func:`refined_reference` is that rule with SNNLS shares.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .pure_pixels import soft_labels


def confident_means(pixels: np.ndarray, abundances: np.ndarray, fraction: float) -> np.ndarray:
    """(P, L): for each material, the mean spectrum of the ``fraction`` of ``pixels`` (N, L)
    with the largest ``abundances`` (N, P) of it (at least one pixel; ties in pixel order).

    A top fraction rather than an abundance threshold: against a noisy reference, few
    pixels reach a high share of it, and a threshold keeps too few of them (on the tuning
    scenes of ``benchmarks/egunet_beyond_labels.py`` a 0.5 threshold lost most of the gain).
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    abundances = np.asarray(abundances, dtype=np.float64)
    if pixels.ndim != 2 or abundances.shape != (pixels.shape[0], abundances.shape[-1]):
        raise InputError(
            f"confident_means needs (N, L) pixels and (N, P) abundances, got "
            f"{pixels.shape} and {abundances.shape}"
        )
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    count = max(1, round(fraction * pixels.shape[0]))
    means = []
    for column in abundances.T:
        chosen = np.argsort(-column, kind="stable")[:count]
        means.append(pixels[chosen].mean(axis=0))
    return np.stack(means)


def refined_reference(pixels: np.ndarray, reference: np.ndarray, fraction: float) -> np.ndarray:
    """(P, L): ``reference`` (P, L) re-estimated from ``pixels`` (N, L): for each material,
    the mean of the ``fraction`` of the pixels with the largest SNNLS share of it on
    ``reference`` as given (:func:`~hyperunmix.deep.pure_pixels.soft_labels`, then
    :func:`confident_means`).

    Shares depend on the reference's scale: pass it at unit peak
    (:func:`hyperunmix.conventions.unit_peak`) for the rule of EGU-Net, ID-Net and
    DEQ-Unmix (``refine_fraction``). The means are of the pixels themselves, in their units.
    """
    return confident_means(pixels, soft_labels(pixels, reference)[0], fraction)
