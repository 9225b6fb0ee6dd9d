"""Scene-scale benchmark (issue 16): each method on a whole imaging-spectrometer scene.

    python benchmarks/scene_scale.py [--rows 1242 --cols 1280 | --size 0.25]
        [--methods fcls,egunet,deq,idnet] [--fit-sample 100000] [--chunks 128]
        [--threads 2] [--fit-seconds 120] [--tmp DIR] [--note TEXT ...]
    python benchmarks/scene_scale.py --combine run1/scene_scale.json run2/... [--note ...]

A synthetic scene of EMIT's size and band count (1242 x 1280 px, 285 bands, P = 5 smooth
abundance fields, 30 dB, a no-data corner) is written as an EMIT L2A-layout NetCDF granule
(identity lookup table, so the north-up grid is the swath) in a temporary directory,
deleted afterwards. Each method then runs, in its own process, the command a user runs::

    hyperunmix unmix scene.nc --method M -p 5 --out M.zarr --chunks C --fit-sample N

(deep methods with ``--param max_seconds=S``, their training budget): fitted on a
stratified sample, applied chunk by chunk to the whole scene. Measured per method: wall
time of the whole command, of the fit (until the first chunk is reported) and of the apply
(the chunks), apply throughput in valid pixels per second and its ratio to FCLS's in the
same run, and the peak resident memory of the process (``ru_maxrss``). Then, in this
process, a crop of 2 x 2 chunks of 32 px (from the scene's interior) is unmixed by the
same method fitted on the crop, chunk by chunk and in memory, and the two maps compared
(the issue asks bit for bit for pixel-wise methods, 1e-5 for spatial ones away from chunk
borders and 1e-4 at them).

``--size`` scales both sides (``--size 0.25``: 311 x 320 px) for runs on a busy machine;
BENCHMARKS.md then says which size was measured. Writes
``benchmarks/results/scene_scale.{json,md}`` (``--out`` elsewhere). Methods run in separate
invocations (on a shared machine, as others' changes land) each have FCLS in their run, the
reference of their throughput ratios; ``--combine`` reports such runs together, each with
its own table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EMIT_ROWS, EMIT_COLS, EMIT_BANDS = 1242, 1280, 285
N_ENDMEMBERS = 5
SNR_DB = 30.0
#: Rows generated and written at a time.
BLOCK_ROWS = 64
#: EMIT's fill value, and the CRS / geotransform of its lookup-table grid.
FILL = -9999.0
WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
)
GEOTRANSFORM = (-118.5, 0.000542232, 0.0, 34.2, 0.0, -0.000542232)
#: The issue's goals: seconds end to end, apply throughput as a share of FCLS's, memory.
GOAL_SECONDS = {"fcls": 60.0, "egunet": 600.0, "deq": 600.0, "idnet": 600.0}
GOAL_SHARE = {"egunet": 0.25, "deq": 0.10, "idnet": 0.10}
GOAL_RSS_MB = 2048.0
#: Chunk side of the crop comparison (a crop of 2 x 2 chunks: small enough to fit each
#: method on it in seconds, chunks wide enough for DEQ-Unmix's halo of 8 pixels).
CROP_CHUNKS = 32


# -- the scene ---------------------------------------------------------------------------
def wavelengths() -> np.ndarray:
    return np.linspace(381.0, 2493.0, EMIT_BANDS)


def endmember_spectra() -> np.ndarray:
    """(P, L) analytic reflectance spectra on EMIT's band centres."""
    from hyperunmix.synthetic import make_scene

    truth = make_scene(8, 8, N_ENDMEMBERS, wavelengths=wavelengths(), snr_db=None, seed=0).truth
    assert truth is not None
    return truth.endmembers


def abundance_fields(rows: np.ndarray, n_cols: int) -> np.ndarray:
    """(len(rows), W, P) smooth abundance maps (softmax of sinusoidal fields), sum to one."""
    y = rows[:, None, None].astype(np.float32)
    x = np.arange(n_cols, dtype=np.float32)[None, :, None]
    k = np.arange(N_ENDMEMBERS, dtype=np.float32)[None, None, :]
    fields = 3 * np.sin(y / (90 + 40 * k) + 1.7 * k) + 3 * np.cos(x / (70 + 30 * k) - k)
    fields = np.exp(fields - fields.max(axis=2, keepdims=True))
    return fields / fields.sum(axis=2, keepdims=True)


