"""Abundance conventions: conversion formulas, snnls, and scoring in the truth's convention."""

import dataclasses

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from hyperunmix import Result, Truth, datasets, make_method
from hyperunmix.conventions import (
    convert,
    convert_maps,
    convert_std,
    endmember_peaks,
    normalise_rows,
    unit_peak,
)
from hyperunmix.errors import InputError, ScalingWarning
from hyperunmix.linear import fcls, snnls
from hyperunmix.metrics import armse, evaluate
from hyperunmix.synthetic import make_scene


@pytest.fixture
def mixture():
    """Random simplex abundances (200, 4) and positive endmembers (4, 30) of unequal peaks."""
    rng = np.random.default_rng(3)
    endmembers = rng.random((4, 30)) * np.array([[0.2], [1.0], [0.05], [0.6]]) + 1e-3
    return rng.dirichlet(np.full(4, 0.7), size=200), endmembers


def test_absolute_to_shares_and_back_is_the_identity(mixture):
    abundances, endmembers = mixture
    shares = convert(abundances, endmembers, "absolute", "shares")
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-12)
    assert np.abs(shares - abundances).max() > 0.1  # the peaks differ: a real change
    back = convert(shares, endmembers, "shares", "absolute")
    np.testing.assert_allclose(back, abundances, rtol=0, atol=1e-12)


def test_shares_of_an_exact_mixture_are_what_snnls_finds_whatever_the_brightness(mixture):
    abundances, endmembers = mixture
    brightness = np.random.default_rng(4).uniform(0.3, 2.0, size=(len(abundances), 1))
    pixels = brightness * (abundances @ endmembers)
    expected = convert(abundances, endmembers, "absolute", "shares")
    np.testing.assert_allclose(snnls(pixels, endmembers), expected, atol=1e-9)


def test_snnls_equals_an_independent_normalised_nnls(mixture):
    abundances, endmembers = mixture
    rng = np.random.default_rng(5)
    pixels = abundances @ endmembers + 0.01 * rng.standard_normal((len(abundances), 30))
    unit = endmembers / endmembers.max(axis=1, keepdims=True)
    reference = np.array([scipy_nnls(unit.T, y)[0] for y in pixels])
    reference /= reference.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(snnls(pixels, endmembers), reference, rtol=0, atol=1e-8)


def test_snnls_masks_non_finite_pixels_and_warns_on_pixels_it_cannot_explain(mixture):
    _, endmembers = mixture
    pixels = np.vstack([endmembers[1], np.full(30, np.nan), np.zeros(30)])
    with pytest.warns(ScalingWarning, match="1 pixel"):
        shares = snnls(pixels, endmembers)
    np.testing.assert_allclose(shares[0], [0, 1, 0, 0], atol=1e-12)
    assert np.isnan(shares[1]).all()
    np.testing.assert_allclose(shares[2], 0.25)


def test_normalise_rows_and_peaks_edge_cases():
    rows = normalise_rows([[1.0, 3.0], [0.0, 0.0], [np.nan, 1.0]])
    np.testing.assert_array_equal(rows[:2], [[0.25, 0.75], [0.5, 0.5]])
    assert np.isnan(rows[2]).all()
    with pytest.raises(InputError, match="positive finite peak"):
        endmember_peaks([[1.0, 2.0], [0.0, -1.0]])
    np.testing.assert_array_equal(unit_peak([[1.0, 4.0]]), [[0.25, 1.0]])


def test_uncertainty_follows_the_conversion_to_first_order(mixture):
    abundances, endmembers = mixture
    a, std = abundances[7], np.array([0.01, 0.03, 0.02, 0.005])
    converted_std = convert_std(std, a, endmembers, "absolute", "shares")
    step = 1e-7  # central differences: error O(step^2), round-off O(1e-16 / step)
    jacobian = np.stack(
        [
            (
                convert(a + step * e, endmembers, "absolute", "shares")
                - convert(a - step * e, endmembers, "absolute", "shares")
            )
            / (2 * step)
            for e in np.eye(4)
        ],
        axis=1,
    )
    np.testing.assert_allclose(converted_std, np.sqrt((jacobian**2) @ std**2), rtol=1e-6)


