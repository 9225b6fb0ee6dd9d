"""ID-Net's output abundances: at each pixel's own endmembers or at the shared reference.

    python benchmarks/idnet_output.py [--seeds 0 1 2 3 4] [--scenes tuning | a,b]
                                      [--only TEXT]

ID-Net infers each pixel's endmembers f(E[z | y]) from that pixel alone; the question is
which endmember matrix the output abundances should be solved with. Each run trains ID-Net
once per scene and method seed, at the benchmark's settings
(:data:`hyperunmix.bench.plans.PLANS`) and the package's defaults otherwise, and scores,
from that one trained model, the maps of every ``abundance_output``
(:data:`hyperunmix.deep.idnet.ABUNDANCE_OUTPUTS`): ``reference`` (the linear stream at the
reference f(0) shared by every pixel), ``linear`` (the linear stream at the pixel's own
f(E[z | y])) and ``posterior`` (linear stream plus h, at f(E[z | y])); then a second
training without variability (``no_variability``, the ablation: one M = f(0), no codes).
aRMSE in each scene's convention. Every output is compared with ``linear`` (the default
before this measurement) by the rule of ``benchmarks/tune_defaults.py``: a mean paired
difference over the scenes below 0 by more than two standard errors.

The scenes are the tuning scenes (:func:`hyperunmix.bench.scenes.tuning_catalogue`), never
the benchmark's. Runs are stored in ``benchmarks/results/idnet_output/`` (not committed; a
rerun skips them, and two processes with different ``--seeds`` can share the directory);
writes ``benchmarks/results/idnet_output.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hyperunmix.bench.plans import PLANS
from hyperunmix.deep.idnet import ABUNDANCE_OUTPUTS, IDNet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_defaults import SIGNIFICANCE, paired_difference
from tuning_runs import armse_table, cached_records, scene_specs, score_maps, write_results

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "idnet_output"
#: The output every entry is compared with: the package's default before this measurement.
FORMER_DEFAULT = "linear"
ENTRIES = (*ABUNDANCE_OUTPUTS, "no_variability")


def run(spec, seed: int) -> dict:
    """Train ID-Net with and without variability on one scene at one method seed; return
    the aRMSE of each output."""
    scene = spec.build(os.environ.get("HYPERUNMIX_DATA"))
    params = {**PLANS["idnet"].params, **PLANS["idnet"].scene_params.get(spec.name, {})}
    started = time.perf_counter()
    model = IDNet(scene.truth.n_endmembers, seed=seed, **params).fit(scene)
    record = {
        "scene": spec.name,
        "seed": seed,
        "fit_s": time.perf_counter() - started,
        "epochs": model.n_epochs_,
    }
    for output in ABUNDANCE_OUTPUTS:
        model.abundance_output = output
        result = model.unmix(scene)
        record[output] = score_maps(result, scene, result.abundances[scene.mask], model.endmembers_)
    fixed = IDNet(scene.truth.n_endmembers, seed=seed, variability=False, **params).fit(scene)
    result = fixed.unmix(scene)
    record["no_variability"] = score_maps(
        result, scene, result.abundances[scene.mask], fixed.endmembers_
    )
    return record


def comparison_rows(records: list[dict]) -> list[str]:
    """Markdown rows: each entry's mean aRMSE, its paired difference to FORMER_DEFAULT over
    the scenes (mean +- standard error), the scenes where it is lower, and the rule's
    verdict."""
    scenes = sorted({r["scene"] for r in records})

    def row(entry: str) -> dict:
        armse = {
            s: float(np.mean([r[entry]["armse"] for r in records if r["scene"] == s]))
            for s in scenes
        }
        return {"armse": armse, "mean_armse": float(np.mean(list(armse.values())))}

    rows = {entry: row(entry) for entry in ENTRIES}
    former = rows[FORMER_DEFAULT]
    lines = [
        f"| entry | mean aRMSE | minus `{FORMER_DEFAULT}` (mean +- se) | scenes lower | "
        f"beyond {SIGNIFICANCE:g} se |",
        "|---|---|---|---|---|",
    ]
    for entry, found in rows.items():
        difference = paired_difference(found, former)
        if difference is None:
            lines.append(f"| {entry} | {found['mean_armse']:.4f} | — | — | — |")
            continue
        lower = sum(found["armse"][s] < former["armse"][s] for s in scenes)
        beyond = difference["mean"] + SIGNIFICANCE * difference["se"] < 0
        lines.append(
            f"| {entry} | {found['mean_armse']:.4f} | {difference['mean']:+.4f} +- "
            f"{difference['se']:.4f} | {lower} of {len(scenes)} | {'yes' if beyond else 'no'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--scenes", default="tuning", help="'tuning' or dataset names, a,b")
    parser.add_argument("--only", default="", help="keep the scenes whose name contains this")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    specs = [spec for spec in scene_specs(args.scenes) if args.only in spec.name]
    records = cached_records(specs, args.seeds, RUNS, run)
    command = "python benchmarks/idnet_output.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "### ID-Net's output abundances: each pixel's endmembers or the reference",
        "",
        f"`{command.strip()}`: aRMSE in each scene's convention, mean over method seeds "
        f"{', '.join(map(str, args.seeds))}, at the benchmark's ID-Net settings; from one "
        "training per scene and seed, the maps of each `abundance_output` (`reference`: "
        "the linear stream at the reference f(0); `linear`: at the pixel's own endmembers "
        "f(E[z | y]); `posterior`: linear stream plus h at f(E[z | y])), and "
        "`no_variability`, a training without the codes (the ablation).",
        "",
        *armse_table(records, ENTRIES),
        "",
        *comparison_rows(records),
        "",
    ]
    write_results(RESULTS / "idnet_output", lines, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
