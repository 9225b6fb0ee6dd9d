"""Real datasets and libraries: shapes, scaling, pixel order (F vs C), checksums, errors;
their download (from a local mirror) and ``hyperunmix datasets download``."""

import dataclasses
import hashlib
import http.server
import os
import re
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs
import pytest
import scipy.io
from typer.testing import CliRunner

from hyperunmix import datasets
from hyperunmix.cli import app
from hyperunmix.errors import DataNotFoundError, FileFormatError, InputError
from hyperunmix.metrics import sad_matrix

pytest_plugins = ["pytester"]


def relative_residual(cube, abundances, endmembers):
    """|Y - A E| / |Y| over all pixels."""
    pixels = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    residual = pixels - abundances.reshape(-1, abundances.shape[-1]) @ endmembers
    return np.linalg.norm(residual) / np.linalg.norm(pixels)


def check_simplex(abundances):
    assert abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(axis=-1), 1.0, atol=1e-9)


@pytest.fixture(scope="module")
def jasper(require_data):
    return datasets.load("jasper_ridge", require_data("jasper_ridge"))


@pytest.fixture(scope="module")
def samson(require_data):
    return datasets.load("samson", require_data("samson"))


# -- loading ---------------------------------------------------------------------------------
def test_jasper_ridge_shapes_scale_and_wavelengths(jasper):
    assert jasper.cube.shape == (100, 100, 198)
    assert jasper.cube.dtype == np.float32
    assert jasper.truth.abundances.shape == (100, 100, 4)
    assert jasper.truth.endmembers.shape == (4, 198)
    assert jasper.truth.names == ["Tree", "Water", "Dirt", "Road"]
    assert jasper.truth.endmember_scale == "absolute"
    assert jasper.metadata["format"] == "mat"
    # uint16 / 5000: reflectance up to about 1.09, not digital numbers.
    assert 1.0 < jasper.cube.max() < 1.1
    # SlectBands 4..219 (1-based) of the AVIRIS table: 399.37 to 2457.24 nm.
    assert jasper.wavelengths[0] == pytest.approx(399.37, abs=0.01)
    assert jasper.wavelengths[-1] == pytest.approx(2457.24, abs=0.01)
    check_simplex(jasper.truth.abundances)


def test_samson_shapes_wavelengths_and_shape_only_endmembers(samson):
    assert samson.cube.shape == (95, 95, 156)
    assert samson.truth.abundances.shape == (95, 95, 3)
    assert samson.truth.names == ["Soil", "Tree", "Water"]
    np.testing.assert_allclose(samson.wavelengths[[0, 1, -1]], [401.0, 404.148387, 889.0])
    # Each truth endmember is max-normalised to 1, hence compared by angle only.
    assert samson.truth.endmember_scale == "shape"
    np.testing.assert_allclose(samson.truth.endmembers.max(axis=1), 1.0, atol=1e-3)
    check_simplex(samson.truth.abundances)


def test_jasper_ridge_pixel_order_matches_truth(jasper):
    """The F-order proof: the truth reconstructs the loaded cube to 0.175 relative error;
    the same file read in C order (what a naive reshape gives) does not fit at all."""
    truth = jasper.truth
    assert relative_residual(jasper.cube, truth.abundances, truth.endmembers) == pytest.approx(
        0.1745, abs=0.002
    )
    raw = scipy.io.loadmat(jasper.metadata["path"])["Y"]
    c_order = (raw.T / 5000.0).reshape(100, 100, 198)
    np.testing.assert_allclose(c_order, jasper.cube.transpose(1, 0, 2), rtol=1e-6)
    assert relative_residual(c_order, truth.abundances, truth.endmembers) > 0.6


def test_samson_pixel_order_matches_truth(samson):
    """Samson's truth endmembers are only shapes, so fit their scale: the truth abundances
    explain the loaded cube far better than its transpose."""
    abundances = samson.truth.abundances.reshape(-1, 3)

    def fitted_residual(cube):
        pixels = cube.reshape(-1, 156).astype(np.float64)
        endmembers = np.linalg.lstsq(abundances, pixels, rcond=None)[0]
        return np.linalg.norm(pixels - abundances @ endmembers) / np.linalg.norm(pixels)

    assert fitted_residual(samson.cube) < 0.35
    assert fitted_residual(samson.cube.transpose(1, 0, 2)) > 0.45


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(InputError, match="samson, jasper_ridge"):
        datasets.load("indian_pines")


