"""Tiled / distributed unmixing (hyperunmix.scale): lazy cubes equal the in-memory ones,
chunked maps equal in-memory maps bit for bit, a LocalCluster equals the threaded
scheduler, a crashed run resumes, georeferencing survives, bad input is refused."""

import json
import os
import pickle
import threading
import warnings

import dask.array as da
import numpy as np
import pytest
import rasterio
import spectral.io.envi as spectral_envi
import torch
import zarr

import hyperunmix as hu
import hyperunmix.io as hio
from hyperunmix import FileFormatError, InputError, Scene, Unmixer
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.linear.estimators import FCLS
from hyperunmix.scale import (
    ChunkFailures,
    MapLayout,
    as_cube,
    chunk_shape,
    fit_on_sample,
    open_cube,
    open_maps,
    sample_scene,
    unmix_large,
    unmix_lazy,
)
from hyperunmix.scale._windows import EnviWindows, select_bands
from hyperunmix.scale.run import _LazyWindow, fitted_state_digest
from hyperunmix.scale.sample import default_patch, shares, stratified_positions
from hyperunmix.scale.store import MARKERS

GEO = hu.GeoInfo("EPSG:32611", (5.0, 0.0, 500000.0, 0.0, -5.0, 4100000.0))
CHUNKS = 16  # 40 x 52 px: a 3 x 4 grid with partial chunks on the last row and column


@pytest.fixture(scope="module")
def scene() -> Scene:
    """40 x 52 px, 20 bands, 3 endmembers, georeferenced; a NaN pixel and a no-data block
    covering the whole chunk (1, 0), so one chunk has no valid pixel."""
    base = hu.synthetic.make_scene(n_rows=40, n_cols=52, n_endmembers=3, snr_db=40, seed=0)
    cube = base.select_bands(np.arange(0, base.n_bands, 10)).cube.copy()
    cube[3, 4, 2] = np.nan
    cube[16:32, 0:16] = np.nan
    return Scene(cube, base.wavelengths[::10], geo=GEO, name="synthetic")


