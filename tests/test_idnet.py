"""ID-Net: networks, sampling, objective, self-supervised set, estimator contract, persistence."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import distributions as td

from hyperunmix import synthetic
from hyperunmix.deep.egunet_reference import confident_means
from hyperunmix.deep.idnet import IDNet
from hyperunmix.deep.idnet_loss import (
    LossConfig,
    gaussian_log_density,
    image_elbo,
    sample_abundances,
    selfsup_terms,
    smoothed_labels,
    training_loss,
)
from hyperunmix.deep.idnet_model import (
    ALPHA_FLOOR,
    NONLINEAR_GAIN,
    REFERENCE_CLIP,
    AbundanceEncoder,
    EndmemberDecoders,
    IDNetModel,
    PixelDecoder,
    equal_peaks,
    least_squares_start,
    posterior_summary,
)
from hyperunmix.deep.idnet_selfsup import TripletSampler, bundles_from_library, extract_bundles
from hyperunmix.errors import ConvergenceWarning, FileFormatError, InputError
from hyperunmix.linear import fcls, nnls, snnls
from hyperunmix.metrics import sad
from hyperunmix.scene import Scene

N_BANDS = 24
#: Unit roundoff of float32: one rounding errs relatively by at most this.
U32 = np.finfo(np.float32).eps / 2
FAST = dict(epochs=3, batch_size=64, n_uncertainty_samples=4)


def tiny_scene(seed=0, **options):
    return synthetic.make_scene(
        12,
        12,
        3,
        wavelengths=np.linspace(400, 2400, N_BANDS),
        alpha=0.5,
        snr_db=35.0,
        seed=seed,
        **options,
    )


def scaled_library(scene, n_per_material=6, seed=0):
    """A bundle library of the true endmembers under +-20 % scaling."""
    rng = np.random.default_rng(seed)
    factors = rng.uniform(0.8, 1.2, size=(3, n_per_material, 1))
    spectra = (factors * scene.truth.endmembers[:, None, :]).reshape(-1, N_BANDS)
    return dict(
        spectra=spectra, labels=np.repeat(np.arange(3), n_per_material), names=["a", "b", "c"]
    )


@pytest.fixture(scope="module")
def scene():
    return tiny_scene()


@pytest.fixture(scope="module")
def fitted(scene):
    torch.set_num_threads(1)
    return IDNet(library=scaled_library(scene), seed=0, **FAST).fit(scene)


@pytest.fixture(scope="module")
def linear_fit(scene):
    """The ablation without the nonlinear streams."""
    torch.set_num_threads(1)
    return IDNet(library=scaled_library(scene), nonlinear=False, seed=0, **FAST).fit(scene)


@pytest.fixture(scope="module")
def fixed_fit(scene):
    """The ablation without endmember variability."""
    torch.set_num_threads(1)
    return IDNet(library=scaled_library(scene), variability=False, seed=0, **FAST).fit(scene)


def loss_batch(scene, model_dtype=torch.float64):
    """8 image-like pixels (8, L) and 8 triplets from the scaled library, seeded."""
    y = torch.rand(8, N_BANDS, generator=torch.Generator().manual_seed(0), dtype=model_dtype) * 0.5
    sampler = TripletSampler(
        bundles_from_library(scaled_library(scene), N_BANDS), 40.0, torch.Generator().manual_seed(0)
    )
    return y, tuple(t.to(model_dtype) for t in sampler.sample(8))


# -- networks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("constraint, solver", [("orthant", nnls), ("simplex", fcls)])
def test_unrolled_ista_converges_to_the_constrained_least_squares(constraint, solver):
    # With many steps and a negligible threshold the linear stream is projected gradient
    # descent to convergence: NNLS on the orthant, FCLS on the simplex.
    torch.manual_seed(0)
    encoder = AbundanceEncoder(3, 10, n_ista=3000, constraint=constraint).double()
    with torch.no_grad():
        encoder.log_threshold.fill_(-40.0)
        encoder.log_steps.fill_(math.log(2.0))  # 2 / tr(M M^T) <= 2 / lambda_max still converges
    rng = np.random.default_rng(1)
    endmembers = rng.uniform(0.1, 1.0, (4, 3, 10))
    pixels = rng.uniform(0.0, 1.0, (4, 10))
    with torch.no_grad():
        got = encoder.linear_stream(torch.from_numpy(pixels), torch.from_numpy(endmembers))
    expected = np.stack([solver(y[None], m)[0] for y, m in zip(pixels, endmembers)])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_least_squares_start_is_fcls_before_any_ista_step():
    # The sum-to-one least squares with active-set passes is already the FCLS solution,
    # even for a dark (ill-conditioned) material and for pixels on the simplex boundary.
    encoder = AbundanceEncoder(3, 10, n_ista=0, constraint="simplex").double()
    rng = np.random.default_rng(2)
    endmembers = rng.uniform(0.0, 1.0, (5, 3, 10))
    endmembers[:, 1] *= 0.05
    abundances = rng.dirichlet(np.ones(3), 5) * 0.7 + 0.1
    abundances[:2] = [[0.0, 0.3, 0.7], [0.6, 0.4, 0.0]]  # on the boundary
    pixels = np.einsum("np,npl->nl", abundances, endmembers) + rng.normal(0, 1e-3, (5, 10))
    expected = np.stack([fcls(y[None], m)[0] for y, m in zip(pixels, endmembers)])
    assert (expected[:2] == 0).any(axis=1).all() and expected[2:].min() > 0.01
    with torch.no_grad():
        got = encoder.linear_stream(torch.from_numpy(pixels), torch.from_numpy(endmembers))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    plain_start = np.stack(
        [np.linalg.lstsq(m.T, y, rcond=None)[0] for y, m in zip(pixels, endmembers)]
    )
    assert np.abs(plain_start - expected).max() > 1e-3  # the start matters here


@pytest.mark.parametrize("constraint", ["simplex", "orthant"])
def test_abundance_encoder_gradients_match_finite_differences(constraint):
    torch.manual_seed(0)
    encoder = AbundanceEncoder(3, 8, n_ista=4, constraint=constraint).double()
    y = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    endmembers = (0.2 + torch.rand(2, 3, 8, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda y, m: encoder(y, m)[0], (y, endmembers))


def test_nonlinear_stream_only_redistributes_the_dirichlet_mass():
    torch.manual_seed(0)
    encoder = AbundanceEncoder(3, 8, n_ista=2)
    y = torch.rand(6, 8)
    _, _alpha_lin, alpha_nlin = encoder(y, 0.2 + torch.rand(6, 3, 8))
    # Zero up to float32 rounding: the mean of the P outputs h is off by at most u sum|h|,
    # which the P differences h_k - mean add up P times (times the gain); the differences,
    # the gain's product and the final sum err by P + 1 roundings of sum|alpha_nlin|.
    with torch.no_grad():
        h = encoder.nonlinear(y)
    n_endmembers = h.shape[-1]
    bound = U32 * (
        NONLINEAR_GAIN * n_endmembers * h.abs().sum(-1)
        + (n_endmembers + 1) * alpha_nlin.abs().sum(-1)
    )
    assert torch.all(alpha_nlin.sum(-1).abs() <= bound)
    assert alpha_nlin.abs().max() > 0


def test_per_endmember_layers_act_independently():
    model = IDNetModel(3, N_BANDS, latent_dim=2)
    z = torch.randn(5, 3, 2)
    base = model.endmember_decoders(z)
    z_changed = z.clone()
    z_changed[:, 1] += 1.0
    changed = model.endmember_decoders(z_changed)
    torch.testing.assert_close(changed[:, [0, 2]], base[:, [0, 2]])
    assert not torch.allclose(changed[:, 1], base[:, 1])
    assert base.min() > 0 and base.max() < 1  # sigmoid output


def test_per_endmember_mlp_is_p_separate_mlps():
    # The endmember-major evaluation (one batched product per layer) against each
    # endmember's layers applied on its own. The kernels may sum in other orders: a sum of
    # at most 245 products errs by 245 u times the sum of their magnitudes (Higham, Thm
    # 3.5), O(1) here, so through four layers a few 1e-5 at most; a layout error (another
    # endmember's weights) moves the spectra by O(0.1).
    model = IDNetModel(3, N_BANDS, latent_dim=2)
    z = torch.randn(2, 5, 3, 2)
    layers = list(model.endmember_decoders.net)
    for k in range(3):
        h = z[..., k, :]
        for layer in layers:
            if isinstance(layer, torch.nn.ReLU):
                h = torch.relu(h)
            else:
                h = h @ layer.weight[k] + layer.bias[k]
        torch.testing.assert_close(
            model.endmember_decoders(z)[..., k, :], torch.sigmoid(h), rtol=0, atol=1e-4
        )


@pytest.mark.parametrize("mode", ["reference", "pinned"])
def test_decoders_around_a_reference_start_at_it_and_pinned_stay(mode):
    torch.manual_seed(0)
    reference = torch.rand(3, N_BANDS) * 0.8 + 0.1
    decoders = EndmemberDecoders(3, N_BANDS, 2, around_reference=mode)
    decoders.set_reference(reference)
    z = torch.randn(5, 3, 2)
    # sigmoid(logit(r)) in float32: logit's quotient, 1 - r and log round (a few u of the
    # logit, which sigmoid scales by r (1 - r) < 1/4), sigmoid rounds again: 8 u is ample
    torch.testing.assert_close(decoders(z), reference.expand(5, 3, -1), rtol=8 * U32, atol=0)
    with torch.no_grad():  # weights that training has moved
        for parameter in decoders.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    at_zero = decoders(torch.zeros(3, 2))
    if mode == "pinned":  # g_k(0) - g_k(0) is exactly 0: f(0) is the reference still
        torch.testing.assert_close(at_zero, reference, rtol=8 * U32, atol=0)
    else:
        assert (at_zero - reference).abs().max() > 0.01
    assert (decoders(z) - at_zero).abs().max() > 0.01  # the codes still move the spectra
    # values outside the sigmoid's range are clipped into it, not sent to +-inf
    fresh = EndmemberDecoders(3, N_BANDS, 2, around_reference=mode)
    fresh.set_reference(torch.tensor([0.0, 1.0]).repeat(3, N_BANDS // 2))
    clipped = torch.tensor([REFERENCE_CLIP, 1 - REFERENCE_CLIP]).repeat(3, N_BANDS // 2)
    torch.testing.assert_close(fresh(torch.zeros(3, 2)), clipped, rtol=8 * U32, atol=0)
    with pytest.raises(ValueError, match="around_reference"):
        EndmemberDecoders(3, N_BANDS, 2).set_reference(reference)


@pytest.mark.parametrize("decoders", ["pinned", "reference", "free"])
def test_endmember_decoders_option_keeps_or_frees_f0(request, scene, decoders):
    library = scaled_library(scene)
    if decoders == "pinned":  # the default
        model = request.getfixturevalue("fitted")
        assert model.endmember_decoders == "pinned"
    else:
        torch.set_num_threads(1)
        model = IDNet(library=library, endmember_decoders=decoders, seed=0, **FAST).fit(scene)
    # a library's reference is the mean of each material's bundle
    labels = library["labels"]
    centres = np.stack([library["spectra"][labels == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(bundles_from_library(library, N_BANDS).centres(), centres)
    if decoders == "pinned":
        # f(0) is the reference through training: the float32 round trip through the
        # logit (8 u, see above) and the cast of the scaled reference (u)
        np.testing.assert_allclose(model.endmembers_, centres, rtol=9 * U32, atol=0)
        pixel = model._transform_pixels(scene.pixels())["pixel_endmembers"]
        # the codes move the spectra (slowly: g's output layer starts at zero; 3e-4 of the
        # peak after these 3 epochs), far above the float32 rounding of f(0)
        assert np.abs(pixel - centres).max() > 1e-5 * centres.max()
    else:  # trained away from it (free: never started there)
        assert sad(centres, model.endmembers_).max() > 1e-3


def test_a_checkpoint_from_before_the_decoder_option_loads_with_free_decoders(scene, tmp_path):
    torch.set_num_threads(1)
    model = IDNet(library=scaled_library(scene), endmember_decoders="free", seed=0, epochs=1)
    path = model.fit(scene).save(tmp_path / "idnet.pt")
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    del config["params"]["endmember_decoders"]  # as written before the option existed
    payload["config"] = json.dumps(config)
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="library"):  # an object, not saved
        loaded = IDNet.load(path)
    assert loaded.endmember_decoders == "free"  # not the default: its decoders are unpinned
    np.testing.assert_array_equal(
        loaded._transform_pixels(scene.pixels())["abundances"],
        model._transform_pixels(scene.pixels())["abundances"],
    )


# -- batched Dirichlet sampling ----------------------------------------------------------------
def test_batched_and_per_pixel_dirichlet_sampling_agree_in_distribution():
    torch.manual_seed(0)
    alpha = torch.tensor([[0.5, 2.0, 5.0], [30.0, 1.0, 0.2], [3.0, 3.0, 3.0]])
    n = 4000
    batched = sample_abundances(alpha.repeat(n, 1)).reshape(n, 3, 3)
    per_pixel = torch.stack(
        [torch.stack([td.Dirichlet(a).rsample() for a in alpha]) for _ in range(n)]
    )
    total = alpha.sum(-1, keepdim=True)
    mean = alpha / total
    var = mean * (1 - mean) / (total + 1)
    # Both sample means within 5 standard errors of the exact mean and of each other.
    standard_error = torch.sqrt(var / n)
    for samples in (batched, per_pixel):
        assert torch.all((samples.mean(0) - mean).abs() < 5 * standard_error)
        # Sample variances within 5 standard errors (the 4th moment bounds that error).
        fourth = ((samples - mean) ** 4).mean(0)
        assert torch.all((samples.var(0) - var).abs() < 5 * torch.sqrt(fourth / n))
    assert torch.all(
        (batched.mean(0) - per_pixel.mean(0)).abs() < 5 * math.sqrt(2) * standard_error
    )


def test_reparameterised_gradient_matches_the_gradient_of_the_mean():
    # d E[a_k] / d alpha_j = (delta_kj alpha_0 - alpha_k) / alpha_0^2, estimated pathwise.
    torch.manual_seed(0)
    alpha = torch.tensor([2.0, 5.0, 1.0])
    n = 20000
    concentration = alpha.repeat(n, 1).requires_grad_()
    samples = sample_abundances(concentration)
    samples[:, 0].sum().backward()
    estimate = concentration.grad.mean(0)
    total = alpha.sum()
    exact = (torch.tensor([1.0, 0.0, 0.0]) * total - alpha[0]) / total**2
    spread = concentration.grad.std(0) / math.sqrt(n)
    assert torch.all((estimate - exact).abs() < 5 * spread + 1e-6)


# -- objective ---------------------------------------------------------------------------------
def test_elbo_is_finite_and_training_increases_it(scene):
    torch.set_num_threads(1)
    # "decoded": this scene's truth is absolute fractions of spectra of unequal peaks, which
    # the unit-peak convention can express only through per-pixel endmember variation
    estimator = IDNet(
        library=scaled_library(scene),
        seed=3,
        **{**FAST, "epochs": 6},
        early_stopping=False,
        endmember_scale="decoded",
    )
    estimator.fit(scene)
    losses = [h["loss"] for h in estimator.history_]
    elbos = [h["elbo"] for h in estimator.history_]
    assert all(math.isfinite(v) for v in losses + elbos)
    assert losses[-1] < losses[0]
    assert elbos[-1] > elbos[0]


def test_training_loss_combines_the_weighted_terms(scene):
    torch.manual_seed(0)
    model = IDNetModel(3, N_BANDS).double()  # float64: the loss is a sum of large terms
    y, triplets = loss_batch(scene)
    plain = LossConfig(
        selfsup=1.0, beta=10.0, sparsity=0.0, encoder_penalty=0.0, decoder_penalty=0.0
    )
    penalised = LossConfig(
        selfsup=1.0, beta=10.0, sparsity=0.0, encoder_penalty=2.0, decoder_penalty=0.0
    )
    torch.manual_seed(1)
    base = training_loss(model, y, triplets, plain)
    torch.manual_seed(1)
    with_penalty = training_loss(model, y, triplets, penalised)
    norms = sum(torch.linalg.norm(p) for p in model.abundance_encoder.nonlinear.parameters())
    torch.testing.assert_close(with_penalty.loss - base.loss, 2.0 * norms / 16)


def test_image_elbo_has_one_value_per_pixel():
    torch.manual_seed(0)
    model = IDNetModel(3, N_BANDS)
    elbo, alpha = image_elbo(model, torch.rand(7, N_BANDS))
    assert elbo.shape == (7,) and alpha.shape == (7, 3)
    assert torch.isfinite(elbo).all() and (alpha > 0).all()


# -- self-supervised set -----------------------------------------------------------------------
def test_triplets_are_pure_pixels_of_bundle_members_at_the_requested_snr(scene):
    library = scaled_library(scene)
    bundles = bundles_from_library(library, N_BANDS)
    sampler = TripletSampler(bundles, 20.0, torch.Generator().manual_seed(0))
    y, endmembers, abundances = sampler.sample(3000)
    assert y.shape == (3000, N_BANDS) and endmembers.shape == (3000, 3, N_BANDS)
    np.testing.assert_array_equal(abundances.sum(1).numpy(), 1.0)
    members = torch.as_tensor(library["spectra"], dtype=torch.float32)
    for k in range(3):  # column k of M always comes from material k's bundle
        own = members[library["labels"] == k]
        distance = (endmembers[:, k, None, :] - own[None]).abs().amax(-1).min(1).values
        assert distance.max() == 0
    clean = (abundances.unsqueeze(1) @ endmembers).squeeze(1)
    snr = 10 * torch.log10((clean**2).sum() / ((y - clean) ** 2).sum())
    assert abs(snr.item() - 20.0) < 0.3
    counts = abundances.sum(0)  # materials drawn uniformly
    assert torch.all((counts - 1000).abs() < 5 * math.sqrt(3000 * (1 / 3) * (2 / 3)))


def test_extracted_bundles_hold_nearly_pure_spectra_of_every_material():
    scene = tiny_scene(seed=2)
    truth = scene.truth.endmembers
    # the true endmembers as the reference: what is tested is the grouping, not an extractor
    # (on this 12 x 12 scene N-FINDR and VCA both miss the near-black material by 0.5 rad)
    bundles = extract_bundles(scene, 3, reference=truth, min_purity=0.9, seed=0)
    assert set(np.unique(bundles.labels)) == {0, 1, 2}
    assert bundles.spectra.shape == (bundles.labels.size, N_BANDS)
    np.testing.assert_array_equal(bundles.spectra[:3], truth)  # each reference joins its own
    # every other member is a pixel of the image whose true abundance of its material is high
    pixels, members = scene.pixels(np.float64), bundles.spectra[3:]
    index = np.argmin(((members[:, None, :] - pixels[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(members, pixels[index])
    true_share = scene.truth.abundances.reshape(-1, 3)[index, bundles.labels[3:]]
    assert len(members) > 10 and np.mean(true_share > 0.8) > 0.9


@pytest.mark.parametrize(
    "library, message",
    [
        (dict(spectra=np.ones((4, N_BANDS + 1)), labels=[0, 0, 1, 1]), "bands"),
        (dict(spectra=np.ones((4, N_BANDS)), labels=[0, 0, 2, 2]), "0..P-1"),
        (dict(spectra=np.ones((4, N_BANDS))), "labels"),
    ],
)
def test_bad_libraries_are_rejected(scene, library, message):
    with pytest.raises(InputError, match=message):
        IDNet(library=library).fit(scene)


# -- estimator ---------------------------------------------------------------------------------
def test_outputs_have_the_documented_shapes_and_ranges(fitted, scene):
    result = fitted.unmix(scene)
    assert result.abundances.shape == (12, 12, 3)
    assert result.names == ["a", "b", "c"]  # the library's materials name the maps
    assert result.endmembers.shape == (3, N_BANDS)
    assert result.extras["pixel_endmembers"].shape == (12, 12, 3, N_BANDS)
    assert result.extras["nonlinearity"].shape == (12, 12)
    assert result.extras["uncertainty"].shape == (12, 12, 3)
    abundances = result.abundances.reshape(-1, 3)
    assert abundances.min() >= 0  # ANC
    np.testing.assert_allclose(abundances.sum(1), 1.0, atol=1e-5)  # ASC
    nonlinearity = result.extras["nonlinearity"]
    assert nonlinearity.min() >= 0 and nonlinearity.max() <= 1
    uncertainty = result.extras["uncertainty"]
    assert uncertainty.min() >= 0 and uncertainty.max() <= 0.5  # std of a [0, 1] variable
    assert fitted.names_ == ["a", "b", "c"]


@pytest.mark.parametrize("output", ["reference", "linear"])
def test_linear_outputs_are_the_dirichlet_of_the_linear_stream_alone(fitted, scene, output):
    # "reference": every pixel solved with the shared f(0); "linear": with its own
    # f(E[Z | y]). Either way the per-pixel endmembers are the pixel's own.
    linear = copy.copy(fitted)
    linear.abundance_output = output
    linear.n_uncertainty_samples = 0  # the Dirichlet's own standard deviation
    pixels = scene.pixels(np.float64)
    network = fitted.network_
    with torch.no_grad():
        y = torch.as_tensor(pixels * fitted.input_scale_, dtype=torch.float32)
        own = network.endmember_decoders(network.latent_encoders(y)[0])
        shared = network.reference_endmembers().expand(len(y), -1, -1)
        endmembers = shared if output == "reference" else own
        _, alpha_lin, alpha_nlin = network.abundance_encoder(y, endmembers)
        kappa = network.abundance_encoder.kappa
    alpha = (kappa * torch.relu(alpha_lin) + ALPHA_FLOOR).numpy()
    expected = alpha / alpha.sum(1, keepdims=True)
    out = linear._transform_pixels(pixels)
    # the same float32 operations on the same inputs, batched differently: a few roundings
    np.testing.assert_allclose(out["abundances"], expected, rtol=0, atol=64 * U32)
    np.testing.assert_allclose(
        out["pixel_endmembers"], own.numpy() / fitted.input_scale_, rtol=64 * U32
    )
    concentration = alpha.sum(1, keepdims=True)
    np.testing.assert_allclose(
        out["uncertainty"],
        np.sqrt(expected * (1 - expected) / (concentration + 1)),
        rtol=0,
        atol=64 * U32,
    )
    # the nonlinear stream moves the posterior output: the option changes the maps
    assert alpha_nlin.abs().max() > 0
    with_h = copy.copy(fitted)
    with_h.abundance_output = "posterior"
    posterior = with_h._transform_pixels(pixels)["abundances"]
    assert np.abs(posterior - out["abundances"]).max() > 1e3 * U32


def test_reference_maps_without_pixel_endmembers_skip_the_codes(fitted, scene, monkeypatch):
    # The maps at the reference need no codes: asked for no per-pixel endmembers (and no
    # draws), the latent encoders do not run, and the other outputs stay the same.
    full = copy.copy(fitted)
    full.abundance_output = "reference"
    full.n_uncertainty_samples = 0
    lean = copy.copy(full)
    lean.return_pixel_endmembers = False
    pixels = scene.pixels(np.float64)
    expected = full._transform_pixels(pixels)
    encoders = fitted.network_.latent_encoders
    calls = []

    def counted(y):
        calls.append(len(y))
        return type(encoders).forward(encoders, y)

    monkeypatch.setattr(encoders, "forward", counted)
    out = lean._transform_pixels(pixels)
    assert not calls
    assert "pixel_endmembers" not in out
    for key in ("abundances", "nonlinearity", "uncertainty"):
        np.testing.assert_array_equal(out[key], expected[key])
    full._transform_pixels(pixels[:5])  # the counter counts: the codes run when asked for
    assert calls == [5]


def float64_evaluation(estimator, pixels, monkeypatch):
    """``estimator._transform_pixels(pixels)`` by the same model in float64, and the largest
    condition number (N,) of the Gram matrices M M^T each pixel's ISTA start solves with
    (the mean endmembers and every uncertainty draw)."""
    conditions = []

    def recording_start(gram, *args, **kwargs):
        conditions.append(torch.linalg.cond(gram).reshape(-1, gram.shape[-3]))
        return least_squares_start(gram, *args, **kwargs)

    monkeypatch.setattr("hyperunmix.deep.idnet_model.least_squares_start", recording_start)
    model = copy.deepcopy(estimator.network_).double().eval()
    z_noise = estimator._uncertainty_draws(torch.device("cpu"))
    with torch.no_grad():
        exact = posterior_summary(
            model,
            torch.from_numpy(pixels * estimator.input_scale_),
            None if z_noise is None else z_noise.double(),
            estimator.input_scale_,
            with_nonlinear=estimator.abundance_output == "posterior",
            at_reference=estimator.abundance_output == "reference",
        )
    exact["pixel_endmembers"] = exact["pixel_endmembers"] / estimator.input_scale_
    return (
        {key: value.numpy() for key, value in exact.items()},
        torch.cat(conditions).amax(0).numpy(),
    )


def test_outputs_do_not_depend_on_how_pixels_are_chunked(fitted, scene, monkeypatch):
    # The whole image in one batch, in two, and pixel by pixel (the first 20).
    # Chunks of other sizes run other float32 kernels (BLAS picks them by size, and CPUs
    # differ), so the outputs may differ by rounding, and by no more: every evaluation stays
    # within the float32 error bound of the exact (float64) one. That error is amplified by
    # the solves G x = M y of the ISTA start: to first order x errs relatively by kappa(G)
    # times the relative error of G and M y, which are sums of L non-negative float32
    # products (gamma_L each) solved by LU (gamma_3P; Higham, Accuracy and Stability of
    # Numerical Algorithms, 2nd ed., Thm 7.2 and 9.4): (2L + 3P) u, the worst case, far above
    # the few roundings M and y carry from the networks. The ISTA steps after the start are
    # non-expansive (steps below 2 / lambda_max) and add a few roundings each. Normalising
    # alpha to abundances at most doubles an l1 error, sqrt(P) times the l2 one. All outputs
    # are at most one (the endmembers, reflectances, are not solved for), so the bound is
    # absolute.
    pixels = scene.pixels()
    whole = fitted._transform_pixels(pixels)
    halves = [fitted._transform_pixels(part) for part in np.array_split(pixels, [50])]
    singles = [fitted._transform_pixels(pixel[None]) for pixel in pixels[:20]]
    exact, condition = float64_evaluation(fitted, pixels, monkeypatch)
    n_endmembers = fitted.n_endmembers_
    bound = 2 * math.sqrt(n_endmembers) * (2 * N_BANDS + 3 * n_endmembers) * U32 * condition
    for key, value in exact.items():
        per_pixel = bound.reshape((-1,) + (1,) * (value.ndim - 1))
        for outputs in ([whole], halves, singles):
            computed = np.concatenate([out[key] for out in outputs])
            error = np.abs(computed - value[: len(computed)])
            allowed = per_pixel[: len(computed)]
            assert np.all(error <= allowed), (key, (error / allowed).max())


def test_masked_pixels_stay_nan(fitted, scene):
    cube = scene.cube.copy()
    cube[0, 0, 3] = np.nan
    maps = fitted.transform(cube)
    assert np.isnan(maps["abundances"][0, 0]).all()
    assert np.isnan(maps["uncertainty"][0, 0]).all()
    assert np.isfinite(maps["abundances"][1:]).all()


def test_save_load_round_trip_gives_identical_outputs(fitted, scene, tmp_path):
    path = fitted.save(tmp_path / "idnet.pt")
    loaded = IDNet.load(path)
    torch.load(path, weights_only=True)  # a weights-only checkpoint
    before, after = (
        fitted._transform_pixels(scene.pixels()),
        loaded._transform_pixels(scene.pixels()),
    )
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    np.testing.assert_array_equal(fitted.endmembers_, loaded.endmembers_)
    assert loaded.get_params()["batch_size"] == FAST["batch_size"]
    # a model of another method is refused, both ways, with a clear error
    from hyperunmix.deep.deq import DEQUnmix
    from hyperunmix.deep.egunet import EGUNet

    with pytest.raises(FileFormatError, match="holds a 'idnet' model, not egunet"):
        EGUNet.load(path)
    deq = DEQUnmix(3, epochs=1, max_iter=5, tol=1e-2).fit(scene).save(tmp_path / "deq.pt")
    with pytest.raises(FileFormatError, match="holds a 'deq' model, not idnet"):
        IDNet.load(deq)


def test_same_seed_repeats_and_another_seed_differs(fitted, scene):
    library = scaled_library(scene)
    again = IDNet(library=library, seed=0, **FAST).fit(scene)
    np.testing.assert_array_equal(again.unmix(scene).abundances, fitted.unmix(scene).abundances)
    other = IDNet(library=library, seed=1, **{**FAST, "epochs": 1}).fit(scene)
    assert not np.allclose(other.unmix(scene).abundances, fitted.unmix(scene).abundances)


def test_progress_is_reported_per_epoch(scene):
    calls = []
    estimator = IDNet(library=scaled_library(scene), seed=0, **{**FAST, "epochs": 2})
    estimator.set_progress(lambda stage, done, total, info: calls.append((stage, done, total)))
    estimator.fit(scene)
    assert calls == [("epoch", 1, 2), ("epoch", 2, 2)]


@pytest.mark.parametrize("patience, expected_epochs", [(1, 2), (2, 4)])
def test_training_stops_on_a_plateau_after_two_patience_windows(scene, patience, expected_epochs):
    # min_delta = 1: any fall short of the whole loss is a plateau, found as soon as two
    # windows of `patience` epochs are there to compare.
    estimator = IDNet(
        library=scaled_library(scene),
        seed=0,
        min_delta=1.0,
        patience=patience,
        **{**FAST, "epochs": 10},
    ).fit(scene)
    assert estimator.n_epochs_ == expected_epochs


def test_the_time_budget_is_checked_at_every_step(scene, monkeypatch):
    # 144 pixels in batches of 16: 9 steps an epoch. A budget spent at once stops training
    # after the first step, in the middle of epoch 1, not at the end of an epoch.
    import hyperunmix.deep.idnet as idnet_module

    steps = []

    def counted(*args, **kwargs):
        steps.append(1)
        return training_loss(*args, **kwargs)

    monkeypatch.setattr(idnet_module, "training_loss", counted)
    estimator = IDNet(
        library=scaled_library(scene), seed=0, epochs=3, batch_size=16, max_seconds=1e-9
    )
    with pytest.warns(ConvergenceWarning, match="after epoch 1 of 3 \\(cut short\\)"):
        estimator.fit(scene)
    assert len(steps) == 1
    assert (estimator.n_epochs_, estimator.stop_reason_) == (1, "max_seconds")
    assert math.isfinite(estimator.history_[0]["loss"])


def test_presets_set_the_papers_weights_and_arguments_override_them(scene):
    estimator = IDNet(
        library=scaled_library(scene),
        preset="cuprite",
        sparsity_weight=0.5,
        **{**FAST, "epochs": 1},
    ).fit(scene)
    assert estimator.weights_ == dict(
        selfsup_weight=10.0, sparsity_weight=0.5, encoder_penalty=0.05, decoder_penalty=5.0
    )


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_endmembers=3, preset="nowhere"), "preset"),
        (dict(n_endmembers=3, batch_size=0), "batch_size"),
        (dict(n_endmembers=3, sparsity_weight=-1.0), "sparsity_weight"),
        (dict(n_endmembers=3, constraint="box"), "constraint"),
        (dict(n_endmembers=3, endmember_scale="unit"), "endmember_scale"),
        (dict(n_endmembers=3, nonlinear="no"), "nonlinear"),
        (dict(n_endmembers=3, variability=0), "variability"),
    ],
)
def test_bad_parameters_are_rejected(scene, params, message):
    with pytest.raises(InputError, match=message):
        IDNet(**params).fit(scene)


def test_n_endmembers_must_match_the_library(scene):
    with pytest.raises(InputError, match="materials"):
        IDNet(n_endmembers=4, library=scaled_library(scene)).fit(scene)


@pytest.mark.parametrize(
    "options", [dict(constraint="orthant"), dict(triplet_density="posterior_sample")]
)
def test_the_papers_variants_train(scene, options):
    estimator = IDNet(
        library=scaled_library(scene), seed=0, **{**FAST, "epochs": 2}, **options
    ).fit(scene)
    abundances = estimator.unmix(scene).abundances.reshape(-1, 3)
    assert np.isfinite(abundances).all()
    np.testing.assert_allclose(abundances.sum(1), 1.0, atol=1e-5)


def test_runs_without_a_library(scene):
    torch.set_num_threads(1)
    result = IDNet(3, seed=0, **{**FAST, "epochs": 1}).fit_unmix(scene)
    assert np.isfinite(result.abundances).all()
    # without P either, HySime's estimate is used, as by the other methods
    from hyperunmix.linear import estimate_n_endmembers

    unsized = IDNet(seed=0, **{**FAST, "epochs": 1}).fit(scene)
    assert unsized.n_endmembers_ == estimate_n_endmembers(scene.pixels())
    with pytest.raises(InputError, match="expects a Scene"):
        IDNet(3).fit(scene.cube)


# -- scale conventions and the nonlinear stream ------------------------------------------------
def test_peak_scale_makes_the_shares_independent_of_each_endmembers_scale():
    # An image-picked endmember comes at an arbitrary brightness (sunlit or shaded pixel):
    # with endmember_scale="peak" the normalised linear-stream shares ignore it.
    rng = np.random.default_rng(0)
    endmembers = torch.from_numpy(rng.uniform(0.1, 1.0, (4, 3, 10)))
    pixels = torch.from_numpy(
        np.einsum("np,npl->nl", rng.dirichlet(np.ones(3), 4), endmembers.numpy())
    )
    rescaled = endmembers * torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)[:, None]

    def shares(scale, m):
        encoder = AbundanceEncoder(3, 10, n_ista=5, endmember_scale=scale).double()
        with torch.no_grad():
            encoder.log_threshold.fill_(-40.0)  # the l1 threshold is not scale invariant
            x = encoder.linear_stream(pixels, m)
        return x / x.sum(-1, keepdim=True)

    torch.testing.assert_close(shares("peak", rescaled), shares("peak", endmembers))
    assert (shares("decoded", rescaled) - shares("decoded", endmembers)).abs().max() > 0.05


def test_peak_scale_keeps_the_mean_peak():
    endmembers = torch.rand(5, 3, 8) + 0.1
    scaled = equal_peaks(endmembers)
    peaks = scaled.amax(-1)
    torch.testing.assert_close(peaks, peaks[:, :1].expand_as(peaks))
    torch.testing.assert_close(peaks[:, 0], endmembers.amax(-1).mean(-1))


# -- ablations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,convention", [("peak", "shares"), ("decoded", "absolute")])
def test_convention_follows_the_endmember_scale(scene, scale, convention):
    estimator = IDNet(
        library=scaled_library(scene), endmember_scale=scale, seed=0, **{**FAST, "epochs": 1}
    )
    assert estimator.convention == convention
    assert estimator.fit_unmix(scene).convention == convention


def test_without_nonlinearity_h_and_g_are_not_built(linear_fit, fitted, scene):
    model = linear_fit.network_
    assert model.abundance_encoder.nonlinear is None and model.pixel_decoder.nonlinear is None
    assert not [name for name, _ in model.named_parameters() if "nonlinear" in name]
    assert np.all(linear_fit.transform(scene.cube)["nonlinearity"] == 0)
    assert fitted.transform(scene.cube)["nonlinearity"].max() > 0  # the full model's is not


def test_without_nonlinearity_the_decoder_is_linear_and_the_penalties_vanish(scene):
    torch.manual_seed(0)
    endmembers, abundances = torch.rand(5, 3, 10) + 0.1, torch.rand(5, 3)
    decoder = PixelDecoder(3, 10, endmember_scale="peak", nonlinear=False)
    torch.testing.assert_close(
        decoder(endmembers, abundances),
        (abundances.unsqueeze(-2) @ equal_peaks(endmembers)).squeeze(-2),
    )
    model = IDNetModel(3, N_BANDS, nonlinear=False).double()
    y, triplets = loss_batch(scene)
    losses = []
    for penalty in (0.0, 5.0):
        config = LossConfig(
            selfsup=1.0, beta=10.0, sparsity=0.0, encoder_penalty=penalty, decoder_penalty=penalty
        )
        torch.manual_seed(1)
        losses.append(training_loss(model, y, triplets, config).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


def test_without_variability_every_pixel_has_the_same_endmembers(fixed_fit, fitted, scene):
    assert fixed_fit.network_.latent_encoders is None
    pixel_endmembers = fixed_fit.unmix(scene).extras["pixel_endmembers"].reshape(-1, 3, N_BANDS)
    np.testing.assert_array_equal(
        pixel_endmembers, np.broadcast_to(pixel_endmembers[0], pixel_endmembers.shape)
    )
    # f(0) over the data scale in float32 (three roundings at most: the scale, its reciprocal,
    # the product) against the same quotient in float64
    np.testing.assert_allclose(pixel_endmembers[0], fixed_fit.endmembers_, rtol=3 * U32)
    full = fitted.unmix(scene).extras["pixel_endmembers"].reshape(-1, 3, N_BANDS)
    assert np.ptp(full, axis=0).max() > 1e-4  # with variability they differ


@pytest.mark.parametrize("estimator", ["fixed_fit", "fitted"])
def test_without_draws_the_uncertainty_is_the_dirichlets_at_the_mean_endmembers(
    request, scene, estimator
):
    # Without variability (fixed_fit) M = f(0); with it and no draws of the codes, M =
    # f(E[Z | y]): either way the standard deviation is the Dirichlet's in closed form.
    # (The linear stream's output: test_linear_output_is_the_dirichlet_of_the_linear_stream_alone.)
    estimator = copy.copy(request.getfixturevalue(estimator))
    estimator.n_uncertainty_samples = 0
    estimator.abundance_output = "posterior"
    pixels = scene.pixels()
    outputs = estimator._transform_pixels(pixels)
    model = estimator.network_
    with torch.no_grad():
        y = torch.as_tensor(pixels * estimator.input_scale_, dtype=torch.float32)
        if model.latent_encoders is None:
            endmembers = model.reference_endmembers().expand(len(y), -1, -1)
        else:
            endmembers = model.endmember_decoders(model.latent_encoders(y)[0])
        alpha, _, _ = model.abundance_encoder(y, endmembers)
    total = alpha.sum(-1, keepdim=True)
    mean = (alpha / total).numpy()
    # The same float32 alpha on both sides; alpha / sum(alpha) is P roundings (the sum's
    # P - 1 and the quotient) from exact on each side, the standard deviation four more
    # (product, c + 1, quotient, square root) from the same means.
    n_endmembers = alpha.shape[-1]
    np.testing.assert_allclose(outputs["abundances"], mean, rtol=2 * n_endmembers * U32)
    np.testing.assert_allclose(
        outputs["uncertainty"], np.sqrt(mean * (1 - mean) / (total.numpy() + 1)), rtol=2 * 4 * U32
    )


def test_without_variability_draws_play_no_part(fixed_fit, scene):
    more_draws = copy.copy(fixed_fit)
    more_draws.n_uncertainty_samples = 9
    pixels = scene.pixels()
    np.testing.assert_array_equal(
        more_draws._transform_pixels(pixels)["uncertainty"],
        fixed_fit._transform_pixels(pixels)["uncertainty"],
    )


def test_without_variability_the_triplets_score_the_bundles_at_z_zero(scene):
    torch.manual_seed(0)
    model = IDNetModel(3, N_BANDS, variability=False).double()
    _, (y_s, m_s, a_s) = loss_batch(scene)
    _, regulariser, alpha = selfsup_terms(model, y_s, m_s, a_s, n_importance=5, beta=10.0)
    log_q_a = td.Dirichlet(alpha).log_prob(smoothed_labels(a_s))
    log_p_m = gaussian_log_density(
        m_s, model.reference_endmembers(), model.endmember_var.unsqueeze(-1), n_axes=2
    )
    torch.testing.assert_close(regulariser, 11.0 * (log_q_a + log_p_m))


@pytest.mark.parametrize("ablation", ["linear_fit", "fixed_fit"])
def test_ablations_survive_save_and_load(request, scene, tmp_path, ablation):
    estimator = request.getfixturevalue(ablation)
    loaded = IDNet.load(estimator.save(tmp_path / "idnet.pt"))
    assert (loaded.nonlinear, loaded.variability) == (estimator.nonlinear, estimator.variability)
    before, after = (model._transform_pixels(scene.pixels()) for model in (estimator, loaded))
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


@pytest.mark.slow
def test_uncertainty_ranks_the_abundance_errors():
    # The variability scene of benchmarks/idnet_quality.py (40 x 40 px, 200 bands, scaling
    # variability 0.3, 30 dB) with its settings: Spearman(standard deviation, absolute
    # error) measured 0.52 to 0.62 over seeds 0 to 4 and 100 to 102; a model whose
    # uncertainty did not rank its errors would score about 0.
    from scipy.stats import spearmanr

    from hyperunmix.metrics import match

    scene = synthetic.make_scene(
        40, 40, 3, abundances="fields", variability=0.3, snr_db=30.0, seed=0
    )
    torch.set_num_threads(1)
    estimator = IDNet(
        3, constraint="simplex", endmember_scale="decoded", endmembers="nfindr", seed=0
    )
    result = estimator.fit_unmix(scene)
    order = match(scene.truth, result).permutation
    error = np.abs(result.abundances[..., order] - scene.truth.abundances)
    uncertainty = result.extras["uncertainty"][..., order]
    assert spearmanr(uncertainty.ravel(), error.ravel())[0] > 0.3


# -- real data (slow) --------------------------------------------------------------------------
# Measured in the benchmark (8 epochs, seeds 0 and 1): Samson aRMSE 0.089 and 0.059, Jasper
# Ridge (the paper's preset) 0.089 and 0.088; VCA + FCLS 0.27 and 0.19.
@pytest.mark.slow
@pytest.mark.parametrize(
    "name,params", [("samson", {}), ("jasper_ridge", {"preset": "jasper_ridge"})]
)
def test_accuracy_on_real_data(data_dir, name, params):
    from hyperunmix import datasets, evaluate, get_method

    scene = datasets.load(name, data_dir)
    p = scene.truth.n_endmembers
    torch.set_num_threads(1)
    idnet = evaluate(IDNet(p, seed=0, epochs=8, **params).fit_unmix(scene), scene.truth)
    vca = evaluate(get_method("vca")(n_endmembers=p, seed=0).fit_unmix(scene), scene.truth)
    assert idnet["armse"] <= 0.11 and idnet["armse"] < vca["armse"]


def test_refined_bundles_centre_on_the_mean_of_the_purest_pixels():
    # 60 noisy pure pixels of each material and 60 mixtures; the reference is one noisy pure
    # pixel per material, as an extractor picks it
    rng = np.random.default_rng(0)
    truth = tiny_scene().truth.endmembers
    shares = np.concatenate([np.repeat(np.eye(3), 60, axis=0), rng.dirichlet(np.ones(3), 60)])
    clean = shares @ truth
    pixels = clean + 0.02 * clean.mean() * rng.standard_normal(clean.shape)
    scene = Scene(pixels.reshape(12, 20, N_BANDS), wavelengths=np.linspace(400, 2400, N_BANDS))
    reference = pixels[[0, 60, 120]]
    bundles = extract_bundles(scene, 3, reference=reference, refine_fraction=0.1, seed=0)
    centres = bundles.spectra[:3]  # the re-estimated reference joins its own bundle
    np.testing.assert_array_equal(bundles.centres(), centres)  # what the decoders centre on
    np.testing.assert_allclose(centres, confident_means(pixels, snnls(pixels, reference), 0.1))
    # the 24 pixels of largest share are pure ones: averaging cuts the one pixel's noise
    assert np.all(sad(truth, centres) < 0.5 * sad(truth, reference))
    # the estimator refines an extractor's reference only, never given endmembers
    model = IDNet(3, endmembers=reference, refine_fraction=0.1, seed=0)
    np.testing.assert_array_equal(model._bundles(scene).spectra[:3], reference)
    extracted = IDNet(3, endmembers="nfindr", refine_fraction=0.1, seed=0)._bundles(scene)
    start = extract_bundles(scene, 3, reference="nfindr", seed=0).spectra[:3]
    np.testing.assert_allclose(
        extracted.spectra[:3], confident_means(pixels, snnls(pixels, start), 0.1)
    )