def scene_block(rows: np.ndarray, n_cols: int, endmembers: np.ndarray) -> np.ndarray:
    """(len(rows), W, L) float32 pixels, noisy, NaN in the no-data corner (top left)."""
    clean = abundance_fields(rows, n_cols) @ endmembers.astype(np.float32)
    rng = np.random.default_rng(int(rows[0]))
    sigma = np.sqrt(np.mean(clean**2) / 10 ** (SNR_DB / 10))
    block = (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)
    corner = (rows[:, None] + np.arange(n_cols)[None, :]) < min(len(rows), n_cols) // 4
    block[corner] = np.nan
    return block


def write_emit_scene(path: Path, n_rows: int, n_cols: int) -> int:
    """Write the scene as an EMIT L2A reflectance granule; returns its valid pixels."""
    import h5netcdf

    endmembers = endmember_spectra()
    good = ~(
        ((wavelengths() > 1320) & (wavelengths() < 1440))
        | ((wavelengths() > 1770) & (wavelengths() < 1960))
    )
    n_valid = 0
    with h5netcdf.File(path, "w") as file:
        file.dimensions = {"downtrack": n_rows, "crosstrack": n_cols, "bands": EMIT_BANDS}
        file.attrs["geotransform"] = np.asarray(GEOTRANSFORM, dtype=np.float64)
        file.attrs["spatial_ref"] = WGS84_WKT
        cube = file.create_variable(
            "reflectance",
            ("downtrack", "crosstrack", "bands"),
            np.float32,
            fillvalue=FILL,
            chunks=(BLOCK_ROWS, min(n_cols, 256), EMIT_BANDS),
        )
        for start in range(0, n_rows, BLOCK_ROWS):
            rows = np.arange(start, min(start + BLOCK_ROWS, n_rows))
            block = scene_block(rows, n_cols, endmembers)
            n_valid += int(np.isfinite(block).all(axis=-1).sum())
            cube[start : rows[-1] + 1] = np.where(np.isnan(block), FILL, block)
        bands = file.create_group("sensor_band_parameters")
        bands.create_variable("wavelengths", ("bands",), data=wavelengths().astype(np.float32))
        bands["wavelengths"].attrs["units"] = "nm"
        bands.create_variable("fwhm", ("bands",), data=np.full(EMIT_BANDS, 8.5, np.float32))
        bands.create_variable("good_wavelengths", ("bands",), data=good.astype(np.int8))
        location = file.create_group("location")
        location.dimensions = {"ortho_y": n_rows, "ortho_x": n_cols}
        # An identity lookup table: the north-up grid is the swath, cell for cell.
        glt_y, glt_x = np.mgrid[1 : n_rows + 1, 1 : n_cols + 1].astype(np.int32)
        location.create_variable("glt_x", ("ortho_y", "ortho_x"), data=glt_x)
        location.create_variable("glt_y", ("ortho_y", "ortho_x"), data=glt_y)
        for name in ("lat", "lon", "elev"):
            location.create_variable(
                name, ("downtrack", "crosstrack"), data=np.zeros((n_rows, n_cols), np.float32)
            )
    return n_valid


# -- one method through the CLI ------------------------------------------------------------
def run_cli(
    method: str, scene: Path, out: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict:
    """``hyperunmix unmix`` chunk by chunk in its own process: wall, fit and apply times
    (the fit ends at the first report of the chunk stage) and its peak resident memory."""
    command = [
        shutil.which("hyperunmix") or "hyperunmix",
        "unmix",
        str(scene),
        "--method",
        method,
        "-p",
        str(N_ENDMEMBERS),
        "--out",
        str(out),
        "--chunks",
        str(args.chunks),
        "--fit-sample",
        str(args.fit_sample),
        "--seed",
        "0",
    ]
    if method != "fcls":
        command += ["--param", f"max_seconds={args.fit_seconds}"]
    else:
        command += ["--endmembers", "vca"]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    apply_start = None
    lines = []
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip())
        if apply_start is None and re.match(r"\s*unmix\b", line):
            apply_start = time.perf_counter()
    _, status, usage = os.wait4(process.pid, 0)
    end = time.perf_counter()
    stdout = process.stdout.read() if process.stdout else ""
    if status != 0 or apply_start is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n" + "\n".join(lines[-20:]) + stdout)
    return {
        "command": " ".join(["hyperunmix", *command[1:]]),
        "seconds": end - start,
        "fit_seconds": apply_start - start,
        "apply_seconds": end - apply_start,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "epochs_line": next((x for x in reversed(lines) if x.lstrip().startswith("epoch")), ""),
    }


