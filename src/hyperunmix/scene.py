"""The hyperspectral scene: a cube with its wavelengths, masks, georeferencing and truth.

Conventions, everywhere in the package: the image is (H, W, L) with bands last; the pixel
matrix is (N, L) in C (row-major) order of the image; endmembers are (P, L); abundances are
(N, P) or (H, W, P).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .conventions import check_convention
from .errors import InputError, ScalingWarning


@dataclass(frozen=True)
class GeoInfo:
    """Georeferencing of the pixel grid.

    Attributes
    ----------
    crs : str or None
        Coordinate reference system as WKT (or an ``EPSG:`` string).
    transform : tuple of 6 floats
        Affine pixel-to-map transform in rasterio / ``affine.Affine`` order
        ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``.
    """

    crs: str | None
    transform: tuple[float, float, float, float, float, float]

    def __post_init__(self):
        if len(self.transform) != 6:
            raise InputError(f"transform needs 6 coefficients, got {len(self.transform)}")
        object.__setattr__(self, "transform", tuple(float(v) for v in self.transform))


@dataclass
class Truth:
    """Ground truth of a scene, any part of which may be missing.

    Attributes
    ----------
    abundances : (H, W, P) float array or None
    endmembers : (P, L) float array or None
    names : list of P str or None
        Material names.
    pixel_endmembers : (H, W, P, L) float array or None
        Per-pixel endmembers, for scenes with endmember variability.
    endmember_scale : {"absolute", "shape"}
        ``"shape"`` when the reference spectra are normalised (Samson's are max-normalised
        to 1) so they can be compared by angle (SAD) only, not by amplitude.
    convention : {"absolute", "shares"}
        What the true abundances are fractions of (:mod:`hyperunmix.conventions`):
        ``"absolute"``, fractions of the endmember spectra at their own scale (scenes mixed
        from library spectra); ``"shares"``, shares of unit-peak spectra whatever a
        pixel's brightness (the Samson and Jasper Ridge references). Results are scored in
        this convention.
    extras : dict
        Other per-pixel truth maps, e.g. ``"nonlinear_share"`` (H, W) for bilinear scenes.
    """

    abundances: np.ndarray | None = None
    endmembers: np.ndarray | None = None
    names: list[str] | None = None
    pixel_endmembers: np.ndarray | None = None
    endmember_scale: str = "absolute"
    convention: str = "absolute"
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_endmembers(self) -> int | None:
        for arr, axis in ((self.abundances, -1), (self.endmembers, 0)):
            if arr is not None:
                return arr.shape[axis]
        return None if self.names is None else len(self.names)


def default_names(n_endmembers: int) -> list[str]:
    """``endmember_1`` ... ``endmember_P``: the names of materials nobody named, in metrics,
    map bands, figures and endmember CSV files alike."""
    return [f"endmember_{k + 1}" for k in range(n_endmembers)]


class Scene:
    """A hyperspectral image and everything that travels with it from input to output.

    Parameters
    ----------
    cube : array-like, (H, W, L)
        Reflectance (or radiance) cube, bands last. Stored as float32. Integer data are
        accepted with a :class:`~hyperunmix.errors.ScalingWarning` unless ``scale`` is given.
    wavelengths : (L,) array-like, optional
        Band centres in nanometres.
    fwhm : (L,) array-like, optional
        Band widths in nanometres.
    bad_bands : sequence or array of int, optional
        Indices of bands flagged bad (water absorption, noisy detectors). They stay in the
        cube; :meth:`drop_bad_bands` removes them.
    mask : (H, W) bool array, optional
        True for valid pixels. Pixels with any non-finite value are always invalid.
    geo : GeoInfo, optional
        CRS and affine transform of the source, carried to the output maps.
    truth : Truth, optional
    name : str
    scale : float, optional
        Factor applied to the cube on construction (e.g. ``1/5000`` for Jasper Ridge).
    nodata : float, optional
        Value marking missing pixels in the source (all bands equal to it -> invalid).
    metadata : dict, optional
        Free-form source metadata (file path, format, band names).
    """

    def __init__(
        self,
        cube: Any,
        wavelengths: Any = None,
        *,
        fwhm: Any = None,
        bad_bands: Sequence[int] | NDArray[np.integer] | None = None,
        mask: Any = None,
        geo: GeoInfo | None = None,
        truth: Truth | None = None,
        name: str = "scene",
        scale: float | None = None,
        nodata: float | None = None,
        metadata: dict | None = None,
    ):
        raw = _checked_array(cube)
        # No-data is a value of the source's encoding, so it is found before any scaling.
        missing = None if nodata is None else _all_bands(raw, lambda rows: rows == nodata)
        cube = _as_float32(raw, scale)
        n_rows, n_cols, n_bands = cube.shape
        self.cube: np.ndarray = cube
        self.wavelengths = _optional_band_vector(wavelengths, n_bands, "wavelengths")
        self.fwhm = _optional_band_vector(fwhm, n_bands, "fwhm")
        self.bad_bands = _band_indices(bad_bands, n_bands)
        self.mask = _valid_mask(cube, mask, missing)
        self.geo = geo
        self.name = name
        self.metadata = dict(metadata or {})
        self.truth = truth
        if truth is not None:
            _check_truth(truth, n_rows, n_cols, n_bands)
        _warn_on_suspicious_values(cube, self.mask)

    # -- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, L)."""
        return self.cube.shape

    @property
    def n_rows(self) -> int:
        return self.cube.shape[0]

    @property
    def n_cols(self) -> int:
        return self.cube.shape[1]

    @property
    def n_bands(self) -> int:
        return self.cube.shape[2]

    @property
    def n_pixels(self) -> int:
        """Number of valid pixels."""
        return int(self.mask.sum())

    # -- pixel matrix <-> image ----------------------------------------------------------
    def pixels(self, dtype: Any = np.float64) -> np.ndarray:
        """The valid pixels as an (N, L) matrix, in row-major image order."""
        return np.ascontiguousarray(self.cube[self.mask], dtype=dtype)

    def to_image(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Scatter per-pixel ``values`` (N, ...) of the valid pixels back to (H, W, ...)."""
        values = np.asarray(values)
        if values.shape[0] != self.n_pixels:
            raise InputError(
                f"expected one row per valid pixel ({self.n_pixels}), got {values.shape[0]}"
            )
        dtype = np.result_type(values.dtype, np.float32)
        image = np.full((self.n_rows, self.n_cols) + values.shape[1:], fill, dtype=dtype)
        image[self.mask] = values
        return image

    # -- derived scenes ----------------------------------------------------------------
    def drop_bad_bands(self) -> Scene:
        """A new scene without the bands listed in ``bad_bands`` (truth spectra too)."""
        keep = np.setdiff1d(np.arange(self.n_bands), self.bad_bands)
        return self.select_bands(keep)

    def select_bands(self, bands: Sequence[int] | np.ndarray) -> Scene:
        """A new scene with only ``bands`` (indices, or a boolean mask over bands)."""
        index = np.arange(self.n_bands)[np.asarray(bands)]
        truth = None
        if self.truth is not None:
            truth = dataclasses.replace(
                self.truth,
                endmembers=None
                if self.truth.endmembers is None
                else self.truth.endmembers[:, index],
                pixel_endmembers=None
                if self.truth.pixel_endmembers is None
                else self.truth.pixel_endmembers[..., index],
            )
        return Scene(
            self.cube[:, :, index],
            None if self.wavelengths is None else self.wavelengths[index],
            fwhm=None if self.fwhm is None else self.fwhm[index],
            bad_bands=np.flatnonzero(np.isin(index, self.bad_bands)),
            mask=self.mask,
            geo=self.geo,
            truth=truth,
            name=self.name,
            metadata=self.metadata,
        )

    def __repr__(self) -> str:
        wl = (
            "no wavelengths"
            if self.wavelengths is None
            else f"{self.wavelengths[0]:.0f}-{self.wavelengths[-1]:.0f} nm"
        )
        truth = "" if self.truth is None else f", truth P={self.truth.n_endmembers}"
        return (
            f"Scene({self.name!r}, {self.n_rows}x{self.n_cols} px, {self.n_bands} bands, "
            f"{wl}, {self.n_pixels} valid px{truth})"
        )


# -- validation helpers ------------------------------------------------------------------
def _checked_array(cube: Any) -> np.ndarray:
    arr = np.asarray(cube)
    if arr.ndim != 3:
        raise InputError(
            f"a scene cube must be 3-D (rows, cols, bands), got shape {arr.shape}; "
            "reshape a pixel matrix (N, L) with Y.reshape(H, W, L)"
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(f"a scene cube must be numeric, got dtype {arr.dtype}")
    if min(arr.shape) == 0:
        raise InputError(f"a scene cube cannot have an empty axis, got shape {arr.shape}")
    return arr


def _as_float32(arr: np.ndarray, scale: float | None) -> np.ndarray:
    if arr.dtype.kind in "biu" and scale is None:
        warnings.warn(
            f"cube is {arr.dtype} (digital numbers); converted to float32 unscaled. "
            "Pass scale= (e.g. 1/10000 for reflectance x 10000) to get physical units.",
            ScalingWarning,
            stacklevel=3,
        )
    out = arr.astype(np.float32)
    if scale is not None:
        out *= np.float32(scale)
    return out


def _optional_band_vector(values: Any, n_bands: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    vec = np.asarray(values, dtype=np.float64).ravel()
    if vec.size != n_bands:
        raise InputError(f"{what} has {vec.size} values but the cube has {n_bands} bands")
    if not np.all(np.isfinite(vec)):
        raise InputError(f"{what} contains non-finite values")
    return vec


def _band_indices(bands: Sequence[int] | NDArray[np.integer] | None, n_bands: int) -> np.ndarray:
    if bands is None:
        return np.zeros(0, dtype=np.intp)
    idx = np.unique(np.asarray(bands, dtype=np.intp).ravel())
    if idx.size and (idx[0] < 0 or idx[-1] >= n_bands):
        raise InputError(f"bad_bands indices must lie in [0, {n_bands}), got {idx.tolist()}")
    return idx


#: Values per block of rows in the checks of a cube: the checks' boolean arrays take a
#: block's size (16 MiB) instead of the cube's, one byte a value.
_CHECK_BLOCK_VALUES = 2**24


def row_blocks(n_rows: int, values_per_row: int, block_values: int) -> list[slice]:
    """Slices of ``n_rows`` rows of ``values_per_row`` values, about ``block_values`` values
    each (at least one row): for work on a cube whose temporaries should not take its size."""
    step = max(1, block_values // max(values_per_row, 1))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def _row_blocks(cube: np.ndarray) -> list[slice]:
    """Blocks of whole rows of ``cube`` (H, W, L), about ``_CHECK_BLOCK_VALUES`` values each."""
    return row_blocks(cube.shape[0], cube.shape[1] * cube.shape[2], _CHECK_BLOCK_VALUES)


def _all_bands(cube: np.ndarray, test: Any) -> np.ndarray:
    """(H, W) bool: ``test`` (elementwise, on a block of rows) holds in every band."""
    out = np.empty(cube.shape[:2], dtype=bool)
    for rows in _row_blocks(cube):
        np.all(test(cube[rows]), axis=2, out=out[rows])
    return out


def _valid_mask(cube: np.ndarray, mask: Any, missing: np.ndarray | None) -> np.ndarray:
    valid = _all_bands(cube, np.isfinite)
    if missing is not None:
        valid &= ~missing
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != cube.shape[:2]:
            raise InputError(f"mask shape {mask.shape} does not match the image {cube.shape[:2]}")
        valid &= mask.astype(bool)
    if not valid.any():
        raise InputError("the scene has no valid pixel (all NaN, no-data or masked)")
    return valid


def _warn_on_suspicious_values(cube: np.ndarray, valid: np.ndarray) -> None:
    # Counted block by block: the valid pixels gathered at once would copy the cube.
    negatives = sum(np.count_nonzero(cube[rows][valid[rows]] < 0) for rows in _row_blocks(cube))
    negative_share = negatives / (np.count_nonzero(valid) * cube.shape[2])
    if negative_share > 0.01:
        warnings.warn(
            f"{negative_share:.1%} of the values are negative; unmixing assumes non-negative "
            "reflectance (check the atmospheric correction or drop the bad bands)",
            ScalingWarning,
            stacklevel=3,
        )


def _check_truth(truth: Truth, n_rows: int, n_cols: int, n_bands: int) -> None:
    p = truth.n_endmembers
    if truth.abundances is not None:
        a = np.asarray(truth.abundances)
        if a.ndim != 3 or a.shape[:2] != (n_rows, n_cols):
            raise InputError(
                f"truth abundances must be (H, W, P) = ({n_rows}, {n_cols}, P), got {a.shape}"
            )
        truth.abundances = a.astype(np.float64, copy=False)
    if truth.endmembers is not None:
        e = np.asarray(truth.endmembers, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != n_bands:
            raise InputError(f"truth endmembers must be (P, L) with L = {n_bands}, got {e.shape}")
        if e.shape[0] != p:
            raise InputError(f"truth has {p} abundance maps but {e.shape[0]} endmembers")
        truth.endmembers = e
    if truth.pixel_endmembers is not None:
        pe = np.asarray(truth.pixel_endmembers)
        if pe.shape != (n_rows, n_cols, p, n_bands):
            raise InputError(
                f"truth pixel_endmembers must be (H, W, P, L) = "
                f"({n_rows}, {n_cols}, {p}, {n_bands}), got {pe.shape}"
            )
    if truth.names is not None and p is not None and len(truth.names) != p:
        raise InputError(f"truth names {list(truth.names)} do not match P = {p}")
    if p is not None and p > n_bands:
        raise InputError(f"{p} endmembers cannot be resolved from {n_bands} bands (P > L)")
    if truth.endmember_scale not in ("absolute", "shape"):
        raise InputError("truth endmember_scale must be 'absolute' or 'shape'")
    try:
        check_convention(truth.convention)
    except InputError as exc:
        raise InputError(f"truth: {exc}") from None