# -- where the files are ---------------------------------------------------------------------
def test_missing_files_error_names_the_download_command(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        datasets.load("jasper_ridge", data_dir=tmp_path)
    message = str(info.value)
    assert f"`hyperunmix datasets download jasper_ridge --data-dir {tmp_path}`" in message
    for relpath in (
        "jasper_ridge/jasperRidge2_R198.mat",
        "jasper_ridge/end4.mat",
        "libraries/AVIRIS_wavelengths.mat",
    ):
        assert str(tmp_path / relpath) in message
    assert "HYPERUNMIX_DATA" in message
    assert "the data_dir argument" in message


@pytest.mark.parametrize(
    "load, name, download_name",
    [
        (datasets.load, "samson", "samson"),
        (datasets.load_library, "usgs", "library:usgs"),
        (datasets.load_abundance_maps, "spatial_3em", "maps:spatial_3em"),
    ],
)
def test_each_loader_names_what_to_download(tmp_path, monkeypatch, load, name, download_name):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(tmp_path))
    with pytest.raises(
        DataNotFoundError, match=f"`hyperunmix datasets download {download_name}`, or point"
    ):
        load(name)


def test_data_directory_comes_from_env_then_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERUNMIX_DATA", str(tmp_path))
    assert datasets.data_home() == tmp_path
    assert datasets.data_home("/elsewhere") == Path("/elsewhere")
    with pytest.raises(DataNotFoundError, match=r"\$HYPERUNMIX_DATA"):
        datasets.load("samson")
    monkeypatch.delenv("HYPERUNMIX_DATA")
    assert str(datasets.data_home()) == platformdirs.user_data_dir("hyperunmix")


def test_wrong_checksum_names_file_and_both_hashes(tmp_path, require_data):
    (tmp_path / "samson").mkdir()
    os.symlink(
        require_data("samson") / "samson" / "samson_1.mat", tmp_path / "samson" / "samson_1.mat"
    )
    damaged = tmp_path / "samson" / "end3.mat"
    damaged.write_bytes(b"not the ground truth")
    with pytest.raises(FileFormatError) as info:
        datasets.load("samson", data_dir=tmp_path)
    message = str(info.value)
    assert str(damaged) in message
    assert hashlib.md5(b"not the ground truth").hexdigest() in message
    assert datasets.FILES["samson/end3.mat"].md5 in message
    assert "`hyperunmix datasets download samson --data-dir" in message  # the way to repair


def test_checksum_is_computed_once_per_file(require_data):
    data_dir = require_data("samson")
    datasets.load("samson", data_dir)
    misses = datasets._md5.cache_info().misses
    datasets.load("samson", data_dir)
    assert datasets._md5.cache_info().misses == misses


def test_available_reports_presence(require_data, tmp_path):
    data_dir = require_data("samson", "jasper_ridge")
    present = {status.name: status for status in datasets.available(data_dir)}
    assert set(present) == {"samson", "jasper_ridge"}
    assert all(status.present for status in present.values())
    assert present["samson"].path == data_dir / "samson"
    name, is_present, path = datasets.available(tmp_path)[1]
    assert (name, is_present, path) == ("jasper_ridge", False, tmp_path / "jasper_ridge")


# -- libraries and abundance maps --------------------------------------------------------------
@pytest.mark.parametrize("name, n_spectra", [("samson", 105), ("jasper_ridge", 529)])
def test_bundle_library_follows_truth_order(require_data, name, n_spectra):
    data_dir = require_data(name, f"library:{name}")
    scene = datasets.load(name, data_dir)
    library = datasets.load_library(name, data_dir)
    assert library.spectra.shape == (n_spectra, scene.n_bands)
    assert library.names == scene.truth.names
    np.testing.assert_array_equal(library.wavelengths, scene.wavelengths)
    # Every bundle spectrum is closest in angle to the truth endmember of its label.
    nearest = sad_matrix(library.spectra, scene.truth.endmembers).argmin(axis=1)
    np.testing.assert_array_equal(nearest, library.labels)


