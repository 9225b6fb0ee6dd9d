"""Endmember identification: known answers on library spectra (scaled, noisy, missing
bands), continuum removal of an analytic absorption feature, margins, duplicates, the
threshold, and ``hyperunmix unmix --identify`` writing named outputs."""

import json

import numpy as np
import pytest
import rasterio
from sensor_products import EMIT_WAVELENGTHS, write_emit
from typer.testing import CliRunner

import hyperunmix as hu
from hyperunmix import InputError
from hyperunmix.base import Result
from hyperunmix.cli import app
from hyperunmix.identification import continuum_removed, identify, identify_result
from hyperunmix.io import write_library, write_scene
from hyperunmix.spectra import SpectralLibrary, analytic_library

LIBRARY = analytic_library()  # 15 materials, 200 bands 400-2500 nm
#: Relative rounding of the float64 angle computations, in degrees: arccos near 1 loses
#: half the digits, so angles of identical spectra come out near sqrt(eps) rad.
ZERO_ANGLE_DEG = np.degrees(np.sqrt(np.finfo(float).eps)) * 4


def _angle_deg(a, b):
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def test_hu_identify_stays_the_function_once_the_cli_is_imported():
    # The command line imports the module behind hu.identify; a module of the same name
    # would replace the function on the package.
    assert app is not None
    assert hu.identify is identify


def test_library_spectra_scaled_and_noisy_identify_themselves():
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.3, 3.0, size=(LIBRARY.n_spectra, 1))
    noisy = LIBRARY.spectra * scales + rng.normal(0, 0.002, size=LIBRARY.spectra.shape)
    found = identify(noisy, LIBRARY, LIBRARY.wavelengths)
    assert [m[0].material for m in found.matches] == LIBRARY.names
    assert found.labels == LIBRARY.names and found.matched.all()
    # Each score is the angle to that spectrum, the margin the gap to the next material.
    for k, matches in enumerate(found.matches):
        assert len(matches) == 3 and len({m.material for m in matches}) == 3
        for match in matches:
            expected = _angle_deg(noisy[k], LIBRARY.spectra[match.spectrum])
            assert match.angle_deg == pytest.approx(expected, abs=ZERO_ANGLE_DEG)
        assert found.margins_deg[k] == pytest.approx(matches[1].angle_deg - matches[0].angle_deg)
        assert found.margins_deg[k] > 0
    assert found.angles_deg.shape == found.continuum_angles_deg.shape == (15, 15)


def test_exact_spectra_have_zero_angles_by_both_scores():
    found = identify(LIBRARY.spectra * 7.0, LIBRARY, LIBRARY.wavelengths)
    assert np.all(found.best_angles_deg < ZERO_ANGLE_DEG)
    continuum = np.array([m[0].continuum_angle_deg for m in found.matches])
    assert np.all(continuum < ZERO_ANGLE_DEG)
    by_features = identify(LIBRARY.spectra, LIBRARY, LIBRARY.wavelengths, rank_by="continuum")
    assert by_features.labels == LIBRARY.names


def test_library_on_other_bands_is_resampled_with_the_band_widths():
    wavelengths = np.linspace(420, 2450, 120)
    fwhm = np.full(120, 12.0)
    endmembers = analytic_library(wavelengths, fwhm).spectra  # the bands integrated
    found = identify(endmembers, LIBRARY, wavelengths, fwhm=fwhm)
    assert found.labels == LIBRARY.names
    resampled = hu.io.resample_library(LIBRARY, wavelengths, fwhm).spectra
    expected = [_angle_deg(e, r) for e, r in zip(endmembers, resampled)]
    np.testing.assert_allclose(found.best_angles_deg, expected, atol=ZERO_ANGLE_DEG)


def test_bands_a_library_spectrum_lacks_are_left_out_of_its_comparison():
    spectra = LIBRARY.spectra.copy()
    spectra[0, :10] = np.nan  # covers 95 % of the bands
    spectra[1, :40] = np.nan  # covers 80 %: below min_coverage, not compared
    library = SpectralLibrary(spectra, LIBRARY.labels, LIBRARY.names, LIBRARY.wavelengths)
    endmember = LIBRARY.spectra[2] + 0.05
    found = identify(endmember, library, LIBRARY.wavelengths)
    assert found.angles_deg[0, 0] == pytest.approx(
        _angle_deg(endmember[10:], LIBRARY.spectra[0, 10:]), abs=ZERO_ANGLE_DEG
    )
    assert np.isnan(found.angles_deg[0, 1])
    assert "Dry vegetation" not in [m.material for m in found.matches[0]]
    lenient = identify(endmember, library, LIBRARY.wavelengths, min_coverage=0.8)
    assert np.isfinite(lenient.angles_deg[0, 1])


