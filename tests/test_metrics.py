"""Metrics against hand-computed values, permutation recovery and invariances."""

import json
import math

import numpy as np
import pytest

from hyperunmix import InputError, Result, Truth
from hyperunmix.metrics import (
    ABUNDANCE_RMSE,
    SAD,
    abundance_rmse_matrix,
    armse,
    armse_per_endmember,
    evaluate,
    hungarian,
    match,
    msad,
    reconstruction_rmse,
    sad,
    sad_matrix,
    sre,
)
from hyperunmix.scene import Scene

# Two pixels, three materials: errors are (-0.3, 0.3, 0) and (0, -0.4, 0.4).
A_TRUE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
A_EST = np.array([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4]])


def test_armse_hand_computed():
    # per map: sqrt(0.09/2), sqrt((0.09+0.16)/2), sqrt(0.16/2); overall sqrt(0.5/6)
    np.testing.assert_allclose(
        armse_per_endmember(A_TRUE, A_EST), [math.sqrt(0.045), math.sqrt(0.125), math.sqrt(0.08)]
    )
    assert armse(A_TRUE, A_EST) == pytest.approx(math.sqrt(0.5 / 6))


def test_armse_accepts_images_and_is_symmetric():
    image_true, image_est = A_TRUE.reshape(1, 2, 3), A_EST.reshape(1, 2, 3)
    assert armse(image_true, image_est) == pytest.approx(armse(A_TRUE, A_EST))
    assert armse(A_EST, A_TRUE) == pytest.approx(armse(A_TRUE, A_EST))


def test_sre_hand_computed_and_exact_estimate():
    # |A|_F^2 = 2, |A - A_hat|_F^2 = 0.5
    assert sre(A_TRUE, A_EST) == pytest.approx(10 * math.log10(2 / 0.5))
    assert sre(A_TRUE, A_TRUE) == math.inf


def test_sad_known_angles():
    assert float(sad([1.0, 0.0], [0.0, 2.0])) == pytest.approx(math.pi / 2)
    assert float(sad([1.0, 0.0], [3.0, 3.0])) == pytest.approx(math.pi / 4)
    assert float(sad([1.0, 2.0], [-1.0, -2.0])) == pytest.approx(math.pi)
    assert float(sad([0.3, 0.5, 0.7], [0.3, 0.5, 0.7])) == 0.0


def test_sad_rowwise_and_msad_in_degrees():
    true = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    est = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    np.testing.assert_allclose(sad(true, est), [math.pi / 4, math.pi / 2])
    assert msad(true, est) == pytest.approx(3 * math.pi / 8)


def test_sad_is_scale_invariant_and_nan_for_zero_spectrum():
    rng = np.random.default_rng(0)
    true, est = rng.random((4, 20)), rng.random((4, 20))
    np.testing.assert_allclose(sad(true * 7.0, est * 0.01), sad(true, est), rtol=1e-12)
    assert math.isnan(float(sad([1.0, 2.0], [0.0, 0.0])))


def test_reconstruction_rmse_hand_computed():
    endmembers = np.array([[1.0, 1.0], [1.0, 3.0]])
    abundances = np.array([[0.5, 0.5], [1.0, 0.0]])  # reconstructs (1, 2) and (1, 1)
    pixels = np.array([[1.0, 2.0], [1.0, 2.0]])  # errors 0, 0, 0, 1
    assert reconstruction_rmse(pixels, abundances, endmembers) == pytest.approx(0.5)
    with pytest.raises(InputError, match="pixels"):
        reconstruction_rmse(pixels[:, :1], abundances, endmembers)


