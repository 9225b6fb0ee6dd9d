"""HySime (Bioucas-Dias & Nascimento, IEEE TGRS 46(8), 2008): signal subspace and its size."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..scene import Scene
from ._arrays import valid_pixels

#: Ridge on the band correlation matrix before inverting it, relative to its mean diagonal.
_RIDGE = 1e-6


def estimate_noise(pixels: np.ndarray) -> np.ndarray:
    """Noise (N, L) of (N, L) ``pixels`` by multiple regression: each band is regressed on
    all the others and the residual is its noise.

    With Q = (Y^T Y)^-1 the residual of band i on the other bands is (Y Q)_i / Q_ii, so all
    L regressions cost one L x L inverse (the original loops over the bands).
    """
    n_pixels, n_bands = pixels.shape
    if n_pixels <= n_bands:
        raise InputError(
            f"HySime needs more valid pixels than bands to estimate the noise; "
            f"got {n_pixels} pixels and {n_bands} bands"
        )
    gram = pixels.T @ pixels
    gram += _RIDGE * np.trace(gram) / n_bands * np.eye(n_bands)
    Q = np.linalg.inv(gram)
    return (pixels @ Q) / np.diag(Q)


def noise_variance(pixels: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """(L,) noise variance of each band of (N, L) ``pixels``, from the regression residuals
    of :func:`estimate_noise` (or the given ``noise``).

    Residuals of a fit on L - 1 regressors have N - L + 1 degrees of freedom: dividing by
    that (not N, as the original HySime does) makes the estimate unbiased; the original
    overestimates P several-fold when N is only a few times L.
    """
    noise = estimate_noise(pixels) if noise is None else noise
    n_pixels, n_bands = pixels.shape
    return np.einsum("ij,ij->j", noise, noise) / (n_pixels - n_bands + 1)


def hysime(Y) -> tuple[int, np.ndarray]:
    """Estimate the signal subspace of ``Y`` (..., L) and its dimension, the number of
    endmembers of a linear mixture.

    The noise is estimated by :func:`estimate_noise`; the eigenvectors of the signal
    correlation matrix are then kept when keeping them lowers the mean squared projection
    error, i.e. when the data power on the eigenvector exceeds twice the noise power on it.
    Needs more valid pixels than bands (and is reliable from about 5 L).

    Returns
    -------
    p : int
        Dimension of the signal subspace: the estimated number of endmembers.
    subspace : (L, p) float64
        Orthonormal basis of the subspace, most significant direction first.
    """
    pixels, _ = valid_pixels(Y)
    n_pixels, n_bands = pixels.shape
    noise = estimate_noise(pixels)
    signal = pixels - noise
    noise_corr = np.diag(noise_variance(pixels, noise))
    signal_corr = signal.T @ signal / n_pixels
    data_corr = pixels.T @ pixels / n_pixels
    _, directions = np.linalg.eigh(signal_corr)
    directions = directions[:, ::-1]
    # As in the paper: a small ridge keeps the noise correlation positive definite.
    noise_corr += np.trace(signal_corr) / n_bands / 1e5 * np.eye(n_bands)
    data_power = np.einsum("li,lk,ki->i", directions, data_corr, directions)
    noise_power = np.einsum("li,lk,ki->i", directions, noise_corr, directions)
    cost = -data_power + 2.0 * noise_power
    keep = np.argsort(cost)[: int(np.sum(cost < 0))]
    return len(keep), directions[:, keep]


def estimate_n_endmembers(scene_or_Y) -> int:
    """The number of endmembers of a :class:`~hyperunmix.scene.Scene` or of pixels
    (..., L), by HySime. Masked and non-finite pixels are ignored."""
    pixels = scene_or_Y.pixels() if isinstance(scene_or_Y, Scene) else scene_or_Y
    return hysime(pixels)[0]