def test_continuum_score_is_the_correlation_of_the_depths_over_the_common_bands():
    spectra = LIBRARY.spectra[[4, 5]].copy()  # Clay and Carbonate
    spectra[0, :12] = np.nan
    library = SpectralLibrary(spectra, [0, 1], ["Clay", "Carbonate"], LIBRARY.wavelengths)
    endmember = LIBRARY.spectra[9] * 1.3  # Gypsum
    found = identify(endmember, library, LIBRARY.wavelengths)
    depths = 1 - continuum_removed(np.vstack([endmember, spectra]), LIBRARY.wavelengths)
    for k, bands in enumerate([slice(12, None), slice(None)]):
        correlation = np.corrcoef(depths[0, bands], depths[k + 1, bands])[0, 1]
        expected = np.degrees(np.arccos(correlation))
        assert found.continuum_angles_deg[0, k] == pytest.approx(expected, abs=ZERO_ANGLE_DEG)


def test_continuum_removal_of_an_analytic_absorption_feature():
    wavelengths = np.linspace(1000.0, 2500.0, 301)
    depth, centre, width = 0.4, 1900.0, 60.0
    feature = depth * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
    continuum = 0.2 + 0.15 * (wavelengths - 1000.0) / 1000.0  # a sloped straight line
    removed = continuum_removed(continuum * (1 - feature), wavelengths)
    # The hull is the line through the end points, where the feature is below 1e-7.
    np.testing.assert_allclose(removed[0], 1 - feature, atol=1e-6)
    # Band order does not matter; values the hull cannot use stay NaN.
    shuffled = np.random.default_rng(0).permutation(wavelengths.size)
    spectrum = (continuum * (1 - feature))[shuffled]
    spectrum[5] = np.nan
    out = continuum_removed(spectrum, wavelengths[shuffled])[0]
    assert np.isnan(out[5])
    np.testing.assert_allclose(np.delete(out, 5), np.delete((1 - feature)[shuffled], 5), atol=1e-6)


def test_continuum_score_ignores_brightness_and_slope():
    wavelengths = np.linspace(1000.0, 2500.0, 301)
    feature = 1 - 0.3 * np.exp(-0.5 * ((wavelengths - 2200.0) / 30.0) ** 2)
    other = 1 - 0.3 * np.exp(-0.5 * ((wavelengths - 2340.0) / 30.0) ** 2)
    library = SpectralLibrary(np.stack([0.5 * feature, 0.5 * other]), [0, 1], ["Al-OH", "CO3"])
    tilted = (0.1 + 0.3 * (wavelengths - 1000.0) / 1500.0) * feature
    found = identify(tilted, library, wavelengths, rank_by="continuum")
    assert found.labels == ["Al-OH"]
    assert found.matches[0][0].continuum_angle_deg < 1e-3
    assert found.matches[0][0].angle_deg > 5  # the slope moves the plain angle


def test_a_material_the_library_lacks_stays_unnamed():
    without_snow = SpectralLibrary(LIBRARY.spectra[:-1], np.arange(14), LIBRARY.names[:-1])
    found = identify(LIBRARY.spectra[[0, 14]], without_snow, LIBRARY.wavelengths)
    assert found.labels == ["Vegetation", "endmember_2"]
    assert list(found.matched) == [True, False]
    nearest = min(_angle_deg(LIBRARY.spectra[14], s) for s in without_snow.spectra)
    assert found.best_angles_deg[1] == pytest.approx(nearest, abs=ZERO_ANGLE_DEG)
    assert nearest > found.max_angle_deg
    strict = identify(LIBRARY.spectra[[0, 14]], without_snow, LIBRARY.wavelengths, max_angle_deg=60)
    assert strict.labels == ["Vegetation", without_snow.names[found.matches[1][0].spectrum]]


