"""Classical estimators: the contract (fit / unmix / masks / params), endmember sources,
registry names, and accuracy on real data."""

import numpy as np
import pytest

import hyperunmix as hu
from hyperunmix import Scene
from hyperunmix.datasets import load
from hyperunmix.errors import InputError, NotFittedError
from hyperunmix.linear import fcls, nnls
from hyperunmix.linear.estimators import FCLS, NFINDR, VCA, SUnSAL, resolve_endmembers
from hyperunmix.metrics import evaluate


def planted_cube(n_endmembers=3, side=40, n_bands=50, snr_db=40.0, seed=0):
    """An (side, side, L) cube of Dirichlet mixtures with one pure pixel per endmember,
    white noise at ``snr_db``, one NaN pixel at (0, 0); and the endmembers."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, n_bands)
    E = 0.2 + np.array(
        [
            np.cos(np.pi * (f * grid + phase)) ** 2
            for f, phase in rng.random((n_endmembers, 2)) * [2, 1]
        ]
    )
    A = rng.dirichlet(np.ones(n_endmembers), side * side)
    A[1 : n_endmembers + 1] = np.eye(n_endmembers)
    X = A @ E
    Y = X + np.sqrt(np.mean(X**2) / 10 ** (snr_db / 10)) * rng.standard_normal(X.shape)
    cube = Y.reshape(side, side, n_bands)
    cube[0, 0] = np.nan
    truth = hu.Truth(abundances=A.reshape(side, side, n_endmembers), endmembers=E)
    return Scene(cube, truth=truth), E


@pytest.mark.parametrize("name", ["fcls", "nnls", "ls", "sunsal", "vca", "nfindr", "atgp"])
def test_registered_methods_unmix_a_scene(name):
    scene, _ = planted_cube()
    model = hu.make_method(name, n_endmembers=3, seed=0)
    result = model.fit_unmix(scene)
    assert result.abundances.shape == (40, 40, 3)
    assert result.endmembers.shape == (3, 50)
    assert np.all(np.isnan(result.abundances[0, 0]))
    assert np.all(np.isfinite(result.abundances[scene.mask]))
    assert model.n_bands_ == 50
    assert result.method == name
    assert evaluate(result, scene.truth)["armse"] < 0.05  # pure pixels present, 40 dB


def test_given_endmembers_array_and_file_give_the_function_result(tmp_path):
    scene, E = planted_cube(seed=1)
    expected = fcls(scene.cube, E)
    np.save(tmp_path / "E.npy", E)
    for source in (E, tmp_path / "E.npy", str(tmp_path / "E.npy")):
        result = FCLS(endmembers=source).fit_unmix(scene)
        np.testing.assert_allclose(result.abundances, expected, atol=1e-6)  # float32 maps
        np.testing.assert_array_equal(result.endmembers, E)


def test_csv_endmembers_with_wrong_wavelengths_are_rejected(tmp_path):
    cube, E = planted_cube(seed=2)
    scene = Scene(cube.cube, np.linspace(400, 900, 50))
    hu.io.write_endmembers_csv(tmp_path / "E.csv", E, wavelengths=np.linspace(400, 2500, 50))
    with pytest.raises(InputError, match="wavelengths"):
        FCLS(endmembers=tmp_path / "E.csv").fit(scene)
    hu.io.write_endmembers_csv(tmp_path / "ok.csv", E, wavelengths=scene.wavelengths)
    assert FCLS(endmembers=tmp_path / "ok.csv").fit(scene).endmembers_.shape == (3, 50)


def test_missing_n_endmembers_uses_hysime():
    scene, _ = planted_cube(n_endmembers=4, side=50, seed=3)
    assert VCA(seed=0).fit(scene).endmembers_.shape == (4, 50)
    assert FCLS(endmembers="atgp").fit(scene).endmembers_.shape == (4, 50)


def test_endmember_sources_are_checked():
    scene, E = planted_cube(seed=4)
    with pytest.raises(InputError, match="bands"):
        resolve_endmembers(E[:, :-1], scene)
    with pytest.raises(InputError, match="n_endmembers = 4"):
        resolve_endmembers(E, scene, n_endmembers=4)
    with pytest.raises(InputError, match="no endmembers"):
        resolve_endmembers(None, scene)
    with pytest.raises(InputError, match="neither a file nor one of vca"):
        resolve_endmembers("vcaa", scene)
    with pytest.raises(
        InputError, match="n_endmembers = 1 is not allowed; it must be an integer >= 2"
    ):
        VCA(n_endmembers=1).fit(scene)
    with pytest.raises(InputError, match="Scene"):
        FCLS(endmembers=E).fit(scene.cube)


def test_same_seed_same_endmembers_and_params_are_kept():
    scene, _ = planted_cube(seed=5, snr_db=25.0)
    first = NFINDR(n_endmembers=3, seed=7).fit(scene).endmembers_
    np.testing.assert_array_equal(first, NFINDR(n_endmembers=3, seed=7).fit(scene).endmembers_)
    model = SUnSAL(endmembers="vca", lam=0.1, asc=True)
    assert model.get_params()["lam"] == 0.1 and model.get_params()["asc"] is True
    assert VCA(n_endmembers=3, seed=2).get_params() == {"n_endmembers": 3, "seed": 2}


def test_unmix_before_fit_and_band_mismatch():
    scene, E = planted_cube(seed=6)
    with pytest.raises(NotFittedError):
        FCLS(endmembers=E).unmix(scene)
    model = FCLS(endmembers=E).fit(scene)
    with pytest.raises(InputError, match="bands"):
        model.transform(scene.cube[:, :, :-1])


def test_nnls_estimator_matches_function():
    scene, E = planted_cube(seed=8)
    result = hu.make_method("nnls", endmembers=E).fit_unmix(scene)
    np.testing.assert_allclose(result.abundances, nnls(scene.cube, E), atol=1e-6)


def test_vca_fcls_on_samson_is_sensible(data_dir):
    scene = load("samson", data_dir)
    model = VCA(n_endmembers=3, seed=0)
    result = model.fit_unmix(scene)
    metrics = evaluate(result, scene.truth)
    # FCLS on the mean truth-pure pixels themselves reaches aRMSE 0.21 (the scene is not
    # exactly linear); a uniform guess scores 0.38.
    assert metrics["armse"] < 0.30
    assert metrics["msad"] < 0.10
    # VCA returns nearly pure image pixels
    pure = scene.truth.abundances[scene.mask]
    rows = [np.flatnonzero(np.all(scene.pixels() == e, axis=1))[0] for e in model.endmembers_]
    assert np.all(pure[rows].max(axis=1) > 0.9)
