"""ID-Net training objective: ELBO on image pixels plus the self-supervised term on triplets.

For a batch of B image pixels y and B synthetic triplets (y_s, M_s, a_s) the objective to
maximise, per pixel, is::

    ELBO(y) + lambda * SS(y_s, M_s, a_s)
            + (1 + beta) [log q(a_s | M_s, y_s) + mean_j log p(M_s | Z_j)]
            - tau (||alpha||_{1/2} + ||alpha_s||_{1/2})
    - (lambda_h sum ||W_h||_F + lambda_g sum ||W_g||_F) / 16

* ``ELBO(y) = E_q[log p(y | M, a)] - KL(q(a | M, y) || Dir(1)) - KL(q(Z | y) || N(0, I))``
  with one reparameterised sample (Z, M, a). The two KL terms are computed in closed form
  (the same expectation as the paper's one-sample estimate of log p - log q, with less
  variance); the M terms cancel because q(M | Z) = p(M | Z).
* ``SS`` is the importance-weighted bound of Siddharth et al. (2017) for the observed
  (M_s, a_s): with Z_j ~ q(Z | y_s), j = 1..S, normalised weights
  ``w_j = softmax_j log p(M_s | Z_j)`` and
  ``SS = sum_j w_j [log p(y_s | M_s, a_s) + log p(a_s) + log p(Z_j) - log q(Z_j | y_s)
  - log q(a_s | M_s, y_s)]``.
* The Dirichlet densities of the one-hot labels are evaluated at ``(1 - eps) a_s + eps / P``
  (the density is degenerate at a vertex). The released code evaluates log q(a | M_s, y_s)
  at a random draw of q instead of at the label, which rewards concentration without
  pointing the posterior at the right material: here it is the label, as in the paper.
* The per-pixel data terms are averaged over the batch and the weight penalties divided by
  16, the paper's batch size: the paper sums data terms over batches of 16, so this keeps
  the balance between data and penalties for any batch size.

The ablations of :class:`~hyperunmix.deep.idnet_model.IDNetModel` change the objective as
follows. Without the nonlinear streams their penalties vanish. Without variability Z is no
latent variable: it stays at its prior mean 0, so the ELBO mixes ``M = f(0)`` (no code
sample, no KL(q(Z | y) || p(Z)), no sampling noise s_k), and on the triplets
``SS = log p(y_s | M_s, a_s) + log p(a_s) - log q(a_s | M_s, y_s)`` while the regulariser
keeps ``log p(M_s | Z = 0)``, through which the decoders f_k(0) learn the bundles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import distributions as td

from .idnet_model import IDNetModel

#: The paper's batch size; weight penalties are expressed per batch of this many pixels.
REFERENCE_BATCH = 16
#: Label smoothing of the one-hot triplet abundances inside Dirichlet densities.
LABEL_SMOOTHING = 0.01
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class LossConfig:
    """Settings of the objective.

    Attributes
    ----------
    selfsup, beta, sparsity, encoder_penalty, decoder_penalty : float
        lambda, beta, tau, lambda_h and lambda_g.
    n_importance : int
        Samples S of Z per triplet.
    density_at_sample : bool
        Evaluate log q(a | M_s, y_s) at a draw of q, as the released code does, instead of
        at the label (unstable: see :class:`hyperunmix.deep.idnet.IDNet`).
    """

    selfsup: float
    beta: float
    sparsity: float
    encoder_penalty: float
    decoder_penalty: float
    n_importance: int = 5
    density_at_sample: bool = False


@dataclass
class LossTerms:
    """Batch means of the objective's parts (for progress reports), and the loss to minimise."""

    loss: torch.Tensor
    elbo: float
    selfsup: float
    regulariser: float


def gaussian_log_density(
    x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, n_axes: int = 1
) -> torch.Tensor:
    """log N(x; mean, diag var), summed over the last ``n_axes`` axes (broadcasting)."""
    terms = (x - mean) ** 2 / var + torch.log(var) + _LOG_2PI
    terms = terms.expand(torch.broadcast_shapes(terms.shape, x.shape))
    return -0.5 * terms.flatten(-n_axes).sum(-1)