def test_usgs_library_sorted_and_named(require_data):
    data_dir = require_data("library:usgs")
    library = datasets.load_library("usgs", data_dir)
    assert library.spectra.shape == (498, 224)
    assert np.all(np.diff(library.wavelengths) > 0)
    assert library.wavelengths[0] == pytest.approx(383.15, abs=0.01)
    assert library.wavelengths[-1] == pytest.approx(2508.2, abs=0.01)
    assert library.spectra.min() > 0.004 and library.spectra.max() < 1.03
    assert library.names[0] == "Acmite NMNH133746"
    assert library.names[-1] == "Walnut_Leaf SUN (Green)"
    np.testing.assert_array_equal(library.labels, np.arange(498))
    # Row 32 of the file (664.3 nm, the second spectrometer's first channel) follows the
    # first spectrometer's channel 29 (657.3 nm) and precedes its 29th (667.3 nm).
    raw = scipy.io.loadmat(data_dir / "libraries" / "USGS_1995_Library.mat")["datalib"]
    assert library.wavelengths[29] == pytest.approx(1000 * raw[32, 0])
    np.testing.assert_array_equal(library.spectra[:, 29], raw[32, 3:])
    np.testing.assert_array_equal(library.spectra[:, 30], raw[29, 3:])


@pytest.mark.parametrize(
    "name, shape",
    [("spatial2", (100, 100, 9)), ("spatial_3em", (50, 50, 3)), ("squares_3em", (70, 70, 3))],
)
def test_abundance_maps(require_data, name, shape):
    maps = datasets.load_abundance_maps(name, require_data(f"maps:{name}"))
    assert maps.shape == shape
    check_simplex(maps)


