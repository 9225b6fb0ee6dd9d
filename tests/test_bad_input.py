"""Bad input across the methods: one faulty pixel, degenerate scenes and endmembers, bad
parameters. Each gets a clear InputError, or is handled and reported by a warning; never a
deep traceback or a silently wrong map."""

import re
import warnings

import numpy as np
import pytest
import torch
from test_fixed_point import one_thread  # noqa: F401  (autouse: one torch thread)

import hyperunmix as hu
from hyperunmix import Scene
from hyperunmix.deep.deq import DEQUnmix, check_simplex
from hyperunmix.deep.simplex import project_simplex
from hyperunmix.errors import ConvergenceWarning, InputError, ScalingWarning
from hyperunmix.linear import atgp, fcls, nfindr, sunsal, vca
from hyperunmix.linear.estimators import FCLS, VCA
from hyperunmix.synthetic import make_scene


def faulty_scene(fault: str) -> Scene:
    """The reporter's scene: 10 x 10 px, 3 endmembers, with one fault."""
    scene = make_scene(10, 10, 3, seed=0)
    if fault == "zero pixel":
        scene.cube[3, 3] = 0
    elif fault == "negated pixel":
        scene.cube[3, 3] *= -1
    elif fault == "bool cube":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScalingWarning)  # digital numbers, unscaled
            return Scene(scene.cube > np.median(scene.cube))
    return scene


@pytest.mark.parametrize("method", ["egunet", "idnet"])
def test_shares_of_an_extracted_black_pixel_are_refused_with_the_cause(method):
    """N-FINDR picks the zero pixel of this scene as an endmember: a unit-peak reference (the
    shares convention of EGU-Net and ID-Net) cannot be made from it, and the error says
    which endmember, why, and what to do."""
    scene = faulty_scene("zero pixel")
    assert (nfindr(scene.pixels(), 3, seed=0).max(axis=1) <= 0).any()
    with pytest.raises(InputError, match=r"endmember\(s\) \d have none.*no-data"):
        hu.make_method(method, n_endmembers=3, epochs=1, seed=0).fit(scene)


# -- DEQ-Unmix: a zero, negated or bool pixel; degenerate endmembers -----------------------
@pytest.mark.parametrize("data_term", ["scaled", "linear"])
@pytest.mark.parametrize("fault", ["zero pixel", "negated pixel", "bool cube"])
def test_deq_unmixes_a_scene_with_a_pixel_without_brightness(fault, data_term):
    scene = faulty_scene(fault)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # rightly raised: no shares, zeros
        warnings.simplefilter("error", RuntimeWarning)  # a 0 / 0 on the way fails
        result = DEQUnmix(3, epochs=2, data_term=data_term, seed=0).fit_unmix(scene)
    abundances = result.abundances[scene.mask]
    assert np.all(np.isfinite(abundances)) and abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(axis=1), 1, atol=1e-5)
    if data_term == "scaled" and fault != "bool cube":
        # Best fitted by a zero brightness whatever its abundances: no shares, 1/P each.
        np.testing.assert_allclose(result.abundances[3, 3], 1 / 3, atol=1e-6)


def test_deq_pixel_without_brightness_leaves_the_equilibrium_solvable():
    """A dark pixel's abundances are a constant of the iteration: the transform still
    converges, and every other pixel barely moves (context through the 3x3 layer only)."""
    scene = make_scene(10, 10, 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        # N-FINDR's spectra as extracted: from the re-estimated start (refine_fraction) the
        # gradient form of the scaled data term, which contracts by only about
        # 1 - lambda_min / lambda_max of E E^T, ends 100 iterations at 2e-6 > tol here.
        model = DEQUnmix(3, epochs=2, data_term="scaled", refine_fraction=None, seed=0)
        model.fit(scene)
        clean = model.transform(scene.cube)["abundances"]
        cube = scene.cube.copy()
        cube[3, 3] = 0
        dark = model.transform(cube)["abundances"]
    np.testing.assert_allclose(dark[3, 3], 1 / 3, atol=1e-6)
    others = np.ones((10, 10), bool)
    others[3, 3] = False
    assert np.abs(dark[others] - clean[others]).max() < 0.05


def test_deq_all_negative_cube_gets_a_clear_error():
    scene = make_scene(10, 10, 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # the values are negative
        negative = Scene(-scene.cube)
    with pytest.raises(
        InputError,
        match=r"endmembers 0 = 1 = 2 have the same spectral "
        r"shape .*no positive value",
    ):
        DEQUnmix(3, epochs=2, seed=0).fit(negative)


@pytest.mark.parametrize("data_term", ["scaled", "linear"])
def test_deq_duplicated_or_proportional_endmembers_are_named(data_term):
    scene = make_scene(10, 10, 3, seed=0)
    E = scene.truth.endmembers
    for start in (np.stack([E[0], E[1], E[0]]), np.stack([E[0], E[1], 2 * E[0]])):
        with pytest.raises(InputError, match="endmembers 0 = 2 have the same spectral shape"):
            DEQUnmix(3, epochs=2, data_term=data_term, endmembers=start, seed=0).fit(scene)


def test_flat_endmember_simplex_is_refused_by_name():
    """Four distinct shapes on one circle of the unit sphere: no pair alike, no volume."""
    on_circle = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [2 / 3, 2 / 3, -1 / 3]])
    with pytest.raises(InputError, match="shapes span a flat simplex"):
        check_simplex(on_circle)
    check_simplex(on_circle[:3])  # a triangle has an area


