"""ID-Net networks: the generative model and the inference (recognition) model.

Borsoi, Erdogmus & Imbiriba, "Learning Interpretable Deep Disentangled Neural Networks for
Hyperspectral Unmixing", IEEE TCI 2023 (arXiv 2310.02340). Shapes use B for a batch of
pixels, S for Monte Carlo samples, P endmembers, L bands and H the latent dimension.
Endmember matrices are (..., P, L), rows are spectra, as everywhere in the package.

Generative model p(y, a, M, Z) = p(y | M, a) p(a) prod_k p(m_k | z_k) p(z_k):

* ``z_k ~ N(0, I_H)``, the latent code of endmember k;
* ``m_k ~ N(f_k(z_k), s_k^2 I)``, ``f_k`` a small MLP per endmember with a sigmoid output;
* ``a ~ Dirichlet(1)``;
* ``y ~ N(ReLU(M^T a + 0.1 g([vec M, a])), s_y^2 I)``: a linear stream plus a nonlinear
  stream ``g`` of small gain;
* the variances are learned scalars ``0.01 exp(theta)``.

Inference model q(a, M, Z | y) = q(a | M, y) q(M | Z) q(Z | y), with q(M | Z) = p(M | Z):

* ``q(z_k | y) = N(mu_k(y), diag v_k(y))`` from one MLP per endmember;
* ``q(a | M, y) = Dirichlet(alpha)``, ``alpha = kappa ReLU(alpha_lin + 0.1 h(y))``
  (h centred over the endmembers here), where
  ``alpha_lin`` comes from 10 unrolled projected-ISTA steps on the linear model (onto the
  non-negative orthant as in the paper, or onto the simplex) started at the least squares
  refined by active-set passes, ``h`` is the nonlinear stream and ``kappa`` a learned
  precision.

Two ablations remove a learned part (:class:`IDNetModel`): ``nonlinear=False`` drops both
nonlinear streams (h and g are not built: ``alpha_nlin = 0``, ``y ~ N(ReLU(M^T a), s_y^2 I)``)
and ``variability=False`` drops endmember variability (q(Z | y) is not built: every pixel
mixes the one endmember matrix ``f(0)``, the codes at their prior mean).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .idnet_bilinear import bilinear_share
from .simplex import project_simplex

#: Gain of the nonlinear streams g (pixel) and h (abundances), as in the paper.
NONLINEAR_GAIN = 0.1
#: Variances and the precision are ``VARIANCE_SCALE * exp(theta)`` / ``KAPPA_MIN +
#: KAPPA_SCALE * exp(theta)``; theta starts at 0.
VARIANCE_SCALE = 0.01
KAPPA_MIN = 10.0
KAPPA_SCALE = 100.0
#: Added to the Dirichlet parameters: Gamma sampling needs strictly positive concentrations.
ALPHA_FLOOR = 1e-3
#: Relative Tikhonov term of the least-squares start (M M^T + eps tr(M M^T)/P I) x = M y,
#: which keeps the solve defined when two sampled endmembers are nearly collinear.
LS_RIDGE = 1e-6
#: Active-set passes of the unrolled solver's least-squares start.
START_PASSES = 2
#: Soft-threshold weight lambda of the unrolled ISTA before its learned factor (the paper's).
ISTA_THRESHOLD = 0.01
#: How the endmember decoders relate to the bundles' reference (see :class:`EndmemberDecoders`).
EndmemberDecoderStart = Literal["reference", "pinned", "free"]
#: Decoders around a reference: its values are clipped to [REFERENCE_CLIP, 1 - REFERENCE_CLIP]
#: before the logit (a band at 0 or at the sigmoid's top would need an infinite offset).
REFERENCE_CLIP = 1e-3


class PerEndmemberLinear(nn.Module):
    """P independent affine maps applied at once: (..., P, n_in) -> (..., P, n_out).

    Equivalent to P ``nn.Linear`` layers (same initialisation), evaluated as one batched
    contraction instead of a Python loop over endmembers.
    """

    def __init__(self, n_maps: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_maps, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_maps, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...pi,pio->...po", x, self.weight) + self.bias

    def forward_batched(self, x: torch.Tensor) -> torch.Tensor:
        """The same maps on the endmember-major layout (P, N, n_in) -> (P, N, n_out)."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class PerEndmemberMLP(nn.Sequential):
    """A ReLU MLP of :class:`PerEndmemberLinear` layers, (..., P, n_in) -> (..., P, n_out).

    Evaluated in the endmember-major layout (P, N, width) throughout, so every layer is one
    batched matrix product and the layout changes twice, not at every layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, (n_maps, n_in) = x.shape[:-2], x.shape[-2:]
        h = x.reshape(-1, n_maps, n_in).transpose(0, 1)  # (P, N, n_in)
        for layer in self:
            h = layer.forward_batched(h) if isinstance(layer, PerEndmemberLinear) else layer(h)
        return h.transpose(0, 1).reshape(*lead, n_maps, h.shape[-1])


def _per_endmember_mlp(n_maps: int, widths: list[int]) -> PerEndmemberMLP:
    """ReLU MLP of per-endmember layers with the given widths (no activation at the end)."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(widths):
        # in place: the batched products' outputs are not needed by their backward
        layers += [PerEndmemberLinear(n_maps, n_in, n_out), nn.ReLU(inplace=True)]
    return PerEndmemberMLP(*layers[:-1])


