"""How much of EGU-Net's output is the network's: its maps blended with its label rule's.

The network learns the label rule (NNLS shares of the pixel against the reference) from
noisy pixels, so its maps are a regression of the rule on the spectra: less noise than the
rule, some bias of their own. Which of the two is closer to the truth depends on the noise:
on the tuning scenes of ``benchmarks/egunet_beyond_labels.py`` the spatial-spectral
network's maps were 30 % closer than the rule's at 20 dB and 21 % further at 30 dB (on
Samson 44 % further). The output is therefore
``(1 - w) labels + w network`` with ``w`` from the image (:func:`network_weight`): the share
of the disagreement between the two that the rule's own noise explains.

If the two errors were uncorrelated, with the rule's error variance ``v`` and their mean
squared disagreement ``D``, the blend of least error would be ``w = v / D``. The network
learned from the rule, so its errors may correlate with the rule's and the best weight be
smaller: ``w = factor x v / D``, ``factor`` 0.5 chosen on the tuning scenes, where the
blend's mean aRMSE is flat from 0.5 to 1 (3 seeds, re-measured with the current training:
``"ss"`` 0.0354, 0.0351, 0.0349, 0.0351 at 0.35, 0.5, 0.7, 1; ``"pw"`` 0.0383, 0.0381,
0.0380, 0.0383). The rule alone scores 0.0462, ``"ss"``'s maps alone 0.0393.

The rule's noise ``v`` is that of the image's noise, estimated per band by HySime's
regression (:func:`hyperunmix.linear.hysime.noise_variance`), not each pixel's misfit to
the linear model: a misfit the network learned from its labels is in both maps, and
averaging them does not remove it. On the synthetic scenes the two estimates agree (tuning
scenes: mean aRMSE 0.0351 either way for ``"ss"``, 0.0381 for ``"pw"``; scenes of the
tuning seed at 40 dB with bilinear mixing, variability or illumination: weights 0.01 to
0.03 either way, aRMSE within 1e-4), so the scenes that choose defaults cannot tell them
apart, and the choice rests on the argument above. On the real scenes the residual is
mostly misfit (Samson, Jasper Ridge: a residual-based ``v`` 30 and 5 times HySime's), and
it gave the network's maps, which alone score 44 % and 25 % worse than the rule there,
weights 0.09 and 0.27 instead of 0.003 and 0.06. Reported, not chosen on: ``"ss"`` scores
0.0289 / 0.0454 there against 0.0290 / 0.0465 with the residuals (the rule alone 0.0289 /
0.0454), ``"pw"`` 0.0288 / 0.0448 against 0.0285 / 0.0434.
"""

from __future__ import annotations

import numpy as np

from ..conventions import normalise_rows
from ..errors import InputError
from ..linear import nnls
from ..linear.hysime import noise_variance

#: The weight of the rule's noise against the disagreement (see the module notes).
NOISE_FACTOR = 0.5


def label_noise(
    pixels: np.ndarray, reference: np.ndarray, band_variance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The label rule on ``pixels`` (N, L) against ``reference`` (P, L), and its noise.

    Returns ``(labels (N, P), variance (N,))``: the NNLS abundances normalised to sum to
    one, and to first order the summed variance of those shares caused by the noise of the
    pixel: ``tr(J C J^T)`` with ``C = G R S R^T G`` the covariance of the least-squares
    abundances (``G = (R R^T)^-1``, ``R`` the reference, ``S`` the noise covariance) and
    ``J = (I - labels 1^T) / b`` the derivative of the normalisation at the pixel's
    brightness ``b`` (the sum of its NNLS abundances).

    ``band_variance`` (L,): the noise variance of each band, ``S`` its diagonal (as
    :func:`hyperunmix.linear.hysime.noise_variance` estimates it from the image). None:
    white noise of each pixel's NNLS residual variance per band, ``||y - R^T a||^2 / (L -
    P)``, which also counts what the linear model misses (nonlinear mixing, variability,
    a reference off the truth) as noise.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    n_endmembers, n_bands = reference.shape
    if n_bands <= n_endmembers:
        raise InputError(
            f"the label noise needs more bands than endmembers, got {n_bands} bands and "
            f"{n_endmembers} endmembers"
        )
    coefficients = np.asarray(nnls(pixels, reference), dtype=np.float64)
    labels = normalise_rows(coefficients)
    gram_inverse = np.linalg.pinv(reference @ reference.T)
    if band_variance is None:
        scale = ((pixels - coefficients @ reference) ** 2).sum(axis=-1) / (n_bands - n_endmembers)
        covariance = gram_inverse
    else:
        scale = 1.0
        weighted = (reference * np.asarray(band_variance, dtype=np.float64)) @ reference.T
        covariance = gram_inverse @ weighted @ gram_inverse
    ones = np.ones(n_endmembers)
    # tr((I - s 1^T) C (I - 1 s^T)) = tr C - 2 s^T C 1 + (1^T C 1) s^T s
    trace = (
        np.trace(covariance)
        - 2 * labels @ (covariance @ ones)
        + (ones @ covariance @ ones) * (labels**2).sum(axis=-1)
    )
    brightness = coefficients.sum(axis=-1)
    variance = np.where(brightness > 0, scale * trace / np.maximum(brightness, 1e-300) ** 2, 0)
    return labels, variance


def band_noise(pixels: np.ndarray) -> np.ndarray | None:
    """(L,) noise variance of each band of (N, L) ``pixels`` by HySime's regression
    (:func:`hyperunmix.linear.hysime.noise_variance`), the ``band_variance`` of
    :func:`label_noise`; None when there are no more pixels than bands to regress on (each
    pixel's residual then stands in for the noise)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    return noise_variance(pixels) if pixels.shape[0] > pixels.shape[1] else None


def network_weight(
    labels: np.ndarray,
    network: np.ndarray,
    variance: np.ndarray,
    factor: float = NOISE_FACTOR,
) -> float:
    """``min(1, factor x mean(variance) / mean ||labels - network||^2)``: the weight of
    the network's maps ``network`` (N, P) against the rule's ``labels`` (N, P) whose noise
    ``variance`` (N,) :func:`label_noise` gives. 1 where the two agree exactly."""
    disagreement = float(np.mean(np.sum((np.asarray(labels) - network) ** 2, axis=-1)))
    if disagreement <= 0:
        return 1.0
    return float(min(1.0, factor * float(np.mean(variance)) / disagreement))