@pytest.fixture(scope="module")
def envi_path(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "scene.hdr"
    hio.write_scene(path, scene)
    return path


@pytest.fixture(scope="module")
def fcls(scene) -> FCLS:
    return FCLS(n_endmembers=3, endmembers="vca", seed=0).fit(scene)


@pytest.fixture(scope="module")
def egunet(scene) -> EGUNet:
    torch.set_num_threads(1)
    return EGUNet(3, variant="pw", epochs=2, batch_size=512, seed=0).fit(scene)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # Each worker's share of the cores is capped by its OMP_NUM_THREADS, which the nanny
    # sets to 1 only when the caller's environment does not set it: pinned, the workers
    # run one torch thread per task as the threaded scheduler's two task threads do, so
    # the float32 sums match bit for bit whatever the suite runs with.
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


def maps_of(path, name="abundances") -> np.ndarray:
    return open_maps(path)[name].values


def assert_identical(actual, expected):
    """Bit for bit, NaN where NaN."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


# -- lazy cubes --------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".hdr", ".tif", ".nc", ".zarr"])
def test_lazy_cube_equals_the_scene_read_in_memory(scene, tmp_path, suffix):
    path = tmp_path / f"cube{suffix}"
    if suffix == ".zarr":
        as_cube(scene).to_zarr(path)
        expected = np.where(scene.mask[..., None], scene.cube, np.nan)
    else:
        hio.write_scene(path, scene)
        read = hio.open_scene(path)
        expected = np.where(read.mask[..., None], read.cube, np.nan)
    cube = open_cube(path, chunks=(16, 20))
    assert cube.dims == ("y", "x", "band") and cube.dtype == np.float32
    assert cube.chunks == ((16, 16, 8), (20, 20, 12), (20,))
    np.testing.assert_array_equal(cube.values, expected)
    np.testing.assert_allclose(cube["wavelength"].values, scene.wavelengths)
    assert hu.scale.geo_of(cube) == GEO


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_envi_integers_are_scaled_and_no_data_pixels_masked(tmp_path, interleave):
    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) * 10
    stored[1, 2] = -9999  # every band no-data: invalid
    stored[2, 3, 0] = -9999  # one band only: a valid pixel
    spectral_envi.save_image(
        str(tmp_path / "x.hdr"),
        stored,
        ext=".img",
        interleave=interleave,
        metadata={
            "data ignore value": -9999,
            "reflectance scale factor": 10000,
            "bbl": [1, 0, 1, 1, 1],
        },
    )
    cube = open_cube(tmp_path / "x.hdr", chunks=2)
    expected = stored.astype(np.float32) * np.float32(1 / 10000)
    expected[1, 2] = np.nan
    np.testing.assert_array_equal(cube.values, expected)
    kept = hu.scale.drop_bad_bands(cube)
    np.testing.assert_array_equal(kept.values, expected[:, :, [0, 2, 3, 4]])


def test_envi_windows_pickle_as_paths_and_read_windows(envi_path, scene):
    windows = EnviWindows(*hio.envi._header_and_data(envi_path))
    windows[0:1, 0:1]
    restored = pickle.loads(pickle.dumps(windows))
    assert "_cached_image" not in restored.__dict__
    expected = hio.open_scene(envi_path).cube[5:9, 10:30]
    np.testing.assert_array_equal(restored[5:9, 10:30], expected)


def test_chunk_shape_default_and_checks():
    # The side, a multiple of 64, nearest to 16 MiB of float32 per chunk.
    assert chunk_shape(None, 128) == (192, 192)
    assert chunk_shape(None, 243) == chunk_shape(None, 285) == chunk_shape(None, 425) == (128, 128)
    assert chunk_shape(None, 5000) == (64, 64)  # never below 64
    assert chunk_shape(512, 200) == (512, 512) and chunk_shape((64, 128), 3) == (64, 128)
    for bad in (0, (16,), 2.5, True):
        with pytest.raises(InputError, match="chunks"):
            chunk_shape(bad, 10)


class _RecordedReads:
    """An (H, W, L) array-like that records the values each read returns."""

    def __init__(self, values: np.ndarray):
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, 3
        self.read = 0

    def __getitem__(self, key):
        block = self.values[key]
        self.read += block.size
        return block


def test_a_window_reads_only_its_pixels_then_keeps_the_good_bands(scene):
    values = scene.cube
    reads = _RecordedReads(values)
    source = da.from_array(reads, chunks=(CHUNKS, CHUNKS, -1), asarray=False, meta=values[:0, :0])
    good = np.array([0, 1, 2, 5, 6, 7, 19])
    # A chunk and a halo of 3 px: parts of 9 chunks of the source, read as the window.
    window = _LazyWindow(source[13:35, 13:35], good)
    np.testing.assert_array_equal(window.read(), values[13:35, 13:35][..., good])
    assert reads.read == 22 * 22 * values.shape[2]
    assert np.array_equal(select_bands(values, good), values[..., good], equal_nan=True)
    assert np.array_equal(select_bands(values, np.array([4])), values[..., [4]], equal_nan=True)


def test_bad_bands_are_dropped_chunk_by_chunk_as_in_memory(scene, tmp_path):
    # A spatial method (windows with a halo, read across chunks) whose map is made of the
    # first band kept: band 1, as band 0 is flagged.
    flagged = Scene(scene.cube, scene.wavelengths, bad_bands=[0, 3, 4, 10, 11, 12], geo=GEO)
    path = tmp_path / "flagged.hdr"
    hio.write_scene(path, flagged)
    kept = hio.open_scene(path).drop_bad_bands()
    model = BoxMean().fit(kept)
    run = unmix_large(path, model, tmp_path / "maps.zarr", chunks=CHUNKS)
    assert_identical(maps_of(run.out), model.unmix(kept).abundances)


@pytest.mark.parametrize("block_values", [1, 7 * 20, 2**24])
def test_scene_checks_a_cube_by_blocks_of_rows_as_a_whole(monkeypatch, block_values):
    # The checks of a Scene run on blocks of rows (their boolean arrays the size of a
    # block, not of the cube): the same mask and warnings whatever the block.
    monkeypatch.setattr(hu.scene, "_CHECK_BLOCK_VALUES", block_values)
    rng = np.random.default_rng(0)
    raw = rng.integers(1, 1000, size=(9, 7, 20)).astype(np.int16)
    raw[2, 3] = -1  # no-data in every band
    raw[4, 5, 6] = -1  # one value only: a valid pixel
    raw[0, :, :3] = -5  # with raw[4, 5, 6], 22 negative values of 1,240 valid: 1.8 %
    with pytest.warns(hu.errors.ScalingWarning, match="1.8% of the values are negative"):
        flagged = Scene(raw, nodata=-1, scale=1e-3)
    expected = np.ones((9, 7), bool)
    expected[2, 3] = False
    np.testing.assert_array_equal(flagged.mask, expected)
    raw[0, 1:, :3] = 5  # 4 negative values: 0.3 %, no warning
    cube = raw.astype(np.float32)
    cube[8, 6, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", hu.errors.ScalingWarning)
        quiet = Scene(cube, nodata=-1)
    expected[8, 6] = False
    np.testing.assert_array_equal(quiet.mask, expected)


def test_formats_without_windowed_access_are_refused(tmp_path, scene):
    hio.write_scene(tmp_path / "x.npz", scene)
    with pytest.raises(FileFormatError, match="chunk by chunk"):
        open_cube(tmp_path / "x.npz")
    with pytest.raises(InputError, match="dims"):
        as_cube(as_cube(scene).rename(band="spectral"))


# -- sampling ----------------------------------------------------------------------------
def test_stratified_positions_put_one_draw_in_every_cell():
    rng = np.random.default_rng(3)
    rows, cols = stratified_positions(100, 300, 48, rng)  # a 4 x 12 grid of 25 x 25 cells
    assert rows.min() >= 0 and rows.max() < 100 and cols.min() >= 0 and cols.max() < 300
    counts = np.zeros((4, 12), int)
    np.add.at(counts, (rows // 25, cols // 25), 1)
    np.testing.assert_array_equal(counts, 1)
    again = stratified_positions(100, 300, 48, np.random.default_rng(3))
    np.testing.assert_array_equal(again[0], rows)
    assert not np.array_equal(stratified_positions(100, 300, 48, np.random.default_rng(4))[0], rows)


def test_shares_are_proportional_and_add_up():
    np.testing.assert_array_equal(shares(10, [1, 1, 2]), [3, 2, 5])  # 2.5, 2.5, 5
    counts = shares(1000, np.arange(1, 8))
    assert counts.sum() == 1000
    assert np.abs(counts - 1000 * np.arange(1, 8) / 28).max() < 1


def test_sample_scene_holds_real_pixels_and_is_seeded(scene):
    cube = as_cube(scene, chunks=CHUNKS)
    sample = sample_scene(cube, 300, seed=1)
    assert sample.n_pixels <= 300 and sample.n_pixels > 250  # a few draws hit no-data
    pixels = sample.pixels(np.float32)
    valid = scene.cube[scene.mask]
    assert all((valid == p).all(axis=1).any() for p in pixels[:50])
    np.testing.assert_array_equal(
        np.nan_to_num(sample_scene(cube, 300, seed=1).cube), np.nan_to_num(sample.cube)
    )
    patches = sample_scene(cube, 400, patch=10, seed=1)  # 4 patches: a 2 x 2 mosaic
    assert patches.shape == (20, 20, scene.n_bands)
    whole = sample_scene(cube, 10_000)
    np.testing.assert_array_equal(whole.mask, scene.mask)


@pytest.mark.parametrize(
    "variant,largest,side",
    [("pw", None, 5), ("ss", None, 35), ("ss", 128, 35), ("ss", 16, 15), ("pw", 4, 4)],
)
def test_egunet_samples_whole_pseudo_pure_blocks(variant, largest, side):
    """EGU-Net's pseudo-pure set runs VCA in 5 x 5 blocks of its training image: in a
    chunked run's mosaic of patches each block must lie inside one patch (a multiple of 5,
    the chunk side permitting), also for the pixel-wise network."""
    assert default_patch(EGUNet(3, variant=variant), largest) == side


def test_fit_on_sample_of_the_whole_image_is_the_in_memory_fit(scene):
    model = fit_on_sample(FCLS(n_endmembers=3, seed=0), as_cube(scene), n=10_000)
    np.testing.assert_array_equal(
        model.endmembers_, FCLS(n_endmembers=3, seed=0).fit(scene).endmembers_
    )


# -- chunked equals in-memory ------------------------------------------------------------
def test_fcls_chunked_equals_in_memory_bit_for_bit(envi_path, fcls, tmp_path):
    in_memory = fcls.unmix(hio.open_scene(envi_path)).abundances
    progress = []
    run = unmix_large(
        envi_path,
        fcls,
        tmp_path / "maps.zarr",
        chunks=CHUNKS,
        progress=lambda *report: progress.append(report),
    )
    assert_identical(maps_of(run.out), in_memory)
    assert (run.n_chunks, run.n_skipped) == (12, 0)
    assert [done for stage, done, total, _ in progress if stage == "unmix"] == list(range(13))
    stored = open_maps(run.out)
    assert stored.attrs["hyperunmix"]["complete"] is True
    np.testing.assert_array_equal(stored["endmembers"].values, fcls.endmembers_)


def test_deep_model_chunked_equals_in_memory_bit_for_bit(envi_path, egunet, tmp_path):
    # An eval-mode network maps each pixel alone, and float32 matrix products give each
    # row the same bits whatever the batch (of 2 or more rows) it is in.
    in_memory = egunet.unmix(hio.open_scene(envi_path)).abundances
    run = unmix_large(envi_path, egunet, tmp_path / "maps.zarr", chunks=CHUNKS)
    assert_identical(maps_of(run.out), in_memory)


def test_method_by_name_fitted_on_a_sample_covering_the_scene(envi_path, tmp_path):
    scene = hio.open_scene(envi_path)
    expected = FCLS(n_endmembers=3, seed=0).fit_unmix(scene).abundances
    run = unmix_large(
        envi_path,
        "fcls",
        tmp_path / "maps.zarr",
        chunks=CHUNKS,
        params={"n_endmembers": 3, "seed": 0},
        fit_sample=10_000,
    )
    assert_identical(maps_of(run.out), expected)


class BoxMean(Unmixer):
    """A spatial toy: "abundances" (m, 1 - m), m the 5 x 5 mean of band 0 (zero outside the
    block), so every output pixel depends on a 2-pixel neighbourhood."""

    name = "boxmean"
    spatial_context = 2

    def _fit(self, scene):
        self.n_bands_ = scene.n_bands

    def transform(self, cube, mask=None):
        mask = np.all(np.isfinite(cube), axis=-1) if mask is None else mask
        band = np.pad(np.where(mask, cube[..., 0], 0.0), 2)
        h, w = mask.shape
        total = sum(band[i : i + h, j : j + w] for i in range(5) for j in range(5))
        maps = np.stack([total / 25, 1 - total / 25], axis=-1).astype(np.float32)
        maps[~mask] = np.nan
        return {"abundances": maps}


def test_spatial_method_sees_its_context_across_chunks(scene, tmp_path):
    model = BoxMean().fit(scene)
    expected = model.unmix(scene).abundances
    run = unmix_large(scene, model, tmp_path / "maps.zarr", chunks=CHUNKS)
    assert_identical(maps_of(run.out), expected)
    lazy = unmix_lazy(model, as_cube(scene, chunks=CHUNKS))
    assert_identical(lazy["abundances"].values, expected)


# -- distributed -------------------------------------------------------------------------
def test_local_cluster_equals_threaded_bit_for_bit(envi_path, fcls, egunet, client, tmp_path):
    for model in (fcls, egunet):
        threaded = unmix_large(envi_path, model, tmp_path / f"{model.name}-t.zarr", chunks=CHUNKS)
        distributed = unmix_large(
            envi_path, model, tmp_path / f"{model.name}-d.zarr", chunks=CHUNKS, client=client
        )
        assert_identical(maps_of(distributed.out), maps_of(threaded.out))


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_rioxarray_and_zarr_sources_run_on_the_cluster(scene, fcls, client, tmp_path, suffix):
    source = tmp_path / f"cube{suffix}"
    if suffix == ".zarr":
        as_cube(scene).to_zarr(source)
    else:
        hio.write_scene(source, scene)
    distributed = unmix_large(source, fcls, tmp_path / "d.zarr", chunks=CHUNKS, client=client)
    assert_identical(maps_of(distributed.out), fcls.unmix(scene).abundances)


def test_cluster_reached_by_address_fits_and_unmixes(envi_path, client, tmp_path):
    run = unmix_large(
        envi_path,
        "fcls",
        tmp_path / "maps.zarr",
        chunks=CHUNKS,
        client=client.scheduler.address,
        params={"n_endmembers": 3},
        fit_sample=500,
    )
    local = unmix_large(
        envi_path,
        "fcls",
        tmp_path / "local.zarr",
        chunks=CHUNKS,
        params={"n_endmembers": 3},
        fit_sample=500,
    )
    assert_identical(maps_of(run.out), maps_of(local.out))


# -- failures and resume -----------------------------------------------------------------
class CrashOnChunk(FCLS):
    """FCLS raising on blocks whose first valid value equals ``trigger`` (one chunk), as
    long as ``armed`` is set."""

    armed = True
    trigger = None
    calls = 0

    def transform(self, cube, mask=None):
        CrashOnChunk.calls += 1
        if (
            CrashOnChunk.armed
            and cube.shape[:2] == (16, 16)
            and np.array_equal(cube[0, 0], CrashOnChunk.trigger)
        ):
            raise FloatingPointError("simulated crash")
        return super().transform(cube, mask)


@pytest.fixture
def crashing(scene, fcls):
    CrashOnChunk.armed, CrashOnChunk.calls = True, 0
    CrashOnChunk.trigger = scene.cube[0, 16]  # first pixel of chunk (0, 1)
    return CrashOnChunk(n_endmembers=3, endmembers=fcls.endmembers_).fit(scene)


def test_failing_chunk_is_retried_then_reported_and_the_rerun_resumes(
    envi_path, crashing, tmp_path
):
    out = tmp_path / "maps.zarr"
    with pytest.raises(
        ChunkFailures,
        match=r"chunk \(0, 1\) \(rows 0-15, cols 16-31\).*"
        "simulated crash",
    ) as failure:
        unmix_large(envi_path, crashing, out, chunks=CHUNKS, retries=2)
    assert failure.value.failures[0].attempts == 3
    done = zarr.open_array(out, path=MARKERS)[:]
    assert done[0, 1] == 0 and done.sum() == 11
    assert open_maps(out).attrs["hyperunmix"]["complete"] is False
    assert np.isnan(maps_of(out)[0:16, 16:32]).all()

    CrashOnChunk.armed, CrashOnChunk.calls = False, 0
    resumed = unmix_large(envi_path, crashing, out, chunks=CHUNKS)
    assert resumed.n_skipped == 11 and CrashOnChunk.calls == 2  # the probe and the chunk
    uninterrupted = unmix_large(envi_path, crashing, tmp_path / "whole.zarr", chunks=CHUNKS)
    assert_identical(maps_of(out), maps_of(uninterrupted.out))
    assert open_maps(out).attrs["hyperunmix"]["complete"] is True


def test_transient_failure_is_absorbed_by_a_retry(envi_path, crashing, tmp_path):
    original = CrashOnChunk.transform

    def fail_once(self, cube, mask=None):
        if CrashOnChunk.armed and np.array_equal(cube[0, 0], CrashOnChunk.trigger):
            CrashOnChunk.armed = False
            raise OSError("transient")
        return original(self, cube, mask)

    CrashOnChunk.transform = fail_once
    try:
        run = unmix_large(envi_path, crashing, tmp_path / "maps.zarr", chunks=CHUNKS)
    finally:
        CrashOnChunk.transform = original
    assert run.n_chunks == 12 and not np.isnan(maps_of(run.out)[0:16, 16:32]).all()


def test_store_of_another_run_is_not_mixed_into(envi_path, fcls, scene, tmp_path):
    out = tmp_path / "maps.zarr"
    unmix_large(envi_path, fcls, out, chunks=CHUNKS)
    other = FCLS(n_endmembers=3, endmembers=fcls.endmembers_[::-1].copy()).fit(scene)
    with pytest.raises(InputError, match=r"another run.*model"):
        unmix_large(envi_path, other, out, chunks=CHUNKS)
    with pytest.raises(InputError, match=r"another run.*chunks"):
        unmix_large(envi_path, fcls, out, chunks=8)
    run = unmix_large(envi_path, other, out, chunks=CHUNKS, overwrite=True)
    assert run.n_skipped == 0
    assert_identical(maps_of(out), other.unmix(hio.open_scene(envi_path)).abundances)


def test_fitted_state_digest_follows_the_learned_state(scene, fcls, egunet):
    again = FCLS(n_endmembers=3, endmembers="vca", seed=0).fit(scene)
    again.fit_seconds_ = 123.0  # timings do not count
    assert fitted_state_digest(again) == fitted_state_digest(fcls)
    again.endmembers_ = again.endmembers_ * (1 + 1e-12)
    assert fitted_state_digest(again) != fitted_state_digest(fcls)
    before = fitted_state_digest(egunet)
    with torch.no_grad():
        weights = next(egunet.network_.parameters())
        weights[0, 0] += 1
        changed = fitted_state_digest(egunet)
        weights[0, 0] -= 1
    assert changed != before


# -- raster outputs ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["maps.tif", "maps.hdr"])
def test_raster_outputs_keep_the_georeferencing(envi_path, fcls, tmp_path, name):
    in_memory = fcls.unmix(hio.open_scene(envi_path)).abundances
    run = unmix_large(envi_path, fcls, tmp_path / name, chunks=CHUNKS)
    data_file = (
        hio.envi.output_paths(run.files["abundances"])[0]
        if name.endswith(".hdr")
        else run.files["abundances"]
    )
    with rasterio.open(data_file) as dataset:
        assert dataset.crs == rasterio.crs.CRS.from_user_input(GEO.crs)
        assert tuple(dataset.transform)[:6] == GEO.transform
        assert dataset.descriptions == ("abundances 1", "abundances 2", "abundances 3")
        assert_identical(np.moveaxis(dataset.read(), 0, 2), in_memory)
    assert hio.open_scene(run.files["abundances"]).geo == GEO
    endmembers, _wavelengths, _ = hio.read_endmembers(run.files["endmembers"])
    np.testing.assert_allclose(endmembers, fcls.endmembers_, rtol=1e-9)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the intermediate store is removed


def test_zarr_output_is_georeferenced_for_rioxarray(envi_path, fcls, tmp_path):
    run = unmix_large(envi_path, fcls, tmp_path / "maps.zarr", chunks=CHUNKS)
    maps = open_maps(run.out)["abundances"]
    assert maps.rio.crs.to_string() == GEO.crs
    assert tuple(maps.rio.transform())[:6] == GEO.transform


# -- bad input ---------------------------------------------------------------------------
def test_bad_requests_get_clear_errors(envi_path, fcls, scene, tmp_path):
    with pytest.raises(InputError, match=r"Zarr store .*GeoTIFF"):
        unmix_large(envi_path, fcls, tmp_path / "maps.png")
    with pytest.raises(InputError, match="gives no map"):
        unmix_large(envi_path, fcls, tmp_path / "a.zarr", outputs=["uncertainty"])
    with pytest.raises(InputError, match="fitted on 20 bands, the input has 10"):
        unmix_large(scene.select_bands(range(10)), fcls, tmp_path / "b.zarr")
    with pytest.raises(InputError, match="params"):
        unmix_large(envi_path, fcls, tmp_path / "c.zarr", params={"seed": 1})
    (tmp_path / "d.zarr").mkdir()
    with pytest.raises(InputError, match="not a hyperunmix map store"):
        unmix_large(envi_path, fcls, tmp_path / "d.zarr")
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        unmix_large(envi_path, fcls, tmp_path / "e.zarr", client="tcp://127.0.0.1:9")


def envi_header(path, bands: int, wavelengths: str) -> None:
    """A 3 x 4 px float32 ENVI image of ``bands`` bands (zeros), pixel-interleaved."""
    path.write_text(
        f"ENVI\nsamples = 4\nlines = 3\nbands = {bands}\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bip\n"
        f"byte order = 0\nwavelength = {{{wavelengths}}}\n"
    )
    path.with_suffix(".img").write_bytes(bytes(4 * 12 * max(bands, 1)))


def test_empty_cubes_and_mislabelled_bands_get_clear_errors(tmp_path):
    """bands = 0 raised xarray's CoordinateValidationError (or a ZeroDivisionError with the
    default chunks); a wavelength list of the wrong length did too."""
    envi_header(tmp_path / "empty.hdr", 0, "400, 500")
    for chunks in (None, 2):
        with pytest.raises(
            InputError,
            match=r"empty\.hdr holds an empty cube \(3 rows x 4 "
            r"columns x 0 bands\): nothing to unmix",
        ):
            open_cube(tmp_path / "empty.hdr", chunks=chunks)
    with pytest.raises(InputError, match="empty cube"):
        unmix_large(tmp_path / "empty.hdr", "fcls", tmp_path / "maps.zarr")
    with pytest.raises(InputError, match="the DataArray holds an empty cube"):
        as_cube(as_cube(np.zeros((3, 4, 2), np.float32)).isel(band=[]))
    envi_header(tmp_path / "short.hdr", 3, "400, 500")
    with pytest.raises(FileFormatError, match=r"short\.hdr lists 2 wavelengths for 3 bands"):
        open_cube(tmp_path / "short.hdr")
    bad = Scene(np.ones((4, 4, 2), np.float32), bad_bands=[0, 1])
    with pytest.raises(InputError, match=r"every band of .* is flagged bad"):
        unmix_large(bad, "fcls", tmp_path / "bad.zarr")


def test_map_layout_packs_and_unpacks():
    layout = MapLayout(("abundances", "uncertainty", "nonlinearity"), ((3,), (3,), ()))
    rng = np.random.default_rng(0)
    maps = {
        "abundances": rng.random((2, 4, 3)),
        "uncertainty": rng.random((2, 4, 3)),
        "nonlinearity": rng.random((2, 4)),
    }
    packed = layout.pack(maps)
    assert packed.shape == (2, 4, 7) and packed.dtype == np.float32
    for name, values in layout.unpack(packed).items():
        np.testing.assert_array_equal(values, maps[name].astype(np.float32))
    with pytest.raises(InputError, match="nonlinearity"):
        layout.pack({**maps, "nonlinearity": maps["uncertainty"]})


# -- outputs: never the input, never another run's or a user's files, one run at a time ----
@pytest.mark.parametrize("suffix", [".tif", ".hdr", ".zarr"])
def test_the_input_is_never_replaced_even_with_overwrite(scene, fcls, tmp_path, suffix):
    source = tmp_path / f"same{suffix}"
    if suffix == ".zarr":
        as_cube(scene).to_zarr(source)
    else:
        hio.write_scene(source, scene)
    for overwrite in (False, True):
        with pytest.raises(
            InputError,
            match=r"same\.\w+ is an input of this run.*even "
            "--overwrite",
        ):
            unmix_large(source, fcls, source, chunks=CHUNKS, overwrite=overwrite)
    np.testing.assert_array_equal(open_cube(source).values, as_cube(scene).values)


def test_raster_output_replaces_only_files_of_the_same_run(envi_path, fcls, scene, tmp_path):
    out = tmp_path / "maps.tif"
    out.write_bytes(b"someone's map")
    stages = []
    with pytest.raises(InputError, match=r"maps\.tif exists.*--overwrite"):
        unmix_large(
            envi_path,
            "fcls",
            out,
            chunks=CHUNKS,
            params={"n_endmembers": 3},
            progress=lambda stage, *_: stages.append(stage),
        )
    assert stages == [] and out.read_bytes() == b"someone's map"  # refused before the fit
    out.unlink()
    csv = tmp_path / "maps_endmembers.csv"
    csv.write_text("someone's spectra")
    with pytest.raises(InputError, match=r"maps_endmembers\.csv exists.*--overwrite"):
        unmix_large(envi_path, fcls, out, chunks=CHUNKS)
    assert csv.read_text() == "someone's spectra" and not out.exists()

    run = unmix_large(envi_path, fcls, out, chunks=CHUNKS, overwrite=True)
    record = json.loads(run.files["run"].read_text())
    assert record["complete"] is True and record["method"] == "fcls"
    assert record["files"] == ["maps.tif", "maps_endmembers.csv"]
    unmix_large(envi_path, fcls, out, chunks=CHUNKS)  # the same run again: its files
    other = FCLS(n_endmembers=3, endmembers=fcls.endmembers_[::-1].copy()).fit(scene)
    with pytest.raises(
        InputError,
        match=r"maps\.tif exists.*not listed as this run's output "
        r"in maps_run\.json.*--overwrite",
    ):
        unmix_large(envi_path, other, out, chunks=CHUNKS)
    replaced = unmix_large(envi_path, other, out, chunks=CHUNKS, overwrite=True)
    assert json.loads(replaced.files["run"].read_text())["fingerprint"] != record["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("maps")) == record[
        "files"
    ] + ["maps_run.json"]


class BoxMeanSpread(BoxMean):
    """BoxMean with a second map, ``spread``."""

    name = "boxmean_spread"

    def transform(self, cube, mask=None):
        maps = super().transform(cube, mask)
        return {**maps, "spread": maps["abundances"][..., 0] ** 2}


class OptionalEndmembers(BoxMean):
    """BoxMean that also returns per-pixel endmembers (h, w, 2, L) while its
    ``return_pixel_endmembers`` is true (as ID-Net), and records that switch at each call."""

    name = "boxmean_optional"

    def __init__(self):
        self.return_pixel_endmembers = True
        self.switches: list[bool] = []

    def transform(self, cube, mask=None):
        maps = super().transform(cube, mask)
        self.switches.append(self.return_pixel_endmembers)
        if self.return_pixel_endmembers:
            maps["pixel_endmembers"] = np.repeat(cube[:, :, None, :], 2, axis=2)
        return maps


def test_maps_computed_on_request_are_not_requested_when_not_written(scene, tmp_path):
    model = OptionalEndmembers().fit(scene)
    run = unmix_large(scene, model, tmp_path / "maps.zarr", chunks=CHUNKS)
    assert "pixel_endmembers" not in open_maps(run.out)
    assert model.return_pixel_endmembers  # the model itself is left as it was
    # The probe (the model as given), then the 12 chunks (each window holds a valid pixel
    # of its halo at least): not requested.
    assert model.switches == [True] + [False] * 12
    expected = BoxMean().fit(scene).unmix(scene).abundances
    assert_identical(maps_of(run.out), expected)
    model.switches.clear()
    outputs = ["abundances", "pixel_endmembers"]
    unmix_large(scene, model, tmp_path / "all.zarr", chunks=CHUNKS, outputs=outputs)
    assert model.switches == [True] * 13


def test_a_raster_rerun_removes_the_maps_the_earlier_run_wrote_and_it_does_not(scene, tmp_path):
    out = tmp_path / "maps.hdr"
    first = unmix_large(scene, BoxMeanSpread().fit(scene), out, chunks=CHUNKS)
    assert {"maps_spread.hdr", "maps_spread.img"} <= set(
        json.loads(first.files["run"].read_text())["files"]
    )
    (tmp_path / "notes.txt").write_text("mine")
    unmix_large(scene, BoxMean().fit(scene), out, chunks=CHUNKS, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "maps.hdr",
        "maps.img",
        "maps_run.json",
        "notes.txt",
    ]


def test_two_runs_into_one_store_do_not_mix(envi_path, fcls, scene, tmp_path):
    class Paused(FCLS):
        """Stops in its first transform (the probe of the maps) until released."""

        entered, release = threading.Event(), threading.Event()

        def transform(self, cube, mask=None):
            Paused.entered.set()
            Paused.release.wait(60)
            return super().transform(cube, mask)

    out = tmp_path / "maps.zarr"
    first = Paused(n_endmembers=3, endmembers=fcls.endmembers_[::-1].copy()).fit(scene)
    outcome = {}

    def run_first():
        try:
            outcome["run"] = unmix_large(envi_path, first, out, chunks=CHUNKS)
        except Exception as exc:  # reported in the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert Paused.entered.wait(60)
        with pytest.raises(
            InputError,
            match=rf"another hyperunmix run \(pid {os.getpid()} "
            r".*lock file .*\.maps\.zarr\.lock",
        ):
            unmix_large(envi_path, fcls, out, chunks=CHUNKS)
    finally:
        Paused.release.set()
        thread.join()
    assert "error" not in outcome and open_maps(out).attrs["hyperunmix"]["complete"] is True
    assert_identical(maps_of(out), first.unmix(hio.open_scene(envi_path)).abundances)
    assert not (tmp_path / ".maps.zarr.lock").exists()
