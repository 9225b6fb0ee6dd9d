"""Anderson solver and implicit differentiation: known fixed points, warnings, exact gradients."""

import warnings

import pytest
import torch

from hyperunmix.deep.fixed_point import SolverOptions, anderson, equilibrium
from hyperunmix.deep.simplex import project_simplex
from hyperunmix.errors import ConvergenceWarning, InputError


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensor ops on a shared machine run far faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def affine_contraction(batch=4, dim=30, top=0.98, seed=0):
    """f(x) = M x + b per problem, M symmetric with eigenvalues in [0, top]; and x*."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(batch, dim, dim, generator=gen, dtype=torch.float64))
    eigenvalues = torch.linspace(0, top, dim, dtype=torch.float64).expand(batch, dim)
    matrix = q @ torch.diag_embed(eigenvalues) @ q.transpose(1, 2)
    offset = torch.randn(batch, dim, generator=gen, dtype=torch.float64)

    def f(x):
        return (matrix @ x.unsqueeze(-1)).squeeze(-1) + offset

    solution = torch.linalg.solve(torch.eye(dim, dtype=torch.float64) - matrix, offset)
    return f, solution


def test_anderson_finds_the_fixed_point_of_a_batched_contraction():
    f, solution = affine_contraction()
    x0 = torch.zeros_like(solution)
    z, info = anderson(f, x0, SolverOptions(tol=1e-10, max_iter=500))
    assert info.converged and info.residual <= 1e-10
    torch.testing.assert_close(z, solution, rtol=1e-7, atol=1e-8)


def test_anderson_accelerates_plain_iteration():
    # Contraction factor 0.98: plain iteration needs about log(1e-8) / log(0.98) ~ 900 steps.
    f, solution = affine_contraction()
    x0 = torch.zeros_like(solution)
    _, plain = anderson(f, x0, SolverOptions(tol=1e-8, max_iter=5000, history=0))
    _, accelerated = anderson(f, x0, SolverOptions(tol=1e-8, max_iter=5000, history=5))
    assert plain.converged and accelerated.converged
    assert accelerated.iterations < plain.iterations / 5


def test_batch_problems_are_independent():
    f, solution = affine_contraction(batch=3)
    z_all, _ = anderson(f, torch.zeros_like(solution), SolverOptions(tol=1e-10, max_iter=500))

    def f_first(x):  # problem 0 alone, padded to the batch shape f expects
        return f(torch.cat([x, solution[1:]]))[:1]

    z_first, _ = anderson(
        f_first, torch.zeros_like(solution[:1]), SolverOptions(tol=1e-10, max_iter=500)
    )
    torch.testing.assert_close(z_all[:1], z_first, rtol=1e-7, atol=1e-8)


def test_non_contractive_map_warns():
    def expanding(x):  # fixed point x = -1, but repelling
        return 2.0 * x + 1.0

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        _, info = anderson(expanding, torch.ones(2, 3), SolverOptions(history=0, max_iter=20))
    assert not info.converged


def test_rotation_map_warns_and_reports_no_convergence():
    # Norm-preserving rotation: every step keeps the same residual, nothing converges.
    angle = torch.tensor(0.3)
    rotation = (
        torch.tensor([[torch.cos(angle), -torch.sin(angle)], [torch.sin(angle), torch.cos(angle)]])
        * 1.05
    )

    def rotate_away(x):
        return x @ rotation.T + 0.1 * torch.sin(5 * x)

    with pytest.warns(ConvergenceWarning):
        _, info = anderson(rotate_away, torch.ones(1, 2), SolverOptions(max_iter=30))
    assert not info.converged


def test_warn_false_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = anderson(
            lambda x: 2 * x + 1, torch.ones(1, 2), SolverOptions(max_iter=5), warn=False
        )
    assert not info.converged


@pytest.mark.parametrize(
    "options",
    [dict(tol=-1), dict(max_iter=0), dict(history=-1), dict(regularization=0), dict(safeguard=0.5)],
)
def test_bad_solver_options_raise(options):
    with pytest.raises(InputError):
        SolverOptions(**options)


# -- implicit differentiation -----------------------------------------------------------------
def simplex_layer(weight, bias, z):
    """A small nonlinear map onto the simplex, a contraction for small weights."""
    return project_simplex(torch.tanh(z @ weight.T + bias))


def exact_equilibrium_gradients(f_of, params, z_star, loss_weights):
    """dL/dp for L = <w, z*(p)> from dense Jacobians: w^T (I - J_z)^-1 J_p."""
    n = z_star.numel()
    jac_z = torch.autograd.functional.jacobian(lambda z: f_of(*params, z), z_star).reshape(n, n)
    lhs = torch.linalg.solve((torch.eye(n, dtype=z_star.dtype) - jac_z).T, loss_weights.ravel())
    grads = []
    for i, p in enumerate(params):

        def f_p(q, i=i):
            args = list(params)
            args[i] = q
            return f_of(*args, z_star)

        jac_p = torch.autograd.functional.jacobian(f_p, p).reshape(n, -1)
        grads.append((lhs @ jac_p).reshape(p.shape))
    return grads


def test_implicit_gradient_equals_exact_gradient():
    gen = torch.Generator().manual_seed(1)
    batch, dim = 3, 5
    weight = (
        0.6 * torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    ).requires_grad_()
    bias = torch.randn(batch, dim, generator=gen, dtype=torch.float64).requires_grad_()
    tight = SolverOptions(tol=1e-14, max_iter=500)
    z, info = equilibrium(
        lambda z: simplex_layer(weight, bias, z),
        torch.full((batch, dim), 1 / dim, dtype=torch.float64),
        tight,
        tight,
    )
    assert info.forward.converged
    loss_weights = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    (z * loss_weights).sum().backward()
    assert info.backward is not None and info.backward.converged
    exact = exact_equilibrium_gradients(
        simplex_layer, (weight.detach(), bias.detach()), z.detach(), loss_weights
    )
    for implicit, expected in zip((weight.grad, bias.grad), exact):
        assert float((implicit - expected).norm() / expected.norm()) <= 1e-6


def count_graph_nodes(tensor):
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return len(seen)


def test_graph_does_not_grow_with_forward_iterations():
    weight = (0.3 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
    bias = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    sizes = []
    for iterations in (2, 10):
        z, info = equilibrium(
            lambda z: simplex_layer(weight, bias, z),
            torch.zeros(2, 4, dtype=torch.float64),
            SolverOptions(tol=0.0, max_iter=iterations),
            warn=False,
        )
        assert info.forward.iterations == iterations
        sizes.append(count_graph_nodes(z))
    assert sizes[0] == sizes[1]


def test_equilibrium_without_grad_returns_a_point_on_the_simplex():
    weight = 0.3 * torch.randn(4, 4, dtype=torch.float64)
    with torch.no_grad():
        z, info = equilibrium(
            lambda z: simplex_layer(weight, torch.zeros(4), z),
            torch.zeros(2, 4, dtype=torch.float64),
        )
    assert not z.requires_grad and info.backward is None
    assert z.min() >= 0
    torch.testing.assert_close(z.sum(-1), torch.ones(2, dtype=torch.float64))
