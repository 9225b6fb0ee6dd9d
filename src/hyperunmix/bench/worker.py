"""The worker side of the benchmark: a process that runs the jobs sent to it over a pipe.

The scheduler (:mod:`hyperunmix.bench.runner`) never runs a method itself. It starts worker
processes (``multiprocessing`` "spawn" context); a worker builds the scene and imports the
method once, then **forks a child for every run**. Three reasons:

- memory: PyTorch allocates outside Python's allocator, so ``tracemalloc`` misses most of
  a deep model's memory. The child measures the operating system's view instead: it resets
  the kernel's peak-RSS counter (Linux ``/proc/self/clear_refs``), runs, and reads the new
  peak (``VmHWM``); the rise over its RSS at the start is the run's peak memory, torch
  included. Every child starts from the same state of the worker, so memory freed by an
  earlier run (kept by the allocator, reused without showing) cannot hide a later run's.
- isolation: a crash (segfault in a native library, the out-of-memory killer) or a hang
  ends only the child; the worker reports it and goes on; the scheduler kills a child that
  exceeds its time limit.
- speed: a fork costs milliseconds, starting Python with NumPy and PyTorch seconds, more
  than a classical method's whole run.

Where ``os.fork`` does not exist (Windows), the worker runs the job itself and asks to be
replaced afterwards, so each run still gets a fresh process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..params import summarise
from .scenes import SceneSpec

#: Warnings kept per run record (the first distinct ones).
MAX_WARNINGS = 5


@dataclass
class Job:
    """One run: a method with its parameters on a scene with a seed.

    Attributes
    ----------
    method : str
        Name reported for the method.
    import_path : str
        ``"module:Class"`` of the estimator (from the registry, or given by the caller).
    seed : int
    scene : SceneSpec
    params : dict
        Hyper-parameters beyond ``n_endmembers`` (taken from the scene's truth) and ``seed``.
    timeout_s : float
    key : str
        Identity of the run in the :class:`~hyperunmix.bench.store.RunStore`.
    """

    method: str
    import_path: str
    seed: int
    scene: SceneSpec
    params: dict[str, Any]
    timeout_s: float
    key: str


def base_record(job: Job) -> dict[str, Any]:
    """The fields of a run record known before the run (and kept when it fails)."""
    from .. import __version__

    return {
        "key": job.key,
        "method": job.method,
        "dataset": job.scene.name,
        "seed": job.seed,
        "parameters": {"seed": job.seed, **job.params},
        "scene": job.scene.identity(),
        "status": "failed",
        "error": None,
        "metrics": None,
        "time_s": None,
        "fit_s": None,
        "unmix_s": None,
        "cpu_s": None,
        "peak_memory_mb": None,
        "peak_rss_mb": None,
        "warnings": [],
        "version": __version__,
        "started": now_iso(),
        "finished": None,
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def serve(conn, data_dir: str | None) -> None:
    """Process target: run each :class:`Job` received on ``conn``. Sends ``("started",
    pid)`` when the timed part begins, in the process ``pid``, and ``("done", reply)`` at the
    end, ``reply`` being ``{"record", "arrays", "recycle"}``. Stops on ``None`` or when the
    scheduler is gone."""
    # Ctrl-C reaches the whole process group: the scheduler alone handles it, stopping
    # the workers and their runs, so that an interrupted benchmark stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    scenes: dict[str, Any] = {}
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        reply = run_job(job, scenes, data_dir, lambda pid: conn.send(("started", pid)))
        conn.send(("done", reply))


def run_job(
    job: Job, scenes: dict[str, Any], data_dir: str | None, on_start: Callable[[int], None]
) -> dict[str, Any]:
    """Prepare ``job`` (scene, method class) here, run it in a forked child."""
    record = base_record(job)
    try:
        scene = _scene(job.scene, scenes, data_dir)
        method_class = _method_class(job.import_path)
    except Exception as exc:
        return {"record": _failed(record, exc), "arrays": None}
    if not hasattr(os, "fork"):
        on_start(os.getpid())
        return {**execute(job, scene, method_class, record), "recycle": True}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the reply, leave without any cleanup of the parent's
        status = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(execute(job, scene, method_class, record), pipe)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    on_start(pid)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code == 0 and payload:
        return pickle.loads(payload)
    record.update(error=describe_exit(code, "the run's process"), finished=now_iso())
    return {"record": record, "arrays": None}


def execute(job: Job, scene, method_class: type, record: dict[str, Any]) -> dict[str, Any]:
    """Fit, unmix and score: the timed part of a run. Any exception becomes a failed
    record; returns ``{"record", "arrays"}``."""
    arrays = None
    try:
        model = method_class(n_endmembers=scene.truth.n_endmembers, seed=job.seed, **job.params)
        record["parameters"] = summarise(model.get_params())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _reset_peak_rss()
            rss_start = _rss_kib()
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            result = model.fit_unmix(scene)
            wall = time.perf_counter() - wall_start
            cpu = time.process_time() - cpu_start
            peak = _peak_rss_kib()
        from ..metrics import evaluate

        record.update(
            status="ok",
            metrics=evaluate(result, scene.truth, scene),
            time_s=wall,
            fit_s=result.fit_seconds,
            unmix_s=result.unmix_seconds,
            cpu_s=cpu,
            peak_memory_mb=max(peak - rss_start, 0) / 1024,
            peak_rss_mb=peak / 1024,
            warnings=_distinct_warnings(caught),
        )
        # The maps as scored (in the truth's convention), for the figures beside the truth.
        scored = (
            result.in_convention(scene.truth.convention)
            if scene.truth.abundances is not None
            else result
        )
        arrays = {"abundances": np.asarray(scored.abundances, np.float32)}
        if result.endmembers is not None:
            arrays["endmembers"] = np.asarray(result.endmembers, np.float32)
    except Exception as exc:
        _failed(record, exc)
    record["finished"] = now_iso()
    return {"record": record, "arrays": arrays}


def describe_exit(code: int | None, who: str) -> str:
    """The error of a process that ended without a reply (``code`` as
    :attr:`multiprocessing.Process.exitcode`: minus the signal number when killed)."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            how = signal.Signals(-code).name
            hint = " (out of memory?)" if how == "SIGKILL" else ""
            return f"WorkerCrash: {who} was killed by {how}{hint} during the run"
    return f"WorkerCrash: {who} exited with code {code} during the run"


def _failed(record: dict[str, Any], exc: Exception) -> dict[str, Any]:
    record.update(
        status="failed",
        error=f"{type(exc).__name__}: {exc}",
        traceback=traceback.format_exc(),
        finished=now_iso(),
    )
    return record


def _scene(spec: SceneSpec, cache: dict[str, Any], data_dir: str | None):
    key = repr(sorted(spec.identity().items()))
    if key not in cache:
        cache[key] = spec.build(data_dir)
    return cache[key]


def _method_class(import_path: str) -> type:
    module_name, _, class_name = import_path.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _distinct_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    messages = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    return list(messages)[:MAX_WARNINGS]


# -- memory -------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter of this process, where the kernel allows it
    (elsewhere the peak is that of the whole process, which a fresh child keeps close)."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return None if match is None else int(match.group(1))


def _rss_kib() -> int:
    """Current resident memory in KiB (0 where the system does not tell)."""
    rss = _status_kib("VmRSS")
    return 0 if rss is None else rss


def _peak_rss_kib() -> int:
    """Peak resident memory in KiB since the last reset (or since the process started)."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource  # POSIX only; Linux answered above

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS
