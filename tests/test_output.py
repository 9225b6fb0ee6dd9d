"""Writing a Result to a directory: formats, georeferencing, names, metrics, figures."""

import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio

from hyperunmix import GeoInfo, InputError, Result, Scene, Truth
from hyperunmix.io import open_scene, read_endmembers
from hyperunmix.output import map_format, save_result

NAMES = ["Soil", "Tree", "Water"]
GEO = GeoInfo(crs="EPSG:32611", transform=(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0))


def _truth_and_result(order=(0, 1, 2), source_format=None, geo=None):
    """A 4 x 5 x 8-band problem; the result is the truth with materials in ``order``."""
    rng = np.random.default_rng(0)
    abundances = rng.dirichlet(np.ones(3), size=(4, 5))
    endmembers = rng.random((3, 8)) + 0.1
    truth = Truth(abundances=abundances, endmembers=endmembers, names=NAMES)
    mask = np.ones((4, 5), bool)
    mask[0, 0] = False
    estimate = abundances[..., list(order)].astype(np.float32)
    estimate[0, 0] = np.nan
    result = Result(
        abundances=estimate,
        endmembers=endmembers[list(order)],
        method="fcls",
        params={"n_endmembers": 3, "tol": np.float64(np.inf)},
        wavelengths=np.linspace(400, 900, 8),
        geo=geo,
        mask=mask,
        source_format=source_format,
        scene_name="tiny",
        fit_seconds=0.5,
    )
    return truth, result


def test_default_layout_for_a_numpy_source(tmp_path):
    truth, result = _truth_and_result()
    written = save_result(result, tmp_path / "out", truth=truth)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "abundances.npy",
        "abundances.npz",
        "abundances.png",
        "endmembers.csv",
        "endmembers.png",
        "metrics.json",
        "run.json",
    ]
    assert written["abundances"].name == "abundances.npz"
    saved = np.load(written["abundances_npy"])
    assert saved.dtype == np.float32 and saved.shape == (4, 5, 3)
    np.testing.assert_array_equal(saved, result.abundances)  # NaN at the masked pixel
    with np.load(written["abundances"]) as archive:
        np.testing.assert_array_equal(archive["maps"], result.abundances)
    spectra, wavelengths, csv_names = read_endmembers(written["endmembers"])
    np.testing.assert_allclose(spectra, result.endmembers)
    np.testing.assert_allclose(wavelengths, result.wavelengths)
    assert csv_names == NAMES


def test_geotiff_source_gives_georeferenced_maps_named_by_matching(tmp_path):
    order = (2, 0, 1)
    truth, result = _truth_and_result(order, source_format="gtiff", geo=GEO)
    written = result.save(tmp_path, truth=truth)
    with rasterio.open(written["abundances"]) as dataset:
        assert dataset.crs.to_epsg() == 32611
        assert tuple(dataset.transform)[:6] == GEO.transform
        # bands keep the estimator's order, each named after its matched material
        assert list(dataset.descriptions) == [NAMES[k] for k in order]
        np.testing.assert_allclose(dataset.read(1)[1:], truth.abundances[1:, :, 2], rtol=1e-6)
    _, _, csv_names = read_endmembers(written["endmembers"])
    assert csv_names == [NAMES[k] for k in order]
    metrics = json.loads(written["metrics"].read_text())
    assert metrics["matching"]["permutation"] == [1, 2, 0]
    assert metrics["armse"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("fmt, suffix", [("envi", ".hdr"), ("netcdf", ".nc")])
def test_format_override_round_trips(tmp_path, fmt, suffix):
    _, result = _truth_and_result(source_format="gtiff", geo=GEO)
    written = save_result(result, tmp_path, fmt=fmt, figures=False)
    assert written["abundances"].suffix == suffix
    maps = open_scene(written["abundances"])
    assert maps.geo is not None and maps.geo.transform == GEO.transform
    np.testing.assert_allclose(maps.cube[result.mask], result.abundances[result.mask])
    assert not maps.mask[0, 0]
    assert maps.metadata["band_names"] == ["endmember_1", "endmember_2", "endmember_3"]


def test_extras_are_written_by_dimensionality(tmp_path):
    _, result = _truth_and_result()
    result.extras = {
        "uncertainty": np.full((4, 5, 3), 0.1, np.float32),
        "nonlinearity": np.full((4, 5), 0.2, np.float32),
        "pixel_endmembers": np.ones((4, 5, 3, 8), np.float32),
    }
    written = save_result(result, tmp_path, figures=False)
    assert written["uncertainty"].name == "uncertainty.npz"
    assert written["nonlinearity"].name == "nonlinearity.npz"
    with np.load(written["nonlinearity"]) as archive:
        assert archive["maps"].shape == (4, 5, 1)
    np.testing.assert_array_equal(
        np.load(written["pixel_endmembers"]), result.extras["pixel_endmembers"]
    )


def test_run_record_and_metrics_are_strict_json(tmp_path):
    truth, result = _truth_and_result()
    scene = Scene(np.nan_to_num(truth.abundances @ truth.endmembers), truth=truth)
    written = save_result(result, tmp_path, truth=truth, scene=scene, figures=False)
    run = json.loads(written["run"].read_text(), parse_constant=pytest.fail)
    assert run["method"] == "fcls" and run["scene"] == "tiny"
    assert run["params"] == {"n_endmembers": 3, "tol": None}  # inf is not JSON
    assert run["fit_seconds"] == 0.5 and run["shape"] == [4, 5, 3]
    assert "metrics.json" in run["files"] and "hyperunmix" in run["versions"]
    metrics = json.loads(written["metrics"].read_text(), parse_constant=pytest.fail)
    assert metrics["reconstruction_rmse"] == pytest.approx(0.0, abs=1e-6)


def test_without_truth_or_endmembers(tmp_path):
    _, result = _truth_and_result()
    result.endmembers = None
    written = save_result(result, tmp_path)
    assert {"metrics", "endmembers", "figure_endmembers"}.isdisjoint(written)
    assert written["figure_abundances"].is_file()


def test_no_partial_files_are_left(tmp_path):
    truth, result = _truth_and_result()
    save_result(result, tmp_path, truth=truth)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_destinations_and_formats(tmp_path):
    _, result = _truth_and_result()
    target = tmp_path / "a_file"
    target.write_text("")
    with pytest.raises(InputError, match="not a directory"):
        save_result(result, target)
    with pytest.raises(InputError, match="unknown output format 'jpeg'"):
        save_result(result, tmp_path, fmt="jpeg")


def test_map_format_follows_the_source_family():
    assert map_format("gtiff") == "gtiff"
    assert map_format("envi") == "envi"
    assert map_format("netcdf") == "netcdf"
    assert map_format("mat") == map_format("npy") == map_format(None) == "npz"
    assert map_format("mat", fmt="GTiff") == "gtiff"


# -- a reused directory: nothing stale, nothing foreign replaced, one run at a time --------
def test_rewriting_a_directory_removes_the_files_of_the_earlier_run_only(tmp_path):
    truth, first = _truth_and_result()
    first.extras = {"uncertainty": np.full((4, 5, 3), 0.1, np.float32)}
    save_result(first, tmp_path, truth=truth, fmt="envi")
    assert {"metrics.json", "uncertainty.hdr", "uncertainty.img", "abundances.img"} <= set(
        json.loads((tmp_path / "run.json").read_text())["files"]
    )
    (tmp_path / "notes.txt").write_text("mine")
    _, second = _truth_and_result()
    second.method = "vca"
    written = save_result(second, tmp_path, figures=False)
    # no metrics, uncertainty, ENVI pair or figure of the first run beside the second's maps
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "abundances.npy",
        "abundances.npz",
        "endmembers.csv",
        "notes.txt",
        "run.json",
    ]
    run = json.loads(written["run"].read_text())
    assert run["method"] == "vca" and run["complete"] is True
    assert run["files"] == ["abundances.npy", "abundances.npz", "endmembers.csv"]