def test_pairwise_matrices_hand_computed():
    cost = abundance_rmse_matrix(A_TRUE, A_TRUE[:, [2, 0, 1]])
    np.testing.assert_allclose(np.diag(cost[:, [1, 2, 0]]), 0.0)
    assert cost[0, 0] == pytest.approx(math.sqrt(0.5))  # maps (1, 0) vs (0, 0)
    angles = sad_matrix(np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(angles, [[math.pi / 4, math.pi / 2], [math.pi / 4, 0.0]])


def test_hungarian_finds_the_cheapest_assignment():
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    # greedy would give row 1 -> col 1 (cost 0) and total 6; the optimum is 1 + 2 + 2 = 5
    np.testing.assert_array_equal(hungarian(cost), [1, 0, 2])


def _scene_truth(rng, n_rows=6, n_cols=5, n_end=3, n_bands=8):
    abundances = rng.dirichlet(np.ones(n_end), size=(n_rows, n_cols))
    endmembers = rng.random((n_end, n_bands)) + 0.1
    return Truth(abundances=abundances, endmembers=endmembers, names=["Soil", "Tree", "Water"])


def _result(abundances, endmembers, mask=None):
    return Result(
        abundances=np.asarray(abundances, np.float32),
        endmembers=endmembers,
        method="test",
        mask=mask,
    )


def test_match_recovers_a_permutation():
    rng = np.random.default_rng(1)
    truth = _scene_truth(rng)
    order = np.array([2, 0, 1])  # estimate[:, j] = truth[:, order[j]]
    noisy = truth.abundances[..., order] + 0.01 * rng.standard_normal(truth.abundances.shape)
    found = match(truth, _result(noisy, truth.endmembers[order]))
    assert found.criterion == ABUNDANCE_RMSE
    np.testing.assert_array_equal(found.permutation, np.argsort(order))
    assert found.cost.shape == (3, 3)


def test_match_by_sad_without_true_abundances():
    rng = np.random.default_rng(2)
    truth = _scene_truth(rng)
    order = np.array([1, 2, 0])
    est = _result(rng.dirichlet(np.ones(3), size=(6, 5)), 3.0 * truth.endmembers[order])
    found = match(Truth(endmembers=truth.endmembers, names=truth.names), est)
    assert found.criterion == SAD
    np.testing.assert_array_equal(found.permutation, np.argsort(order))


def test_evaluate_scores_in_truth_order_and_is_json():
    rng = np.random.default_rng(3)
    truth = _scene_truth(rng)
    order = np.array([2, 0, 1])
    error = np.zeros_like(truth.abundances)
    error[..., 0] = 0.1  # only Soil's map is off, by 0.1
    est = truth.abundances + error
    result = _result(est[..., order], 2.0 * truth.endmembers[order])
    metrics = evaluate(result, truth)
    json.dumps(metrics, allow_nan=False)
    assert metrics["matching"] == {
        "criterion": ABUNDANCE_RMSE,
        "permutation": np.argsort(order).tolist(),
    }
    assert metrics["armse_per_endmember"]["Soil"] == pytest.approx(0.1, rel=1e-5)
    assert metrics["armse_per_endmember"]["Tree"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["armse"] == pytest.approx(0.1 / math.sqrt(3), rel=1e-5)
    # endmembers are a scaled copy: the angle (scale invariant) is zero
    assert metrics["msad"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["msad_deg"] == pytest.approx(math.degrees(metrics["msad"]))
    assert set(metrics["sad_per_endmember"]) == {"Soil", "Tree", "Water"}
    assert metrics["sre_db"] == pytest.approx(sre(truth.abundances, est), rel=1e-5)
    assert metrics["n_pixels"] == 30


def test_evaluate_is_invariant_to_the_estimate_order():
    rng = np.random.default_rng(4)
    truth = _scene_truth(rng)
    est_a = truth.abundances + 0.05 * rng.standard_normal(truth.abundances.shape)
    est_e = truth.endmembers + 0.05 * rng.random(truth.endmembers.shape)
    base = evaluate(_result(est_a, est_e), truth)
    order = [1, 2, 0]
    shuffled = evaluate(_result(est_a[..., order], est_e[order]), truth)
    for key in ("armse", "msad", "sre_db"):
        assert shuffled[key] == pytest.approx(base[key], rel=1e-6)
    assert shuffled["armse_per_endmember"] == pytest.approx(base["armse_per_endmember"])


def test_evaluate_ignores_masked_pixels():
    rng = np.random.default_rng(5)
    truth = _scene_truth(rng)
    truth.abundances = truth.abundances.astype(np.float32).astype(np.float64)
    mask = np.ones((6, 5), bool)
    mask[0, :] = False
    est = truth.abundances.copy()
    est[0, :2] = np.nan  # invalid pixels: NaN ...
    est[0, 2:] = 99.0  # ... or garbage
    metrics = evaluate(_result(est, truth.endmembers, mask=mask), truth)
    assert metrics["armse"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["sre_db"] is None  # exact estimate: infinite SRE
    assert metrics["n_pixels"] == 25


def test_evaluate_reconstruction_rmse_with_scene():
    rng = np.random.default_rng(6)
    truth = _scene_truth(rng)
    cube = truth.abundances @ truth.endmembers
    scene = Scene(cube, truth=truth)
    exact = evaluate(_result(truth.abundances, truth.endmembers), truth, scene=scene)
    assert exact["reconstruction_rmse"] == pytest.approx(0.0, abs=1e-6)
    no_endmembers = evaluate(_result(truth.abundances, None), truth, scene=scene)
    assert no_endmembers["reconstruction_rmse"] is None
    assert no_endmembers["msad"] is None
    assert "reconstruction_rmse" not in evaluate(_result(truth.abundances, None), truth)


def test_evaluate_rejects_a_different_number_of_endmembers():
    rng = np.random.default_rng(7)
    truth = _scene_truth(rng)
    result = _result(truth.abundances[..., :2], truth.endmembers[:2])
    with pytest.raises(InputError, match="2 endmembers but the truth has 3"):
        evaluate(result, truth)


def test_evaluate_needs_something_to_match():
    result = _result(np.full((2, 2, 2), 0.5), None)
    with pytest.raises(InputError, match="cannot match"):
        evaluate(result, Truth(endmembers=np.eye(2)))
    with pytest.raises(InputError, match="no ground truth"):
        evaluate(result, None)  # e.g. scene.truth of a file without truth


def test_unnamed_truth_gets_numbered_names():
    rng = np.random.default_rng(8)
    truth = _scene_truth(rng)
    truth.names = None
    metrics = evaluate(_result(truth.abundances, truth.endmembers), truth)
    assert list(metrics["armse_per_endmember"]) == ["endmember_1", "endmember_2", "endmember_3"]


def test_a_zero_estimated_spectrum_is_matched_last_and_reported_as_none():
    truth = Truth(endmembers=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), names=["a", "b"])
    est = _result(np.full((2, 2, 2), 0.5), np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.1]]))
    metrics = evaluate(est, truth)
    assert metrics["matching"]["permutation"] == [0, 1]
    assert metrics["sad_per_endmember"]["a"] is None
    assert metrics["msad"] is None
    json.dumps(metrics, allow_nan=False)
