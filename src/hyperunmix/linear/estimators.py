"""Classical methods as estimators: abundance solvers on given or extracted endmembers.

``FCLS``, ``SNNLS``, ``NNLS``, ``LS`` and ``SUnSAL`` take their endmembers from ``endmembers=``: an
array (P, L), a file (CSV / .npy / .npz / .mat, see :func:`hyperunmix.io.read_endmembers`),
or the name of an extractor (``"vca"``, ``"nfindr"``, ``"atgp"``) run on the scene.
``VCA``, ``NFINDR`` and ``ATGP`` are that extractor followed by FCLS. Without
``n_endmembers``, extractors use HySime's estimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..base import Unmixer, check_n_endmembers
from ..errors import InputError
from ..io import read_endmembers
from ..params import Array, Boolean, FilePath, Integer, NoneValue, Options, Real, Rule
from ..scene import Scene
from ._arrays import as_endmembers
from .atgp import atgp
from .fcls import fcls
from .hysime import estimate_n_endmembers
from .lsq import ls, nnls, snnls
from .nfindr import nfindr
from .sunsal import sunsal
from .vca import vca

#: name -> extractor(pixels (N, L), p, seed) -> (p, L)
EXTRACTORS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "vca": lambda pixels, p, seed: vca(pixels, p, seed=seed),
    "nfindr": lambda pixels, p, seed: nfindr(pixels, p, seed=seed),
    "atgp": lambda pixels, p, seed: atgp(pixels, p),
}

#: Rules of ``n_endmembers``, ``endmembers`` and ``seed``, shared by every method that takes
#: them (the deep ones too).
N_ENDMEMBERS_RULES: list[Rule] = [Integer(2), NoneValue()]
ENDMEMBERS_RULES: list[Rule] = [Options(*EXTRACTORS), FilePath(), Array(2, "(P, L)")]
SEED_RULES: list[Rule] = [Integer(0)]

#: Relative tolerance when comparing an endmember file's wavelengths with the scene's.
_WAVELENGTH_RTOL = 1e-3


def is_extractor(source: Any) -> bool:
    """Whether ``source`` (an ``endmembers`` argument) names an extractor, whose spectra are
    then found in the scene, rather than giving them (an array, a file)."""
    return isinstance(source, str) and source.lower() in EXTRACTORS


def resolve_endmembers(
    source: Any, scene: Scene, n_endmembers: int | None = None, seed: int = 0
) -> np.ndarray:
    """The (P, L) endmembers described by ``source`` for ``scene``.

    ``source`` is an extractor name (run on the scene's valid pixels, with ``n_endmembers``
    or HySime's estimate), a path to an endmember file, or an array (P, L). Band counts,
    wavelengths and ``n_endmembers`` are checked against the scene.
    """
    if is_extractor(source):
        pixels = scene.pixels()
        p = estimate_n_endmembers(pixels) if n_endmembers is None else n_endmembers
        p = check_n_endmembers(p, scene.n_bands, len(pixels))
        return EXTRACTORS[source.lower()](pixels, p, seed)
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).exists():
            raise InputError(
                f"endmembers={str(source)!r} is neither a file nor one of {', '.join(EXTRACTORS)}"
            )
        E, wavelengths, _ = read_endmembers(source)
        _check_wavelengths(wavelengths, scene.wavelengths, source)
    elif source is None:
        raise InputError(
            f"no endmembers: give an array (P, L), a file, or one of {', '.join(EXTRACTORS)}"
        )
    else:
        E = source
    E = as_endmembers(E, scene.n_bands, what="endmembers")
    if n_endmembers is not None and n_endmembers != len(E):
        raise InputError(f"n_endmembers = {n_endmembers} but {len(E)} endmembers were given")
    return E


def _check_wavelengths(file_wavelengths, scene_wavelengths, source) -> None:
    if file_wavelengths is None or scene_wavelengths is None:
        return
    if len(file_wavelengths) != len(scene_wavelengths) or not np.allclose(
        file_wavelengths, scene_wavelengths, rtol=_WAVELENGTH_RTOL
    ):
        raise InputError(
            f"the wavelengths of {source} do not match the scene's "
            f"({len(file_wavelengths)} vs {len(scene_wavelengths)} bands, "
            f"{file_wavelengths[0]:.0f}-{file_wavelengths[-1]:.0f} nm vs "
            f"{scene_wavelengths[0]:.0f}-{scene_wavelengths[-1]:.0f} nm); "
            "resample the spectra to the scene's bands"
        )


class FCLS(Unmixer):
    """Fully constrained least squares (ANC + ASC), exact and batched.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P for an extractor; None: HySime's estimate. Checked against given endmembers.
    endmembers : array (P, L), path or {"vca", "nfindr", "atgp"}, default="vca"
        Where the endmembers come from: an array, an endmember file
        (:func:`hyperunmix.io.read_endmembers`), or an extractor run on the scene.
    seed : int, default=0
        Seed of the extractor (ATGP is deterministic and ignores it).

    Attributes
    ----------
    endmembers_ : (P, L) float64
    n_bands_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from hyperunmix.linear.estimators import FCLS
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = FCLS(n_endmembers=3, endmembers="nfindr").fit(scene)
    >>> model.endmembers_.shape
    (3, 200)
    >>> abundances = model.unmix(scene).abundances
    >>> abundances.shape
    (16, 16, 3)
    >>> bool(np.allclose(abundances.sum(axis=-1), 1, atol=1e-5) and (abundances >= 0).all())
    True

    Known endmembers, here the scene's true spectra, are given as an array (or a file):

    >>> FCLS(endmembers=scene.truth.endmembers).fit_unmix(scene).abundances.shape
    (16, 16, 3)
    """

    name: ClassVar[str] = "fcls"
    _parameter_rules: ClassVar = {
        "n_endmembers": N_ENDMEMBERS_RULES,
        "endmembers": ENDMEMBERS_RULES,
        "seed": SEED_RULES,
    }

    def __init__(self, n_endmembers: int | None = None, endmembers: Any = "vca", seed: int = 0):
        self.n_endmembers = n_endmembers
        self.endmembers = endmembers
        self.seed = seed

    def _endmember_source(self) -> Any:
        return self.endmembers

    def _fit(self, scene: Scene) -> None:
        self.endmembers_ = resolve_endmembers(
            self._endmember_source(), scene, self.n_endmembers, self.seed
        )
        self.n_bands_ = scene.n_bands

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return fcls(pixels, self.endmembers_)


class SNNLS(FCLS):
    """Shares of unit-peak spectra (normalised NNLS), the ``"shares"`` counterpart of
    :class:`FCLS`: see :func:`hyperunmix.linear.snnls`. Parameters as :class:`FCLS`, with
    the same defaults.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperunmix.linear.estimators import SNNLS
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> result = SNNLS(n_endmembers=3, endmembers="nfindr").fit_unmix(scene)
    >>> result.abundances.shape, result.convention
    ((16, 16, 3), 'shares')
    >>> bool(np.allclose(result.abundances.sum(axis=-1), 1, atol=1e-5))
    True
    """

    name: ClassVar[str] = "snnls"
    default_convention: ClassVar[str] = "shares"

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return snnls(pixels, self.endmembers_)


class NNLS(FCLS):
    """Non-negative least squares (ANC only), exact and batched. Parameters as :class:`FCLS`,
    with the same defaults.

    Examples
    --------
    >>> from hyperunmix.linear.estimators import NNLS
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> abundances = NNLS(endmembers=scene.truth.endmembers).fit_unmix(scene).abundances
    >>> abundances.shape, bool((abundances >= 0).all())
    ((16, 16, 3), True)
    """

    name: ClassVar[str] = "nnls"

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return nnls(pixels, self.endmembers_)


class LS(FCLS):
    """Unconstrained least squares. Parameters as :class:`FCLS`, with the same defaults.

    Examples
    --------
    >>> from hyperunmix.linear.estimators import LS
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> LS(endmembers=scene.truth.endmembers).fit_unmix(scene).abundances.shape
    (16, 16, 3)
    """

    name: ClassVar[str] = "ls"

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return ls(pixels, self.endmembers_)


class SUnSAL(FCLS):
    """Sparse unmixing on a library by ADMM (see :func:`hyperunmix.linear.sunsal.sunsal`).

    Parameters
    ----------
    n_endmembers : int or None, default=None
        As :class:`FCLS`.
    endmembers : array (m, L), path or {"vca", "nfindr", "atgp"}, default="vca"
        As :class:`FCLS`; typically a library: a file or an array (m, L), m may exceed L.
    seed : int, default=0
        As :class:`FCLS`.
    lam : float, default=0.0
        Weight of the l1 sparsity term, for data and library scaled so that the library has
        unit mean power (see :func:`~hyperunmix.linear.sunsal.sunsal`).
    anc : bool, default=True
        Non-negativity constraint.
    asc : bool, default=False
        Sum-to-one constraint.
    mu : float, default=0.01
        Initial ADMM penalty (adapted to balance the residuals).
    tol : float, default=1e-4
        ADMM tolerance on the primal and dual residuals.
    max_iter : int, default=1000
        ADMM iteration limit (a ConvergenceWarning past it).

    Examples
    --------
    A library of six spectra, three of them in the scene:

    >>> import numpy as np
    >>> from hyperunmix.linear.estimators import SUnSAL
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> others = make_scene(2, 2, 3, seed=1).truth.endmembers
    >>> library = np.vstack([scene.truth.endmembers, others])
    >>> abundances = SUnSAL(endmembers=library, lam=1e-3).fit_unmix(scene).abundances
    >>> abundances.shape
    (16, 16, 6)

    Most of the abundance goes to the three spectra of the scene:

    >>> mean = abundances.mean(axis=(0, 1))
    >>> bool(mean[:3].sum() > 2 * mean[3:].sum())
    True
    """

    name: ClassVar[str] = "sunsal"
    _parameter_rules: ClassVar = {
        **FCLS._parameter_rules,
        "lam": [Real(0)],
        "anc": [Boolean()],
        "asc": [Boolean()],
        "mu": [Real(0, closed="neither")],
        "tol": [Real(0, closed="neither")],
        "max_iter": [Integer(1)],
    }

    def __init__(
        self,
        n_endmembers: int | None = None,
        endmembers: Any = "vca",
        seed: int = 0,
        lam: float = 0.0,
        anc: bool = True,
        asc: bool = False,
        mu: float = 0.01,
        tol: float = 1e-4,
        max_iter: int = 1000,
    ):
        super().__init__(n_endmembers, endmembers, seed)
        self.lam = lam
        self.anc = anc
        self.asc = asc
        self.mu = mu
        self.tol = tol
        self.max_iter = max_iter

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return sunsal(
            pixels,
            self.endmembers_,
            lam=self.lam,
            anc=self.anc,
            asc=self.asc,
            mu=self.mu,
            tol=self.tol,
            max_iter=self.max_iter,
        )


class _ExtractThenFCLS(FCLS):
    """An endmember extractor on the scene, then FCLS abundances.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P; None: HySime's estimate.
    seed : int, default=0
        Seed of the extractor (ATGP is deterministic and ignores it).
    """

    _parameter_rules: ClassVar = {"n_endmembers": N_ENDMEMBERS_RULES, "seed": SEED_RULES}

    def __init__(self, n_endmembers: int | None = None, seed: int = 0):
        self.n_endmembers = n_endmembers
        self.seed = seed

    def _endmember_source(self) -> Any:
        return self.name


class VCA(_ExtractThenFCLS):
    """Vertex component analysis on the scene, then FCLS abundances.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P; None: HySime's estimate.
    seed : int, default=0
        Seed of VCA's random directions.

    Attributes
    ----------
    endmembers_ : (P, L) float64
        The extracted endmembers.
    n_bands_ : int

    Examples
    --------
    >>> from hyperunmix.linear.estimators import VCA
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = VCA(n_endmembers=3).fit(scene)
    >>> model.endmembers_.shape, model.unmix(scene).abundances.shape
    ((3, 200), (16, 16, 3))
    """

    name: ClassVar[str] = "vca"


class NFINDR(_ExtractThenFCLS):
    """N-FINDR on the scene, then FCLS abundances.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P; None: HySime's estimate.
    seed : int, default=0
        Seed of N-FINDR's starting vertices.

    Attributes
    ----------
    endmembers_ : (P, L) float64
        The extracted endmembers.
    n_bands_ : int

    Examples
    --------
    >>> from hyperunmix.linear.estimators import NFINDR
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = NFINDR(n_endmembers=3).fit(scene)
    >>> model.endmembers_.shape, model.unmix(scene).abundances.shape
    ((3, 200), (16, 16, 3))
    """

    name: ClassVar[str] = "nfindr"


class ATGP(_ExtractThenFCLS):
    """ATGP on the scene, then FCLS abundances.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P; None: HySime's estimate.
    seed : int, default=0
        Unused: ATGP is deterministic.

    Attributes
    ----------
    endmembers_ : (P, L) float64
        The extracted endmembers.
    n_bands_ : int

    Examples
    --------
    >>> from hyperunmix.linear.estimators import ATGP
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = ATGP(n_endmembers=3).fit(scene)
    >>> model.endmembers_.shape, model.unmix(scene).abundances.shape
    ((3, 200), (16, 16, 3))
    """

    name: ClassVar[str] = "atgp"
