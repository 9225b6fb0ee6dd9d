"""Where the deep methods' training time goes, and how long a default training takes.

    OMP_NUM_THREADS=1 python benchmarks/training_profile.py timing --threads 1
    OMP_NUM_THREADS=2 python benchmarks/training_profile.py timing --threads 2 \
        --methods egunet --scenes samson
    OMP_NUM_THREADS=1 python benchmarks/training_profile.py profile

``profile``: each deep method is fitted on Samson (95 x 95 px, 156 bands, P = 3) and Jasper
Ridge (100 x 100 px, 198 bands, P = 4) for a few epochs, with its defaults otherwise (one
torch thread). Recorded: the seconds of ``_build`` (references, pseudo-pure sets, bundles),
of an epoch (mean), of ``_finish`` and of ``unmix``, and, from cProfile over the training
loop only, the functions that take the most time per epoch (cumulative, in hyperunmix; own
time, anywhere, torch's operators and the autograd engine among them).

``timing``: each deep method's default training (early stopping on) on both scenes, with
``--threads`` torch threads: wall and CPU seconds of ``fit`` (the CPU time of one thread is
what the fit takes alone on one core, whatever else the machine runs), epochs run, why
training stopped, and the load average of the machine before and after (wall times on a
loaded machine are inflated). aRMSE is recorded beside them; these scenes chose no setting.

Both write into ``benchmarks/results/training_profile.json`` and regenerate
``training_profile.md``. The real scenes need ``HYPERUNMIX_DATA``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from hyperunmix import datasets
from hyperunmix._atomic import write_text
from hyperunmix.metrics import evaluate
from hyperunmix.registry import get_method

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METHODS = ("egunet", "deq", "idnet")
SCENES = ("samson", "jasper_ridge")
#: Epochs profiled per method: enough for a stable mean, few enough to stay short.
PROFILE_EPOCHS = {"egunet": 6, "deq": 3, "idnet": 1}
TOP = 12


def fit_timed(model, scene, profiler: cProfile.Profile | None = None) -> dict:
    """Fit ``model`` on ``scene`` (``profiler`` on during the training loop only) and unmix
    it; the seconds of ``_build`` (references, pseudo-pure sets, bundles), of an epoch (mean),
    of ``_finish``, of the whole ``fit`` and of ``unmix``."""
    seconds: dict[str, float] = {}
    for step in ("_build", "_train", "_finish"):
        setattr(
            model, step, _timed(getattr(model, step), step, seconds, profiler, step == "_train")
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missed solver tolerance in a short run
        model.fit(scene)
        fitted, cpu = time.perf_counter(), time.process_time() - cpu_start
        result = model.unmix(scene)
    end = time.perf_counter()
    return {
        "build_s": seconds["_build"],
        "epoch_s": seconds["_train"] / model.n_epochs_,
        "finish_s": seconds["_finish"],
        "fit_s": fitted - start,
        "fit_cpu_s": cpu,
        "unmix_s": end - fitted,
        "epochs": model.n_epochs_,
        "stop_reason": model.stop_reason_,
        "armse": float(evaluate(result, scene.truth, scene)["armse"]),
    }


def _timed(method, name: str, seconds: dict, profiler: cProfile.Profile | None, profiled: bool):
    """``method`` recording its seconds under ``name``, profiled when asked."""

    def timed(*args):
        start = time.perf_counter()
        if profiled and profiler is not None:
            profiler.enable()
        try:
            return method(*args)
        finally:
            if profiled and profiler is not None:
                profiler.disable()
            seconds[name] = time.perf_counter() - start

    return timed


def hot_spots(profile: cProfile.Profile, n_epochs: int) -> dict[str, list]:
    """The top functions of the training loop, as ``[function, calls per epoch, own s per
    epoch, cumulative s per epoch]``: by cumulative time in hyperunmix, and by own time
    anywhere."""
    stats = pstats.Stats(profile, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, ncalls, own, cumulative, _) in stats.items():
        where = filename.split("site-packages/")[-1].split("/src/")[-1]
        per_epoch = [value / n_epochs for value in (ncalls, own, cumulative)]
        rows.append([f"{where}:{line}({name})", *per_epoch])
    ours = [row for row in rows if "hyperunmix/" in row[0]]
    return {
        "cumulative": sorted(ours, key=lambda row: -row[3])[:TOP],
        "own": sorted(rows, key=lambda row: -row[2])[:TOP],
    }


def profile(methods, scenes) -> Iterator[tuple[str, dict]]:
    torch.set_num_threads(1)
    for name in scenes:
        scene = datasets.load(name)
        for method in methods:
            n_epochs = PROFILE_EPOCHS[method]
            model = get_method(method)(
                n_endmembers=scene.truth.n_endmembers, epochs=n_epochs, early_stopping=False
            )
            profiler = cProfile.Profile()
            times = fit_timed(model, scene, profiler)
            print(method, name, f"{times['epoch_s']:.2f} s per epoch", flush=True)
            yield f"{method}/{name}", {**times, **hot_spots(profiler, n_epochs)}


def timing(methods, scenes, threads: int) -> Iterator[tuple[str, dict]]:
    torch.set_num_threads(threads)
    for name in scenes:
        scene = datasets.load(name)
        for method in methods:
            load_before = os.getloadavg()[0]
            model = get_method(method)(n_endmembers=scene.truth.n_endmembers)
            times = fit_timed(model, scene)
            print(method, name, f"{times['fit_s']:.0f} s, {times['epochs']} epochs", flush=True)
            yield (
                f"{method}/{name}/{threads}",
                {
                    **times,
                    "default_epochs": model.epochs,
                    "threads": threads,
                    "load_before": load_before,
                    "load_after": os.getloadavg()[0],
                },
            )


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table, and a blank line after it."""
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    return [*lines, *(f"| {' | '.join(str(cell) for cell in row)} |" for row in rows), ""]


