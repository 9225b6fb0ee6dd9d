"""Synthetic scenes: abundance constraints, mixing formulas, noise level, variability,
reproducibility, endmember choice, and the analytic / USGS libraries."""

import numpy as np
import pytest

from hyperunmix import mixing
from hyperunmix.datasets import load_abundance_maps, load_library
from hyperunmix.errors import InputError
from hyperunmix.metrics import sad_matrix
from hyperunmix.spectra import analytic_library, resample
from hyperunmix.synthetic import cap_purity, make_scene


def check_simplex(abundances):
    assert abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(axis=-1), 1.0, atol=1e-12)


def noiseless_pixels(scene):
    """(N, L) mixtures of the scene's truth under linear mixing."""
    p = scene.truth.n_endmembers
    return scene.truth.abundances.reshape(-1, p) @ scene.truth.endmembers


# -- the default scene ---------------------------------------------------------------------
def test_default_scene_needs_no_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(tmp_path))  # an empty data directory
    scene = make_scene()
    assert scene.cube.shape == (64, 64, 200)
    assert scene.cube.dtype == np.float32
    np.testing.assert_allclose(scene.wavelengths[[0, -1]], [400.0, 2500.0])
    assert scene.truth.abundances.shape == (64, 64, 4)
    assert scene.truth.endmembers.shape == (4, 200)
    assert len(set(scene.truth.names)) == 4
    assert scene.truth.pixel_endmembers is None and scene.truth.extras == {}


def test_analytic_spectra_are_plausible_reflectances():
    library = analytic_library()
    assert library.spectra.min() > 0 and library.spectra.max() < 1.05
    wavelengths = library.wavelengths
    vegetation, water = library.material("Vegetation")[0], library.material("Water")[0]
    red, nir = np.abs(wavelengths - 670).argmin(), np.abs(wavelengths - 850).argmin()
    assert vegetation[nir] > 4 * vegetation[red]  # the red edge
    assert water[nir] < 0.01 < water[0]  # water is dark beyond the visible


# -- abundances ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dirichlet", "fields"])
def test_abundances_on_the_simplex(kind):
    scene = make_scene(32, 48, 5, abundances=kind, snr_db=None, seed=1)
    assert scene.truth.abundances.shape == (32, 48, 5)
    check_simplex(scene.truth.abundances)


def test_fields_are_spatially_smooth_and_dirichlet_is_not():
    def neighbour_correlation(abundances):
        return np.corrcoef(abundances[:, :-1, 0].ravel(), abundances[:, 1:, 0].ravel())[0, 1]

    fields = make_scene(64, 64, abundances="fields", snr_db=None).truth.abundances
    dirichlet = make_scene(64, 64, abundances="dirichlet", snr_db=None).truth.abundances
    assert neighbour_correlation(fields) > 0.8
    assert abs(neighbour_correlation(dirichlet)) < 0.1


def test_purity_cap_holds_and_keeps_the_simplex():
    scene = make_scene(40, 40, 4, alpha=0.2, purity=0.7, snr_db=None)
    abundances = scene.truth.abundances
    check_simplex(abundances)
    assert abundances.max() <= 0.7 + 1e-12
    assert abundances.max() > 0.69  # sparse Dirichlet draws hit the cap


def test_purity_cap_hand_computed():
    # The excess goes to the others in proportion to their values...
    np.testing.assert_allclose(cap_purity(np.array([0.9, 0.1, 0.0]), 0.6), [0.6, 0.4, 0.0])
    # ... equally when they are all zero ...
    np.testing.assert_allclose(cap_purity(np.array([1.0, 0.0, 0.0]), 0.5), [0.5, 0.25, 0.25])
    # ... and again when the first round pushes another entry over the cap.
    np.testing.assert_allclose(cap_purity(np.array([0.5, 0.45, 0.05]), 0.4), [0.4, 0.4, 0.2])
    with pytest.raises(InputError, match=r"\[1/P, 1\]"):
        cap_purity(np.array([0.5, 0.5]), 0.4)


def test_file_abundance_maps(data_dir):
    scene = make_scene(64, 50, 9, abundances="spatial2", data_dir=data_dir, snr_db=None)
    np.testing.assert_array_equal(
        scene.truth.abundances, load_abundance_maps("spatial2", data_dir)[:64, :50]
    )
    with pytest.raises(InputError, match="n_endmembers=9"):
        make_scene(abundances="spatial2", data_dir=data_dir)
    with pytest.raises(InputError, match="50 x 50"):
        make_scene(64, 64, 3, abundances="spatial_3em", data_dir=data_dir)


# -- mixing ------------------------------------------------------------------------------------
def test_linear_noiseless_scene_is_exactly_the_mixture():
    scene = make_scene(snr_db=None, seed=4)
    expected = noiseless_pixels(scene).astype(np.float32).reshape(scene.cube.shape)
    np.testing.assert_array_equal(scene.cube, expected)


