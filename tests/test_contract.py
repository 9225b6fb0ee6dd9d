"""One contract for every registered method (after scikit-learn's estimator checks).

Each method is run with a tiny budget on a small synthetic scene: what is checked is the
contract (errors, parameters, persistence, random state, repeatability), not accuracy.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from test_fixed_point import one_thread  # noqa: F401  (autouse: one torch thread)

import hyperunmix as hu
from hyperunmix.base import Unmixer, clone
from hyperunmix.errors import InputError, NotFittedError
from hyperunmix.synthetic import make_scene

#: Budgets that make each method fit in well under a second on the scene below.
TINY = {
    "egunet": {"epochs": 2, "batch_size": 64},
    "deq": {"epochs": 2, "max_iter": 20},
    "idnet": {"epochs": 1, "batch_size": 64, "n_uncertainty_samples": 2},
}
METHODS = hu.available_methods()
#: Values tried, in order, for a value that a parameter's rules refuse.
UNLIKELY = ["no-such-option", -1, 2.5, True, None, object()]


@pytest.fixture(scope="module")
def scene():
    return make_scene(12, 12, 3, seed=5)


def build(name: str, **params) -> Unmixer:
    return hu.get_method(name)(**{"n_endmembers": 3, "seed": 0, **TINY.get(name, {}), **params})


def fitted_maps(model: Unmixer, scene) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny budgets miss tolerances, warn of it
        result = model.fit_unmix(scene)
    return {"abundances": result.abundances, **result.extras}


def assert_same_maps(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.mark.parametrize("name", METHODS)
def test_every_parameter_has_rules(name):
    method = hu.get_method(name)
    assert set(method._parameter_rules) == set(method._param_names())


@pytest.mark.parametrize("name", METHODS)
def test_unfitted_use_raises_not_fitted(name, scene):
    with pytest.raises(NotFittedError):
        build(name).unmix(scene)
    with pytest.raises(NotFittedError):
        build(name).transform(scene.cube)


@pytest.mark.parametrize("name", METHODS)
def test_fit_returns_self_and_fewer_bands_are_refused(name, scene):
    model = build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model.fit(scene) is model
    with pytest.raises(InputError, match="bands"):
        model.transform(scene.cube[..., :-1])


@pytest.mark.parametrize("name", METHODS)
def test_get_params_rebuilds_the_estimator(name):
    model = build(name)
    params = model.get_params()
    rebuilt = type(model)(**params)
    assert rebuilt.get_params() == params
    copy = clone(model)
    assert type(copy) is type(model) and copy.get_params() == params


def test_clone_copies_array_parameters(scene):
    endmembers = scene.truth.endmembers.copy()
    model = hu.make_method("fcls", endmembers=endmembers)
    copy = clone(model)
    assert copy.endmembers is not endmembers
    np.testing.assert_array_equal(copy.endmembers, endmembers)


@pytest.mark.parametrize("name", METHODS)
def test_each_declared_rule_refuses_a_bad_value(name, scene):
    method = hu.get_method(name)
    for parameter, rules in method._parameter_rules.items():
        examples = [rule.invalid_example() for rule in rules] + UNLIKELY
        refused = [value for value in examples if not any(rule.admits(value) for rule in rules)]
        assert refused, f"{name}.{parameter} admits any value"
        bad = refused[0]
        with pytest.raises(InputError, match=f"{parameter} = .* is not allowed"):
            build(name, **{parameter: bad}).fit(scene)
        with pytest.raises(InputError, match=f"{parameter} = .* is not allowed"):
            hu.make_method(name, **{parameter: bad})


@pytest.mark.parametrize("name", METHODS)
def test_fitting_leaves_the_global_random_state_alone(name, scene):
    random.seed(11)
    np.random.seed(11)  # noqa: NPY002 (the global state is what is checked)
    torch.manual_seed(11)
    before = (random.getstate(), np.random.get_state(), torch.get_rng_state())  # noqa: NPY002
    fitted_maps(build(name), scene)
    after = (random.getstate(), np.random.get_state(), torch.get_rng_state())  # noqa: NPY002
    assert after[0] == before[0]
    for got, expected in zip(after[1], before[1]):
        np.testing.assert_array_equal(got, expected)
    assert torch.equal(after[2], before[2])


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_maps(name, scene):
    assert_same_maps(fitted_maps(build(name), scene), fitted_maps(build(name), scene))


@pytest.mark.parametrize("name", [n for n in METHODS if hasattr(hu.get_method(n), "save")])
def test_save_then_load_gives_the_same_maps(name, scene, tmp_path):
    model = build(name)
    maps = fitted_maps(model, scene)
    loaded = type(model).load(model.save(tmp_path / f"{name}.pt"))
    assert loaded.get_params() == model.get_params()
    result = loaded.unmix(scene)
    assert_same_maps(maps, {"abundances": result.abundances, **result.extras})


def test_an_array_start_survives_a_checkpoint(scene, tmp_path):
    start = scene.truth.endmembers * 1.01
    model = build("deq", endmembers=start)
    fitted_maps(model, scene)
    loaded = type(model).load(model.save(tmp_path / "deq.pt"))
    np.testing.assert_array_equal(loaded.endmembers, start)


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("idnet", "max_epochs", "epochs"),
        ("idnet", "reference", "endmembers"),
        ("deq", "lr", "learning_rate"),
        ("idnet", "tol", "min_delta"),
    ],
)
def test_old_parameter_names_still_work_with_a_warning(name, old, new):
    with pytest.warns(DeprecationWarning, match=f"{old} is now called {new}"):
        model = hu.get_method(name)(**{old: 1})
    assert getattr(model, new) == 1 and old not in model.get_params()
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        hu.get_method(name)(epoch=1)


@pytest.mark.parametrize("name", ["egunet", "deq", "idnet"])
def test_a_time_budget_stops_training_with_a_warning(name, scene):
    model = build(name, epochs=3, max_seconds=1e-9)  # spent by the first epoch
    with pytest.warns(hu.ConvergenceWarning, match="stopped training after epoch 1 of 3"):
        model.fit(scene)
    assert [record["epoch"] for record in model.history_] == [1]
    assert model.unmix(scene).abundances.shape[:2] == scene.cube.shape[:2]


@pytest.mark.parametrize("name", ["egunet", "deq", "idnet"])
def test_a_loss_plateau_stops_training_and_the_model_says_when_and_why(name, scene, tmp_path):
    reports: list = []
    # A huge min_delta: any two windows of one epoch are a plateau, found at epoch 2.
    model = build(name, epochs=5, patience=1, min_delta=1e9)
    model.set_progress(lambda *report: reports.append(report))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny budgets miss solver tolerances
        model.fit(scene)
    assert (model.n_epochs_, model.stop_reason_) == (2, "plateau")
    assert [record["epoch"] for record in model.history_] == [1, 2]
    epochs = [(done, total, info) for stage, done, total, info in reports if stage == "epoch"]
    assert [(done, total) for done, total, _ in epochs] == [(1, 5), (2, 5)]
    assert epochs[-1][2]["stop"] == "plateau" and "stop" not in epochs[0][2]
    loaded = type(model).load(model.save(tmp_path / "model.pt"))
    assert (loaded.n_epochs_, loaded.stop_reason_) == (2, "plateau")
    full = build(name, epochs=3, patience=1, min_delta=1e9, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full.fit(scene)
    assert (full.n_epochs_, full.stop_reason_) == (3, "epochs")