def latent_kl(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag var) || N(0, I)) for codes (..., P, H), summed over P and H."""
    return 0.5 * (var + mean**2 - 1.0 - torch.log(var)).flatten(-2).sum(-1)


def half_norm(alpha: torch.Tensor) -> torch.Tensor:
    """The l_{1/2} quasi-norm (sum_k sqrt(alpha_k))^2 of (..., P) positive vectors."""
    return torch.sqrt(alpha).sum(-1) ** 2


def frobenius_sum(module: torch.nn.Module | None) -> torch.Tensor | float:
    """Sum of the Frobenius norms of every parameter tensor of ``module``; 0 for a stream
    that is not built (None)."""
    if module is None:
        return 0.0
    return sum(torch.linalg.norm(p) for p in module.parameters())


def smoothed_labels(abundances: torch.Tensor) -> torch.Tensor:
    """Move (..., P) simplex points a little inside, where Dirichlet densities are finite."""
    n_endmembers = abundances.shape[-1]
    return (1.0 - LABEL_SMOOTHING) * abundances + LABEL_SMOOTHING / n_endmembers


def sample_abundances(alpha: torch.Tensor) -> torch.Tensor:
    """One reparameterised draw of Dirichlet(alpha) for every row of alpha (..., P), batched.

    Gradients flow to alpha by implicit reparameterisation (Figurnov et al. 2018).
    """
    return td.Dirichlet(alpha).rsample()


def image_elbo(model: IDNetModel, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-sample ELBO of image pixels y (B, L): returns (elbo (B,), alpha (B, P))."""
    code_kl: torch.Tensor | float
    if model.latent_encoders is not None:  # with variability
        mean, var = model.latent_encoders(y)
        z = mean + torch.sqrt(var) * torch.randn_like(mean)
        _, endmembers = model.sample_endmembers(z)
        code_kl = latent_kl(mean, var)
    else:  # Z = 0 for every pixel: M = f(0), no code posterior to match to the prior
        endmembers = model.reference_endmembers().expand(y.shape[0], -1, -1)
        code_kl = 0.0
    alpha, _, _ = model.abundance_encoder(y, endmembers)
    posterior = td.Dirichlet(alpha)
    abundances = sample_abundances(alpha)
    prior = td.Dirichlet(torch.ones_like(alpha))
    log_likelihood = gaussian_log_density(
        y, model.pixel_decoder(endmembers, abundances), model.pixel_var
    )
    elbo = log_likelihood - td.kl_divergence(posterior, prior) - code_kl
    return elbo, alpha


def selfsup_terms(
    model: IDNetModel,
    y: torch.Tensor,
    endmembers: torch.Tensor,
    abundances: torch.Tensor,
    n_importance: int,
    beta: float,
    density_at_sample: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-supervised parts for triplets y (B, L), M (B, P, L), a (B, P).

    ``density_at_sample``: evaluate log q(a | M, y) at a draw of q instead of at the label.
    Returns ``(SS (B,), regulariser (B,), alpha (B, P))``, the regulariser being
    ``(1 + beta) [log q(a | M, y) + mean_j log p(M | Z_j)]``. Without variability the one
    code Z = 0 replaces the S samples (``n_importance`` is unused) and SS has no Z terms.
    """
    log_prior_z: torch.Tensor | float
    log_q_z: torch.Tensor | float
    if model.latent_encoders is not None:  # with variability
        mean, var = model.latent_encoders(y)  # (B, P, H)
        noise = torch.randn((n_importance,) + mean.shape, device=mean.device)
        z = mean + torch.sqrt(var) * noise  # (S, B, P, H)
        decoded = model.endmember_decoders(z)  # (S, B, P, L)
        log_prior_z = gaussian_log_density(
            z, torch.zeros_like(z), torch.ones_like(z), n_axes=2
        )  # (S, B)
        log_q_z = gaussian_log_density(z, mean, var, n_axes=2)
    else:
        decoded = model.reference_endmembers()[None, None]  # (S=1, 1, P, L)
        log_prior_z = log_q_z = 0.0  # Z is fixed, not inferred: no code terms in the bound
    endmember_var = model.endmember_var.unsqueeze(-1)  # (P, 1)
    log_weights = gaussian_log_density(endmembers, decoded, endmember_var, n_axes=2)
    weights = torch.softmax(log_weights, dim=0)  # (S, B)

    alpha, _, _ = model.abundance_encoder(y, endmembers)
    labels = sample_abundances(alpha) if density_at_sample else smoothed_labels(abundances)
    log_q_a = td.Dirichlet(alpha).log_prob(labels)
    log_p_a = math.lgamma(alpha.shape[-1])  # Dirichlet(1) density
    log_likelihood = gaussian_log_density(
        y, model.pixel_decoder(endmembers, abundances), model.pixel_var
    )
    bound = log_likelihood + log_p_a + log_prior_z - log_q_z - log_q_a
    selfsup = (weights * bound).sum(0)
    regulariser = (1.0 + beta) * (log_q_a + log_weights.mean(0))
    return selfsup, regulariser, alpha


def training_loss(
    model: IDNetModel,
    y: torch.Tensor,
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    config: LossConfig,
) -> LossTerms:
    """The negative objective for a batch of pixels y (B, L) and triplets (y_s, M_s, a_s)."""
    elbo, alpha = image_elbo(model, y)
    selfsup, regulariser, alpha_s = selfsup_terms(
        model, *triplets, config.n_importance, config.beta, config.density_at_sample
    )
    sparsity = half_norm(alpha).mean() + half_norm(alpha_s).mean()
    penalty = config.encoder_penalty * frobenius_sum(
        model.abundance_encoder.nonlinear
    ) + config.decoder_penalty * frobenius_sum(model.pixel_decoder.nonlinear)
    objective = (
        elbo.mean()
        + config.selfsup * selfsup.mean()
        + regulariser.mean()
        - config.sparsity * sparsity
        - penalty / REFERENCE_BATCH
    )
    return LossTerms(
        loss=-objective,
        elbo=float(elbo.detach().mean()),
        selfsup=float(selfsup.detach().mean()),
        regulariser=float(regulariser.detach().mean()),
    )
