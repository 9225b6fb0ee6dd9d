"""Synthetic hyperspectral scenes with complete ground truth.

:func:`make_scene` chooses endmembers from a spectral library, draws abundances, optionally
gives every pixel its own version of each endmember (variability), mixes them (linear,
bilinear or post-nonlinear, see :mod:`hyperunmix.mixing`) and adds noise at a given SNR.
Every random draw comes from one ``numpy.random.Generator(seed)``, in a fixed order, so the
same arguments give the same scene bit for bit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import ndimage, signal

from . import mixing as mixing_models
from .datasets import ABUNDANCE_MAP_FILES, load_abundance_maps, load_library
from .errors import InputError, ScalingWarning
from .scene import Scene, Truth
from .spectra import SpectralLibrary, analytic_library, default_wavelengths

#: Abundance generators :func:`make_scene` knows besides the file maps of
#: :data:`hyperunmix.datasets.ABUNDANCE_MAP_FILES`.
ABUNDANCE_GENERATORS = ("dirichlet", "fields")
NOISE_KINDS = ("white", "correlated")

# Random fields go through softmax(_FIELD_SHARPNESS * z) with z of unit variance: with
# P = 4 about a third of the pixels then have a dominant material above 0.9.
_FIELD_SHARPNESS = 3.0
# Correlated noise: AR(1) along the band axis with this lag-one correlation.
_NOISE_BAND_CORRELATION = 0.8
# Perturbations of the endmembers are smooth over this fraction of the band count.
_PERTURBATION_SMOOTHNESS = 1 / 40
# Random restarts of the greedy endmember choice before giving up on min_angle.
_SELECTION_ATTEMPTS = 100


def make_scene(
    n_rows: int = 64,
    n_cols: int = 64,
    n_endmembers: int = 4,
    *,
    library: str | SpectralLibrary = "analytic",
    wavelengths: Any = None,
    fwhm: Any = None,
    min_angle: float = 0.15,
    abundances: str = "dirichlet",
    alpha: Any = 1.0,
    correlation_length: float | None = None,
    purity: float | None = None,
    mixing: str = "linear",
    nonlinearity: Any = 0.5,
    variability: float = 0.0,
    perturbation: float = 0.0,
    illumination: float = 0.0,
    snr_db: float | None = 30.0,
    noise: str = "white",
    seed: int = 0,
    data_dir: Any = None,
) -> Scene:
    """A synthetic scene and its ground truth.

    Parameters
    ----------
    n_rows, n_cols : int
        Image size H x W.
    n_endmembers : int
        P, the number of materials.
    library : {"analytic", "usgs"} or SpectralLibrary
        Where the endmembers come from: the built-in analytic spectra (no files needed), the
        USGS 1995 library (from the data directory), or any library with wavelengths.
        Spectra are resampled to ``wavelengths``.
    wavelengths : (L,) array, nm, optional
        Band centres; default 200 bands evenly spaced over 400-2500 nm.
    fwhm : (L,) array or scalar, nm, optional
        Band widths: the library is then integrated against Gaussian band responses instead
        of interpolated at the centres.
    min_angle : float
        Smallest spectral angle (rad) allowed between any two chosen endmembers.
    abundances : {"dirichlet", "fields", "spatial2", "spatial_3em", "squares_3em"}
        ``dirichlet``: independent Dirichlet(``alpha``) draws per pixel (no spatial
        structure). ``fields``: smooth Gaussian random fields (one per material, correlation
        length ``correlation_length`` pixels, default max(H, W) / 10) through a softmax.
        The others: fixed spatial maps from the data directory (``spatial2`` is
        100 x 100 x 9, ``spatial_3em`` 50 x 50 x 3, ``squares_3em`` 70 x 70 x 3), cropped to
        H x W from the top-left corner; P must equal their number of maps.
    alpha : float or (P,) array
        Dirichlet concentration: below 1 favours nearly pure pixels, above 1 well mixed ones.
    correlation_length : float, optional
        Standard deviation, in pixels, of the Gaussian smoothing of the random fields.
    purity : float, optional
        Cap on the largest abundance of any pixel, in [1/P, 1]. The excess of a capped
        abundance is shared among the others in proportion to their values (equally when
        they are all zero), which keeps the sum at one and the spatial structure.
    mixing : {"linear", "fan", "gbm", "ppnm"}
        Mixing model, see :mod:`hyperunmix.mixing`.
    nonlinearity : float or (H, W) array
        GBM's ``gamma`` (in [0, 1]) or PPNM's ``b``; per pixel when an array.
    variability : float
        Endmember variability by scaling, in [0, 1): every pixel scales each endmember by an
        independent factor uniform in [1 - variability, 1 + variability].
    perturbation : float
        Endmember variability by additive, spectrally smooth perturbations of standard
        deviation ``perturbation`` times the endmember's mean reflectance (then clipped at
        zero).
    illumination : float
        Per-pixel brightness, in [0, 1): every pixel's mixture is multiplied by a factor
        uniform in [1 - illumination, 1 + illumination] (topography, shadow). The abundances
        stay fractions of the endmember spectra (``truth.convention == "absolute"``), which
        a model without a brightness term can no longer fit exactly.
    snr_db : float or None
        Signal-to-noise ratio ``10 log10(sum y^2 / sum n^2)`` over the whole image, in dB, of
        the expected noise; None for a noiseless scene.
    noise : {"white", "correlated"}
        White Gaussian noise, or Gaussian noise correlated across neighbouring bands (AR(1),
        lag-one correlation 0.8), of the same power per band.
    seed : int
    data_dir : path, optional
        Data directory for ``library="usgs"`` and the file abundance maps.

    Returns
    -------
    Scene
        ``cube`` (H, W, L) float32, ``wavelengths``, and ``truth`` with ``abundances``
        (H, W, P), the reference ``endmembers`` (P, L), material ``names``,
        ``pixel_endmembers`` (H, W, P, L) when variability or perturbation is on, and
        ``extras["nonlinear_share"]`` (H, W), the energy of the nonlinear part over the
        energy of the noiseless pixel, for non-linear mixing. ``metadata["synthetic"]``
        holds the arguments.
    """
    n_rows, n_cols, n_endmembers = _check_size(n_rows, n_cols, n_endmembers)
    _check_options(
        abundances,
        mixing,
        noise,
        snr_db,
        purity,
        n_endmembers,
        variability,
        perturbation,
        illumination,
        min_angle,
    )
    n_pixels = n_rows * n_cols
    rng = np.random.default_rng(seed)

    lib = _reference_library(library, wavelengths, fwhm, data_dir)
    chosen = choose_endmembers(lib.spectra, n_endmembers, min_angle, rng)
    endmembers = lib.spectra[chosen]  # (P, L)

    abundance_image = _draw_abundances(
        abundances, n_rows, n_cols, n_endmembers, alpha, correlation_length, rng, data_dir
    )  # (H, W, P)
    if purity is not None:
        abundance_image = cap_purity(abundance_image, purity)
    pixel_abundances = abundance_image.reshape(n_pixels, n_endmembers)

    pixel_endmembers = None  # (N, P, L) when endmembers vary from pixel to pixel
    if variability > 0 or perturbation > 0:
        pixel_endmembers = vary_endmembers(endmembers, n_pixels, variability, perturbation, rng)
    mixed = endmembers if pixel_endmembers is None else pixel_endmembers
    clean = mixing_models.mix(
        pixel_abundances, mixed, mixing, _per_pixel(nonlinearity, n_rows, n_cols)
    )  # (N, L)
    extras = {}
    if mixing != "linear":
        nonlinear_part = clean - mixing_models.linear(pixel_abundances, mixed)
        extras["nonlinear_share"] = (
            np.sum(nonlinear_part**2, axis=1) / np.sum(clean**2, axis=1)
        ).reshape(n_rows, n_cols)
    if illumination > 0:  # after the nonlinear share, a ratio that brightness leaves alone
        clean = clean * rng.uniform(1 - illumination, 1 + illumination, size=(n_pixels, 1))
    observed = clean if snr_db is None else clean + draw_noise(clean, snr_db, noise, rng)

    truth = Truth(
        abundances=abundance_image,
        endmembers=endmembers,
        names=[lib.names[k] for k in lib.labels[chosen]],
        pixel_endmembers=None
        if pixel_endmembers is None
        else pixel_endmembers.reshape(n_rows, n_cols, n_endmembers, -1),
        # Fractions of the library spectra at their own scale: the scene is mixed from them.
        convention="absolute",
        extras=extras,
    )
    settings = {
        "library": library if isinstance(library, str) else "custom",
        "abundances": abundances,
        "alpha": _plain(alpha),
        "purity": purity,
        "mixing": mixing,
        "nonlinearity": _plain(nonlinearity),
        "variability": variability,
        "perturbation": perturbation,
        "illumination": illumination,
        "snr_db": snr_db,
        "noise": noise,
        "min_angle": min_angle,
        "seed": seed,
    }
    with warnings.catch_warnings():
        # Noise on dark bands (water beyond 700 nm) makes a few values negative by design.
        warnings.simplefilter("ignore", ScalingWarning)
        return Scene(
            observed.reshape(n_rows, n_cols, -1),
            lib.wavelengths,
            fwhm=None
            if fwhm is None or lib.wavelengths is None
            else np.broadcast_to(fwhm, lib.wavelengths.shape),
            truth=truth,
            name="synthetic",
            metadata={"synthetic": settings},
        )


# -- endmembers ---------------------------------------------------------------------------
def _reference_library(library, wavelengths, fwhm, data_dir) -> SpectralLibrary:
    """The library to choose endmembers from, at the scene's bands."""
    if isinstance(library, SpectralLibrary):
        if wavelengths is None and fwhm is None:
            return library
        return library.resample(library.wavelengths if wavelengths is None else wavelengths, fwhm)
    target = default_wavelengths() if wavelengths is None else wavelengths
    if library == "analytic":
        return analytic_library(target, fwhm)
    if library == "usgs":
        return load_library("usgs", data_dir).resample(target, fwhm)
    raise InputError(f"library must be 'analytic', 'usgs' or a SpectralLibrary, got {library!r}")