def test_illumination_scales_each_pixel_and_keeps_absolute_fractions():
    plain = make_scene(8, 8, 3, snr_db=None, mixing="fan", seed=6)
    lit = make_scene(8, 8, 3, snr_db=None, mixing="fan", illumination=0.4, seed=6)
    factors = lit.pixels() / plain.pixels()  # (N, L): one per pixel
    np.testing.assert_allclose(
        factors, np.broadcast_to(factors[:, :1], factors.shape), rtol=1e-6
    )  # float32 cubes: a ratio of two roundings, 2.4e-7
    assert factors.min() >= 0.6 and factors.max() <= 1.4 and factors.std() > 0.1
    np.testing.assert_array_equal(lit.truth.abundances, plain.truth.abundances)
    np.testing.assert_array_equal(
        lit.truth.extras["nonlinear_share"], plain.truth.extras["nonlinear_share"]
    )
    assert lit.truth.convention == "absolute"


# A pixel worked by hand: E (3 endmembers, 2 bands), a = (0.5, 0.3, 0.2).
HAND_E = np.array([[0.2, 0.5], [0.4, 0.1], [0.6, 0.3]])
HAND_A = np.array([[0.5, 0.3, 0.2]])
# x = E^T a = (0.34, 0.34); sum_{i<j} a_i a_j e_i e_j
#   = 0.15 (0.08, 0.05) + 0.10 (0.12, 0.15) + 0.06 (0.24, 0.03) = (0.0384, 0.0243)


@pytest.mark.parametrize(
    "model, parameter, expected",
    [
        ("linear", None, [0.34, 0.34]),
        ("fan", None, [0.34 + 0.0384, 0.34 + 0.0243]),
        ("gbm", 0.5, [0.34 + 0.5 * 0.0384, 0.34 + 0.5 * 0.0243]),
        ("ppnm", 0.3, [0.34 + 0.3 * 0.34**2] * 2),
    ],
)
def test_mixing_models_on_a_hand_computed_pixel(model, parameter, expected):
    mixed = mixing.mix(HAND_A, HAND_E, model, parameter)
    np.testing.assert_allclose(mixed, [expected], rtol=1e-13)
    # Per-pixel endmembers equal to the shared ones give the same mixture.
    per_pixel = mixing.mix(HAND_A, HAND_E[None], model, parameter)
    np.testing.assert_allclose(per_pixel, mixed, rtol=1e-13)


@pytest.mark.parametrize("model, nonlinearity", [("fan", 0.5), ("gbm", 0.7), ("ppnm", -0.3)])
def test_nonlinear_scene_follows_its_model(model, nonlinearity):
    scene = make_scene(16, 16, 3, mixing=model, nonlinearity=nonlinearity, snr_db=None)
    p = scene.truth.n_endmembers
    abundances = scene.truth.abundances.reshape(-1, p)
    expected = mixing.mix(abundances, scene.truth.endmembers, model, nonlinearity)
    np.testing.assert_allclose(scene.cube.reshape(-1, scene.n_bands), expected, rtol=1e-6)
    linear_part = abundances @ scene.truth.endmembers
    share = np.sum((expected - linear_part) ** 2, axis=1) / np.sum(expected**2, axis=1)
    np.testing.assert_allclose(scene.truth.extras["nonlinear_share"], share.reshape(16, 16))
    assert share.min() > 0 and share.max() < 1


def test_gbm_nonlinearity_can_vary_per_pixel():
    gamma = np.linspace(0, 1, 64).reshape(8, 8)
    share = make_scene(8, 8, mixing="gbm", nonlinearity=gamma, snr_db=None).truth.extras[
        "nonlinear_share"
    ]
    assert share[0, 0] == 0 and share[-1, -1] > 0
    with pytest.raises(InputError, match="gamma"):
        make_scene(8, 8, mixing="gbm", nonlinearity=1.5)


# -- noise ---------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["white", "correlated"])
def test_noise_has_the_requested_snr(noise):
    scene = make_scene(128, 128, 4, snr_db=25.0, noise=noise, seed=2)
    clean = noiseless_pixels(scene)
    added = scene.cube.reshape(clean.shape) - clean
    snr = 10 * np.log10(np.sum(clean**2) / np.sum(added**2))
    assert snr == pytest.approx(25.0, abs=0.3)
    band_correlation = np.corrcoef(added[:, :-1].ravel(), added[:, 1:].ravel())[0, 1]
    if noise == "white":
        assert abs(band_correlation) < 0.02
    else:
        assert band_correlation == pytest.approx(0.8, abs=0.02)


