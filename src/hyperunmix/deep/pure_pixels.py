"""Pseudo-pure training pixels for self-supervised unmixing networks (EGU-Net, ID-Net).

The recipe of Hong et al. (EGU-Net, TNNLS 2022), in one call: split the image into
non-overlapping ``block_size x block_size`` blocks, run VCA with P endmembers inside each
block (a small neighbourhood holds few materials, so its extreme pixels are close to pure),
and label every extracted spectrum by its NNLS abundances against reference endmembers of
the whole image, normalised to sum to one. The labels are therefore soft: a block extreme
that is still mixed is labelled as mixed.

Reference endmembers come from VCA on the whole image by default, or from the user as an
array, an endmember file (:func:`hyperunmix.io.read_endmembers`) or a bundle library
(:func:`hyperunmix.datasets.load_library`), whose per-material means are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from ..base import check_n_endmembers
from ..conventions import normalise_rows, unit_peak
from ..errors import InputError
from ..linear import nnls, vca
from ..linear.estimators import resolve_endmembers
from ..scene import Scene
from ..spectra import SpectralLibrary

#: What ``reference`` may be: an extractor name ("vca", "nfindr", "atgp") or None (VCA), an
#: array (P, L), an endmember file path, or a SpectralLibrary of bundles.
ReferenceSource = Any


@dataclass(frozen=True)
class PurePixelSet:
    """Pseudo-pure spectra with their soft labels.

    Attributes
    ----------
    spectra : (M, L) float64
        Block-wise VCA endmembers (pixel spectra of the image).
    labels : (M, P) float64
        Non-negative abundances of each spectrum against ``reference``, rows summing to one.
    reference : (P, L) float64
        The reference endmembers that define the label order.
    """

    spectra: np.ndarray
    labels: np.ndarray
    reference: np.ndarray

    def __len__(self) -> int:
        return self.spectra.shape[0]


#: How the reference spectra are scaled before labelling: see :func:`build_pure_set`.
LabelScale = Literal["peak", "reference"]
#: The values of ``label_scale``.
LABEL_SCALES: tuple[LabelScale, ...] = get_args(LabelScale)


def build_pure_set(
    scene: Scene,
    n_endmembers: int | None = None,
    *,
    reference: ReferenceSource = "nfindr",
    block_size: int = 5,
    label_scale: LabelScale = "peak",
    seed: int = 0,
) -> PurePixelSet:
    """The pseudo-pure training set of ``scene``.

    Parameters
    ----------
    scene : Scene
        Its valid pixels are used; blocks with fewer than P valid pixels are skipped.
    n_endmembers : int, optional
        P, the number of endmembers extracted per block and of reference endmembers.
        Default: the count of a given reference, else HySime's estimate.
    reference : extractor name, (P, L) array, endmember file, SpectralLibrary, or None
        Reference endmembers for the labels; see :func:`resolve_reference`.
    block_size : int
        Side of the square blocks in pixels (5 in the paper). Edge blocks may be smaller.
    label_scale : {"peak", "reference"}
        Scale of the reference spectra the labels are computed against. A label normalised
        to sum to one discards the spectrum's brightness, so it depends on the relative
        scale of the reference spectra, which for spectra picked from the image is that of
        whichever pixels the extractor chose (sunlit or shaded). ``"peak"`` (default) fixes
        it: each reference spectrum is scaled to unit peak (it needs a positive peak), so
        labels are fractions of peak-normalised spectra (the convention of DEQ-Unmix's
        scaled data term and of the Samson and Jasper Ridge reference maps).
        ``"reference"``: the spectra as given (the released code).
    seed : int
        Seeds VCA (the per-block runs use ``seed`` plus the block number).
    """
    block_size = _positive_int(block_size, "block_size")
    if label_scale not in LABEL_SCALES:
        raise InputError(f"label_scale must be one of {LABEL_SCALES}, got {label_scale!r}")
    ref = resolve_reference(reference, scene, n_endmembers, seed=seed)
    p = check_n_endmembers(ref.shape[0], scene.n_bands, scene.n_pixels)
    spectra = block_endmembers(scene.cube, scene.mask, p, block_size, seed=seed)
    labels, keep = soft_labels(spectra, label_reference(ref, label_scale))
    if not keep.any():
        raise InputError(
            "no block spectrum has a non-zero NNLS label: check the reference "
            "endmembers against the image"
        )
    return PurePixelSet(spectra=spectra[keep], labels=labels[keep], reference=ref)


def block_endmembers(
    cube: np.ndarray, mask: np.ndarray, n_endmembers: int, block_size: int, *, seed: int = 0
) -> np.ndarray:
    """VCA endmembers of every non-overlapping block of ``cube`` (H, W, L).

    Returns (M, L) float64: ``n_endmembers`` spectra per block holding at least that many
    valid pixels (``mask`` (H, W)), blocks in row-major order. A block has fewer pixels than
    bands, so VCA's axes come from its thin SVD, not from the L x L band covariance
    (:func:`hyperunmix.linear._arrays.leading_axes`; 7x faster on a 100,000-pixel sample of
    243 bands, ``benchmarks/egunet_pure_set_speed.py``).
    """
    n_rows, n_cols, _ = cube.shape
    found = []
    block_number = 0
    for top in range(0, n_rows, block_size):
        for left in range(0, n_cols, block_size):
            window = (slice(top, top + block_size), slice(left, left + block_size))
            block = np.asarray(cube[window][mask[window]], dtype=np.float64)
            if block.shape[0] >= n_endmembers:
                found.append(vca(block, n_endmembers, seed=seed + block_number))
            block_number += 1
    if not found:
        raise InputError(
            f"no {block_size}x{block_size} block has {n_endmembers} valid pixels; "
            "use a larger block_size"
        )
    return np.concatenate(found, axis=0)


def soft_labels(spectra: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NNLS abundances of ``spectra`` (M, L) on ``reference`` (P, L), rows scaled to sum to one.

    Returns ``(labels (M, P), keep (M,) bool)``; ``keep`` is False where the NNLS solution is
    (numerically) zero, a spectrum with no positive projection on any reference, whose
    label is undefined (rows summing to zero are set to 1/P, as by
    :func:`hyperunmix.linear.snnls`).
    """
    abundances = np.asarray(nnls(spectra, reference), dtype=np.float64)
    keep = abundances.sum(axis=1) > 1e-12
    return normalise_rows(abundances), keep


