"""DEQ-Unmix's correction against its ablation on fresh draws of the non-spatial scenes.

    python benchmarks/deq_correction_draws.py [--scene-seeds 7001 7002 7003 7004]
                                              [--seeds 0 1 2] [--only TEXT]

In the benchmark the learned correction is worse than its ablation (``correction=False``)
on six of its eight non-spatial synthetic scenes, by 0.2 to 1.3 %, and better on most of
the tuning scenes of the same recipes. The question: is that a property of the recipes
(linear and bilinear mixing, endmember variability, at 20 and 30 dB), or of the one draw
of each scene that the benchmark makes? Each run trains DEQ-Unmix at the benchmark's
settings (:data:`hyperunmix.bench.plans.PLANS`, the package's defaults otherwise) with and
without the correction, on the tuning catalogue (:func:`hyperunmix.bench.scenes.tuning_catalogue`:
the analytic families and USGS spectra on random fields, 32 x 32 px) made with each of
``--scene-seeds`` (disjoint from the benchmark's scene seed), and compares the two paired
by method seed, by the rule of ``benchmarks/tune_defaults.py`` (better or worse beyond
two standard errors of the mean paired difference, else level).

Runs are stored in ``benchmarks/results/deq_correction_draws/`` (not committed; a rerun
skips them, and two processes with different ``--seeds`` can share the directory); writes
``benchmarks/results/deq_correction_draws.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path

import torch

from hyperunmix.bench.plans import PLANS
from hyperunmix.bench.scenes import tuning_catalogue
from hyperunmix.deep.deq import DEQUnmix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_defaults import mean_and_se, paired_verdict
from tuning_runs import cached_records, score_maps, write_results

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "deq_correction_draws"
SCENE_SEEDS = (7001, 7002, 7003, 7004)
#: The trainings of each run: entry -> DEQUnmix parameters beyond the plan's.
ENTRIES = {"correction": {}, "no_correction": {"correction": False}}
VERDICTS = ("better", "tie", "worse")


def run(spec, seed: int) -> dict:
    """Train DEQ-Unmix with and without the correction on one scene at one method seed;
    return the aRMSE of each."""
    scene = spec.build(os.environ.get("HYPERUNMIX_DATA"))
    params = {**PLANS["deq"].params, **PLANS["deq"].scene_params.get(spec.name, {})}
    record: dict = {"scene": spec.name, "seed": seed}
    for entry, extra in ENTRIES.items():
        started = time.perf_counter()
        model = DEQUnmix(scene.truth.n_endmembers, seed=seed, device="cpu", **params, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # solver-tolerance warnings of short runs
            result = model.fit_unmix(scene)
        record[entry] = {
            **score_maps(result, scene, result.abundances[scene.mask], model.endmembers_),
            "seconds": time.perf_counter() - started,
        }
    return record


def recipe(scene: str) -> str:
    """A tuning scene's recipe: its name without the scene seed."""
    return re.sub(r"_s\d+$", "", scene)


def paired_rows(records: list[dict]) -> tuple[list[str], dict]:
    """Markdown rows per recipe: the correction's verdict against its ablation on each
    scene draw (paired by method seed), and the mean relative difference; the counts."""
    by_scene: dict[str, list[float]] = {}
    relative: dict[str, list[float]] = {}
    for r in records:
        by_scene.setdefault(r["scene"], []).append(
            r["correction"]["armse"] - r["no_correction"]["armse"]
        )
        relative.setdefault(recipe(r["scene"]), []).append(
            r["correction"]["armse"] / r["no_correction"]["armse"] - 1
        )
    verdicts = {scene: paired_verdict(mean_and_se(d)) for scene, d in by_scene.items()}
    lines = [
        "| recipe | better | level | worse | mean relative difference (se) |",
        "|---|---|---|---|---|",
    ]
    counts = {}
    for name in sorted(relative):
        found = [v for scene, v in verdicts.items() if recipe(scene) == name]
        counts[name] = {v: found.count(v) for v in VERDICTS}
        change = mean_and_se(relative[name])
        lines.append(
            f"| {name} | "
            + " | ".join(str(counts[name][v]) for v in VERDICTS)
            + f" | {100 * change['mean']:+.1f} % ({100 * change['se']:.1f}) |"
        )
    total = {v: sum(c[v] for c in counts.values()) for v in VERDICTS}
    change = mean_and_se([x for values in relative.values() for x in values])
    lines.append(
        "| **all** | "
        + " | ".join(f"**{total[v]}**" for v in VERDICTS)
        + f" | **{100 * change['mean']:+.1f} % ({100 * change['se']:.1f})** |"
    )
    return lines, {
        "verdicts": verdicts,
        "counts": counts,
        "total": total,
        "relative_change": change,
        "scene_seeds": sorted({int(scene.rsplit("_s", 1)[1]) for scene in by_scene}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene-seeds", type=int, nargs="+", default=list(SCENE_SEEDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", default="", help="keep the scenes whose name contains this")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    specs = [
        spec
        for spec in tuning_catalogue(tuple(args.scene_seeds)).values()
        if args.only in spec.name
    ]
    records = cached_records(specs, args.seeds, RUNS, run)
    rows, summary = paired_rows(records)
    command = "python benchmarks/deq_correction_draws.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "### DEQ-Unmix's correction on fresh draws of the non-spatial scenes",
        "",
        f"`{command.strip()}`: DEQ-Unmix at the benchmark's settings with and without its "
        "learned correction (the ablation), on the tuning catalogue's scenes (32 x 32 px) "
        f"made with scene seeds {', '.join(map(str, args.scene_seeds))}, method seeds "
        f"{', '.join(map(str, args.seeds))}. Per recipe, the scene draws where the "
        "correction's aRMSE is better, level or worse than the ablation's (paired by method "
        "seed, beyond two standard errors of the mean difference), and the mean relative "
        "difference over draws and seeds (negative: the correction is better).",
        "",
        *rows,
        "",
    ]
    write_results(RESULTS / "deq_correction_draws", lines, {"records": records, **summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
