"""DEQ-Unmix: blind unmixing as the equilibrium of a learned projected-gradient iteration.

After Wang, Gao, Zhu & Chen, "A deep equilibrium network for hyperspectral unmixing" (arXiv
2604.11279, 2026); the authors' code is withheld and this is our design (see METHODS.md).

The abundances of an image are the fixed point ``A* = f(A*)`` of

    f(A) = Proj( A - eta G_theta(A) ),   G_theta(A) = (A E - Y/s) E^T + D_theta(A, A E - Y/s)

with ``Y`` the image, ``E`` (P, L) the endmembers, ``D_theta`` a spectral-spatial CNN
correction (``D_theta = 0`` in the ablation ``correction=False``) and ``Proj`` the Euclidean
projection onto the simplex (ANC + ASC; a softmax mirror step as an option).
``(A E - Y/s) E^T`` is the gradient of the data term; ``s`` is a per-pixel scale,
``s = <y, E^T a> / ||E^T a||^2`` (``data_term="scaled"``), or 1 (``data_term="linear"``,
the plain linear mixing model of the paper, the default). The CNN's last layer
starts at zero: training starts from projected gradient descent, whose fixed point is the
minimiser of ``||y - s E^T a||^2`` over the simplex and ``s > 0``, i.e. the normalised NNLS
solution (scaled) or the FCLS solution (linear).

The two data terms are the two abundance conventions (:mod:`hyperunmix.conventions`). The
linear one gives absolute fractions of the endmember spectra, and its equilibrium starts at
FCLS. The scaled one explains each pixel's spectral shape whatever its brightness
(topography, shadows, water depth), as the angle-based loss does; a brightness factor leaves
each endmember's norm free, so the scaled model keeps endmembers at unit peak and its
abundances are shares of unit-peak spectra, the convention of the Samson and Jasper Ridge
references. Either result converts to the other convention through its endmembers. The
default, ``"linear"``, was chosen on the tuning scenes of ``benchmarks/tune_defaults.py``
(mean aRMSE 0.0443 against 0.0659 for ``"scaled"``, seeds 0 and 1; 0.075 against 0.107
before the re-estimated start and the slower endmember rate): the brightness factor
amplifies the noise of dark pixels, and costs more than it gains except under strong
illumination changes.

For the linear data term with the Euclidean projection (the default) ``f`` is taken in its
exact form, each pixel's ``argmin_a |y - E^T a|^2 / 2 + D_theta^T a`` over the simplex with
``D_theta`` held at the current iterate (:meth:`DEQUnmixNet._exact_step`): the same fixed
points for every step size, but the gradient step contracts by only
``1 - lambda_min / lambda_max`` of ``E E^T`` per iteration, so that on nine library spectra
100 Anderson iterations (forward) and 200 (adjoint) missed the tolerance at every epoch,
where the exact step needs about 5 and 3.

Training is blind and unsupervised: ``E`` (initialised by N-FINDR by default, by VCA in the
paper) and ``theta`` minimise, by default, the paper's loss on the image itself,
``mean SAD(Y, s A* E) + alpha MSE(Y, s A* E) + beta log vol(E)`` (``loss="fit"``), from
N-FINDR's spectra re-estimated from the pixels called purest (``refine_fraction``, see
below; with ``refine_fraction=None`` the untrained equilibrium on N-FINDR's spectra is the
matched baseline, N-FINDR + FCLS). The loss is mostly the spectral angle, which FCLS's least
squares do not minimise, so the correction has something to learn: in the benchmark (5
seeds, from N-FINDR's spectra as extracted) it lowers
the aRMSE of its ablation by 37 % on Samson and 20 % on the 50 x 50 scene with endmember
variability, and changes it by -1 % to +4 % elsewhere (on the spatial scenes at 15 and
20 dB it is 1.5 % worse); on the tuning scenes it changes the mean by about 1 %. Stein's
unbiased risk estimate (SURE) of the squared error of the reconstruction against the
noise-free image, whitened by each band's noise level (:func:`sure_loss`,
``loss="sure"``), is a loss that a pixel lowers by fitting its own noise no more, so
that the correction is rewarded for using its neighbours; but trained with it the
abundances ended worse than at the start on most scenes (while the endmembers' angles to
the truth's fell), and the correction gained next to nothing. On the 15 tuning scenes of
``benchmarks/deq_training_signal.py`` (one seed; the three 100 x 100 ones at the
benchmark's 5 epochs), mean aRMSE 0.068 with ``"fit"`` (worse than N-FINDR + FCLS on 4:
bilinear mixing and variability at 30 dB, illumination at 20 and 30 dB, by at most 19 %)
and 0.094 with ``"sure"`` (worse on 11), against 0.085 for N-FINDR + FCLS; the former
default, SURE from the averaged start (``endmember_averaging``), 0.087 on the twelve
32 x 32 scenes (worse on 6 of 12, N-FINDR + FCLS 0.081); see
``benchmarks/deq_training_signal.py``. A second phase that trains the correction alone, the
endmembers frozen, with the recorrupted loss (``correction_epochs``, ``correction_loss``; a
noise-aware loss no longer pushes the endmembers) lowers the aRMSE of the ablation on the
spatial tuning scenes at 15 and 20 dB by 15.6 % and 11.5 % (0.1111 to 0.0938 and 0.0689 to
0.0610; seeds 0 and 1, 30 second-phase epochs after the 5 of the fit; at 30 dB 0.0392
against 0.0384) but raises the default's by 2 to 7 % on five of the twelve 32 x 32 tuning
scenes (linear mixing at 15 and 30 dB, USGS spectra at 15, 20 and 30 dB; 150 epochs there,
or SURE, did not help), and makes the training on the 100 x 100 scenes ten times longer (53
to 73 s against 5 to 6 s): it is off by default. Denoising alone would gain 2 % / 11 %
there (the issue's goal is 20 % below the ablation): FCLS of the noise-free image on the
fit phase's endmembers scores 0.109 / 0.052 at 15 / 20 dB against 0.112 / 0.059 on the
noisy image (seed 0); the rest of the error is the endmembers' (the second phase's 15.6 %
at 15 dB is more than denoising gives). Each optimiser step sees a random patch of the
image (``patch_size``).

The error is mostly the endmembers' (FCLS with the true endmembers scores 0.047 / 0.033 on
the benchmark's spatial scenes at 15 / 20 dB, DEQ-Unmix from N-FINDR's spectra 0.1185 /
0.050), and an extractor's spectrum is one pixel, its noise whole. ``refine_fraction=0.04``
replaces each by the mean of the 4 % of the pixels with the largest SNNLS share of it on the
unit-peak spectra (:func:`~hyperunmix.deep.egunet_reference.refined_reference`, as EGU-Net's
and ID-Net's references), before training. On the 15 tuning scenes of
``benchmarks/deq_training_signal.py`` (seeds 0 and 1; table in
``benchmarks/results/deq_refined_start.md``) it takes the mean aRMSE from 0.0693 to 0.0598
(the ablation's from 0.0695 to 0.0602) and the scenes worse than N-FINDR + FCLS (0.0848)
from 4 to 1 (bilinear mixing at 30 dB, 0.0516 against 0.0326; illumination at 20 / 30 dB
goes from 0.172 / 0.161 to 0.120 / 0.124 against 0.163 / 0.156). The fraction: 0.02 gave
0.0625 (worse on 1), 0.08 gave 0.0588 but worse on 2 (the spatial scene at 30 dB) and a
start twice as far from the truth on the 100 x 100 scenes (mSAD after training 0.084 to
0.104 rad against 0.057 to 0.087 at 0.04); 0.04 is also EGU-Net's and ID-Net's. The
training still loses ground over its start: FCLS on the re-estimated start alone scores
0.0490 (worse than N-FINDR + FCLS on 2), and the training takes the endmembers' mSAD from
about 0.04 to 0.08 rad on the 32 x 32 scenes at 20 dB. In the benchmark (5 seeds, run after
the choice) the aRMSE fell on 10 of the 13 scenes (illumination at 20 / 30 dB 0.160 / 0.152
to 0.093 / 0.087, the spatial scenes at 15 / 20 dB 0.1185 / 0.050 to 0.108 / 0.040, Jasper
Ridge 0.091 to 0.085) and rose on Samson (0.077 to 0.082; mSAD 0.070 to 0.063 rad) and on
linear and bilinear mixing at 20 dB (0.073 / 0.072 to 0.082 / 0.086); DEQ-Unmix now beats
N-FINDR + FCLS on all 13. The correction then lowers its ablation's aRMSE by 31 % on Samson
and 5 % / 1.5 % on the spatial scenes at 15 / 20 dB, and raises it by 3 to 12 % on linear
and bilinear mixing and variability at 20 dB.

The endmembers learn slowly (``lr_endmembers=0.0005``, 0.007 before): from the
re-estimated start the fit loss pulls them away from spectra that are already close. On the
15 tuning scenes (seeds 0 and 1; ``benchmarks/results/deq_endmember_rate.md``) the mean
aRMSE goes from 0.0598 to 0.0484 (0.0490 for FCLS on the start, untrained), the mSAD from
0.056 to 0.034 rad (0.031 at the start), and the correction now lowers its ablation's mean
(0.0498) on 11 of the 15 scenes, by 12.3 % on the spatial scene at 15 dB (0.0942 against
0.1074) and by at most 4.2 % elsewhere; where it does not, it raises it by at most 0.9 %.
How much a correction that only denoises can gain is bounded by FCLS of the noise-free
image on the same start: 3.9 % at 15 dB (0.1021 against 0.1062), where the start's
endmembers are the error, and 25 % at 20 dB (0.0262 against 0.0349). In the benchmark (5
seeds, run after the choice) the mean aRMSE over its 13 scenes went from 0.0765 to 0.0740,
Jasper Ridge from 0.085 to 0.069 and Samson from 0.082 to 0.105 (there the faster endmember
learning had paid); the correction lowers its ablation's aRMSE by 35 % on the spatial scene
with variability, 12 % on Jasper Ridge and 6.1 % / 4.4 % on the spatial scenes at 15 / 20
dB, and changes it by -1.2 % to +1.3 % elsewhere (3 to 12 % worse on four scenes before).
Which way on the non-spatial scenes depends on the draw of the scene more than on its recipe:
on 40 fresh draws of the tuning recipes (``benchmarks/deq_correction_draws.py``, 4 scene
seeds, method seeds 0 to 2) the correction is better on 19, level on 6 and worse on 15,
mean -1.1 % (se 0.4): better on 13 and worse on 4 of the 20 at 20 dB, better on 6 and
worse on 11 of the 20 at 30 dB.

With ``solver="deq"`` the fixed point is found by Anderson acceleration and differentiated
implicitly (memory of one step of ``f``); with ``solver="unrolled"`` the twin applies ``f`` a
fixed number of times from the same start and backpropagates through every step (memory
growing with the number of steps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from torch import nn

from ..base import check_n_endmembers
from ..conventions import unit_peak
from ..errors import ConvergenceWarning, InputError
from ..linear import fcls, snnls
from ..linear.estimators import (
    ENDMEMBERS_RULES,
    N_ENDMEMBERS_RULES,
    SEED_RULES,
    is_extractor,
    resolve_endmembers,
)
from ..linear.hysime import noise_variance
from ..params import Boolean, Integer, NoneValue, Options, Real
from ..scene import Scene
from .egunet_reference import refined_reference
from .estimator import (
    DEVICE_RULES,
    EARLY_STOPPING_RULES,
    MAX_SECONDS_RULES,
    MIN_DELTA_RULES,
    PATIENCE_RULES,
    PRECISION_RULES,
    DeepUnmixer,
    Precision,
)
from .fixed_point import EquilibriumInfo, SolverOptions, equilibrium
from .simplex import mirror_step, project_simplex, simplex_quadratic_minimum

#: Lower bound of the (scaled) endmember spectra, enforced by projection after each step.
ENDMEMBER_FLOOR = 1e-5
#: Quantile of the pixel values that is mapped to 1 by the internal scaling.
_SCALE_QUANTILE = 0.999
#: arccos has an infinite slope at 1: cosines are clipped just below it.
_COS_LIMIT = 1.0 - 1e-6
#: A pixel whose cosine to its mixture is below this has no brightness (scaled data term):
#: the sign of <y, E^T a> is round-off there, and 1 / s would overflow.
_MIN_BRIGHT_COSINE = 1e-6
#: Inference stops once no abundance changes by more than this in an iteration (float32
#: resolves abundances near 1 to 6e-8, so a few roundings).
_INFERENCE_TOL = 1e-6
#: The inference iteration halves its step whenever the largest change of an abundance
#: falls by less than this factor: a learned map need not contract, and on a 100 x 100
#: scene of nine USGS spectra the plain iteration settled into a cycle (largest change
#: 2.9e-2 for 300 iterations) that the halved steps left in 24.
_STALL = 0.95
#: Unit endmember directions closer than this are one spectral shape, and a simplex of them
#: thinner than this is flat (float32 resolves them to about 1e-7).
_SHAPE_RESOLUTION = 1e-6
#: Size of the Monte-Carlo SURE perturbation, in noise standard deviations: small enough
#: that the FCLS-like maps are locally linear over it, large against the float32 round-off
#: of the two equilibria (1e-6 of abundances near 1).
_SURE_PERTURBATION = 0.1

Solver = Literal["deq", "unrolled"]
Projection = Literal["euclidean", "mirror"]
DataTerm = Literal["scaled", "linear"]
Loss = Literal["fit", "sure", "recorrupted"]
CorrectionLoss = Literal["sure", "recorrupted"]
#: The values of ``solver``, ``projection``, ``data_term`` and ``loss`` (their rules' options).
SOLVERS: tuple[Solver, ...] = get_args(Solver)
PROJECTIONS: tuple[Projection, ...] = get_args(Projection)
DATA_TERMS: tuple[DataTerm, ...] = get_args(DataTerm)
LOSSES: tuple[Loss, ...] = get_args(Loss)
CORRECTION_LOSSES: tuple[CorrectionLoss, ...] = get_args(CorrectionLoss)


# -- the learned iteration ----------------------------------------------------------------
class SpectralSpatialCorrection(nn.Module):
    """The CNN ``D_theta``: gradient correction from the abundances and the residual.

    The residual spectrum ``R = A E - Y / s`` (L channels) enters through a learned linear
    spectral projection to ``hidden`` features; with the abundances (P channels) they go
    through a 1x1 mixing layer, one 3x3 spatial layer and a 1x1 output layer (initialised at
    zero). The projection of ``R`` is computed as ``A (E W^T) - (Y W^T) / s`` with ``Y W^T`` formed
    once per solve, so an iteration costs O(N P hidden) instead of O(N L hidden).
    """

    def __init__(self, n_bands: int, n_endmembers: int, hidden: int):
        super().__init__()
        self.residual_projection = nn.Linear(n_bands, hidden, bias=False)
        self.mix = nn.Conv2d(n_endmembers + hidden, hidden, kernel_size=1)
        self.spatial = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, padding_mode="replicate")
        self.out = nn.Conv2d(hidden, n_endmembers, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # Conv2d(bias=True) has one

    def forward(self, abundances: torch.Tensor, residual_features: torch.Tensor) -> torch.Tensor:
        """(B, P, H, W) abundances, (B, hidden, H, W) projected residual -> (B, P, H, W)."""
        hidden = nn.functional.gelu(self.mix(torch.cat([abundances, residual_features], 1)))
        hidden = nn.functional.gelu(self.spatial(hidden))
        return self.out(hidden)


@dataclass
class _Operators:
    """Products of the image and the current endmembers that every iteration reuses.

    Attributes
    ----------
    gram : (P, P) ``E E^T``
    image_on_endmembers : (B, P, H, W) ``Y E^T``, so that the gradient is ``A gram - Y E^T``
    step : scalar tensor, eta = step_scale / lambda_max(E E^T)
    endmember_features : (P, hidden) ``E W^T`` (W the residual projection); None without
        the correction
    image_features : (B, hidden, H, W) ``Y W^T``; None without the correction
    image_norms : (B, 1, H, W) ``||y||``, for the brightness of the scaled data term; None
        for the linear one
    """

    gram: torch.Tensor
    image_on_endmembers: torch.Tensor
    step: torch.Tensor
    endmember_features: torch.Tensor | None = None
    image_features: torch.Tensor | None = None
    image_norms: torch.Tensor | None = None


class DEQUnmixNet(nn.Module):
    """Endmembers and the learned iteration ``f``; images are (B, L, H, W), abundances
    (B, P, H, W), both in the internal (scaled) units.

    Parameters
    ----------
    endmembers : (P, L) tensor
        Initial endmembers (scaled units).
    hidden : int
        Width of the correction CNN.
    projection : {"euclidean", "mirror"}
    data_term : {"scaled", "linear"}
        Per-pixel scale ``s`` in the data term, or none (see the module notes).
    step_scale : float
        ``eta = step_scale / lambda_max(E E^T)``. With ``step_scale <= 1`` the gradient step
        ``I - eta E E^T`` has its eigenvalues in [0, 1) for full-rank E, and the projection is
        non-expansive, so ``f`` without correction is a contraction: the step adapts to the
        data scale and to E as it is learned, where a fixed eta (0.01 in the paper) is a
        contraction on one data scale only. The fixed points do not depend on the step.
    use_correction : bool
        Apply ``D_theta``; False: ``D_theta = 0``, ``f`` is plain projected gradient. The
        CNN is built either way, so that checkpoints have one layout and the random
        initialisation draws the same numbers, but without the correction nothing reads it.
    """

    def __init__(
        self,
        endmembers: torch.Tensor,
        hidden: int = 16,
        projection: str = "euclidean",
        data_term: str = "linear",
        step_scale: float = 1.0,
        use_correction: bool = True,
    ):
        super().__init__()
        n_endmembers, n_bands = endmembers.shape
        self.endmembers = nn.Parameter(endmembers.clone())
        self.correction = SpectralSpatialCorrection(n_bands, n_endmembers, hidden)
        self.projection = projection
        self.data_term = data_term
        self.step_scale = step_scale
        self.use_correction = use_correction
        self.constrain_endmembers()

    @torch.no_grad()
    def constrain_endmembers(self) -> None:
        """Keep the endmembers >= ENDMEMBER_FLOOR and, for the scaled data term, at unit peak.

        Called after every optimiser step: clamping is the Euclidean projection onto the
        bound. With a per-pixel brightness an endmember's norm is not identifiable (the
        brightness absorbs it) yet it sets how abundances split, so it is fixed by a
        convention: unit peak reflectance, that of the Samson and Jasper Ridge references.
        """
        self.endmembers.clamp_(min=ENDMEMBER_FLOOR)
        if self.data_term == "scaled":
            self.endmembers.div_(self.endmembers.amax(dim=1, keepdim=True))

    def operators(self, image: torch.Tensor) -> _Operators:
        """Precompute what :meth:`step` needs for ``image`` (B, L, H, W).

        For the exact step (:meth:`_exact_step`) ``gram`` and ``image_on_endmembers`` are
        float64: its solve amplifies their rounding by the condition number of ``E E^T``
        (1e4 and more for library spectra), which in float32 left the equilibrium 1e-5
        away from the float64 FCLS that inference runs.
        """
        E: torch.Tensor = self.endmembers
        if self._exact():
            E, image = E.double(), image.double()
        gram = E @ E.T
        ops = _Operators(
            gram=gram,
            image_on_endmembers=torch.einsum("blhw,pl->bphw", image, E),
            # Differentiable in E: eta is part of f, so the implicit gradient accounts for it.
            step=self.step_scale / torch.linalg.eigvalsh(gram)[-1],
        )
        if self.use_correction:
            weights = self.correction.residual_projection.weight  # (hidden, L)
            ops.endmember_features = self.endmembers @ weights.T
            ops.image_features = torch.einsum("blhw,kl->bkhw", image.to(weights.dtype), weights)
        if self.data_term == "scaled":
            ops.image_norms = image.norm(dim=1, keepdim=True)
        return ops

    def pixel_scale(self, abundances: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """(B, 1, H, W) least-squares brightness ``s = max(<y, E^T a>, 0) / ||E^T a||^2`` of
        each pixel given its abundances (all ones for ``data_term="linear"``).

        ``s = 0`` for a pixel with no positive projection on its mixture (a zero or negative
        spectrum), and for one within ``_MIN_BRIGHT_COSINE`` of a right angle to it.
        """
        if self.data_term == "linear":
            return torch.ones_like(abundances[:, :1])
        along = (abundances * ops.image_on_endmembers).sum(1, keepdim=True)
        energy = (
            (abundances * torch.einsum("bphw,pq->bqhw", abundances, ops.gram))
            .sum(1, keepdim=True)
            .clamp_min(torch.finfo(abundances.dtype).tiny)
        )
        assert ops.image_norms is not None  # operators() sets it for the scaled data term
        bright = along > _MIN_BRIGHT_COSINE * ops.image_norms * energy.sqrt()
        return torch.where(bright, along / energy, torch.zeros_like(along))

    def step(self, abundances: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """One application of ``f`` to (B, P, H, W) abundances."""
        # The data term is ||y / s - E^T a||^2 / 2: gradient A E E^T - (Y E^T) / s, and the
        # residual features W (A E - Y / s)^T = A (E W^T) - (Y W^T) / s. A pixel without
        # brightness (s = 0: a zero or negative spectrum) is best fitted by s = 0 whatever
        # its abundances; it has no shares, 1/P each as SNNLS gives them, and no residual
        # for the correction of its neighbours.
        if self._exact():
            return self._exact_step(abundances, ops)
        scale = self.pixel_scale(abundances, ops)
        bright = scale > 0
        has_data = bright.to(scale.dtype)
        # 1 / s where s > 0, 0 elsewhere, without a 1 / 0 (whose gradient would be NaN).
        inverse_scale = has_data / torch.where(bright, scale, torch.ones_like(scale))
        direction = (
            torch.einsum("bphw,pq->bqhw", abundances, ops.gram)
            - ops.image_on_endmembers * inverse_scale
        )
        if ops.endmember_features is not None and ops.image_features is not None:
            # with the correction (operators() sets the features then)
            residual_features = (
                has_data * torch.einsum("bphw,pk->bkhw", abundances, ops.endmember_features)
                - ops.image_features * inverse_scale
            )
            direction = direction + self.correction(abundances, residual_features)
        update = ops.step * direction
        if self.projection == "mirror":
            stepped = mirror_step(abundances, update, dim=1)
        else:
            stepped = project_simplex(abundances - update, dim=1)
        # A constant, not the iterate itself: f must not be the identity there, or the
        # implicit gradient's linear system (I - J^T) would be singular.
        return torch.where(bright, stepped, torch.full_like(stepped, 1 / stepped.shape[1]))

    def _exact_step(self, abundances: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """``f`` for the linear data term and the Euclidean projection, in its exact form:
        each pixel's ``argmin_a |y - E^T a|^2 / 2 + D(A)^T a`` over the simplex, i.e. the
        projected-gradient iteration run to its end with the correction held fixed.

        Its fixed points are those of the projected-gradient step for every step size (both
        say that ``-(A E E^T - Y E^T + D(A))`` lies in the normal cone of the simplex at
        ``A``), so the equilibrium, its ablation (FCLS) and the implicit gradient are the
        same; but the gradient step contracts by only ``1 - lambda_min / lambda_max`` of
        ``E E^T`` per iteration (0.999 on Samson, 0.99995 on nine USGS spectra, where
        100 Anderson iterations did not reach the tolerance), and this one moves only with
        the correction: a few iterations, forward and adjoint.
        """
        linear = ops.image_on_endmembers
        if ops.endmember_features is not None and ops.image_features is not None:
            residual_features = (
                torch.einsum("bphw,pk->bkhw", abundances, ops.endmember_features)
                - ops.image_features
            )
            linear = linear - self.correction(abundances, residual_features).to(linear.dtype)
        pixels = linear.movedim(1, -1)
        solved = simplex_quadratic_minimum(ops.gram, pixels.reshape(-1, pixels.shape[-1]))
        return solved.reshape(pixels.shape).movedim(-1, 1).to(abundances.dtype)

    def _exact(self) -> bool:
        """Whether ``f`` takes its exact form (:meth:`_exact_step`): the linear data term
        with the Euclidean projection."""
        return self.data_term == "linear" and self.projection == "euclidean"

    def reconstruct(self, abundances: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """(B, P, H, W) abundances -> (B, L, H, W) mixtures ``s A E``."""
        mixtures = torch.einsum("bphw,pl->blhw", abundances, self.endmembers)
        return mixtures * self.pixel_scale(abundances, ops)

    def solve(
        self,
        ops: _Operators,
        start: torch.Tensor,
        solver: str,
        forward: SolverOptions,
        backward: SolverOptions,
        unrolled_steps: int,
    ) -> tuple[torch.Tensor, EquilibriumInfo | None]:
        """Abundances (B, P, H, W) of the image of ``ops`` from the starting point ``start``.

        ``solver="deq"``: the equilibrium, implicit gradient (no warning: the caller reads
        the returned info). ``solver="unrolled"``: ``unrolled_steps`` applications of ``f``
        with backpropagation through all of them (info None).
        """
        if solver == "deq":
            return equilibrium(lambda a: self.step(a, ops), start, forward, backward, warn=False)
        abundances = start
        for _ in range(unrolled_steps):
            abundances = self.step(abundances, ops)
        return abundances, None


def unmixing_loss(
    image: torch.Tensor, reconstruction: torch.Tensor, valid: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Mean spectral angle plus ``alpha`` times the mean squared error, over valid pixels.

    Parameters
    ----------
    image, reconstruction : (B, L, H, W)
    valid : (B, H, W) bool
    alpha : float
    """
    y = image.movedim(1, -1)[valid]
    y_hat = reconstruction.movedim(1, -1)[valid]
    # A zero spectrum (a dark pixel, or the zero mixture of a pixel without brightness) has
    # no angle: it counts as a right angle, with no gradient (a division by a clamped norm
    # would give one of order 1 / tiny, inf or NaN once multiplied by the zero brightness).
    norms = y.norm(dim=-1) * y_hat.norm(dim=-1)
    defined = norms > torch.finfo(y.dtype).tiny
    cosine = torch.where(
        defined,
        (y * y_hat).sum(dim=-1) / torch.where(defined, norms, torch.ones_like(norms)),
        torch.zeros_like(norms),
    ).clamp(-_COS_LIMIT, _COS_LIMIT)
    return torch.arccos(cosine).mean() + alpha * ((y - y_hat) ** 2).mean()