def _mlp(widths: list[int]) -> nn.Sequential:
    """ReLU MLP with the given widths (no activation at the end)."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(widths):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class EndmemberDecoders(nn.Module):
    """The f_k: latent codes (..., P, H) -> endmember spectra (..., P, L) in (0, 1).

    Widths H -> ceil(L/10) -> ceil(L/4)+3 -> ceil(1.2 L)+5 -> L (each at least H+1), ReLU,
    sigmoid output, one network per endmember: ``f_k(z) = sigmoid(g_k(z))`` (the paper,
    ``around_reference="free"``). ``"reference"``: ``f_k(z) = sigmoid(logit(r_k) + g_k(z))``
    with g_k's last layer zero at initialisation, so every f_k starts at its reference r_k
    (:meth:`set_reference`, zero until set, i.e. 0.5 in every band) and the training learns
    the deviations from it; ``"pinned"``: ``f_k(z) = sigmoid(logit(r_k) + g_k(z) - g_k(0))``,
    so that ``f_k(0) = r_k`` throughout and only the variability around it is learned.
    """

    reference_logit: torch.Tensor | None

    def __init__(
        self,
        n_endmembers: int,
        n_bands: int,
        latent_dim: int,
        around_reference: EndmemberDecoderStart = "free",
    ):
        super().__init__()
        widths = [
            latent_dim,
            max(math.ceil(n_bands / 10), latent_dim + 1),
            max(math.ceil(n_bands / 4), latent_dim + 2) + 3,
            math.ceil(1.2 * n_bands) + 5,
            n_bands,
        ]
        self.net = _per_endmember_mlp(n_endmembers, widths)
        # A buffer, so a checkpoint keeps it (None: not in the state dict); the layers are
        # drawn as without it (the same seed gives the same hidden layers), then the output
        # layer is zeroed.
        self.pinned = around_reference == "pinned"
        self.register_buffer(
            "reference_logit",
            None if around_reference == "free" else torch.zeros(n_endmembers, n_bands),
        )
        if around_reference != "free":
            last = self.net[-1]
            assert isinstance(last, PerEndmemberLinear)  # the MLP ends in a linear layer
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def set_reference(self, spectra: torch.Tensor) -> None:
        """Centre the decoders (``around_reference``) on ``spectra`` (P, L), in the model's
        units; values are clipped to [REFERENCE_CLIP, 1 - REFERENCE_CLIP], inside the
        sigmoid's range."""
        if self.reference_logit is None:
            raise ValueError("the decoders were built with around_reference='free'")
        clipped = spectra.to(self.reference_logit).clamp(REFERENCE_CLIP, 1.0 - REFERENCE_CLIP)
        self.reference_logit.copy_(torch.logit(clipped))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if self.pinned:
            out = out - self.net(z.new_zeros(z.shape[-2:]))  # g_k(0), (P, L)
        if self.reference_logit is not None:
            out = out + self.reference_logit
        return torch.sigmoid(out)


class LatentEncoders(nn.Module):
    """q(z_k | y): pixels (B, L) -> means and variances (B, P, H) of the endmember codes.

    Per endmember, the mean is an MLP L -> 5H -> 2H -> H; the log-variance head shares the
    first two layers and continues 2H -> 2H -> 2H -> H.
    """

    def __init__(self, n_endmembers: int, n_bands: int, latent_dim: int):
        super().__init__()
        self.n_endmembers = n_endmembers
        h = latent_dim
        self.trunk = PerEndmemberMLP(
            PerEndmemberLinear(n_endmembers, n_bands, 5 * h),
            nn.ReLU(inplace=True),
            PerEndmemberLinear(n_endmembers, 5 * h, 2 * h),
            nn.ReLU(inplace=True),
        )
        self.mean_head = PerEndmemberLinear(n_endmembers, 2 * h, h)
        self.log_var_head = _per_endmember_mlp(n_endmembers, [2 * h, 2 * h, 2 * h, h])

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(y.unsqueeze(-2).expand(*y.shape[:-1], self.n_endmembers, y.shape[-1]))
        return self.mean_head(features), torch.exp(self.log_var_head(features))


