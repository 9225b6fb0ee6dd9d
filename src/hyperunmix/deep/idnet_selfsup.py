"""ID-Net's self-supervised set: endmember bundles and the synthetic triplets drawn from them.

A bundle is a set of spectra of one material showing its variability. ID-Net learns from
triplets (y_s, M_s, a_s): M_s takes one spectrum of every material from its bundle, a_s is
one-hot and y_s = M_s^T a_s plus white noise at a given SNR (40 dB in the paper), so the
networks see what a pure pixel of each material looks like under variability.

Bundles come from a library (:func:`bundles_from_library`, e.g.
:func:`hyperunmix.datasets.load_library`) or from the image itself
(:func:`extract_bundles`): the pixels whose normalised NNLS abundance on reference
endmembers (VCA by default) is at least ``min_purity`` for one material, plus the reference
endmember itself. (Block-wise VCA, as for EGU-Net's pseudo-pure set, found bundles of the
same quality on Samson and Jasper Ridge 60 to 400 times more slowly.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..conventions import unit_peak
from ..errors import InputError
from ..scene import Scene
from .egunet_reference import refined_reference
from .pure_pixels import resolve_reference, soft_labels

#: Automatic extraction examines at most this many pixels (a seeded random subset).
MAX_EXTRACTION_PIXELS = 200_000


@dataclass(frozen=True)
class Bundles:
    """Spectra grouped by material.

    Attributes
    ----------
    spectra : (K, L) float64
    labels : (K,) int
        Material index in [0, P) of each spectrum; every material has at least one.
    names : list of P str or None
    reference : (P, L) float64 or None
        The spectrum each bundle was gathered around (extracted bundles); None for a
        library, whose bundles are centred by :meth:`centres` on their means.
    """

    spectra: np.ndarray
    labels: np.ndarray
    names: list[str] | None = None
    reference: np.ndarray | None = None

    @property
    def n_materials(self) -> int:
        return int(self.labels.max()) + 1

    def counts(self) -> np.ndarray:
        """(P,) number of spectra per material."""
        return np.bincount(self.labels, minlength=self.n_materials)

    def centres(self) -> np.ndarray:
        """(P, L): ``reference`` when given, else the mean spectrum of each bundle."""
        if self.reference is not None:
            return self.reference
        sums = np.zeros((self.n_materials, self.spectra.shape[1]))
        np.add.at(sums, self.labels, self.spectra)
        return sums / self.counts()[:, None]


def bundles_from_library(library: Any, n_bands: int) -> Bundles:
    """Bundles from a library object or mapping with ``spectra`` (K, L) and ``labels`` (K,)
    (and optionally ``names``); labels must cover 0..P-1."""

    def field(name: str) -> Any:
        if isinstance(library, Mapping):
            return library.get(name)
        return getattr(library, name, None)

    spectra, labels = field("spectra"), field("labels")
    if spectra is None or labels is None:
        raise InputError("a bundle library needs 'spectra' (K, L) and 'labels' (K,)")
    spectra = np.asarray(spectra, dtype=np.float64)
    labels = np.asarray(labels).ravel()
    if spectra.ndim != 2 or spectra.shape[0] != labels.shape[0]:
        raise InputError(
            f"bundle library spectra {spectra.shape} do not match {labels.shape[0]} labels"
        )
    if spectra.shape[1] != n_bands:
        raise InputError(
            f"the bundle library has {spectra.shape[1]} bands, the scene "
            f"{n_bands}: resample the library or select the same bands"
        )
    if not np.all(np.isfinite(spectra)):
        raise InputError("the bundle library contains non-finite values")
    if (
        labels.dtype.kind not in "iu"
        or labels.min() < 0
        or set(np.unique(labels)) != set(range(int(labels.max()) + 1))
    ):
        raise InputError("bundle library labels must be integers covering 0..P-1")
    names = field("names")
    return Bundles(spectra, labels.astype(np.intp), None if names is None else list(names))


def extract_bundles(
    scene: Scene,
    n_endmembers: int | None,
    *,
    reference: Any = "nfindr",
    min_purity: float = 0.95,
    refine_fraction: float | None = None,
    seed: int = 0,
) -> Bundles:
    """Bundles extracted from ``scene``: its nearly pure pixels, grouped by material.

    Reference endmembers come from ``reference`` (an extractor such as VCA on the image, an
    array, a file: see :func:`hyperunmix.deep.pure_pixels.resolve_reference`). Every pixel
    gets the NNLS abundances on them scaled to sum to one (scale invariant, so brightness
    variability is kept); the pixels whose largest share reaches ``min_purity`` join the
    bundle of that material, and each reference endmember joins its own bundle, so no
    bundle is empty. At most MAX_EXTRACTION_PIXELS pixels (a seeded random subset) are
    examined. With ``refine_fraction`` the reference is first re-estimated from them: for
    each material, the mean of that fraction of the pixels with the largest SNNLS share of
    it on the given reference (:func:`~hyperunmix.deep.egunet_reference.refined_reference`,
    as EGU-Net's ``refine_fraction``).

    Parameters
    ----------
    scene : Scene
    n_endmembers : int or None
        P; None: that of a given reference, else HySime's estimate.
    reference : str, array or path
    min_purity : float in (0, 1]
    refine_fraction : float in (0, 1] or None
        None: the reference as given.
    seed : int
        Seeds the extractor and the subset.
    """
    if not 0.0 < min_purity <= 1.0:
        raise InputError(f"min_purity must lie in (0, 1], got {min_purity}")
    ref = resolve_reference(reference, scene, n_endmembers, seed=seed)
    pixels = scene.pixels(np.float64)
    if pixels.shape[0] > MAX_EXTRACTION_PIXELS:
        rng = np.random.default_rng(seed)
        pixels = pixels[np.sort(rng.choice(pixels.shape[0], MAX_EXTRACTION_PIXELS, replace=False))]
    if refine_fraction is not None:
        ref = refined_reference(pixels, unit_peak(ref), refine_fraction)
    labels, keep = soft_labels(pixels, ref)
    pure = keep & (labels.max(axis=1) >= min_purity)
    spectra = np.concatenate([ref, pixels[pure]])
    materials = np.concatenate([np.arange(ref.shape[0]), labels[pure].argmax(axis=1)])
    return Bundles(spectra, materials.astype(np.intp), reference=ref)


class TripletSampler:
    """Draws self-supervised triplets (y_s, M_s, a_s) from bundles, fresh at every call.

    The material of each triplet is uniform over the P materials and each column of M_s an
    independent uniform draw from its material's bundle, so every combination of bundle
    members can occur (the released code pairs members by index into a fixed set).

    Parameters
    ----------
    bundles : Bundles
        In the units the model works in.
    snr_db : float
        Signal-to-noise ratio of y_s: noise std = rms(y_s) 10^(-snr/20).
    generator : torch.Generator
    """

    def __init__(
        self,
        bundles: Bundles,
        snr_db: float,
        generator: torch.Generator,
        device: torch.device | None = None,
    ):
        order = np.argsort(bundles.labels, kind="stable")
        self.spectra = torch.as_tensor(bundles.spectra[order], dtype=torch.float32, device=device)
        counts = bundles.counts()
        self.counts = torch.as_tensor(counts, dtype=torch.float32)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self.n_materials = bundles.n_materials
        self.noise_ratio = 10.0 ** (-snr_db / 20.0)
        self.generator = generator
        self.device = device

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n triplets: y (n, L), M (n, P, L), a (n, P) one-hot."""
        gen = self.generator
        member = torch.floor(torch.rand(n, self.n_materials, generator=gen) * self.counts)
        index = (self.offsets + member.long()).to(self.spectra.device)
        endmembers = self.spectra[index]  # (n, P, L)
        material = torch.randint(self.n_materials, (n,), generator=gen)
        abundances = torch.nn.functional.one_hot(material, self.n_materials).float()
        abundances = abundances.to(self.spectra.device)
        clean = (abundances.unsqueeze(-2) @ endmembers).squeeze(-2)
        noise_std = self.noise_ratio * torch.sqrt((clean**2).mean(-1, keepdim=True))
        noise = torch.randn(clean.shape, generator=gen).to(clean.device)
        return clean + noise_std * noise, endmembers, abundances