# -- downloading, from a local mirror ----------------------------------------------------------
class Mirror(NamedTuple):
    served: Path  # what the server serves, laid out like the data directory
    data: Path  # the data directory ($HYPERUNMIX_DATA) the downloads go to
    requests: list[str]  # the paths requested from the server, in order


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A server on the loopback address serving a small stand-in of every file, named by
    $HYPERUNMIX_DATA_URL, with FILES holding the stand-ins' md5s; $HYPERUNMIX_DATA is an
    empty temporary directory."""
    served, data = tmp_path / "served", tmp_path / "data"
    for relpath, entry in datasets.FILES.items():
        content = f"stand-in for {relpath}\n".encode()
        (served / relpath).parent.mkdir(parents=True, exist_ok=True)
        (served / relpath).write_bytes(content)
        monkeypatch.setitem(
            datasets.FILES,
            relpath,
            dataclasses.replace(entry, md5=hashlib.md5(content).hexdigest()),
        )
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            requests.append(self.path.lstrip("/"))
            super().do_GET()

        def log_message(self, *args):  # no access log in the test output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HYPERUNMIX_DATA_URL", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("HYPERUNMIX_DATA", str(data))
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy configured for CI cannot see it
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 0)  # no retries (they wait seconds)
    yield Mirror(served, data, requests)
    server.shutdown()
    server.server_close()
    thread.join()


def files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_download_puts_every_file_at_its_path_once(mirror):
    fetched = datasets.download()
    assert sorted(fetched.path for fetched in fetched) == sorted(
        mirror.data / relpath for relpath in datasets.FILES
    )
    assert all(fetched.downloaded for fetched in fetched)
    assert files_under(mirror.data) == files_under(mirror.served)
    plain = mirror.data / "plain"
    plain.write_bytes(b"")  # permissions as the umask gives them (pooch's temporaries: 0600)
    for relpath in datasets.FILES:
        assert (mirror.data / relpath).read_bytes() == (mirror.served / relpath).read_bytes()
        assert (mirror.data / relpath).stat().st_mode == plain.stat().st_mode
    plain.unlink()
    assert sorted(mirror.requests) == sorted(datasets.FILES)
    # Everything present with the right md5: the second call requests nothing.
    again = datasets.download()
    assert [fetched.path for fetched in again] == [fetched.path for fetched in fetched]
    assert not any(fetched.downloaded for fetched in again)
    assert len(mirror.requests) == len(datasets.FILES)


def test_download_by_name_fetches_those_files_only_each_once(mirror):
    fetched = datasets.download(["jasper_ridge", "Library:Jasper-Ridge", "maps:spatial2"])
    expected = [
        "jasper_ridge/jasperRidge2_R198.mat",
        "jasper_ridge/end4.mat",
        "libraries/AVIRIS_wavelengths.mat",  # needed by both, fetched once
        "libraries/spectral_library_jasperRidge.mat",
        "synthetic_abundances/spatial2.mat",
    ]
    assert [fetched.path for fetched in fetched] == [mirror.data / rel for rel in expected]
    assert mirror.requests == expected
    assert files_under(mirror.data) == sorted(expected)
    reports = {}
    fetched = datasets.download(
        "samson",
        progress=lambda stage, done, total, info: reports.setdefault(stage, []).append(
            (done, total)
        ),
    )
    sizes = [(mirror.served / rel).stat().st_size for rel in datasets.DOWNLOADS["samson"]]
    assert [fetched.size for fetched in fetched] == sizes
    # The progress of each file, in bytes: last at its size.
    assert [reports[rel][-1] for rel in datasets.DOWNLOADS["samson"]] == [
        (size, size) for size in sizes
    ]


def test_every_file_has_a_name_to_download_it_by():
    assert {relpath for files in datasets.DOWNLOADS.values() for relpath in files} == set(
        datasets.FILES
    )


def test_download_replaces_a_damaged_copy(mirror):
    damaged = mirror.data / "samson" / "end3.mat"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"damaged")
    assert [fetched.downloaded for fetched in datasets.download("samson")] == [True, True]
    assert damaged.read_bytes() == (mirror.served / "samson" / "end3.mat").read_bytes()


def test_download_refuses_a_file_with_the_wrong_md5(mirror, monkeypatch):
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 1)
    (mirror.served / "samson" / "end3.mat").write_bytes(b"tampered")
    with pytest.raises(FileFormatError) as info:
        datasets.download("samson")
    message = str(info.value)
    assert "\n" not in message
    assert re.match(r"http://127\.0\.0\.1:\d+/samson/end3\.mat: ", message)
    assert hashlib.md5(b"tampered").hexdigest() in message
    assert datasets.FILES["samson/end3.mat"].md5 in message
    assert mirror.requests.count("samson/end3.mat") == 2  # retried once, refused twice
    # Nothing under the final name, and no temporary file left: only the good first file.
    assert files_under(mirror.data) == ["samson/samson_1.mat"]


def test_download_of_an_unknown_name_fails_before_downloading_anything(mirror):
    with pytest.raises(InputError) as info:
        datasets.download(["samson", "indian_pines"])
    assert str(info.value) == (
        "unknown name 'indian_pines'; available: samson, jasper_ridge, library:samson, "
        "library:jasper_ridge, library:usgs, maps:spatial2, maps:spatial_3em, "
        "maps:squares_3em"
    )
    assert mirror.requests == []
    assert not mirror.data.exists()


def test_download_of_a_file_the_mirror_lacks(mirror):
    (mirror.served / "libraries" / "USGS_1995_Library.mat").unlink()
    with pytest.raises(
        DataNotFoundError,
        match=r"^cannot download http://127\.0\.0\.1:\d+/"
        r"libraries/USGS_1995_Library\.mat: 404",
    ):
        datasets.download("library:usgs")
    assert files_under(mirror.data) == []


def test_download_into_an_unwritable_place(mirror, tmp_path):
    not_a_directory = tmp_path / "a_file"
    not_a_directory.write_text("")
    with pytest.raises(InputError, match=f"^cannot write {not_a_directory}/samson/"):
        datasets.download("samson", not_a_directory)


def test_files_come_from_their_repository_at_its_commit_or_from_the_mirror(monkeypatch):
    monkeypatch.delenv("HYPERUNMIX_DATA_URL", raising=False)
    assert datasets.FILES["samson/end3.mat"].url == (
        "https://raw.githubusercontent.com/mabdolali/MaxVol_Dual/"
        "2ceb4f74f119163163a1851e24a4c7d71d1015f7/data/Samson/end3.mat"
    )
    assert all(
        re.fullmatch("[0-9a-f]{40}", entry.repository.commit) for entry in datasets.FILES.values()
    )
    monkeypatch.setenv("HYPERUNMIX_DATA_URL", "https://lab.example/hsi/")
    assert datasets.FILES["samson/end3.mat"].url == "https://lab.example/hsi/samson/end3.mat"


# -- the command line --------------------------------------------------------------------------
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def one_line_error(result) -> str:
    """The error of a failed command: status 2, one line, the last of stderr (after the
    progress lines of the files downloaded before)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    return lines[-1]


