"""Scale-out benchmark: FCLS on a synthetic ENVI scene of at least 4 GB, chunk by chunk.

    python benchmarks/scale_bench.py [--gib 4] [--bands 128] [--chunks 320] [--tmp /tmp]

Generates the scene in a temporary directory (deleted afterwards), then runs, each in its
own process, ``hyperunmix.scale.unmix_large(scene, "fcls", out.zarr,
params={"n_endmembers": P})`` (VCA endmembers fitted on a 200 000-pixel stratified sample,
then FCLS chunk by chunk),
the run ``hyperunmix unmix scene.hdr --method fcls --endmembers vca -p P --out out.zarr
--chunks C`` makes:

1. on dask's threaded scheduler: peak resident memory of the whole process (VmHWM)
   and FCLS throughput (valid pixels per second of the unmixing stage);
2. on a ``LocalCluster`` of 2 worker processes on loopback: the maps, compared bit for bit
   with run 1;
3. killed (SIGKILL) once 40 % of the chunks are written, then rerun: the maps, compared bit
   for bit with run 1.

Run 1 is made twice, with 1 and with 2 threads. In this process, FCLS on an in-memory scene
that fits (the first rows of the same file, same endmembers, one thread) gives the in-memory
throughput, compared with the 1-thread chunked run (same compute, so the ratio is the cost of
chunking: reading, scheduling, writing); its maps are compared with run 1's. Every process
uses one BLAS thread, as dask.distributed sets for its workers: several dask threads each
running a multi-threaded BLAS oversubscribe the cores. Writes
``benchmarks/results/scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before NumPy loads its BLAS; inherited by the runs

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: Columns of the generated scene (its rows follow from the size asked for).
N_COLS = 2048
N_ENDMEMBERS = 4
SNR_DB = 30.0
#: Rows generated and written at a time.
BLOCK_ROWS = 64
#: Rows of the in-memory reference scene, and how many times it is unmixed just before and
#: just after the 1-thread chunked run (the median time counts: the load of a shared
#: machine varies from minute to minute).
IN_MEMORY_ROWS = 512
IN_MEMORY_REPEATS = 3
#: Share of chunks written before the run is killed.
KILL_AT = 0.4
GEO_HEADER = "map info = {UTM, 1, 1, 500000, 4100000, 5, 5, 11, North, WGS-84}\n"


# -- the scene ---------------------------------------------------------------------------
def endmember_spectra(n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, L) analytic spectra and their (L,) wavelengths in nm."""
    from hyperunmix.synthetic import make_scene

    wavelengths = np.linspace(400.0, 2500.0, n_bands)
    truth = make_scene(8, 8, N_ENDMEMBERS, wavelengths=wavelengths, snr_db=None, seed=0).truth
    return truth.endmembers, wavelengths