def _pairwise_angles(spectra: np.ndarray) -> np.ndarray:
    """(K, K) spectral angles (rad) between the rows of a (K, L) matrix, from the Gram
    matrix: O(K^2) memory, where a broadcast difference would take O(K^2 L)."""
    unit = spectra / np.linalg.norm(spectra, axis=1, keepdims=True)
    return np.arccos(np.clip(unit @ unit.T, -1.0, 1.0))


def choose_endmembers(
    spectra: np.ndarray, n_endmembers: int, min_angle: float, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``n_endmembers`` rows of ``spectra`` (K, L) at least ``min_angle`` rad
    apart pairwise: a greedy pass over the rows in random order, repeated with a new order
    until one succeeds."""
    angles = _pairwise_angles(spectra)
    for _ in range(_SELECTION_ATTEMPTS):
        chosen: list[int] = []
        for k in rng.permutation(len(spectra)):
            if not chosen or angles[k, chosen].min() >= min_angle:
                chosen.append(int(k))
                if len(chosen) == n_endmembers:
                    return np.array(chosen)
    raise InputError(
        f"could not find {n_endmembers} spectra at least {min_angle} rad apart among the "
        f"{len(spectra)} of the library; lower min_angle or n_endmembers"
    )


def vary_endmembers(
    endmembers: np.ndarray,
    n_pixels: int,
    variability: float,
    perturbation: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, P, L) per-pixel versions of (P, L) ``endmembers``.

    Each pixel scales each endmember by a factor uniform in [1 - variability,
    1 + variability] (illumination, topography) and adds a perturbation smooth across bands
    (intrinsic variation) of standard deviation ``perturbation`` x the endmember's mean.
    Reflectance is clipped at zero.
    """
    n_endmembers, n_bands = endmembers.shape
    scales = rng.uniform(1 - variability, 1 + variability, size=(n_pixels, n_endmembers))
    varied = scales[:, :, None] * endmembers[None]
    if perturbation > 0:
        curves = ndimage.gaussian_filter1d(
            rng.standard_normal((n_pixels, n_endmembers, n_bands)),
            sigma=max(1.0, n_bands * _PERTURBATION_SMOOTHNESS),
            axis=-1,
            mode="nearest",
        )
        curves /= curves.std()
        varied += perturbation * endmembers.mean(axis=1)[None, :, None] * curves
    return np.maximum(varied, 0.0)


# -- abundances ---------------------------------------------------------------------------
def _draw_abundances(
    kind, n_rows, n_cols, n_endmembers, alpha, correlation_length, rng, data_dir
) -> np.ndarray:
    if kind == "dirichlet":
        return dirichlet_abundances(n_rows, n_cols, n_endmembers, alpha, rng)
    if kind == "fields":
        return field_abundances(n_rows, n_cols, n_endmembers, correlation_length, rng)
    maps = load_abundance_maps(kind, data_dir)
    height, width, n_maps = maps.shape
    if n_maps != n_endmembers:
        raise InputError(
            f"the {kind!r} abundance maps hold {n_maps} materials; pass n_endmembers={n_maps}"
        )
    if n_rows > height or n_cols > width:
        raise InputError(
            f"the {kind!r} abundance maps are {height} x {width} pixels; "
            f"ask for at most that many rows and columns"
        )
    return maps[:n_rows, :n_cols]


def dirichlet_abundances(
    n_rows: int, n_cols: int, n_endmembers: int, alpha, rng: np.random.Generator
) -> np.ndarray:
    """(H, W, P) independent Dirichlet(alpha) draws; ``alpha`` scalar or (P,)."""
    concentration = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_endmembers,))
    if not np.all(np.isfinite(concentration) & (concentration > 0)):
        raise InputError(f"Dirichlet alpha must be positive, got {alpha!r}")
    return rng.dirichlet(concentration, size=(n_rows, n_cols))


