"""Simplex projection and mirror step: exactness (brute force over supports), KKT, gradients."""

import itertools

import numpy as np
import pytest
import torch

from hyperunmix.deep.simplex import mirror_step, project_simplex, simplex_quadratic_minimum
from hyperunmix.linear import fcls


def brute_force_projection(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of one vector onto the simplex by trying every support.

    On a support S the projection is v - tau with tau = (sum(v_S) - 1) / |S|, zero elsewhere;
    the answer is the closest feasible candidate.
    """
    best, best_distance = None, np.inf
    for size in range(1, len(v) + 1):
        for support in itertools.combinations(range(len(v)), size):
            idx = list(support)
            candidate = np.zeros_like(v)
            candidate[idx] = v[idx] - (v[idx].sum() - 1.0) / size
            if candidate.min() < -1e-12:
                continue
            distance = np.linalg.norm(candidate - v)
            if distance < best_distance:
                best, best_distance = candidate, distance
    return best


@pytest.mark.parametrize("n_endmembers", [2, 3, 5])
def test_projection_matches_brute_force(n_endmembers):
    rng = np.random.default_rng(n_endmembers)
    values = rng.normal(scale=2.0, size=(200, n_endmembers))
    projected = project_simplex(torch.as_tensor(values)).numpy()
    expected = np.stack([brute_force_projection(v) for v in values])
    np.testing.assert_allclose(projected, expected, atol=1e-12)


def test_projection_satisfies_kkt():
    # a = max(v - tau, 0) with one tau per vector, a >= 0, sum(a) = 1.
    values = torch.randn(500, 6, dtype=torch.float64) * 3
    projected = project_simplex(values)
    assert projected.min() >= 0
    torch.testing.assert_close(projected.sum(-1), torch.ones(500, dtype=torch.float64))
    support = projected > 0
    tau = ((values - projected) * support).sum(-1) / support.sum(-1)
    torch.testing.assert_close(projected, (values - tau[:, None]).clamp_min(0))
    # Off the support, v_i <= tau (else moving mass there would get closer).
    assert torch.all(values[~support] <= tau[:, None].expand_as(values)[~support] + 1e-12)


def test_points_on_the_simplex_are_fixed():
    points = torch.distributions.Dirichlet(torch.ones(4)).sample((100,)).double()
    torch.testing.assert_close(project_simplex(points), points)


def test_dim_argument_projects_channels_of_an_image():
    image = torch.randn(2, 3, 5, 4, dtype=torch.float64)  # (B, P, H, W)
    by_channel = project_simplex(image, dim=1)
    by_pixel = project_simplex(image.movedim(1, -1)).movedim(-1, 1)
    torch.testing.assert_close(by_channel, by_pixel)
    torch.testing.assert_close(by_channel.sum(1), torch.ones(2, 5, 4, dtype=torch.float64))


def test_projection_gradient_matches_finite_differences():
    torch.manual_seed(0)
    values = torch.randn(20, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(project_simplex, (values,))


def test_projection_jacobian_on_support():
    # On support S the Jacobian is I - 1 1^T / |S|; zero off it.
    v = torch.tensor([0.9, 0.5, -2.0], dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(project_simplex, v)
    expected = torch.tensor([[0.5, -0.5, 0], [-0.5, 0.5, 0], [0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(jacobian, expected)


def test_mirror_step_is_the_entropic_update():
    a = torch.distributions.Dirichlet(torch.ones(3)).sample((50,)).double()
    g = torch.randn(50, 3, dtype=torch.float64)
    expected = a * torch.exp(-g)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(mirror_step(a, g), expected)
    torch.testing.assert_close(mirror_step(a, torch.zeros_like(g)), a)
    # A constant shift of the gradient does not change the step (it is normal to the simplex).
    torch.testing.assert_close(mirror_step(a, g + 5.0), mirror_step(a, g))


def test_quadratic_minimum_is_fcls_and_differentiable():
    """argmin a^T G a / 2 - t^T a over the simplex with G = E E^T and t = E y is the FCLS
    abundance vector of y; its gradient in t (support held fixed) matches central
    differences, on pixels whose support does not change under the step."""
    rng = np.random.default_rng(0)
    endmembers = rng.random((4, 30)) + 0.1
    pixels = rng.dirichlet(np.full(4, 0.5), size=50) @ endmembers + 0.05 * rng.standard_normal(
        (50, 30)
    )
    gram = torch.as_tensor(endmembers @ endmembers.T)
    linear = torch.as_tensor(pixels @ endmembers.T, dtype=torch.float64).requires_grad_()
    solved = simplex_quadratic_minimum(gram, linear)
    expected = fcls(pixels, endmembers)
    np.testing.assert_allclose(solved.detach().numpy(), expected, atol=1e-10)
    assert (expected == 0).any() and (expected > 0).all(axis=1).any()  # boundary and interior

    weights = torch.as_tensor(rng.standard_normal((50, 4)))
    (solved * weights).sum().backward()
    step = 1e-6
    for pixel, entry in [(0, 0), (7, 2), (31, 3)]:
        moved = []
        for sign in (1, -1):
            shifted = linear.detach().clone()
            shifted[pixel, entry] += sign * step
            moved.append(simplex_quadratic_minimum(gram, shifted)[pixel] @ weights[pixel])
        numeric = float(moved[0] - moved[1]) / (2 * step)
        assert abs(float(linear.grad[pixel, entry]) - numeric) <= 1e-6 * max(1.0, abs(numeric))