def test_two_endmembers_of_one_material_are_told_apart_and_said(recwarn):
    soil = LIBRARY.material("Soil")[0]
    rng = np.random.default_rng(1)
    near, nearer = soil + rng.normal(0, 0.01, soil.shape), soil + rng.normal(0, 0.001, soil.shape)
    endmembers = np.stack([near, LIBRARY.material("Water")[0], nearer])
    result = Result(
        abundances=np.full((2, 2, 3), 1 / 3, np.float32),
        endmembers=endmembers,
        method="fcls",
        wavelengths=LIBRARY.wavelengths,
    )
    named, found = identify_result(result, LIBRARY, library_name="analytic")
    assert found.labels == ["Soil (2)", "Water", "Soil"]  # the closer one has the name
    assert named.names == found.labels and found.duplicates == {"Soil": [2, 0]}
    assert "endmembers 3, 1 all match 'Soil'" in str(recwarn.pop(UserWarning).message)
    record = found.record()
    assert record["library"] == "analytic" and record["duplicates"] == {"Soil": [2, 0]}
    assert record["endmembers"][0]["matches"][0]["material"] == "Soil"


def test_margin_is_over_the_next_material_not_the_next_spectrum_of_the_same():
    soil = LIBRARY.material("Soil")[0]
    bundle = SpectralLibrary(
        np.stack([soil, soil * (1 + 0.01 * np.linspace(0, 1, soil.size)), LIBRARY.spectra[0]]),
        [0, 0, 1],
        ["Soil", "Vegetation"],
    )
    found = identify(soil, bundle)
    assert [m.material for m in found.matches[0]] == ["Soil", "Vegetation"]
    expected = _angle_deg(soil, LIBRARY.spectra[0]) - found.matches[0][0].angle_deg
    assert found.margins_deg[0] == pytest.approx(expected)


def test_labels_keep_separators_out():
    library = SpectralLibrary(LIBRARY.spectra[:1], [0], ["Ulexite GDS138 Boron, CA {x}"])
    assert identify(LIBRARY.spectra[0], library).labels == ["Ulexite GDS138 Boron CA (x)"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"endmembers": np.full((2, 200), np.nan)}, "finite"),
        ({"wavelengths": np.arange(10.0)}, "10 wavelengths given for endmembers of 200"),
        ({"rank_by": "depth"}, "rank_by"),
        ({"min_coverage": 0.0}, "min_coverage"),
        ({"n_matches": 0}, "n_matches"),
        ({"max_angle_deg": -1.0}, "max_angle_deg"),
        ({"library": LIBRARY.spectra}, "SpectralLibrary"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    arguments = {"endmembers": LIBRARY.spectra[:2], "library": LIBRARY, **kwargs}
    with pytest.raises(InputError, match=message):
        identify(**arguments)


def test_a_library_on_other_bands_needs_wavelengths():
    with pytest.raises(InputError, match="the library cannot be resampled"):
        identify(LIBRARY.spectra[:2, :100], LIBRARY)


# -- the command line --------------------------------------------------------------------
def _scene_of(materials, tmp_path):
    """A noiseless 12 x 10 ENVI scene mixing analytic spectra, with pure pixels."""
    endmembers = np.stack([LIBRARY.material(name)[0] for name in materials])
    rng = np.random.default_rng(0)
    abundances = rng.dirichlet(np.ones(len(materials)), size=(12, 10))
    abundances[0, : len(materials)] = np.eye(len(materials))
    scene = hu.Scene(abundances @ endmembers, LIBRARY.wavelengths, fwhm=np.full(200, 10.5))
    return write_scene(tmp_path / "scene.hdr", scene)


#: Options of the CLI tests: VCA endmembers (seed 0) and FCLS abundances, 3 materials.
VCA_FCLS = ["--method", "fcls", "--endmembers", "vca", "--seed", "0", "-p", "3"]


def _unmix(source, *options, out):
    """``hyperunmix unmix SOURCE OPTIONS --out OUT --no-figures``: the CliRunner result."""
    args = ["unmix", source, *options, "--out", out, "--no-figures"]
    return CliRunner().invoke(app, [str(a) for a in args])


def _identification(result, out) -> dict:
    """The identification record of a successful run into ``out``."""
    assert result.exit_code == 0, result.output
    return json.loads((out / "run.json").read_text())["identification"]


def test_unmix_identify_names_maps_columns_and_run_record(tmp_path):
    scene = _scene_of(["Vegetation", "Water", "Snow"], tmp_path)
    without_snow = SpectralLibrary(
        LIBRARY.spectra[:-1], np.arange(14), LIBRARY.names[:-1], LIBRARY.wavelengths
    )
    library = write_library(tmp_path / "library.csv", without_snow)
    out = tmp_path / "out"
    result = _unmix(scene, *VCA_FCLS, "--format", "gtiff", "--identify", library, out=out)
    record = _identification(result, out)
    labels = [e["label"] for e in record["endmembers"]]
    unnamed = [k for k, label in enumerate(labels) if label.startswith("endmember_")]
    assert len(unnamed) == 1 and labels[unnamed[0]] == f"endmember_{unnamed[0] + 1}"
    assert sorted(set(labels) - {labels[unnamed[0]]}) == ["Vegetation", "Water"]
    assert record["library"] == str(library) and record["max_angle_deg"] == 10.0
    for entry in record["endmembers"]:
        assert (entry["matches"][0]["angle_deg"] <= 10.0) == entry["matched"]
    with rasterio.open(out / "abundances.tif") as maps:
        assert list(maps.descriptions) == labels
    header = (out / "endmembers.csv").read_text().splitlines()[0]
    assert header == ",".join(["wavelength_nm", *labels])
    assert "identified in" in result.stdout and "Vegetation" in result.stdout


def test_a_chunked_run_names_its_rasters_columns_and_record(tmp_path):
    """``--chunks`` with ``--identify``: the GeoTIFF bands, the endmember CSV's columns and
    the run record take the names, as in memory; a strict-JSON record (no NaN)."""
    scene = _scene_of(["Vegetation", "Water", "Snow"], tmp_path)
    library_materials = ["Vegetation", "Water"]
    kept = [LIBRARY.names.index(name) for name in library_materials]
    library = write_library(
        tmp_path / "library.csv",
        SpectralLibrary(
            LIBRARY.spectra[kept], np.arange(len(kept)), library_materials, LIBRARY.wavelengths
        ),
    )
    out = tmp_path / "maps.tif"
    args = ["unmix", scene, *VCA_FCLS, "--chunks", "16", "--identify", library, "--out", out]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "maps_run.json").read_text(), parse_constant=_no_nan)
    found = record["identification"]
    labels = [entry["label"] for entry in found["endmembers"]]
    assert sorted(label for label in labels if not label.startswith("endmember_")) == sorted(
        library_materials
    )
    assert found["library"] == str(library)
    with rasterio.open(out) as maps:
        assert list(maps.descriptions) == labels
    header = (tmp_path / "maps_endmembers.csv").read_text().splitlines()[0]
    assert header == ",".join(["wavelength_nm", *labels])
    assert "identified in" in result.stdout


