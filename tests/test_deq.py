"""DEQ-Unmix: exact implicit gradients of the unmixing map, constraints, the FCLS start,
seeding, persistence, input checks; real-data accuracy (slow)."""

import warnings

import numpy as np
import pytest
import torch
from test_fixed_point import one_thread  # noqa: F401  (autouse: one torch thread)

from hyperunmix import Scene, datasets, metrics
from hyperunmix.deep.deq import (
    ENDMEMBER_FLOOR,
    DEQUnmix,
    DEQUnmixNet,
    SpectralSpatialCorrection,
    average_closest_pixels,
    sure_loss,
    whitened_error,
)
from hyperunmix.deep.fixed_point import SolverOptions
from hyperunmix.deep.simplex import project_simplex
from hyperunmix.errors import FileFormatError, InputError, NotFittedError
from hyperunmix.linear import fcls, nfindr, nnls, snnls
from hyperunmix.registry import get_method
from hyperunmix.synthetic import make_scene

FAST = dict(epochs=4, max_iter=30, hidden=4)


@pytest.fixture(scope="module")
def scene():
    scene = make_scene(10, 12, 3, wavelengths=np.linspace(400, 2400, 24), snr_db=40, seed=3)
    scene.cube[2, 5] = np.nan  # one invalid pixel, masked
    scene.mask[2, 5] = False
    return scene


