"""The deep methods on a whole scene (issue 16): device="auto", mixed precision, torch
threads in chunk tasks, chunked maps equal to in-memory ones."""

import copy
import warnings

import numpy as np
import pytest
import torch

import hyperunmix as hu
from hyperunmix.base import Unmixer
from hyperunmix.deep._common import resolve_device
from hyperunmix.deep.deq import DEQUnmix
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.deep.idnet import IDNet
from hyperunmix.errors import ConvergenceWarning, InputError
from hyperunmix.scale import open_maps, threads, unmix_large, unmix_lazy
from hyperunmix.scale.lazy import as_cube
from hyperunmix.scene import Scene

DEEP = (DEQUnmix, EGUNet, IDNet)
CHUNKS = 16  # 40 x 44 px: a 3 x 3 grid with partial chunks on the last row and column
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU fallback")


@pytest.fixture(scope="module")
def scene() -> Scene:
    """40 x 44 px, 20 bands, 3 endmembers, an invalid pixel."""
    base = hu.synthetic.make_scene(n_rows=40, n_cols=44, n_endmembers=3, snr_db=35, seed=1)
    cube = base.select_bands(np.arange(0, base.n_bands, 10)).cube.copy()
    cube[5, 6, 1] = np.nan
    return Scene(cube, base.wavelengths[::10], name="synthetic")


@pytest.fixture(scope="module")
def deq(scene) -> DEQUnmix:
    """Trained until its last forward solve reached the equilibrium (max_iter=500)."""
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # earlier epochs' solves
        model = DEQUnmix(3, epochs=4, hidden=4, max_iter=500, seed=0).fit(scene)
    assert model._solves_by_correction()
    return model


def chunked(model: Unmixer, scene: Scene, tmp_path, **options) -> np.ndarray:
    run = unmix_large(scene, model, tmp_path / "maps.zarr", chunks=CHUNKS, **options)
    return open_maps(run.out)["abundances"].values


# -- devices ------------------------------------------------------------------------------
def test_auto_device_is_cuda_when_present_else_the_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("AUTO").type == expected
    assert resolve_device(None).type == "cpu"


@pytest.mark.parametrize("method", DEEP)
def test_deep_methods_run_on_auto_by_default(method):
    assert method().device == "auto"
    method(device="auto").validate_params()
    with pytest.raises(InputError, match="device"):
        method(device="gpu").validate_params()
    with pytest.raises(InputError, match="precision"):
        method(precision="float16").validate_params()


@no_cuda
def test_auto_fits_and_unmixes_on_the_cpu_here(scene, deq):
    assert deq.network_.endmembers.device.type == "cpu"
    assert np.isfinite(deq.unmix(scene).abundances[scene.mask]).all()


@no_cuda
def test_mixed_precision_is_a_no_op_on_the_cpu(scene, deq):
    mixed = copy.copy(deq)
    mixed.precision = "mixed"
    np.testing.assert_array_equal(
        mixed.unmix(scene).abundances.view(np.uint32), deq.unmix(scene).abundances.view(np.uint32)
    )


# -- threads ------------------------------------------------------------------------------
class ThreadProbe(Unmixer):
    """Its one "abundance" is the torch intra-op threads of the thread that unmixed it."""

    name = "threadprobe"

    def _fit(self, scene):
        self.n_bands_ = scene.n_bands

    def _transform_pixels(self, pixels):
        return np.full((len(pixels), 1), torch.get_num_threads(), dtype=np.float64)


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize(("workers", "share"), [(2, 4), (8, 1), (3, 2)])
def test_chunk_tasks_run_torch_on_their_share_of_the_cores(
    scene, tmp_path, eight_cores, workers, share
):
    before = torch.get_num_threads()
    seen = chunked(ThreadProbe().fit(scene), scene, tmp_path, num_workers=workers)
    np.testing.assert_array_equal(np.unique(seen[scene.mask]), [share])
    assert torch.get_num_threads() == before  # the calling thread keeps its own