def markdown(record: dict) -> str:
    lines = [
        "### Deep methods: per-epoch cost and default training time",
        "",
        "Made by `benchmarks/training_profile.py` (commands in its docstring) on "
        f"{record.get('machine', '?')}, {os.cpu_count()} CPUs.",
        "",
    ]
    runs = record.get("timing", {})
    if runs:
        lines += [
            "#### Default training time (early stopping on)",
            "",
            "Seconds of `fit` with the defaults and 1 or 2 torch threads: wall, and CPU "
            "(process time, all threads). Other jobs on the machine inflate the wall times "
            "(load average before / after each run, on 2 cores); the CPU time of one thread "
            "is what the fit takes alone on one core. aRMSE changes with the thread count: "
            "the float32 sums run in another order, and training amplifies the difference.",
            "",
        ]
        header = ["method", "scene", "threads", "fit (s)", "fit CPU (s)", "epochs run / budget"]
        header += ["stopped by"]
        header += ["unmix (s)", "aRMSE", "load before / after"]
        rows = [
            [
                *key.split("/"),
                f"{r['fit_s']:.0f}",
                f"{r['fit_cpu_s']:.0f}",
                f"{r['epochs']} / {r['default_epochs']}",
                r["stop_reason"],
                f"{r['unmix_s']:.1f}",
                f"{r['armse']:.4f}",
                f"{r['load_before']:.1f} / {r['load_after']:.1f}",
            ]
            for key, r in runs.items()
        ]
        lines += table(header, rows)
    profiles = record.get("profile", {})
    if profiles:
        lines += ["#### Per-epoch cost (one torch thread, cProfile)", ""]
        header = ["method", "scene", "`_build` (s)", "per epoch (s)", "`_finish` (s)", "unmix (s)"]
        steps = ("build_s", "epoch_s", "finish_s", "unmix_s")
        rows = [[*key.split("/"), *(f"{r[s]:.2f}" for s in steps)] for key, r in profiles.items()]
        lines += table(header, rows)
        for key, r in profiles.items():
            lines += [f"**{key}**: the top functions of the training loop.", ""]
            for title, column in (("cumulative, in hyperunmix", 3), ("own time, anywhere", 2)):
                ranked = r["cumulative"] if column == 3 else r["own"]
                lines += [f"{title}:", ""]
                lines += table(
                    ["function", "calls per epoch", "seconds per epoch"],
                    [[f"`{row[0]}`", f"{row[1]:.3g}", f"{row[column]:.3f}"] for row in ranked],
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("profile", "timing"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    methods, scenes = args.methods.split(","), args.scenes.split(",")
    path = RESULTS / "training_profile.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record["machine"] = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    runs = (
        profile(methods, scenes)
        if args.part == "profile"
        else timing(methods, scenes, args.threads)
    )
    for key, result in runs:  # written after each run: a long job keeps what it measured
        record.setdefault(args.part, {})[key] = result
        write_text(path, json.dumps(record, indent=1))
        write_text(RESULTS / "training_profile.md", markdown(record))


if __name__ == "__main__":
    main()
