"""EGU-Net's output: the network's maps blended with its label rule's by the measured noise."""

import json

import numpy as np
import pytest
import torch

from hyperunmix import synthetic
from hyperunmix.conventions import normalise_rows
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.deep.egunet_blend import NOISE_FACTOR, band_noise, label_noise, network_weight
from hyperunmix.deep.pure_pixels import label_reference
from hyperunmix.errors import InputError

N_BANDS = 24
FAST = dict(epochs=6, batch_size=128, patch_size=8)


def test_label_noise_predicts_the_spread_of_the_labels_of_a_noisy_pixel():
    # One mixed pixel seen 4000 times under white noise: the first-order variance of its
    # shares, from each copy's own residual, against their spread across the copies.
    rng = np.random.default_rng(0)
    reference = 0.2 + rng.random((3, N_BANDS))
    shares = np.array([0.5, 0.3, 0.2])
    pixel = 1.5 * shares @ (reference / reference.max(axis=1, keepdims=True))
    noisy = pixel + 0.004 * rng.standard_normal((4000, N_BANDS))
    labels, variance = label_noise(noisy, reference)
    np.testing.assert_allclose(labels, normalise_rows(labels))
    # the noise leaves every share well inside the simplex: the first order holds, and the
    # copies' spread estimates the variance to a few percent (4000 samples)
    assert labels.min() > 0.05
    spread = labels.var(axis=0).sum()
    assert variance.mean() == pytest.approx(spread, rel=0.1)
    # the noise's own level per band predicts it as well
    _, from_bands = label_noise(noisy, reference, np.full(N_BANDS, 0.004**2))
    assert from_bands.mean() == pytest.approx(spread, rel=0.1)
    # no noise, no variance
    _, exact = label_noise(pixel[None], reference)
    assert exact[0] < 1e-20
    # HySime's regression across bands needs more pixels than bands
    assert band_noise(pixel[None]) is None
    assert band_noise(noisy).mean() == pytest.approx(0.004**2, rel=0.1)


def test_label_noise_from_the_band_noise_leaves_out_the_models_misfit():
    # A pixel the linear model misses (an interaction term, as in bilinear mixing) seen 4000
    # times under noise whose level differs per band: its labels spread by the noise alone,
    # which the band variances predict; each copy's residual also holds the misfit.
    rng = np.random.default_rng(1)
    reference = 0.2 + rng.random((3, N_BANDS))
    shares = np.array([0.5, 0.3, 0.2])
    pixel = shares @ reference + 0.3 * reference[0] * reference[1]
    band_std = np.linspace(0.002, 0.008, N_BANDS)
    noisy = pixel + band_std * rng.standard_normal((4000, N_BANDS))
    labels, variance = label_noise(noisy, reference, band_std**2)
    assert labels.min() > 0.05
    spread = labels.var(axis=0).sum()
    assert variance.mean() == pytest.approx(spread, rel=0.1)
    _, from_residuals = label_noise(noisy, reference)
    assert from_residuals.mean() > 3 * spread


def test_label_noise_needs_more_bands_than_endmembers():
    with pytest.raises(InputError, match="more bands"):
        label_noise(np.ones((4, 3)), np.eye(3))


def test_network_weight_is_the_noise_share_of_the_disagreement():
    labels = np.array([[1.0, 0.0], [0.0, 1.0]])
    network = np.array([[0.8, 0.2], [0.0, 1.0]])  # mean squared disagreement 0.04
    assert network_weight(labels, network, np.full(2, 0.02)) == pytest.approx(
        NOISE_FACTOR * 0.02 / 0.04
    )
    assert network_weight(labels, network, np.full(2, 0.02), factor=1.0) == pytest.approx(0.5)
    assert network_weight(labels, network, np.full(2, 1.0)) == 1.0  # capped
    assert network_weight(labels, labels, np.full(2, 0.02)) == 1.0  # they agree


@pytest.fixture(scope="module")
def scene():
    return synthetic.make_scene(
        15, 15, 3, wavelengths=np.linspace(400, 2400, N_BANDS), alpha=0.5, snr_db=25, seed=2
    )


@pytest.mark.parametrize("variant", ["pw", "ss"])
def test_output_is_the_blend_of_the_network_and_its_label_rule(scene, variant):
    torch.set_num_threads(1)
    model = EGUNet(3, variant=variant, seed=0, **FAST).fit(scene)
    alone = EGUNet(3, variant=variant, seed=0, network_weight=1.0, **FAST).fit(scene)
    labels = EGUNet(3, abundance_output="labels", seed=0).fit(scene)
    assert labels.network_weight_ == 0.0 and alone.network_weight_ == 1.0
    # the weight measured on the image, as network_weight computes it
    pixels = scene.pixels()
    rule, variance = label_noise(
        pixels, label_reference(labels.reference_, "peak"), band_noise(pixels)
    )
    network = alone.unmix(scene).pixel_abundances()
    assert model.network_weight_ == pytest.approx(network_weight(rule, network, variance), rel=1e-4)
    assert 0 < model.network_weight_ < 1
    expected = labels.unmix(scene).abundances + model.network_weight_ * (
        alone.unmix(scene).abundances - labels.unmix(scene).abundances
    )
    blended = model.unmix(scene).abundances
    np.testing.assert_allclose(blended, expected, atol=1e-6)
    assert blended.min() >= 0
    np.testing.assert_allclose(blended.sum(axis=-1), 1, atol=1e-5)
    none = EGUNet(3, variant=variant, seed=0, network_weight=0.0, **FAST).fit(scene)
    np.testing.assert_allclose(
        none.unmix(scene).abundances, labels.unmix(scene).abundances, atol=1e-7
    )


def test_a_checkpoint_without_the_weight_unmixes_with_the_network_alone(scene, tmp_path):
    # Checkpoints written before network_weight existed output the network's maps.
    torch.set_num_threads(1)
    model = EGUNet(3, variant="pw", seed=0, **FAST).fit(scene)
    alone = EGUNet(3, variant="pw", seed=0, network_weight=1.0, **FAST).fit(scene)
    payload = torch.load(model.save(tmp_path / "egu.pt"), weights_only=True)
    config = json.loads(payload["config"])
    del config["fitted"]["network_weight_"], config["params"]["network_weight"]
    torch.save({**payload, "config": json.dumps(config)}, tmp_path / "old.pt")
    old = EGUNet.load(tmp_path / "old.pt")
    assert old.network_weight is None and old.network_weight_ == 1.0
    np.testing.assert_array_equal(old.unmix(scene).abundances, alone.unmix(scene).abundances)
