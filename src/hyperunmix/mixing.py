"""Mixing models: how abundances and endmembers make a pixel spectrum.

Shapes: abundances ``A`` (N, P); endmembers ``E`` (P, L), shared by every pixel, or
(N, P, L), one set per pixel (endmember variability). Every model returns (N, L) float64.

With ``x = E^T a`` the linear mixture of a pixel:

- linear: ``y = x``
- Fan (Fan et al. 2009): ``y = x + sum_{i<j} a_i a_j e_i * e_j``
- GBM, generalised bilinear (Halimi et al. 2011):
  ``y = x + gamma sum_{i<j} a_i a_j e_i * e_j`` with ``gamma`` in [0, 1] (Fan: gamma = 1)
- PPNM, polynomial post-nonlinear (Altmann et al. 2012): ``y = x + b x * x``

(``*`` is the element-wise product over bands.) GBM's original form has one ``gamma`` per
pair of endmembers; here ``gamma`` is one value per pixel (or one for the scene).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: The mixing models :func:`mix` knows.
MODELS = ("linear", "fan", "gbm", "ppnm")


def linear(abundances: np.ndarray, endmembers: np.ndarray) -> np.ndarray:
    """(N, L) linear mixtures ``E^T a`` of (N, P) abundances and (P, L) or (N, P, L)
    endmembers."""
    if endmembers.ndim == 2:
        return abundances @ endmembers
    return np.einsum("np,npl->nl", abundances, endmembers)


def bilinear_interactions(abundances: np.ndarray, endmembers: np.ndarray) -> np.ndarray:
    """(N, L) sums over endmember pairs ``sum_{i<j} a_i a_j e_i * e_j``.

    Computed as ``((sum_i a_i e_i)^2 - sum_i a_i^2 e_i^2) / 2``: O(P) work per pixel
    instead of O(P^2) pairs.
    """
    return 0.5 * (linear(abundances, endmembers) ** 2 - linear(abundances**2, endmembers**2))


def fan(abundances: np.ndarray, endmembers: np.ndarray) -> np.ndarray:
    """(N, L) Fan bilinear mixtures."""
    return gbm(abundances, endmembers, 1.0)


def gbm(abundances: np.ndarray, endmembers: np.ndarray, gamma) -> np.ndarray:
    """(N, L) generalised bilinear mixtures; ``gamma`` a scalar or (N,) in [0, 1]."""
    gamma = _per_pixel(gamma, abundances.shape[0], "gamma")
    if np.any((gamma < 0) | (gamma > 1)):
        raise InputError("the GBM nonlinearity gamma must lie in [0, 1]")
    return linear(abundances, endmembers) + gamma * bilinear_interactions(abundances, endmembers)


def ppnm(abundances: np.ndarray, endmembers: np.ndarray, b) -> np.ndarray:
    """(N, L) polynomial post-nonlinear mixtures; ``b`` a scalar or (N,)."""
    b = _per_pixel(b, abundances.shape[0], "b")
    x = linear(abundances, endmembers)
    return x + b * x**2


def mix(
    abundances: np.ndarray, endmembers: np.ndarray, model: str = "linear", nonlinearity=0.5
) -> np.ndarray:
    """(N, L) mixtures under ``model`` (one of :data:`MODELS`).

    ``nonlinearity`` (scalar or (N,)) is GBM's ``gamma`` or PPNM's ``b``; linear and Fan
    ignore it.
    """
    abundances = np.asarray(abundances, dtype=np.float64)
    endmembers = np.asarray(endmembers, dtype=np.float64)
    if abundances.ndim != 2 or endmembers.ndim not in (2, 3):
        raise InputError(
            f"abundances must be (N, P) and endmembers (P, L) or (N, P, L), got "
            f"{abundances.shape} and {endmembers.shape}"
        )
    if endmembers.shape[-2] != abundances.shape[1] or (
        endmembers.ndim == 3 and endmembers.shape[0] != abundances.shape[0]
    ):
        raise InputError(
            f"abundances {abundances.shape} do not match endmembers {endmembers.shape}"
        )
    if model == "linear":
        return linear(abundances, endmembers)
    if model == "fan":
        return fan(abundances, endmembers)
    if model == "gbm":
        return gbm(abundances, endmembers, nonlinearity)
    if model == "ppnm":
        return ppnm(abundances, endmembers, nonlinearity)
    raise InputError(f"unknown mixing model {model!r}; available: {', '.join(MODELS)}")


def _per_pixel(value, n_pixels: int, what: str) -> np.ndarray:
    """A scalar or (N,) parameter as an (N, 1) column that broadcasts over bands."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_pixels, float(arr))
    if arr.shape != (n_pixels,):
        raise InputError(
            f"{what} must be a scalar or have one value per pixel ({n_pixels}), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} must be finite")
    return arr[:, None]
