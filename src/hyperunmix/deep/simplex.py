"""Maps onto the probability simplex, batched and differentiable, for abundance constraints.

Abundances obey ANC (``a >= 0``) and ASC (``sum(a) = 1``): each abundance vector lies on the
unit simplex. Two maps onto it are offered:

* :func:`project_simplex`: the exact Euclidean projection (sort-based, Held, Wolfe & Crowder
  1974; Duchi et al. 2008). Non-expansive, so a gradient step followed by it stays a
  contraction, and piecewise linear, which is what Anderson acceleration handles well.
* :func:`mirror_step`: the entropic mirror-descent step ``a * exp(-g) / sum(a * exp(-g))``,
  the simplex analogue of a gradient step (a softmax of ``log a - g``).

:func:`simplex_quadratic_minimum` solves the quadratic program whose projected-gradient
iteration is the Euclidean one above, in one step: exactly, and differentiably in its
data (the projection in the metric of the quadratic, rather than the Euclidean one).

A "clamp negatives then renormalise" map is deliberately absent: it is not a projection, and
fixed-point iterations built on it stall Anderson acceleration.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..linear import fcls

#: Floor used inside the logarithm of the mirror step, so exact zeros stay finite.
_LOG_FLOOR = 1e-12


class _SimplexProjection(torch.autograd.Function):
    """Euclidean projection onto ``{a : a >= 0, sum(a) = 1}`` along the last axis.

    The backward pass uses the closed-form Jacobian of the projection instead of
    differentiating through the sort: on the support S of the output it is
    ``I - 1 1^T / |S|``, and zero off it. Only the output is saved, so the memory cost of one
    projection in a graph is that of its result.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        sorted_desc, _ = torch.sort(values, dim=-1, descending=True)
        cumulative = sorted_desc.cumsum(dim=-1) - 1.0
        ranks = torch.arange(1, values.shape[-1] + 1, device=values.device, dtype=values.dtype)
        # The support size is the largest k with sorted_k > (cumsum_k - 1) / k; the condition
        # holds for a prefix of the sorted order, so counting the True entries finds k. It
        # is at least 1 for every finite vector (k = 1 always qualifies) and 0 exactly for
        # those holding NaN or +inf (sorted first, they spoil every cumulative sum) or only
        # -inf, which have no projection.
        support_size = (sorted_desc * ranks > cumulative).sum(dim=-1, keepdim=True)
        undefined = int((support_size == 0).sum())
        if undefined:
            raise InputError(
                f"the simplex projection got {undefined} vector(s) holding NaN or "
                "+inf (or only -inf), which have no projection"
            )
        threshold = cumulative.gather(-1, support_size - 1) / support_size.to(values.dtype)
        projected = (values - threshold).clamp_min(0.0)
        ctx.save_for_backward(projected)
        return projected

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (projected,) = ctx.saved_tensors
        support = (projected > 0).to(grad_output.dtype)
        support_mean = (grad_output * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (grad_output - support_mean)


def project_simplex(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean projection of every vector along ``dim`` onto the unit simplex.

    Parameters
    ----------
    values : float tensor with P entries along ``dim``, e.g. (N, P) or (B, P, H, W)
    dim : int
        The abundance axis.

    Returns
    -------
    Tensor of the same shape, non-negative and summing to one along ``dim``: for each vector
    ``v``, ``argmin_a ||a - v||_2`` over the simplex. Differentiable (almost everywhere).
    Entries at -inf project to 0.

    Raises
    ------
    InputError
        When a vector holds NaN or +inf, or only -inf.
    """
    return _SimplexProjection.apply(values.movedim(dim, -1)).movedim(-1, dim)


def mirror_step(abundances: torch.Tensor, step: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropic mirror-descent step on the simplex along ``dim``.

    Parameters
    ----------
    abundances : tensor on the simplex along ``dim`` (the current iterate)
    step : tensor of the same shape, the scaled gradient ``eta * g``
    dim : int
        The abundance axis.

    Returns
    -------
    Tensor ``a * exp(-step) / sum(a * exp(-step))`` along ``dim``: positive, summing to one.
    Computed as a softmax of ``log a - step`` for numerical stability.
    """
    return torch.softmax(torch.log(abundances.clamp_min(_LOG_FLOOR)) - step, dim=dim)


def simplex_quadratic_minimum(gram: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
    """``argmin_a a^T G a / 2 - t^T a`` over the unit simplex, for every row ``t`` of ``linear``.

    The minimiser is found exactly by FCLS (:func:`hyperunmix.linear.fcls`, an active-set
    method, on the Cholesky factor ``G = R^T R``: the problem is ``|R^-T t - R a|^2 / 2``
    up to a constant), without gradient; its value is then recomputed from the optimality
    conditions on its support ``S`` (``G_SS a_S + mu 1 = t_S``, ``sum a_S = 1``, ``a = 0``
    elsewhere), a linear system solved in float64, so that the result is differentiable
    in ``gram`` and ``linear`` (piecewise: the support is held fixed, as it is in a
    neighbourhood of any point where no abundance is at a kink).

    Parameters
    ----------
    gram : (P, P) symmetric positive definite ``G``
    linear : (N, P) the rows ``t``

    Returns
    -------
    (N, P) tensor, of the dtype of ``linear``: non-negative rows summing to one.
    """
    n_endmembers = gram.shape[0]
    with torch.no_grad():
        factor = np.linalg.cholesky(gram.detach().double().cpu().numpy()).T  # G = R^T R
        targets = np.linalg.solve(factor.T, linear.detach().double().cpu().numpy().T).T
        support = torch.as_tensor(fcls(targets, factor.T) > 0, device=linear.device)
    free = support.double()
    identity = torch.eye(n_endmembers, dtype=torch.float64, device=linear.device)
    system = linear.new_zeros(
        (len(linear), n_endmembers + 1, n_endmembers + 1), dtype=torch.float64
    )
    system[:, :n_endmembers, :n_endmembers] = gram.double() * (
        free[:, :, None] * free[:, None, :]
    ) + identity * (1 - free[:, :, None])
    system[:, :n_endmembers, n_endmembers] = free
    system[:, n_endmembers, :n_endmembers] = free
    right = torch.cat([linear.double() * free, free.new_ones(len(linear), 1)], dim=1)
    solution = torch.linalg.solve(system, right[..., None])[..., 0]
    return solution[:, :n_endmembers].to(linear.dtype)