def test_omp_num_threads_caps_the_share(scene, tmp_path, eight_cores, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    seen = chunked(ThreadProbe().fit(scene), scene, tmp_path, num_workers=1)
    np.testing.assert_array_equal(np.unique(seen[scene.mask]), [3])


def test_a_distributed_worker_shares_its_cores_among_its_threads(scene, tmp_path, eight_cores):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=4, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        seen = chunked(ThreadProbe().fit(scene), scene, tmp_path, client=client)
    np.testing.assert_array_equal(np.unique(seen[scene.mask]), [2])


# -- chunked equals in-memory ---------------------------------------------------------------
def chunk_border_distance(n_rows: int, n_cols: int) -> np.ndarray:
    """(H, W) distance of each pixel to the nearest edge of its chunk that is not the
    image's (a large number for a chunk edge at the image's edge)."""

    def along(n: int) -> np.ndarray:
        index = np.arange(n)
        before = np.where(index >= CHUNKS, index % CHUNKS, n)
        after = np.where(index // CHUNKS < (n - 1) // CHUNKS, CHUNKS - 1 - index % CHUNKS, n)
        return np.minimum(before, after)

    return np.minimum.outer(along(n_rows), along(n_cols))


def test_deq_chunked_equals_in_memory(scene, deq, tmp_path):
    # The equilibrium couples every pixel to its neighbours through the 3 x 3 layer of the
    # correction, at a strength that decays with distance; each pixel's solve stops on its
    # own change (no mixing weights shared over the block), so a chunk with its halo of
    # spatial_context pixels reaches the whole image's fixed point to a few roundings.
    expected = deq.unmix(scene).abundances
    actual = chunked(deq, scene, tmp_path)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    away = chunk_border_distance(*scene.shape[:2]) >= 2
    valid = scene.mask
    np.testing.assert_allclose(actual[valid & away], expected[valid & away], rtol=0, atol=1e-5)
    np.testing.assert_allclose(actual[valid], expected[valid], rtol=0, atol=1e-4)
    lazy = unmix_lazy(deq, as_cube(scene, chunks=CHUNKS))["abundances"].values
    np.testing.assert_allclose(lazy[valid], expected[valid], rtol=0, atol=1e-4)


def test_deq_inference_reaches_the_equilibrium(scene, deq):
    # f at the maps returns them, to the roundings of one float32 step (eta E E^T has its
    # eigenvalues in (0, 1], so each term of the step is of the abundances' order).
    image, _ = deq._image_tensors(scene.cube, scene.mask)
    with torch.no_grad():
        abundances, residual = deq._corrected_fcls(image)
        stepped = deq.network_.step(abundances, deq.network_.operators(image))
    assert residual <= 1e-6
    assert float((stepped - abundances).abs().max()) < 1e-5


def test_deq_unconverged_model_keeps_the_solver_it_was_trained_with(scene, deq):
    # Its maps are the Anderson solver's output after max_iter iterations, as in training.
    truncated = copy.copy(deq)
    truncated.history_ = [{**deq.history_[-1], "forward_residual": 1.0}]
    truncated.max_iter = 1
    image, _ = deq._image_tensors(scene.cube, scene.mask)
    forward, backward = truncated._solver_options()
    with torch.no_grad():
        expected, _ = deq.network_.solve(
            deq.network_.operators(image), deq._start(image), "deq", forward, backward, 1
        )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        maps = truncated.unmix(scene).abundances
    expected = expected[0].movedim(0, -1).numpy()
    np.testing.assert_array_equal(maps[scene.mask], expected[scene.mask])


@pytest.mark.parametrize(
    "method",
    [
        lambda: EGUNet(3, variant="pw", epochs=2, batch_size=512, seed=0),
        lambda: IDNet(3, epochs=2, batch_size=64, n_uncertainty_samples=4, seed=0),
    ],
    ids=["egunet-pw", "idnet"],
)
def test_pixelwise_deep_methods_chunked_equal_in_memory_bit_for_bit(scene, tmp_path, method):
    torch.set_num_threads(1)
    model = method().fit(scene)
    expected = model.unmix(scene).abundances
    actual = chunked(model, scene, tmp_path)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


def test_egunet_ss_chunked_equals_in_memory(scene, tmp_path):
    torch.set_num_threads(1)
    model = EGUNet(3, variant="ss", epochs=2, batch_size=512, patch_size=8, seed=0).fit(scene)
    expected = model.unmix(scene).abundances
    actual = chunked(model, scene, tmp_path)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    # The output depends on spatial_context pixels each side, all in the halo: the same
    # sums, in other orders where the convolution's blocking differs with the block size.
    np.testing.assert_allclose(actual[scene.mask], expected[scene.mask], rtol=0, atol=1e-5)