# -- the map and its gradient -------------------------------------------------------------
class OneStep(torch.nn.Module):
    """f(z) of a network as a module call, so torch.func.functional_call can swap weights."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, abundances):
        return self.net.step(abundances, self.net.operators(image))


def tiny_network(projection="euclidean", concentration=1.0, data_term="scaled"):
    gen = torch.Generator().manual_seed(0)
    n_endmembers, n_bands = 3, 6
    endmembers = torch.rand(n_endmembers, n_bands, generator=gen, dtype=torch.float64) + 0.1
    torch.manual_seed(0)
    net = DEQUnmixNet(endmembers, hidden=4, projection=projection, data_term=data_term).double()
    # A non-zero correction (it starts at zero), small enough to keep f contractive.
    with torch.no_grad():
        net.correction.out.weight.normal_(0, 0.05, generator=gen)
        net.correction.out.bias.normal_(0, 0.05, generator=gen)
    abundances = torch.distributions.Dirichlet(torch.full((n_endmembers,), concentration)).sample(
        (1, 3, 4)
    )
    brightness = 0.5 + torch.rand(1, 1, 3, 4, generator=gen, dtype=torch.float64)
    image = torch.einsum("bhwp,pl->blhw", abundances.double(), endmembers) * brightness
    image = image + 0.02 * torch.randn(image.shape, generator=gen, dtype=torch.float64)
    return net, image


# The mirror step reaches boundary equilibria (zero abundances) only asymptotically: its test
# scene is well mixed; the Euclidean one has pixels on the simplex boundary.
@pytest.mark.parametrize(
    "projection,concentration,data_term",
    [("euclidean", 1.0, "scaled"), ("euclidean", 1.0, "linear"), ("mirror", 30.0, "scaled")],
)
def test_implicit_gradient_equals_exact_gradient(projection, concentration, data_term):
    """Every parameter's gradient (endmembers through eta and the data term, CNN weights)
    matches w^T (I - J_z)^-1 J_theta from dense float64 Jacobians to 1e-6."""
    net, image = tiny_network(projection, concentration, data_term)
    start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
    tight = SolverOptions(tol=1e-12, max_iter=2000)
    z, info = net.solve(net.operators(image), start, "deq", tight, tight, unrolled_steps=0)
    assert info.forward.converged
    loss_weights = torch.randn(z.shape, dtype=torch.float64)
    (z * loss_weights).sum().backward()
    assert info.backward.converged

    one_step = OneStep(net)
    params = {f"net.{k}": v.detach() for k, v in net.named_parameters()}
    z_star = z.detach()
    n = z_star.numel()
    jac_z = torch.autograd.functional.jacobian(lambda a: one_step(image, a), z_star)
    lhs = torch.linalg.solve(
        (torch.eye(n, dtype=torch.float64) - jac_z.reshape(n, n)).T, loss_weights.ravel()
    )
    implicit, exact = [], []
    for name, value in params.items():

        def f_of_param(p, name=name):
            return torch.func.functional_call(one_step, {**params, name: p}, (image, z_star))

        jac_p = torch.autograd.functional.jacobian(f_of_param, value).reshape(n, -1)
        exact.append(lhs @ jac_p)
        implicit.append(dict(net.named_parameters())[name.removeprefix("net.")].grad.ravel())
    implicit, exact = torch.cat(implicit), torch.cat(exact)
    assert float((implicit - exact).norm() / exact.norm()) <= 1e-6


@pytest.mark.parametrize("data_term", ["scaled", "linear"])
def test_zero_correction_equilibrium_is_the_classical_solution(data_term):
    """With the CNN output at zero, f is projected gradient descent: its fixed point is the
    FCLS solution (linear data term) or the NNLS solution scaled to sum to one (scaled),
    whatever the start."""
    net, image = tiny_network(data_term=data_term)
    with torch.no_grad():
        net.correction.out.weight.zero_()
        net.correction.out.bias.zero_()
        start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
        z, info = net.solve(
            net.operators(image),
            start,
            "deq",
            SolverOptions(tol=1e-12, max_iter=2000),
            SolverOptions(),
            unrolled_steps=0,
        )
    assert info.forward.converged
    pixels = image[0].movedim(0, -1).numpy()
    endmembers = net.endmembers.detach().numpy()
    if data_term == "linear":
        expected = fcls(pixels, endmembers)
    else:
        unscaled = nnls(pixels, endmembers)
        expected = unscaled / unscaled.sum(-1, keepdims=True)
    np.testing.assert_allclose(z[0].movedim(0, -1).numpy(), expected, atol=1e-8)


def test_exact_step_has_the_projected_gradient_fixed_points():
    """The exact step of the linear data term (each pixel's QP with the correction held
    fixed) and the projected-gradient step have the same fixed points: the equilibrium of
    the one, with a non-zero correction, is fixed by the other to round-off."""
    net, image = tiny_network(data_term="linear")
    ops = net.operators(image)
    start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
    tight = SolverOptions(tol=1e-12, max_iter=200)
    with torch.no_grad():
        z, info = net.solve(ops, start, "deq", tight, tight, unrolled_steps=0)
        features = torch.einsum("bphw,pk->bkhw", z, ops.endmember_features) - ops.image_features
        correction = net.correction(z, features)
        gradient = torch.einsum("bphw,pq->bqhw", z, ops.gram) - ops.image_on_endmembers
        stepped = project_simplex(z - ops.step * (gradient + correction), dim=1)
    assert info.forward.converged and info.forward.iterations < 50
    assert float(correction.abs().max()) > 1e-3  # the correction moves the equilibrium
    torch.testing.assert_close(stepped, z, rtol=0, atol=1e-10)


def test_unrolled_twin_applies_f_k_times():
    net, image = tiny_network()
    start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
    ops = net.operators(image)
    expected = start
    for _ in range(3):
        expected = net.step(expected, ops)
    out, info = net.solve(ops, start, "unrolled", SolverOptions(), SolverOptions(), 3)
    assert info is None
    torch.testing.assert_close(out, expected)


# -- the estimator ---------------------------------------------------------------------------
def test_registered_under_deq():
    assert get_method("deq") is DEQUnmix


@pytest.mark.parametrize(
    "solver,projection,data_term",
    [
        ("deq", "euclidean", "scaled"),
        ("unrolled", "euclidean", "scaled"),
        ("deq", "mirror", "scaled"),
        ("deq", "euclidean", "linear"),
    ],
)
def test_abundances_satisfy_anc_and_asc(scene, solver, projection, data_term):
    model = DEQUnmix(3, solver=solver, projection=projection, data_term=data_term, seed=0, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 4-epoch run may miss the solver tolerance
        result = model.fit_unmix(scene)
    a = result.abundances
    assert a.shape == (10, 12, 3)
    assert np.all(np.isnan(a[2, 5]))
    valid = a[scene.mask]
    assert valid.min() >= 0
    np.testing.assert_allclose(valid.sum(-1), 1.0, atol=1e-5)
    assert result.endmembers.shape == (3, 24)
    learned = model.network_.endmembers.detach()
    assert learned.min() >= ENDMEMBER_FLOOR and model.endmembers_.min() > 0
    if data_term == "scaled":  # unit-peak convention
        torch.testing.assert_close(learned.amax(dim=1), torch.ones(3))
    assert [record["epoch"] for record in model.history_] == list(range(1, FAST["epochs"] + 1))


def test_training_reduces_the_loss_and_reports_progress(scene):
    calls = []
    model = DEQUnmix(3, seed=0, **{**FAST, "epochs": 15})
    model.set_progress(lambda stage, done, total, info: calls.append((stage, done, total)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    loss = [record["loss"] for record in model.history_]
    assert loss[-1] < loss[0]
    assert calls == [("epoch", i, 15) for i in range(1, 16)]
    assert all(
        {"forward_iterations", "forward_residual"} <= record.keys() for record in model.history_
    )


@pytest.mark.parametrize("share", [0.0, 0.05])
def test_endmembers_start_from_nfindr(scene, share):
    model = DEQUnmix(
        3, seed=2, endmember_averaging=share, refine_fraction=None, **{**FAST, "epochs": 1}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    pixels = scene.pixels()
    extracted = nfindr(pixels, 3, seed=2)
    np.testing.assert_allclose(
        model.initial_endmembers_, average_closest_pixels(pixels, extracted, share)
    )
    if share == 0:
        np.testing.assert_allclose(model.initial_endmembers_, extracted)


@pytest.mark.parametrize("correction", [True, False])
def test_refined_start_is_the_mean_of_the_purest_pixels(scene, correction):
    """By default (refine_fraction=0.04), with or without the correction, each of N-FINDR's
    spectra is replaced by the mean of the 4 % of pixels (5 of 119) with the largest share
    of it: NNLS on the unit-peak spectra, rows scaled to sum to one (brute force here)."""
    model = DEQUnmix(3, seed=2, correction=correction, **{**FAST, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    pixels = scene.pixels(np.float64)
    extracted = nfindr(pixels, 3, seed=2)
    peak = extracted / extracted.max(axis=1, keepdims=True)
    weights = nnls(pixels, peak)
    shares = weights / weights.sum(axis=1, keepdims=True)
    purest = np.argsort(-shares, axis=0, kind="stable")[:5]  # (5, P)
    expected = pixels[purest].mean(axis=0)
    np.testing.assert_allclose(model.initial_endmembers_, expected, rtol=1e-12)
    assert not np.allclose(model.initial_endmembers_, extracted, rtol=1e-3)


def test_given_endmembers_are_not_refined(scene):
    given = nfindr(scene.pixels(np.float64), 3, seed=1) * 1.5
    model = DEQUnmix(3, endmembers=given, refine_fraction=0.5, **{**FAST, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    np.testing.assert_array_equal(model.initial_endmembers_, given)


def test_a_zero_extracted_endmember_is_not_refined():
    """N-FINDR picks the zero pixel here: no pixel has a share of it, so the extracted
    spectra are kept, with a warning."""
    scene = make_scene(10, 10, 3, seed=0)
    scene.cube[3, 3] = 0
    model = DEQUnmix(3, seed=0, **{**FAST, "epochs": 1})
    with pytest.warns(UserWarning, match="no positive peak"):
        model.fit(scene)
    extracted = nfindr(scene.pixels(np.float64), 3, seed=0)
    assert np.any(extracted.max(axis=1) == 0)
    np.testing.assert_array_equal(model.initial_endmembers_, extracted)


def test_training_starts_at_the_matched_baseline(scene):
    """With refine_fraction=None the start is N-FINDR's spectra as extracted (no averaging)
    and the correction's output layer is zero, so the untrained equilibrium is N-FINDR +
    FCLS, the matched baseline: with the endmembers and the correction held (learning rates
    of 1e-12 move them by about 1e-12 per step) the maps are FCLS's on N-FINDR's spectra, to
    float32 roundings amplified by the conditioning of the endmembers."""
    model = DEQUnmix(
        3, seed=0, lr_endmembers=1e-12, learning_rate=1e-12, refine_fraction=None, **FAST
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit_unmix(scene)
    pixels = scene.pixels()
    start = nfindr(pixels, 3, seed=0)
    np.testing.assert_array_equal(model.initial_endmembers_, start)
    np.testing.assert_allclose(model.endmembers_, start, rtol=1e-5)
    np.testing.assert_allclose(result.pixel_abundances(), fcls(pixels, start), rtol=0, atol=1e-5)


def test_average_closest_pixels_by_brute_force():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.1, 1.0, size=(200, 5))
    endmembers = rng.uniform(0.1, 1.0, size=(2, 5))
    averaged = average_closest_pixels(pixels, endmembers, 0.05)  # 10 pixels each
    for k in range(2):
        angles = np.arccos(
            np.clip(
                pixels
                @ endmembers[k]
                / np.linalg.norm(pixels, axis=1)
                / np.linalg.norm(endmembers[k]),
                -1,
                1,
            )
        )
        np.testing.assert_allclose(averaged[k], pixels[np.argsort(angles)[:10]].mean(0))


def test_seed_repeats_a_run(scene):
    runs = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs.append(DEQUnmix(3, seed=5, **FAST).fit_unmix(scene))
    np.testing.assert_array_equal(runs[0].abundances, runs[1].abundances)
    np.testing.assert_array_equal(runs[0].endmembers, runs[1].endmembers)


def test_save_load_round_trip(scene, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DEQUnmix(3, seed=0, **FAST).fit(scene)
        before = model.unmix(scene)
        path = model.save(tmp_path / "deq.pt")
        loaded = DEQUnmix.load(path)
        after = loaded.unmix(scene)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.endmembers_, model.endmembers_)
    # the same weights through the same float32 operations: the same maps, bit for bit
    np.testing.assert_array_equal(after.abundances, before.abundances)
    assert torch.load(path, weights_only=True)  # no pickled objects


@pytest.mark.parametrize("data_term,convention", [("scaled", "shares"), ("linear", "absolute")])
def test_convention_follows_the_data_term(scene, data_term, convention):
    model = DEQUnmix(3, data_term=data_term, seed=0, **{**FAST, "epochs": 1})
    assert model.convention == convention  # a property of the parameters, known before fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model.fit_unmix(scene).convention == convention


@pytest.mark.parametrize("data_term,solve", [("scaled", snnls), ("linear", fcls)])
def test_without_correction_the_maps_are_the_uncorrected_equilibrium(
    scene, tmp_path, data_term, solve
):
    """correction=False: the CNN is never trained, and the maps are the fixed point of plain
    projected gradient on the learned endmembers: normalised NNLS (scaled) or FCLS."""
    model = DEQUnmix(3, data_term=data_term, correction=False, seed=0, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit_unmix(scene)
    # fit seeds torch, then builds the network, whose only random layers are the CNN's
    torch.manual_seed(0)
    initial = SpectralSpatialCorrection(24, 3, FAST["hidden"]).state_dict()
    trained = model.network_.correction.state_dict()
    assert all(torch.equal(trained[name], value) for name, value in initial.items())
    assert not model.network_.correction.out.weight.any()  # still the zero initialisation
    # The solve starts at this equilibrium (computed in float64, rounded to float32) and f
    # without the correction is non-expansive, so the maps differ from it by float32
    # rounding only: well inside the solver tolerance.
    expected = solve(scene.pixels(), model.endmembers_)
    np.testing.assert_allclose(result.pixel_abundances(), expected, rtol=0, atol=model.tol)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = DEQUnmix.load(model.save(tmp_path / "deq.pt"))
        after = loaded.unmix(scene)
    assert loaded.correction is False and not loaded.network_.use_correction
    np.testing.assert_array_equal(after.abundances, result.abundances)


def test_inference_halves_its_step_out_of_a_cycle(scene):
    """A correction D(A) = 10 g(g(A)) (g = GELU, no spatial mixing) pushes each pixel's
    abundances away from their largest entries: the plain iteration on it flips between
    vertices (largest change 1 for 100 iterations, measured), where the inference
    iteration halves its step when the change stalls and reaches a fixed point, f(A) = A
    to the tolerance 1e-6 times the map's Lipschitz constant (about 10)."""
    model = DEQUnmix(3, seed=0, **{**FAST, "epochs": 1, "max_iter": 100})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    correction = model.network_.correction
    with torch.no_grad():
        for layer in (correction.mix, correction.spatial, correction.out):
            layer.weight.zero_()
            layer.bias.zero_()
        for k in range(3):
            correction.mix.weight[k, k] = 1.0  # abundance k -> hidden channel k
            correction.spatial.weight[k, k, 1, 1] = 1.0  # the centre tap only
            correction.out.weight[k, k] = 10.0
        image, _ = model._image_tensors(scene.cube, scene.mask)
        abundances, residual = model._corrected_fcls(image)
        stepped = model.network_.step(abundances, model.network_.operators(image))
    assert residual <= 1e-6
    assert float((stepped - abundances).abs().max()) <= 1e-5


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FileFormatError):
        DEQUnmix.load(bad)


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="newton"),
        dict(projection="relu"),
        dict(data_term="bilinear"),
        dict(endmember_averaging=1.0),
        dict(epochs=0),
        dict(step_scale=3.0),
        dict(tol=0),
        dict(correction="no"),
        dict(correction_epochs=-1),
        dict(correction_loss="fit"),
    ],
)
def test_bad_parameters_raise(scene, params):
    with pytest.raises(InputError):
        DEQUnmix(3, **params).fit(scene)


