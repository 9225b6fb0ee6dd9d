"""``hyperunmix bench``: the benchmark from the command line.

:func:`bench_command` is a plain function with typer options; the ``hyperunmix`` application
registers it as its ``bench`` command.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..progress import Timer
from .runner import RESULTS_FILE, plan, run_benchmark
from .scenes import resolve, user_scene
from .store import RunStore

#: Metric shown in each progress line, in order of preference.
_PROGRESS_METRICS = (("armse", "aRMSE"), ("msad", "mSAD"))


def bench_command(
    methods: str = typer.Option(
        "all",
        "--methods",
        "-m",
        help="Comma-separated method names, or 'all': every registered method and the "
        "benchmark variants: egunet_pw (EGU-Net pixel-wise), deq_unrolled "
        "(DEQ-Unmix's unrolled twin), idnet_posterior (ID-Net's maps with its nonlinear "
        "correction), the ablations egunet_labels, deq_no_correction, idnet_no_nonlinear, "
        "idnet_no_variability, and snnls_nfindr.",
    ),
    datasets: str | None = typer.Option(
        None,
        "--datasets",
        "-d",
        help="Comma-separated benchmark scenes, or 'all': samson, jasper_ridge, "
        "synthetic_{linear,bilinear,variability,illumination}_{20,30}db, "
        "synthetic_spatial_{15,20}db, synthetic_spatial3_variability_30db. Default: "
        "all, or none when --scene is given.",
    ),
    scene: list[str] = typer.Option(
        [],
        "--scene",
        help="A scene of yours: PATH=TRUTH (TRUTH: .npz/.mat with 'abundances' (H, W, P) "
        "and/or 'endmembers' (P, L), optional 'convention' absolute | shares; or an "
        "endmember .csv). Repeatable.",
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        "-n",
        min=1,
        help="Seeds per method and scene. Default: 10 for classical, 5 for deep methods "
        "(3 and 2 with --quick).",
    ),
    out: Path = typer.Option(
        Path("bench-out"), "--out", "-o", help="Output directory; rerunning into it resumes."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Small synthetic scenes, fewer seeds and epochs (minutes)."
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        min=1,
        help="Time limit of one run in seconds (default: per method); a run over it is "
        "stopped and recorded as failed.",
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        min=1,
        help="Runs in parallel, each in its own worker process (default: 2, or 1 on a "
        "single core).",
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Threads per worker (default: cores / jobs)."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Directory of the real datasets (default: $HYPERUNMIX_DATA, else the user data "
        "directory).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the planned runs and how many are done; run nothing."
    ),
) -> None:
    """Benchmark methods on scenes over several seeds: results.json.gz, tables, figures and a
    self-contained report.html in OUT. Interrupted runs resume where they stopped.

    Exit status: 0 when at least one run succeeded (the failed ones are counted in the
    last line), 1 when every run failed, 2 on bad input, 130 when interrupted."""
    specs = resolve(datasets if datasets is not None else ("" if scene else "all"), quick)
    specs += [user_scene(s) for s in scene]
    jobs_planned = plan(methods, specs, seeds=seeds, quick=quick, timeout_s=timeout)
    if dry_run:
        _print_plan(jobs_planned, out)
        return
    command = _command_line(methods, datasets, scene, seeds, timeout, out, quick)
    try:
        records = run_benchmark(
            methods,
            specs,
            out,
            seeds=seeds,
            quick=quick,
            timeout_s=timeout,
            n_workers=jobs,
            threads=threads,
            data_dir=data_dir,
            on_record=RunLines(),
            command=command,
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: finished runs are kept in {out}; run the same command again to resume",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    n_failed = sum(r["status"] != "ok" for r in records)
    print(
        f"{len(records)} runs ({n_failed} failed): {out / RESULTS_FILE}, "
        f"{out / 'results.md'}, {out / 'report.html'}"
    )
    if records and n_failed == len(records):
        # Nothing was measured: a script chaining the benchmark must not take it for a result.
        print(
            f"error: every one of the {n_failed} runs failed (each run's error is in "
            f"{out / RESULTS_FILE})",
            file=sys.stderr,
        )
        raise typer.Exit(1)


class RunLines:
    """The benchmark's ``on_record``: a line on stderr as each run ends, with the runs done,
    its outcome, the time elapsed and the time left at the rate of this command's runs
    (``clock`` gives the time in seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start = clock()
        self.timer: Timer | None = None

    def __call__(self, record: dict[str, Any], n_done: int, n_total: int) -> None:
        if self.timer is None:  # the runs stored before this command do not set its rate
            self.timer = Timer(self.start, n_done - 1)
        print(
            f"{_run_line(record, n_done, n_total)}  "
            f"{self.timer.summary(n_done, n_total, self.clock())}",
            file=sys.stderr,
            flush=True,
        )


def _run_line(record: dict[str, Any], n_done: int, n_total: int) -> str:
    """``[n/N] status method on dataset seed s`` and the run's score and time, or its error."""
    width = len(str(n_total))
    line = (
        f"[{n_done:>{width}}/{n_total}] {record['status']:<6} {record['method']} on "
        f"{record['dataset']} seed {record['seed']}"
    )
    if record["status"] == "ok":
        metrics = record["metrics"] or {}
        score = next(
            (
                (label, metrics[key])
                for key, label in _PROGRESS_METRICS
                if metrics.get(key) is not None
            ),
            None,
        )
        if score is not None:
            line += f"  {score[0]} {score[1]:.4f}"
        line += f"  {record['time_s']:.3g} s"
    else:
        line += f"  {record['error']}"
    return line


def _print_plan(jobs, out: Path) -> None:
    store = RunStore(out)
    rows: dict[tuple[str, str], list] = {}
    for job in jobs:
        row = rows.setdefault((job.method, job.scene.name), [0, 0, job])
        row[0] += 1
        row[1] += store.is_done(job.key)
    for (method, dataset), (n_runs, n_done, job) in rows.items():
        print(
            f"{method:<12} {dataset:<28} {n_runs:>3} seeds, {n_done:>3} done  "
            f"timeout {job.timeout_s:g} s  params {job.params}"
        )
    print(f"{len(jobs)} runs planned, {sum(row[1] for row in rows.values())} already done in {out}")


def _command_line(
    methods: str,
    datasets: str | None,
    scenes: list[str],
    seeds: int | None,
    timeout: float | None,
    out: Path,
    quick: bool,
) -> str:
    """The command that reproduces the results (options that change them, not speed)."""
    words = ["hyperunmix", "bench", "--methods", methods]
    if datasets is not None:
        words += ["--datasets", datasets]
    for spec in scenes:
        words += ["--scene", spec]
    if seeds is not None:
        words += ["--seeds", str(seeds)]
    if timeout is not None:
        words += ["--timeout", f"{timeout:g}"]
    words += ["--out", str(out)] + (["--quick"] if quick else [])
    return shlex.join(words)


__all__ = ["bench_command"]
