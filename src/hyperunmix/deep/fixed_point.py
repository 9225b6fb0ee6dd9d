"""Fixed-point solvers and implicit differentiation for deep equilibrium models.

:func:`anderson` solves ``x = f(x)`` for a batch of independent problems with Anderson
acceleration (type II, Walker & Ni 2011), safeguarded by plain iteration.
:func:`equilibrium` wraps it for training: the forward solve keeps no autograd graph, and the
gradient of a loss at the equilibrium ``z* = f(z*, theta)`` comes from the implicit function
theorem, ``dL/dtheta = u^T df/dtheta`` with ``u = J^T u + dL/dz*`` (``J = df/dz`` at ``z*``),
a linear fixed-point problem solved by the same solver. Memory is that of one application of
``f`` whatever the number of iterations.

Why not torchdeq: its defaults (one-step phantom gradient, Anderson regularisation that does
not scale with the residual, fixed-count backward) give gradients that are measurably wrong on
unmixing maps, and it is unmaintained.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConvergenceWarning, InputError

FixedPointMap = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolverOptions:
    """Settings of :func:`anderson`.

    Attributes
    ----------
    tol : float
        Stop when every problem's relative residual ``||f(x) - x|| / ||f(x)||`` is at most
        ``tol``.
    max_iter : int
        Maximum number of evaluations of ``f`` after the first.
    history : int
        Anderson memory (number of past iterates mixed); 0 gives plain (Picard) iteration.
    regularization : float
        Tikhonov weight of the mixing least-squares problem, relative to the mean squared
        norm of the stored residuals. Scaling it this way makes the solver invariant to the
        scale of ``x``; an absolute weight is either negligible (ill-conditioned mixing at small
        residuals) or dominant (no acceleration at large ones).
    safeguard : float
        An Anderson step whose residual exceeds ``safeguard`` times the previous residual is
        rejected for a plain step from the previous iterate, and the history is restarted.
    """

    tol: float = 1e-5
    max_iter: int = 50
    history: int = 5
    regularization: float = 1e-4
    safeguard: float = 2.0

    def __post_init__(self):
        if not self.tol >= 0:
            raise InputError(f"tol must be >= 0, got {self.tol}")
        if self.max_iter < 1:
            raise InputError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.history < 0:
            raise InputError(f"history must be >= 0, got {self.history}")
        if not self.regularization > 0:
            raise InputError(f"regularization must be > 0, got {self.regularization}")
        if not self.safeguard >= 1:
            raise InputError(f"safeguard must be >= 1, got {self.safeguard}")


@dataclass
class SolverInfo:
    """What a solve did.

    Attributes
    ----------
    iterations : int
        Evaluations of ``f`` after the first.
    residual : float
        Largest relative residual over the batch at the returned point's argument.
    converged : bool
    restarts : int
        Anderson steps rejected by the safeguard (each replaced by a plain step).
    """

    iterations: int
    residual: float
    converged: bool
    restarts: int


def anderson(
    f: FixedPointMap,
    x0: torch.Tensor,
    options: SolverOptions = SolverOptions(),
    *,
    what: str = "fixed-point iteration",
    warn: bool = True,
) -> tuple[torch.Tensor, SolverInfo]:
    """Solve ``x = f(x)`` for a batch of independent problems by Anderson acceleration.

    Parameters
    ----------
    f : callable, (B, ...) tensor -> (B, ...) tensor
        The map; problem ``b`` must depend on ``x[b]`` only (mixing weights are per problem).
    x0 : (B, ...) tensor
        Starting points.
    options : SolverOptions
    what : str
        Names the solve in the :class:`~hyperunmix.errors.ConvergenceWarning`.
    warn : bool
        Warn on non-convergence (callers that summarise many solves pass False and read
        ``info.converged``).

    Returns
    -------
    z : (B, ...) tensor
        ``f(x)`` at the iterate ``x`` with the smallest residual: for a map onto a constraint
        set (e.g. the simplex) the result satisfies the constraints exactly.
    info : SolverInfo

    Warns
    -----
    ConvergenceWarning
        When the tolerance is not met within ``max_iter`` evaluations.
    """
    batch = x0.shape[0]
    shape = x0.shape
    history = options.history
    x = x0
    fx = f(x)
    residual = _relative_residual(fx, x)
    best_residual, best_fx = residual.clone(), fx
    # Ring buffers of the last `history` iterates and their images, flattened per problem.
    iterates = x0.new_zeros((batch, max(history, 1), x0[0].numel()))
    images = torch.zeros_like(iterates)
    n_stored = restarts = iterations = 0
    while iterations < options.max_iter and best_residual.max() > options.tol:
        slot = n_stored % max(history, 1)
        iterates[:, slot] = x.reshape(batch, -1)
        images[:, slot] = fx.reshape(batch, -1)
        n_stored += 1
        n_used = min(n_stored, history)
        if n_used >= 2:
            candidate = _anderson_mix(
                iterates[:, :n_used], images[:, :n_used], options.regularization
            ).reshape(shape)
        else:
            candidate = fx
        f_candidate = f(candidate)
        iterations += 1
        candidate_residual = _relative_residual(f_candidate, candidate)
        rejected = ~(candidate_residual <= options.safeguard * residual)
        if n_used >= 2 and bool(rejected.any()):
            # Fall back to the plain step from the previous iterate for every problem
            # (contractions never increase the residual under it) and forget the history.
            restarts += 1
            candidate = fx
            f_candidate = f(candidate)
            iterations += 1
            candidate_residual = _relative_residual(f_candidate, candidate)
            n_stored = 0
        x, fx, residual = candidate, f_candidate, candidate_residual
        improved = residual < best_residual
        best_residual = torch.where(improved, residual, best_residual)
        best_fx = torch.where(_expand(improved, fx), fx, best_fx)
    worst = float(best_residual.max())
    info = SolverInfo(
        iterations=iterations, residual=worst, converged=worst <= options.tol, restarts=restarts
    )
    if warn and not info.converged:
        warnings.warn(
            f"{what} did not converge: relative residual {worst:.2e} > tol {options.tol:.1e} "
            f"after {iterations} iterations; gradients at a non-equilibrium point are "
            "inexact (raise max_iter, or reduce the step size)",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best_fx, info


def _relative_residual(fx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) relative residuals ``||f(x) - x|| / ||f(x)||`` (NaN maps to +inf)."""
    diff = (fx - x).reshape(fx.shape[0], -1).norm(dim=1)
    scale = fx.reshape(fx.shape[0], -1).norm(dim=1).clamp_min(torch.finfo(fx.dtype).tiny)
    return torch.nan_to_num(diff / scale, nan=float("inf"))


