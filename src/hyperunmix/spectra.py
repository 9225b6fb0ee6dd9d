"""Spectral libraries: the container, built-in analytic spectra, and resampling to bands.

The analytic library gives smooth, physically plausible reflectance spectra with no data
files, so synthetic scenes work on a fresh install. Each material is a continuum (a level, a
logistic edge and a slope) times Beer-Lambert-like absorption features
``exp(-sum_k depth_k * gauss(lambda; centre_k, width_k))``; a negative depth makes a
reflectance peak (the green peak of vegetation). The features sit at the wavelengths of the
real absorptions they imitate (chlorophyll at 480 / 670 nm and the red edge near 715 nm, leaf
and bound water at 970 / 1200 / 1450 / 1940 nm, Fe3+ near 870-900 nm, Al-OH at 2165 / 2205 nm,
carbonate at 2340 nm, gypsum's bound water at 1450 / 1490 / 1750 / 1940 nm, C-H of polymers at
1215 / 1730 / 2310 nm, ice at 1030 / 1260 / 1500 / 2000 nm); depths and widths are chosen by
eye, not fitted to measurements, so the spectra are plausible shapes, not reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Default synthetic band set: 200 bands from 400 to 2500 nm.
DEFAULT_WAVELENGTHS_NM = (400.0, 2500.0, 200)

# A Gaussian of full width at half maximum f has standard deviation f / FWHM_PER_SIGMA.
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# A band's Gaussian response is integrated at these offsets from its centre, in standard
# deviations: symmetric, so a spectrum linear across the band passes unchanged.
_RESPONSE_NODES = np.linspace(-3.0, 3.0, 61)
# Floor of analytic reflectance: real surfaces never reflect exactly nothing.
_MIN_REFLECTANCE = 0.002


@dataclass(frozen=True)
class SpectralLibrary:
    """A set of reference spectra, several per material when it is a bundle library.

    Attributes
    ----------
    spectra : (K, L) float64
        One spectrum per row.
    labels : (K,) int
        Index into ``names`` of the material of each spectrum.
    names : list of str
        Material names; ``labels`` index into it.
    wavelengths : (L,) float64 or None
        Band centres in nm.
    """

    spectra: np.ndarray
    labels: np.ndarray
    names: list[str]
    wavelengths: np.ndarray | None = None

    def __post_init__(self):
        spectra = np.asarray(self.spectra, dtype=np.float64)
        labels = np.asarray(self.labels, dtype=np.intp)
        if spectra.ndim != 2:
            raise InputError(f"library spectra must be (K, L), got shape {spectra.shape}")
        if labels.shape != (spectra.shape[0],):
            raise InputError(
                f"library labels must be ({spectra.shape[0]},), got shape {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.names)):
            raise InputError(f"library labels must index the {len(self.names)} names")
        object.__setattr__(self, "spectra", spectra)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "names", list(self.names))
        if self.wavelengths is not None:
            wavelengths = np.asarray(self.wavelengths, dtype=np.float64).ravel()
            if wavelengths.size != spectra.shape[1]:
                raise InputError(
                    f"library has {spectra.shape[1]} bands but {wavelengths.size} wavelengths"
                )
            object.__setattr__(self, "wavelengths", wavelengths)

    @property
    def n_spectra(self) -> int:
        return self.spectra.shape[0]

    @property
    def n_bands(self) -> int:
        return self.spectra.shape[1]

    def material(self, name: str) -> np.ndarray:
        """(k, L) spectra of material ``name``."""
        if name not in self.names:
            raise InputError(f"no material {name!r} in the library; it has {self.names}")
        return self.spectra[self.labels == self.names.index(name)]

    def spectrum_names(self) -> list[str]:
        """The material name of each of the K spectra."""
        return [self.names[k] for k in self.labels]

    def resample(self, wavelengths, fwhm=None) -> SpectralLibrary:
        """The library at the band centres ``wavelengths`` (nm); see :func:`resample`."""
        if self.wavelengths is None:
            raise InputError("the library has no wavelengths, so it cannot be resampled")
        spectra = resample(self.spectra, self.wavelengths, wavelengths, fwhm)
        return SpectralLibrary(spectra, self.labels, self.names, np.asarray(wavelengths))


def default_wavelengths() -> np.ndarray:
    """(200,) band centres evenly spaced from 400 to 2500 nm."""
    start, stop, count = DEFAULT_WAVELENGTHS_NM
    return np.linspace(start, stop, count)


def resample(spectra, source_wavelengths, wavelengths, fwhm=None) -> np.ndarray:
    """Resample spectra to new band centres.

    Parameters
    ----------
    spectra : (K, M) array
        Spectra sampled at ``source_wavelengths``.
    source_wavelengths : (M,) array, nm
        Need not be sorted (the USGS 1995 library's are not).
    wavelengths : (L,) array, nm
        Target band centres, inside the source range; any order.
    fwhm : (L,) array or scalar, nm, optional
        Target band widths. Without them, linear interpolation at the centres; with them,
        each band averages the (linearly interpolated) spectrum under a Gaussian response
        of that full width at half maximum, truncated at 3 sigma and at the source range.

    Returns
    -------
    (K, L) float64
    """
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    source = _wavelength_vector(source_wavelengths, "source wavelengths")
    target = _wavelength_vector(wavelengths, "wavelengths")
    if spectra.shape[1] != source.size:
        raise InputError(f"spectra have {spectra.shape[1]} bands but {source.size} wavelengths")
    order = np.argsort(source, kind="stable")
    source, spectra = source[order], spectra[:, order]
    lo, hi = source[0], source[-1]
    if target.min() < lo or target.max() > hi:
        raise InputError(
            f"wavelengths {target.min():.1f}-{target.max():.1f} nm reach outside the "
            f"library's range {lo:.1f}-{hi:.1f} nm; spectra are not extrapolated"
        )
    if fwhm is None:
        return np.stack([np.interp(target, source, s) for s in spectra])
    nodes, weights = _band_response(target, fwhm)
    weights = np.where((nodes >= lo) & (nodes <= hi), weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.stack([np.sum(np.interp(nodes, source, s) * weights, axis=1) for s in spectra])


def _band_response(centres: np.ndarray, fwhm) -> tuple[np.ndarray, np.ndarray]:
    """Where and how much each band sees: (L, S) wavelengths around each centre and their
    Gaussian weights (rows sum to one)."""
    widths = np.asarray(fwhm, dtype=np.float64)
    if widths.size not in (1, centres.size):
        raise InputError(f"fwhm has {widths.size} values for {centres.size} bands")
    widths = np.broadcast_to(widths.ravel(), centres.shape)
    if not np.all(np.isfinite(widths) & (widths > 0)):
        raise InputError("fwhm must be positive and finite, one value or one per band")
    nodes = centres[:, None] + (widths / _FWHM_PER_SIGMA)[:, None] * _RESPONSE_NODES
    weights = np.broadcast_to(np.exp(-0.5 * _RESPONSE_NODES**2), nodes.shape)
    return nodes, weights / weights.sum(axis=1, keepdims=True)


def _wavelength_vector(values, what: str) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float64).ravel()
    if vec.size == 0 or not np.all(np.isfinite(vec)) or vec.min() <= 0:
        raise InputError(f"{what} must be a non-empty vector of positive finite values (nm)")
    return vec


# -- analytic spectra ----------------------------------------------------------------------
@dataclass(frozen=True)
class _AnalyticMaterial:
    """r(lambda) = (level + edge_height * logistic((lambda - edge_nm) / edge_width_nm)
    + slope_per_um * (lambda - 1000 nm) / 1000) * exp(-sum depth * gauss(centre, width))."""

    level: float
    edge_height: float = 0.0
    edge_nm: float = 700.0
    edge_width_nm: float = 50.0
    slope_per_um: float = 0.0
    #: (centre nm, width (sigma) nm, depth); negative depth: a reflectance peak
    features: tuple[tuple[float, float, float], ...] = ()

    def reflectance(self, wavelengths: np.ndarray) -> np.ndarray:
        edge = 1.0 / (1.0 + np.exp(-(wavelengths - self.edge_nm) / self.edge_width_nm))
        continuum = (
            self.level
            + self.edge_height * edge
            + self.slope_per_um * (wavelengths - 1000.0) / 1000.0
        )
        optical_depth = np.zeros_like(wavelengths)
        for centre, width, depth in self.features:
            optical_depth += depth * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
        return np.maximum(continuum * np.exp(-optical_depth), _MIN_REFLECTANCE)


_WATER_BANDS = ((1410.0, 30.0, 0.15), (1910.0, 40.0, 0.3))  # bound water and OH in minerals

ANALYTIC_MATERIALS: dict[str, _AnalyticMaterial] = {
    "Vegetation": _AnalyticMaterial(
        level=0.04,
        edge_height=0.46,
        edge_nm=715.0,
        edge_width_nm=14.0,
        features=(
            (480.0, 35.0, 0.5),
            (550.0, 30.0, -0.8),
            (670.0, 25.0, 0.9),
            (970.0, 30.0, 0.08),
            (1200.0, 40.0, 0.18),
            (1450.0, 70.0, 1.1),
            (1940.0, 90.0, 1.7),
            (2500.0, 500.0, 0.8),
        ),
    ),
    "Dry vegetation": _AnalyticMaterial(
        level=0.08,
        edge_height=0.32,
        edge_nm=680.0,
        edge_width_nm=110.0,
        features=(
            (1450.0, 60.0, 0.3),
            (1730.0, 30.0, 0.12),
            (1940.0, 70.0, 0.5),
            (2100.0, 60.0, 0.35),
            (2300.0, 40.0, 0.15),
        ),
    ),
    "Soil": _AnalyticMaterial(
        level=0.07,
        edge_height=0.28,
        edge_nm=800.0,
        edge_width_nm=250.0,
        slope_per_um=0.02,
        features=((900.0, 80.0, 0.15), *_WATER_BANDS, (2200.0, 40.0, 0.15)),
    ),
    "Sand": _AnalyticMaterial(
        level=0.22,
        edge_height=0.3,
        edge_nm=550.0,
        edge_width_nm=150.0,
        features=((1410.0, 30.0, 0.05), (1910.0, 40.0, 0.08)),
    ),
    "Clay": _AnalyticMaterial(
        level=0.45,
        edge_height=0.3,
        edge_nm=450.0,
        edge_width_nm=60.0,
        slope_per_um=-0.03,
        features=(
            (1400.0, 18.0, 0.35),
            (1910.0, 30.0, 0.15),
            (2165.0, 15.0, 0.3),
            (2208.0, 18.0, 0.45),
        ),
    ),
    "Carbonate": _AnalyticMaterial(
        level=0.5,
        edge_height=0.2,
        edge_nm=420.0,
        edge_width_nm=40.0,
        features=((1995.0, 25.0, 0.15), (2160.0, 25.0, 0.12), (2340.0, 35.0, 0.6)),
    ),
    "Iron oxide": _AnalyticMaterial(
        level=0.05,
        edge_height=0.45,
        edge_nm=580.0,
        edge_width_nm=25.0,
        slope_per_um=0.03,
        features=((870.0, 90.0, 0.6), *_WATER_BANDS),
    ),
    "Water": _AnalyticMaterial(
        level=0.062,
        edge_height=-0.058,
        edge_nm=620.0,
        edge_width_nm=45.0,
        features=((420.0, 60.0, 0.25),),
    ),
    "Turbid water": _AnalyticMaterial(
        level=0.09,
        edge_height=-0.085,
        edge_nm=720.0,
        edge_width_nm=30.0,
        features=((420.0, 50.0, 0.7), (600.0, 60.0, -0.3), (810.0, 20.0, -0.8)),
    ),
    "Gypsum": _AnalyticMaterial(
        level=0.6,
        edge_height=0.25,
        edge_nm=420.0,
        edge_width_nm=40.0,
        slope_per_um=-0.05,
        features=(
            (1000.0, 30.0, 0.08),
            (1200.0, 40.0, 0.15),
            (1450.0, 25.0, 0.7),
            (1490.0, 25.0, 0.6),
            (1750.0, 20.0, 0.25),
            (1940.0, 50.0, 1.0),
            (2215.0, 20.0, 0.2),
        ),
    ),
    "Polymer": _AnalyticMaterial(
        level=0.7,
        edge_height=0.15,
        edge_nm=420.0,
        edge_width_nm=30.0,
        features=(
            (1215.0, 20.0, 0.3),
            (1395.0, 20.0, 0.3),
            (1730.0, 25.0, 0.6),
            (2310.0, 40.0, 0.9),
            (2460.0, 40.0, 0.6),
        ),
    ),
    "Char": _AnalyticMaterial(
        level=0.035,
        edge_height=0.03,
        edge_nm=1600.0,
        edge_width_nm=300.0,
        features=((2200.0, 200.0, 0.2),),
    ),
    "Asphalt": _AnalyticMaterial(
        level=0.05, slope_per_um=0.035, features=((1730.0, 25.0, 0.08), (2310.0, 30.0, 0.12))
    ),
    "Concrete": _AnalyticMaterial(
        level=0.22,
        edge_height=0.12,
        edge_nm=500.0,
        edge_width_nm=80.0,
        slope_per_um=-0.05,
        features=((1910.0, 40.0, 0.2), (2340.0, 30.0, 0.12)),
    ),
    "Snow": _AnalyticMaterial(
        level=0.98,
        edge_height=-0.75,
        edge_nm=1150.0,
        edge_width_nm=110.0,
        features=(
            (1030.0, 50.0, 0.15),
            (1260.0, 60.0, 0.3),
            (1500.0, 90.0, 2.0),
            (2000.0, 120.0, 2.5),
            (2500.0, 150.0, 1.0),
        ),
    ),
}


def analytic_library(wavelengths=None, fwhm=None) -> SpectralLibrary:
    """The built-in analytic spectra (one per material) at ``wavelengths``.

    Parameters
    ----------
    wavelengths : (L,) array, nm, optional
        Default: :func:`default_wavelengths` (200 bands, 400-2500 nm).
    fwhm : (L,) array or scalar, nm, optional
        Band widths: each band then averages the spectrum under its Gaussian response
        (as :func:`resample` does) instead of sampling it at the centre.

    Returns
    -------
    SpectralLibrary with K = 15 materials (:data:`ANALYTIC_MATERIALS`),
    ``labels = arange(K)``, reflectance in [0.002, 1].
    """
    target = (
        default_wavelengths()
        if wavelengths is None
        else _wavelength_vector(wavelengths, "wavelengths")
    )
    materials = ANALYTIC_MATERIALS.values()
    if fwhm is None:
        spectra = np.stack([m.reflectance(target) for m in materials])
    else:
        nodes, weights = _band_response(target, fwhm)
        spectra = np.stack([np.sum(m.reflectance(nodes) * weights, axis=1) for m in materials])
    names = list(ANALYTIC_MATERIALS)
    return SpectralLibrary(spectra, np.arange(len(names)), names, target)