def test_download_command_reports_each_file(mirror, tmp_path):
    data = tmp_path / "elsewhere"
    first = invoke("datasets", "download", "samson", "--data-dir", data)
    assert first.exit_code == 0, first.output
    sizes = [(mirror.served / rel).stat().st_size for rel in datasets.DOWNLOADS["samson"]]
    assert first.stdout.splitlines() == [
        f"downloaded  {data / 'samson' / 'samson_1.mat'}  ({sizes[0]:,} bytes)",
        f"downloaded  {data / 'samson' / 'end3.mat'}  ({sizes[1]:,} bytes)",
        f"2 downloaded, 0 already present with the right md5, in {data}",
    ]
    assert "samson/end3.mat" in first.stderr  # its progress
    assert files_under(data) == ["samson/end3.mat", "samson/samson_1.mat"]
    second = invoke("datasets", "download", "samson", "--data-dir", data)
    assert second.exit_code == 0, second.output
    assert [line.split()[0] for line in second.stdout.splitlines()[:2]] == ["present"] * 2
    assert second.stdout.splitlines()[-1].startswith("0 downloaded, 2 already present")
    assert len(mirror.requests) == 2


def test_download_command_uses_the_data_directory_of_every_command(mirror, tmp_path):
    # No --data-dir: $HYPERUNMIX_DATA, where `datasets` then finds the files.
    assert invoke("datasets", "download", "samson").exit_code == 0
    listed = invoke("datasets").stdout.splitlines()
    assert next(line for line in listed if "samson" in line).split()[3] == "yes"
    assert files_under(mirror.data) == ["samson/end3.mat", "samson/samson_1.mat"]
    # `datasets --data-dir D download` downloads into D.
    other = tmp_path / "other"
    assert invoke("datasets", "--data-dir", other, "download", "maps:squares_3em").exit_code == 0
    assert files_under(other) == ["synthetic_abundances/abundance_squares_3em.mat"]


def test_download_command_errors_are_one_line(mirror):
    assert "unknown name 'indian_pines'; available: samson" in one_line_error(
        invoke("datasets", "download", "indian_pines")
    )
    (mirror.served / "samson" / "end3.mat").write_bytes(b"tampered")
    assert "does not match the known hash" in one_line_error(
        invoke("datasets", "download", "samson")
    )
    assert not (mirror.data / "samson" / "end3.mat").exists()


def test_download_help_names_everything_it_downloads():
    result = invoke("datasets", "download", "--help")
    assert result.exit_code == 0
    for name in datasets.DOWNLOADS:
        assert name in result.stdout


def test_missing_dataset_points_to_the_download_command(tmp_path):
    listed = invoke("datasets", "--data-dir", tmp_path)
    assert (
        f"download the missing ones: hyperunmix datasets download samson jasper_ridge "
        f"--data-dir {tmp_path}"
    ) in listed.stdout
    error = one_line_error(
        invoke("unmix", "samson", "-m", "vca", "--out", tmp_path / "out", "--data-dir", tmp_path)
    )
    assert f"`hyperunmix datasets download samson --data-dir {tmp_path}`" in error


# -- the tests' own data lookup ----------------------------------------------------------------
def test_tests_needing_absent_data_skip_naming_the_download_command(
    pytester, tmp_path, monkeypatch
):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile("""
        def test_maps(require_data):
            require_data("samson", "maps:spatial2")

        def test_everything(data_dir):
            pass
        """)
    monkeypatch.setenv("HYPERUNMIX_DATA", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            (
                f"SKIPPED * samson, maps:spatial2 not in the data directory {tmp_path}; download "
                "with `hyperunmix datasets download samson maps:spatial2`"
            ),
            (
                f"SKIPPED * samson, jasper_ridge, library:samson, * not in the data directory "
                f"{tmp_path}; download with `hyperunmix datasets download`"
            ),
        ]
    )
    monkeypatch.setenv("CI", "true")  # CI provides the data: their absence is a failure
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1, errors=1)