def _expand(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.reshape((-1,) + (1,) * (like.dim() - 1))


def _anderson_mix(
    iterates: torch.Tensor, images: torch.Tensor, regularization: float
) -> torch.Tensor:
    """Next Anderson iterate from (B, n, D) past iterates and their images.

    The mixing weights minimise ``||sum_i alpha_i g_i||^2 + lam s ||alpha||^2`` subject to
    ``sum(alpha) = 1`` (``g_i = f(x_i) - x_i``, ``s`` the mean of ``||g_i||^2``), whose
    solution is ``alpha = H^-1 1 / (1^T H^-1 1)`` with ``H = G G^T + lam s I``. Solved in
    float64: the Gram matrix of nearly collinear residuals is badly conditioned in float32.
    """
    residuals = (images - iterates).double()
    gram = residuals @ residuals.transpose(1, 2)
    n_used = gram.shape[-1]
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
    # A problem solved exactly has all-zero residuals: any weights do, keep H invertible.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    gram = gram + (regularization * scale)[:, None, None] * torch.eye(
        n_used, dtype=gram.dtype, device=gram.device
    )
    ones = torch.ones(gram.shape[0], n_used, 1, dtype=gram.dtype, device=gram.device)
    weights = torch.linalg.solve(gram, ones)
    weights = (weights / weights.sum(dim=1, keepdim=True)).to(images.dtype)
    return (weights.transpose(1, 2) @ images).squeeze(1)


@dataclass
class EquilibriumInfo:
    """The solves behind one :func:`equilibrium` call: ``backward`` is filled in when the
    gradient is computed (``loss.backward()``), and stays None until then."""

    forward: SolverInfo
    backward: SolverInfo | None = None


def equilibrium(
    f: FixedPointMap,
    x0: torch.Tensor,
    forward: SolverOptions = SolverOptions(),
    backward: SolverOptions = SolverOptions(tol=1e-6, max_iter=100),
    *,
    warn: bool = True,
) -> tuple[torch.Tensor, EquilibriumInfo]:
    """The fixed point ``z* = f(z*)``, differentiable by the implicit function theorem.

    Parameters
    ----------
    f : callable, (B, ...) tensor -> (B, ...) tensor
        The map, closing over its parameters (module weights, data); gradients flow to every
        tensor it uses that requires grad.
    x0 : (B, ...) tensor
        Starting point (no gradient flows to it: the equilibrium does not depend on it).
    forward, backward : SolverOptions
        Settings of the forward solve and of the adjoint solve ``u = J^T u + g``.
    warn : bool
        Warn when either solve does not converge.

    Returns
    -------
    z : (B, ...) tensor
        The equilibrium, as ``f`` applied once more to the solver's result, so that its
        autograd graph is one application of ``f`` deep.
    info : EquilibriumInfo
    """
    with torch.no_grad():
        z_star, forward_info = anderson(
            f, x0.detach(), forward, what="forward equilibrium solve", warn=warn
        )
    info = EquilibriumInfo(forward_info)
    if not torch.is_grad_enabled():
        return z_star, info
    z_star = z_star.requires_grad_()
    z = f(z_star)

    def implicit_gradient(grad: torch.Tensor) -> torch.Tensor:
        # u = J^T u + grad, by the same solver; each evaluation is one vector-Jacobian
        # product through the retained one-step graph z = f(z_star). Those products feed
        # gradients into z, which would call this hook again: remove it first (one backward
        # pass per forward pass, as in training).
        handle.remove()

        def adjoint_map(u: torch.Tensor) -> torch.Tensor:
            # A map that does not depend on z (a constant f) has a zero Jacobian.
            (vjp,) = torch.autograd.grad(z, z_star, u, retain_graph=True, allow_unused=True)
            return grad if vjp is None else vjp + grad

        u, info.backward = anderson(
            adjoint_map, grad, backward, what="implicit (adjoint) solve", warn=warn
        )
        return u

    if z.requires_grad:
        handle = z.register_hook(implicit_gradient)
    return z, info
