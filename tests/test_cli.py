"""The command line, through typer's CliRunner: outputs, exit codes and one-line errors."""

import io
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import psutil
import pytest
import spectral.io.envi as spectral_envi
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from hyperunmix import Scene, Unmixer
from hyperunmix.cli import app, parse_params, run_with_progress
from hyperunmix.io import write_endmembers_csv
from hyperunmix.progress import ProgressBars

runner = CliRunner()
#: Unit roundoff of float32: one rounding errs relatively by at most this.
U32 = np.finfo(np.float32).eps / 2


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


#: A progress line of a step, as stderr shows it off a terminal (hyperunmix.progress).
PROGRESS_LINE = re.compile(r"\S+ \d+/\d+( \S+=\S+)*(  elapsed \S+  (left \S+|done|stopped))?")


def _one_line_error(result, status=2):
    """The error of a failed command: one line, the last on stderr, after at most the
    progress lines of the steps done before the failure."""
    assert result.exit_code == status, result.output
    *before, line = result.stderr.strip().splitlines()
    assert line.startswith("error: "), result.stderr
    assert all(PROGRESS_LINE.fullmatch(other) for other in before), result.stderr
    return line


@pytest.fixture
def small_scene(tmp_path):
    """A noiseless 6 x 5 x 12-band .npy cube of 3 known endmembers, and their CSV."""
    rng = np.random.default_rng(0)
    endmembers = rng.random((3, 12)) + 0.1
    abundances = rng.dirichlet(np.ones(3), size=(6, 5))
    cube_path, csv_path = tmp_path / "cube.npy", tmp_path / "endmembers.csv"
    np.save(cube_path, (abundances @ endmembers).astype(np.float32))
    write_endmembers_csv(csv_path, endmembers)
    return cube_path, csv_path, abundances


def test_demo_writes_maps_spectra_metrics_and_figures(tmp_path):
    result = _invoke("demo", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for name in (
        "abundances.npz",
        "abundances.npy",
        "endmembers.csv",
        "metrics.json",
        "run.json",
        "abundances.png",
        "endmembers.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert np.load(tmp_path / "abundances.npy").shape == (64, 64, 4)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["armse"] < 0.05 and metrics["msad_deg"] < 10
    assert "armse" in result.stdout


def test_unmix_npy_with_an_endmember_file_recovers_the_abundances(tmp_path, small_scene):
    cube_path, csv_path, abundances = small_scene
    out = tmp_path / "out"
    result = _invoke(
        "unmix",
        cube_path,
        "--method",
        "fcls",
        "--endmembers",
        csv_path,
        "--out",
        out,
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out / "abundances.npy"), abundances, atol=1e-4)
    assert not (out / "metrics.json").exists()  # no truth in a bare cube
    assert not list(out.glob("*.png"))
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == "fcls" and run["map_format"] == "npz"


def test_unmix_passes_method_params_parsed_as_json(tmp_path, small_scene):
    cube_path, csv_path, _ = small_scene
    # (an output directory of its own: tmp_path holds the input endmembers.csv, which the
    # run would otherwise replace)
    result = _invoke(
        "unmix",
        cube_path,
        "-m",
        "sunsal",
        "--endmembers",
        csv_path,
        "--param",
        "lam=0.001",
        "--param",
        "asc=true",
        "--out",
        tmp_path / "out",
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "out" / "run.json").read_text())["params"]
    assert params["lam"] == 0.001 and params["asc"] is True


def test_a_truth_in_another_convention_is_named_in_the_summary(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(data_dir))
    result = _invoke(
        "unmix", "samson", "--method", "nfindr", "-p", 3, "--out", tmp_path, "--no-figures"
    )
    assert result.exit_code == 0, result.output
    summary = " ".join(result.stdout.replace("│", " ").split())  # cells wrap over lines
    assert "the absolute maps were converted" in summary and "--convention shares" in summary


def test_unmix_a_dataset_by_name_writes_metrics(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(data_dir))
    result = _invoke(
        "unmix", "samson", "--method", "vca", "--seed", 0, "--out", tmp_path, "--no-figures"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["names"]) == {"Soil", "Tree", "Water"}
    assert metrics["msad_deg"] < 10  # VCA finds Samson's spectra
    assert np.load(tmp_path / "abundances.npy").shape == (95, 95, 3)