def test_a_chunked_zarr_store_records_the_names(tmp_path):
    scene = _scene_of(["Vegetation", "Water", "Snow"], tmp_path)
    run = hu.scale.unmix_large(
        scene, "fcls", tmp_path / "maps.zarr", params={"n_endmembers": 3}, identify=LIBRARY
    )
    labels = run.identification.labels
    assert sorted(labels) == ["Snow", "Vegetation", "Water"]
    maps = hu.scale.open_maps(tmp_path / "maps.zarr")
    assert list(maps["endmember"].attrs["names"]) == labels
    assert maps.attrs["hyperunmix"]["identification"]["library"] is None
    # Another library names them otherwise: another run, refused without overwrite.
    other = SpectralLibrary(LIBRARY.spectra[:2], np.arange(2), LIBRARY.names[:2])
    with pytest.raises(InputError, match="identification"):
        hu.scale.unmix_large(
            scene, "fcls", tmp_path / "maps.zarr", params={"n_endmembers": 3}, identify=other
        )


def _no_nan(constant):
    raise AssertionError(f"{constant} in a JSON record")


def test_unmix_identify_refuses_an_unknown_library_before_the_fit(tmp_path):
    scene = _scene_of(["Vegetation", "Water"], tmp_path)
    result = _unmix(
        scene, "--method", "fcls", "-p", "2", "--identify", "nowhere", out=tmp_path / "out"
    )
    assert result.exit_code == 2
    assert "nowhere: no such library file or folder" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset,n_unnamed", [("samson", 0), ("jasper_ridge", 1)])
