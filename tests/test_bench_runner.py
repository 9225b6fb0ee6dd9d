"""The benchmark runner: every run recorded, failures isolated, interrupted runs resumed.

The methods here are test-local estimators handed to the runner through its ``registry``
parameter (their import path): the worker processes import them from this module.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import psutil
import pytest
import torch

from hyperunmix.base import Unmixer
from hyperunmix.bench import plan, run_benchmark
from hyperunmix.bench.runner import read_results
from hyperunmix.bench.scenes import SceneSpec
from hyperunmix.bench.store import RunStore
from hyperunmix.bench.tables import group
from hyperunmix.params import FilePath, InstanceOf, Integer, NoneValue, Real

HERE = Path(__file__).resolve().parent
TINY = [
    SceneSpec(
        "tiny_a",
        "synthetic",
        {"n_rows": 8, "n_cols": 8, "n_endmembers": 3, "snr_db": 30.0, "seed": 1},
    ),
    SceneSpec(
        "tiny_b",
        "synthetic",
        {"n_rows": 6, "n_cols": 10, "n_endmembers": 3, "mixing": "fan", "snr_db": 20.0, "seed": 2},
    ),
]


class Oracle(Unmixer):
    """Returns the truth with its materials shuffled by ``seed`` and abundances blurred by
    ``noise`` (seeded): matching must undo the shuffle; scores vary with the seed."""

    name = "oracle"
    _parameter_rules: ClassVar = {
        "n_endmembers": [Integer(2)],
        "seed": [Integer(0)],
        "noise": [Real(0)],
        "counter": [FilePath(), NoneValue()],
        "sleep": [Real(0)],
        "allocate_mb": [Integer(0)],
        "fail": [InstanceOf(str, "a failure mode"), NoneValue()],
    }

    def __init__(
        self, n_endmembers=3, seed=0, noise=0.0, counter=None, sleep=0.0, allocate_mb=0, fail=None
    ):
        self.n_endmembers, self.seed, self.noise = n_endmembers, seed, noise
        self.counter, self.sleep, self.allocate_mb, self.fail = counter, sleep, allocate_mb, fail

    def _fit(self, scene):
        if self.counter:  # one line per fit, appended: how often each run was computed
            with open(self.counter, "a") as fh:
                fh.write(f"{scene.name} {self.seed}\n")
        _misbehave(self.fail, f"{scene.name}/{self.seed}", self.counter)
        time.sleep(self.sleep)
        if self.allocate_mb:  # memory that tracemalloc cannot see
            block = torch.ones(self.allocate_mb * 2**18)  # float32: 4 bytes each
            block.add_(1.0)
        rng = np.random.default_rng(self.seed)
        self.order_ = rng.permutation(self.n_endmembers)
        truth = scene.truth.abundances[..., self.order_]
        blurred = np.clip(truth + self.noise * rng.standard_normal(truth.shape), 0, None)
        self.abundances_ = blurred / blurred.sum(-1, keepdims=True)
        self.endmembers_ = scene.truth.endmembers[self.order_]
        self.n_bands_ = scene.n_bands

    def transform(self, cube, mask=None):
        return {"abundances": self.abundances_.astype(np.float32)}


def _misbehave(how, run, counter=None):
    """Fail as ``how`` says: "raise", "crash", "hang", or "first" (the first attempt only,
    as the ``counter`` file of attempts tells), optionally on one run only
    ("crash@tiny_b/0")."""
    how, _, only = (how or "").partition("@")
    if only and only != run:
        return
    attempts = Path(counter).read_text().splitlines() if how == "first" else []
    if attempts.count(run.replace("/", " ")) == 1:  # fail the first attempt only
        raise RuntimeError("first attempt fails")
    if how == "raise":
        raise RuntimeError("this method always fails")
    if how == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "hang":
        time.sleep(600)


ORACLE = f"{__name__}:Oracle"


def test_plan_orders_runs_seed_first_and_applies_budgets():
    registry = {"a": ORACLE, "b": ORACLE}
    jobs = plan("all", TINY, seeds=2, registry=registry, params={"b": {"noise": 0.1}})
    assert [(j.seed, j.scene.name, j.method) for j in jobs[:4]] == [
        (0, "tiny_a", "a"),
        (0, "tiny_a", "b"),
        (0, "tiny_b", "a"),
        (0, "tiny_b", "b"),
    ]
    assert len(jobs) == 8 and len({j.key for j in jobs}) == 8
    assert all(j.params == ({"noise": 0.1} if j.method == "b" else {}) for j in jobs)
    # changing a parameter changes the identity of the runs: no stale result is reused
    other = plan("a", TINY, seeds=2, registry=registry, params={"a": {"noise": 0.2}})
    assert not {j.key for j in other} & {j.key for j in jobs}


def test_variants_run_their_method_with_their_parameters(monkeypatch):
    from hyperunmix.bench import plans

    monkeypatch.setitem(plans.VARIANTS, "a_noisy", ("a", {"noise": 0.3}))
    jobs = plan("all", TINY, seeds=1, registry={"a": ORACLE, "b": ORACLE})
    assert [(j.method, j.import_path, j.params) for j in jobs[:3]] == [
        ("a", ORACLE, {}),
        ("a_noisy", ORACLE, {"noise": 0.3}),
        ("b", ORACLE, {}),
    ]
    # a variant of a method outside the registry is not offered
    assert [j.method for j in plan("all", TINY, seeds=1, registry={"b": ORACLE})] == ["b", "b"]
    with pytest.raises(ValueError, match=r"unknown method.*a_noisy"):
        plan("a_noisy", TINY, registry={"b": ORACLE})


def test_plan_rejects_unknown_methods():
    with pytest.raises(ValueError, match=r"unknown method.*nope"):
        plan("oracle,nope", TINY, registry={"oracle": ORACLE})


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A benchmark with a good method, a noisy one (allocating 64 MB in PyTorch), one that
    always raises, one that crashes its process on one run and one that hangs past its
    time limit on one run."""
    out = tmp_path_factory.mktemp("bench")
    registry = {m: ORACLE for m in ("exact", "noisy", "raises", "crashes", "hangs")}
    params = {
        "noisy": {"noise": 0.05, "allocate_mb": 64},
        "raises": {"fail": "raise"},
        "crashes": {"fail": "crash@tiny_b/0"},
        "hangs": {"fail": "hang@tiny_a/1"},
    }
    start = time.perf_counter()
    records = run_benchmark(
        "all", TINY, out, seeds=3, timeout_s=3.0, registry=registry, params=params, report=False
    )
    return out, records, time.perf_counter() - start


