"""The benchmark runner: methods x scenes x seeds, resumable, one failure never stops it.

:func:`plan` turns the request into :class:`~hyperunmix.bench.worker.Job` s;
:func:`run_jobs` runs those not yet finished in worker processes
(:mod:`hyperunmix.bench.worker`) and stores each record as soon as it arrives
(:mod:`hyperunmix.bench.store`); :func:`run_benchmark` does both and writes the results
file and the report.

Order: seed by seed, and within a seed scene by scene, so an interrupted benchmark already
holds every method on every scene for the first seeds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing
import os
import platform
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..errors import InputError
from .plans import benchmark_methods, plan_for
from .scenes import SceneSpec
from .store import RunStore, run_key
from .worker import Job, base_record, describe_exit, now_iso, serve

#: The benchmark's results, gzip-compressed JSON: a full run's 1,755 records are 3.5 MB as
#: text and 0.3 MB compressed, and the file is committed.
RESULTS_FILE = "results.json.gz"
#: Seconds a worker gets to exit after being asked to before it is killed.
_STOP_GRACE_S = 5.0
#: Time a worker gets to build the scene and import the method before a run's own time
#: limit starts (importing PyTorch and loading a real scene take seconds on a busy machine).
_SETUP_S = 120.0
#: Longest wait between checks on busy workers (crash and timeout detection).
_POLL_S = 1.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: ``on_record(record, n_done, n_total)``: called after each run is stored.
RecordCallback = Callable[[dict, int, int], None]


def plan(
    methods: str | Sequence[str],
    scenes: Sequence[SceneSpec],
    *,
    seeds: int | None = None,
    quick: bool = False,
    timeout_s: float | None = None,
    registry: Mapping[str, str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Job]:
    """The runs of a benchmark, in execution order.

    Parameters
    ----------
    methods : "all", comma-separated str or list of str
        Method names; ``"all"`` is every method of ``registry`` and its benchmark variants
        (:data:`hyperunmix.bench.plans.VARIANTS`).
    scenes : list of SceneSpec
    seeds : int, optional
        Seeds ``0 .. seeds - 1`` for every method; by default each method's plan decides
        (:mod:`hyperunmix.bench.plans`).
    quick : bool
        Quick budgets and seed counts.
    timeout_s : float, optional
        Time limit of every run, instead of each method's own.
    registry : mapping name -> "module:Class", optional
        The methods to draw from; :data:`hyperunmix.registry.METHODS` by default.
    params : mapping name -> dict, optional
        Parameter overrides per method, on top of its plan.
    """
    if registry is None:
        from ..registry import METHODS

        registry = METHODS
    known = benchmark_methods(registry)
    names = _method_names(methods, known)
    if seeds is not None and seeds < 1:
        raise InputError(f"seeds must be at least 1, got {seeds}")
    if not scenes:
        raise InputError("the benchmark needs at least one scene")
    overrides = params or {}
    plans = {name: plan_for(name, registry) for name in names}
    n_seeds = {name: seeds if seeds is not None else p.n_seeds(quick) for name, p in plans.items()}
    jobs = []
    for seed in range(max(n_seeds.values())):
        for scene in scenes:
            for name, method_plan in plans.items():
                if seed >= n_seeds[name]:
                    continue
                target, variant_params = known[name]
                method_params = {
                    **variant_params,
                    **method_plan.parameters(quick, scene.name),
                    **overrides.get(name, {}),
                }
                identity = {
                    "method": name,
                    "params": method_params,
                    "scene": scene.identity(),
                    "seed": seed,
                }
                jobs.append(
                    Job(
                        name,
                        target,
                        seed,
                        scene,
                        method_params,
                        timeout_s if timeout_s is not None else method_plan.timeout(quick),
                        run_key(identity),
                    )
                )
    return jobs


def _method_names(methods: str | Sequence[str], registry: Mapping[str, Any]) -> list[str]:
    if isinstance(methods, str):
        methods = methods.split(",")
    names = [m.strip().lower() for m in methods if m.strip()]
    if names == ["all"]:
        return list(registry)
    unknown = [m for m in names if m not in registry]
    if unknown:
        raise InputError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(registry)}"
        )
    if not names:
        raise InputError("no method to benchmark")
    return list(dict.fromkeys(names))


def default_workers() -> int:
    """Two workers where there are two cores or more (one thread each: small BLAS calls
    run slower on two contending threads than on one), else one."""
    return min(2, os.cpu_count() or 1)


def default_threads(n_workers: int) -> int:
    """The CPU cores shared out among the workers."""
    return max(1, (os.cpu_count() or 1) // n_workers)


def run_jobs(
    jobs: Sequence[Job],
    out: str | os.PathLike,
    *,
    n_workers: int | None = None,
    threads: int | None = None,
    data_dir: str | os.PathLike | None = None,
    on_record: RecordCallback | None = None,
) -> list[dict[str, Any]]:
    """Run the unfinished ``jobs`` in ``n_workers`` worker processes; return every job's
    record (finished earlier or now), in job order.

    Each record is stored the moment its run ends. A run that raises, crashes its worker
    or exceeds its timeout is recorded as failed and the others go on.

    Parameters
    ----------
    n_workers : int, optional
        Runs at once; default :func:`default_workers`.
    threads : int, optional
        Threads per worker for BLAS and PyTorch; default: the CPU cores shared out
        among the workers.
    """
    n_workers = n_workers or default_workers()
    store = RunStore(out)
    todo = deque(job for job in jobs if not store.is_done(job.key))
    n_total, n_done = len(jobs), len(jobs) - len(todo)
    threads = threads or default_threads(n_workers)
    data_dir = None if data_dir is None else str(data_dir)
    pool = _WorkerPool(min(n_workers, len(todo)), threads, data_dir)
    try:
        with _terminate_as_interrupt():
            for reply in pool.run(todo):
                store.save(reply["record"], reply.get("arrays"))
                n_done += 1
                if on_record is not None:
                    on_record(reply["record"], n_done, n_total)
    finally:
        pool.close()
    records = []
    for job in jobs:
        record = store.load(job.key)
        if record is None:  # every job's record was stored above
            raise RuntimeError(f"run {job.key} left no record in {store.dir}")
        records.append(record)
    return records


def run_benchmark(
    methods: str | Sequence[str],
    scenes: Sequence[SceneSpec],
    out: str | os.PathLike,
    *,
    seeds: int | None = None,
    quick: bool = False,
    timeout_s: float | None = None,
    n_workers: int | None = None,
    threads: int | None = None,
    data_dir: str | os.PathLike | None = None,
    registry: Mapping[str, str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    on_record: RecordCallback | None = None,
    report: bool = True,
    command: str | None = None,
) -> list[dict[str, Any]]:
    """Plan, run (resuming), then write ``results.json.gz`` and, with ``report``, the tables,
    figures and ``report.html`` (:mod:`hyperunmix.bench.report`; ``command`` is shown there
    as the way to reproduce it). Returns the records."""
    jobs = plan(
        methods,
        scenes,
        seeds=seeds,
        quick=quick,
        timeout_s=timeout_s,
        registry=registry,
        params=params,
    )
    n_workers = n_workers or default_workers()
    threads = threads or default_threads(n_workers)
    records = run_jobs(
        jobs, out, n_workers=n_workers, threads=threads, data_dir=data_dir, on_record=on_record
    )
    write_results(
        out,
        records,
        quick=quick,
        command=command,
        workers={"processes": n_workers, "threads_each": threads},
    )
    if report:
        from .report import write_report

        write_report(out, records, scenes, data_dir=data_dir, command=command)
    return records


def write_results(
    out: str | os.PathLike,
    records: list[dict[str, Any]],
    *,
    quick: bool,
    command: str | None = None,
    workers: dict[str, int] | None = None,
) -> Path:
    """``<out>/results.json.gz``: the command, machine and ``workers`` (count, threads),
    then one record per run (tracebacks stay in the per-run files). Compressed with no
    timestamp, so that the same results give the same bytes."""
    from .. import __version__

    runs = [{k: v for k, v in r.items() if k != "traceback"} for r in records]
    payload = {
        "hyperunmix_version": __version__,
        "created": now_iso(),
        "quick": quick,
        "command": command,
        "environment": _environment(),
        "workers": workers,
        "runs": runs,
    }
    path = Path(out) / RESULTS_FILE
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(json.dumps(payload, indent=1).encode(), mtime=0))
    return path


def _environment() -> dict[str, Any]:
    """Versions and machine, for reading the timings."""
    versions = {}
    for package in ("numpy", "scipy", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return {
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a ``results.json.gz`` (a file, or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"no benchmark results at {path}")
    return json.loads(gzip.decompress(path.read_bytes()))


# -- worker processes ------------------------------------------------------------------------
@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler's stop) raises KeyboardInterrupt while the workers
    run, so that they are stopped as on Ctrl-C: Python's default ends the process at once,
    leaving its workers computing runs no one records. Only the main thread can set a
    handler; elsewhere the default stays."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Worker:
    """One worker process and the job it is running."""

    def __init__(self, context, threads: int, data_dir: str | None):
        self.conn, child_conn = context.Pipe()
        with _thread_limits(threads):
            self.process = context.Process(
                target=serve,
                args=(child_conn, data_dir),
                daemon=True,
                name="hyperunmix-bench-worker",
            )
            self.process.start()
        child_conn.close()
        self.job: Job | None = None
        self.run_pid: int | None = None  # the process running the timed part, while it runs
        self.deadline_is_run = False  # the deadline is the run's limit, not the setup's
        self.deadline = 0.0
        self.timed_out = False
        self.broken = False  # died or was killed: not to be given another job

    def submit(self, job: Job) -> None:
        self.job, self.run_pid, self.timed_out = job, None, False
        self.deadline_is_run = False
        self.deadline = time.monotonic() + _SETUP_S
        self.conn.send(job)

    def poll(self) -> dict[str, Any] | None:
        """The reply of the finished job (a failed one if it crashed or timed out), or None
        while it runs."""
        job = self.job
        assert job is not None, "poll() of a worker given no job"
        try:
            while self.conn.poll():
                kind, value = self.conn.recv()
                if kind == "done":
                    self.run_pid = None
                    return self._timed_out_reply(job) if self.timed_out else value
                self.run_pid, self.deadline_is_run = value, True  # the timed part began
                self.deadline = time.monotonic() + job.timeout_s
        except (EOFError, OSError):
            self.broken = True
        if not self.broken and not self.process.is_alive():
            self.broken = True
        if self.broken:
            if self.timed_out:
                return self._timed_out_reply(job)
            self.process.join(_STOP_GRACE_S)
            return _failure(job, describe_exit(self.process.exitcode, "the worker process"))
        if time.monotonic() > self.deadline:
            self._stop_run()
            if self.broken:
                return self._timed_out_reply(job)
        return None

    def _stop_run(self) -> None:
        """Kill the run over its time limit: the forked child (the worker then reports it
        and goes on), or the worker itself when it runs jobs in-process or hangs."""
        if self.run_pid is not None and self.run_pid != self.process.pid and not self.timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.run_pid, signal.SIGKILL)
            self.deadline = time.monotonic() + _STOP_GRACE_S
        else:
            self.broken = True
            self.kill()
        self.timed_out = True

    def _timed_out_reply(self, job: Job) -> dict[str, Any]:
        limit = (
            f"its {job.timeout_s:g} s limit"
            if self.deadline_is_run
            else f"the {_SETUP_S:g} s allowed for loading the scene and the method"
        )
        return _failure(job, f"TimeoutError: the run exceeded {limit} and was stopped")

    def stop(self) -> None:
        """Ask the worker to exit (first killing a run in progress, e.g. on Ctrl-C)."""
        if self.run_pid is not None and self.run_pid != self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.run_pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(_STOP_GRACE_S)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class _WorkerPool:
    """Runs jobs on up to ``size`` workers; a worker that dies, hangs or asks to be
    recycled is replaced."""

    def __init__(self, size: int, threads: int, data_dir: str | None):
        self.context = multiprocessing.get_context("spawn")
        self.size, self.threads, self.data_dir = size, threads, data_dir
        self.idle: list[_Worker] = []
        self.busy: list[_Worker] = []

    def run(self, todo: deque[Job]) -> Iterator[dict[str, Any]]:
        """Yield the reply of each job as it finishes."""
        while todo or self.busy:
            while todo and len(self.busy) < self.size:
                worker = self.idle.pop() if self.idle else self._start()
                worker.submit(todo.popleft())
                self.busy.append(worker)
            wait(
                [w.conn for w in self.busy] + [w.process.sentinel for w in self.busy],
                timeout=_POLL_S,
            )
            for worker in list(self.busy):
                reply = worker.poll()
                if reply is None:
                    continue
                self.busy.remove(worker)
                if worker.broken or reply.get("recycle"):
                    worker.stop()  # cannot run another job, or cannot fork a fresh one
                else:
                    self.idle.append(worker)
                yield reply

    def _start(self) -> _Worker:
        return _Worker(self.context, self.threads, self.data_dir)

    def close(self) -> None:
        for worker in self.idle + self.busy:
            worker.stop()
        self.idle, self.busy = [], []


def _failure(job: Job, error: str) -> dict[str, Any]:
    record = base_record(job)
    record.update(error=error, finished=now_iso())
    return {"record": record, "arrays": None}


@contextlib.contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """Set the thread-count variables a spawned worker's BLAS and PyTorch read at start."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