def test_a_result_converts_with_its_maps_and_keeps_the_rest(mixture):
    abundances, endmembers = mixture
    image = abundances.reshape(10, 20, 4).astype(np.float32)
    result = Result(
        abundances=image,
        endmembers=endmembers,
        method="x",
        extras={
            "uncertainty": np.full_like(image, 0.01),
            "nonlinearity": np.zeros((10, 20), np.float32),
        },
    )
    assert result.in_convention("absolute") is result
    shares = result.in_convention("shares")
    assert shares.convention == "shares" and shares.abundances.dtype == np.float32
    np.testing.assert_allclose(
        shares.abundances.reshape(-1, 4),
        convert(abundances, endmembers, "absolute", "shares"),
        atol=1e-6,
    )
    assert not np.allclose(shares.extras["uncertainty"], 0.01)
    assert shares.extras["nonlinearity"] is result.extras["nonlinearity"]
    np.testing.assert_allclose(shares.in_convention("absolute").abundances, image, atol=1e-6)
    with pytest.raises(InputError, match="no endmembers"):
        dataclasses.replace(result, endmembers=None).in_convention("shares")
    with pytest.raises(InputError, match="convention"):
        result.in_convention("fractions")
    assert (
        convert_maps({"abundances": image}, endmembers, "shares", "shares")["abundances"] is image
    )


def test_evaluate_scores_in_the_truths_convention_and_says_so():
    scene = make_scene(12, 12, 3, snr_db=None, seed=1)
    truth = scene.truth
    exact_shares = convert(truth.abundances, truth.endmembers, "absolute", "shares")
    result = Result(
        abundances=exact_shares.astype(np.float32),
        endmembers=truth.endmembers,
        method="x",
        convention="shares",
        mask=scene.mask,
    )
    metrics = evaluate(result, truth)
    assert metrics["convention"] == "absolute" and metrics["result_convention"] == "shares"
    assert metrics["armse"] < 1e-6  # converted back through the same endmembers
    shares_truth = evaluate(result, truth, convention="shares")
    assert shares_truth["convention"] == "shares" and shares_truth["armse"] < 1e-6
    as_if_absolute = dataclasses.replace(result, convention="absolute")
    assert evaluate(as_if_absolute, truth)["armse"] == pytest.approx(
        armse(truth.abundances.reshape(-1, 3), exact_shares.reshape(-1, 3))
    )


def test_evaluate_refuses_to_convert_a_truth_known_in_shape_only():
    scene = make_scene(8, 8, 3, seed=2)
    truth = dataclasses.replace(scene.truth, convention="shares", endmember_scale="shape")
    result = make_method("fcls", endmembers=scene.truth.endmembers).fit_unmix(scene)
    with pytest.raises(InputError, match="cannot be converted"):
        evaluate(result, truth, convention="absolute")


def test_reconstruction_uses_the_results_own_mixing_model():
    scene = make_scene(10, 10, 3, snr_db=None, variability=0.0, seed=4)
    endmembers = scene.truth.endmembers
    for method in ("fcls", "snnls"):
        result = make_method(method, endmembers=endmembers).fit_unmix(scene)
        assert evaluate(result, scene.truth, scene)["reconstruction_rmse"] < 1e-5, method


def test_each_solver_declares_its_convention():
    assert make_method("fcls").convention == "absolute"
    assert make_method("nfindr").convention == "absolute"
    assert make_method("snnls").convention == "shares"


def test_truth_rejects_an_unknown_convention():
    from hyperunmix import Scene

    with pytest.raises(InputError, match="convention"):
        Scene(
            np.ones((2, 2, 3)),
            truth=Truth(abundances=np.full((2, 2, 2), 0.5), convention="relative"),
        )


@pytest.mark.parametrize("name", ["samson", "jasper_ridge"])
def test_named_datasets_declare_shares_which_their_own_spectra_reproduce(name, data_dir):
    scene = datasets.load(name, data_dir)
    truth, pixels = scene.truth, scene.pixels()
    true_a = truth.abundances[scene.mask]
    assert truth.convention == "shares"
    # The evidence for the declaration (README, "Abundance conventions"): normalised NNLS on
    # the reference spectra reproduces the maps, FCLS on the same spectra does not.
    assert armse(true_a, snnls(pixels, truth.endmembers)) < 0.01
    assert armse(true_a, fcls(pixels, truth.endmembers)) > 0.05


def test_an_npz_scene_keeps_its_truths_convention(tmp_path):
    from hyperunmix.io import open_scene, write_scene

    scene = make_scene(6, 5, 3, seed=0)
    scene.truth = dataclasses.replace(scene.truth, convention="shares")
    write_scene(tmp_path / "scene.npz", scene)
    assert open_scene(tmp_path / "scene.npz").truth.convention == "shares"
