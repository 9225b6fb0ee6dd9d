"""What early stopping on a loss plateau costs in accuracy and saves in time, per deep method.

    OMP_NUM_THREADS=1 HYPERUNMIX_DATA=... python benchmarks/early_stopping.py \
        [--scenes A,B] [--methods egunet,deq] [--seeds 0,1,2,3,4]

Each method trains once per tuning scene and method seed
(:func:`hyperunmix.bench.scenes.tuning_catalogue`, scene seeds disjoint from the benchmark's;
no real scene takes part) with ``early_stopping=False`` for its full ``epochs``, keeping the
network after every epoch. Training is deterministic and no schedule depends on the epoch
budget, so the network a run stopped at epoch k ends with is the one kept after epoch k: the
script finds, from the recorded losses, the epoch each (``patience``, ``min_delta``) setting
stops at (:func:`~hyperunmix.deep.estimator.plateau_reached`), finishes the network kept then
as ``fit`` would, and scores its maps. One training gives every setting's result. The method
seed moves the network's initialisation, the batches and the sampling, so the seeds say
whether a setting's gain is more than the run-to-run spread.

Writes ``benchmarks/results/early_stopping.json`` (per run: the losses, the training
seconds, each setting's stop epoch and aRMSE, the full run's) and ``.md`` (per method and
setting: mean aRMSE change against the full run and the share of epochs run, over the
scenes; the package's defaults marked).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hyperunmix._atomic import write_text
from hyperunmix.bench.scenes import tuning_catalogue
from hyperunmix.deep.estimator import DeepUnmixer, plateau_reached
from hyperunmix.metrics import evaluate
from hyperunmix.registry import get_method

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "early_stopping"
METHODS = ("egunet", "deq", "idnet")
SCENES = (
    "tune_linear_20db_s7001",
    "tune_bilinear_30db_s7001",
    "tune_variability_20db_s7001",
    "tune_usgs_30db_s7001",
)
PATIENCES = (2, 3, 5, 10, 15, 20)
MIN_DELTAS = (0.001, 0.003, 0.01, 0.03)


def train_with_snapshots(
    method: str, scene, seed: int
) -> tuple[DeepUnmixer, dict[int, dict], float]:
    """``method`` with its defaults but no early stopping, fitted on ``scene``; the network's
    state after every epoch; the fit's seconds."""
    model = get_method(method)(
        n_endmembers=scene.truth.n_endmembers, seed=seed, early_stopping=False
    )
    states: dict[int, dict] = {}

    def keep(stage: str, done: int, total: int, info: dict) -> None:
        if stage == "epoch":
            states[done] = copy.deepcopy(model.network_.state_dict())

    model.set_progress(keep)
    start = time.perf_counter()
    model.fit(scene)
    seconds = time.perf_counter() - start
    model.set_progress(None)
    return model, states, seconds


def score_at(model: DeepUnmixer, state: dict, scene) -> float:
    """aRMSE of ``model`` finished from the network ``state``, as ``fit`` would have."""
    model.network_.load_state_dict(state)
    model.network_.eval()
    model._finish(scene, scene.pixels(np.float64))
    return float(evaluate(model.unmix(scene), scene.truth, scene)["armse"])


def stop_epoch(losses: list[float], patience: int, min_delta: float) -> int:
    """The epoch training with these settings ends at (the last one when none stops it)."""
    for n in range(1, len(losses)):
        if plateau_reached(losses[:n], patience, min_delta):
            return n
    return len(losses)


def run_one(method: str, scene, seed: int) -> dict:
    model, states, seconds = train_with_snapshots(method, scene, seed)
    losses = [record["loss"] for record in model.history_]
    stops = {
        f"{patience}/{min_delta:g}": stop_epoch(losses, patience, min_delta)
        for patience in PATIENCES
        for min_delta in MIN_DELTAS
    }
    epochs = sorted({*stops.values(), len(losses)})
    scores = {epoch: score_at(model, states[epoch], scene) for epoch in epochs}
    return {
        "method": method,
        "scene": scene.name,
        "seed": seed,
        "epochs": len(losses),
        "seconds": seconds,
        "losses": losses,
        "full_armse": scores[len(losses)],
        "settings": {key: {"epoch": e, "armse": scores[e]} for key, e in stops.items()},
    }


def summary_md(records: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in records})
    lines = [
        "### Early stopping on a loss plateau: accuracy and epochs, per setting",
        "",
        "Made by `OMP_NUM_THREADS=1 python benchmarks/early_stopping.py` (resumable: per-run "
        "records in `benchmarks/results/early_stopping/`, not committed) on the tuning "
        f"scenes {', '.join(sorted({r['scene'] for r in records}))}, method seeds "
        f"{', '.join(map(str, seeds))}. For each method and (`patience`, `min_delta`): the "
        "aRMSE change against the full run (negative: better), its mean over the scenes and "
        "seeds ± the standard deviation over the seeds of each seed's scene mean, the largest "
        "change of any run, and the share of the epochs run (the time saved is about the "
        "rest). **bold**: the package's default.",
        "",
    ]
    for method in METHODS:
        runs = [r for r in records if r["method"] == method]
        if not runs:
            continue
        defaults = get_method(method)().get_params()
        default = f"{defaults['patience']}/{defaults['min_delta']:g}"
        full = np.mean([r["full_armse"] for r in runs])
        lines += [
            f"#### {method}",
            "",
            f"Full run: {runs[0]['epochs']} epochs, mean aRMSE {full:.4f}; training "
            f"{np.mean([r['seconds'] for r in runs]):.1f} s per scene (one thread, loaded "
            f"machine); {len(runs)} runs.",
            "",
            "| patience / min_delta | mean change ± std over seeds | worst change | epochs run |",
            "|---|---|---|---|",
        ]
        for key in runs[0]["settings"]:
            change = {
                seed: [
                    r["settings"][key]["armse"] - r["full_armse"] for r in runs if r["seed"] == seed
                ]
                for seed in seeds
            }
            per_seed = [np.mean(c) for c in change.values() if c]
            spread = np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0.0
            every = [c for cs in change.values() for c in cs]
            share = np.mean([r["settings"][key]["epoch"] / r["epochs"] for r in runs])
            cells = [
                key,
                f"{np.mean(every):+.4f} ± {spread:.4f}",
                f"{max(every):+.4f}",
                f"{share:.0%}",
            ]
            if key == default:
                cells = [f"**{cell}**" for cell in cells]
            lines.append(f"| {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    catalogue = tuning_catalogue()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    for name in args.scenes.split(","):
        todo = [
            (method, seed, OUT / f"{method}_{name}_seed{seed}.json")
            for method in args.methods.split(",")
            for seed in seeds
        ]
        todo = [run for run in todo if not run[2].exists()]
        scene = catalogue[name].build() if todo else None
        for method, seed, path in todo:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # solver tolerances missed now and then
                record = run_one(method, scene, seed)
            write_text(path, json.dumps(record))
            print(method, name, seed, record["epochs"], f"{record['seconds']:.0f} s", flush=True)
    records = [json.loads(path.read_text()) for path in sorted(OUT.glob("*_seed*.json"))]
    results = REPO / "benchmarks" / "results"
    write_text(results / "early_stopping.json", json.dumps(records, indent=1))
    write_text(results / "early_stopping.md", summary_md(records))


if __name__ == "__main__":
    main()
