"""The estimator contract every unmixing method follows, and the result it returns.

scikit-learn style: hyper-parameters in ``__init__`` (stored under the same names, never
modified), ``fit(scene)`` learns state into attributes ending in ``_`` and returns ``self``,
``unmix(scene)`` returns a :class:`Result`. A ``seed`` makes runs repeatable.

Two levels of input. ``fit`` / ``unmix`` take a :class:`~hyperunmix.scene.Scene`.
``transform(cube, mask)`` takes a bare (h, w, L) block and is what the tiled / distributed
runner (:mod:`hyperunmix.scale`) calls chunk by chunk: pixel-wise methods implement only
``_transform_pixels``; spatial methods override ``transform`` and declare the
``spatial_context`` (in pixels) a chunk needs around it.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .conventions import check_convention, convert_maps
from .errors import InputError, NotFittedError
from .params import Rules, summarise, validate_params
from .scene import GeoInfo, Scene

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("hyperunmix")

#: ``callback(stage, done, total, info)``: called by long-running steps (epochs, chunks).
ProgressCallback = Callable[[str, int, int, dict], None]


@dataclass
class Result:
    """What an unmixing returns.

    Attributes
    ----------
    abundances : (H, W, P) float32
        Fractional abundances; NaN at invalid (masked) pixels.
    endmembers : (P, L) float64 or None
        Endmember spectra, in the scene's units.
    convention : {"absolute", "shares"}
        What the abundances are fractions of (:mod:`hyperunmix.conventions`): the method's
        own convention, until :meth:`in_convention` converts them.
    method : str
        Registry name of the method.
    params : dict
        The estimator's hyper-parameters.
    extras : dict of str -> array
        Further per-pixel maps, e.g. ``"uncertainty"`` (H, W, P), ``"nonlinearity"``
        (H, W), ``"pixel_endmembers"`` (H, W, P, L).
    wavelengths : (L,) or None
    names : list of P str or None
        Material names when known (e.g. after matching to a truth).
    geo : GeoInfo or None
        Georeferencing copied from the scene, so maps are written where the input was.
    mask : (H, W) bool
        Valid pixels.
    source_format : str or None
        Format family of the input (``"gtiff"``, ``"envi"``, ``"netcdf"``, ``"mat"``,
        ``"npy"``), so outputs can be written in the same family.
    scene_name : str
    fit_seconds, unmix_seconds : float
    """

    abundances: np.ndarray
    endmembers: np.ndarray | None
    method: str
    convention: str = "absolute"
    params: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    wavelengths: np.ndarray | None = None
    names: list[str] | None = None
    geo: GeoInfo | None = None
    mask: np.ndarray | None = None
    source_format: str | None = None
    scene_name: str = "scene"
    fit_seconds: float = 0.0
    unmix_seconds: float = 0.0

    @property
    def n_endmembers(self) -> int:
        return self.abundances.shape[-1]

    def pixel_abundances(self) -> np.ndarray:
        """(N, P) abundances of the valid pixels, in row-major order."""
        mask = self.mask if self.mask is not None else np.ones(self.abundances.shape[:2], bool)
        return self.abundances[mask]

    def in_convention(self, convention: str) -> Result:
        """This result with its abundances in ``convention`` (``"absolute"`` or
        ``"shares"``), converted through its endmembers' peaks
        (:func:`hyperunmix.conventions.convert`); itself when already there.

        An ``"uncertainty"`` map (per-abundance standard deviations) is carried to first
        order (:func:`hyperunmix.conventions.convert_std`); the other extras do not depend
        on the convention.
        """
        if check_convention(convention) == self.convention:
            return self
        if self.endmembers is None:
            raise InputError(
                f"the {self.method} result has no endmembers, so its "
                f"{self.convention!r} abundances cannot be converted to "
                f"{convention!r}"
            )
        maps = convert_maps(
            {"abundances": self.abundances, **self.extras},
            self.endmembers,
            self.convention,
            convention,
        )
        abundances = maps.pop("abundances")
        return dataclasses.replace(self, abundances=abundances, extras=maps, convention=convention)

    def save(
        self,
        directory: Any,
        truth: Any = None,
        fmt: str | None = None,
        figures: bool = True,
        overwrite: bool = False,
    ) -> dict:
        """Write maps (in the input's format family), ``abundances.npy``, ``endmembers.csv``,
        extra maps, figures, ``run.json`` and, given a ``Truth``, ``metrics.json`` to
        ``directory``; files there that no earlier run.json lists are replaced only with
        ``overwrite``. See :func:`hyperunmix.output.save_result`. Returns the paths by role."""
        # The writer, hyperunmix.output, imports this module (and matplotlib and every
        # reader): the registry names it, resolved on first call.
        from .registry import result_writer

        return result_writer()(
            self, directory, truth=truth, fmt=fmt, figures=figures, overwrite=overwrite
        )


class Unmixer(abc.ABC):
    """Base class of every unmixing method.

    Subclasses set ``name`` (their registry key), define ``__init__`` with keyword
    hyper-parameters stored under their own names, declare every parameter's rules in
    ``_parameter_rules`` (:mod:`hyperunmix.params`), and implement ``_fit`` plus either
    ``_transform_pixels`` (pixel-wise) or ``transform`` (spatial). :meth:`fit` checks the
    scene and the parameters before ``_fit`` sees them.
    """

    name: ClassVar[str] = ""
    #: Pixels of spatial context one output pixel depends on (0: pixel-wise method).
    spatial_context: ClassVar[int] = 0
    #: Side of the square blocks of neighbouring pixels the fit treats as one neighbourhood
    #: (1: none); a chunked run's fit sample is drawn in patches of a multiple of it.
    fit_block: ClassVar[int] = 1
    #: The method's abundance convention when no parameter changes it.
    default_convention: ClassVar[str] = "absolute"

    #: Parameter name -> the rules any one of which admits its value.
    _parameter_rules: ClassVar[Rules] = {}

    @property
    def convention(self) -> str:
        """What the abundances are fractions of (:mod:`hyperunmix.conventions`); methods
        whose convention depends on a parameter override this property."""
        return self.default_convention

    progress: ProgressCallback | None = None
    #: Set by fit: the number of bands the model was fitted on.
    n_bands_: int

    # -- parameters ----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__``: ``type(self)(**get_params())`` builds
        the same unfitted estimator (see :func:`clone`; for a record, summarise them with
        :func:`hyperunmix.params.summarise`)."""
        return {key: getattr(self, key) for key in self._param_names()}

    def validate_params(self) -> None:
        """An InputError naming the first hyper-parameter its declared rules refuse."""
        validate_params(type(self).__name__, self.get_params(), self._parameter_rules)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in summarise(self.get_params()).items())
        return f"{type(self).__name__}({args})"

    def set_progress(self, callback: ProgressCallback | None) -> Unmixer:
        """Report progress of long steps to ``callback(stage, done, total, info)``."""
        self.progress = callback
        return self

    def _report(self, stage: str, done: int, total: int, **info: Any) -> None:
        log.debug("%s %s %d/%d %s", self.name, stage, done, total, info)
        if self.progress is not None:
            self.progress(stage, done, total, info)

    # -- the contract --------------------------------------------------------------------
    def fit(self, scene: Scene) -> Self:
        """Learn from ``scene`` (endmembers, network weights); returns self.

        The scene and the hyper-parameters are checked first, whatever the method.
        """
        check_scene(scene, "fit")
        self.validate_params()
        self._fit(scene)
        return self

    @abc.abstractmethod
    def _fit(self, scene: Scene) -> None:
        """Learn from a checked ``scene`` with checked parameters; set ``n_bands_``."""

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        """Unmix an (N, L) float64 pixel matrix.

        Returns (N, P) abundances, or a dict with ``"abundances"`` (N, P) and extra
        per-pixel arrays (N, ...).
        """
        raise TypeError(f"{type(self).__name__} defines neither _transform_pixels nor transform")

    def transform(self, cube: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Unmix an (h, w, L) block; ``mask`` (h, w) marks valid pixels.

        Returns a dict with ``"abundances"`` (h, w, P) float32 and any extra maps
        (h, w, ...), NaN at invalid pixels.
        """
        cube, mask = self._checked_block(cube, mask)
        # A whole valid block is a view, so the float64 copy is the only one made of it.
        pixels = cube.reshape(-1, cube.shape[-1]) if mask.all() else cube[mask]
        out = self._transform_pixels(np.asarray(pixels, dtype=np.float64))
        if not isinstance(out, dict):
            out = {"abundances": out}
        maps = {}
        for key, values in out.items():
            image = np.full(mask.shape + values.shape[1:], np.nan, dtype=np.float32)
            image[mask] = values
            maps[key] = image
        return maps

    def unmix(self, scene: Scene) -> Result:
        """Unmix ``scene`` with the fitted model."""
        check_scene(scene, "unmix")
        start = time.perf_counter()
        maps = self.transform(scene.cube, scene.mask)
        abundances = maps.pop("abundances")
        return Result(
            abundances=abundances,
            endmembers=self.endmembers_out(),
            method=self.name,
            convention=self.convention,
            params=summarise(self.get_params()),
            extras=maps,
            wavelengths=scene.wavelengths,
            # Material names, for estimators that learn them (e.g. from a bundle library).
            names=getattr(self, "names_", None),
            geo=scene.geo,
            mask=scene.mask,
            source_format=scene.metadata.get("format"),
            scene_name=scene.name,
            fit_seconds=getattr(self, "fit_seconds_", 0.0),
            unmix_seconds=time.perf_counter() - start,
        )

    def fit_unmix(self, scene: Scene) -> Result:
        """``fit(scene)`` then ``unmix(scene)``, with the fit time recorded."""
        start = time.perf_counter()
        self.fit(scene)
        self.fit_seconds_ = time.perf_counter() - start
        return self.unmix(scene)

    def endmembers_out(self) -> np.ndarray | None:
        """The (P, L) endmembers the model reports, or None."""
        endmembers = getattr(self, "endmembers_", None)
        return None if endmembers is None else np.asarray(endmembers, dtype=np.float64)

    # -- checks --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_bands_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(scene) first")

    def _check_bands(self, n_bands: int) -> None:
        if n_bands != self.n_bands_:
            raise InputError(
                f"{type(self).__name__} was fitted on {self.n_bands_} bands, "
                f"the input has {n_bands}"
            )

    def _checked_block(self, cube: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`transform` works on: ``cube`` as a numeric (h, w, L) array with the
        fitted number of bands, and the (h, w) bool mask of its valid pixels, those
        ``mask`` marks (all when None) with every value finite."""
        self._check_fitted()
        cube = np.asarray(cube)
        if cube.ndim != 3 or cube.dtype.kind not in "biuf":
            raise InputError(
                f"{type(self).__name__}.transform expects a numeric (h, w, L) "
                f"block, got {cube.dtype} of shape {cube.shape}"
            )
        self._check_bands(cube.shape[-1])
        finite = np.all(np.isfinite(cube), axis=-1)
        if mask is None:
            return cube, finite
        mask = np.asarray(mask)
        if mask.shape != finite.shape:
            raise InputError(f"the mask has shape {mask.shape}, the block {finite.shape}")
        return cube, finite & mask.astype(bool)


def clone(estimator: Unmixer) -> Unmixer:
    """An unfitted copy of ``estimator``: same class, same hyper-parameters (arrays copied,
    so that fitting either leaves the other's parameters alone)."""
    return type(estimator)(**copy.deepcopy(estimator.get_params()))


def check_scene(scene: Any, action: str) -> None:
    """An InputError unless ``scene`` is a :class:`~hyperunmix.scene.Scene`; ``action``
    (``"fit"``, ``"unmix"``) names the call."""
    if not isinstance(scene, Scene):
        raise InputError(
            f"{action} expects a Scene, got {type(scene).__name__}; wrap an "
            "array with hyperunmix.Scene(cube)"
        )


def check_n_endmembers(n_endmembers: int, n_bands: int, n_pixels: int) -> int:
    """Validate P against the data: an integer (not a bool), 2 <= P <= L and P <= N."""
    if isinstance(n_endmembers, (bool, np.bool_)) or not isinstance(
        n_endmembers, (int, np.integer)
    ):
        raise InputError(f"n_endmembers must be an integer, got {n_endmembers!r}")
    p = int(n_endmembers)
    if p < 2:
        raise InputError(f"n_endmembers must be at least 2, got {p}")
    if p > n_bands:
        raise InputError(f"n_endmembers = {p} exceeds the number of bands ({n_bands})")
    if p > n_pixels:
        raise InputError(f"n_endmembers = {p} exceeds the number of valid pixels ({n_pixels})")
    return p
