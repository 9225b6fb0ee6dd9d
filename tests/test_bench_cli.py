"""``hyperunmix bench`` as a user runs it: planning, a small real run with the classical
methods on a catalogue scene and on a user scene given by path with its truth file."""

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hyperunmix.bench.cli import bench_command
from hyperunmix.bench.runner import read_results
from hyperunmix.bench.scenes import read_truth, resolve, user_scene
from hyperunmix.errors import FileFormatError, InputError
from hyperunmix.synthetic import make_scene

app = typer.Typer()
app.command()(bench_command)
runner = CliRunner()


def test_dry_run_lists_the_plan_without_running(tmp_path):
    result = runner.invoke(
        app, ["--methods", "vca,fcls", "--quick", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    # 2 methods x 3 quick scenes x 3 seeds (classical quick budget)
    assert "18 runs planned, 0 already done" in result.output
    assert not (tmp_path / "runs").exists()


def test_methods_help_names_every_benchmark_variant():
    from hyperunmix.bench.plans import VARIANTS

    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    missing = [name for name in VARIANTS if name not in result.output]
    assert not missing, f"--methods' help does not name {missing}"


def test_unknown_dataset_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["--datasets", "samsonn", "--out", str(tmp_path)])
    assert isinstance(result.exception, InputError)
    assert "unknown benchmark dataset(s) samsonn" in str(result.exception)


@pytest.fixture
def user_files(tmp_path):
    """A noiseless scene with pure pixels saved as .npy, its truth as .npz."""
    scene = make_scene(12, 12, 3, alpha=0.3, snr_db=None, seed=3)
    np.save(tmp_path / "field.npy", scene.cube)
    np.savez(
        tmp_path / "field_truth.npz",
        abundances=scene.truth.abundances,
        endmembers=scene.truth.endmembers,
        names=np.array(scene.truth.names),
    )
    return tmp_path / "field.npy", tmp_path / "field_truth.npz"


def test_bench_runs_catalogue_and_user_scenes(tmp_path, user_files):
    cube, truth = user_files
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "--methods",
            "vca,atgp",
            "--datasets",
            "synthetic_linear_30db",
            "--scene",
            f"{cube}={truth}",
            "--seeds",
            "2",
            "--quick",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = read_results(out)["runs"]
    assert len(runs) == 2 * 2 * 2 and all(r["status"] == "ok" for r in runs)
    assert {r["dataset"] for r in runs} == {"synthetic_linear_30db", "field"}
    field = [r["metrics"] for r in runs if r["dataset"] == "field" and r["method"] == "vca"]
    names = list(np.load(truth)["names"])
    assert all(m["armse"] < 0.05 and m["names"] == names for m in field)  # nearly pure pixels
    assert (out / "report.html").stat().st_size > 10_000
    # a second invocation finds everything done
    again = runner.invoke(
        app,
        [
            "--methods",
            "vca,atgp",
            "--datasets",
            "synthetic_linear_30db",
            "--scene",
            f"{cube}={truth}",
            "--seeds",
            "2",
            "--quick",
            "--out",
            str(out),
            "--dry-run",
        ],
    )
    assert "8 runs planned, 8 already done" in again.output


def test_catalogue_has_the_promised_scenes():
    names = [spec.name for spec in resolve("all")]
    assert names == ["samson", "jasper_ridge"] + [
        f"synthetic_{family}_{snr}db"
        for family in ("linear", "bilinear", "variability", "illumination")
        for snr in (20, 30)
    ] + ["synthetic_spatial_15db", "synthetic_spatial_20db", "synthetic_spatial3_variability_30db"]
    quick = resolve("all", quick=True)
    assert len(quick) == 3 and all(s.options["n_rows"] < 32 for s in quick)


def test_tuning_scenes_are_the_benchmark_recipes_with_other_seeds():
    from hyperunmix.bench.scenes import SCENE_SEED, tuning_catalogue

    benchmark = {spec.name: spec for spec in resolve("all")}
    tuning = tuning_catalogue()
    assert not set(tuning) & set(benchmark)
    assert all(spec.options["seed"] != SCENE_SEED for spec in tuning.values())
    recipe = {k: v for k, v in tuning["tune_linear_20db_s7001"].options.items() if k != "seed"}
    assert recipe == {
        k: v for k, v in benchmark["synthetic_linear_20db"].options.items() if k != "seed"
    }


def test_truth_files_are_checked(tmp_path, user_files):
    cube, truth = user_files
    scene = user_scene(f"{cube}={truth}").build()
    pixels = np.load(truth)["abundances"].reshape(-1, 3)
    np.savez(tmp_path / "flat.npz", abundances=pixels)  # (N, P) in row-major order
    assert np.array_equal(
        read_truth(tmp_path / "flat.npz", scene).abundances, scene.truth.abundances
    )
    np.savez(tmp_path / "wrong.npz", abundances=pixels[:-1])
    with pytest.raises(InputError, match="one row per pixel"):
        read_truth(tmp_path / "wrong.npz", scene)
    np.savez(tmp_path / "empty.npz", other=pixels)
    with pytest.raises(FileFormatError, match="neither 'abundances' nor 'endmembers'"):
        read_truth(tmp_path / "empty.npz", scene)
    with pytest.raises(InputError, match="has no ground truth"):
        user_scene(str(cube)).build()
    with pytest.raises(InputError, match="does not exist"):
        user_scene(f"{cube}={tmp_path / 'missing.npz'}")


def test_full_plan_gives_classical_methods_10_seeds_and_deep_ones_5(tmp_path):
    from hyperunmix.bench.plans import benchmark_methods
    from hyperunmix.registry import METHODS

    methods = benchmark_methods(METHODS)
    assert {
        "egunet_pw",
        "deq_unrolled",
        "deq_no_correction",
        "egunet_labels",
        "idnet_no_nonlinear",
        "idnet_no_variability",
        "snnls_nfindr",
    } <= set(methods)
    n_deep = sum(target.startswith("hyperunmix.deep.") for target, _ in methods.values())
    result = runner.invoke(app, ["--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    expected = 13 * (10 * (len(methods) - n_deep) + 5 * n_deep)
    assert f"{expected} runs planned" in result.output
    assert "idnet        jasper_ridge" in result.output
    assert "'preset': 'jasper_ridge'" in result.output
    assert "'variant': 'pw'" in result.output and "'solver': 'unrolled'" in result.output


def _records(*statuses):
    return [
        {
            "status": status,
            "method": "vca",
            "dataset": "field",
            "seed": seed,
            "error": None if status == "ok" else "ValueError: broken",
        }
        for seed, status in enumerate(statuses)
    ]


@pytest.mark.parametrize(
    "statuses, exit_code, summary",
    [
        (("failed", "timeout"), 1, "2 runs (2 failed)"),
        (("ok", "failed"), 0, "2 runs (1 failed)"),
        (("ok", "ok"), 0, "2 runs (0 failed)"),
    ],
)
def test_exit_status_says_whether_anything_was_measured(
    tmp_path, monkeypatch, statuses, exit_code, summary
):
    monkeypatch.setattr(
        "hyperunmix.bench.cli.run_benchmark", lambda *args, **kwargs: _records(*statuses)
    )
    result = runner.invoke(app, ["--methods", "vca", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == exit_code, result.output
    assert summary in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == (
        [
            "error: every one of the 2 runs failed (each run's error is in "
            f"{tmp_path / 'results.json.gz'})"
        ]
        if exit_code
        else []
    )
