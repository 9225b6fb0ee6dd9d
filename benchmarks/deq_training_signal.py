"""DEQ-Unmix's training signal: the image itself, or recorrupted targets, on tuning scenes.

    python benchmarks/deq_training_signal.py [--seeds 0] [--epochs 100]

The question (issue 14): can a training signal make the learned correction improve the
abundances, where a loss on the image itself cannot (its minimiser is the per-pixel fit,
so a correction can only cost loss)? The candidate measured here is recorrupted-to-
recorrupted training (``recorruption > 0``, :class:`hyperunmix.deep.deq.DEQUnmix`): the
solver sees ``Y + a z`` and the loss compares its reconstruction with ``Y - z / a``, two
copies of the image whose noises are independent, so fitting the input's noise no longer
pays. Each variant is run with the correction and without it (its ablation), beside
N-FINDR + FCLS (the matched baseline: same start, same convention):

- ``fit``: the default loss on the image itself (mean SAD + alpha MSE + volume);
- ``recorrupted``: ``recorruption=1`` (whitened MSE to the recorrupted target + volume).

Scenes: the tuning catalogue (:func:`hyperunmix.bench.scenes.tuning_catalogue`, scene seed
7001, disjoint from the benchmark's) and its linear and USGS recipes at 15 dB; no real
scene. Writes ``benchmarks/results/deq_training_signal.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import hyperunmix as hu
from hyperunmix._atomic import write_text
from hyperunmix.bench.scenes import SceneSpec, tuning_catalogue

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "deq_training_signal"
#: variant -> DEQUnmix parameters (besides n_endmembers, seed, epochs).
VARIANTS: dict[str, dict] = {
    "fit": {},
    "fit, no correction": {"correction": False},
    "recorrupted": {"recorruption": 1.0},
    "recorrupted, no correction": {"recorruption": 1.0, "correction": False},
}


def scenes() -> dict[str, SceneSpec]:
    """The tuning catalogue, plus its linear and USGS recipes at 15 dB."""
    catalogue = tuning_catalogue()
    for family in ("linear", "usgs"):
        base = catalogue[f"tune_{family}_20db_s7001"]
        name = f"tune_{family}_15db_s7001"
        catalogue[name] = SceneSpec(name, base.kind, {**base.options, "snr_db": 15.0})
    return catalogue


def score(model: hu.Unmixer, scene: hu.Scene) -> dict[str, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # solver-tolerance warnings of short runs
        result = model.fit_unmix(scene)
    metrics = hu.evaluate(result, scene.truth)
    return {
        "armse": metrics["armse"],
        "msad": metrics["msad"],
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0", help="method seeds, comma-separated")
    parser.add_argument("--epochs", type=int, default=100, help="the benchmark's budget")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    rows = []
    for name, spec in scenes().items():
        scene = spec.build()
        assert scene.truth is not None
        p = scene.truth.n_endmembers
        runs = {"N-FINDR + FCLS": [score(hu.make_method("nfindr", n_endmembers=p), scene)]}
        for variant, params in VARIANTS.items():
            runs[variant] = [
                score(
                    hu.make_method("deq", n_endmembers=p, seed=s, epochs=args.epochs, **params),
                    scene,
                )
                for s in seeds
            ]
        for variant, results in runs.items():
            armse = [r["armse"] for r in results]
            rows.append(
                {
                    "scene": name,
                    "variant": variant,
                    "armse_mean": float(np.mean(armse)),
                    "armse_std": float(np.std(armse)),
                    "msad_mean": float(np.mean([r["msad"] for r in results])),
                    "seconds": float(np.mean([r["seconds"] for r in results])),
                }
            )
            print(f"{name:28s} {variant:28s} aRMSE {rows[-1]['armse_mean']:.4f}", flush=True)
    command = "python benchmarks/deq_training_signal.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_text(
        OUT.with_suffix(".json"),
        json.dumps({"command": command.strip(), "rows": rows}, indent=2) + "\n",
    )
    write_text(OUT.with_suffix(".md"), markdown(rows, command.strip(), seeds, args.epochs))
    return 0


def markdown(rows: list[dict], command: str, seeds: list[int], epochs: int) -> str:
    variants = ["N-FINDR + FCLS", *VARIANTS]
    by_scene: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_scene.setdefault(row["scene"], {})[row["variant"]] = row
    lines = [
        "### DEQ-Unmix's training signal (tuning scenes)",
        "",
        f"`{command}`: aRMSE (mSAD in rad) in the scene's convention, {epochs} epochs, "
        f"method seeds {', '.join(map(str, seeds))}.",
        "",
        "| scene | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for scene, cells in by_scene.items():
        lines.append(
            f"| {scene} | "
            + " | ".join(
                f"{cells[v]['armse_mean']:.3f} ({cells[v]['msad_mean']:.3f})" for v in variants
            )
            + " |"
        )
    means = {v: np.mean([cells[v]["armse_mean"] for cells in by_scene.values()]) for v in variants}
    lines.append("| **mean** | " + " | ".join(f"**{means[v]:.3f}**" for v in variants) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