def abundance_fields(rows: np.ndarray, n_cols: int) -> np.ndarray:
    """(len(rows), W, P) smooth abundance maps (softmax of sinusoidal fields), sum to one."""
    y = rows[:, None, None].astype(np.float32)
    x = np.arange(n_cols, dtype=np.float32)[None, :, None]
    k = np.arange(N_ENDMEMBERS, dtype=np.float32)[None, None, :]
    fields = 3 * np.sin(y / (90 + 40 * k) + 1.7 * k) + 3 * np.cos(x / (70 + 30 * k) - k)
    weights = np.exp(fields - fields.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def write_scene(directory: Path, n_rows: int, n_bands: int) -> Path:
    """A BIL float32 ENVI scene of n_rows x N_COLS x n_bands, georeferenced (UTM 11N, 5 m),
    with a no-data wedge (NaN) along its left edge, as at the edge of a flight line."""
    endmembers, wavelengths = endmember_spectra(n_bands)
    signal_power = float(np.mean(endmembers**2))
    sigma = np.float32(np.sqrt(signal_power / 10 ** (SNR_DB / 10)))
    rng = np.random.default_rng(0)
    data = directory / "scene.bil"
    with open(data, "wb") as stream:
        for top in range(0, n_rows, BLOCK_ROWS):
            rows = np.arange(top, min(top + BLOCK_ROWS, n_rows))
            block = abundance_fields(rows, N_COLS) @ endmembers.astype(
                np.float32
            ) + sigma * rng.standard_normal((len(rows), N_COLS, n_bands), dtype=np.float32)
            edge = (0.15 * N_COLS * (1 - rows / n_rows)).astype(int)
            block[np.arange(N_COLS)[None, :] < edge[:, None]] = np.nan
            stream.write(np.ascontiguousarray(block.transpose(0, 2, 1)).tobytes())
    wavelength_list = ", ".join(f"{w:.3f}" for w in wavelengths)
    (directory / "scene.hdr").write_text(
        f"ENVI\nsamples = {N_COLS}\nlines = {n_rows}\nbands = {n_bands}\nheader offset = 0\n"
        f"data type = 4\ninterleave = bil\nbyte order = 0\n{GEO_HEADER}"
        f"wavelength units = Nanometers\nwavelength = {{{wavelength_list}}}\n"
    )
    return directory / "scene.hdr"


# -- one run, in its own process ---------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike ``ru_maxrss``, which Linux
    carries over from the parent across fork and exec, it counts this program only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child(args: argparse.Namespace) -> None:
    """Run unmix_large once and print a JSON line: peak RSS, stage times, chunk counts."""
    from hyperunmix.scale import unmix_large

    times: dict[str, float] = {}

    def progress(stage: str, done: int, total: int, info: dict) -> None:
        times.setdefault(f"{stage}_start", time.perf_counter())
        times[f"{stage}_end"] = time.perf_counter()

    client = cluster = None
    if args.cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    start = time.perf_counter()
    run = unmix_large(
        args.scene,
        "fcls",
        args.out,
        params={"n_endmembers": N_ENDMEMBERS},
        chunks=args.chunks,
        client=client,
        num_workers=args.workers,
        progress=progress,
    )
    record = {
        "seconds": time.perf_counter() - start,
        "fit_seconds": times["sample_end"] - times["sample_start"],
        "unmix_seconds": times["unmix_end"] - times["unmix_start"],
        "n_chunks": run.n_chunks,
        "n_skipped": run.n_skipped,
        "peak_rss_mb": peak_rss_mb(),
    }
    if client is not None:
        record["worker_peak_rss_mb"] = sorted(client.run(peak_rss_mb).values())
        client.close()
        cluster.close()
    print(json.dumps(record))


def run_child(
    scene: Path,
    out: Path,
    chunks: int,
    workers: int,
    cluster: bool = False,
    kill_at: float | None = None,
) -> dict | None:
    """Run :func:`child` in a new process; with ``kill_at``, SIGKILL it once that share of
    the chunks is marked written (returns None then)."""
    command = [
        sys.executable,
        __file__,
        "--child",
        "--scene",
        str(scene),
        "--out",
        str(out),
        "--chunks",
        str(chunks),
        "--workers",
        str(workers),
    ]
    if cluster:
        command.append("--cluster")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if kill_at is not None:
        while process.poll() is None:
            done = chunks_written(out)
            if done is not None and done >= kill_at:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return None
            time.sleep(0.2)
        raise RuntimeError("the run finished before it could be killed")
    stdout, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"run failed ({process.returncode}): {' '.join(command)}")
    return json.loads(stdout.strip().splitlines()[-1])


def chunks_written(store: Path) -> float | None:
    """Share of the chunks marked written in a store, None before it exists."""
    import zarr

    from hyperunmix.scale.store import MARKERS

    try:
        return float(zarr.open_array(store, path=MARKERS, mode="r")[:].mean())
    except Exception:  # not created yet, or being created
        return None


# -- comparisons -------------------------------------------------------------------------
def identical_stores(first: Path, second: Path) -> bool:
    """Same abundance bits everywhere (NaN included), read one row of chunks at a time."""
    import zarr

    a = zarr.open_array(first, path="abundances", mode="r")
    b = zarr.open_array(second, path="abundances", mode="r")
    step = a.chunks[0]
    return a.shape == b.shape and all(
        np.array_equal(a[top : top + step].view(np.uint32), b[top : top + step].view(np.uint32))
        for top in range(0, a.shape[0], step)
    )