def test_real_endmembers_are_named_as_the_truth_names_them(dataset, n_unnamed, require_data):
    """N-FINDR endmembers of the real scenes, identified in the scene's own bundle library,
    take the names of the truth materials they are matched to, or none: on Jasper Ridge its
    Water pixel lies 14 deg from the truth's Water and 11 deg from the library's."""
    root = require_data(dataset, f"library:{dataset}")
    scene = hu.datasets.load(dataset, data_dir=root)
    library = hu.datasets.load_library(dataset, data_dir=root)
    P = scene.truth.n_endmembers
    endmembers = hu.linear.nfindr(scene.pixels(), P, seed=0)
    found = identify(endmembers, library, scene.wavelengths)
    order = hu.metrics.hungarian(hu.metrics.sad_matrix(scene.truth.endmembers, endmembers))
    named = [k for k in range(P) if found.matched[order[k]]]
    assert len(named) == P - n_unnamed
    assert [found.labels[order[k]] for k in named] == [scene.truth.names[k] for k in named]


def test_unmix_an_emit_granule_names_the_maps_after_usgs_materials(tmp_path, require_data):
    """The issue's command, ``hyperunmix unmix emit.nc --method fcls -p 5 --identify usgs``,
    on an EMIT-layout granule mixing 5 USGS spectra (with pure pixels, 0.002 noise)."""
    root = require_data("library:usgs")
    usgs = hu.datasets.load_library("usgs", data_dir=root)
    materials = [
        "Alunite GDS84 Na03",
        "Kaolinite CM9",
        "Calcite WS272",
        "Hematite GDS27",
        "Lawn_Grass GDS91 (Green)",
    ]
    on_emit = hu.io.resample_library(usgs, EMIT_WAVELENGTHS, 8.5).spectra
    spectra = on_emit[[usgs.names.index(name) for name in materials]]
    spectra[:, 0] = spectra[:, 1]  # 381 nm lies below the library's 383 nm
    rng = np.random.default_rng(0)
    abundances = rng.dirichlet(np.full(5, 0.5), size=(30, 20))
    abundances[0, :5] = np.eye(5)
    swath = abundances @ spectra + rng.normal(0, 0.002, (30, 20, len(EMIT_WAVELENGTHS)))
    granule = write_emit(tmp_path / "EMIT_L2A_RFL_001.nc", swath)
    out = tmp_path / "out"
    options = ["--method", "fcls", "-p", "5", "--identify", "usgs", "--data-dir", root]
    record = _identification(_unmix(granule, *options, out=out), out)
    labels = [entry["label"] for entry in record["endmembers"]]
    assert sorted(labels) == sorted(materials)
    with rasterio.open(out / "abundances.tif") as maps:
        assert list(maps.descriptions) == labels and maps.crs.to_epsg() == 4326


def test_unmix_identify_reads_a_usgs_folder_of_two_band_sets_on_the_scene_bands(tmp_path):
    """splib07a spectra come on several instruments' bands: the folder is read resampled to
    the scene's bands (with its FWHM), so it takes no wavelengths of its own."""
    grids = {"ASD": np.arange(350.0, 2501.0, 5.0), "BECK": np.arange(200.0, 3001.0, 10.0)}
    folder = tmp_path / "ASCIIdata_splib07a"
    (folder / "ChapterM").mkdir(parents=True)
    for number, (instrument, grid) in enumerate(grids.items()):
        values = "\n".join(f"{w / 1000:.6e}" for w in grid)
        title = f"splib07a Record={number}: Wavelengths {instrument} microns"
        (folder / f"splib07a_Wavelengths_{instrument}.txt").write_text(f" {title}\n{values}\n")
    for number, (name, instrument) in enumerate(
        [("Vegetation", "ASDFRa"), ("Water", "ASDFRa"), ("Snow", "BECKa")], start=10
    ):
        grid = grids["ASD" if instrument.startswith("ASD") else "BECK"]
        values = "\n".join(f"{v:.7e}" for v in analytic_library(grid).material(name)[0])
        title = f"splib07a Record={number}: {name} X1        {instrument} AREF"
        (folder / "ChapterM" / f"splib07a_{name}_{instrument}_AREF.txt").write_text(
            f" {title}\n{values}\n"
        )
    scene = _scene_of(["Vegetation", "Water", "Snow"], tmp_path)
    out = tmp_path / "out"
    record = _identification(_unmix(scene, *VCA_FCLS, "--identify", folder, out=out), out)
    labels = sorted(entry["label"] for entry in record["endmembers"])
    assert labels == ["Snow X1", "Vegetation X1", "Water X1"]