def test_simplex_projection_refuses_non_finite_vectors():
    values = torch.tensor(
        [[0.2, 0.5, 0.1], [0.2, float("nan"), 0.5], [float("inf"), 0, 0], [-float("inf")] * 3]
    )
    with pytest.raises(InputError, match="3 vector"):
        project_simplex(values)
    # -inf entries are fine: they project to zero.
    partly = torch.tensor([[0.2, 0.5, -float("inf")]])
    torch.testing.assert_close(project_simplex(partly), torch.tensor([[0.35, 0.65, 0.0]]))


# -- n_endmembers --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [2.9, 3.0, True, "3"])
def test_n_endmembers_must_be_an_integer(bad):
    scene = make_scene(10, 10, 3, seed=0)
    for model in (
        VCA(n_endmembers=bad),
        FCLS(n_endmembers=bad, endmembers="nfindr"),
        DEQUnmix(bad, epochs=1),
    ):
        message = f"n_endmembers = {re.escape(repr(bad))} is not allowed; it must be an integer"
        with pytest.raises(InputError, match=message):
            model.fit(scene)
    with pytest.raises(InputError, match="integer"):
        nfindr(scene.pixels(), bad)


def test_n_endmembers_is_not_truncated_against_given_endmembers():
    scene = make_scene(10, 10, 3, seed=0)
    with pytest.raises(InputError, match=r"n_endmembers = 2.9 is not allowed"):
        FCLS(n_endmembers=2.9, endmembers=scene.truth.endmembers[:2]).fit(scene)


# -- degenerate scenes ---------------------------------------------------------------------
def constant_cube(value: float) -> np.ndarray:
    scene = make_scene(10, 10, 3, seed=0)
    return np.full(scene.cube.shape, value, dtype=np.float32)


@pytest.mark.parametrize("extract", [vca, atgp])
def test_constant_scene_gives_a_warning_naming_the_duplicated_endmembers(extract):
    with pytest.warns(ScalingWarning, match="endmembers 0 = 1 = 2 are the same spectrum"):
        extract(constant_cube(0.3), 3)


def test_endmembers_spanning_too_few_dimensions_are_reported():
    """N-FINDR on mixtures of 3 spectra (a triangle) asked for 4: a flat tetrahedron."""
    rng = np.random.default_rng(0)
    Y = rng.dirichlet(np.ones(3), 500) @ rng.random((3, 20))
    with pytest.warns(ScalingWarning, match=r"span 2 dimension.* needs 3"):
        nfindr(Y, 4)


def test_fcls_and_vca_warn_on_a_constant_scene():
    with pytest.warns(ScalingWarning, match="degenerate"):
        result = hu.make_method("vca", n_endmembers=3, seed=0).fit_unmix(Scene(constant_cube(0.3)))
    np.testing.assert_allclose(result.abundances, 1 / 3, atol=1e-6)  # arbitrary: warned


def test_all_zero_pixels_are_reported_by_fcls_and_sunsal():
    scene = make_scene(10, 10, 3, seed=0)
    cube = scene.cube.copy()
    cube[:2] = 0
    with pytest.warns(ScalingWarning, match=r"20 pixel.* zero in every band"):
        fcls(cube, scene.truth.endmembers)
    with pytest.warns(ScalingWarning, match=r"100 pixel.* zero in every band: their SUnSAL"):
        sunsal(constant_cube(0.0), scene.truth.endmembers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero pixel, no warning
        fcls(scene.cube, scene.truth.endmembers)


# -- the estimator contract ----------------------------------------------------------------
def test_transform_and_unmix_check_their_input():
    scene = make_scene(10, 10, 3, seed=0)
    model = FCLS(endmembers=scene.truth.endmembers).fit(scene)
    with pytest.raises(InputError, match=r"the mask has shape \(5, 5\), the block \(10, 10\)"):
        model.transform(scene.cube, np.ones((5, 5), bool))
    with pytest.raises(InputError, match=r"numeric \(h, w, L\) block"):
        model.transform(scene.cube[0])
    with pytest.raises(InputError, match=r"numeric \(h, w, L\) block"):
        model.transform(scene.cube.astype(str))
    with pytest.raises(InputError, match="unmix expects a Scene"):
        model.unmix(scene.cube)
    # A 0 / 1 mask is a mask, and a non-finite pixel it marks valid is still masked.
    cube = scene.cube.copy()
    cube[0, 0, 0] = np.nan
    abundances = model.transform(cube, np.ones((10, 10)))["abundances"]
    assert np.all(np.isnan(abundances[0, 0])) and np.all(np.isfinite(abundances[1:]))


def test_deq_pixel_without_brightness_does_not_dim_the_endmembers():
    """The scaled model's endmembers are scaled to the abundance-weighted brightness of the
    pixels: a zero pixel (no shares, 1/P as a placeholder) must count as absent, not dark.
    Without the correction pixels do not interact, so masking it must change nothing."""
    scene = faulty_scene("zero pixel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)
        model = DEQUnmix(3, epochs=2, data_term="scaled", correction=False, seed=0).fit(scene)
        masked = scene.mask.copy()
        masked[3, 3] = False
        spectra = [
            model._spectra_in_scene_units(*model._image_tensors(scene.cube, mask))
            for mask in (scene.mask, masked)
        ]
    np.testing.assert_allclose(spectra[0], spectra[1], rtol=1e-9)