class AbundanceEncoder(nn.Module):
    """q(a | M, y) = Dirichlet(alpha): alpha from unrolled projected ISTA plus a nonlinear stream.

    ``alpha_lin`` (B, P): ``n_ista`` projected proximal-gradient steps on
    ``||y - M^T x||^2 / 2``, started at :func:`least_squares_start` (the paper starts at the
    least-squares pinv(M) y; two active-set passes on top make the start exact for most
    pixels, which 10 gradient steps are not when a dark endmember makes M M^T
    ill-conditioned), with learned steps ``t_i = exp(theta_i) / tr(M M^T)``: normalised by
    a bound on the Lipschitz constant, where the paper's absolute steps 0.01 exp(theta_i)
    diverge on bright or many-band scenes. ``constraint`` chooses the feasible set:

    * ``"orthant"`` (the paper): ``x <- ReLU(x - t_i (grad + lambda))``, ISTA for the
      l1-regularised non-negative least squares, ``lambda = 0.01 exp(theta_lambda)``;
    * ``"simplex"``: ``x <- Proj_simplex(x - t_i grad)``, the same iteration with the sum-to-
      one constraint of the linear mixing model inside the solver. The l1 norm is constant
      on the simplex, so the shrinkage drops out (the projection is shift invariant).

    ``endmember_scale="peak"`` rescales the P spectra to a common peak (:func:`equal_peaks`)
    before the solve, so the normalised shares do not depend on the scale of each spectrum
    (``"decoded"``: as given, the paper).

    ``alpha_nlin`` (B, P): ``0.1 (h(y) - mean_k h_k(y))``, h an MLP
    L -> 2L -> L/2 -> L/4 -> 4P -> P, centred over the endmembers (the paper does not centre
    it; see the comment in :meth:`forward`); with ``nonlinear=False`` h is not built
    (``nonlinear`` is None) and ``alpha_nlin = 0``.
    ``alpha = kappa ReLU(alpha_lin + alpha_nlin) + ALPHA_FLOOR``, kappa = 10 + 100 exp(theta).
    """

    def __init__(
        self,
        n_endmembers: int,
        n_bands: int,
        n_ista: int,
        constraint: str = "orthant",
        endmember_scale: str = "decoded",
        nonlinear: bool = True,
    ):
        super().__init__()
        self.constraint = constraint
        self.endmember_scale = endmember_scale
        self.log_steps = nn.Parameter(torch.zeros(n_ista))
        self.log_threshold = nn.Parameter(torch.zeros(()))
        self.log_kappa = nn.Parameter(torch.zeros(()))
        self.nonlinear = (
            _mlp(
                [
                    n_bands,
                    2 * n_bands,
                    max(round(n_bands / 2), 1),
                    max(round(n_bands / 4), 1),
                    4 * n_endmembers,
                    n_endmembers,
                ]
            )
            if nonlinear
            else None
        )

    @property
    def kappa(self) -> torch.Tensor:
        return KAPPA_MIN + KAPPA_SCALE * torch.exp(self.log_kappa)

    def linear_stream(self, y: torch.Tensor, endmembers: torch.Tensor) -> torch.Tensor:
        """Unrolled ISTA: pixels (..., L), endmembers (..., P, L) -> alpha_lin (..., P)."""
        if self.endmember_scale == "peak":
            endmembers = equal_peaks(endmembers)
        gram = endmembers @ endmembers.transpose(-1, -2)  # (..., P, P)
        correlation = (endmembers @ y.unsqueeze(-1)).squeeze(-1)  # (..., P)
        trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1, keepdim=True)
        on_simplex = self.constraint == "simplex"
        x = least_squares_start(gram, correlation, on_simplex)
        x = project_simplex(x) if on_simplex else F.relu(x)
        threshold = ISTA_THRESHOLD * torch.exp(self.log_threshold)
        for log_step in self.log_steps:
            step = torch.exp(log_step) / trace
            gradient = (gram @ x.unsqueeze(-1)).squeeze(-1) - correlation
            x = (
                project_simplex(x - step * gradient)
                if on_simplex
                else F.relu(x - step * (gradient + threshold))
            )
        return x

    def forward(
        self, y: torch.Tensor, endmembers: torch.Tensor, with_nonlinear: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixels (..., L) and endmembers (..., P, L) -> (alpha, alpha_lin, alpha_nlin) (..., P).

        ``y`` may have fewer leading axes than ``endmembers`` (one pixel, several sampled M);
        it is broadcast. ``with_nonlinear=False`` leaves the nonlinear stream out of alpha
        (``alpha_nlin = 0``) even where it is built.
        """
        alpha_lin = self.linear_stream(y.expand(*endmembers.shape[:-2], y.shape[-1]), endmembers)
        if self.nonlinear is None or not with_nonlinear:
            alpha_nlin = torch.zeros_like(alpha_lin)
        else:
            correction = self.nonlinear(y)
            # Centred, the nonlinear stream moves the Dirichlet mean but cannot add total
            # mass: the concentration stays with the linear stream and kappa. (Uncentred, it
            # grew on Samson to sharpen the triplets' pure posteriors and biased the mixed
            # pixels.)
            alpha_nlin = (
                NONLINEAR_GAIN * (correction - correction.mean(-1, keepdim=True))
            ).expand_as(alpha_lin)
        alpha = self.kappa * F.relu(alpha_lin + alpha_nlin) + ALPHA_FLOOR
        return alpha, alpha_lin, alpha_nlin


def equal_peaks(endmembers: torch.Tensor) -> torch.Tensor:
    """Endmembers (..., P, L) rescaled to a common peak, the mean of their P peaks (..., 1, 1).

    Shares of peak-normalised spectra, whatever the scale each spectrum came at; the common
    peak keeps the overall scale, hence the size of alpha_lin and the Dirichlet concentration.
    """
    return endmembers * peak_factors(endmembers).unsqueeze(-1)


def peak_factors(endmembers: torch.Tensor) -> torch.Tensor:
    """The factors (..., P) by which :func:`equal_peaks` scales each spectrum (..., P, L)."""
    peaks = endmembers.amax(-1).clamp_min(1e-12)  # (..., P)
    return peaks.mean(-1, keepdim=True) / peaks


def least_squares_start(
    gram: torch.Tensor, correlation: torch.Tensor, sum_to_one: bool, passes: int = START_PASSES
) -> torch.Tensor:
    """Starting point (..., P) of the unrolled ISTA from G = M M^T (..., P, P), c = M y (..., P).

    The least squares ``G^-1 c`` (the paper's pinv(M) y), or with ``sum_to_one`` its
    sum-to-one version ``x + G^-1 1 (1 - 1^T x) / 1^T G^-1 1``; then ``passes`` times: drop
    the negative entries from the support and solve again on the rest (one active-set pass
    each). Where the constrained solution's support is found this way the start is already
    NNLS / FCLS, which plain gradient steps approach only slowly when a dark endmember makes
    G ill-conditioned. The solves carry a tiny relative ridge (LS_RIDGE); the support choice
    is piecewise constant, so gradients flow through the solves only.
    """
    n_endmembers = gram.shape[-1]
    eye = torch.eye(n_endmembers, dtype=gram.dtype, device=gram.device)
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)[..., None, None]
    support = torch.ones_like(correlation, dtype=torch.bool)
    x = correlation
    for _ in range(passes + 1):
        inside = support.to(gram.dtype)
        # On the support: G restricted, identity elsewhere (so the solve zeroes the rest).
        restricted = (
            gram * inside.unsqueeze(-1) * inside.unsqueeze(-2)
            + torch.diag_embed(1 - inside) * scale
            + LS_RIDGE * scale * eye
        )
        rhs = torch.stack([correlation * inside, inside], dim=-1)
        solved = torch.linalg.solve(restricted, rhs)
        x, direction = solved[..., 0], solved[..., 1]
        if sum_to_one:
            weight = direction.sum(-1, keepdim=True)
            x = x + direction * (1 - x.sum(-1, keepdim=True)) / weight
        shrunk = support & (x > 0)
        # Keep at least one endmember (an empty support has no sum-to-one solution).
        support = torch.where(shrunk.any(-1, keepdim=True), shrunk, support)
    return x


class PixelDecoder(nn.Module):
    """Mean of p(y | M, a): ReLU(M^T a + 0.1 g([vec M, a])).

    g, the nonlinear stream, is an MLP P(L+1) -> PL -> L -> L -> L; with ``nonlinear=False``
    it is not built (``nonlinear`` is None) and the mean is ReLU(M^T a).
    """

    def __init__(
        self,
        n_endmembers: int,
        n_bands: int,
        endmember_scale: str = "decoded",
        nonlinear: bool = True,
    ):
        super().__init__()
        p, n = n_endmembers, n_bands
        self.nonlinear = _mlp([p * (n + 1), p * n, n, n, n]) if nonlinear else None
        self.endmember_scale = endmember_scale

    def forward(self, endmembers: torch.Tensor, abundances: torch.Tensor) -> torch.Tensor:
        """Mean (..., L) for endmembers (..., P, L) and abundances (..., P).

        With ``endmember_scale="peak"`` the linear part mixes :func:`equal_peaks` spectra,
        the ones the abundance encoder solves with, so that the generative model and the
        inference model agree on what the abundances are shares of.
        """
        mixing = equal_peaks(endmembers) if self.endmember_scale == "peak" else endmembers
        mean = (abundances.unsqueeze(-2) @ mixing).squeeze(-2)
        if self.nonlinear is not None:
            features = torch.cat([endmembers.flatten(-2), abundances], dim=-1)
            mean = mean + NONLINEAR_GAIN * self.nonlinear(features)
        return F.relu(mean)


class IDNetModel(nn.Module):
    """All ID-Net networks and learned variances for P endmembers, L bands, latent size H.

    ``nonlinear=False`` leaves out the nonlinear streams h and g (``alpha_nlin = 0``, linear
    pixel decoder); ``variability=False`` leaves out q(Z | y) (``latent_encoders`` is None):
    the codes stay at their prior mean, so every pixel mixes the one endmember matrix
    :meth:`reference_endmembers`. The loss (:mod:`~hyperunmix.deep.idnet_loss`) and
    :func:`posterior_summary` follow these flags. ``decoders_around_reference``: the
    decoders learn deviations from reference spectra (:class:`EndmemberDecoders`, set by
    ``endmember_decoders.set_reference``).
    """

    def __init__(
        self,
        n_endmembers: int,
        n_bands: int,
        latent_dim: int = 2,
        n_ista: int = 10,
        constraint: str = "orthant",
        endmember_scale: str = "decoded",
        nonlinear: bool = True,
        variability: bool = True,
        decoders_around_reference: EndmemberDecoderStart = "free",
    ):
        super().__init__()
        self.n_endmembers = n_endmembers
        self.n_bands = n_bands
        self.latent_dim = latent_dim
        self.variability = variability
        self.endmember_decoders = EndmemberDecoders(
            n_endmembers, n_bands, latent_dim, decoders_around_reference
        )
        self.latent_encoders = (
            LatentEncoders(n_endmembers, n_bands, latent_dim) if variability else None
        )
        self.abundance_encoder = AbundanceEncoder(
            n_endmembers, n_bands, n_ista, constraint, endmember_scale, nonlinear
        )
        self.pixel_decoder = PixelDecoder(n_endmembers, n_bands, endmember_scale, nonlinear)
        self.log_endmember_var = nn.Parameter(torch.zeros(n_endmembers))
        self.log_pixel_var = nn.Parameter(torch.zeros(()))

    @property
    def endmember_var(self) -> torch.Tensor:
        """s_k^2 (P,): variance of each endmember around its decoded spectrum."""
        return VARIANCE_SCALE * torch.exp(self.log_endmember_var)

    @property
    def pixel_var(self) -> torch.Tensor:
        """s_y^2: pixel noise variance per band."""
        return VARIANCE_SCALE * torch.exp(self.log_pixel_var)

    def sample_endmembers(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (..., P, H) -> (decoded means f(Z), reparameterised sample M), both (..., P, L)."""
        mean = self.endmember_decoders(z)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        std = torch.sqrt(self.endmember_var).unsqueeze(-1)
        return mean, mean + std * noise

    def reference_endmembers(self) -> torch.Tensor:
        """f_k(0) (P, L): the endmembers at the prior mean of the codes."""
        z = torch.zeros(
            self.n_endmembers,
            self.latent_dim,
            dtype=self.log_pixel_var.dtype,
            device=self.log_pixel_var.device,
        )
        return self.endmember_decoders(z)


def posterior_summary(
    model: IDNetModel,
    y: torch.Tensor,
    z_noise: torch.Tensor | None,
    input_scale: float,
    with_nonlinear: bool = True,
    at_reference: bool = False,
    with_pixel_endmembers: bool = True,
) -> dict[str, torch.Tensor]:
    """Deterministic outputs of the inference model for pixels y (B, L) in the model's units.

    ``z_noise`` (S, P, H): standard normal draws of the codes shared by all pixels, so a
    pixel's result does not depend on the batch it is in; None (or no variability): no
    draws. ``input_scale`` is the factor from the scene's units to the model's.
    ``with_nonlinear=False``: the Dirichlet of the linear stream alone,
    ``alpha = kappa ReLU(alpha_lin) + ALPHA_FLOOR``, everywhere below (the nonlinear
    stream h left out; the nonlinearity map is still computed, from those abundances).
    ``at_reference``: the abundances (and the nonlinearity and uncertainty that follow
    them) at the reference endmembers M = f(0) shared by every pixel instead of the
    pixel's own f(E[Z | y]); the draws of Z, if any, still spread them.
    ``with_pixel_endmembers=False`` leaves ``pixel_endmembers`` out of the result; with
    ``at_reference`` and no draws the codes are then not inferred at all (the latent
    encoders and the decoders are the largest part of applying the model).

    Returns a dict of
    ``abundances`` (B, P): mean of q(a | M, y) at M = f(E[Z | y]) (or f(0));
    ``pixel_endmembers`` (B, P, L): f(E[Z | y]) in the model's units, f(0) for every pixel
    without variability;
    ``nonlinearity`` (B,): posterior mean of the bilinear share of the pixel under the
    generalised bilinear model of the mixed spectra
    (:func:`~hyperunmix.deep.idnet_bilinear.bilinear_share`, in the scene's units); 0
    everywhere without the nonlinear streams;
    ``uncertainty`` (B, P): posterior standard deviation of each abundance. Without draws,
    the Dirichlet's, sqrt(a (1 - a) / (alpha_0 + 1)), at M = f(E[Z | y]); with S draws Z_s
    of q(Z | y), by the law of total variance over M_s = f(Z_s):
    sqrt(mean_s Var(a | M_s) + var_s E[a | M_s]). The band-wise noise s_k of
    p(M | Z) is left out: it stands for the bundles' spread that the codes do not capture,
    which is spectrally smooth, and propagated as white noise through the solver it ranked
    endmembers by their conditioning instead of pixels by their error (see
    :class:`~hyperunmix.deep.idnet.IDNet`).
    """
    reference = model.reference_endmembers().expand(y.shape[0], -1, -1)
    encoders = model.latent_encoders
    codes_needed = with_pixel_endmembers or not at_reference or z_noise is not None
    if encoders is not None and codes_needed:
        mean, var = encoders(y)  # (B, P, H)
        pixel_endmembers = model.endmember_decoders(mean)  # (B, P, L)
    else:  # without variability every pixel's endmembers are f(0); else not asked for
        pixel_endmembers = reference
    endmembers = reference if at_reference else pixel_endmembers
    encoder = model.abundance_encoder
    alpha, _, _ = encoder(y, endmembers, with_nonlinear)
    concentration = alpha.sum(-1, keepdim=True)
    abundances = alpha / concentration
    if encoder.nonlinear is None:
        nonlinearity = torch.zeros_like(alpha[:, 0])
    else:
        # a_k times the peak factor r_k mixes m_k as the linear stream mixes r_k m_k
        weights = (
            abundances * peak_factors(endmembers)
            if encoder.endmember_scale == "peak"
            else abundances
        )
        nonlinearity = bilinear_share(y, endmembers, weights, unit=input_scale)

    variance = abundances * (1 - abundances) / (concentration + 1)
    if z_noise is not None and encoders is not None:  # the codes were inferred above
        z = mean + torch.sqrt(var) * z_noise.unsqueeze(1)  # (S, B, P, H)
        alpha_s, _, _ = encoder(y, model.endmember_decoders(z), with_nonlinear)  # (S, B, P)
        concentration_s = alpha_s.sum(-1, keepdim=True)
        mean_s = alpha_s / concentration_s
        within = (mean_s * (1 - mean_s) / (concentration_s + 1)).mean(0)
        variance = within + mean_s.var(0, unbiased=False)
    summary = dict(
        abundances=abundances, nonlinearity=nonlinearity, uncertainty=torch.sqrt(variance)
    )
    if with_pixel_endmembers:
        summary["pixel_endmembers"] = pixel_endmembers
    return summary