def field_abundances(
    n_rows: int,
    n_cols: int,
    n_endmembers: int,
    correlation_length: float | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """(H, W, P) spatially smooth abundances: one Gaussian random field per material
    (white noise smoothed by a Gaussian of ``correlation_length`` pixels, default
    max(H, W) / 10, standardised), mapped to the simplex by a softmax."""
    length = max(n_rows, n_cols) / 10 if correlation_length is None else correlation_length
    if not length > 0:
        raise InputError(f"correlation_length must be positive, got {correlation_length!r}")
    fields = ndimage.gaussian_filter(
        rng.standard_normal((n_rows, n_cols, n_endmembers)), sigma=(length, length, 0), mode="wrap"
    )
    fields -= fields.mean(axis=(0, 1))
    fields /= fields.std(axis=(0, 1))
    logits = _FIELD_SHARPNESS * fields
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def cap_purity(abundances: np.ndarray, purity: float) -> np.ndarray:
    """Abundances (..., P) with no entry above ``purity``, still on the simplex.

    Capped entries give their excess to the uncapped ones in proportion to their values
    (equally when those are all zero); repeated until no entry exceeds the cap, which takes
    at most P rounds because every round caps at least one more entry.
    """
    n_endmembers = abundances.shape[-1]
    _check_purity(purity, n_endmembers)
    capped = np.array(abundances, dtype=np.float64)
    for _ in range(n_endmembers):
        over = capped > purity
        if not over.any():
            break
        excess = np.sum(np.where(over, capped - purity, 0.0), axis=-1, keepdims=True)
        capped = np.minimum(capped, purity)
        free = capped < purity
        weights = np.where(free, capped, 0.0)
        total = weights.sum(axis=-1, keepdims=True)
        weights = np.where(total > 0, weights, free.astype(np.float64))
        capped += excess * weights / weights.sum(axis=-1, keepdims=True)
    return capped


# -- noise ----------------------------------------------------------------------------------
def draw_noise(clean: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(N, L) Gaussian noise whose expected power is that of ``clean`` (N, L) over
    10^(snr_db / 10); white, or correlated across bands (``kind="correlated"``)."""
    sigma = np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10))
    white = rng.standard_normal(clean.shape)
    if kind == "white":
        return sigma * white
    # Stationary AR(1) over bands: n_0 = w_0, n_l = rho n_{l-1} + sqrt(1 - rho^2) w_l,
    # so every band keeps unit variance before scaling.
    rho = _NOISE_BAND_CORRELATION
    innovation = np.sqrt(1 - rho**2)
    initial_state = (1 - innovation) * white[:, :1]
    correlated, _ = signal.lfilter([innovation], [1.0, -rho], white, axis=-1, zi=initial_state)
    return sigma * correlated


# -- validation -----------------------------------------------------------------------------
def _check_size(n_rows, n_cols, n_endmembers) -> tuple[int, int, int]:
    sizes = (n_rows, n_cols, n_endmembers)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sizes):
        raise InputError(f"n_rows, n_cols and n_endmembers must be integers, got {sizes}")
    if n_rows < 1 or n_cols < 1:
        raise InputError(f"the image needs at least one row and column, got {n_rows} x {n_cols}")
    if n_endmembers < 2:
        raise InputError(f"n_endmembers must be at least 2, got {n_endmembers}")
    return int(n_rows), int(n_cols), int(n_endmembers)


def _check_options(
    abundances,
    mixing,
    noise,
    snr_db,
    purity,
    n_endmembers,
    variability,
    perturbation,
    illumination,
    min_angle,
) -> None:
    kinds = ABUNDANCE_GENERATORS + tuple(ABUNDANCE_MAP_FILES)
    if abundances not in kinds:
        raise InputError(f"abundances must be one of {', '.join(kinds)}; got {abundances!r}")
    if mixing not in mixing_models.MODELS:
        raise InputError(f"mixing must be one of {', '.join(mixing_models.MODELS)}; got {mixing!r}")
    if noise not in NOISE_KINDS:
        raise InputError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
    if snr_db is not None and not np.isfinite(snr_db):
        raise InputError(f"snr_db must be a finite number of dB or None, got {snr_db!r}")
    if purity is not None:
        _check_purity(purity, n_endmembers)
    if not 0 <= variability < 1:
        raise InputError(f"variability must lie in [0, 1), got {variability}")
    if not perturbation >= 0:
        raise InputError(f"perturbation must be non-negative, got {perturbation}")
    if not 0 <= illumination < 1:
        raise InputError(f"illumination must lie in [0, 1), got {illumination}")
    if not min_angle >= 0:
        raise InputError(f"min_angle must be non-negative (rad), got {min_angle}")


def _check_purity(purity: float, n_endmembers: int) -> None:
    # A cap below 1/P leaves no point of the simplex (tolerance for purity=1/P in floats).
    if not 1 / n_endmembers - 1e-12 <= purity <= 1:
        raise InputError(f"purity must lie in [1/P, 1] = [{1 / n_endmembers:.3g}, 1], got {purity}")


def _per_pixel(value, n_rows: int, n_cols: int) -> np.ndarray | float:
    """A scalar, or an (H, W) map flattened to (N,) in the pixel order."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    if arr.shape != (n_rows, n_cols):
        raise InputError(
            f"nonlinearity must be a scalar or an ({n_rows}, {n_cols}) map, got shape {arr.shape}"
        )
    return arr.reshape(-1)


def _plain(value):
    """A JSON-friendly record of a scalar or vector parameter (maps only by their shape)."""
    arr = np.asarray(value)
    return arr.tolist() if arr.ndim <= 1 else f"map {arr.shape}"