def in_memory_reference(scene_path: Path, store: Path) -> dict:
    """FCLS on the first rows of the scene held in memory, with the endmembers of the
    chunked run: timings, and agreement with the chunked maps of those rows."""
    import zarr

    from hyperunmix import Scene
    from hyperunmix.linear.estimators import FCLS
    from hyperunmix.scale import open_cube

    endmembers = zarr.open_array(store, path="endmembers", mode="r")[:]
    scene = Scene(open_cube(scene_path)[:IN_MEMORY_ROWS].values)
    model = FCLS(endmembers=endmembers).fit(scene)
    timings = []
    for _ in range(IN_MEMORY_REPEATS):
        start = time.perf_counter()
        abundances = model.unmix(scene).abundances
        timings.append(time.perf_counter() - start)
    chunked = zarr.open_array(store, path="abundances", mode="r")[:IN_MEMORY_ROWS]
    differ = ~((abundances == chunked) | (np.isnan(abundances) & np.isnan(chunked)))
    return {
        "rows": IN_MEMORY_ROWS,
        "pixels": scene.n_pixels,
        "all_seconds": timings,
        "values_differing_from_chunked": int(differ.sum()),
        "max_abs_difference": float(np.nanmax(np.abs(abundances - chunked))),
    }


# -- the benchmark -----------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0, help="scene size in GiB")
    parser.add_argument("--bands", type=int, default=128)
    parser.add_argument(
        "--chunks", type=int, default=320, help="chunk side (320: the default for 128 bands)"
    )
    parser.add_argument("--workers", type=int, default=2, help="threads of the threaded run")
    parser.add_argument("--tmp", default=None, help="where to write the scene")
    parser.add_argument("--keep", action="store_true", help="keep the scene and outputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    n_rows = int(np.ceil(args.gib * 2**30 / (N_COLS * args.bands * 4)))
    scene_bytes = n_rows * N_COLS * args.bands * 4
    workdir = Path(tempfile.mkdtemp(prefix="hyperunmix-scale-", dir=args.tmp))
    free = shutil.disk_usage(workdir).free
    if free < 1.5 * scene_bytes:
        shutil.rmtree(workdir)
        sys.exit(
            f"{workdir.parent} has {free / 2**30:.1f} GiB free; the benchmark needs "
            f"{1.5 * scene_bytes / 2**30:.1f} GiB"
        )
    try:
        record = benchmark(workdir, n_rows, scene_bytes, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(record)


def benchmark(workdir: Path, n_rows: int, scene_bytes: int, args) -> dict:
    start = time.perf_counter()
    scene = write_scene(workdir, n_rows, args.bands)
    generate_seconds = time.perf_counter() - start
    print(
        f"scene: {n_rows} x {N_COLS} x {args.bands}, {scene_bytes / 1e9:.2f} GB, "
        f"generated in {generate_seconds:.0f} s",
        flush=True,
    )
    threaded = run_child(scene, workdir / "threaded.zarr", args.chunks, args.workers)
    print("threaded", threaded, flush=True)
    before = in_memory_reference(scene, workdir / "threaded.zarr")
    single = run_child(scene, workdir / "single.zarr", args.chunks, 1)
    print("1 thread", single, flush=True)
    reference = in_memory_reference(scene, workdir / "threaded.zarr")
    reference["all_seconds"] = before["all_seconds"] + reference["all_seconds"]
    reference["seconds"] = float(np.median(reference["all_seconds"]))
    reference["pixels_per_second"] = reference["pixels"] / reference["seconds"]
    print("in memory", reference, flush=True)
    cluster = run_child(scene, workdir / "cluster.zarr", args.chunks, args.workers, cluster=True)
    print("cluster", cluster, flush=True)
    run_child(scene, workdir / "resumed.zarr", args.chunks, args.workers, kill_at=KILL_AT)
    written_when_killed = chunks_written(workdir / "resumed.zarr")
    resumed = run_child(scene, workdir / "resumed.zarr", args.chunks, args.workers)
    print("resumed", resumed, flush=True)

    from hyperunmix.scale import open_cube

    valid = int(np.isfinite(open_cube(scene, chunks=args.chunks)[..., 0]).sum().compute())
    return {
        "command": " ".join(["python benchmarks/scale_bench.py", *sys.argv[1:]]),
        "cli_equivalent": (
            f"hyperunmix unmix scene.hdr --method fcls --endmembers vca "
            f"-p {N_ENDMEMBERS} --out out.zarr --chunks {args.chunks}"
        ),
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0],
        },
        "scene": {
            "shape": [n_rows, N_COLS, args.bands],
            "bytes": scene_bytes,
            "interleave": "bil",
            "dtype": "float32",
            "valid_pixels": valid,
            "endmembers": N_ENDMEMBERS,
            "snr_db": SNR_DB,
            "generate_seconds": generate_seconds,
        },
        "chunks": args.chunks,
        "threads": args.workers,
        "single_thread": {**single, "pixels_per_second": valid / single["unmix_seconds"]},
        "threaded": {**threaded, "pixels_per_second": valid / threaded["unmix_seconds"]},
        "in_memory": reference,
        "throughput_ratio": valid / single["unmix_seconds"] / reference["pixels_per_second"],
        "cluster": {
            **cluster,
            "identical_to_threaded": identical_stores(
                workdir / "cluster.zarr", workdir / "threaded.zarr"
            ),
        },
        "kill_and_resume": {
            **resumed,
            "written_when_killed": written_when_killed,
            "identical_to_threaded": identical_stores(
                workdir / "resumed.zarr", workdir / "threaded.zarr"
            ),
        },
    }


