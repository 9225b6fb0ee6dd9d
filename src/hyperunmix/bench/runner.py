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
import json
import multiprocessing
import os
import platform
import signal
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .._atomic import atomic_path
from ..errors import InputError
from .plans import plan_for
from .scenes import SceneSpec
from .store import RunStore, run_key
from .worker import Job, base_record, now_iso, serve

RESULTS_FILE = "results.json"
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


def plan(methods: str | Sequence[str], scenes: Sequence[SceneSpec], *,
         seeds: int | None = None, quick: bool = False, timeout_s: float | None = None,
         registry: Mapping[str, str] | None = None,
         params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Job]:
    """The runs of a benchmark, in execution order.

    Parameters
    ----------
    methods : "all", comma-separated str or list of str
        Method names; ``"all"`` is every method of ``registry``.
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
        from ..registry import METHODS as registry
    names = _method_names(methods, registry)
    if seeds is not None and seeds < 1:
        raise InputError(f"seeds must be at least 1, got {seeds}")
    if not scenes:
        raise InputError("the benchmark needs at least one scene")
    params = params or {}
    settings = {}
    for name in names:
        method_plan = plan_for(name, registry)
        settings[name] = (
            seeds if seeds is not None else method_plan.n_seeds(quick),
            {**method_plan.parameters(quick), **params.get(name, {})},
            timeout_s if timeout_s is not None else method_plan.timeout(quick))
    jobs = []
    for seed in range(max(n for n, _, _ in settings.values())):
        for scene in scenes:
            for name, (n_seeds, method_params, timeout) in settings.items():
                if seed < n_seeds:
                    identity = {"method": name, "params": method_params,
                                "scene": scene.identity(), "seed": seed}
                    jobs.append(Job(name, registry[name], seed, scene, method_params,
                                    timeout, run_key(identity)))
    return jobs


def _method_names(methods: str | Sequence[str], registry: Mapping[str, str]) -> list[str]:
    if isinstance(methods, str):
        methods = methods.split(",")
    names = [m.strip().lower() for m in methods if m.strip()]
    if names == ["all"]:
        return list(registry)
    unknown = [m for m in names if m not in registry]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; available: "
                         f"{', '.join(registry)}")
    if not names:
        raise InputError("no method to benchmark")
    return list(dict.fromkeys(names))


def run_jobs(jobs: Sequence[Job], out: str | os.PathLike, *, n_workers: int = 1,
             threads: int | None = None, data_dir: str | os.PathLike | None = None,
             on_record: RecordCallback | None = None) -> list[dict[str, Any]]:
    """Run the unfinished ``jobs`` in ``n_workers`` worker processes; return every job's
    record (finished earlier or now), in job order.

    Each record is stored the moment its run ends. A run that raises, crashes its worker
    or exceeds its timeout is recorded as failed and the others go on.

    Parameters
    ----------
    threads : int, optional
        Threads per worker for BLAS and PyTorch; default: the CPU cores shared out
        among the workers.
    """
    store = RunStore(out)
    todo = deque(job for job in jobs if not store.is_done(job.key))
    n_total, n_done = len(jobs), len(jobs) - len(todo)
    threads = threads or max(1, (os.cpu_count() or 1) // n_workers)
    data_dir = None if data_dir is None else str(data_dir)
    pool = _WorkerPool(min(n_workers, len(todo)), threads, data_dir)
    try:
        for reply in pool.run(todo):
            store.save(reply["record"], reply.get("arrays"))
            n_done += 1
            if on_record is not None:
                on_record(reply["record"], n_done, n_total)
    finally:
        pool.close()
    return [store.load(job.key) for job in jobs]


def run_benchmark(methods: str | Sequence[str], scenes: Sequence[SceneSpec],
                  out: str | os.PathLike, *, seeds: int | None = None, quick: bool = False,
                  timeout_s: float | None = None, n_workers: int = 1, threads: int | None = None,
                  data_dir: str | os.PathLike | None = None,
                  registry: Mapping[str, str] | None = None,
                  params: Mapping[str, Mapping[str, Any]] | None = None,
                  on_record: RecordCallback | None = None,
                  report: bool = True, command: str | None = None) -> list[dict[str, Any]]:
    """Plan, run (resuming), then write ``results.json`` and, with ``report``, the tables,
    figures and ``report.html`` (:mod:`hyperunmix.bench.report`; ``command`` is shown there
    as the way to reproduce it). Returns the records."""
    jobs = plan(methods, scenes, seeds=seeds, quick=quick, timeout_s=timeout_s,
                registry=registry, params=params)
    records = run_jobs(jobs, out, n_workers=n_workers, threads=threads, data_dir=data_dir,
                       on_record=on_record)
    write_results(out, records, quick=quick)
    if report:
        from .report import write_report

        write_report(out, records, scenes, data_dir=data_dir, command=command)
    return records


def write_results(out: str | os.PathLike, records: list[dict[str, Any]], *,
                  quick: bool) -> Path:
    """``<out>/results.json``: the environment, then one record per run (tracebacks stay in
    the per-run files)."""
    import numpy

    from .. import __version__

    runs = [{k: v for k, v in r.items() if k != "traceback"} for r in records]
    payload = {
        "hyperunmix_version": __version__, "created": now_iso(), "quick": quick,
        "environment": {"python": platform.python_version(), "numpy": numpy.__version__,
                        "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "runs": runs,
    }
    path = Path(out) / RESULTS_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a ``results.json`` (a file, or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"no benchmark results at {path}")
    return json.loads(path.read_text())


# -- worker processes ------------------------------------------------------------------------
class _Worker:
    """One worker process and the job it is running."""

    def __init__(self, context, threads: int, data_dir: str | None):
        self.conn, child_conn = context.Pipe()
        with _thread_limits(threads):
            self.process = context.Process(target=serve, args=(child_conn, data_dir),
                                           daemon=True, name="hyperunmix-bench-worker")
            self.process.start()
        child_conn.close()
        self.job: Job | None = None
        self.started = False
        self.deadline = 0.0
        self.broken = False  # died or was killed: not to be given another job

    def submit(self, job: Job) -> None:
        self.job, self.started = job, False
        self.deadline = time.monotonic() + _SETUP_S
        self.conn.send(job)

    def poll(self) -> dict[str, Any] | None:
        """The reply of the finished job, a failed reply if the worker died or timed out,
        or None while the job runs."""
        job = self.job
        try:
            while self.conn.poll():
                kind, reply = self.conn.recv()
                if kind == "done":
                    return reply
                self.started = True  # the timed part (fit and unmix) began
                self.deadline = time.monotonic() + job.timeout_s
        except (EOFError, OSError):
            self.broken = True
            return _failure(job, _death_message(self.process))
        if not self.process.is_alive():
            self.broken = True
            return _failure(job, _death_message(self.process))
        if time.monotonic() > self.deadline:
            self.broken = True
            self.kill()
            limit = (f"its {job.timeout_s:g} s limit" if self.started
                     else f"the {_SETUP_S:g} s allowed for loading the scene and the method")
            return _failure(job, f"TimeoutError: the run exceeded {limit} and was stopped")
        return None

    def stop(self) -> None:
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
            wait([w.conn for w in self.busy] + [w.process.sentinel for w in self.busy],
                 timeout=_POLL_S)
            for worker in list(self.busy):
                reply = worker.poll()
                if reply is None:
                    continue
                self.busy.remove(worker)
                if worker.broken or reply.get("recycle"):
                    worker.stop()  # cannot run, or cannot measure, another job
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


def _death_message(process) -> str:
    process.join(_STOP_GRACE_S)
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            how = signal.Signals(-code).name
            hint = " (out of memory?)" if how == "SIGKILL" else ""
            return f"WorkerCrash: the worker process was killed by {how}{hint} during the run"
    return f"WorkerCrash: the worker process exited with code {code} during the run"


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