def test_every_run_is_recorded_with_the_metric_protocol(mixed_run):
    out, records, _ = mixed_run
    assert len(records) == 5 * 2 * 3
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 4 * 6 - 2
    for record in ok:
        assert record["time_s"] > 0 and record["peak_memory_mb"] >= 0
        assert record["parameters"]["seed"] == record["seed"]
        assert record["parameters"]["n_endmembers"] == 3
        assert record["version"] and record["finished"] >= record["started"]
        assert len(record["metrics"]["armse_per_endmember"]) == 3
    exact = [r["metrics"] for r in ok if r["method"] == "exact"]
    # the shuffled truth scores perfectly once matched
    assert all(m["armse"] < 1e-7 and m["msad"] < 1e-6 for m in exact)
    noisy = [r["metrics"]["armse"] for r in ok if r["method"] == "noisy"]
    assert all(0.01 < a < 0.1 for a in noisy) and len(set(noisy)) == len(noisy)
    stored = read_results(out)
    assert [r["key"] for r in stored["runs"]] == [r["key"] for r in records]


def test_failures_are_isolated_and_explained(mixed_run):
    _, records, elapsed = mixed_run
    failed = {
        (r["method"], r["dataset"], r["seed"]): r["error"]
        for r in records
        if r["status"] == "failed"
    }
    assert len(failed) == 6 + 2
    assert failed["raises", "tiny_a", 0] == "RuntimeError: this method always fails"
    assert "SIGSEGV" in failed["crashes", "tiny_b", 0]
    assert "its 3 s limit" in failed["hangs", "tiny_a", 1]
    # the same methods' other runs, before and after, went on in new workers
    assert "traceback" not in records[0]
    # a run recorded as failed keeps what is known about it
    failed = next(r for r in records if r["method"] == "raises")
    assert failed["metrics"] is None and failed["parameters"]["seed"] == failed["seed"]
    assert elapsed < 120  # the hang was cut at 3 s


def test_peak_memory_includes_torch_allocations(mixed_run):
    _, records, _ = mixed_run
    memory = {r["method"]: r["peak_memory_mb"] for r in records if r["status"] == "ok"}
    assert memory["noisy"] > 60 > memory["exact"] + 40


