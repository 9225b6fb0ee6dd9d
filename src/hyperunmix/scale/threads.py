"""Torch's intra-op threads in chunk tasks: each task thread gets its share of the cores.

Every thread of dask's threaded scheduler, and of a ``dask.distributed`` worker, runs one
chunk at a time; a deep method's forward passes then run torch's intra-op threads, one per
core by default. Unchecked, ``k`` task threads each start a team of ``n_cores`` threads on
``n_cores`` cores: ``k`` times oversubscribed, and slower than one thread each (threads
spin-wait at every parallel region). A task therefore sets its own thread's torch threads
to its share, ``n_cores // k`` (at least 1), and restores them afterwards: torch's setting
belongs to the calling thread (OpenMP's ``nthreads`` variable), so the main thread, where
the model is fitted, keeps its own.

A ``dask.distributed`` worker counts its own task threads (``nthreads``); its cores are
those the process may run on, capped by ``OMP_NUM_THREADS`` when that is set (the nanny
sets it to 1 for its workers unless configured otherwise, so that several worker processes
on one machine do not oversubscribe it either).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import dask
from dask.system import CPU_COUNT


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity and cgroup quota, as dask counts)."""
    return max(1, int(CPU_COUNT))


def thread_share(task_threads: int | None = None) -> int:
    """Intra-op threads for each of ``task_threads`` threads that run tasks side by side in
    this process (default: those of the ``dask.distributed`` worker the call runs in, else
    the threaded scheduler's: dask's ``num_workers`` setting, else one per core), capped by
    ``OMP_NUM_THREADS``."""
    if task_threads is None:
        task_threads = (
            _distributed_threads() or dask.config.get("num_workers", None) or available_cores()
        )
    share = max(1, available_cores() // max(1, int(task_threads)))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        share = min(share, int(cap))
    return share


def _distributed_threads() -> int | None:
    """``nthreads`` of the ``dask.distributed`` worker running this task, None elsewhere."""
    if "distributed" not in sys.modules:  # never a worker without it imported
        return None
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except ValueError:  # not in a worker
        return None


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the body with ``count`` torch intra-op threads in this thread, then restore them.

    Nothing is done when torch is not imported: a method without torch needs no setting,
    and importing torch for it would cost a second.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