def label_reference(reference: np.ndarray, label_scale: str) -> np.ndarray:
    """The (P, L) spectra labels are computed against: ``reference`` (P, L) at unit peak
    (``"peak"``, :func:`hyperunmix.conventions.unit_peak`) or as given (``"reference"``).
    See :func:`build_pure_set`."""
    return unit_peak(reference) if label_scale == "peak" else reference


def resolve_reference(
    reference: ReferenceSource, scene: Scene, n_endmembers: int | None = None, *, seed: int = 0
) -> np.ndarray:
    """Reference endmembers (P, L) float64 for ``scene`` from any accepted source.

    ``None`` or ``"vca"``: VCA on the scene's valid pixels (``n_endmembers`` of them, or
    HySime's estimate). A :class:`~hyperunmix.spectra.SpectralLibrary`
    (e.g. a bundle library from :func:`hyperunmix.datasets.load_library`): the mean spectrum
    of each material, in label order. Anything else (an extractor name such as ``"nfindr"``,
    an endmember file, an array (P, L)) goes through
    :func:`hyperunmix.linear.estimators.resolve_endmembers`, which checks bands and
    wavelengths against the scene.
    """
    if isinstance(reference, SpectralLibrary):
        reference = library_means(reference)
    source = "vca" if reference is None else reference
    ref = resolve_endmembers(source, scene, n_endmembers, seed=seed)
    return np.asarray(ref, dtype=np.float64)


def library_means(library: SpectralLibrary) -> np.ndarray:
    """(K_materials, L): the mean spectrum of each material of ``library``, in name order."""
    present = np.unique(library.labels)
    if present.size != len(library.names):
        missing = sorted(set(range(len(library.names))) - set(present.tolist()))
        raise InputError(f"the library has no spectrum of {[library.names[k] for k in missing]}")
    return np.stack([library.spectra[library.labels == k].mean(axis=0) for k in present])


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