def whitened_error(
    target: torch.Tensor, reconstruction: torch.Tensor, valid: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over valid pixels and bands, each band divided by its noise
    standard deviation ``std`` (1, L, 1, 1) (floored at 1e-3 of the median, so that a
    noise-free band does not divide by zero).

    Parameters
    ----------
    target, reconstruction : (B, L, H, W)
    valid : (B, H, W) bool
    """
    residual = ((reconstruction - target) / _floored(std)).movedim(1, -1)[valid]
    return (residual**2).mean()


def _floored(std: torch.Tensor) -> torch.Tensor:
    """Noise levels floored at 1e-3 of their median, so that a noise-free band does not
    divide by zero."""
    return std.clamp_min(1e-3 * std.flatten().median().clamp_min(torch.finfo(std.dtype).tiny))


def sure_loss(
    image: torch.Tensor,
    reconstruction: torch.Tensor,
    perturbed_reconstruction: torch.Tensor,
    probe: torch.Tensor,
    epsilon: float,
    valid: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """Stein's unbiased estimate of the mean squared error, whitened by the noise, of the
    reconstruction ``h(Y)`` of the noise-free image, from the noisy image alone.

    ``SURE = |h(Y) - Y|^2 / n - 1 + 2 div h / n`` in units whitened by each band's noise
    standard deviation (``n`` valid pixels times bands), with the divergence of ``h`` by
    Monte Carlo (Ramani, Blu & Unser, IEEE TIP 17(9), 2008):
    ``div h ~ b^T (h(Y + epsilon std b) - h(Y)) / (epsilon std)``, ``b`` standard normal.
    For Gaussian noise of the given level its expectation is the whitened error against
    the noise-free image: fitting the noise costs divergence, and spatial context that
    lowers the error lowers the estimate.

    Parameters
    ----------
    image, reconstruction, perturbed_reconstruction, probe : (B, L, H, W)
        ``Y``, ``h(Y)``, ``h(Y + epsilon std b)`` and ``b``.
    epsilon : float
        Size of the perturbation, in noise standard deviations.
    valid : (B, H, W) bool
    std : (1, L, 1, 1)
        Noise standard deviation of each band (floored at 1e-3 of the median).
    """
    std = _floored(std)
    weights = valid[:, None].to(image.dtype)
    count = weights.sum() * image.shape[1]
    fit = (((reconstruction - image) / std) ** 2 * weights).sum() / count
    divergence = probe * (perturbed_reconstruction - reconstruction) / (epsilon * std) * weights
    return fit - 1 + 2 * divergence.sum() / count


def simplex_log_volume(endmembers: torch.Tensor) -> torch.Tensor:
    """Log volume of the simplex spanned by the unit-norm endmember directions (P, L).

    ``0.5 log det(D D^T)`` with ``D`` the (P-1, L) edges from the first vertex. Directions,
    not spectra: the angle-based loss and the scaled data term do not see an endmember's
    norm, so a penalty on raw spectra would shrink them instead of the simplex.
    """
    directions = endmembers / endmembers.norm(dim=1, keepdim=True)
    edges = directions[1:] - directions[:1]
    return 0.5 * torch.logdet(edges @ edges.T)


def check_simplex(endmembers: torch.Tensor) -> None:
    """An InputError when the shapes (unit directions) of ``endmembers`` (P, L) span a
    flat simplex: when two have one spectral shape (duplicated or proportional spectra, or
    spectra without a positive value, which the floor makes alike), or when the simplex is
    thinner than ``_SHAPE_RESOLUTION`` in some direction.

    Its log volume (:func:`simplex_log_volume`) is then -inf or round-off, with an undefined
    or meaningless gradient. The message names the endmembers that share a shape.
    """
    directions = _directions(endmembers.detach().double().cpu().numpy())
    thickness = np.linalg.svd(directions[1:] - directions[0], compute_uv=False)[-1]
    if thickness > _SHAPE_RESOLUTION and bool(torch.isfinite(simplex_log_volume(endmembers))):
        return
    alike = np.linalg.norm(directions[:, None] - directions[None], axis=-1) <= _SHAPE_RESOLUTION
    groups = sorted({tuple(np.flatnonzero(row)) for row in alike if row.sum() > 1})
    problem = (
        "the endmember shapes span a flat simplex"
        if not groups
        else "endmembers "
        + ", ".join(" = ".join(map(str, g)) for g in groups)
        + " have the same spectral shape (duplicated or proportional spectra, or no "
        "positive value: negative data?)"
    )
    raise InputError(
        f"DEQ-Unmix cannot start from these initial endmembers: {problem}; give "
        "distinct endmembers or a smaller n_endmembers"
    )


# -- the estimator ------------------------------------------------------------------------
class DEQUnmix(DeepUnmixer):
    """Blind deep-equilibrium unmixing (DEQ-Unmix), a spatial method.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P. None: the number of given endmembers, else HySime's estimate.
    solver : {"deq", "unrolled"}, default="deq"
        Equilibrium with implicit differentiation, or the unrolled twin (``unrolled_steps``
        applications of the same iteration, backpropagation through all of them).
    projection : {"euclidean", "mirror"}, default="euclidean"
        Exact Euclidean simplex projection, or the entropic (softmax) mirror step.
    data_term : {"linear", "scaled"}, default="linear"
        ``"linear"``: the plain linear mixing model of the paper, absolute
        fractions. ``"scaled"``: the data term has a per-pixel brightness factor, shares of
        unit-peak spectra (the angle-based loss and the untrained equilibrium agree); a pixel
        without brightness (zero or negative spectrum) has no shares and gets 1/P each, as
        from :func:`~hyperunmix.linear.snnls`. See the module notes; the default was chosen
        on tuning scenes.
    loss : {"fit", "sure", "recorrupted"}, default="fit"
        The training loss (plus the volume term). ``"fit"``: the paper's mean SAD plus
        ``alpha`` MSE against the image itself. ``"sure"``: Stein's unbiased estimate
        of the whitened squared error of the reconstruction against the noise-free image
        (:func:`sure_loss`; the noise level of each band estimated as in HySime,
        :func:`hyperunmix.linear.hysime.noise_variance`, which needs more valid pixels
        than bands), with the divergence from one perturbed solve per step.
        ``"recorrupted"``: recorrupted-to-recorrupted training (after Pang et al., CVPR
        2021): a draw ``z`` of the image's noise makes two copies, ``Y + a z`` that the
        solver sees and ``Y - z / a`` that the reconstruction is compared with
        (``a = recorruption``), by the whitened MSE. The default was chosen on the tuning
        scenes (``benchmarks/deq_training_signal.py``, see the module notes): ``"sure"``
        was the default before, and its abundances ended worse than their start.
    patch_size : int or None, default=32
        Each optimiser step trains on a random ``patch_size`` x ``patch_size`` window of
        the image (the whole image when it is smaller), ``ceil(H W / patch_size^2)``
        steps per epoch; None: one step per epoch on the whole image.
    epochs : int, default=40
        Passes over the image (see ``patch_size``), fewer when the loss levels off
        (``early_stopping``).
    learning_rate : float, default=0.001
        AdamW learning rate of the CNN (in scaled units, see Notes).
    lr_endmembers : float, default=0.0005
        AdamW learning rate of the endmembers (in scaled units, see Notes). Chosen on the
        15 tuning scenes (``benchmarks/deq_training_signal.py``, table in
        ``benchmarks/results/deq_endmember_rate.md``, seeds 0 and 1, from the re-estimated
        start): mean aRMSE 0.0598 at 0.007 (the default before), 0.0518 at 0.002, 0.0484
        at 0.0005 (better than 0.007 on 11 scenes), 0.0480 at 0.00025, against 0.0490 for
        FCLS on the start; the fit loss pulls the endmembers away from a start that is
        already close (mSAD 0.031 rad at the start, 0.056 after training at 0.007, 0.034 at
        0.0005). 0.0005 rather than 0.00025 (within 1 %) so that the endmembers still move.
        The rate is per optimiser step, and those scenes take 40 (32 x 32 px, one patch an
        epoch) or 50 steps (100 x 100 px, 5 epochs); trained the default 40 epochs (400
        steps, as many as on Samson or Jasper Ridge), the 100 x 100 ones prefer 0.007
        (0.0847 / 0.0464 / 0.0380 against 0.0914 / 0.0598 / 0.0411 at 15 / 20 / 30 dB;
        ``benchmarks/results/deq_rate_long_training.md``), as Samson does (0.082 against
        0.105) and Jasper Ridge does not (0.085 against 0.069). The mean over the 15 scenes
        still prefers 0.0005 (0.0502 against 0.0585; 0.0514 at 0.002, which the 100 x 100
        scenes at 15 dB prefer, 0.0743, and not at 20 dB, 0.0571). With every tuning scene
        made 100 x 100 and trained 40 epochs (about 400 steps, as on a real scene;
        ``benchmarks/results/deq_rate_realistic_size.md``) 0.0005 still wins: 0.0502
        against 0.0576 at 0.002, 0.0610 at 0.004 and 0.0678 at 0.007, lower than 0.007 on 11
        scenes; the faster rates win on the three spatial scenes (library spectra on
        mapped abundances) and linear mixing at 15 dB only. The preference is the scenes',
        not the step count's.
    weight_decay : float, default=0.01
        AdamW weight decay of the CNN (none on the endmembers: it would shrink the spectra).
    lr_step : int, default=15
        Learning rates are multiplied by ``lr_gamma`` every ``lr_step`` epochs.
    lr_gamma : float, default=0.8
        See ``lr_step``.
    alpha : float, default=0.2
        Weight of the MSE term of ``loss="fit"``.
    volume_weight : float, default=0.003
        Weight of the log volume of the endmember simplex (:func:`simplex_log_volume`) in
        the loss. The reconstruction loss alone is lowest for a simplex that also covers the
        noise around each vertex (on Samson the learned water endmember drifts from 0.11 to
        0.25 rad off the reference while the loss falls below that of the reference
        endmembers); the volume term holds the simplex in.
    step_scale : float, default=1.0
        Gradient step ``eta = step_scale / lambda_max(E E^T)`` (see :class:`DEQUnmixNet`)
        of the projected-gradient form of ``f``; the exact form (linear data term and
        Euclidean projection, see the module notes) has no step.
    hidden : int, default=16
        Width of the correction CNN.
    correction : bool, default=True
        Learn the spectral-spatial correction ``D_theta``. False is the ablation
        without it: ``D_theta = 0``, the iteration is plain projected gradient, whose
        equilibrium on the learned endmembers is normalised NNLS (``"scaled"``) or FCLS
        (``"linear"``); the CNN is neither applied nor optimised, and everything else
        (endmember learning, loss, volume term, solver, start, schedule) is unchanged.
    tol : float, default=1e-6
        Relative residual tolerance of the Anderson solves (``solver="deq"``). The gradient
        step contracts slowly (by about ``1 - lambda_min / lambda_max`` of ``E E^T``, 0.999
        on Samson), so a small residual is not yet a small error: at ``tol=1e-4`` the solve
        stops after two iterations, 0.005 away from the equilibrium; at ``1e-6`` the error
        is below 1e-4.
    max_iter : int, default=100
        Iteration budget of the forward Anderson solve (twice it for the adjoint solve).
    history : int, default=5
        Memory of the Anderson solves.
    unrolled_steps : int, default=10
        Iterations of the unrolled twin (``solver="unrolled"``).
    endmembers : array (P, L), path or {"nfindr", "vca", "atgp"}, default="nfindr"
        Initial endmembers (learned from there). ``"nfindr"`` rather than the
        paper's VCA: training moves the endmembers only locally, so a material the start
        misses stays missed, and VCA's random directions can land on noisy or dark extreme
        pixels. Chosen on the tuning scenes (``benchmarks/tune_defaults.py``, seeds 0 and 1:
        mean aRMSE 0.0443 from N-FINDR, 0.0445 from VCA, with the linear data term).
    endmember_averaging : float, default=0.0
        Share of the pixels, the closest in spectral angle to each initial endmember, whose
        mean replaces it (0 keeps the extracted spectra, so that training starts from the
        matched baseline, N-FINDR + FCLS; applied after ``refine_fraction``). Averaging
        lowers the start's mSAD but not its aRMSE: on the tuning scenes it lowered it where
        pure pixels are many (USGS spectra, the spatial maps) and raised it where they are
        few (the analytic library's random fields: 0.056 to 0.098 on linear mixing at
        20 dB), and a dark
        endmember (water) stays far off (its angle picks pixels by their noise). With
        ``"fit"`` on the twelve 32 x 32 tuning scenes, mean aRMSE 0.080 from the start
        averaged over 1 % of the pixels (worse than N-FINDR + FCLS on 6) against 0.068
        from N-FINDR's spectra (``benchmarks/deq_training_signal.py``).
    refine_fraction : float in (0, 1] or None, default=0.04
        Endmembers found by an extractor (``endmembers`` a name) are re-estimated before
        training (so with or without the correction): for each material, the mean of this
        fraction of the pixels with the largest SNNLS share of it on the extracted spectra
        at unit peak (:func:`~hyperunmix.deep.egunet_reference.refined_reference`, the rule
        of EGU-Net's and ID-Net's ``refine_fraction``). Given endmembers (an array, a file)
        are used as given, and so are extracted ones when one has no positive peak (a zero
        pixel), with a warning. None: the extracted spectra, so that training starts from
        the matched baseline, N-FINDR + FCLS (the default before). Chosen on the tuning scenes
        (``benchmarks/deq_training_signal.py``, see the module notes): mean aRMSE 0.0598
        against 0.0693 with None, worse than N-FINDR + FCLS on 1 scene of 15 against 4.
    recorruption : float, default=1.0
        The factor ``a`` of ``loss="recorrupted"`` and of ``correction_loss="recorrupted"``
        (unused by the other losses).
    correction_epochs : int, default=0
        Epochs of a second phase, after the ``epochs`` of the first, that trains the
        correction alone, the endmembers frozen, with ``correction_loss`` (one step per
        patch, ``learning_rate`` and ``weight_decay``, no early stopping; none without the
        correction, or on a scene with no more valid pixels than bands, with a warning).
        0: no second phase, the default, chosen on the tuning scenes
        (``benchmarks/deq_training_signal.py``, see the module notes): 30 epochs lowered
        aRMSE by 15.6 % and 11.5 % on the spatial scenes at 15 and 20 dB and raised it by
        up to 7 % on five of the twelve 32 x 32 ones (with ``lr_endmembers=0.007`` and
        N-FINDR's spectra as extracted); at the current defaults they raise it, mean 0.0507
        against 0.0484, the spatial scenes at 15 / 20 dB 0.1119 / 0.0446 against
        0.0942 / 0.0374 (``benchmarks/results/deq_endmember_rate.md``).
    correction_loss : {"recorrupted", "sure"}, default="recorrupted"
        The noise-aware loss of the second phase (see ``loss``).
    seed : int, default=0
        Seeds the extractor, the CNN initialisation and torch.
    device : str, torch.device or None, default="auto"
        ``"auto"``: CUDA when a CUDA device is present, else the CPU; None or ``"cpu"``:
        the CPU; ``"cuda"`` or another torch device.
    precision : {"float32", "mixed"}, default="float32"
        ``"mixed"``: the forward passes at inference run under float16 autocast on a CUDA
        device (faster; maps within about 1e-3 of float32's); a no-op on the CPU. The
        training is float32 either way.
    max_seconds : float or None, default=None
        Time budget of the training: after the epoch that spends it, training stops with
        a ConvergenceWarning and the model is used as it is. None: no budget.
    early_stopping : bool, default=True
        Stop training once the loss has plateaued: when the mean loss of the last
        ``patience`` epochs is less than ``min_delta`` (relative) below the mean of the
        ``patience`` epochs before them, never before ``2 * patience`` epochs
        (:func:`~hyperunmix.deep.estimator.plateau_reached`). ``n_epochs_`` and
        ``stop_reason_`` say when and why training ended. False: ``epochs`` epochs.
    patience : int, default=10
        See ``early_stopping``. With ``min_delta``, chosen on the tuning scenes
        (``benchmarks/early_stopping.py``) with an earlier loss and 150 epochs (32 to 84
        epochs, mean aRMSE 0.0069 below the full run's). At the current defaults (same
        script, 4 scenes, method seeds 0 to 4, ``lr_endmembers=0.0005``) it runs 82 % of
        the 40 epochs, mean aRMSE 0.0001 above the full run's, 0.0004 at worst; 10 / 0.03
        would run 50 %, 0.0006 above, 0.0020 at worst (with ``lr_endmembers=0.007`` it
        was 51 % and 0.0023 below: stopping early had spared the endmembers' drift).
    min_delta : float, default=0.003
        See ``early_stopping``.

    Attributes
    ----------
    convention : {"shares", "absolute"}
        What the abundances are fractions of (:mod:`hyperunmix.conventions`): ``"shares"``
        of unit-peak spectra for ``data_term="scaled"``, ``"absolute"`` for ``"linear"``.
    endmembers_ : (P, L) float64
        Learned endmembers, in the scene's units.
    initial_endmembers_ : (P, L) float64
        The endmembers the training started from: the extractor's (or given) spectra, after
        ``refine_fraction`` and ``endmember_averaging``.
    n_bands_ : int
    input_scale_ : float
        The scene's values are multiplied by it: 1 / the 99.9 % quantile of the training
        pixels.
    loss_ : str
        The loss trained with: ``loss``, or ``"fit"`` (with a warning) when the scene has
        no more valid pixels than bands to estimate the noise level from.
    correction_loss_ : str or None
        The second phase's loss, None when there was none (see ``correction_epochs``).
    noise_std_ : (L,) float64
        Noise standard deviation of each band, in internal units (zeros when no loss
        needs it).
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss`` (the mean over its steps), and for the
        DEQ ``forward_iterations``, ``backward_iterations`` (means over the epoch's solves)
        and ``forward_residual``, ``backward_residual`` (their largest); ``phase`` 2.0 in
        the second phase's (``correction_epochs``).

    Notes
    -----
    Data are multiplied by ``input_scale_`` so that learning rates and ``alpha`` mean the
    same on reflectance in [0, 1] and on digital numbers. Endmembers are kept above
    ``ENDMEMBER_FLOOR`` (scaled units) by clamping after every optimiser step: a projection
    onto the feasible box, which keeps Adam's steps in reflectance units where a softplus
    parametrisation would flatten the gradient of low-reflectance bands (water) near zero.
    Starting abundances are the untrained equilibrium on the current endmembers (FCLS, or
    normalised NNLS for the scaled data term), both for the equilibrium solve (where the
    start only affects the cost) and for the unrolled twin (where it is its input).

    Examples
    --------
    Two epochs, for a demonstration (the default is 40):

    >>> import numpy as np
    >>> from hyperunmix.deep.deq import DEQUnmix
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = DEQUnmix(n_endmembers=3, epochs=2).fit(scene)
    >>> result = model.unmix(scene)
    >>> result.abundances.shape, result.endmembers.shape, result.convention
    ((16, 16, 3), (3, 200), 'absolute')
    >>> bool(np.allclose(result.abundances.sum(axis=-1), 1, atol=1e-5))
    True
    >>> [record["epoch"] for record in model.history_]
    [1, 2]
    """

    name: ClassVar[str] = "deq"
    #: The equilibrium couples pixels at any distance through the 3x3 layer, but the
    #: influence decays with distance. Measured on Samson after training (30 x 30 tile):
    #: largest difference to the whole-image abundances 1e-4 without context, 4e-5 (the
    #: solver tolerance) with 8 px and with 16 px. With the default training (which
    #: reaches its equilibrium, so that inference runs the per-pixel iteration), chunks of
    #: 32 and 48 px with this halo (``hyperunmix.scale.unmix_large``) differ from the
    #: whole image by at most 4.2e-7 on Samson and 1.4e-6 on synthetic_spatial_20db
    #: (9.8e-7 from 8 px off a chunk's edge).
    spatial_context: ClassVar[int] = 8

    _parameter_rules: ClassVar = {
        "n_endmembers": N_ENDMEMBERS_RULES,
        "solver": [Options(*SOLVERS)],
        "projection": [Options(*PROJECTIONS)],
        "data_term": [Options(*DATA_TERMS)],
        "loss": [Options(*LOSSES)],
        "patch_size": [Integer(4), NoneValue()],
        "epochs": [Integer(1)],
        "learning_rate": [Real(0, closed="neither")],
        "lr_endmembers": [Real(0, closed="neither")],
        "weight_decay": [Real(0)],
        "lr_step": [Integer(1)],
        "lr_gamma": [Real(0, 1, closed="right")],
        "alpha": [Real(0)],
        "volume_weight": [Real(0)],
        # (0, 2]: a non-expansive gradient step (see DEQUnmixNet)
        "step_scale": [Real(0, 2, closed="right")],
        "hidden": [Integer(1)],
        "correction": [Boolean()],
        "tol": [Real(0, closed="neither")],
        "max_iter": [Integer(1)],
        "history": [Integer(1)],
        "unrolled_steps": [Integer(1)],
        "endmembers": ENDMEMBERS_RULES,
        "endmember_averaging": [Real(0, 1, closed="left")],
        "refine_fraction": [Real(0, 1, closed="right"), NoneValue()],
        "recorruption": [Real(0, closed="neither")],
        "correction_epochs": [Integer(0)],
        "correction_loss": [Options(*CORRECTION_LOSSES)],
        "seed": SEED_RULES,
        "device": DEVICE_RULES,
        "precision": PRECISION_RULES,
        "max_seconds": MAX_SECONDS_RULES,
        "early_stopping": EARLY_STOPPING_RULES,
        "patience": PATIENCE_RULES,
        "min_delta": MIN_DELTA_RULES,
    }
    _checkpoint_arrays: ClassVar = (
        "fill_spectrum_",
        "initial_endmembers_",
        "endmembers_",
        "noise_std_",
    )
    _checkpoint_values: ClassVar = ("loss_", "correction_loss_")
    _renamed_params: ClassVar = {"lr": "learning_rate"}
    network_: DEQUnmixNet

    def __init__(
        self,
        n_endmembers: int | None = None,
        *,
        solver: Solver = "deq",
        projection: Projection = "euclidean",
        data_term: DataTerm = "linear",
        loss: Loss = "fit",
        patch_size: int | None = 32,
        epochs: int = 40,
        learning_rate: float = 0.001,
        lr_endmembers: float = 0.0005,
        weight_decay: float = 0.01,
        lr_step: int = 15,
        lr_gamma: float = 0.8,
        alpha: float = 0.2,
        volume_weight: float = 0.003,
        step_scale: float = 1.0,
        hidden: int = 16,
        correction: bool = True,
        tol: float = 1e-6,
        max_iter: int = 100,
        history: int = 5,
        unrolled_steps: int = 10,
        endmembers: Any = "nfindr",
        endmember_averaging: float = 0.0,
        refine_fraction: float | None = 0.04,
        recorruption: float = 1.0,
        correction_epochs: int = 0,
        correction_loss: CorrectionLoss = "recorrupted",
        seed: int = 0,
        device: str | torch.device | None = "auto",
        precision: Precision = "float32",
        max_seconds: float | None = None,
        early_stopping: bool = True,
        patience: int = 10,
        min_delta: float = 0.003,
        **renamed: Any,
    ):
        self.n_endmembers = n_endmembers
        self.solver = solver
        self.projection = projection
        self.data_term = data_term
        self.loss = loss
        self.patch_size = patch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.lr_endmembers = lr_endmembers
        self.weight_decay = weight_decay
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.alpha = alpha
        self.volume_weight = volume_weight
        self.step_scale = step_scale
        self.hidden = hidden
        self.correction = correction
        self.tol = tol
        self.max_iter = max_iter
        self.history = history
        self.unrolled_steps = unrolled_steps
        self.endmembers = endmembers
        self.endmember_averaging = endmember_averaging
        self.refine_fraction = refine_fraction
        self.recorruption = recorruption
        self.correction_epochs = correction_epochs
        self.correction_loss = correction_loss
        self.seed = seed
        self.device = device
        self.precision = precision
        self.max_seconds = max_seconds
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_delta = min_delta
        self._take_renamed(renamed)

    @property
    def convention(self) -> str:
        """``"shares"`` with the scaled data term (unit-peak endmembers and a free per-pixel
        brightness), ``"absolute"`` with the linear one."""
        return "shares" if self.data_term == "scaled" else "absolute"

    @property
    def scale_(self) -> float:
        """Deprecated: data units per internal unit, now ``1 / input_scale_``."""
        warnings.warn("DEQUnmix.scale_ is now 1 / input_scale_", DeprecationWarning, stacklevel=2)
        return 1.0 / self.input_scale_

    # -- training ----------------------------------------------------------------------------
    def _input_scale(self, pixels: np.ndarray) -> float:
        return 1.0 / _robust_scale(pixels)

    def _build(self, scene: Scene, pixels: np.ndarray, generator: torch.Generator) -> None:
        """The initial endmembers (extracted, re-estimated from the purest pixels, then
        averaged over their closest pixels) and, for the SURE and recorrupted losses, each
        band's noise level."""
        initial = resolve_endmembers(self.endmembers, scene, self.n_endmembers, self.seed)
        check_n_endmembers(len(initial), scene.n_bands, len(pixels))
        if self.refine_fraction is not None and is_extractor(self.endmembers):
            initial = _refined_start(pixels, initial, self.refine_fraction)
        self.initial_endmembers_ = average_closest_pixels(pixels, initial, self.endmember_averaging)
        self.fill_spectrum_ = pixels.mean(axis=0)
        self.noise_std_ = np.zeros(scene.n_bands)
        self.loss_ = self.loss
        self.correction_loss_ = (
            self.correction_loss if self.correction and self.correction_epochs else None
        )
        if (self.loss != "fit" or self.correction_loss_) and len(pixels) <= scene.n_bands:
            warnings.warn(
                f"loss={self.loss!r} / correction_loss={self.correction_loss_!r} need the "
                "noise level, estimated by regression across bands, which needs more valid "
                f"pixels than bands; the scene has {len(pixels)} and {scene.n_bands}: trained "
                "with loss='fit' and no second phase",
                UserWarning,
                stacklevel=4,  # the caller of fit
            )
            self.loss_, self.correction_loss_ = "fit", None
        if self.loss_ != "fit" or self.correction_loss_:
            self.noise_std_ = np.sqrt(noise_variance(pixels)) * self.input_scale_

    def _network(self) -> DEQUnmixNet:
        scaled = np.maximum(self.initial_endmembers_ * self.input_scale_, ENDMEMBER_FLOOR)
        return DEQUnmixNet(
            torch.as_tensor(scaled, dtype=torch.float32),
            self.hidden,
            self.projection,
            self.data_term,
            self.step_scale,
            use_correction=self.correction,
        )

    def _train(
        self, scene: Scene, pixels: np.ndarray, generator: torch.Generator, built: None
    ) -> None:
        """Learn the endmembers and (unless ``correction=False``) the correction CNN, one
        optimiser step per patch (:meth:`_patches`); then the second phase, if any
        (:meth:`_train_correction`)."""
        net = self.network_
        if self.volume_weight:
            check_simplex(net.endmembers)
        image, valid = self._image_tensors(scene.cube, scene.mask)
        groups = [{"params": [net.endmembers], "lr": self.lr_endmembers, "weight_decay": 0.0}]
        if self.correction:
            groups.append(
                {
                    "params": list(net.correction.parameters()),
                    "lr": self.learning_rate,
                    "weight_decay": self.weight_decay,
                }
            )
        optimiser = torch.optim.AdamW(groups)
        schedule = torch.optim.lr_scheduler.StepLR(optimiser, self.lr_step, self.lr_gamma)
        # The equilibrium solve of a patch starts from the last equilibrium of its pixels,
        # near the new one when the weights moved little (the start does not change an
        # equilibrium, only its cost); the unrolled twin's start is its input, FCLS.
        latest = self._start(image) if self.solver == "deq" else None
        for epoch in range(1, self.epochs + 1):
            loss, stats = self._epoch(optimiser, image, valid, generator, latest, self.loss_)
            schedule.step()
            # complete named: mypy would match the stats' floats to that bool parameter
            if not self._record_epoch(epoch, self.epochs, loss, complete=True, **stats):
                break
        if self.correction_loss_:
            self._train_correction(image, valid, generator, latest, self.correction_loss_)
        _warn_unconverged(self.history_, *self._solver_options())

    def _train_correction(
        self,
        image: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator,
        latest: torch.Tensor | None,
        loss_name: str,
    ) -> None:
        """Second phase: ``correction_epochs`` epochs that train the correction alone, the
        endmembers frozen, with the noise-aware ``loss_name``."""
        net = self.network_
        net.endmembers.requires_grad_(False)
        optimiser = torch.optim.AdamW(
            net.correction.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        first = len(self.history_)
        for epoch in range(1, self.correction_epochs + 1):
            loss, stats = self._epoch(optimiser, image, valid, generator, latest, loss_name)
            self.history_.append({"epoch": first + epoch, "loss": loss, "phase": 2.0, **stats})
        net.endmembers.requires_grad_(True)

    def _epoch(
        self,
        optimiser: torch.optim.Optimizer,
        image: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator,
        latest: torch.Tensor | None,
        loss_name: str,
    ) -> tuple[float, dict[str, float]]:
        """One pass over the patches of ``image`` (:meth:`_patches`), an optimiser step on
        ``loss_name`` per patch, the endmembers kept feasible; ``latest``, the equilibria the
        solves start from (None for the unrolled twin), updated in place. Returns the mean
        loss and the solves' statistics."""
        losses, solves = [], []
        for window in self._patches((image.shape[-2], image.shape[-1]), generator):
            optimiser.zero_grad()
            start = None if latest is None else latest[window]
            loss, abundances, infos = self._patch_loss(
                image[window], valid[:, window[2], window[3]], start, generator, loss_name
            )
            loss.backward()
            optimiser.step()
            # A projection: a no-op on the frozen endmembers of the second phase.
            self.network_.constrain_endmembers()
            if latest is not None:
                latest[window] = abundances
            losses.append(loss.detach().item())
            solves.extend(infos)
        return float(np.mean(losses)), _solve_stats(solves)

    def _patches(
        self, shape: tuple[int, int], generator: torch.Generator
    ) -> list[tuple[slice, ...]]:
        """The windows of one epoch, as index tuples of a (1, C, H, W) tensor: the whole
        image (``patch_size=None``), or ``ceil(H W / patch_size^2)`` crops of
        ``patch_size`` squared pixels (the image's size where it is smaller) at random
        places, as many pixels as the image in all."""
        n_rows, n_cols = shape
        if self.patch_size is None:
            return [(slice(None), slice(None), slice(None), slice(None))]
        height, width = min(self.patch_size, n_rows), min(self.patch_size, n_cols)
        count = math.ceil(n_rows * n_cols / (height * width))
        tops = torch.randint(0, n_rows - height + 1, (count,), generator=generator).tolist()
        lefts = torch.randint(0, n_cols - width + 1, (count,), generator=generator).tolist()
        return [
            (slice(None), slice(None), slice(top, top + height), slice(left, left + width))
            for top, left in zip(tops, lefts)
        ]

    def _patch_loss(
        self,
        image: torch.Tensor,
        valid: torch.Tensor,
        start: torch.Tensor | None,
        generator: torch.Generator,
        loss_name: str,
    ) -> tuple[torch.Tensor, torch.Tensor, list[EquilibriumInfo]]:
        """The training loss of (1, L, h, w) ``image`` with (1, h, w) ``valid`` pixels;
        the equilibrium abundances (detached), and the solves' info (none for the unrolled
        twin). ``start``: where the equilibrium solve starts (None: FCLS)."""
        net = self.network_
        forward, backward = self._solver_options()
        seen, target = self._training_pair(image, generator, loss_name)
        ops = net.operators(seen)
        abundances, info = net.solve(
            ops,
            self._start(seen) if start is None else start,
            self.solver,
            forward,
            backward,
            self.unrolled_steps,
        )
        infos = [] if info is None else [info]
        reconstruction = net.reconstruct(abundances, ops)
        if loss_name == "sure":
            std = self._noise_std(image)
            probe = torch.randn(image.shape, generator=generator).to(image.device)
            shifted = image + _SURE_PERTURBATION * std * probe
            shifted_ops = net.operators(shifted)
            # The equilibrium moves by O(epsilon): the first one is a close start.
            shifted_abundances, shifted_info = net.solve(
                shifted_ops,
                abundances.detach() if info is not None else self._start(shifted),
                self.solver,
                forward,
                backward,
                self.unrolled_steps,
            )
            infos += [] if shifted_info is None else [shifted_info]
            loss = sure_loss(
                image,
                reconstruction,
                net.reconstruct(shifted_abundances, shifted_ops),
                probe,
                _SURE_PERTURBATION,
                valid,
                std,
            )
        elif loss_name == "recorrupted":
            loss = whitened_error(target, reconstruction, valid, self._noise_std(image))
            loss = loss / (1 + self.recorruption**-2)  # the noise's share, for scale
        else:
            loss = unmixing_loss(target, reconstruction, valid, self.alpha)
        if self.volume_weight and net.endmembers.requires_grad:
            loss = loss + self.volume_weight * simplex_log_volume(net.endmembers)
        return loss, abundances.detach(), infos

    def _noise_std(self, image: torch.Tensor) -> torch.Tensor:
        """(1, L, 1, 1) noise standard deviation of each band, in internal units."""
        return torch.as_tensor(self.noise_std_, dtype=image.dtype, device=image.device)[
            None, :, None, None
        ]

    def _training_pair(
        self, image: torch.Tensor, generator: torch.Generator, loss_name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the solver sees and what its reconstruction is compared with: the image
        twice, or (``loss_name="recorrupted"``) its two recorrupted copies ``Y + a z`` and
        ``Y - z / a``."""
        if loss_name != "recorrupted":
            return image, image
        draw = torch.randn(image.shape, generator=generator).to(image.device)
        noise = self._noise_std(image) * draw
        return image + self.recorruption * noise, image - noise / self.recorruption

    def _finish(self, scene: Scene, pixels: np.ndarray) -> None:
        self.endmembers_ = self._spectra_in_scene_units(
            *self._image_tensors(scene.cube, scene.mask)
        )

    def _solver_options(self) -> tuple[SolverOptions, SolverOptions]:
        forward = SolverOptions(tol=self.tol, max_iter=self.max_iter, history=self.history)
        backward = SolverOptions(tol=self.tol, max_iter=2 * self.max_iter, history=self.history)
        return forward, backward

    # -- inference ---------------------------------------------------------------------------
    def transform(self, cube: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Unmix an (h, w, L) block: ``{"abundances": (h, w, P) float32}``, NaN where invalid.

        Invalid pixels are filled with the training mean spectrum for the CNN's neighbourhoods
        and reported as NaN.
        """
        cube, mask = self._checked_block(cube, mask)
        image, _ = self._image_tensors(cube, mask)
        forward, backward = self._solver_options()
        with self._inference():
            if self._solves_by_correction():
                abundances, residual = self._corrected_fcls(image)
                converged, wanted = residual <= _INFERENCE_TOL, f"tol {_INFERENCE_TOL:.0e}"
            else:
                abundances, info = self.network_.solve(
                    self.network_.operators(image),
                    self._start(image),
                    self.solver,
                    forward,
                    backward,
                    self.unrolled_steps,
                )
                converged = info is None or info.forward.converged
                residual = math.nan if info is None else info.forward.residual
                wanted = f"relative tol {self.tol:.0e}"
        if not converged:
            warnings.warn(
                f"the equilibrium solve did not converge (residual {residual:.1e} > "
                f"{wanted}); raise max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        out = abundances[0].movedim(0, -1).cpu().numpy().astype(np.float32)
        out[~mask] = np.nan
        return {"abundances": out}

    def _solves_by_correction(self) -> bool:
        """Whether inference finds the equilibrium by :meth:`_corrected_fcls`: for the
        linear data term and the Euclidean projection, whose fixed points are those of
        that iteration, when the training's last forward solve reached the equilibrium.

        When it did not, the maps the training shaped are the Anderson solver's output
        after ``max_iter`` iterations, which the equilibrium need not resemble (on
        Samson, a model whose solves stopped at a relative residual of 4e-3 gives
        aRMSE 0.070 there and 0.33 at its equilibrium): inference then runs that solver.
        The unrolled twin's output is its steps, not a fixed point.
        """
        if self.solver != "deq" or self.data_term != "linear" or self.projection != "euclidean":
            return False
        last = self.history_[-1] if self.history_ else {}
        return last.get("forward_residual", math.inf) <= self.tol

    def _corrected_fcls(self, image: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The equilibrium on (1, L, H, W) ``image``, and the largest change of an abundance
        that ``f`` makes at the returned point's argument (the residual, in abundance units).

        With the linear data term and the Euclidean projection, ``A = f(A)`` holds for any
        step size exactly when ``-(A E E^T - Y E^T + D(A))`` lies in the normal cone of the
        simplex at ``A``: when ``A`` minimises ``|y - E^T a|^2 / 2 + D(A)^T a`` for every pixel,
        the FCLS problem of the shifted pixels ``y - E^T (E E^T)^-1 D(A)``. Iterating on
        the correction alone, ``A <- FCLS(Y - D(A) (E E^T)^-1 E)`` from FCLS (the equilibrium
        without correction), each step solves the slow, ill-conditioned data term exactly,
        where projected gradient steps contract by only ``1 - lambda_min / lambda_max`` of
        ``E E^T`` (0.999 on Samson): a few iterations reach float32 round-off. Where the
        largest change stalls (falls by less than ``_STALL``) the step to the new point is
        halved from there on (the averaged iteration of Krasnoselskii and Mann, which
        converges for a non-expansive map). The stop asks every pixel's change to be within
        the tolerance, not a norm over the block (at Anderson's relative residual of 6e-7
        single abundances were still 2e-5 from their fixed point), so a chunk and the whole
        image give the same maps to about the tolerance away from the halo's edge.
        """
        net = self.network_
        ops = net.operators(image)
        endmembers = net.endmembers.detach().double().cpu().numpy()
        n_endmembers = len(endmembers)
        pixels = image[0].reshape(image.shape[1], -1).T.double().cpu().numpy()  # (N, L)
        shift_basis = np.linalg.solve(endmembers @ endmembers.T, endmembers)  # (P, L)
        current = fcls(pixels, endmembers)
        change, weight = math.inf, 1.0
        features = ops.endmember_features, ops.image_features  # None without the correction
        for _ in range(self.max_iter if features[0] is not None else 0):
            abundances = _as_image(current, image)
            assert features[0] is not None and features[1] is not None
            # D(A), as DEQUnmixNet.step computes it for the linear data term (s = 1).
            residual_features = torch.einsum("bphw,pk->bkhw", abundances, features[0]) - features[1]
            correction = net.correction(abundances, residual_features)
            correction = correction[0].reshape(n_endmembers, -1).T.double().cpu().numpy()
            step = fcls(pixels - correction @ shift_basis, endmembers) - current
            latest = float(np.abs(step).max())
            if latest <= _INFERENCE_TOL:
                return _as_image(current + step, image), latest
            if latest > _STALL * change:
                weight /= 2
            current = current + weight * step
            change = latest
        return _as_image(current, image), 0.0 if math.isinf(change) else change

    # -- helpers -----------------------------------------------------------------------------
    def _image_tensors(
        self, cube: np.ndarray, mask: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, H, W) scaled image, invalid pixels at the fill spectrum; (1, H, W) mask."""
        filled = np.where(mask[..., None], cube, self.fill_spectrum_) * self.input_scale_
        device = self.network_.endmembers.device
        image = torch.as_tensor(
            np.moveaxis(filled, -1, 0)[None], dtype=torch.float32, device=device
        )
        return image, torch.as_tensor(mask[None], device=device)

    def _start(self, image: torch.Tensor) -> torch.Tensor:
        """(1, P, H, W) equilibrium of the uncorrected iteration on the current endmembers:
        FCLS (linear data term) or NNLS normalised to sum to one (scaled data term)."""
        endmembers = self.network_.endmembers.detach().double().cpu().numpy()
        pixels = image[0].movedim(0, -1).double().cpu().numpy()
        solve = fcls if self.data_term == "linear" else snnls
        start = solve(pixels, endmembers)
        return torch.as_tensor(
            np.moveaxis(start, -1, 0)[None], dtype=image.dtype, device=image.device
        )

    def _spectra_in_scene_units(self, image: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
        """(P, L) learned endmembers in the scene's units. With the scaled data term the
        unit-peak shapes are multiplied by the abundance-weighted mean brightness of the
        pixels, i.e. the typical peak reflectance of each material in the scene."""
        net = self.network_
        endmembers = net.endmembers.detach().double()
        if self.data_term == "scaled":
            forward, backward = self._solver_options()
            with torch.no_grad():
                ops = net.operators(image)
                abundances, _ = net.solve(
                    ops, self._start(image), self.solver, forward, backward, self.unrolled_steps
                )
                weights = abundances.movedim(1, -1)[valid].double()  # (N, P)
                brightness = net.pixel_scale(abundances, ops)[:, 0][valid].double()  # (N,)
            # Pixels without brightness hold no shares (their 1/P is a placeholder).
            weights = weights * (brightness > 0)[:, None]
            peak = (weights * brightness[:, None]).sum(0) / weights.sum(0).clamp_min(1e-12)
            endmembers = endmembers * peak[:, None]
        return endmembers.cpu().numpy() / self.input_scale_


def _as_image(abundances: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(N, P) abundances of the pixels of ``like`` (1, L, H, W) -> (1, P, H, W), as ``like``."""
    _, _, n_rows, n_cols = like.shape
    image = np.ascontiguousarray(abundances.T).reshape(1, -1, n_rows, n_cols)
    return torch.as_tensor(image, dtype=like.dtype, device=like.device)


def _robust_scale(pixels: np.ndarray) -> float:
    """The 99.9 % quantile of the pixel values (1 when it is not positive)."""
    scale = float(np.quantile(pixels, _SCALE_QUANTILE))
    return scale if scale > 0 and math.isfinite(scale) else 1.0


def _refined_start(pixels: np.ndarray, extracted: np.ndarray, fraction: float) -> np.ndarray:
    """``extracted`` (P, L) re-estimated from ``pixels`` (N, L) (``refine_fraction``), or as
    is, with a warning, when one of them has no positive peak (an extractor can pick a zero
    pixel), of which no pixel has a share."""
    if np.all(extracted.max(axis=1) > 0):
        return refined_reference(pixels, unit_peak(extracted), fraction)
    warnings.warn(
        "refine_fraction: an extracted endmember has no positive peak, so no pixel has a "
        "share of it; training starts from the extracted spectra as they are",
        UserWarning,
        stacklevel=5,  # the caller of fit
    )
    return extracted


def average_closest_pixels(pixels: np.ndarray, endmembers: np.ndarray, share: float) -> np.ndarray:
    """Each endmember (P, L) replaced by the mean of the ``share`` of ``pixels`` (N, L) with
    the smallest spectral angle to it (at least one pixel; ``share=0`` returns a copy).
    A zero endmember has no angle to any pixel and is kept."""
    if share <= 0:
        return endmembers.copy()
    count = max(1, round(share * len(pixels)))
    cosines = _directions(pixels) @ _directions(endmembers).T
    closest = np.argpartition(-cosines, count - 1, axis=0)[:count]  # (count, P)
    has_direction = np.any(endmembers != 0, axis=1, keepdims=True)
    return np.where(has_direction, pixels[closest].mean(axis=0), endmembers)


def _directions(spectra: np.ndarray) -> np.ndarray:
    """The rows of ``spectra`` at unit norm, at any data scale; zero rows stay zero."""
    norms = np.linalg.norm(spectra, axis=1, keepdims=True)
    return np.divide(spectra, norms, out=np.zeros_like(spectra), where=norms > 0)


def _solve_stats(infos: list[EquilibriumInfo]) -> dict[str, float]:
    """Mean iterations and largest final relative residual of the forward and backward
    solves of one epoch (none for the unrolled twin)."""
    stats: dict[str, float] = {}
    for name in ("forward", "backward"):
        solves = [s for s in (getattr(info, name) for info in infos) if s is not None]
        if solves:
            stats[f"{name}_iterations"] = float(np.mean([s.iterations for s in solves]))
            stats[f"{name}_residual"] = max(s.residual for s in solves)
    return stats


def _warn_unconverged(
    history: list[dict[str, float]], forward: SolverOptions, backward: SolverOptions
) -> None:
    """One warning for the whole training when some solves missed their tolerance."""
    for name, options in (("forward", forward), ("backward", backward)):
        residuals = np.array([r[f"{name}_residual"] for r in history if f"{name}_residual" in r])
        missed = int(np.sum(residuals > options.tol))
        if missed:
            warnings.warn(
                f"the {name} equilibrium solve missed its tolerance {options.tol:.0e} in "
                f"{missed} of {len(residuals)} epochs (worst relative residual "
                f"{residuals.max():.1e}); gradients there are inexact: raise max_iter or "
                "lower step_scale",
                ConvergenceWarning,
                stacklevel=5,  # the caller of fit
            )
