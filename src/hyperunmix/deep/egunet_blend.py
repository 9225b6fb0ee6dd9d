"""How much of EGU-Net's output is the network's: its maps blended with its label rule's.

The network learns the label rule (NNLS shares of the pixel against the reference) from
noisy pixels, so its maps are a regression of the rule on the spectra: less noise than the
rule, some bias of their own. Which of the two is closer to the truth depends on the noise:
on the tuning scenes of ``benchmarks/egunet_beyond_labels.py`` the spatial-spectral
network's maps were 30 % closer than the rule's at 20 dB and 20 % further at 30 dB (on
Samson 37 % further). The output is therefore
``(1 - w) labels + w network`` with ``w`` from the image (:func:`network_weight`): the share
of the disagreement between the two that the rule's own noise explains.

If the two errors were uncorrelated, with the rule's error variance ``v`` and their mean
squared disagreement ``D``, the blend of least error would be ``w = v / D``. The network
learned from the rule, so its errors may correlate with the rule's and the best weight be
smaller: ``w = factor x v / D``, ``factor`` 0.5 chosen on the tuning scenes, where the
blend's mean aRMSE is flat from 0.5 to 1 (``"ss"``: 0.0356, 0.0352, 0.0351, 0.0353 at
0.35, 0.5, 0.7, 1; ``"pw"``: 0.0390, 0.0388, 0.0387, 0.0388; 3 seeds; 0.5 was chosen on
one seed, where it tied with 0.7). The rule alone scores 0.0462, ``"ss"``'s maps alone
0.0393.
"""

from __future__ import annotations

import numpy as np

from ..conventions import normalise_rows
from ..errors import InputError
from ..linear import nnls

#: The weight of the rule's noise against the disagreement (see the module notes).
NOISE_FACTOR = 0.5


def label_noise(pixels: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The label rule on ``pixels`` (N, L) against ``reference`` (P, L), and its noise.

    Returns ``(labels (N, P), variance (N,))``: the NNLS abundances normalised to sum to
    one, and to first order the summed variance of those shares caused by white noise of
    the pixel: ``s2 tr(J G J^T)`` with ``G = (R R^T)^-1`` (``R`` the reference), ``J = (I
    - labels 1^T) / b`` the derivative of the normalisation at the pixel's brightness ``b``
    (the sum of its NNLS abundances), and ``s2`` the pixel's noise variance per band
    estimated by its NNLS residual, ``||y - R^T a||^2 / (L - P)``.
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
    residual = ((pixels - coefficients @ reference) ** 2).sum(axis=-1) / (n_bands - n_endmembers)
    gram_inverse = np.linalg.pinv(reference @ reference.T)
    ones = np.ones(n_endmembers)
    # tr((I - s 1^T) G (I - 1 s^T)) = tr G - 2 s^T G 1 + (1^T G 1) s^T s
    trace = (
        np.trace(gram_inverse)
        - 2 * labels @ (gram_inverse @ ones)
        + (ones @ gram_inverse @ ones) * (labels**2).sum(axis=-1)
    )
    brightness = coefficients.sum(axis=-1)
    variance = np.where(brightness > 0, residual * trace / np.maximum(brightness, 1e-300) ** 2, 0)
    return labels, variance


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