def test_unfitted_and_wrong_band_count_raise(scene):
    with pytest.raises(NotFittedError):
        DEQUnmix(3).transform(scene.cube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DEQUnmix(3, seed=0, **{**FAST, "epochs": 1}).fit(scene)
    with pytest.raises(InputError, match="bands"):
        model.transform(scene.cube[..., :10])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_request_without_cuda_raises(scene):
    with pytest.raises(InputError, match="cuda"):
        DEQUnmix(3, device="cuda", **FAST).fit(scene)


# -- real data (slow) ------------------------------------------------------------------------
# A regression guard, not the goal. With the defaults (the fit loss from N-FINDR's spectra
# re-estimated with refine_fraction=0.04, 40 epochs of patches, seed 0) Samson scores aRMSE
# 0.118 and Jasper Ridge 0.085; over the benchmark's 5 seeds 0.082 +- 0.021 (seed 0 is the
# worst) and 0.085 +- 0.001, against 0.142 and 0.090 for N-FINDR + FCLS. Samson's bound is
# that baseline (two standard deviations above seed 0 would exceed it); Jasper Ridge's, a
# tenth above seed 0's score (its spread is small).
@pytest.mark.slow
@pytest.mark.parametrize("name,max_armse", [("samson", 0.14), ("jasper_ridge", 0.095)])
def test_accuracy_on_real_data(data_dir, name, max_armse):
    scene = datasets.load(name, data_dir)
    p = scene.truth.n_endmembers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deq = metrics.evaluate(DEQUnmix(p, seed=0).fit_unmix(scene), scene.truth)
    assert deq["armse"] <= max_armse


# -- data scale ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-16, 1e30])
def test_start_follows_the_data_scale(scene, scale):
    """The N-FINDR start and its averaging over the closest pixels in angle do not depend on
    the data's units (N-FINDR failed at x1e-16 and duplicated pixels at x1e30)."""
    options = {**FAST, "epochs": 1, "endmember_averaging": 0.05}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = DEQUnmix(3, seed=0, **options).fit(scene).initial_endmembers_
        scaled = (
            DEQUnmix(3, seed=0, **options)
            .fit(Scene(scene.cube * np.float32(scale)))
            .initial_endmembers_
        )
    np.testing.assert_allclose(scaled / scale, start, rtol=1e-5)


# -- recorrupted training -----------------------------------------------------------------
def assert_gradients_match_differences(loss, parameters, step=1e-4, tolerance=1e-5):
    """The .grad of three entries of each parameter (first, middle, last) against central
    differences of ``loss()`` with ``step``, to ``tolerance`` relative (absolute below 1)."""
    for parameter in parameters:
        flat = parameter.data.view(-1)
        for index in (0, flat.numel() // 2, flat.numel() - 1):
            saved = flat[index].item()
            with torch.no_grad():
                flat[index] = saved + step
                up = loss().item()
                flat[index] = saved - step
                down = loss().item()
                flat[index] = saved
            numeric = (up - down) / (2 * step)
            analytic = parameter.grad.view(-1)[index].item()
            assert abs(analytic - numeric) <= tolerance * max(1.0, abs(numeric)), (index, analytic)


def test_gradient_of_the_recorrupted_loss_matches_finite_differences():
    """The whitened error of the equilibrium's reconstruction against a recorrupted target:
    implicit gradients (endmembers, CNN output layer) against central differences in
    float64 (the mirror step keeps f smooth). With steps h = 1e-4 the differences are off
    by h^2 / 6 times the third derivative (truncation; in entries of size 0.1 it can reach a
    few hundred times the gradient, so up to about 1e-6 of it) plus the solves' 1e-12 / h
    = 1e-8 (round-off through the solver): 1e-5 allows for both; smaller steps make the
    round-off share grow."""
    net, image = tiny_network("mirror", 30.0, "linear")
    gen = torch.Generator().manual_seed(1)
    std = 0.02 + 0.01 * torch.rand(1, image.shape[1], 1, 1, generator=gen, dtype=torch.float64)
    target = image - std * torch.randn(image.shape, generator=gen, dtype=torch.float64)
    valid = torch.ones(1, 3, 4, dtype=torch.bool)
    start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
    tight = SolverOptions(tol=1e-12, max_iter=2000)

    def loss() -> torch.Tensor:
        ops = net.operators(image)
        z, _ = net.solve(ops, start, "deq", tight, tight, unrolled_steps=0)
        return whitened_error(target, net.reconstruct(z, ops), valid, std)

    loss().backward()
    assert_gradients_match_differences(loss, (net.endmembers, net.correction.out.weight))


def test_recorrupted_copies_and_the_noise_estimate(scene):
    """Y + a z and Y - z / a are the same standard normal draw z (scaled by each band's
    noise level s) in opposite roles, so the image's own noise n cancels from their
    covariance: cov(n + a s z, n - s z / a) = s^2 - s^2 = 0. The draw's sample variance over
    10 x 12 x 24 = 2880 values is within 5 sqrt(2 / 2880) = 0.13 of 1 (five standard
    errors). The noise level is HySime's regression estimate: over 119 pixels and 24 bands
    each band's variance has 119 - 24 + 1 = 96 degrees of freedom, a relative standard
    error of sqrt(2 / 96) = 0.14 on the variance, 0.07 on the standard deviation, 0.015 on
    the mean over the 24 bands: within five, 0.075, of the true noise's."""
    model = DEQUnmix(3, seed=0, loss="recorrupted", recorruption=0.5, **{**FAST, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scene)
    image = model._image_tensors(scene.cube, scene.mask)[0].double()  # exact differences
    seen, target = model._training_pair(image, torch.Generator().manual_seed(0), "recorrupted")
    std = model._noise_std(image)
    draw = (seen - image) / (0.5 * std)
    torch.testing.assert_close(draw, (image - target) * 0.5 / std)
    assert abs(float(draw.var()) - 1) < 0.13

    pixels = scene.pixels()
    true_noise = pixels - scene.truth.abundances[scene.mask] @ scene.truth.endmembers
    estimate = model.noise_std_ / model.input_scale_
    assert abs(estimate.mean() / true_noise.std(axis=0).mean() - 1) < 0.075

    assert model.loss_ == "recorrupted"
    few_pixels = make_scene(4, 4, 3, wavelengths=np.linspace(400, 2400, 24), seed=0)
    for loss in ("sure", "recorrupted"):
        with pytest.warns(UserWarning, match="more valid pixels than bands"):
            small = DEQUnmix(3, loss=loss, epochs=1, max_iter=30).fit(few_pixels)
        assert small.loss_ == "fit" and not small.noise_std_.any()


@pytest.mark.parametrize("correction_loss", ["recorrupted", "sure"])
def test_second_phase_trains_the_correction_alone(scene, correction_loss):
    """``correction_epochs``: after the fit phase the correction alone is trained. The fit
    phase draws the same random numbers with or without the second phase, so the learned
    endmembers are those of the run without it, bit for bit, while the correction's output
    layer moves (and so do the maps); the second phase's epochs are in the history."""
    runs = {}
    for extra in (0, 3):
        model = DEQUnmix(
            3, seed=0, correction_epochs=extra, correction_loss=correction_loss, **FAST
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[extra] = (model.fit(scene), model.unmix(scene).abundances)
    (first, first_maps), (second, second_maps) = runs[0], runs[3]
    np.testing.assert_array_equal(second.endmembers_, first.endmembers_)
    before = first.network_.correction.out.weight.detach()
    after = second.network_.correction.out.weight.detach()
    assert float((after - before).abs().max()) > 0
    assert np.nanmax(np.abs(second_maps - first_maps)) > 0
    assert [r.get("phase") for r in second.history_] == [None] * 4 + [2.0] * 3
    assert second.correction_loss_ == correction_loss and first.correction_loss_ is None
    # without the correction there is nothing to train: no second phase
    ablation = DEQUnmix(3, seed=0, correction=False, correction_epochs=3, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(ablation.fit(scene).history_) == 4 and ablation.correction_loss_ is None


# -- the SURE loss -------------------------------------------------------------------------
def test_sure_estimates_the_error_against_the_noise_free_image():
    """For the linear shrinkage h(Y) = c Y (divergence c per entry) SURE is the whitened
    error against the noise-free image up to its sampling error: over n = 64 x 200 x 16
    entries the two differ by a sum of n independent terms of variance O(1) / n^2, so by
    a few 1e-2 at most (five standard deviations of the terms, measured in the test)."""
    gen = torch.Generator().manual_seed(0)
    shape = (1, 200, 8, 8)
    clean = torch.rand(shape, generator=gen, dtype=torch.float64)
    std = 0.05 + 0.1 * torch.rand(1, 200, 1, 1, generator=gen, dtype=torch.float64)
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    for shrink in (1.0, 0.8, 0.5):
        estimates, errors = [], []
        for _ in range(16):
            noisy = clean + std * torch.randn(shape, generator=gen, dtype=torch.float64)
            probe = torch.randn(shape, generator=gen, dtype=torch.float64)
            estimate = sure_loss(
                noisy, shrink * noisy, shrink * (noisy + 0.1 * std * probe), probe, 0.1, valid, std
            )
            estimates.append(float(estimate))
            errors.append(float((((shrink * noisy - clean) / std) ** 2).mean()))
        difference = np.array(estimates) - np.array(errors)
        assert abs(difference.mean()) <= 5 * difference.std() / 4 + 1e-12, shrink
        assert abs(difference.mean()) <= 0.05


def test_gradient_of_the_sure_loss_matches_finite_differences():
    """SURE through two equilibria (the image and its perturbed copy), each differentiated
    implicitly, against central differences in float64, with the exact step of the linear
    data term on well-mixed pixels (no abundance at zero, so the map is smooth). Steps
    h = 1e-4: truncation h^2 / 6 times the third derivative and the solves' 1e-12 / h
    round-off, within 1e-5 of the gradient (as for the recorrupted loss above)."""
    net, _ = tiny_network(data_term="linear")
    with torch.no_grad():  # a correction small enough to leave every abundance positive
        net.correction.out.weight.mul_(0.1)
        net.correction.out.bias.mul_(0.1)
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    mixed = torch.distributions.Dirichlet(torch.full((3,), 30.0)).sample((1, 3, 4)).double()
    image = torch.einsum("bhwp,pl->blhw", mixed, net.endmembers.detach())
    image = image + 0.01 * torch.randn(image.shape, generator=gen, dtype=torch.float64)
    std = 0.02 + 0.01 * torch.rand(1, image.shape[1], 1, 1, generator=gen, dtype=torch.float64)
    probe = torch.randn(image.shape, generator=gen, dtype=torch.float64)
    valid = torch.ones(1, 3, 4, dtype=torch.bool)
    start = torch.full((1, 3, 3, 4), 1 / 3, dtype=torch.float64)
    tight = SolverOptions(tol=1e-12, max_iter=2000)

    def loss() -> torch.Tensor:
        reconstructions = []
        for seen in (image, image + 0.1 * std * probe):
            ops = net.operators(seen)
            z, _ = net.solve(ops, start, "deq", tight, tight, unrolled_steps=0)
            assert float(z.detach().min()) > 0.05  # interior: the support is fixed
            reconstructions.append(net.reconstruct(z, ops))
        return sure_loss(image, *reconstructions, probe, 0.1, valid, std)

    loss().backward()
    parameters = (net.endmembers, net.correction.out.weight, net.correction.mix.weight)
    assert all(p.grad is not None and bool(p.grad.any()) for p in parameters)
    assert_gradients_match_differences(loss, parameters)


def test_patches_cover_the_image_in_one_epoch():
    """An epoch is ceil(H W / p^2) random windows of p x p pixels (the image's own size
    where it is smaller than p), inside the image; patch_size=None is the whole image."""
    gen = torch.Generator().manual_seed(0)
    windows = DEQUnmix(3, patch_size=8)._patches((20, 30), gen)
    assert len(windows) == 10  # ceil(600 / 64)
    for window in windows:
        rows, cols = window[2], window[3]
        assert rows.stop - rows.start == 8 and cols.stop - cols.start == 8
        assert rows.start >= 0 and rows.stop <= 20 and cols.start >= 0 and cols.stop <= 30
    small = DEQUnmix(3, patch_size=32)._patches((10, 12), gen)
    assert [(w[2], w[3]) for w in small] == [(slice(0, 10), slice(0, 12))]
    assert DEQUnmix(3, patch_size=None)._patches((20, 30), gen) == [(slice(None),) * 4]