_INTERRUPTED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from hyperunmix.bench import run_benchmark
    from test_bench_runner import ORACLE, TINY
    if __name__ == "__main__":
        run_benchmark("slow", TINY, {out!r}, seeds=4, registry={{"slow": ORACLE}},
                      params={{"slow": {params!r}}}, n_workers=1, report=False)
""")


def test_interrupted_benchmark_resumes_without_recomputing(tmp_path):
    """Kill a benchmark mid-way; the rerun keeps every finished run untouched, computes
    each missing one, and retries the run that had failed."""
    out, counter = tmp_path / "out", tmp_path / "fits.txt"
    params = {"counter": str(counter), "sleep": 0.4, "fail": "first@tiny_b/0"}
    script = tmp_path / "bench.py"
    script.write_text(_INTERRUPTED.format(here=str(HERE), out=str(out), params=params))
    process = subprocess.Popen([sys.executable, str(script)])
    runs = out / "runs"  # committed records; "[!.]" skips a temporary file being written
    deadline = time.monotonic() + 90
    while len(list(runs.glob("[!.]*.json"))) < 4 and time.monotonic() < deadline:
        assert process.poll() is None, "the benchmark ended before it could be interrupted"
        time.sleep(0.05)
    process.kill()  # no chance to clean up, as with kill -9 or a power cut
    process.wait()
    before = {p.name: json.loads(p.read_text()) for p in runs.glob("[!.]*.json")}
    assert 4 <= len(before) < 8
    ok_before = {name: r for name, r in before.items() if r["status"] == "ok"}
    assert [(r["dataset"], r["seed"]) for r in before.values() if r["status"] != "ok"] == [
        ("tiny_b", 0)
    ]

    records = run_benchmark(
        "slow",
        TINY,
        out,
        seeds=4,
        registry={"slow": ORACLE},
        params={"slow": params},
        n_workers=1,
        report=False,
    )
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    after = {p.name: json.loads(p.read_text()) for p in runs.glob("[!.]*.json")}
    assert all(after[name] == record for name, record in ok_before.items())  # untouched
    fits = counter.read_text().splitlines()
    assert all(fits.count(f"{r['dataset']} {r['seed']}") == 1 for r in ok_before.values())
    assert fits.count("tiny_b 0") == 2  # failed, then retried
    assert len(fits) <= 9 + 1  # plus at most the run in flight at the kill

    # a rerun of a complete benchmark computes nothing
    run_benchmark(
        "slow", TINY, out, seeds=4, registry={"slow": ORACLE}, params={"slow": params}, report=False
    )
    assert counter.read_text().splitlines() == fits


def test_a_terminated_benchmark_stops_its_workers(tmp_path):
    """SIGTERM (kill, a scheduler's stop) ends the benchmark as Ctrl-C does: its workers and
    their runs stop too, instead of computing on, orphaned, runs no one records."""
    out, counter = tmp_path / "out", tmp_path / "fits.txt"
    params = {"counter": str(counter), "sleep": 60.0}
    script = tmp_path / "bench.py"
    script.write_text(_INTERRUPTED.format(here=str(HERE), out=str(out), params=params))
    process = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 90
    while not counter.exists() and time.monotonic() < deadline:  # a run is under way
        assert process.poll() is None, "the benchmark ended before it could be stopped"
        time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "no worker process to stop"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers left running: {[w.pid for w in alive]}"


def test_store_keeps_only_complete_records(tmp_path):
    store = RunStore(tmp_path)
    record = {"key": "m-s-s0-abc", "status": "ok", "method": "m"}
    store.save(record, {"abundances": np.ones((2, 2, 3), np.float32)})
    assert store.is_done("m-s-s0-abc") and store.load("m-s-s0-abc") == record
    assert store.load_arrays("m-s-s0-abc")["abundances"].shape == (2, 2, 3)
    store.save({**record, "status": "failed"})
    assert not store.is_done("m-s-s0-abc") and store.load("other") is None
    hidden = [p.name for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]
    assert hidden == [".gitignore"]  # no temporary file left; the state stays out of git


def test_group_keeps_first_appearance_order():
    records = [
        {"dataset": d, "method": m} for d, m in [("b", "y"), ("a", "x"), ("b", "x"), ("a", "y")]
    ]
    groups = group(records)
    assert list(groups) == ["b", "a"] and list(groups["b"]) == ["y", "x"]