def test_snnls_on_samson_scores_in_the_truths_convention(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(data_dir))
    result = _invoke(
        "unmix",
        "samson",
        "--method",
        "snnls",
        "--endmembers",
        "nfindr",
        "-p",
        3,
        "--out",
        tmp_path,
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["convention"] == metrics["result_convention"] == "shares"
    assert metrics["armse"] <= 0.06
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["convention"] == "shares" and "unit-peak" in run["convention_meaning"]
    assert "shares: shares of unit-peak" in result.stdout


def test_unmix_writes_the_convention_asked_for(tmp_path, small_scene):
    from hyperunmix.conventions import convert
    from hyperunmix.io import read_endmembers

    cube_path, csv_path, abundances = small_scene
    endmembers = read_endmembers(csv_path)[0]
    own = _invoke(
        "unmix",
        cube_path,
        "-m",
        "fcls",
        "--endmembers",
        csv_path,
        "--out",
        tmp_path / "own",
        "--no-figures",
    )
    shares = _invoke(
        "unmix",
        cube_path,
        "-m",
        "fcls",
        "--endmembers",
        csv_path,
        "--convention",
        "shares",
        "--out",
        tmp_path / "shares",
        "--no-figures",
    )
    assert own.exit_code == shares.exit_code == 0, shares.output
    assert json.loads((tmp_path / "own" / "run.json").read_text())["convention"] == "absolute"
    assert json.loads((tmp_path / "shares" / "run.json").read_text())["convention"] == "shares"
    np.testing.assert_allclose(
        np.load(tmp_path / "shares" / "abundances.npy"),
        convert(abundances, endmembers, "absolute", "shares"),
        atol=1e-4,
    )
    line = _one_line_error(
        _invoke("unmix", cube_path, "-m", "fcls", "--convention", "area", "--out", tmp_path / "bad")
    )
    assert "absolute, shares" in line and not (tmp_path / "bad").exists()


def test_chunked_unmix_writes_a_zarr_store_that_resumes_and_a_tif(tmp_path):
    from hyperunmix import synthetic
    from hyperunmix.conventions import convert
    from hyperunmix.io import open_scene, write_scene
    from hyperunmix.linear import fcls
    from hyperunmix.scale import open_maps

    scene = synthetic.make_scene(40, 30, 3, abundances="fields", seed=1)
    cube = write_scene(tmp_path / "scene.hdr", scene)
    args = ("unmix", cube, "--method", "fcls", "--endmembers", "vca", "-p", 3, "--chunks", 16)
    first = _invoke(*args, "--out", tmp_path / "maps.zarr")
    assert first.exit_code == 0, first.output
    assert "6 (0 already written)" in first.stdout  # 3 x 2 chunks of 16 px
    again = _invoke(*args, "--out", tmp_path / "maps.zarr")
    assert "6 (6 already written)" in again.stdout
    maps = open_maps(tmp_path / "maps.zarr")
    endmembers = maps["endmembers"].values
    # chunk by chunk equals FCLS of the whole scene with the same endmembers, up to the
    # maps' float32 rounding (u for values at most one) and float64 noise
    expected = fcls(open_scene(cube).cube.astype(np.float64), endmembers)
    np.testing.assert_allclose(maps["abundances"].values, expected, atol=2 * U32)
    tif = _invoke(*args, "--out", tmp_path / "maps.tif")
    assert tif.exit_code == 0, tif.output
    assert (tmp_path / "maps.tif").is_file() and (tmp_path / "maps_endmembers.csv").is_file()
    error = _one_line_error(_invoke(*args, "--out", tmp_path / "x.zarr", "--read", "rows=4"))
    assert "does not apply to a chunked run" in error
    # another convention is another run: it cannot resume (or mix into) this store
    shares = _invoke(*args, "--convention", "shares", "--out", tmp_path / "maps.zarr")
    assert shares.exit_code == 2 and "--overwrite" in shares.stderr
    shares = _invoke(*args, "--convention", "shares", "--out", tmp_path / "shares.zarr")
    assert shares.exit_code == 0 and "shares: shares of unit-peak" in shares.stdout
    # converted from the float32 abundances (their rounding moves a share by 2u at most),
    # then rounded to float32 again
    np.testing.assert_allclose(
        open_maps(tmp_path / "shares.zarr")["abundances"].values,
        convert(expected, endmembers, "absolute", "shares"),
        atol=4 * U32,
    )


def test_missing_file_is_one_line(tmp_path):
    line = _one_line_error(
        _invoke("unmix", tmp_path / "nope.hdr", "-m", "fcls", "--out", tmp_path / "out")
    )
    assert "nope.hdr" in line and "no such file" in line
    assert not (tmp_path / "out").exists()


def test_unknown_method_is_one_line(tmp_path, small_scene):
    line = _one_line_error(_invoke("unmix", small_scene[0], "-m", "magic", "--out", tmp_path))
    assert "unknown method 'magic'" in line and "fcls" in line


def test_more_endmembers_than_bands_is_one_line(tmp_path):
    np.save(tmp_path / "thin.npy", np.random.default_rng(1).random((4, 4, 3)))
    line = _one_line_error(
        _invoke("unmix", tmp_path / "thin.npy", "-m", "vca", "-p", 5, "--out", tmp_path / "out")
    )
    assert "exceeds the number of bands (3)" in line


def test_band_mismatch_is_one_line(tmp_path, small_scene):
    cube_path = small_scene[0]
    write_endmembers_csv(tmp_path / "short.csv", np.ones((3, 7)))
    line = _one_line_error(
        _invoke(
            "unmix",
            cube_path,
            "-m",
            "fcls",
            "--endmembers",
            tmp_path / "short.csv",
            "--out",
            tmp_path / "out",
        )
    )
    assert "12" in line and "7" in line


def test_bad_options_are_one_line(tmp_path, small_scene):
    cube_path = small_scene[0]
    line = _one_line_error(
        _invoke("unmix", cube_path, "-m", "vca", "--param", "alpha", "--out", tmp_path)
    )
    assert "key=value" in line
    line = _one_line_error(
        _invoke("unmix", cube_path, "-m", "vca", "--device", "cpu", "--out", tmp_path)
    )
    assert "does not take device" in line
    line = _one_line_error(
        _invoke("unmix", cube_path, "-m", "vca", "--format", "jpeg", "--out", tmp_path)
    )
    assert "unknown output format 'jpeg'" in line
    # an --out that cannot be a directory is refused before any fitting
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    line = _one_line_error(
        _invoke("unmix", cube_path, "-m", "deq", "--param", "epochs=100000", "--out", occupied)
    )
    assert "exists and is not a directory" in line


def test_unexpected_errors_are_one_line_unless_debug(tmp_path, small_scene, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("hyperunmix.output.save_result", broken)
    args = ("unmix", small_scene[0], "-m", "vca", "-p", 3, "--out", tmp_path)
    line = _one_line_error(_invoke(*args), status=1)
    assert "RuntimeError: disk on fire" in line and "--debug" in line
    debug = _invoke("--debug", *args)
    assert isinstance(debug.exception, RuntimeError)


def test_info_describes_a_file(tmp_path, small_scene):
    result = _invoke("info", small_scene[0])
    assert result.exit_code == 0, result.output
    assert "6 x 5 px, 12 bands" in result.stdout and "float32" in result.stdout
    assert "missing" in _one_line_error(_invoke("info", tmp_path / "missing.tif"))


def test_info_refuses_what_open_refuses_and_describes_a_spectral_library(tmp_path):
    cube = np.ones((3, 4, 5), np.float32)
    spectral_envi.save_image(str(tmp_path / "cut.hdr"), cube, ext=".img")
    with open(tmp_path / "cut.img", "r+b") as data:
        data.truncate(100)
    line = _one_line_error(_invoke("info", tmp_path / "cut.hdr"))
    assert "cut.img is truncated" in line
    unmix = _invoke("unmix", tmp_path / "cut.hdr", "-m", "vca", "-p", 2, "--out", tmp_path / "o")
    assert _one_line_error(unmix) == line  # the same message as the read's
    spectral_envi.save_image(
        str(tmp_path / "zero.hdr"), cube, ext=".img", metadata={"reflectance scale factor": 0}
    )
    assert "reflectance scale factor of 0" in _one_line_error(
        _invoke("info", tmp_path / "zero.hdr")
    )
    library = spectral_envi.SpectralLibrary(
        np.ones((3, 5)), {"wavelength": [400, 500, 600, 700, 800]}, {}
    )
    library.save(str(tmp_path / "lib"))
    described = _invoke("info", tmp_path / "lib.sli")
    assert described.exit_code == 0, described.output
    assert "spectral library: 3 spectra, 5 bands" in described.stdout
    assert "400.0 - 800.0 nm" in described.stdout


def test_a_cube_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    np.save(tmp_path / "cube.npy", np.ones((8, 8, 16), np.float32))
    memory = psutil.virtual_memory()._replace(available=1000)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    line = _one_line_error(
        _invoke("unmix", tmp_path / "cube.npy", "-m", "vca", "-p", 2, "--out", tmp_path / "o")
    )
    assert "of memory available: unmix it in chunks" in line and "--chunks 512" in line


def test_datasets_lists_presence_and_location(tmp_path, data_dir):
    present = _invoke("datasets", "--data-dir", data_dir)
    assert present.exit_code == 0
    assert "samson" in present.stdout and "yes" in present.stdout
    absent = _invoke("datasets", "--data-dir", tmp_path)
    rows = [line for line in absent.stdout.splitlines() if "jasper_ridge" in line]
    assert rows and " no " in rows[0]


def test_parse_params():
    assert parse_params(
        ["n=5", "tol=1e-3", "flag=false", "bands=[1, 2]", "name=vca", "path=a=b"]
    ) == {"n": 5, "tol": 1e-3, "flag": False, "bands": [1, 2], "name": "vca", "path": "a=b"}


class _Counting(Unmixer):
    """Reports three steps of progress while fitting."""

    name = "counting"

    def _fit(self, scene):
        for step in range(1, 4):
            self._report("epochs", step, 3, loss=1.0 / step)
        self.n_bands_ = scene.n_bands

    def _transform_pixels(self, pixels):
        return np.ones((len(pixels), 1))


def test_progress_bars_follow_the_estimator_reports():
    progress = Progress(console=Console(file=io.StringIO()))
    bars = ProgressBars(progress)
    model = _Counting().set_progress(bars)
    model.fit(Scene(np.ones((2, 2, 3))))
    (task,) = progress.tasks
    assert (task.completed, task.total) == (3, 3)
    assert task.description == "epochs loss=0.3333"
    result = run_with_progress(_Counting(), Scene(np.ones((2, 2, 3))))
    assert result.abundances.shape == (2, 2, 1)


class _Elapsed:
    """Equal to the ``elapsed H:MM:SS`` of any progress line."""

    def __eq__(self, other):
        return isinstance(other, str) and re.fullmatch(r"elapsed \d+:\d\d:\d\d", other) is not None

    def __repr__(self):
        return "elapsed H:MM:SS"


ANY_ELAPSED = _Elapsed()


def test_progress_is_written_in_lines_when_stderr_is_not_a_terminal(tmp_path, small_scene):
    # CliRunner's stderr is not a terminal: plain lines, and nothing else (no blank line)
    cube_path, csv_path, _ = small_scene
    quiet = _invoke(
        "unmix",
        cube_path,
        "-m",
        "fcls",
        "--endmembers",
        csv_path,
        "--out",
        tmp_path / "fcls",
        "--no-figures",
    )
    assert quiet.exit_code == 0, quiet.output
    # one line per stage, as it ends, with the time it took
    assert [line.split("  ") for line in quiet.stderr.splitlines()] == [
        ["fit 1/1 method=fcls", ANY_ELAPSED, "done"],
        ["unmix 1/1 method=fcls", ANY_ELAPSED, "done"],
    ]
    deep = _invoke(
        "unmix",
        cube_path,
        "-m",
        "egunet",
        "-p",
        3,
        "--param",
        "epochs=2",
        "--out",
        tmp_path / "egunet",
        "--no-figures",
    )
    assert deep.exit_code == 0, deep.output
    lines = deep.stderr.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith("epoch")] == ["fit", "unmix"]
    epochs = [line for line in lines if line.startswith("epoch")]
    assert epochs[0].startswith("epoch 1/2 loss=")
    assert epochs[-1].startswith("epoch 2/2 loss=") and epochs[-1].endswith("  done")
    # stopped early on a plateau (any two epochs are one at this min_delta): said once
    stopped = _invoke(
        "unmix",
        cube_path,
        "-m",
        "egunet",
        "-p",
        3,
        *("--param", "epochs=50", "--param", "patience=1", "--param", "min_delta=1e9"),
        "--out",
        tmp_path / "stopped",
        "--no-figures",
    )
    assert stopped.exit_code == 0, stopped.output
    epochs = [line for line in stopped.stderr.splitlines() if line.startswith("epoch")]
    assert epochs[0].startswith("epoch 1/50 loss=") and len(epochs) == 2
    assert re.fullmatch(r"epoch 2/50 loss=\S+ .*stop=plateau  elapsed \S+  stopped", epochs[1])
    chunked = _invoke(
        "unmix",
        _chunked_scene(tmp_path),
        "-m",
        "fcls",
        "--endmembers",
        "vca",
        "-p",
        3,
        "--chunks",
        16,
        "--out",
        tmp_path / "maps.tif",
    )
    assert chunked.exit_code == 0, chunked.output
    lines = chunked.stderr.splitlines()
    assert lines[0].startswith("sample 1/1 pixels=200000  elapsed ")
    ends = [line.split()[:2] for line in lines if line.endswith("  done")]
    assert ends == [["sample", "1/1"], ["unmix", "6/6"], ["export", "1/1"]]
    for result in (quiet, deep, stopped, chunked):
        assert "" not in result.stderr.splitlines()


# -- outputs -------------------------------------------------------------------------------
def _chunked_scene(tmp_path, name="scene.hdr"):
    from hyperunmix import synthetic
    from hyperunmix.io import write_scene

    return write_scene(tmp_path / name, synthetic.make_scene(40, 30, 3, seed=1))


def test_an_output_that_cannot_be_written_fails_before_the_fit(tmp_path, small_scene, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before the output was checked")

    monkeypatch.setattr("hyperunmix.cli.run_with_progress", no_fit)
    monkeypatch.setattr("hyperunmix.scale.run._fitted_unmixer", no_fit)
    (tmp_path / "a-file").write_text("")
    line = _one_line_error(
        _invoke("unmix", small_scene[0], "-m", "vca", "-p", 3, "--out", tmp_path / "a-file" / "out")
    )
    assert "cannot write the output to" in line and "a-file" in line
    cube = _chunked_scene(tmp_path)
    for out in ("maps.zarr", "maps.tif"):
        line = _one_line_error(
            _invoke(
                "unmix",
                cube,
                "-m",
                "fcls",
                "--endmembers",
                "vca",
                "-p",
                3,
                "--chunks",
                16,
                "--out",
                tmp_path / "a-file" / out,
            )
        )
        assert "a-file exists and is not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_fails_before_the_fit(tmp_path, small_scene):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    line = _one_line_error(
        _invoke(
            "unmix", small_scene[0], "-m", "deq", "--param", "epochs=100000", "--out", read_only
        )
    )
    assert "cannot write the output to" in line


def test_chunked_run_never_replaces_its_input(tmp_path):
    from hyperunmix.io import describe

    cube = _chunked_scene(tmp_path, "same.hdr")
    args = (
        "unmix",
        cube,
        "-m",
        "fcls",
        "--endmembers",
        "vca",
        "-p",
        3,
        "--chunks",
        16,
        "--out",
        cube,
    )
    for extra in ((), ("--overwrite",)):
        line = _one_line_error(_invoke(*args, *extra))
        assert "same.hdr is an input of this run" in line
    assert describe(cube)["shape"] == (40, 30, 200)  # still the 200-band input


def test_files_not_written_by_a_run_need_overwrite(tmp_path, small_scene):
    cube_path, csv_path, abundances = small_scene
    out = tmp_path / "out"
    out.mkdir()
    (out / "abundances.npy").write_bytes(b"someone's")
    args = (
        "unmix",
        cube_path,
        "-m",
        "fcls",
        "--endmembers",
        csv_path,
        "--out",
        out,
        "--no-figures",
    )
    line = _one_line_error(_invoke(*args))
    assert "abundances.npy exists" in line and "--overwrite" in line
    assert (out / "abundances.npy").read_bytes() == b"someone's"
    replaced = _invoke(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    np.testing.assert_allclose(np.load(out / "abundances.npy"), abundances, atol=1e-4)
    assert _invoke(*args).exit_code == 0  # its own files: replaced freely


def test_an_output_being_written_is_refused_at_once_and_a_stale_lock_taken_over(tmp_path):
    cube = _chunked_scene(tmp_path)
    lock = tmp_path / ".maps.zarr.lock"
    args = (
        "unmix",
        cube,
        "-m",
        "fcls",
        "--endmembers",
        "vca",
        "-p",
        3,
        "--chunks",
        16,
        "--out",
        tmp_path / "maps.zarr",
    )
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    line = _one_line_error(_invoke(*args))
    assert f"pid {os.getpid()}" in line and str(lock) in line
    assert not (tmp_path / "maps.zarr").exists()
    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    lock.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    taken = _invoke(*args)
    assert taken.exit_code == 0, taken.output
    assert f"warning: took over the lock {lock} of pid {dead}" in taken.stderr
    assert not lock.exists() and (tmp_path / "maps.zarr").is_dir()


def test_a_refused_checkpoint_is_named_in_plain_text(tmp_path):
    import torch

    from hyperunmix.deep._common import load_checkpoint
    from hyperunmix.errors import FileFormatError

    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "whole-model.pt")
    with pytest.raises(FileFormatError) as refused:
        load_checkpoint(tmp_path / "whole-model.pt", "deq")
    message = str(refused.value)
    assert "\x1b" not in message and "\n" not in message  # no terminal escape codes
    assert "not a hyperunmix checkpoint" in message and "Linear" in message