def write_results(record: dict) -> None:
    from hyperunmix._atomic import write_text

    RESULTS.mkdir(exist_ok=True)
    write_text(RESULTS / "scale.json", json.dumps(record, indent=2) + "\n")
    write_text(RESULTS / "scale.md", markdown(record))


def markdown(r: dict) -> str:
    scene, single, threaded = r["scene"], r["single_thread"], r["threaded"]
    memory = r["in_memory"]
    cluster, resume = r["cluster"], r["kill_and_resume"]
    height, width, bands = scene["shape"]
    verdict = {True: "identical, bit for bit", False: "**different**"}
    return f"""### Scale-out: a {scene["bytes"] / 1e9:.1f} GB scene chunk by chunk on Dask

Reproduce: `{r["command"]}` (the scene is generated in a temporary directory and deleted).
Each run is `unmix_large` in its own process, as `{r["cli_equivalent"]}` runs it: VCA
endmembers fitted on a 200 000-pixel stratified sample, then FCLS on every
{r["chunks"]} x {r["chunks"]} chunk, maps written to a Zarr store as chunks finish.
Scene: synthetic ENVI, {height} x {width} px x {bands} bands float32 ({scene["interleave"].upper()}),
{scene["endmembers"]} materials, {scene["snr_db"]:.0f} dB, {scene["valid_pixels"]:,} valid pixels
(a no-data wedge along one edge), georeferenced. Measured {r["created"]} on
{r["machine"]["cpu_count"]} cores **shared with other jobs** (load average
{r["machine"]["load_average_1min"]:.1f}): times are inflated, compare the rows, not the
absolute values.

| measure | result | goal |
|---|---|---|
| peak resident memory, whole run ({r["threads"]} threads) | {threaded["peak_rss_mb"]:.0f} MB | < 1500 MB |
| FCLS throughput, in memory ({memory["pixels"]:,} px, one call, 1 thread; median of {len(memory["all_seconds"])}, half just before and half just after the chunked run) | {memory["pixels_per_second"] / 1e3:.0f} k px/s ({memory["pixels"] / max(memory["all_seconds"]) / 1e3:.0f}-{memory["pixels"] / min(memory["all_seconds"]) / 1e3:.0f}) | |
| FCLS throughput, chunked from disk, 1 thread | {single["pixels_per_second"] / 1e3:.0f} k px/s ({single["unmix_seconds"]:.0f} s) | |
| chunked / in-memory throughput, 1 thread each | {100 * r["throughput_ratio"]:.0f} % | >= 80 % |
| FCLS throughput, chunked from disk, {r["threads"]} threads | {threaded["pixels_per_second"] / 1e3:.0f} k px/s ({threaded["unmix_seconds"]:.0f} s) | |
| LocalCluster, 2 worker processes on loopback, vs threaded | {verdict[cluster["identical_to_threaded"]]} ({cluster["unmix_seconds"]:.0f} s; worker peaks {", ".join(f"{m:.0f}" for m in cluster["worker_peak_rss_mb"])} MB) | bit for bit |
| killed at {100 * resume["written_when_killed"]:.0f} % of the chunks, rerun | {resume["n_skipped"]} of {resume["n_chunks"]} chunks skipped; {verdict[resume["identical_to_threaded"]]} | equal to an uninterrupted run |
| chunked vs in-memory maps, first {memory["rows"]} rows | {memory["values_differing_from_chunked"]} values differ (max {memory["max_abs_difference"]:.1e}) | |

Fit on the sample (reading it + VCA): {threaded["fit_seconds"]:.0f} s; whole run with
{r["threads"]} threads: {threaded["seconds"]:.0f} s. One BLAS thread per process (see the script).
On cores this busy a second thread (or worker) finds no idle core, so the 2-thread and
cluster times say nothing about scaling; the chunked and in-memory throughputs at one
thread each are the comparison that holds.
"""


if __name__ == "__main__":
    main()
