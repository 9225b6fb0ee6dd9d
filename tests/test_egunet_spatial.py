"""EGU-Net beyond its labels: the spatial stream in the output maps, its context in chunked
runs, and the endmembers re-estimated from the pixels called purest."""

import numpy as np
import pytest
import torch

import hyperunmix as hu
from hyperunmix import synthetic
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.deep.egunet_nets import SpatialSpectralEGU
from hyperunmix.deep.egunet_reference import confident_means
from hyperunmix.errors import InputError
from hyperunmix.scale import open_maps, unmix_large

N_BANDS = 24
FAST = dict(epochs=6, batch_size=128, patch_size=8)


@pytest.fixture(scope="module")
def scene():
    return synthetic.make_scene(
        16, 18, 3, wavelengths=np.linspace(400, 2400, N_BANDS), alpha=0.5, snr_db=20, seed=1
    )


@pytest.fixture(scope="module")
def fitted(scene):
    torch.set_num_threads(1)
    return {v: EGUNet(3, variant=v, seed=0, **FAST).fit(scene) for v in ("pw", "ss")}


def test_ss_output_depends_on_the_neighbours_and_pw_does_not(scene, fitted):
    ss = fitted["ss"]
    assert ss.spatial_context == 2 and fitted["pw"].spatial_context == 0
    assert ss.spatial_weight > 0
    assert float(ss.network_.spatial_weight) == pytest.approx(ss.spatial_weight)
    assert ss.network_weight_ > 0.05  # the network's maps, hence the spatial stream, reach it
    cube = np.array(scene.cube)
    changed = cube.copy()
    changed[5, 6] = cube[12, 3]  # another pixel's spectrum at (5, 6)
    for variant, model in fitted.items():
        before = model.transform(cube)["abundances"]
        after = model.transform(changed)["abundances"]
        moved = np.abs(after - before).max(axis=-1)
        assert moved[5, 6] > 1e-3  # the pixel itself
        if variant == "ss":
            assert moved[5, 7] > 1e-6 and moved[4, 6] > 1e-6  # its neighbours see it
            assert moved[5, 8] > 0 and moved[3, 6] > 0  # two pixels away too
            assert moved[5, 9] == 0 and moved[2, 6] == 0  # beyond the context nobody does
        else:
            moved[5, 6] = 0
            assert moved.max() == 0


def test_ss_chunked_run_equals_the_in_memory_maps(scene, fitted, tmp_path):
    model = fitted["ss"]
    expected = model.unmix(scene).abundances
    run = unmix_large(scene, model, tmp_path / "maps.zarr", chunks=7)
    chunked = open_maps(run.out)["abundances"].values
    # The halo of spatial_context pixels gives every chunk's pixels their whole
    # neighbourhood: equal up to float32 rounding of differently sized convolutions.
    np.testing.assert_allclose(chunked, expected, atol=1e-6)


def test_invalid_pixels_are_nan_and_their_neighbours_finite(scene, fitted):
    cube = np.array(scene.cube)
    cube[4, 4] = np.nan
    maps = fitted["ss"].transform(cube)["abundances"]
    assert np.isnan(maps[4, 4]).all()
    assert np.isfinite(np.delete(maps.reshape(-1, 3), 4 * cube.shape[1] + 4, axis=0)).all()
    np.testing.assert_allclose(np.nansum(maps, axis=-1)[np.isfinite(maps[..., 0])], 1, atol=1e-5)


def test_ss_round_trips_through_a_checkpoint(scene, fitted, tmp_path):
    model = fitted["ss"]
    loaded = EGUNet.load(model.save(tmp_path / "ss.pt"))
    assert float(loaded.network_.spatial_weight) == pytest.approx(model.spatial_weight)
    np.testing.assert_array_equal(loaded.unmix(scene).abundances, model.unmix(scene).abundances)


def test_blind_spot_predictor_never_sees_the_pixel():
    net = SpatialSpectralEGU(N_BANDS, 3).eval()
    image = torch.rand(1, N_BANDS, 7, 7)
    changed = image.clone()
    changed[0, :, 3, 3] += 1.0
    with torch.no_grad():
        own, neighbours = net.streams(net.pure_stream.features(image))
        own2, neighbours2 = net.streams(net.pure_stream.features(changed))
    assert torch.equal(neighbours[..., 3, 3], neighbours2[..., 3, 3])
    assert not torch.equal(own[..., 3, 3], own2[..., 3, 3])
    assert not torch.equal(neighbours[..., 3, 4], neighbours2[..., 3, 4])


def test_confident_means_average_the_purest_pixels():
    pixels = np.arange(12.0).reshape(6, 2)
    abundances = np.array([[1, 0], [0.9, 0.1], [0.2, 0.8], [0, 1], [0.5, 0.5], [0.1, 0.9]])
    means = confident_means(pixels, abundances, 0.34)  # two pixels each
    np.testing.assert_allclose(means, [pixels[[0, 1]].mean(0), pixels[[3, 5]].mean(0)])
    with pytest.raises(InputError):
        confident_means(pixels, abundances, 0.0)


def test_refined_reference_is_closer_to_the_truth_than_the_extractor(scene):
    truth = scene.truth.endmembers
    labels = EGUNet(3, abundance_output="labels", refine_fraction=None).fit(scene)
    refined = EGUNet(3, abundance_output="labels").fit(scene)
    sad = [hu.evaluate(m.unmix(scene), scene.truth)["msad"] for m in (labels, refined)]
    assert sad[1] < sad[0]
    assert refined.reference_.shape == truth.shape