# -- variability ----------------------------------------------------------------------------
def test_variability_gives_per_pixel_endmembers_that_make_each_pixel():
    scene = make_scene(24, 24, 3, variability=0.2, perturbation=0.05, snr_db=None, seed=5)
    pixel_endmembers = scene.truth.pixel_endmembers
    assert pixel_endmembers.shape == (24, 24, 3, scene.n_bands)
    assert pixel_endmembers.min() >= 0
    mixed = np.einsum("hwp,hwpl->hwl", scene.truth.abundances, pixel_endmembers)
    np.testing.assert_allclose(scene.cube, mixed, rtol=1e-6, atol=1e-7)
    # They vary around the reference endmembers, within the requested spread.
    reference = scene.truth.endmembers
    ratio = pixel_endmembers.sum(axis=-1) / reference.sum(axis=-1)
    assert ratio.std() > 0.05 and ratio.min() > 0.75 and ratio.max() < 1.25
    np.testing.assert_allclose(
        pixel_endmembers.mean(axis=(0, 1)), reference, atol=0.02 * reference.max()
    )


# -- endmembers ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_endmembers, min_angle", [(4, 0.3), (8, 0.15)])
def test_min_angle_between_endmembers_is_respected(n_endmembers, min_angle):
    for seed in range(3):
        scene = make_scene(4, 4, n_endmembers, min_angle=min_angle, snr_db=None, seed=seed)
        angles = sad_matrix(scene.truth.endmembers, scene.truth.endmembers)
        assert angles[~np.eye(n_endmembers, dtype=bool)].min() >= min_angle


def test_impossible_min_angle_is_reported():
    with pytest.raises(InputError, match="lower min_angle"):
        make_scene(4, 4, 6, min_angle=1.0)


def test_usgs_endmembers_are_resampled_library_spectra(data_dir):
    wavelengths = np.linspace(450.0, 2400.0, 120)
    scene = make_scene(
        8, 8, 5, library="usgs", wavelengths=wavelengths, data_dir=data_dir, snr_db=None, seed=7
    )
    library = load_library("usgs", data_dir)
    for name, endmember in zip(scene.truth.names, scene.truth.endmembers):
        source = library.spectra[library.names.index(name)]
        np.testing.assert_allclose(endmember, np.interp(wavelengths, library.wavelengths, source))
    np.testing.assert_array_equal(scene.wavelengths, wavelengths)


# -- resampling -----------------------------------------------------------------------------
def test_gaussian_band_response():
    source = np.linspace(400.0, 2500.0, 2101)
    slope = 0.1 + source / 5000
    centres = np.array([600.0, 1200.0, 2000.0])
    # A symmetric response leaves a straight line unchanged ...
    np.testing.assert_allclose(
        resample(slope, source, centres, fwhm=30.0)[0], 0.1 + centres / 5000, rtol=1e-6
    )
    # ... and a wider band makes a narrow absorption shallower.
    dip = 1 - 0.5 * np.exp(-0.5 * ((source - 1200) / 5) ** 2)
    depths = [1 - resample(dip, source, [1200.0], fwhm=width)[0, 0] for width in (1, 20, 60)]
    assert depths[0] == pytest.approx(0.5, abs=0.01) and depths[0] > depths[1] > depths[2]
    with pytest.raises(InputError, match="outside"):
        resample(slope, source, [350.0, 600.0])
    # The analytic spectra take the same response: a very narrow band samples the centre.
    np.testing.assert_allclose(
        analytic_library(centres, fwhm=1e-3).spectra, analytic_library(centres).spectra, rtol=1e-6
    )


def test_fwhm_reaches_the_scene():
    scene = make_scene(4, 4, fwhm=15.0, snr_db=None)
    np.testing.assert_array_equal(scene.fwhm, np.full(200, 15.0))
    with pytest.raises(InputError, match="fwhm has 3 values for 200 bands"):
        make_scene(4, 4, fwhm=[10.0, 10.0, 10.0])


# -- reproducibility -------------------------------------------------------------------------
SETTINGS = dict(
    n_rows=20,
    n_cols=20,
    n_endmembers=4,
    abundances="fields",
    mixing="ppnm",
    variability=0.1,
    perturbation=0.02,
    snr_db=30.0,
    noise="correlated",
)


def test_same_seed_same_scene_bit_for_bit():
    first, second = make_scene(**SETTINGS, seed=11), make_scene(**SETTINGS, seed=11)
    np.testing.assert_array_equal(first.cube, second.cube)
    np.testing.assert_array_equal(first.truth.abundances, second.truth.abundances)
    np.testing.assert_array_equal(first.truth.pixel_endmembers, second.truth.pixel_endmembers)
    assert first.truth.names == second.truth.names


def test_different_seed_different_scene():
    first, second = make_scene(**SETTINGS, seed=11), make_scene(**SETTINGS, seed=12)
    assert not np.array_equal(first.truth.abundances, second.truth.abundances)
    assert not np.allclose(first.cube, second.cube)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("mixing", "quadratic", "mixing must be one of"),
        ("abundances", "uniform", "abundances must be one of"),
        ("noise", "pink", "noise must be one of"),
        ("library", "aster", "library must be"),
        ("variability", 1.5, "variability"),
        ("illumination", 1.0, "illumination"),
        ("alpha", -1.0, "alpha"),
    ],
)
def test_bad_options_are_named(option, value, message):
    with pytest.raises(InputError, match=message):
        make_scene(4, 4, **{option: value})
