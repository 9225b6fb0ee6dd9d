"""Benchmark: every method on every scene for several seeds, one metric protocol, one report.

>>> from hyperunmix import bench
>>> records = bench.run_benchmark("all", bench.scenes.resolve("all", quick=True),
...                               "bench-out", quick=True)        # doctest: +SKIP

The command line is ``hyperunmix bench`` (:func:`hyperunmix.bench.cli.bench_command`).
"""

from . import plans, scenes
from .runner import plan, read_results, run_benchmark, run_jobs
from .scenes import SceneSpec, user_scene

__all__ = [
    "SceneSpec",
    "plan",
    "plans",
    "read_results",
    "run_benchmark",
    "run_jobs",
    "scenes",
    "user_scene",
]
