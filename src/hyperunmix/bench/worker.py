"""The worker side of the benchmark: one process that runs jobs sent to it over a pipe.

Each run happens in a worker process (``multiprocessing`` "spawn" context), never in the
process that schedules and records, for two reasons:

- memory: PyTorch allocates outside Python's allocator, so ``tracemalloc`` misses most of
  a deep model's memory. The worker measures the operating system's view instead: before a
  run it resets the kernel's peak-RSS counter (Linux ``/proc/self/clear_refs``), after it
  reads the new peak (``VmHWM``); the difference to the RSS at the start is the run's peak
  memory, torch's allocations included. Where the counter cannot be reset the worker asks
  to be replaced after each run, so every run starts with a fresh process and its peak is
  still its own.
- isolation: a crash (segfault in a native library, the out-of-memory killer) or a hang
  ends only the worker; the scheduler records that run as failed and starts a new worker.

A worker is reused for many runs (and caches the scenes it built), because starting a
Python process with NumPy and PyTorch costs seconds, more than a classical method's run.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

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
        "key": job.key, "method": job.method, "dataset": job.scene.name, "seed": job.seed,
        "parameters": {"seed": job.seed, **job.params}, "scene": job.scene.identity(),
        "status": "failed", "error": None, "metrics": None, "time_s": None,
        "fit_s": None, "unmix_s": None, "cpu_s": None, "peak_memory_mb": None,
        "peak_rss_mb": None, "warnings": [], "version": __version__,
        "started": now_iso(), "finished": None,
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def serve(conn, data_dir: str | None) -> None:
    """Process target: run each :class:`Job` received on ``conn``; send ``("started",
    None)`` when its timed part begins and ``("done", {"record", "arrays", "recycle"})`` at
    the end. Stop on ``None`` or when the parent is gone."""
    scenes: dict[str, Any] = {}
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        reply = execute(job, scenes, data_dir, on_start=lambda: conn.send(("started", None)))
        conn.send(("done", reply))


def execute(job: Job, scenes: dict[str, Any], data_dir: str | None,
            on_start: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Run ``job`` and score it; any exception becomes a failed record. ``on_start`` is
    called when the timed part (fit and unmix) begins, after the scene is built and the
    method imported."""
    record = base_record(job)
    arrays = None
    peak_resettable = True
    try:
        scene = _scene(job.scene, scenes, data_dir)
        model = _method_class(job.import_path)(
            n_endmembers=scene.truth.n_endmembers, seed=job.seed, **job.params)
        record["parameters"] = _json_params(model.get_params())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            on_start()
            peak_resettable = _reset_peak_rss()
            rss_start = _rss_kib()
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            result = model.fit_unmix(scene)
            wall = time.perf_counter() - wall_start
            cpu = time.process_time() - cpu_start
            peak = _peak_rss_kib()
        from ..metrics import evaluate

        record.update(
            status="ok", metrics=evaluate(result, scene.truth, scene), time_s=wall,
            fit_s=result.fit_seconds, unmix_s=result.unmix_seconds, cpu_s=cpu,
            peak_memory_mb=max(peak - rss_start, 0) / 1024, peak_rss_mb=peak / 1024,
            warnings=_distinct_warnings(caught))
        arrays = {"abundances": np.asarray(result.abundances, np.float32)}
        if result.endmembers is not None:
            arrays["endmembers"] = np.asarray(result.endmembers, np.float32)
    except Exception as exc:  # noqa: BLE001 - any failure of a method is a result to record
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    record["finished"] = now_iso()
    return {"record": record, "arrays": arrays, "recycle": not peak_resettable}


def _scene(spec: SceneSpec, cache: dict[str, Any], data_dir: str | None):
    key = repr(sorted(spec.identity().items()))
    if key not in cache:
        cache[key] = spec.build(data_dir)
    return cache[key]


def _method_class(import_path: str) -> type:
    module_name, _, class_name = import_path.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON values (anything else by its repr)."""
    safe = (str, int, float, bool, type(None))
    return {k: v if isinstance(v, safe) or _is_json_list(v) else repr(v)
            for k, v in params.items()}


def _is_json_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, int, float, bool)) for v in value)


def _distinct_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    messages = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    return list(messages)[:MAX_WARNINGS]


# -- memory -------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


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