def test_files_no_run_wrote_are_replaced_only_with_overwrite(tmp_path):
    _, result = _truth_and_result()
    (tmp_path / "abundances.npy").write_bytes(b"not hyperunmix's")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"abundances\.npy exists.*--overwrite"):
        save_result(result, tmp_path)
    assert (tmp_path / "abundances.npy").read_bytes() == b"not hyperunmix's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abundances.npy", "notes.txt"]
    written = result.save(tmp_path, overwrite=True)
    np.testing.assert_array_equal(np.load(written["abundances_npy"]), result.abundances)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # a run.json that is not a run record lists nothing, and is not replaced either
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"run\.json exists"):
        save_result(result, other, figures=False)


def test_two_runs_into_one_directory_do_not_mix(tmp_path, monkeypatch):
    from hyperunmix import output

    _, first = _truth_and_result()
    _, second = _truth_and_result(order=(2, 1, 0))
    second.method = "vca"
    entered, release = threading.Event(), threading.Event()
    write_npy = output._write_npy

    def paused_once(path, values):  # the first run stops while writing its maps
        if not entered.is_set():
            entered.set()
            release.wait(60)
        return write_npy(path, values)

    monkeypatch.setattr(output, "_write_npy", paused_once)
    failures = []
    writer = threading.Thread(
        target=lambda: _record_failure(failures, save_result, first, tmp_path, figures=False)
    )
    writer.start()
    try:
        assert entered.wait(60)
        with pytest.raises(
            InputError,
            match=rf"another hyperunmix run \(pid {os.getpid()} "
            r".*lock file .*\.hyperunmix\.lock",
        ):
            save_result(second, tmp_path, figures=False)
    finally:
        release.set()
        writer.join()
    assert failures == []
    assert json.loads((tmp_path / "run.json").read_text())["method"] == "fcls"
    np.testing.assert_array_equal(np.load(tmp_path / "abundances.npy"), first.abundances)
    assert not (tmp_path / ".hyperunmix.lock").exists()
    save_result(second, tmp_path, figures=False)  # once the first one is done


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    _, result = _truth_and_result()
    lock = tmp_path / ".hyperunmix.lock"
    host = socket.gethostname()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(ended.stdout)
    lock.write_text(json.dumps({"pid": dead, "host": host, "token": "old"}))
    with pytest.warns(UserWarning, match=rf"took over the lock .* of pid {dead}"):
        save_result(result, tmp_path, figures=False)
    assert not lock.exists()
    for holder in ({"pid": os.getpid(), "host": host}, {"pid": dead, "host": "elsewhere"}):
        lock.write_text(json.dumps(holder))
        with pytest.raises(InputError, match=rf"pid {holder['pid']} on {holder['host']}"):
            save_result(result, tmp_path, figures=False)
        assert lock.exists()  # another run's lock is left to it


def _record_failure(failures, function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except Exception as exc:  # reported by the test in the main thread
        failures.append(exc)