# -- chunked against in-memory on a crop ---------------------------------------------------
def crop_agreement(method: str, scene_path: Path, chunks: int, tmp: Path) -> dict:
    """The method fitted on a crop of 2 x 2 chunks from the scene's interior, its maps chunk
    by chunk (``unmix_large``, as the CLI) against one in-memory ``unmix``."""
    import torch

    from hyperunmix.registry import make_method
    from hyperunmix.scale import drop_bad_bands, open_cube, open_maps, unmix_large
    from hyperunmix.scene import Scene

    torch.set_num_threads(1)
    cube = drop_bad_bands(open_cube(scene_path))
    side = 2 * chunks
    top = max(0, (cube.sizes["y"] - side) // 2)
    left = max(0, (cube.sizes["x"] - side) // 2)
    window = cube.isel(y=slice(top, top + side), x=slice(left, left + side)).compute()
    scene = Scene(np.asarray(window.values), name="crop")
    params: dict = {"n_endmembers": N_ENDMEMBERS, "seed": 0}
    if method == "fcls":
        params["endmembers"] = "vca"
    else:
        params["max_seconds"] = 20.0
    model = make_method(method, **params).fit(scene)
    expected = model.unmix(scene).abundances
    run = unmix_large(scene, model, tmp / f"crop-{method}.zarr", chunks=chunks)
    actual = open_maps(run.out)["abundances"].values
    valid = np.isfinite(expected).all(axis=-1)
    same_nan = bool(np.array_equal(np.isnan(actual), np.isnan(expected)))
    diff = np.abs(actual[valid] - expected[valid])
    index = np.arange(side) % chunks
    border = np.minimum(index, chunks - 1 - index) < 2
    at_border = (border[:, None] | border[None, :])[valid]
    return {
        "crop": [top, left, side],
        "same_nan": same_nan,
        "values_differing": int(np.count_nonzero(diff)),
        "max_difference": float(diff.max()) if diff.size else 0.0,
        "max_difference_interior": float(diff[~at_border].max()) if (~at_border).any() else 0.0,
    }


# -- the report ----------------------------------------------------------------------------
def markdown(runs: list[dict], notes: list[str]) -> str:
    """The section of BENCHMARKS.md: each run (its own FCLS row, the ratios' reference)
    with its table, then the notes."""
    lines = ["### A whole imaging-spectrometer scene, chunk by chunk (issue 16)"]
    for results in runs:
        lines += ["", *run_section(results)]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def run_section(results: dict) -> list[str]:
    """One run: what was run, where and when, and its table."""
    scene = results["scene"]
    full = (scene["rows"], scene["cols"]) == (EMIT_ROWS, EMIT_COLS)
    size = (
        "EMIT's full size"
        if full
        else f"**a reduced size, {scene['pixels'] / (EMIT_ROWS * EMIT_COLS):.0%} of EMIT's "
        "pixels: the end-to-end goals are for the full scene**"
    )
    loads = [
        f"{method} {row['load_before']:.1f}"
        for method, row in results["methods"].items()
        if "load_before" in row
    ]
    per_method = f"; as each method started: {', '.join(loads)}" if loads else ""
    # Where this run kept its files is no part of what it measured.
    command = re.sub(r" --(out|tmp) \S+", "", results["command"])
    lines = [
        f"Reproduce: `{command}`. Scene: synthetic EMIT L2A-layout NetCDF, "
        f"{scene['rows']} x {scene['cols']} px x {EMIT_BANDS} bands ({size}), "
        f"{N_ENDMEMBERS} materials, {SNR_DB:g} dB, {scene['valid_pixels']:,} valid pixels "
        f"({scene['bands_used']} bands after EMIT's bad bands). Each method: "
        f"`hyperunmix unmix scene.nc --method M -p {N_ENDMEMBERS} --chunks "
        f"{results['chunks']} --fit-sample {results['fit_sample']:,}` in its own process "
        f"({results['threads']} threads; deep methods with a training budget "
        f"`max_seconds={results['fit_seconds']:g}`). Measured {results['created']} at commit "
        f"{results.get('commit') or '?'} on "
        f"{results['cpu_count']} cores **shared with other jobs** (load average "
        f"{results['load_before']:.1f} before, {results['load_after']:.1f} after{per_method}): "
        "times are inflated; the ratios to FCLS are measured in the same run.",
        "",
        "| method | end to end | fit (sample + training) | epochs trained | apply | apply px/s "
        "| share of FCLS's | peak RSS | chunked vs in-memory (crop) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in results["methods"].items():
        if "error" in row:
            lines.append(f"| {method} | failed: {row['error'][:120]} ||||||||")
            continue
        goal_s = GOAL_SECONDS.get(method)
        share = row.get("share_of_fcls")
        goal_share = GOAL_SHARE.get(method)
        agreement = row.get("agreement", {})
        if not agreement:
            agree = "not measured"
        elif agreement["values_differing"] == 0:
            agree = "identical, bit for bit"
        else:
            agree = (
                f"max {agreement['max_difference']:.1e} "
                f"(interior {agreement['max_difference_interior']:.1e})"
            )
        lines.append(
            f"| {method} | {row['seconds']:.0f} s (goal < {goal_s:.0f} s) "
            f"| {row['fit_seconds']:.0f} s | {_epochs(row['epochs_line'])} "
            f"| {row['apply_seconds']:.0f} s "
            f"| {row['apply_px_per_s']:,.0f} "
            f"| {'' if share is None else f'{share:.1%}'}"
            f"{'' if goal_share is None else f' (goal >= {goal_share:.0%})'} "
            f"| {row['peak_rss_mb']:.0f} MB (goal < {GOAL_RSS_MB:.0f}) | {agree} |"
        )
    return lines


def _epochs(line: str) -> str:
    """``k of N (why it stopped)`` from the last epoch line of the run's progress."""
    found = re.search(r"epoch (\d+)/(\d+)", line)
    if not found:
        return ""
    stop = re.search(r"stop=(\w+)", line)
    return f"{found[1]} of {found[2]}" + (f" ({stop[1]})" if stop else "")


def _commit() -> str | None:
    """The commit of the code measured: ``$BENCH_COMMIT`` (a run from an exported tree),
    else the repository's HEAD."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return found.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=EMIT_ROWS)
    parser.add_argument("--cols", type=int, default=EMIT_COLS)
    parser.add_argument("--size", type=float, help="scale both sides of EMIT's (0 < s <= 1)")
    parser.add_argument("--methods", default="fcls,egunet,deq,idnet")
    parser.add_argument("--fit-sample", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--fit-seconds", type=float, default=120.0, help="deep methods' max_seconds"
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="no run: the report of these runs' scene_scale.json files, in this order",
    )
    parser.add_argument("--no-crop", action="store_true", help="skip the crop comparison")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.combine:
        runs = []
        for path in args.combine:
            stored = json.loads(path.read_text())
            runs += stored.get("runs", [stored])
        write_report(args.out, runs, args.note)
        return 0
    if args.size is not None:
        args.rows, args.cols = round(EMIT_ROWS * args.size), round(EMIT_COLS * args.size)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    env = dict(os.environ)
    env.update({name: str(args.threads) for name in _THREAD_VARIABLES})
    env["DASK_NUM_WORKERS"] = str(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="scene_scale_", dir=args.tmp))
    results: dict = {
        "command": "python benchmarks/scene_scale.py " + " ".join(argv or sys.argv[1:]),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
        "threads": args.threads,
        "chunks": args.chunks,
        "fit_sample": args.fit_sample,
        "fit_seconds": args.fit_seconds,
        "commit": _commit(),
        "methods": {},
    }
    try:
        scene_path = tmp / "scene.nc"
        began = time.perf_counter()
        n_valid = write_emit_scene(scene_path, args.rows, args.cols)
        from hyperunmix.scale import drop_bad_bands, open_cube

        bands_used = drop_bad_bands(open_cube(scene_path)).sizes["band"]
        results["scene"] = {
            "rows": args.rows,
            "cols": args.cols,
            "pixels": args.rows * args.cols,
            "valid_pixels": n_valid,
            "bands_used": int(bands_used),
            "write_seconds": time.perf_counter() - began,
        }
        print(f"scene {args.rows} x {args.cols}: {n_valid:,} valid px", flush=True)
        for method in methods:
            load = os.getloadavg()[0]
            try:
                row = run_cli(method, scene_path, tmp / f"{method}.zarr", args, env)
            except RuntimeError as exc:
                results["methods"][method] = {"error": str(exc)}
                print(exc, flush=True)
                continue
            row["load_before"] = load
            row["apply_px_per_s"] = n_valid / row["apply_seconds"]
            if not args.no_crop:
                row["agreement"] = crop_agreement(method, scene_path, CROP_CHUNKS, tmp)
            results["methods"][method] = row
            shutil.rmtree(tmp / f"{method}.zarr", ignore_errors=True)
            print(method, json.dumps(row), flush=True)
        fcls = results["methods"].get("fcls", {}).get("apply_px_per_s")
        for row in results["methods"].values():
            if fcls and "apply_px_per_s" in row:
                row["share_of_fcls"] = row["apply_px_per_s"] / fcls
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    write_report(args.out, [results], args.note)
    return 0


def write_report(out: Path, runs: list[dict], notes: list[str]) -> None:
    """``scene_scale.json`` (the runs and notes) and ``scene_scale.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scene_scale.json").write_text(
        json.dumps({"runs": runs, "notes": notes}, indent=1) + "\n"
    )
    (out / "scene_scale.md").write_text(markdown(runs, notes))
    print(markdown(runs, notes))


if __name__ == "__main__":
    sys.exit(main())
